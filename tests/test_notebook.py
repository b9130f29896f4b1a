"""notebooks/quickstart.ipynb runs from top to bottom in a fresh kernel (its quick setting: 50 steps)
and shows what it promises: a sample grid, an FID and the loss curves."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def _outputs(cell: nbformat.NotebookNode) -> tuple[str, int]:
    """(the cell's printed text, its number of PNG images)."""
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    images = sum("image/png" in o.get("data", {}) for o in cell.outputs if o.output_type == "display_data")
    return text, images


def test_the_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])  # papermill can override QUICK, SECONDS, ...


def test_quickstart_notebook_trains_samples_evaluates_and_plots(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_QUICK", "1")  # the kernel inherits the environment
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # as Jupyter sets it
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    texts = [_outputs(c)[0] for c in code]
    images = [_outputs(c)[1] for c in code]
    trained = re.search(r"trained (\d+) steps into (\S+)", texts[1])
    assert trained and int(trained.group(1)) == 50
    run_dir = tmp_path / trained.group(2)
    assert (run_dir / "grid.png").is_file() and images[2] == 1  # the grid, shown in the notebook
    fid = re.search(r"FID of 500 samples: (\d+\.\d)", texts[3])
    assert fid and 0 < float(fid.group(1)) < 5000
    assert images[4] == 1  # the loss curves
