"""The DVC pipeline: the smoke profile's whole DAG from a fresh copy (UTA stages included), a no-op second
repro, one grid change re-running only its cells, a UTA change only the UTA stages, and bad input named
before anything runs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _smoke import copy_repo, run, smoke_study

from clipf import profiles, report

REPO = Path(__file__).resolve().parents[1]


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
def test_smoke_dag_then_nothing_to_do():
    repo = smoke_study()
    tidy = pd.read_csv(repo / "results" / "results.csv")
    cells = yaml.safe_load((repo / "params.yaml").read_text())["cells"]
    assert set(cells) <= set(tidy["run"])
    assert {"pretrain", "finetune"} <= set(tidy["checkpoint"])
    # both zero-shot protocols (eval.protocols); the frequency cell's masked prompts use its rule
    assert set(tidy["protocol"]) == {"full", "masked"}
    freq_cell = next(k for k, c in cells.items() if c["masker"] == "frequency")
    assert cells[freq_cell]["rule"] == "authors" and set(tidy[tidy.run == freq_cell].freq_rule) == {"authors"}
    (masked,) = (repo / "runs" / freq_cell / "eval" / "pretrain" / "masked").glob("wds_world_objects.json")
    prompts = json.loads(masked.read_text())["clipf"]["prompts"]
    assert (prompts["masker"], prompts["text_tokens"], prompts["options"]["rule"]) == (
        "frequency",
        cells[freq_cell]["text_tokens"],
        "authors",
    )
    summary = json.loads((repo / "results" / "summary.json").read_text())
    assert summary["pretrain"] and summary["finetune"] and summary["pretrain_masked"]
    assert "Pre-train (masked prompts)" in (repo / "figures" / "report" / "main_table.md").read_text()
    for name in (
        "main_table.md",
        "main_table.tex",
        "main_table.csv",
        "accuracy_vs_text_tokens.png",
        "accuracy_vs_text_tokens.svg",
    ):
        assert (repo / "figures" / "report" / name).stat().st_size > 0, name
    assert (repo / "figures" / "frequency" / "keep_rates.svg").exists()
    # UTA: a student per uta_cells entry, fine-tuned and evaluated; results/uta.csv beside its teacher
    students = yaml.safe_load((repo / "params.yaml").read_text())["uta_cells"]
    assert students and set(tidy[tidy.objective == "uta"].run) == set(students)
    assert set(tidy[tidy.run.isin(list(students))].checkpoint) == {"pretrain", "finetune"}
    assert set(tidy[tidy.run.isin(list(cells))].objective) == {"clip"}
    uta = pd.read_csv(repo / "results" / "uta.csv")
    assert set(uta.system) == {"teacher", "clip", "uta"} and set(uta.phase) == {"pretrain", "finetune"}
    assert {"classification (mean)", "retrieval (mean)"} <= set(uta.dataset)
    assert (uta[uta.system == "uta"].epochs > uta[uta.system == "clip"].epochs.max()).all()  # compute-matched
    for name in ("mask_probability.png", "mask_probability.svg", "loss_curves.png", "loss_curves.svg"):
        assert (repo / "figures" / "uta" / name).stat().st_size > 0, name
    for key in students:
        assert (repo / "runs" / key / "finetune" / "export" / "open_clip_model.safetensors").is_file()
        assert json.loads((repo / "runs" / key / "compute.json").read_text())["matched"]

    again = run(repo, "dvc", "repro", check=True)
    assert stages_run(again.stdout) == set(), again.stdout
    assert "up to date" in again.stdout
    status = run(repo, "dvc", "status", check=True)
    assert "up to date" in status.stdout, status.stdout
    metrics = run(repo, "dvc", "metrics", "show", check=True)
    assert "results/summary.json" in metrics.stdout


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_uta_change_reruns_only_the_uta_stages():
    from clipf import study

    repo = smoke_study()
    params = repo / "params.yaml"
    saved = params.read_text()
    try:
        study._set(params, ["profiles.smoke.uta.mask_ratio=0.75"])
        run(repo, sys.executable, "-m", "clipf.study", "plan", check=True)
        changed = set(json.loads(run(repo, "dvc", "status", "--json", check=True).stdout))
        students = yaml.safe_load(params.read_text())["uta_cells"]
        assert {f"uta@{key}" for key in students} <= changed
        assert changed <= {"plan", "uta_report", *(f"uta@{key}" for key in students)}, changed
    finally:
        params.write_text(saved)
    assert run(repo, "dvc", "status", "--json", check=True).stdout.strip() == "{}"


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


# ---------------------------------------------------------------- the stage helpers (fast)


def world_dir(tmp_path: Path) -> Path:
    for split, sizes in (("train", {"00000.tar": 64, "00001.tar": 64}), ("val", {"00000.tar": 32})):
        (tmp_path / "world" / split).mkdir(parents=True)
        (tmp_path / "world" / split / "sizes.json").write_text(json.dumps(sizes))
    return tmp_path / "world"


def test_train_argv_for_both_phases(tmp_path: Path):
    from clipf import study

    cfg = profiles.resolve(profiles.load(REPO / "params.yaml"), "smoke")
    cfg["data"]["dir"] = str(world_dir(tmp_path))
    cell = profiles.make_cell("frequency", 6, 0.75, 1, 1e-3)
    argv = study.train_argv(cfg, "pretrain", "c", cell, runs="R", options={"epochs": 3})
    joined = " ".join(argv)
    assert f"--train-data {tmp_path}/world/train/{{00000..00001}}.tar" in joined
    assert "--train-num-samples 128" in joined and f"--val-data {tmp_path}/world/val/00000.tar" in joined
    assert "--logs-dir R --name c/pretrain" in joined
    assert "--reduction-mask frequency --text-tokens 6 --force-patch-dropout 0.75" in joined
    assert "--freq-table data/freq.json --freq-threshold 0.001 --freq-rule authors --seed 1" in joined
    assert "--epochs 3" in joined and "--epochs 1" not in joined
    clip = study.train_argv(cfg, "pretrain", "b", profiles.make_cell("truncate", 32, 0.0, 0, None))
    assert "--force-patch-dropout" not in clip and "--freq-table" not in clip
    ft = " ".join(
        study.train_argv(
            cfg, "finetune", "c", {"seed": 1}, runs="R", pretrained="R/c/pretrain/checkpoints/epoch_1.pt"
        )
    )
    assert "--finetune" in ft and "--pretrained R/c/pretrain/checkpoints/epoch_1.pt" in ft
    assert "--model clipf-vit-micro" in ft and "--reduction-mask" not in ft and "--name c/finetune" in ft


def test_shards_are_checked_by_name(tmp_path: Path):
    from clipf import study

    (tmp_path / "a-0.tar").write_bytes(b"")
    assert study.check_shards(f"{tmp_path}/a-{{0..0}}.tar") == 1
    with pytest.raises(study.StageError, match=r"shard not found: .*a-1.tar \(and 1 more of 3\)"):
        study.check_shards(f"{tmp_path}/a-{{0..2}}.tar")


def test_epoch_accuracy_val_curves_and_compute(tmp_path: Path):
    from clipf import study

    rows = []
    for ckpt, epochs, v in (("pretrain-epoch_1", 1, 0.1), ("pretrain", 2, 0.3), ("finetune", 3, 0.5)):
        rows.append(
            dict(
                run="r",
                masker="block",
                text_tokens=8,
                image_mask=0.75,
                seed=0,
                epochs=epochs,
                checkpoint=ckpt,
                dataset="d",
                task="zeroshot_classification",
                metric="acc1",
                value=v,
            )
        )
    masked = [{**r, "protocol": "masked", "value": r["value"] / 2} for r in rows]
    for r in rows:
        r["protocol"] = "full"
    curves = report.epoch_accuracy(pd.DataFrame(rows + masked))
    assert curves[["epoch", "value"]].values.tolist() == [[1, 10.0], [2, 30.0]]
    curves = report.epoch_accuracy(pd.DataFrame(rows + masked), protocol="masked")
    assert curves[["epoch", "value"]].values.tolist() == [[1, 5.0], [2, 15.0]]
    # the threshold sweep's other frequency cells stay out of the curves, as out of the main table
    sweep = [
        {**r, "run": f"frequency-k8-m75-t{t}-s0", "masker": "frequency", "value": v}
        for t, v in (("1e-2", 0.2), ("3e-3", 0.9))
        for r in rows[:2]
    ]
    curves = report.epoch_accuracy(pd.DataFrame(rows + sweep), threshold=1e-2)
    freq = curves[curves.masker == "frequency"]
    assert freq["run"].unique().tolist() == ["frequency-k8-m75-t1e-2-s0"] and set(freq["value"]) == {20.0}

    run = tmp_path / "r" / "pretrain"
    run.mkdir(parents=True)
    recs = [
        {
            "epoch": e,
            "samples_per_second": 10.0 * e,
            "text_tokens_seen": 100 * e,
            "val/image_to_text_R@1": 0.1 * e,
        }
        for e in (1, 2)
    ]
    (run / "metrics.json").write_text(json.dumps(recs))
    cells = {"r": profiles.make_cell("block", 8, 0.75, 0, None)}
    val = report.val_curves(cells, tmp_path)
    assert val["value"].tolist() == pytest.approx([10.0, 20.0])
    compute = report.run_compute(cells, tmp_path).iloc[0]
    assert compute.samples_per_second == 15.0 and compute.text_tokens_seen == 200
    assert study.planned_rows(pd.DataFrame(rows + [{**rows[0], "run": "stale"}]), cells)[
        "run"
    ].unique().tolist() == ["r"]
