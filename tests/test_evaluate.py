"""clipf.evaluate: CLIP_benchmark end to end on a tiny model over generated evaluation sets
(classification and retrieval), the tidy table against the raw JSON, caching, bad input, and the
stock ``clip_benchmark`` CLI on an export."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clipf import evaluate as ev
from clipf.evaluate.base import CELL_NAME
from clipf.files import CONFIG_NAME, WEIGHTS_NAME

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 20)}


def png(rgb, seed: int, size: int = 32) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(rgb)[None, None] + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_shards(folder: Path, samples: list[dict], nshards: int = 1) -> None:
    import webdataset as wds

    (folder / "test").mkdir(parents=True, exist_ok=True)
    for s in range(nshards):
        with wds.TarWriter(str(folder / "test" / f"{s}.tar")) as sink:
            for i, sample in enumerate(samples[s::nshards]):
                sink.write({"__key__": f"s{s:02d}{i:05d}", **sample})
    (folder / "test" / "nshards.txt").write_text(f"{nshards}\n")


def classification_set(folder: Path, per_class: int = 3, nshards: int = 2) -> Path:
    names = list(COLORS)
    samples = [
        {"png": png(COLORS[c], 10 * i + j), "cls": str(i).encode()}
        for i, c in enumerate(names)
        for j in range(per_class)
    ]
    write_shards(folder, samples, nshards)
    (folder / "classnames.txt").write_text("\n".join(names) + "\n")
    (folder / "zeroshot_classification_templates.txt").write_text("a photo of a {c} square.\na {c} thing.\n")
    return folder


def retrieval_set(folder: Path, n: int = 12) -> Path:
    names = list(COLORS)
    samples = [
        {
            "png": png(COLORS[names[i % len(names)]], 100 + i),
            "txt": f"a {names[i % len(names)]} square\na picture that is {names[i % len(names)]}".encode(),
        }
        for i in range(n)
    ]
    write_shards(folder, samples, 1)
    (folder / "dataset_type.txt").write_text("retrieval\n")
    return folder


def tiny_checkpoint(path: Path, seed: int = 0, context: int = 32) -> Path:
    """A randomly initialised clipf-vit-micro (text tower of ``context`` tokens) as an open_clip_train
    checkpoint."""
    import open_clip

    from clipf import models

    models.register()
    torch.manual_seed(seed)
    model = open_clip.create_model("clipf-vit-micro", force_context_length=context)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, path)
    return path


def tiny_run(
    runs: Path, name: str = "frequency-k8-m75-t1e-3-s0", seed: int = 0, pretrain: dict | None = None
) -> Path:
    """A run folder as clipf.train leaves it: pretrain/ (an 8-token text tower) and finetune/ (32) with
    checkpoints, clipf.json and export/ (both at 32 tokens); ``pretrain``: clipf.json entries of the
    pre-training (masker, text_tokens, freq_table, freq_rule, ...)."""
    from clipf import export

    run = runs / name
    pre = {"masker": "frequency", "text_tokens": 8, "image_mask": 0.75, "epochs": 2, **(pretrain or {})}
    for i, (phase, cfg) in enumerate(
        (
            ("pretrain", pre),
            ("finetune", {"masker": "none", "text_tokens": 32, "image_mask": 0.0, "epochs": 1}),
        )
    ):
        cfg = {
            "model": "clipf-vit-micro",
            "seed": seed,
            "freq_threshold": 1e-3,
            "pos_extend": "repeat",
            **cfg,
        }
        ckpt = tiny_checkpoint(
            run / phase / "checkpoints" / f"epoch_{cfg['epochs']}.pt", 10 * seed + i, cfg["text_tokens"]
        )
        (run / phase / "clipf.json").write_text(json.dumps(cfg))
        export.export(ckpt, "clipf-vit-micro", run / phase / "export", verify=False)
    return run


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    classification_set(root / "eval" / "colors")
    retrieval_set(root / "eval" / "captions")
    return root


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, world):
    """One run, both checkpoints, both sets: evaluated once for the module."""
    runs = tmp_path_factory.mktemp("runs")
    run = tiny_run(runs)
    df = ev.evaluate_run(run, world=world, num_workers=0, threads=1)
    return runs, run, df


FAST = {"num_workers": 0, "threads": 1}


# ---------------------------------------------------------------- end to end


def test_discover_world_sets(world):
    assert ev.discover(world / "eval") == ["wds/captions", "wds/colors"]
    assert ev.discover(world / "eval" / "colors") == ["wds/colors"]
    spec = ev.check_dataset("wds/captions", str(world / "eval"))
    assert spec.task == "zeroshot_retrieval" and spec.root == world / "eval" / "captions"
    template = ev.check_dataset("wds/colors", str(world / "eval" / "{dataset}"))
    assert template.task == "zeroshot_classification" and template.root == world / "eval" / "colors"


def test_embedded_world_sets_all_evaluated(tmp_path):
    """Every set `clipf data synth` writes under eval/ is found and evaluated (classification and retrieval)."""
    generate = pytest.importorskip("clipf.world.generate")
    world = tmp_path / "world"
    generate.synthesize(world, n_train=4, n_val=0, image_size=32, n_eval=12, progress=False)
    sets = sorted(p.name for p in (world / "eval").iterdir() if p.is_dir())
    assert ev.discover(world / "eval") == [f"wds/{s}" for s in sets]
    run = tiny_run(tmp_path / "runs")
    df = ev.evaluate_run(run, "pretrain", world=world, **FAST)
    assert sorted(df.dataset.unique()) == [f"wds/{s}" for s in sets]
    tasks = df.groupby("dataset").task.first()
    assert "zeroshot_retrieval" in set(tasks) and "zeroshot_classification" in set(tasks)
    for name in sets:
        assert (run / "eval" / "pretrain" / f"wds_{name}.json").is_file()


def test_evaluate_run_writes_clip_benchmark_json(evaluated):
    runs, run, df = evaluated
    assert sorted(df.attrs["computed"]) == sorted(
        (c, d) for c in ("pretrain", "finetune") for d in ("wds/captions", "wds/colors")
    )
    for ckpt in ("pretrain", "finetune"):
        cls = json.loads((run / "eval" / ckpt / "wds_colors.json").read_text())
        assert cls["task"] == "zeroshot_classification" and cls["dataset"] == "wds/colors"
        assert set(cls["metrics"]) == {"acc1", "acc5", "mean_per_class_recall"}
        assert 0 <= cls["metrics"]["acc1"] <= 1
        ret = json.loads((run / "eval" / ckpt / "wds_captions.json").read_text())
        assert ret["task"] == "zeroshot_retrieval"
        assert {f"image_retrieval_recall@{k}" for k in (1, 5, 10)} <= set(ret["metrics"])
        r = [ret["metrics"][f"text_retrieval_recall@{k}"] for k in (1, 5, 10)]
        assert 0 <= r[0] <= r[1] <= r[2] <= 1
        assert cls["clipf"]["text_context_length"] == 32  # evaluation text at the full context
    sha = {
        c: json.loads((run / "eval" / c / "wds_colors.json").read_text())["clipf"]
        for c in ("pretrain", "finetune")
    }
    assert sha["pretrain"]["checkpoint_sha256"] != sha["finetune"]["checkpoint_sha256"]
    summary = json.loads((run / "eval" / "summary.json").read_text())
    assert set(summary) == {"pretrain", "finetune"}
    raw = json.loads((run / "eval" / "pretrain" / "wds_colors.json").read_text())
    assert summary["pretrain"]["wds/colors"]["acc1"] == raw["metrics"]["acc1"]


def test_tidy_table_matches_raw_json(evaluated, tmp_path):
    runs, run, df = evaluated
    out = tmp_path / "results.csv"
    tidy = ev.collect(runs, out)
    assert list(tidy.columns) == ev.COLUMNS + ev.EXTRA_COLUMNS
    on_disk = pd.read_csv(out)
    assert list(on_disk.columns) == list(tidy.columns) and len(on_disk) == len(tidy)
    assert len(pd.read_parquet(out.with_suffix(".parquet"))) == len(tidy)
    n = 0
    for path in sorted((run / "eval").glob("*/*.json")):
        raw = json.loads(path.read_text())
        for metric, value in raw["metrics"].items():
            rows = tidy[
                (tidy.checkpoint == path.parent.name)
                & (tidy.dataset == raw["dataset"])
                & (tidy.metric == metric)
            ]
            if math.isnan(value):  # acc5 of a 4-class set
                assert rows.empty
                continue
            assert len(rows) == 1 and rows.value.iloc[0] == pytest.approx(value)
            assert rows.task.iloc[0] == raw["task"]
            n += 1
    assert n == len(tidy)
    pre = tidy[tidy.checkpoint == "pretrain"].iloc[0]
    assert (pre.run, pre.masker, pre.text_tokens, pre.image_mask, pre.seed, pre.epochs) == (
        run.name,
        "frequency",
        8,
        0.75,
        0,
        2,
    )
    assert tidy.finetune_epochs.eq(1).all() and tidy.model.eq("clipf-vit-micro").all()
    # the API's frame holds the same rows
    merged = df.merge(tidy, on=["checkpoint", "dataset", "metric"], suffixes=("", "_t"))
    assert len(merged) == len(df) == len(tidy)
    assert np.allclose(merged.value, merged.value_t)


def fake_result(run: Path, checkpoint: str, value: float) -> None:
    """One CLIP_benchmark JSON under RUN/eval/<checkpoint>/ (what `collect` reads)."""
    dump = {"dataset": "wds/colors", "task": "zeroshot_classification", "metrics": {"acc1": value}}
    (run / "eval" / checkpoint).mkdir(parents=True, exist_ok=True)
    (run / "eval" / checkpoint / "wds_colors.json").write_text(json.dumps(dump))


def test_objective_column(tmp_path):
    """`objective` is the pre-training's (clip / siglip / uta), on the fine-tune's rows too; a clipf.json
    without it is a contrastive run (clip); a run without clipf.json has none."""
    runs = tmp_path / "runs"
    phases = {
        "uta-s0": {
            "pretrain": {
                "objective": "uta",
                "masker": "none",
                "text_tokens": 32,
                "image_mask": 0.5,
                "seed": 0,
            },
            "finetune": {"objective": "clip", "finetune": True, "epochs": 1},
        },
        "truncate-k32-m0-s0": {"pretrain": {"objective": "clip", "masker": "truncate", "seed": 0}},
        "old-run": {"pretrain": {"masker": "block", "seed": 1}},
        "siglip-run": {"pretrain": {"objective": "siglip", "masker": "truncate", "seed": 0}},
        "bare": {},
    }
    for name, cfgs in phases.items():
        for phase, cfg in cfgs.items():
            (runs / name / phase).mkdir(parents=True)
            (runs / name / phase / "clipf.json").write_text(json.dumps(cfg))
        for i, ckpt in enumerate(("pretrain", "finetune")):
            fake_result(runs / name, ckpt, 0.1 * (i + 1))
    tidy = ev.collect(runs, tmp_path / "results.csv", parquet=False)
    assert list(tidy.columns) == ev.COLUMNS + ev.EXTRA_COLUMNS
    assert list(tidy.columns[:3]) == ["run", "world", "objective"]
    got = tidy.groupby("run").objective.agg(lambda s: sorted(set(s.fillna("-"))))
    assert got.to_dict() == {
        "bare": ["-"],
        "old-run": ["clip"],
        "siglip-run": ["siglip"],
        "truncate-k32-m0-s0": ["clip"],
        "uta-s0": ["uta"],
    }
    uta = tidy[tidy.run == "uta-s0"].set_index("checkpoint")
    assert uta.loc["pretrain", "image_mask"] == 0.5 and uta.loc["finetune", "finetune_epochs"] == 1
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert on_disk[on_disk.run == "uta-s0"].objective.eq("uta").all()
    assert ev.run_metadata(runs / "uta-s0")["objective"] == "uta"


def test_world_column_from_the_cell_file(tmp_path):
    """`world` is the study's cell's (RUN/cell.json, written by the pretrain stage), on every row of the
    run; a run without cell.json (or one without a world in it) has none: NaN in the frame, empty in the
    csv."""
    from clipf import study

    runs = tmp_path / "runs"
    cells = {
        "shapes-block-k8-m75-s0": {"world": "shapes", "masker": "block", "text_tokens": 8},
        "concepts-block-k8-m75-s0": {"world": "concepts", "masker": "block", "text_tokens": 8},
        "block-k8-m75-s0": None,  # no cell.json: a run outside a study plan
        "worldless": {"masker": "block", "text_tokens": 8},  # a cell.json without a world
    }
    for name, cell in cells.items():
        (runs / name / "pretrain").mkdir(parents=True)
        (runs / name / "pretrain" / "clipf.json").write_text(json.dumps({"masker": "block", "seed": 0}))
        if cell is not None:
            assert study.write_cell(runs / name, cell) == runs / name / CELL_NAME
        for i, ckpt in enumerate(("pretrain", "finetune")):
            fake_result(runs / name, ckpt, 0.1 * (i + 1))
    assert json.loads((runs / "shapes-block-k8-m75-s0" / "cell.json").read_text())["world"] == "shapes"
    tidy = ev.collect(runs, tmp_path / "results.csv", parquet=False)
    assert len(tidy) == 8 and tidy.columns[1] == "world"
    got = tidy.groupby("run").world.agg(lambda s: sorted(set(s.fillna("-"))))
    assert got.to_dict() == {
        "block-k8-m75-s0": ["-"],
        "concepts-block-k8-m75-s0": ["concepts"],
        "shapes-block-k8-m75-s0": ["shapes"],
        "worldless": ["-"],
    }
    assert ev.run_metadata(runs / "concepts-block-k8-m75-s0")["world"] == "concepts"
    assert math.isnan(ev.run_metadata(runs / "block-k8-m75-s0")["world"])
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert list(on_disk.columns[:2]) == ["run", "world"]
    by_run = on_disk.groupby("run").world.agg(lambda s: sorted(set(s.fillna("-"))))
    assert by_run.to_dict() == got.to_dict()
    lines = (tmp_path / "results.csv").read_text().splitlines()[1:]
    fields = {r: {line.split(",")[1] for line in lines if line.startswith(r + ",")} for r in cells}
    assert fields == {
        "shapes-block-k8-m75-s0": {"shapes"},
        "concepts-block-k8-m75-s0": {"concepts"},
        "block-k8-m75-s0": {""},  # an absent world is an empty field
        "worldless": {""},
    }


def test_cached_then_recomputed_on_new_weights(evaluated, world):
    runs, run, _ = evaluated
    target = run / "eval" / "finetune" / "wds_colors.json"
    before = {p: p.stat().st_mtime_ns for p in (run / "eval").glob("*/*.json")}
    again = ev.evaluate_run(run, world=world, **FAST)
    assert again.attrs["computed"] == [] and len(again.attrs["cached"]) == 4
    assert {p: p.stat().st_mtime_ns for p in (run / "eval").glob("*/*.json")} == before
    # a new fine-tune export (other weights): only its two results are recomputed
    from clipf import export

    ckpt = tiny_checkpoint(run / "finetune" / "checkpoints" / "epoch_1.pt", seed=123)
    export.export(ckpt, "clipf-vit-micro", run / "finetune" / "export", verify=False)
    old = json.loads(target.read_text())
    third = ev.evaluate_run(run, "finetune", ["wds/colors"], world / "eval", **FAST)
    assert third.attrs["computed"] == [("finetune", "wds/colors")]
    new = json.loads(target.read_text())
    assert new["clipf"]["checkpoint_sha256"] != old["clipf"]["checkpoint_sha256"]
    assert (run / "eval" / "pretrain" / "wds_colors.json").stat().st_mtime_ns == before[
        run / "eval" / "pretrain" / "wds_colors.json"
    ]


def test_epoch_checkpoint_is_exported_then_evaluated(tmp_path, world):
    run = tiny_run(tmp_path / "runs")
    ckpt = run / "pretrain" / "checkpoints" / "epoch_2.pt"
    df = ev.evaluate_run(run, str(ckpt), ["wds/colors"], world / "eval", **FAST)
    assert df.attrs["computed"] == [("pretrain-epoch_2", "wds/colors")]
    dump = json.loads((run / "eval" / "pretrain-epoch_2" / "wds_colors.json").read_text())
    # the .pt holds the same weights as the pretrain export: same numbers
    export_df = ev.evaluate_run(run, "pretrain", ["wds/colors"], world / "eval", **FAST)
    acc = export_df.set_index("metric").value
    assert dump["metrics"]["acc1"] == pytest.approx(acc["acc1"])
    assert dump["clipf"]["weights_sha256"] == ev.file_sha256(ckpt)
    assert not list((run / "eval" / "pretrain-epoch_2").glob("*/"))  # the temporary export is gone
    assert "pretrain-epoch_2" not in json.loads((run / "eval" / "summary.json").read_text())


def test_evaluate_model_workers_and_recall_k(evaluated, world):
    """Two DataLoader workers on one-shard sets give the single-process numbers; recall@k beyond the
    number of images is left out with a warning."""
    _, run, _ = evaluated
    with pytest.warns(UserWarning, match=r"12 images, recall@k for k in \[50\] left out"):
        out = ev.evaluate_model(
            run / "pretrain" / "export", None, world / "eval", num_workers=2, recall_k=(1, 50)
        )
    ret = out["wds/captions"]["metrics"]
    assert set(ret) == {"image_retrieval_recall@1", "text_retrieval_recall@1"}
    saved = json.loads((run / "eval" / "pretrain" / "wds_captions.json").read_text())["metrics"]
    assert ret["text_retrieval_recall@1"] == pytest.approx(saved["text_retrieval_recall@1"])
    acc = json.loads((run / "eval" / "pretrain" / "wds_colors.json").read_text())["metrics"]["acc1"]
    assert out["wds/colors"]["metrics"]["acc1"] == pytest.approx(acc)


def test_cli_eval_and_collect(evaluated, world, tmp_path, capsys):
    runs, run, _ = evaluated
    rc = ev.cli([str(run), "--world", str(world), "--datasets", "wds/colors", "--num-workers", "0"])
    assert rc == 0
    assert "0 evaluated, 2 cached" in capsys.readouterr().out
    out = tmp_path / "t" / "results.csv"
    from clipf.cli import main

    assert main(["eval", "collect", "--runs", str(runs), "--out", str(out)]) == 0
    assert pd.read_csv(out).run.unique().tolist() == [run.name]


def test_stock_clip_benchmark_cli_on_export(evaluated, world, tmp_path):
    """Plain clip_benchmark (no clipf import) on a run's export gives the numbers clipf eval wrote."""
    runs, run, _ = evaluated
    bindir = Path(sys.executable).parent
    cmd = [str(bindir / "clip_benchmark"), "eval", "--model_type", "open_clip"]  # the module docstring's
    cmd += ["--model", f"local-dir:{run / 'pretrain' / 'export'}", "--pretrained", ""]
    cmd += ["--dataset", "wds/colors", "--dataset_root", str(world / "eval" / "colors")]
    cmd += ["--task", "zeroshot_classification", "--batch_size", "64", "--num_workers", "0", "--no_amp"]
    cmd += ["--output", "stock-{dataset}.json", "--quiet"]
    assert " ".join(cmd[1:4]) in ev.__doc__ and "--output 'stock-{dataset}.json'" in ev.__doc__
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stock = json.loads((tmp_path / "stock-colors.json").read_text())
    ours = json.loads((run / "eval" / "pretrain" / "wds_colors.json").read_text())
    for key in ("dataset", "task", "language"):
        assert stock[key] == ours[key]
    for metric in ("acc1", "mean_per_class_recall"):
        assert stock["metrics"][metric] == pytest.approx(ours["metrics"][metric])


