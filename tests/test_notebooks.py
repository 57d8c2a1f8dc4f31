"""The tutorial notebooks run, top to bottom, against the test server, so they cannot rot.

Each runs in a real Jupyter kernel (nbclient) in a scratch directory, with REDIS_URL
pointing at the suite's server (``TaskQueue()`` in a notebook reads it; unset, the
notebooks start the embedded server). The repository keeps them without outputs.

Each runs twice in a row, in a new kernel against the same data, as a user who runs
a notebook again finds it: what the first run left in Redis must not break the second.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import redis

nbformat = pytest.importorskip("nbformat", reason="needs nbformat (pip install -e '.[dev]')")
nbclient = pytest.importorskip("nbclient", reason="needs nbclient (pip install -e '.[dev]')")
pytest.importorskip("ipykernel", reason="needs ipykernel (pip install -e '.[dev]')")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ROOT = NOTEBOOKS.parent


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_there_are_notebooks_and_they_are_stored_without_outputs() -> None:
    names = [p.name for p in notebook_paths()]
    assert names == [
        "01_quick_tour.ipynb",
        "02_scheduling.ipynb",
        "03_worker_process.ipynb",
        "04_workflows.ipynb",
    ]
    for path in notebook_paths():
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs_twice_in_a_row(
    path: Path, redis_url: str, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "run"
    work.mkdir()
    shutil.copy(path, work / path.name)
    # The kernel (and the worker processes a notebook starts) inherit this environment.
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for run in ("first", "second"):
        book = nbformat.read(work / path.name, as_version=4)
        client = nbclient.NotebookClient(
            book,
            timeout=120,
            kernel_name="python3",
            resources={"metadata": {"path": str(work)}},
        )
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as exc:
            pytest.fail(f"{path.name} failed in its {run} run:\n{exc}")
        errors = [
            output
            for cell in book.cells
            if cell.cell_type == "code"
            for output in cell.outputs
            if output.output_type == "error"
        ]
        assert errors == [], f"{path.name}, {run} run"
