"""Progress bars for a terminal, none for a log file: one rule for every loop in vaekit."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm


def progress_bar(total: int | None, enabled: bool = True, file: TextIO | None = None, **options: Any) -> tqdm:
    """A tqdm bar on `file` (stderr by default) when enabled and `file` is a terminal; otherwise a
    silent one, so that `vaekit train ... > log 2>&1` gets the one line per epoch and no
    carriage-return updates."""
    file = file or sys.stderr
    on_terminal = enabled and hasattr(file, "isatty") and file.isatty()
    return tqdm(total=total, file=file, disable=not on_terminal, **options)
