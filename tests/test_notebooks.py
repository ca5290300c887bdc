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
    # 00_explore is the masker explorer (no stage); 01-05 the grid's stages; 06_uta the UTA students' (`uta@uta-s<seed>`)
    assert [p.stem for p in NOTEBOOKS] == ["00_explore", *study.NOTEBOOKS, "06_uta"]


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


def run_problems(nb: dict) -> list[str]:
    """What is wrong with a notebook a DVC stage ran: not run by papermill, an exception papermill recorded,
    a cell with an error output, no injected parameters (every stage passes some), no output at all."""
    meta = nb.get("metadata", {}).get("papermill")
    if meta is None:
        return ["not executed by papermill (no papermill metadata)"]
    problems = []
    if meta.get("exception"):
        problems.append(f"papermill recorded an exception: {meta['exception']}")
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    problems += [f"cell error: {o.get('ename')}: {o.get('evalue')}" for o in errors]
    if not any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in nb["cells"]):
        problems.append("no parameters injected")
    if not any(c.get("outputs") for c in code):
        problems.append("ran without output")
    return problems


def test_run_problems_are_found():
    """The check of executed notebooks fails on each way a stage's notebook can be wrong."""
    src = nbformat.read(REPO / "notebooks" / "02_pretrain.ipynb", as_version=4)
    good = json.loads(nbformat.writes(src))
    good["metadata"]["papermill"] = {"exception": None}
    good["cells"].insert(
        1, {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": ""}
    )
    good["cells"][2]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "ok"}]
    assert run_problems(good) == []
    committed = json.loads(nbformat.writes(src))  # what the old check let through: never executed
    assert run_problems(committed) == ["not executed by papermill (no papermill metadata)"]
    failed = json.loads(json.dumps(good))
    failed["metadata"]["papermill"]["exception"] = True
    failed["cells"][2]["outputs"].append({"output_type": "error", "ename": "ValueError", "evalue": "x"})
    assert run_problems(failed) == ["papermill recorded an exception: True", "cell error: ValueError: x"]
    bare = json.loads(json.dumps(good))
    bare["cells"] = [c for c in bare["cells"] if "injected-parameters" not in c["metadata"].get("tags", [])]
    for c in bare["cells"]:
        c.pop("outputs", None)
    assert run_problems(bare) == ["no parameters injected", "ran without output"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [*study.NOTEBOOKS, "06_uta"])
def test_notebook_ran_in_the_smoke_study(name: str):
    from _smoke import smoke_study

    repo = smoke_study()
    # a cell's notebook is runs/<cell>/<name>.ipynb; a world's results/notebooks/<name>-<world>.ipynb
    found = [*repo.glob(f"**/{name}.ipynb"), *repo.glob(f"**/{name}-*.ipynb")]
    executed = [p for p in sorted(found) if p.parent != repo / "notebooks"]
    assert executed, f"{name} was not executed by the smoke DAG"
    if name in ("01_frequency", "05_report"):  # one per world of the smoke plan (shapes)
        assert [p.relative_to(repo).as_posix() for p in executed] == [
            f"results/notebooks/{name}-shapes.ipynb"
        ]
    for path in executed:
        problems = run_problems(json.loads(path.read_text()))
        assert not problems, f"{path.relative_to(repo)}: {'; '.join(problems)}"


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
                "world": "shapes",  # the smoke study's data: data/shapes
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
    cell = json.loads((runs / "nb-standalone" / "cell.json").read_text())
    assert (cell["world"], cell["masker"], cell["text_tokens"], cell["threshold"]) == (
        "shapes",
        "block",
        5,
        None,
    )
