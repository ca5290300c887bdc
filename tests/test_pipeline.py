"""The DVC pipeline: the smoke profile's whole DAG from a fresh copy, a no-op second repro, one grid
change re-running only its cells, and bad input named before anything runs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _smoke import copy_repo, missing_upstream, run, smoke_study

from clipf import profiles

REPO = Path(__file__).resolve().parents[1]
needs_upstream = pytest.mark.skipif(
    bool(missing_upstream()), reason=f"upstream not landed: {missing_upstream()}"
)


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_dvc_yaml_reads_only_live_sections():
    """Every ${...} of dvc.yaml is a live key of params.yaml (or foreach's key/item)."""
    import re

    text = (REPO / "dvc.yaml").read_text()
    roots = {m.split(".")[0] for m in re.findall(r"\$\{([A-Za-z_][\w.]*)\}", text)}
    assert roots <= set(profiles.LIVE_KEYS) | {"key", "item"}
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert profiles.check(params)["profile"] == params["profile"], (
        "commit params.yaml planned (clipf study plan)"
    )


@pytest.mark.slow
@needs_upstream
def test_smoke_dag_then_nothing_to_do():
    repo = smoke_study()
    seconds = float((repo.parent / "smoke.log").read_text().split()[0])
    assert seconds < 300, f"smoke DAG took {seconds:.0f} s"
    tidy = pd.read_csv(repo / "results" / "results.csv")
    cells = yaml.safe_load((repo / "params.yaml").read_text())["cells"]
    assert set(cells) <= set(tidy["run"])
    assert {"pretrain", "finetune"} <= set(tidy["checkpoint"])
    summary = json.loads((repo / "results" / "summary.json").read_text())
    assert summary["pretrain"] and summary["finetune"]
    for name in (
        "main_table.md",
        "main_table.tex",
        "main_table.csv",
        "accuracy_vs_text_tokens.png",
        "accuracy_vs_text_tokens.svg",
    ):
        assert (repo / "figures" / "report" / name).stat().st_size > 0, name
    assert (repo / "figures" / "frequency" / "keep_rates.svg").exists()

    again = run(repo, "dvc", "repro", check=True)
    assert stages_run(again.stdout) == set(), again.stdout
    assert "up to date" in again.stdout
    status = run(repo, "dvc", "status", check=True)
    assert "up to date" in status.stdout, status.stdout
    metrics = run(repo, "dvc", "metrics", "show", check=True)
    assert "results/summary.json" in metrics.stdout


@pytest.mark.slow
@needs_upstream
def test_one_grid_change_reruns_only_its_cells():
    from clipf import study

    repo = smoke_study()
    params = repo / "params.yaml"
    saved = params.read_text()
    try:
        study._set(params, ["profiles.smoke.grid.text_tokens=[5]"])
        run(repo, sys.executable, "-m", "clipf.study", "plan", check=True)
        cells = yaml.safe_load(params.read_text())["cells"]
        (cell,) = [c for c in cells if "-k5-" in c]
        changed = set(json.loads(run(repo, "dvc", "status", "--json", check=True).stdout))
        assert f"pretrain@{cell}" in changed
        assert changed <= {
            "plan",
            f"pretrain@{cell}",
            f"finetune@{cell}",
            f"eval@{cell}",
            "collect",
            "report",
        }, changed
    finally:
        params.write_text(saved)
    assert run(repo, "dvc", "status", "--json", check=True).stdout.strip() == "{}"


@needs_upstream
def test_bad_input_is_named_and_changes_nothing(tmp_path: Path):
    repo = copy_repo(tmp_path / "repo")
    before = (repo / "params.yaml").read_text()
    cases = [
        (["--profile", "nope"], "unknown profile 'nope'"),
        (["--profile", "cc12m"], "shard not found: /data/cc12m/cc12m-train-0000.tar"),
        (["--set", "profiles.smoke.grid.maskers=[freq]", "--profile", "smoke"], "unknown masker 'freq'"),
        (
            ["--set", "profiles.smoke.grid.text_tokens=[2]", "--profile", "smoke"],
            "text_tokens must be an integer in [3, 77]",
        ),
    ]
    for argv, message in cases:
        proc = run(repo, sys.executable, "-m", "clipf.study", *argv)
        assert proc.returncode == 2 and message in proc.stderr, (argv, proc.stderr)
        assert (repo / "params.yaml").read_text() == before
    assert not (repo / "dvc.lock").exists() and not (repo / "data").exists()


@needs_upstream
def test_notebook_without_parameters_cell_stops_the_plan_stage(tmp_path: Path):
    repo = copy_repo(tmp_path / "repo")
    nb = json.loads((repo / "notebooks" / "03_finetune.ipynb").read_text())
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("tags", None)
    (repo / "notebooks" / "03_finetune.ipynb").write_text(json.dumps(nb))
    proc = run(repo, "dvc", "repro", "plan")
    assert proc.returncode != 0
    assert "03_finetune.ipynb: no code cell tagged 'parameters'" in proc.stdout + proc.stderr
    assert not (repo / "results" / "plan.json").exists()


@pytest.mark.slow
@needs_upstream
def test_failed_stage_is_named_and_not_recorded(tmp_path: Path):
    from clipf import study

    repo = tmp_path / "repo"
    shutil.copytree(smoke_study(), repo, symlinks=True)
    cell = next(iter(yaml.safe_load((repo / "params.yaml").read_text())["cells"]))
    before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"][f"finetune@{cell}"]
    study._set(repo / "params.yaml", ["finetune.lr=oops"])  # open_clip_train rejects it
    proc = run(repo, "dvc", "repro", f"finetune@{cell}")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"failed to reproduce 'finetune@{cell}'" in out and f"fine-tuning {cell} failed" in out
    assert yaml.safe_load((repo / "dvc.lock").read_text())["stages"][f"finetune@{cell}"] == before
    status = run(repo, "dvc", "status", f"finetune@{cell}")
    assert f"finetune@{cell}" in status.stdout  # not up to date: the next repro runs it again
