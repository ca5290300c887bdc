"""The notebooks: committed without outputs, a `parameters` cell first, thin; every one runs under
papermill with smoke parameters (inside the smoke DAG of `_smoke.py`, plus 02 run standalone)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest

from clipf import study
from clipf.submit import notebook_parameters

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_every_study_notebook_is_there():
    # 01-05 are the grid's stages; 06_uta is the UTA students' stage (`uta@uta-s<seed>`)
    assert [p.stem for p in NOTEBOOKS] == [*study.NOTEBOOKS, "06_uta"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_a_parameters_cell_first(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook with no code"
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, "committed with outputs"
    assert notebook_parameters(path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_stay_thin(path: Path):
    """No function longer than a few lines: computation belongs in clipf/ with tests."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                assert node.end_lineno - node.lineno < 5, f"{node.name} in {path.name} belongs in clipf/"
        assert len(cell.source.splitlines()) <= 15, f"a long cell in {path.name}"


def test_missing_parameters_cell_is_named(tmp_path: Path):
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), bad)
    with pytest.raises(study.NotebookError, match="bad.ipynb: no code cell tagged 'parameters'"):
        notebook_parameters(bad)


# ---------------------------------------------------------------- executed with smoke parameters


@pytest.mark.slow
@pytest.mark.parametrize("name", study.NOTEBOOKS)
def test_notebook_ran_in_the_smoke_study(name: str):
    from _smoke import smoke_study

    repo = smoke_study()
    executed = sorted(repo.glob(f"**/{name}.ipynb"))
    executed = [p for p in executed if "notebooks" != p.parent.name or p.parent.parent.name == "results"]
    assert executed, f"{name} was not executed by the smoke DAG"
    for path in executed:
        nb = json.loads(path.read_text())
        assert nb["metadata"]["papermill"]["exception"] is None if "papermill" in nb["metadata"] else True
        injected = [c for c in nb["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
        assert injected or name == "05_report" or name == "01_frequency", f"{path}: no parameters injected"
        assert any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), (
            f"{path}: ran without output"
        )


@pytest.mark.slow
def test_pretrain_notebook_standalone_with_a_profile_and_overrides(tmp_path: Path):
    """02_pretrain outside DVC: a named profile, an open_clip_train override, a new cell name, its
    own runs folder (the smoke repository's runs/ stays as DVC left it)."""
    import papermill as pm
    from _smoke import smoke_study, tool_env

    repo = smoke_study()
    runs = tmp_path / "runs"
    out = tmp_path / "02_pretrain.ipynb"
    with tool_env(repo):
        pm.execute_notebook(
            str(repo / "notebooks" / "02_pretrain.ipynb"),
            str(out),
            parameters={
                "profile": "smoke",
                "masker": "block",
                "text_tokens": 5,
                "cell": "nb-standalone",
                "options": {"epochs": 1},
                "runs": str(runs),
            },
            cwd=str(repo),
            progress_bar=False,
        )
    assert (runs / "nb-standalone" / "pretrain" / "metrics.json").exists()
    assert study.last_checkpoint(runs / "nb-standalone" / "pretrain").name == "epoch_1.pt"
