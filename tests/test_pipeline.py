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
    # every cell of the smoke plan is in its one world, shapes: RUN/cell.json -> the world column
    worlds = yaml.safe_load((repo / "params.yaml").read_text())["worlds"]
    assert list(worlds) == ["shapes"] and {c["world"] for c in cells.values()} == {"shapes"}
    for key, cell in cells.items():
        assert json.loads((repo / "runs" / key / "cell.json").read_text()) == cell
    assert set(tidy[tidy.run.isin(list(cells))].world) == {"shapes"}
    assert (repo / "data" / "shapes" / "train").is_dir() and (repo / "data" / "shapes-freq.json").is_file()
    assert not (repo / "data" / "freq.json").exists() and not (repo / "data" / "world").exists()
    summary = json.loads((repo / "results" / "report" / "shapes" / "summary.json").read_text())
    assert summary["pretrain"] and summary["finetune"] and summary["pretrain_masked"]
    for name in ("epoch_curves.csv", "val_curves.csv"):
        assert (repo / "results" / "report" / "shapes" / name).stat().st_size > 0, name
    figures = repo / "figures" / "report" / "shapes"
    assert "Pre-train (masked prompts)" in (figures / "main_table.md").read_text()
    for name in (
        "main_table.md",
        "main_table.tex",
        "main_table.csv",
        "accuracy_vs_text_tokens.png",
        "accuracy_vs_text_tokens.svg",
    ):
        assert (figures / name).stat().st_size > 0, name
    assert (repo / "figures" / "frequency" / "shapes" / "keep_rates.svg").exists()
    for nb in ("01_frequency-shapes.ipynb", "05_report-shapes.ipynb"):
        assert (repo / "results" / "notebooks" / nb).is_file(), nb
    assert not (repo / "build").exists()  # --here: the smoke profile ran at the copy's root
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
    assert "results/report/shapes/summary.json" in metrics.stdout


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
            "report@shapes",
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
    for argv in ([*cases[2][0], "--here"], [*cases[3][0], "--here"]):  # planned at the root: refused too
        cases.append((argv, next(m for a, m in cases if a == argv[:-1])))
    for argv, message in cases:
        proc = run(repo, sys.executable, "-m", "clipf.study", *argv)
        assert proc.returncode == 2 and message in proc.stderr, (argv, proc.stderr)
        assert (repo / "params.yaml").read_text() == before
        if "--here" not in argv and "nope" not in argv:  # a profile root's params.yaml is not planned either
            name = argv[argv.index("--profile") + 1]
            assert (repo / "build" / "profiles" / name / "params.yaml").read_text() == before, argv
    assert not (repo / "dvc.lock").exists() and not (repo / "data").exists()
    assert not list(repo.glob("build/profiles/*/dvc.lock")) and not list(repo.glob("build/profiles/*/data"))


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

    cfg = study.world_config(profiles.resolve(profiles.load(REPO / "params.yaml"), "smoke"), "shapes")
    cfg["data"]["dir"] = str(world_dir(tmp_path))
    cell = profiles.make_cell("frequency", 6, 0.75, 1, 1e-3, world="shapes")
    argv = study.train_argv(cfg, "pretrain", "c", cell, runs="R", options={"epochs": 3})
    joined = " ".join(argv)
    assert f"--train-data {tmp_path}/world/train/{{00000..00001}}.tar" in joined
    assert "--train-num-samples 128" in joined and f"--val-data {tmp_path}/world/val/00000.tar" in joined
    assert "--logs-dir R --name c/pretrain" in joined
    assert "--reduction-mask frequency --text-tokens 6 --force-patch-dropout 0.75" in joined
    assert "--freq-table data/shapes-freq.json --freq-threshold 0.001 --freq-rule authors --seed 1" in joined
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
    assert study.read_metrics(run)["epoch"].tolist() == [1, 2]  # clipf.metrics', re-exported
    with pytest.raises(FileNotFoundError, match="metrics.json: missing"):
        study.read_metrics(tmp_path / "none" / "pretrain")
    assert report.val_curves({"none": cells["r"]}, tmp_path).empty  # an untrained cell: no rows
    assert study.planned_rows(pd.DataFrame(rows + [{**rows[0], "run": "stale"}]), cells)[
        "run"
    ].unique().tolist() == ["r"]