# ---------------------------------------------------------------- prompt protocols (full | masked)

PROMPT_WORDS = {"a": 400, "photo": 120, "of": 300, ".": 350, "square": 60, "thing": 40, "picture": 30}
PROMPT_WORDS.update({"that": 80, "is": 90, **{c: 5 for c in COLORS}})


@pytest.fixture()
def prompt_table(tmp_path) -> Path:
    """A counts table over the eval sets' prompt and caption words (colour names rare)."""
    from clipf.freq import FreqTable

    path = tmp_path / "freq.json"
    FreqTable(counts=dict(PROMPT_WORDS), total=sum(PROMPT_WORDS.values())).save(path)
    return path


def masked_cfg(table: Path, k: int = 5, **more) -> dict:
    """clipf.json entries of a frequency pre-training (as clipf.train records them)."""
    return {
        "masker": "frequency",
        "text_tokens": k,
        "freq_table": str(table),
        "freq_threshold": 1e-2,
        "freq_rule": "authors",
        "mask_options": {},
        **more,
    }


def test_masked_prompts_on_the_export_encode_as_the_k_token_tower(tmp_path, prompt_table):
    """Under --pos-extend repeat, masked prompts (<= K tokens, zero-padded to 32) on the 32-position export
    give the K-token tower's text features: the masked protocol is the tower as trained."""
    import open_clip

    from clipf import export, masking

    k = 5
    ckpt = tiny_checkpoint(tmp_path / "pretrain" / "checkpoints" / "epoch_1.pt", seed=3, context=k)
    tower = open_clip.create_model("clipf-vit-micro", force_context_length=k)
    tower.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    folder = export.export(ckpt, "clipf-vit-micro", tmp_path / "pretrain" / "export", verify=False)
    model = open_clip.create_model(f"local-dir:{folder}").eval()
    full = open_clip.get_tokenizer(f"local-dir:{folder}")
    assert full.context_length == 32 and tower.eval().context_length == k
    cfg_path = tmp_path / "pretrain" / "clipf.json"
    cfg_path.write_text(json.dumps(masked_cfg(prompt_table, k, pos_extend="repeat")))
    spec = ev.prompt_spec("masked", json.loads(cfg_path.read_text()), cfg_path)
    texts = [f"a photo of a {c} square." for c in COLORS] + ["a picture that is red", "a blue thing."]
    texts += ["a photo of a thing that is a green square of a yellow picture ."]
    ids = ev.prompt_tokenizer(full, {}, spec)(texts)
    trained = masking.MaskingTokenizer("frequency", k, seed=0, table=prompt_table, threshold=1e-2)(texts)
    assert ids.shape == (len(texts), 32) and torch.equal(ids[:, :k], trained) and not ids[:, k:].any()
    assert not torch.equal(ids, full(texts))  # the long prompts are masked, not cut
    kept = [masking.decode(row) for row in trained[:4]]
    assert all(c in text for c, text in zip(COLORS, kept, strict=True))  # rare words kept first
    with torch.no_grad():
        on_export, on_tower = model.encode_text(ids), tower.encode_text(trained)
    assert torch.allclose(on_export, on_tower, rtol=1e-5, atol=1e-6)
    # the same through the evaluation's own path: the export's tokenizer, the phase's clipf.json
    (spec2,) = ev.prompt_specs(ev.resolve_checkpoint(tmp_path, str(folder)), tmp_path, ["masked"]).values()
    assert spec2 == spec and spec.key()["table_sha256"] == ev.file_sha256(prompt_table)


