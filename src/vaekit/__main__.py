"""`python -m vaekit` runs the command-line tool (torchrun needs a module to launch)."""

import sys

from vaekit.cli import main

sys.exit(main())