def test_val_curves_and_compute_leave_the_threshold_sweep_out(tmp_path: Path):
    """The sweep's other frequency cells are not averaged into the main cell's curves or compute row."""
    cells = {
        "block-k8-m75-s0": profiles.make_cell("block", 8, 0.75, 0, None),
        **{
            f"frequency-k8-m75-t{t}-s{s}": profiles.make_cell("frequency", 8, 0.75, s, float(t))
            for t, seeds in (("6e-6", (0, 1)), ("1e-6", (0,)), ("1e-2", (0,)))
            for s in seeds
        },
        "frequency-k8-m75-t6e-6-s9": profiles.make_cell("frequency", 8, 0.75, 9, 6e-6, "clamped"),
    }
    for i, name in enumerate(cells):
        run = tmp_path / name / "pretrain"
        run.mkdir(parents=True)
        recs = [{"epoch": 1, "samples_per_second": 10.0 * (i + 1), "val/image_to_text_R@1": 0.1 * (i + 1)}]
        (run / "metrics.json").write_text(json.dumps(recs))

    def runs(frame):
        return sorted(frame["run"].unique())

    main = ["block-k8-m75-s0", "frequency-k8-m75-t6e-6-s0", "frequency-k8-m75-t6e-6-s1"]
    assert runs(report.val_curves(cells, tmp_path)) == main  # default: the most common threshold and rule
    assert runs(report.run_compute(cells, tmp_path, 6e-6, "authors")) == main
    assert runs(report.val_curves(cells, tmp_path, threshold=1e-2)) == [
        "block-k8-m75-s0",
        "frequency-k8-m75-t1e-2-s0",
    ]
    assert runs(report.run_compute(cells, tmp_path, 6e-6, "clamped")) == [
        "block-k8-m75-s0",
        "frequency-k8-m75-t6e-6-s9",
    ]
    compute = report.compute_table(
        report.run_compute(cells, tmp_path), pd.DataFrame(columns=["run", "checkpoint", "value"])
    )
    freq = compute[compute.masker == "frequency"].iloc[0]
    assert freq.samples_per_second == pytest.approx(25.0)  # seeds 0 and 1 of t = 6e-6 only: (20 + 30) / 2
    assert report.main_cells({}) == {}


# ---------------------------------------------------------------- worlds and profile roots (fast)


