"""docs/tutorial.ipynb runs top to bottom (on a reduced budget), so that it never rots."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "docs" / "tutorial.ipynb"


def test_the_committed_notebook_has_no_outputs():
    """Outputs come from a reader's own run, never from the repository."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_the_tutorial_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_TUTORIAL_EPOCHS", "1")
    monkeypatch.setenv("VAEKIT_TUTORIAL_SAMPLES", "50")
    monkeypatch.setenv("VAEKIT_TUTORIAL_IMAGES", "200")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's run folder goes under tempfile's folder
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "closed form" in text and "log p(x) >= ELBO for" in text and "epoch   1" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 6  # the pictures were drawn