def test_both_protocols_on_a_tiny_run(tmp_path, world, prompt_table, capsys):
    runs = tmp_path / "runs"
    run = tiny_run(runs, "frequency-k5-m75-t1e-2-s0", pretrain=masked_cfg(prompt_table))
    df = ev.evaluate_run(run, world=world, prompts=["full", "masked"], **FAST)
    out = capsys.readouterr().out
    assert "finetune (masked prompts)" in out and "no text masker: the masked protocol is the full one" in out
    assert sorted(df.protocol.unique()) == ["full", "masked"]
    assert len(df[df.protocol == "full"]) == len(df[df.protocol == "masked"])
    assert ("pretrain", "wds/colors", "masked") in df.attrs["computed"]
    assert ("finetune", "wds/colors", "masked") in df.attrs["computed"]  # shared with full: one run
    read = {
        (ckpt, p): json.loads((run / "eval" / ckpt / sub / "wds_colors.json").read_text())
        for ckpt in ("pretrain", "finetune")
        for p, sub in (("full", ""), ("masked", "masked"))
    }
    pre = read["pretrain", "masked"]["clipf"]
    assert pre["protocol"] == "masked" and pre["prompts"]["masker"] == "frequency"
    assert pre["prompts"]["text_tokens"] == 5 and pre["prompts"]["options"]["rule"] == "authors"
    assert pre["prompts"]["options"]["threshold"] == 1e-2 and not pre["prompts"]["same_as_full"]
    assert pre["cache_key"] != read["pretrain", "full"]["clipf"]["cache_key"]
    assert read["pretrain", "full"]["clipf"]["protocol"] == "full"
    fin_m, fin_f = read["finetune", "masked"], read["finetune", "full"]
    assert fin_m["clipf"]["prompts"]["same_as_full"] and fin_m["metrics"] == fin_f["metrics"]
    assert fin_m["clipf"]["cache_key"] == fin_f["clipf"]["cache_key"]
    for ckpt in ("pretrain", "finetune"):
        assert (run / "eval" / ckpt / "masked" / "wds_captions.json").is_file()
    # the tidy table and the summary carry both protocols
    tidy = ev.collect(runs, tmp_path / "results.csv", parquet=False)
    assert list(tidy.columns) == ev.COLUMNS + ev.EXTRA_COLUMNS
    assert tidy.groupby("protocol").size().to_dict() == {"full": len(tidy) // 2, "masked": len(tidy) // 2}
    assert tidy.freq_rule.eq("authors").all() and tidy.freq_threshold.eq(1e-2).all()
    row = tidy[(tidy.checkpoint == "pretrain") & (tidy.protocol == "masked") & (tidy.metric == "acc1")]
    assert row[row.dataset == "wds/colors"].value.iloc[0] == read["pretrain", "masked"]["metrics"]["acc1"]
    summary = json.loads((run / "eval" / "summary.json").read_text())
    assert set(summary) == {"pretrain", "finetune", "masked"}
    assert (
        summary["masked"]["pretrain"]["wds/colors"]["acc1"] == read["pretrain", "masked"]["metrics"]["acc1"]
    )
    assert summary["pretrain"]["wds/colors"]["acc1"] == read["pretrain", "full"]["metrics"]["acc1"]
    # cached under both; a new table recomputes the masked results only
    again = ev.evaluate_run(run, world=world, prompts=["full", "masked"], **FAST)
    assert again.attrs["computed"] == [] and len(again.attrs["cached"]) == 8
    from clipf.freq import FreqTable

    FreqTable(counts={**PROMPT_WORDS, "red": 500}, total=sum(PROMPT_WORDS.values()) + 495).save(prompt_table)
    third = ev.evaluate_run(
        run, "pretrain", ["wds/colors"], world / "eval", prompts=["full", "masked"], **FAST
    )
    assert third.attrs["computed"] == [("pretrain", "wds/colors", "masked")]
    # masked asked for alone on an unmasked phase: the full result on disk is its result
    shutil.rmtree(run / "eval" / "finetune" / "masked")
    fourth = ev.evaluate_run(run, "finetune", ["wds/colors"], world / "eval", prompts="masked", **FAST)
    assert fourth.attrs["computed"] == []  # the full result of the same encoding, written for masked
    assert (
        json.loads((run / "eval" / "finetune" / "masked" / "wds_colors.json").read_text())["metrics"]
        == (fin_f["metrics"])
    )


def test_masked_on_an_unmasked_baseline_is_full_and_says_so(tmp_path, world, capsys):
    run = tiny_run(
        tmp_path / "runs", "truncate-k32-m0-s0", pretrain={"masker": "truncate", "text_tokens": 32}
    )
    rc = ev.cli([str(run), "--world", str(world), "--datasets", "wds/colors", "--prompts", "full", "masked"])
    assert rc == 0
    out = capsys.readouterr().out
    assert (
        "pretrain (masked prompts)" in out
        and "truncation at K = 32: the masked protocol is the full one" in out
    )
    for ckpt in ("pretrain", "finetune"):
        full = json.loads((run / "eval" / ckpt / "wds_colors.json").read_text())
        masked = json.loads((run / "eval" / ckpt / "masked" / "wds_colors.json").read_text())
        assert masked["metrics"] == full["metrics"] and masked["clipf"]["prompts"]["same_as_full"]
    assert "protocol" in out  # the printed table has a column per (checkpoint, protocol)


def test_old_results_and_runs_read_as_before(tmp_path):
    """Results written before protocols existed are `full`; a frequency run whose clipf.json has no
    freq_rule was trained with the clamped rule (the only one clipf had), and masked prompts say so."""
    runs = tmp_path / "runs"
    (runs / "old" / "pretrain").mkdir(parents=True)
    (runs / "old" / "pretrain" / "clipf.json").write_text(json.dumps({"masker": "frequency", "seed": 0}))
    fake_result(runs / "old", "pretrain", 0.25)
    tidy = ev.collect(runs)
    assert tidy.protocol.tolist() == ["full"] and tidy.freq_rule.tolist() == ["clamped"]
    assert ev.trained_rule({"masker": "frequency"}) == "clamped"
    assert ev.trained_rule({"masker": "frequency", "freq_rule": "authors"}) == "authors"
    assert ev.trained_rule({"masker": "frequency", "mask_options": {"rule": "authors"}}) == "authors"
    assert ev.trained_rule({"masker": "block"}) is None
    sched = {
        "masker": "block",
        "mask_schedule": [
            {"start": 0, "masker": "block", "k": 8},
            {"start": 1, "masker": "frequency", "k": 6},
        ],
    }
    assert ev.trained_rule(sched) == "clamped"
    table = tmp_path / "t.json"
    from clipf.freq import FreqTable

    FreqTable(counts={"a": 3, "red": 1}, total=4).save(table)
    legacy = {"masker": "frequency", "text_tokens": 6, "freq_table": str(table), "epochs": 2}
    spec = ev.prompt_spec("masked", legacy, tmp_path / "clipf.json")
    assert spec.options["rule"] == "clamped" and "trained before --freq-rule" in spec.notes[0]
    assert (
        ev.prompt_spec("masked", {**sched, "freq_table": str(table), "epochs": 2}, table).masker
        == "frequency"
    )
    assert ev.prompt_spec("masked", {**sched, "freq_table": str(table)}, table, epoch=1).masker == "block"
    interp = ev.prompt_spec("masked", {**legacy, "pos_extend": "interpolate"}, table)
    assert any("not the K-token tower's encoding" in n for n in interp.notes)


def test_masked_protocol_bad_input(tmp_path, world, prompt_table):
    run = tiny_run(tmp_path / "runs", "f", pretrain=masked_cfg(prompt_table))
    expect_error(
        r"unknown prompt protocol 'maskd'", run, "pretrain", ["wds/colors"], world / "eval", prompts="maskd"
    )
    prompt_table.unlink()
    expect_error(
        r"frequency table .*freq\.json is gone",
        run,
        "pretrain",
        ["wds/colors"],
        world / "eval",
        prompts="masked",
    )
    # an export with no clipf.json beside it or its checkpoint: masked cannot know the masker
    bare = tmp_path / "bare"
    shutil.copytree(run / "pretrain" / "export", bare / "export")
    with pytest.raises(ev.EvalError, match="no clipf.json describes how this checkpoint was trained"):
        (run / "pretrain" / "clipf.json").unlink()
        ev.evaluate_model(bare / "export", ["wds/colors"], world / "eval", prompts="masked", **FAST)
    assert ev.evaluate_model(bare / "export", ["wds/colors"], world / "eval", **FAST)["wds/colors"]["metrics"]
    with pytest.raises(ev.EvalError, match="not a protocol name"):
        ev.evaluate_run(
            run, str(run / "pretrain" / "export"), ["wds/colors"], world / "eval", label="masked", **FAST
        )


# ---------------------------------------------------------------- bad input


def expect_error(match: str, *args, **kwargs):
    with pytest.raises(ev.EvalError, match=match):
        ev.evaluate_run(*args, **{**FAST, **kwargs})


def test_unfinished_run_is_named(tmp_path, world):
    run = tmp_path / "runs" / "cell"
    tiny_checkpoint(run / "pretrain" / "checkpoints" / "epoch_1.pt")
    expect_error(r"pretrain/export: no export .*epoch_1\.pt", run, "pretrain", None, world / "eval")
    expect_error(r"finetune: no such phase", run, "finetune", None, world / "eval")
    expect_error(r"no such run folder", tmp_path / "nope", "pretrain", None, world / "eval")
    assert not (run / "eval").exists()


def test_truncated_safetensors_is_named(tmp_path, world):
    run = tiny_run(tmp_path / "runs")
    weights = run / "pretrain" / "export" / WEIGHTS_NAME
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    expect_error(r"open_clip_model\.safetensors: corrupt or truncated", run, "pretrain", None, world / "eval")
    (run / "finetune" / "export" / CONFIG_NAME).write_text("{not json")
    expect_error(r"open_clip_config\.json: not an open_clip config", run, "finetune", None, world / "eval")
    ckpt = run / "pretrain" / "checkpoints" / "epoch_2.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    expect_error(r"checkpoints/epoch_2\.pt: cannot export it", run, str(ckpt), ["wds/colors"], world / "eval")
    assert not (run / "eval" / "pretrain-epoch_2").exists()


def test_bad_eval_sets_are_named_before_loading(tmp_path, world, monkeypatch):
    import clip_benchmark.models

    def no_load(*a, **k):
        raise AssertionError("the model must not be loaded for a bad dataset")

    monkeypatch.setattr(clip_benchmark.models, "load_clip", no_load)
    run = tmp_path / "runs" / "r"
    (run / "pretrain").mkdir(parents=True)
    shutil.copytree(world / "eval", tmp_path / "eval")
    root = tmp_path / "eval"
    (root / "colors" / "classnames.txt").unlink()
    expect_error(r"colors/classnames\.txt: missing", run, "pretrain", ["wds/colors"], root)
    classification_set(root / "colors")
    (root / "colors" / "zeroshot_classification_templates.txt").unlink()
    expect_error(r"zeroshot_classification_templates\.txt: missing", run, "pretrain", ["wds/colors"], root)
    with tarfile.open(root / "captions" / "test" / "0.tar", "w"):
        pass  # an empty shard
    expect_error(r"captions/test/0\.tar: empty shard", run, "pretrain", ["wds/captions"], root)
    (root / "captions" / "test" / "nshards.txt").unlink()
    expect_error(r"nshards\.txt: missing", run, "pretrain", ["wds/captions"], root)


def test_truncated_shard_is_named(tmp_path, world):
    root = tmp_path / "eval"
    classification_set(root / "colors", per_class=20, nshards=1)
    shard = root / "colors" / "test" / "0.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    export = tiny_run(tmp_path / "runs") / "pretrain" / "export"
    with pytest.raises(ev.EvalError, match=r"wds/colors .*CLIP_benchmark failed: .*colors/test/0\.tar"):
        ev.evaluate_model(export, None, root, num_workers=2, threads=1)


def test_missing_real_dataset_fails_early_without_download(tmp_path, monkeypatch):
    import clip_benchmark.datasets.builder as builder

    def no_call(*a, **k):
        raise AssertionError("no download attempt")

    monkeypatch.setattr(builder, "call", no_call)
    run = tmp_path / "runs" / "r"
    (run / "pretrain").mkdir(parents=True)
    for name, layout in (
        ("imagenet1k", "meta.bin"),
        ("cifar10", "cifar-10-batches-py"),
        ("mscoco_captions", "coco_test_karpathy.json"),
        ("flickr30k", "flickr30k_test_karpathy.txt"),
    ):
        expect_error(rf"{name}: not found .*{layout}.*never downloads", run, "pretrain", [name], tmp_path)
    expect_error(r"imagenet1k: no --dataset-root", run, "pretrain", ["imagenet1k"], None)
    rc = ev.cli([str(run), "--datasets", "cifar100", "--dataset-root", str(tmp_path / "none")])
    assert rc == 2


def test_real_dataset_layout_is_found_under_root(tmp_path):
    root = tmp_path / "data"
    (root / "cifar10" / "cifar-10-batches-py").mkdir(parents=True)
    spec = ev.check_dataset("cifar10", str(root))
    assert spec.root == root / "cifar10" and spec.task == "zeroshot_classification"
    (root / "flickr30k").mkdir()
    (root / "flickr30k" / "flickr30k_test_karpathy.txt").write_text("")
    assert ev.check_dataset("flickr30k", str(root / "{dataset}")).task == "zeroshot_retrieval"


def test_collect_never_half_writes(evaluated, tmp_path, monkeypatch):
    runs, _, _ = evaluated
    out = tmp_path / "results.csv"
    out.write_text("old\n")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        ev.collect(runs, out)
    assert out.read_text() == "old\n" and not out.with_suffix(".parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no temporary left
    (tmp_path / "empty").mkdir()
    with pytest.raises(ev.EvalError, match="no CLIP_benchmark results"):
        ev.collect(tmp_path / "empty")