def test_world_config_is_one_worlds_view(tmp_path: Path, monkeypatch, capsys):
    """``study.world_config``: the world's data (``data/<w>``), preset, frequency table
    (``data/<w>-freq.json``), main-table set and only its cells; the plan itself is not changed; a world
    not in the plan is named. ``config(world=...)`` is that view of the live plan, and the data / freq
    stages refuse an unknown world before writing anything."""
    from clipf import study

    live = profiles.resolve(profiles.load(REPO / "params.yaml"), "study")
    for world, dataset in (("shapes", "wds/world_objects"), ("concepts", "wds/concepts")):
        cfg = study.world_config(live, world)
        assert cfg["world"] == world
        assert cfg["data"]["dir"] == f"data/{world}" and cfg["data"]["preset"] == world
        assert cfg["freq"]["table"] == f"data/{world}-freq.json"
        assert cfg["report"]["dataset"] == dataset
        assert cfg["cells"] and {c["world"] for c in cfg["cells"].values()} == {world}
        assert list(cfg["cells"]) == [k for k, c in live["cells"].items() if c["world"] == world]
        assert len(cfg["cells"]) == len(live["cells"]) // 2
        # the other sections are the plan's
        assert cfg["freq"]["threshold"] == live["freq"]["threshold"] and cfg["pretrain"] == live["pretrain"]
        assert cfg["data"]["train"] == live["data"]["train"]
    # the plan is untouched: no world in it, its report.dataset still the mapping
    assert "world" not in live and "dir" not in live["data"] and "table" not in live["freq"]
    assert live["report"]["dataset"] == {"shapes": "wds/world_objects", "concepts": "wds/concepts"}
    with pytest.raises(
        profiles.ProfileError, match=r"world 'circles' is not in the plan \(worlds: shapes, concepts\)"
    ):
        study.world_config(live, "circles")
    with pytest.raises(profiles.ProfileError, match=r"world 'shapes' is not in the plan \(worlds: none\)"):
        study.world_config({**live, "worlds": {}}, "shapes")

    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    profiles.plan(params, "smoke")
    cfg = study.config(params_file=params, world="shapes")
    assert cfg["data"]["dir"] == "data/shapes" and list(cfg["cells"]) == list(profiles.load(params)["cells"])
    assert "world" not in study.config(params_file=params)
    assert (
        study.config("study", params_file=params, world="concepts")["freq"]["table"]
        == "data/concepts-freq.json"
    )
    with pytest.raises(profiles.ProfileError, match="world 'concepts' is not in the plan"):
        study.config(params_file=params, world="concepts")  # the smoke plan has only shapes
    monkeypatch.chdir(tmp_path)
    for sub in ("data", "freq"):
        out = tmp_path / "out" / sub
        assert study.cli([sub, "--world", "circles", "--out", str(out)]) == 2
        assert "world 'circles' is not in the plan (worlds: shapes)" in capsys.readouterr().err
        assert not out.exists()


def profile_repo(tmp_path: Path) -> Path:
    """A copy of what a profile root is made from (study.SCAFFOLD), committed profile `study`."""
    root = tmp_path / "repo"
    root.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    from clipf import study

    for name in study.SCAFFOLD:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=skip)
        else:
            shutil.copyfile(src, root / name)
    (root / ".dvc" / "cache").mkdir(parents=True)
    return root


def test_profile_root_and_scaffold(tmp_path: Path):
    """The committed profile (params.yaml's ``profile:``) runs at the root, any other in
    build/profiles/<P>: a DVC project of its own (dvc.yaml, params.yaml, code and notebooks copied; no SCM;
    the root's DVC cache), refreshed from the root on every run, its own lock and outputs kept."""
    from clipf import study

    root = profile_repo(tmp_path)
    committed = profiles.load(root / "params.yaml")["profile"]
    assert committed == "study"
    assert study.profile_root(root, None) == root and study.profile_root(root, committed) == root
    assert study.profile_root(root, "smoke") == root / "build" / "profiles" / "smoke"
    assert study.profile_root(root, "smoke", here=True) == root
    assert not (root / "build").exists()  # profile_root only names the folder

    dest = study.profile_root(root, "smoke")
    assert study.scaffold(root, dest) == dest
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", "notebooks/02_pretrain.ipynb", "clipf/study.py"):
        assert (dest / name).read_bytes() == (root / name).read_bytes(), name
    assert not list(dest.glob("clipf/**/__pycache__"))
    config = (dest / ".dvc" / "config").read_text()
    assert "no_scm = True" in config
    assert f"dir = {(root / '.dvc' / 'cache').resolve()}" in config.splitlines()[-1]
    # a refresh: the root's code again (a file gone at the root is gone there), its lock and outputs kept
    (dest / "clipf" / "stale.py").write_text("x = 1\n")
    (dest / "dvc.lock").write_text("schema: '2.0'\n")
    (dest / "runs" / "c").mkdir(parents=True)
    (root / "notebooks" / "99_new.ipynb").write_text("{}")
    study.scaffold(root, dest)
    assert not (dest / "clipf" / "stale.py").exists() and (dest / "notebooks" / "99_new.ipynb").exists()
    assert (dest / "dvc.lock").read_text() == "schema: '2.0'\n" and (dest / "runs" / "c").is_dir()


