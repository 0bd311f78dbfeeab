"""Named configs shipped as JSON data files (read with importlib.resources)."""
