"""Progress bars: on a terminal, never in a log file."""

import io

from vaekit.progress import progress_bar


def test_progress_bars_show_on_a_terminal_only():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal, file = Terminal(), io.StringIO()
    for stream in (terminal, file):
        with progress_bar(3, file=stream, desc="epoch 1/1") as bar:
            bar.update(3)
    assert "epoch 1/1" in terminal.getvalue() and "\r" in terminal.getvalue()
    assert file.getvalue() == ""
    with progress_bar(3, enabled=False, file=Terminal()) as bar:
        assert bar.disable