def test_a_profile_root_has_every_file_the_pipeline_reads():
    """Every dep of dvc.yaml that no stage writes lies in what a profile root copies (study.SCAFFOLD), so a
    profile other than the committed one (``make demo``) finds it: the predictions stage's checks in docs/
    were missing there once, and ``make demo`` failed at its last stage."""
    from clipf import study

    def prefix(path: str) -> str:  # a templated path: its folder before the first ${...}
        return path.split("${", 1)[0].rstrip("/").rsplit("/", 1)[0] if "${" in path else path

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    bodies = [st.get("do", st) for st in stages.values()]
    outs = {prefix(next(iter(o)) if isinstance(o, dict) else o) for b in bodies for o in b.get("outs", [])}
    deps = {prefix(d) for b in bodies for d in b.get("deps", [])}

    def made(dep: str) -> bool:
        return any(dep == o or dep.startswith(o + "/") or o.startswith(dep + "/") for o in outs)

    def copied(dep: str) -> bool:
        return any(dep == name or dep.startswith(name + "/") for name in study.SCAFFOLD)

    sources = sorted(d for d in deps if not made(d))
    assert "docs/predictions.yaml" in sources and "notebooks/02_pretrain.ipynb" in sources
    assert [d for d in sources if not copied(d)] == []
    assert all((REPO / name).exists() for name in study.SCAFFOLD)


def fake_dvc(monkeypatch) -> list:
    """Record the dvc command run_study would run (never run it) and where; exit 0."""
    import subprocess

    from clipf import study

    calls = []

    def fake_run(argv, cwd=None, env=None, **kw):
        calls.append((list(argv), Path(cwd)))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(study.subprocess, "run", fake_run)
    return calls


def test_a_profile_plans_in_its_own_root_and_the_root_is_untouched(tmp_path: Path, monkeypatch, capsys):
    """``clipf study --profile smoke`` (committed: study) plans and runs dvc in build/profiles/smoke; the
    root's params.yaml stays byte for byte; ``--here`` plans and runs at the root; the committed profile
    runs at the root without a profile folder."""
    from clipf import study

    root = profile_repo(tmp_path)
    before = (root / "params.yaml").read_bytes()
    calls = fake_dvc(monkeypatch)
    monkeypatch.chdir(root / "notebooks")  # the root is found from below it
    assert study.run_study("smoke", sets=["profiles.smoke.grid.text_tokens=[5]"]) == 0
    dest = root / "build" / "profiles" / "smoke"
    assert calls == [([study.tool("dvc"), "repro"], dest)]
    assert (root / "params.yaml").read_bytes() == before
    planned = profiles.load(dest / "params.yaml")
    assert planned["profile"] == "smoke" and profiles.check(planned)["profile"] == "smoke"
    assert list(planned["cells"]) == ["shapes-frequency-k5-m75-t6e-6-s0", "shapes-truncate-k32-m0-s0"]
    assert planned["worlds"] == {"shapes": {"preset": "shapes", "dataset": "wds/world_objects"}}
    assert "runs in" in capsys.readouterr().out
    # the root's plan is still the committed study's
    assert profiles.check(profiles.load(root / "params.yaml"))["profile"] == "study"

    calls.clear()
    assert study.run_study("smoke", dry_run=True, here=True) == 0
    assert calls == [([study.tool("dvc"), "repro", "--dry"], root)]
    assert profiles.load(root / "params.yaml")["plan"]["profile"] == "smoke"

    calls.clear()
    (root / "params.yaml").write_bytes(before)
    shutil.rmtree(root / "build")
    assert study.run_study("study", dry_run=True) == 0
    assert calls == [([study.tool("dvc"), "repro", "--dry"], root)] and not (root / "build").exists()
    assert profiles.check(profiles.load(root / "params.yaml"))["profile"] == "study"


def test_an_unknown_profile_makes_no_profile_root(tmp_path: Path, monkeypatch):
    from clipf import study

    root = profile_repo(tmp_path)
    calls = fake_dvc(monkeypatch)
    monkeypatch.chdir(root)
    with pytest.raises(profiles.ProfileError, match="unknown profile 'nope'"):
        study.run_study("nope")
    assert calls == []
    assert not (root / "build" / "profiles" / "nope").exists()
