"""clipf.deps: the static import graph read from the code, and dvc.yaml's code deps generated from it.

The main check: every stage's `clipf/...` deps in dvc.yaml are the import closure of its command, so a
stage that misses a module (or lists one it cannot run) fails here, naming the stage and the path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from clipf import deps

REPO = Path(__file__).resolve().parents[1]


def test_dvc_yaml_code_deps_are_the_closure_of_each_command():
    """`clipf deps --write` after an import changes; the message names each stage and path."""
    deps.check(REPO / "dvc.yaml")


def test_a_stage_missing_a_module_fails(tmp_path):
    """Delete one generated dep of one stage (as a hand edit would): the check names stage and path."""
    text = (REPO / "dvc.yaml").read_text()
    stage = "freq"
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"  {stage}:"))
    drop = next(i for i in range(start, len(lines)) if lines[i].strip() == "- clipf/masking.py")
    broken = tmp_path / "dvc.yaml"
    broken.write_text("\n".join(lines[:drop] + lines[drop + 1 :]) + "\n")
    with pytest.raises(deps.DepsError, match=r"freq: missing clipf/masking\.py"):
        deps.check(broken)
    assert deps.write(broken) == [stage]
    deps.check(broken)
    assert broken.read_text() == text  # --write puts back exactly what was generated


def covered(paths: list[str], path: str) -> bool:
    """``path`` is listed, or sits in a listed folder."""
    return any(path == p or path.startswith(p + "/") for p in paths)


def test_the_deps_the_issue_found_missing_are_there():
    """freq splits words (masking) through study; frequency runs the syntax masker and freq.load_table;
    report writes curves through study; uta_report calls report and profiles."""
    want = deps.expected(REPO / "dvc.yaml")
    needs = {
        "freq": ["clipf/masking.py", "clipf/study.py", "clipf/freq.py"],
        "frequency": ["clipf/pos.py", "clipf/freq.py", "clipf/report/words.py", "clipf/report/figures.py"],
        "report": ["clipf/study.py", "clipf/report/tables.py", "clipf/report/claims.py"],
        "uta_report": ["clipf/report/uta.py", "clipf/report/tables.py", "clipf/profiles.py"],
        "pretrain": ["clipf/train.py", "clipf/masking.py"],  # training runs in a subprocess: -m clipf.train
        "finetune": ["clipf/train.py"],
        "uta": ["clipf/train.py", "clipf/objectives/uta/run.py"],  # the registry names it "module:attr"
        "collect": ["clipf/evaluate/collect.py"],
    }
    missing = [f"{s}: {p}" for s, paths in needs.items() for p in paths if not covered(want[s], p)]
    assert not missing, missing
    for stage, paths in want.items():
        assert not covered(paths, "clipf/deps.py") and not covered(paths, "clipf/explore.py"), stage


def test_every_package_data_folder_is_read_by_a_module():
    """The data folders clipf ships (pyproject package-data) are the ones deps knows, each read by some
    module as the analysis sees it (else a stage would miss it)."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = cfg["tool"]["setuptools"]["package-data"]["clipf"]
    assert sorted(g.rsplit("/", 1)[0] for g in globs) == sorted(deps.DATA_DIRS)
    read = {d for m in deps.modules().values() for d in m.data}
    assert read == {f"clipf/{d}" for d in deps.DATA_DIRS}


def test_deps_imports_neither_torch_nor_clipf_modules():
    code = "import sys, clipf.deps as d; d.expected(d.ROOT / 'dvc.yaml'); "
    code += "print(sorted(m for m in sys.modules if m.startswith(('torch', 'open_clip', 'clipf.'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "['clipf.deps']"


# ---------------------------------------------------------------- the analysis on a tiny package


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def tiny(tmp_path) -> Path:
    """clipf/{__init__, a, b, c, cli}.py, clipf/sub/{__init__, x, y}.py, clipf/model_configs/m.json."""
    root = tmp_path
    write(root, "clipf/__init__.py", "")
    write(root, "clipf/a.py", "from clipf import b\n\ndef f():\n    from .sub import x  # lazy, relative\n")
    write(root, "clipf/b.py", "ARGV = ['-m', 'clipf.c']  # run by name\nREGISTRY = {'y': 'clipf.sub.y:Y'}\n")
    write(root, "clipf/c.py", "from pathlib import Path\nCFG = Path(__file__).with_name('model_configs')\n")
    write(root, "clipf/cli.py", "COMMANDS = {'a': ('clipf.a', 'help'), 'y': ('clipf.sub.y', 'help')}\n")
    write(root, "clipf/sub/__init__.py", "from clipf.sub.y import Y\n")
    write(root, "clipf/sub/x.py", "from ..b import ARGV\nfrom clipf.a import _hidden\n")
    write(root, "clipf/sub/y.py", "Y = 1\n")
    write(root, "clipf/model_configs/m.json", "{}")
    nb = {"cells": [{"cell_type": "code", "source": ["%matplotlib inline\n", "from clipf.sub import y\n"]}]}
    write(root, "nb.ipynb", json.dumps(nb))
    deps.modules.cache_clear()
    deps.commands.cache_clear()
    return root


def test_graph_follows_lazy_relative_and_named_imports(tiny):
    mods = deps.modules(tiny)
    assert set(mods["clipf.a"].imports) == {"clipf.b", "clipf.sub.x"}
    assert set(mods["clipf.b"].named) == {"clipf.c", "clipf.sub.y"}
    assert mods["clipf.c"].data == {"clipf/model_configs"}
    assert set(mods["clipf.sub.x"].imports) == {"clipf.b", "clipf.a"}
    assert mods["clipf.sub.x"].private == [(2, "clipf.a", "_hidden")]
    assert deps.cycles(deps.edges(tiny)) == [["clipf.a", "clipf.sub.x"]]
    # importing clipf.sub.x runs clipf/sub/__init__.py, which imports y
    assert deps.closure(["clipf.sub.x"], tiny) == {
        "clipf", "clipf.sub", "clipf.sub.x", "clipf.sub.y", "clipf.a", "clipf.b", "clipf.c"
    }  # fmt: skip


def test_stage_commands(tiny):
    # `clipf a`: the dispatcher and the module it selects, not the other commands
    assert deps.stage_code("clipf a --x 1", tiny) == [
        "clipf/__init__.py", "clipf/a.py", "clipf/b.py", "clipf/c.py", "clipf/cli.py", "clipf/model_configs",
        "clipf/sub",
    ]  # fmt: skip
    assert deps.stage_code("mkdir -p out && papermill --no-progress-bar nb.ipynb out/nb.ipynb -p k 1", tiny) == [
        "clipf/__init__.py", "clipf/sub"
    ]  # fmt: skip
    assert deps.stage_code("torchrun --nproc_per_node 2 -m clipf.c --epochs 1", tiny) == [
        "clipf/__init__.py", "clipf/c.py", "clipf/model_configs"
    ]  # fmt: skip
    assert deps.stage_code("echo nothing of ours", tiny) == []
