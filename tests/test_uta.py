"""clipf.objectives.uta: patch maskers' statistics, UTA training through the real `clipf train` entrypoint on a tiny
teacher (one process, resume, 2-process DDP), loss on a fixed batch, the export in stock open_clip and
CLIP_benchmark, the contrastive fine-tune from it, teacher specs, and bad input.

The teacher is a tiny open_clip model made here (clipf-vit-micro: 32 px, 4x4 patches), exported with
clipf.export; runs are a few steps of batch 16 on one thread.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from clipf import engine, models, objectives, study, train
from clipf import export as E
from clipf.objectives import uta
from clipf.objectives.uta.cli import cli as uta_cli
from clipf.report import uta as uta_report

torch.set_num_threads(1)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 20)}
GRIDS = [(4, 4), (8, 8), (14, 14), (7, 5)]


# =========================================================================== data and teachers
def png(rgb, rng: np.random.Generator) -> bytes:
    img = np.clip(np.array(rgb)[None, None] + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
    img[rng.integers(0, 16) :, : rng.integers(8, 32)] //= 2
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def write_pairs(folder: Path, n_shards: int, per_shard: int, seed: int = 0) -> str:
    """img2dataset-style image-caption shards + sizes.json."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        with wds.TarWriter(str(folder / f"{s:05d}.tar")) as sink:
            for i in range(per_shard):
                color = str(rng.choice(list(COLORS)))
                sink.write(
                    {"__key__": f"{s:05d}{i:04d}", "png": png(COLORS[color], rng), "txt": f"a {color} thing"}
                )
    (folder / "sizes.json").write_text(json.dumps({f"{s:05d}.tar": per_shard for s in range(n_shards)}))
    return str(folder / f"{{00000..{n_shards - 1:05d}}}.tar") if n_shards > 1 else str(folder / "00000.tar")


def write_eval_set(folder: Path, per_class: int = 3) -> Path:
    """A CLIP_benchmark webdataset classification set (``wds/colors``)."""
    rng = np.random.default_rng(7)
    (folder / "test").mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(folder / "test" / "0.tar")) as sink:
        for c, name in enumerate(COLORS):
            for j in range(per_class):
                sink.write({"__key__": f"{c}{j:04d}", "png": png(COLORS[name], rng), "cls": str(c).encode()})
    (folder / "test" / "nshards.txt").write_text("1\n")
    (folder / "classnames.txt").write_text("\n".join(COLORS) + "\n")
    (folder / "zeroshot_classification_templates.txt").write_text("a {c} thing.\na photo of a {c} square.\n")
    return folder


def make_export(folder: Path, model: str = "clipf-vit-micro", seed: int = 0) -> Path:
    """A tiny open_clip model of clipf's configs, exported as a local-dir: teacher."""
    import open_clip

    models.register()
    torch.manual_seed(seed)
    net = open_clip.create_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder.parent / f"{folder.name}.pt"
    torch.save({"state_dict": net.state_dict()}, ckpt)
    return E.export(ckpt, model, folder)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("uta-world")
    return {
        "train": write_pairs(root / "train", 4, 16),
        "val": write_pairs(root / "val", 1, 16, seed=1),
        "eval": write_eval_set(root / "eval" / "colors"),
        "teacher": make_export(root / "teacher"),
        "root": root,
    }


def uta_args(world: dict, logs: Path, name: str, *extra: str, epochs: int = 1) -> list[str]:
    return [
        "--objective", "uta", "--teacher", str(world["teacher"]), "--model", "clipf-vit-micro",
        "--train-data", world["train"], "--train-num-samples", "64", "--dataset-type", "webdataset",
        "--batch-size", "16", "--epochs", str(epochs), "--workers", "0", "--precision", "fp32",
        "--lr", "2e-3", "--warmup", "1", "--seed", "0", "--logs-dir", str(logs), "--name", name, *extra,
    ]  # fmt: skip


def read_json(path: Path):
    return json.loads(Path(path).read_text())


# =========================================================================== patch maskers
@pytest.mark.parametrize("name", list(uta.PATCH_MASKERS))
@pytest.mark.parametrize("grid", GRIDS, ids=str)
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75, 0.9])
def test_masker_keeps_exactly_the_ratio(name, grid, ratio):
    h, w = grid
    keep = uta.get_masker(name)(64, h, w, ratio, np.random.default_rng(1))
    n = h * w
    assert keep.dtype == torch.int64 and keep.shape == (64, uta.kept_count(n, ratio))
    assert uta.kept_count(n, ratio) == max(1, int(n * (1 - ratio) + 1e-9))  # open_clip's PatchDropout count
    assert (keep.diff(dim=1) > 0).all() and keep.min() >= 0 and keep.max() < n  # ascending, unique
    masked = uta.keep_to_mask(keep, h, w)
    assert (masked.sum((1, 2)) == n - keep.shape[1]).all()


def test_random_masker_is_uniform():
    p = uta.mask_probability("random", 8, 8, 0.5, n_samples=5000)
    assert p.mean() == pytest.approx(0.5) and np.abs(p - 0.5).max() < 0.04


def test_block_masks_are_blocks_and_centred():
    """Block-wise masks are rectangles (masked patches have masked neighbours far more often than random
    ones) and cover the centre more than the border; reversed block-wise the opposite (paper Fig. 3)."""

    def neighbours(name: str) -> float:
        m = uta.keep_to_mask(uta.get_masker(name)(500, 14, 14, 0.5, 0), 14, 14).float()
        right, down = m[:, :, 1:] * m[:, :, :-1], m[:, 1:, :] * m[:, :-1, :]
        return float((right.sum() + down.sum()) / m.sum())

    assert neighbours("block") > 1.5 * neighbours("random")
    maps = uta.mask_probability_maps(("block", "reversed_block"), 14, 0.5, n_samples=5000)
    block, rev = maps["block"], maps["reversed_block"]
    assert block.shape == (14, 14) and block.mean() == pytest.approx(0.5) and rev.mean() == pytest.approx(0.5)
    assert block[5:9, 5:9].mean() > 0.7 > 0.3 > block[:2, :2].mean()
    assert rev[5:9, 5:9].mean() < 0.3 < 0.7 < rev[:2, :2].mean()
    assert np.allclose(block + rev, 1.0, atol=0.05)  # same rectangles, complementary roles


@pytest.mark.parametrize("grid,ratio", [((8, 8), 0.75), ((8, 8), 0.5), ((14, 14), 0.5), ((4, 4), 0.25)])
def test_reversed_block_is_the_complement_of_block(grid, ratio):
    """With the same generator state, reversed block-wise keeps exactly what block-wise at 1 - ratio hides."""
    h, w = grid
    rev = uta.reversed_block(200, h, w, ratio, np.random.default_rng(5))
    blk = uta.block(200, h, w, 1 - ratio, np.random.default_rng(5))
    assert torch.equal(uta.keep_to_mask(rev, h, w), ~uta.keep_to_mask(blk, h, w))


@pytest.mark.parametrize("name", list(uta.PATCH_MASKERS))
def test_maskers_are_seeded(name):
    fn = uta.get_masker(name)
    a, b = fn(32, 8, 8, 0.5, 3), fn(32, 8, 8, 0.5, np.random.default_rng(3))
    assert torch.equal(a, b) and not torch.equal(a, fn(32, 8, 8, 0.5, 4))
    rng = np.random.default_rng(3)
    assert not torch.equal(fn(32, 8, 8, 0.5, rng), fn(32, 8, 8, 0.5, rng))  # a generator moves on


def test_masker_names_and_bad_ratios():
    assert set(uta.PATCH_MASKERS) == {"random", "block", "reversed_block"}
    assert uta.get_masker("reversed-block") is uta.reversed_block
    with pytest.raises(ValueError, match="valid names: random, block, reversed_block"):
        uta.get_masker("checkerboard")
    for bad in (0, 1, 1.0, -0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="mask ratio"):
            uta.random(2, 4, 4, bad, 0)


def test_maps_cli(capsys):
    assert uta_cli(["maps", "--grid", "6", "--samples", "200"]) == 0
    maps = json.loads(capsys.readouterr().out)
    assert set(maps) == set(uta.PATCH_MASKERS) and np.array(maps["block"]).shape == (6, 6)


# =========================================================================== the model on a fixed batch
def test_loss_decreases_on_a_fixed_batch(world, tmp_path):
    """30 steps on one batch: the loss falls, and the student's image embedding moves onto the teacher's
    (what makes it zero-shot evaluable with the teacher's text tower)."""
    plan = train.make_plan(uta_args(world, tmp_path, "fixed")).objective_plan
    student, _, _ = uta.build_student(plan.model_cfg, plan.teacher)
    model = uta.UTAModel(student, plan.teacher.model, ratio=0.5, masker="reversed_block").train()
    loss = uta.UTALoss()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        teacher_emb = plan.teacher.model.encode_image(images, normalize=True)
        before = (model.eval().encode_image(images, normalize=True) * teacher_emb).sum(-1).mean()
    model.train()
    losses = []
    for _ in range(30):
        out = model(images)
        assert out["student_tokens"].shape == (8, 8, 64) == out["teacher_tokens"].shape  # 8 of 16 patches
        total = loss(**out)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        after = (model.eval().encode_image(images, normalize=True) * teacher_emb).sum(-1).mean()
    assert after > 0.9 and after > before
    # the text tower and logit scale are the teacher's and stay frozen; the teacher is no submodule
    assert all(
        not p.requires_grad
        for n, p in model.named_parameters()
        if not n.startswith(("student.visual", "head"))
    )
    assert not any(k.startswith("teacher") for k in model.state_dict())
    tokens = torch.randint(1, 49000, (2, 32))
    assert torch.equal(model.encode_text(tokens), plan.teacher.model.encode_text(tokens))


def test_student_sees_only_kept_patches(world, tmp_path):
    """Changing a masked patch's pixels changes nothing the student computes; changing a kept one does."""
    plan = train.make_plan(uta_args(world, tmp_path, "gather")).objective_plan
    student, _, _ = uta.build_student(plan.model_cfg, plan.teacher)
    model = uta.UTAModel(student, plan.teacher.model).train()
    image = torch.randn(1, 3, 32, 32)
    keep = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]])  # the top half of the 4x4 grid
    a = model.align(image, keep)
    hidden, shown = image.clone(), image.clone()
    hidden[..., 24:, :] += 5  # bottom row of patches: masked
    shown[..., :8, :] += 5  # top row: kept
    assert torch.allclose(model.align(hidden, keep)["student_tokens"], a["student_tokens"])
    assert not torch.allclose(model.align(shown, keep)["student_tokens"], a["student_tokens"])
    t_tokens, _ = model.teach(image)  # the teacher tokens are taken at the kept positions
    assert torch.allclose(a["teacher_tokens"], t_tokens[:, :8])


# =========================================================================== through `clipf train`
@pytest.fixture(scope="module")
def uta_run(world, tmp_path_factory) -> Path:
    logs = tmp_path_factory.mktemp("runs")
    argv = uta_args(
        world, logs, "uta/pretrain", "--val-data", world["val"], "--val-num-samples", "16", epochs=2
    )
    assert train.main(argv) == 0
    return logs / "uta" / "pretrain"


def test_run_outputs(uta_run, world):
    cfg = read_json(uta_run / "clipf.json")
    assert cfg["objective"] == "uta" and cfg["image_mask"] == 0.5 and "--teacher" in cfg["argv"]
    u = cfg["uta"]
    assert u["masker"] == "reversed_block" and u["kept_patches"] == 8 and u["grid"] == [4, 4]
    assert u["teacher"]["model"] == f"local-dir:{world['teacher']}"
    recs = read_json(uta_run / "metrics.json")
    assert [r["epoch"] for r in recs] == [1, 2]
    for r in recs:
        assert r["objective"] == "uta" and r["image_tokens"] == 9 and r["samples"] == 64
        assert r["loss"] == pytest.approx(r["token_loss"] + r["global_loss"], rel=1e-5)
        assert np.isfinite(r["val/uta_loss"]) and np.isfinite(r["val/clip_val_loss"])
    assert recs[1]["loss"] < recs[0]["loss"] and recs[1]["val/uta_loss"] < recs[0]["val/uta_loss"]
    sd = torch.load(uta_run / "checkpoints" / "epoch_2.pt", weights_only=True)["state_dict"]
    assert {k.split(".")[0] for k in sd} == {"student", "head"}  # the teacher is never saved
    log = (uta_run / "out.log").read_text()
    assert "Token_loss" in log and "Global_loss" in log and "UTA val epoch 2" in log
    curves = uta_report.loss_curves(uta_run)
    assert set(curves["split"]) == {"train (step)", "train (epoch mean)", "val"}
    assert set(curves["term"]) == {"loss", "token_loss", "global_loss"}


def test_export_loads_in_stock_open_clip(uta_run, world):
    """The export, with only open_clip imported: student vision weights, the teacher's text tower."""
    export = uta_run / "export"
    code = f"""
import json, sys, torch, open_clip
assert not any(m.startswith("clipf") for m in sys.modules)
m, _, pp = open_clip.create_model_and_transforms("local-dir:{export}")
t = open_clip.create_model("local-dir:{world["teacher"]}")
tok = open_clip.get_tokenizer("local-dir:{export}")(["a red thing", "a photo of a blue square"])
img = torch.randn(2, 3, 32, 32)
same_text = torch.equal(m.encode_text(tok), t.encode_text(tok))
print(json.dumps({{"text": same_text, "ctx": tok.shape[1], "img": list(m.encode_image(img).shape),
                  "scale": float(m.logit_scale), "t_scale": float(t.logit_scale)}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["text"] and out["ctx"] == 32 and out["img"] == [2, 64] and out["scale"] == out["t_scale"]
    from safetensors.torch import load_file

    weights = load_file(str(export / E.WEIGHTS_NAME))
    sd = torch.load(uta_run / "checkpoints" / "epoch_2.pt", weights_only=True)["state_dict"]
    assert torch.equal(weights["visual.conv1.weight"], sd["student.visual.conv1.weight"])
    meta = read_json(export / E.CONFIG_NAME)["clipf"]
    assert meta["objective"] == "uta" and meta["checkpoint"].endswith("epoch_2.pt")


def test_export_runs_in_clip_benchmark(uta_run, world, tmp_path):
    from clipf import evaluate as ev

    res = ev.evaluate_model(
        uta_run / "export", ["wds/colors"], world["eval"], out_dir=tmp_path, batch_size=16, num_workers=0
    )
    metrics = res["wds/colors"]["metrics"]
    assert 0.0 <= metrics["acc1"] <= 1.0 and (tmp_path / "wds_colors.json").is_file()


def test_clipf_eval_of_a_uta_epoch_checkpoint(uta_run, world, tmp_path):
    """`clipf eval RUN --checkpoint RUN/pretrain/checkpoints/epoch_N.pt` exports a UTA checkpoint with
    clipf.uta.export (accuracy over UTA epochs); the tidy rows say objective uta."""
    import shutil

    from clipf import evaluate as ev

    run = tmp_path / "uta-s0"
    shutil.copytree(uta_run, run / "pretrain")
    ckpt = run / "pretrain" / "checkpoints" / "epoch_1.pt"
    df = ev.evaluate_run(run, str(ckpt), ["wds/colors"], world["eval"], batch_size=16, num_workers=0)
    assert set(df.checkpoint) == {"pretrain-epoch_1"} and set(df.objective) == {"uta"}
    assert 0.0 <= df[df.metric == "acc1"].value.iloc[0] <= 1.0
    assert (run / "eval" / "pretrain-epoch_1" / "wds_colors.json").is_file()


def test_export_cli(uta_run, tmp_path, capsys):
    assert (
        uta_cli(["export", str(uta_run / "checkpoints" / "epoch_1.pt"), "--out", str(tmp_path / "e1")]) == 0
    )
    assert (
        Path(capsys.readouterr().out.strip()) == tmp_path / "e1"
        and (tmp_path / "e1" / E.WEIGHTS_NAME).is_file()
    )
    clip_ckpt = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, clip_ckpt)
    assert uta_cli(["export", str(clip_ckpt), "--out", str(tmp_path / "x")]) == 2
    assert "not a UTA run's checkpoint" in capsys.readouterr().err


def test_resume_continues_the_run(world, tmp_path):
    assert train.main(uta_args(world, tmp_path, "r/pretrain", epochs=1)) == 0
    argv = uta_args(world, tmp_path, "r/pretrain", "--resume", "latest", epochs=2)
    assert train.main(argv) == 0
    run = tmp_path / "r" / "pretrain"
    assert [r["epoch"] for r in read_json(run / "metrics.json")] == [1, 2]
    assert len(read_json(run / "clipf.json")["launches"]) == 2
    assert read_json(run / "export" / E.CONFIG_NAME)["clipf"]["checkpoint"].endswith("epoch_2.pt")


def test_same_seed_same_student(world, tmp_path):
    """A UTA cell re-run with its seed gives the same student, bit for bit (data order, patch masks)."""

    def weights(name: str) -> dict:
        assert train.main(uta_args(world, tmp_path, f"{name}/pretrain")) == 0
        ckpt = tmp_path / name / "pretrain" / "checkpoints" / "epoch_1.pt"
        return torch.load(ckpt, weights_only=True)["state_dict"]

    a, b = weights("a"), weights("b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_two_processes(world, tmp_path):
    """torchrun, 2 processes (gloo): the same entrypoint, one export, world size 2 in the records."""
    argv = uta_args(world, tmp_path, "ddp/pretrain", "--uta-masker", "block")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "clipf.train",
    ]
    res = subprocess.run(cmd + argv, capture_output=True, text=True, env=ENV, timeout=240)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    (rec,) = read_json(tmp_path / "ddp" / "pretrain" / "metrics.json")
    assert rec["world_size"] == 2 and rec["samples"] == 64 and np.isfinite(rec["token_loss"])
    assert (tmp_path / "ddp" / "pretrain" / "export" / E.WEIGHTS_NAME).is_file()


@pytest.fixture(scope="module")
def finetuned(uta_run, world, tmp_path_factory) -> Path:
    """The optional short contrastive fine-tune: an ordinary `clipf train --finetune` on the export."""
    export, logs = uta_run / "export", tmp_path_factory.mktemp("ft")
    argv = [
        "--model", f"local-dir:{export}", "--pretrained", str(export / E.WEIGHTS_NAME), "--finetune",
        "--train-data", world["train"], "--train-num-samples", "32", "--dataset-type", "webdataset",
        "--batch-size", "16", "--epochs", "1", "--workers", "0", "--precision", "fp32", "--lr", "1e-3",
        "--logs-dir", str(logs), "--name", "ft",
    ]  # fmt: skip
    with warnings.catch_warnings():  # clipf.train's check of --pretrained loads onto the meta device
        warnings.filterwarnings("ignore", message="for .* copying from a non-meta parameter")
        assert train.main(argv) == 0
    return logs / "ft"


def test_contrastive_finetune_from_the_export(finetuned, uta_run):
    from safetensors.torch import load_file

    sd = torch.load(finetuned / "checkpoints" / "epoch_1.pt", weights_only=True)["state_dict"]
    start = load_file(str(uta_run / "export" / E.WEIGHTS_NAME))
    assert not torch.equal(sd["visual.conv1.weight"], start["visual.conv1.weight"])  # it trained
    assert sd["positional_embedding"].shape == start["positional_embedding"].shape


def test_finetune_export_holds_the_finetuned_weights(finetuned):
    from safetensors.torch import load_file

    sd = torch.load(finetuned / "checkpoints" / "epoch_1.pt", weights_only=True)["state_dict"]
    out = load_file(str(finetuned / "export" / E.WEIGHTS_NAME))
    assert torch.equal(out["visual.conv1.weight"], sd["visual.conv1.weight"])


# =========================================================================== teachers
def test_teacher_specs(world, tmp_path):
    """An export folder, local-dir:, a run / phase folder, a clipf checkpoint, MODEL + --teacher-pretrained."""
    import open_clip

    export = Path(world["teacher"])
    run = tmp_path / "clip-run"
    (run / "pretrain" / "checkpoints").mkdir(parents=True)
    torch.save(
        {"state_dict": open_clip.create_model("clipf-vit-micro").state_dict()},
        run / "pretrain" / "checkpoints" / "epoch_1.pt",
    )
    (run / "pretrain" / "clipf.json").write_text(
        json.dumps({"model": "clipf-vit-micro", "full_context_length": 32})
    )
    ckpt = run / "pretrain" / "checkpoints" / "epoch_1.pt"
    cases = {
        str(export): f"local-dir:{export}",
        f"local-dir:{export}": f"local-dir:{export}",
        str(run): "clipf-vit-micro",
        str(run / "pretrain"): "clipf-vit-micro",
        str(ckpt): "clipf-vit-micro",
    }
    for spec, name in cases.items():
        t = uta.resolve_teacher(spec)
        assert t.name == name, spec
        net = t.load()
        assert net.visual.grid_size == (4, 4) and t.context_length == 32 and not net.training
    (run / "pretrain" / "export").mkdir()
    E.export(ckpt, "clipf-vit-micro", run / "pretrain" / "export")
    assert uta.resolve_teacher(str(run)).name == f"local-dir:{run / 'pretrain' / 'export'}"  # exports first
    t = uta.resolve_teacher("clipf-vit-micro", str(ckpt))
    assert t.load() is not None and t.pretrained == str(ckpt)
    assert study.uta_teacher({"grid": {"full_text_tokens": 32}}) == Path("runs/truncate-k32-m0-s0")
    # a world's student falls back to that world's CLIP cell, not to a world-less run no plan makes
    got = study.uta_teacher({"grid": {"full_text_tokens": 32}}, seed=1, world="concepts")
    assert got == Path("runs/concepts-truncate-k32-m0-s1")


# =========================================================================== bad input
@pytest.fixture(scope="module")
def bad_teachers(world, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad-teachers")
    corrupt = root / "corrupt"
    corrupt.mkdir()
    (corrupt / E.CONFIG_NAME).write_text((Path(world["teacher"]) / E.CONFIG_NAME).read_text())
    (corrupt / E.WEIGHTS_NAME).write_bytes((Path(world["teacher"]) / E.WEIGHTS_NAME).read_bytes()[:500])
    (root / "empty").mkdir()
    return {"corrupt": corrupt, "empty": root / "empty", "tiny": make_export(root / "tiny", "clipf-vit-tiny")}


BAD = {
    "no teacher": (["--teacher", None], "--objective uta needs --teacher"),
    "missing path": (["--teacher", "/nonexistent/teacher"], "no such file or folder"),
    "empty folder": (["--teacher", "{empty}"], "neither an export"),
    "corrupt weights": (["--teacher", "{corrupt}"], "cannot load it"),
    "unknown model": (["--teacher", "ViT-Q-99"], "nor an open_clip model name"),
    "model without weights": (["--teacher", "ViT-B-16"], "needs --teacher-pretrained"),
    "unknown tag": (["--teacher", "ViT-B-16", "--teacher-pretrained", "nope"], "nor a pretrained tag"),
    "other grid": (
        ["--teacher", "{tiny}"],
        "8x8 patch grid; the student (--model clipf-vit-micro) sees 32x32 px as 4x4",
    ),
    "ratio 0": (["--uta-mask-ratio", "0"], "must be in (0, 1)"),
    "ratio 1": (["--uta-mask-ratio", "1"], "must be in (0, 1)"),
    "ratio 1.5": (["--uta-mask-ratio", "1.5"], "must be in (0, 1)"),
    "ratio text": (["--uta-mask-ratio", "half"], "bad UTA option"),
    "masker": (["--uta-masker", "checkerboard"], "unknown patch masker"),
    "weights": (["--uta-token-weight", "0", "--uta-global-weight", "0"], "nothing to learn"),
    "text masking": (["--reduction-mask", "frequency"], "text-masking options do not apply"),
    "patch dropout": (["--force-patch-dropout", "0.5"], "use --uta-mask-ratio"),
    "pretrained": (["--pretrained", "x.pt"], "starts from scratch"),
    "accum": (["--accum-freq", "2"], "--accum-freq with --objective uta"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_before_training(case, world, bad_teachers, tmp_path, capsys):
    extra, message = BAD[case]
    argv = uta_args(world, tmp_path, "bad")
    i = argv.index("--teacher")
    if extra[0] == "--teacher":
        del argv[i : i + 2]
        extra = [] if extra[1] is None else ["--teacher", extra[1].format(**bad_teachers), *extra[2:]]
    assert train.main(argv + extra) == 2
    err = capsys.readouterr().err
    assert "clipf train: error:" in err and message in err, err
    assert not (tmp_path / "bad").exists()  # nothing started


def test_uta_checkpoint_is_no_teacher(uta_run, world, tmp_path, capsys):
    argv = uta_args(world, tmp_path, "bad")
    argv[argv.index("--teacher") + 1] = str(uta_run / "checkpoints" / "epoch_1.pt")
    assert train.main(argv) == 2 and "a UTA run's checkpoint" in capsys.readouterr().err


def test_uta_is_an_objective_of_the_engine(world, tmp_path):
    """`--objective uta` is looked up in the registry; its plan is complete before it is checked (the
    teacher's text context, the UTA part attached) and frozen after."""
    assert objectives.get("uta") is uta.UTA and isinstance(uta.UTA, engine.Objective)
    plan = train.make_plan(uta_args(world, tmp_path, "x"))
    assert plan.objective == "uta" and isinstance(plan.objective_plan, uta.UTAPlan)
    assert plan.full_context == plan.objective_plan.teacher.context_length == 32
    assert any(n.startswith("UTA: teacher") for n in plan.notes) and "--teacher" in plan.argv
    assert isinstance(train.make_run(plan), uta.UTARun)
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        plan.export = False
    assert engine.objective_name(["--objective=uta"]) == "uta"
    assert engine.objective_name(["--objective", "clip", "uta"]) == "clip"


# =========================================================================== the study: plan, compute, report
REPO = Path(__file__).resolve().parents[1]


def test_profiles_plan_uta_students():
    from clipf import profiles as P

    params = P.load(REPO / "params.yaml")
    # smoke: the default world (the grid's first); study: uta.world concepts of its two worlds
    for name, seeds, world in (("smoke", [0], "shapes"), ("study", [0, 1, 2], "concepts")):
        live = P.resolve(params, name)
        assert list(live["uta_cells"]) == [f"uta-s{s}" for s in seeds], name
        assert live["uta"]["world"] == world
        for s in seeds:
            item = live["uta_cells"][f"uta-s{s}"]
            assert item == {
                "world": world,
                "seed": s,
                "teacher": f"{world}-truncate-k32-m0-s{s}",
                "baseline": f"{world}-truncate-k32-m0-s{s}",
            }
            assert item["teacher"] in live["cells"] and live["cells"][item["teacher"]]["world"] == world
        assert (
            live["uta_finetunes"] == live["uta_cells"] and live["uta"]["model"] == live["pretrain"]["model"]
        )
        assert live["uta"]["mask_ratio"] == 0.5 and live["uta"]["masker"] == "reversed_block"
    for name in ("cc3m", "cc12m", "laion400m"):  # opt-in: no ViT-B/16 students unless asked for
        assert P.resolve(params, name)["uta_cells"] == {}
    for name in P.profile_names(params):  # every profile's students: in the world of its uta.world
        live = P.resolve(params, name)
        for item in live["uta_cells"].values():
            assert item["world"] == live["uta"]["world"] and item["world"] in live["worlds"]
            assert {live["cells"][item[r]]["world"] for r in ("teacher", "baseline")} == {item["world"]}
    assert set(P.UTA_MASKERS) == set(uta.PATCH_MASKERS) | set(uta.ALIASES)


def test_profiles_uta_teacher_and_bad_specs():
    from clipf import profiles as P

    grid = {"maskers": ["frequency"], "text_tokens": [6], "baselines": ["clip"], "seeds": [0, 1]}
    cells = P.expand_grid(grid, 1e-2)
    pre = {"model": "clipf-vit-micro"}
    spec = {"seeds": [1], "teacher": "frequency-k6-m75-t1e-2-s{seed}", "finetune": False}
    u, students, finetunes = P.expand_uta(spec, cells, grid, pre)
    assert students == {
        "uta-s1": {"seed": 1, "teacher": "frequency-k6-m75-t1e-2-s1", "baseline": "truncate-k32-m0-s1"}
    }
    assert finetunes == {} and u["epochs"] == "matched" and u["model"] == "clipf-vit-micro"
    assert P.expand_uta({}, cells, grid, pre)[1] == {}  # off by default
    bad = {
        "seeds [2]": ({"seeds": [2]}, "truncate-k32-m0-s2', is not in the grid"),
        "teacher": (
            {"seeds": [0], "teacher": "block-k8-m75-s{seed}"},
            "teacher of seed 0, cell 'block-k8-m75-s0'",
        ),
        "ratio": ({"seeds": [0], "mask_ratio": 1.0}, "mask_ratio"),
        "masker": ({"seeds": [0], "masker": "checkerboard"}, "unknown patch masker 'checkerboard'"),
        "epochs": ({"seeds": [0], "epochs": "lots"}, "'matched' or a positive integer"),
        "key": ({"seeds": [0], "ratio": 0.5}, "unknown key(s) ratio"),
        "finetune": ({"seeds": [0], "finetune": "yes"}, "finetune: true or false"),
    }
    for case, (spec, message) in bad.items():
        with pytest.raises(P.ProfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
            P.expand_uta(spec, cells, grid, pre)
        assert case
    no_clip = P.expand_grid({**grid, "baselines": []}, 1e-2)
    with pytest.raises(P.ProfileError, match="UTA needs the seed's unmasked CLIP baseline"):
        P.expand_uta({"seeds": [0]}, no_clip, grid, pre)


def test_uta_students_of_a_world():
    """``uta.world``: the world of the students (default: the grid's first), their teacher and CLIP
    baseline that world's cells; a world not in the grid is named; a grid without worlds has world-free
    students."""
    from clipf import profiles as P

    grid = {
        "worlds": ["shapes", "concepts"],
        "maskers": ["frequency"],
        "text_tokens": [6],
        "baselines": ["clip"],
        "seeds": [0, 1],
    }
    cells = P.expand_grid(grid, 1e-2)
    pre = {"model": "clipf-vit-micro"}
    u, students, _ = P.expand_uta({"seeds": [0, 1]}, cells, grid, pre)
    assert u["world"] == "shapes"  # the first world of the grid
    assert students["uta-s1"] == {
        "world": "shapes",
        "seed": 1,
        "teacher": "shapes-truncate-k32-m0-s1",
        "baseline": "shapes-truncate-k32-m0-s1",
    }
    u, students, finetunes = P.expand_uta({"seeds": [0], "world": "concepts"}, cells, grid, pre)
    assert u["world"] == "concepts" and finetunes == students
    assert students == {
        "uta-s0": {
            "world": "concepts",
            "seed": 0,
            "teacher": "concepts-truncate-k32-m0-s0",
            "baseline": "concepts-truncate-k32-m0-s0",
        }
    }
    assert P.baseline_cell(grid, 0, "concepts") == "concepts-truncate-k32-m0-s0"
    assert P.baseline_cell({**grid, "full_text_tokens": 16}, 2, "shapes") == "shapes-truncate-k16-m0-s2"
    assert P.baseline_cell(grid, 0) == "truncate-k32-m0-s0"
    # a teacher cell named with {seed} is the world's own cell, spelled out in full
    spec = {"seeds": [1], "world": "concepts", "teacher": "concepts-frequency-k6-m75-t1e-2-s{seed}"}
    assert (
        P.expand_uta(spec, cells, grid, pre)[1]["uta-s1"]["teacher"] == "concepts-frequency-k6-m75-t1e-2-s1"
    )
    with pytest.raises(P.ProfileError, match="teacher of seed 1, cell 'frequency-k6-m75-t1e-2-s1', is not"):
        P.expand_uta({**spec, "teacher": "frequency-k6-m75-t1e-2-s{seed}"}, cells, grid, pre)  # no world
    for world in ("circles", "shapes-2"):
        with pytest.raises(
            P.ProfileError, match=f"uta.world: '{world}' is not a world of the grid \\(shapes, concepts\\)"
        ):
            P.expand_uta({"seeds": [0], "world": world}, cells, grid, pre, where="uta")
    no_worlds = {k: v for k, v in grid.items() if k != "worlds"}
    plain = P.expand_grid(no_worlds, 1e-2)
    u, students, _ = P.expand_uta({"seeds": [0]}, plain, no_worlds, pre)
    assert u["world"] is None
    assert students == {
        "uta-s0": {"seed": 0, "teacher": "truncate-k32-m0-s0", "baseline": "truncate-k32-m0-s0"}
    }
    with pytest.raises(P.ProfileError, match="'shapes' is not a world of the grid \\(none\\)"):
        P.expand_uta({"seeds": [0], "world": "shapes"}, plain, no_worlds, pre)
    # through a profile: the plan's students follow uta.world; an unknown one stops the plan
    params = P.load(REPO / "params.yaml")
    two = {"grid": {"worlds": ["shapes", "concepts"]}, "uta": {"world": "concepts"}}
    live = P.resolve(P.deep_merge(params, {"profiles": {"smoke": two}}), "smoke")
    assert live["uta_cells"]["uta-s0"]["teacher"] == "concepts-truncate-k32-m0-s0"
    bad = P.deep_merge(params, {"profiles": {"smoke": {"uta": {"world": "concepts"}}}})  # smoke: [shapes]
    with pytest.raises(P.ProfileError, match="profile 'smoke' uta.world: 'concepts' is not a world"):
        P.resolve(bad, "smoke")


def test_plan_writes_uta_sections(tmp_path):
    """`clipf study plan` writes `uta`, `uta_cells` and `uta_finetunes` (one flow line per student, `{}` when
    there are none); `check` accepts them and refuses a student whose teacher is not a cell."""
    import shutil

    import yaml

    from clipf import profiles as P

    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    P.plan(path, "study")
    text = path.read_text()
    assert (
        "uta_cells:\n  uta-s0: {world: concepts, seed: 0, teacher: concepts-truncate-k32-m0-s0, "
        "baseline: concepts-truncate-k32-m0-s0}\n" in text
    )
    params = yaml.safe_load(text)
    assert list(params["uta_finetunes"]) == ["uta-s0", "uta-s1", "uta-s2"] and params["uta"]["seeds"] == [
        0,
        1,
        2,
    ]
    P.check(params)
    params["uta_cells"]["uta-s0"]["teacher"] = "nope"
    with pytest.raises(P.ProfileError, match="its teacher 'nope' is not a cell"):
        P.check(params)
    P.plan(path, "cc12m")
    params = yaml.safe_load(path.read_text())
    assert params["uta_cells"] == {} and params["uta_finetunes"] == {} and P.check(params)


def test_flops_per_sample():
    """A UTA step at ratio 0.5 costs less than a CLIP step of the same student (bench/README: 0.72x for
    clipf-vit-tiny); the frozen teacher's forward is part of it; FLIP masking makes CLIP cheaper."""
    cfg = E.model_config("clipf-vit-tiny", 32)
    clip = uta.clip_flops_per_sample(cfg)
    f = uta.uta_flops_per_sample(uta.student_config("clipf-vit-tiny", cfg), cfg, 0.5, "reversed_block")
    assert f["flops"] / clip == pytest.approx(0.72, abs=0.01) and 0.3 < f["teacher"] / f["flops"] < 0.5
    assert uta.clip_flops_per_sample(cfg, image_mask=0.75) < clip
    assert uta.clip_flops_per_sample(cfg, text_tokens=8) < clip
    f75 = uta.uta_flops_per_sample(uta.student_config("clipf-vit-tiny", cfg), cfg, 0.75, "random")
    assert f75["flops"] < f["flops"] and f75["teacher"] == f["teacher"]


def fake_clip_phase(folder: Path, epochs: int = 2, per_epoch: int = 64) -> Path:
    """A finished CLIP pre-training phase as clipf.train records it (clipf.json + metrics.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"model": "clipf-vit-micro", "objective": "clip", "text_context": 32, "image_mask": 0.0,
           "epochs": epochs, "train_num_samples": per_epoch}  # fmt: skip
    (folder / "clipf.json").write_text(json.dumps(cfg))
    recs = [
        {"epoch": e, "samples_seen": e * per_epoch, "train_seconds_total": 2.0 * e}
        for e in range(1, epochs + 1)
    ]
    (folder / "metrics.json").write_text(json.dumps(recs))
    return folder


def test_match_compute(world, tmp_path):
    base = fake_clip_phase(tmp_path / "clip" / "pretrain", epochs=2, per_epoch=64)
    m = uta.match_compute(base, world["teacher"], "clipf-vit-micro", 64)
    b, u = m["baseline"], m["uta"]
    assert b["samples"] == 128 and b["flops"] == pytest.approx(128 * b["flops_per_sample"])
    assert m["matched"] and m["epochs"] == round(b["flops"] / (64 * u["flops_per_sample"])) == u["epochs"]
    assert m["epochs"] > 2 and abs(m["compute_vs_baseline"] - 1) <= 0.5 / m["epochs"] + 1e-9  # rounding only
    assert m["flops_per_sample_vs_baseline"] == pytest.approx(u["flops_per_sample"] / b["flops_per_sample"])
    fixed = uta.match_compute(base, world["teacher"], "clipf-vit-micro", 64, epochs=1)
    assert fixed["epochs"] == 1 and not fixed["matched"] and fixed["compute_vs_baseline"] < 1
    with pytest.raises(ValueError, match="positive integer"):
        uta.match_compute(base, world["teacher"], "clipf-vit-micro", 64, epochs=0)


def study_cfg(world) -> dict:
    from clipf import profiles as P

    cfg = study.world_config(P.resolve(P.load(REPO / "params.yaml"), "smoke"), "shapes")
    cfg["data"]["dir"] = str(world["root"])  # train/ and val/ shards with sizes.json
    return cfg


def test_study_run_argv(world, tmp_path):
    runs = tmp_path / "runs"
    base = "shapes-truncate-k32-m0-s0"  # the smoke plan's CLIP baseline: uta-s0's teacher (uta.world shapes)
    fake_clip_phase(runs / base / "pretrain", epochs=1)
    E.export(world["root"] / "teacher.pt", "clipf-vit-micro", runs / base / "pretrain" / "export")
    cfg = study_cfg(world)
    assert cfg["uta_cells"]["uta-s0"]["baseline"] == base
    setup = study.uta_run(cfg, 0, runs=runs)
    assert setup.cell == "uta-s0" and setup.run == runs / "uta-s0"
    assert setup.teacher == str(runs / base / "pretrain" / "export")
    assert setup.baseline == runs / base / "pretrain"
    joined = " ".join(setup.argv)
    epochs = setup.compute["epochs"]
    assert epochs >= 2 and f"--epochs {epochs}" in joined and "--model clipf-vit-micro" in joined
    assert (
        f"--objective uta --teacher {setup.teacher} --uta-mask-ratio 0.5 --uta-masker reversed_block"
        in joined
    )
    assert (
        "--name uta-s0/pretrain" in joined and "--train-num-samples 64" in joined and "--val-data" in joined
    )
    assert f"--logs-dir {runs}" in joined and "--seed 0" in joined
    other = study.uta_run(cfg, 0, runs=runs, cell="x", epochs=1, masker="random", options={"lr": 0.5})
    joined = " ".join(other.argv)
    assert "--epochs 1" in joined and "--uta-masker random" in joined and "--lr 0.5" in joined
    with pytest.raises(ValueError, match="unknown UTA setting"):
        study.uta_run(cfg, 0, runs=runs, ratio=0.5)
    assert uta_cli(["maps", "--grid", "4", "--samples", "50", "--figure", str(tmp_path / "f" / "maps")]) == 0
    assert (tmp_path / "f" / "maps.png").stat().st_size > 0


def test_report_table_and_figures(uta_run, world, tmp_path):
    """results/uta.csv from a tidy table: teacher / CLIP from scratch / UTA student, both phases, mean ± std
    over seeds, mean rows, pre-training compute; the summary table; Figures 3 and 4."""
    import shutil

    import pandas as pd

    runs = tmp_path / "runs"
    cells = {}
    for seed in (0, 1):
        fake_clip_phase(runs / f"truncate-k32-m0-s{seed}" / "pretrain", epochs=2)
        shutil.copytree(uta_run, runs / f"uta-s{seed}" / "pretrain")
        cells[f"uta-s{seed}"] = {
            "seed": seed,
            "teacher": f"truncate-k32-m0-s{seed}",
            "baseline": f"truncate-k32-m0-s{seed}",
        }
    rows = []
    for seed in (0, 1):
        for run, base in ((f"truncate-k32-m0-s{seed}", 0.30), (f"uta-s{seed}", 0.20)):
            for phase, bonus in (("pretrain", 0.0), ("finetune", 0.05)):
                v = base + bonus + 0.02 * seed
                for dataset, task, metric, value in (
                    ("wds/a", "zeroshot_classification", "acc1", v),
                    ("wds/b", "zeroshot_classification", "acc1", v + 0.1),
                    ("wds/r", "zeroshot_retrieval", "image_retrieval_recall@1", v / 2),
                    ("wds/r", "zeroshot_retrieval", "text_retrieval_recall@1", v / 4),
                ):
                    rows.append(
                        dict(
                            run=run,
                            seed=seed,
                            checkpoint=phase,
                            dataset=dataset,
                            task=task,
                            metric=metric,
                            value=value,
                        )
                    )
    rows.append({**rows[0], "checkpoint": "pretrain-epoch_1"})  # per-epoch rows are not in the table
    tidy = pd.DataFrame(rows)
    table = uta_report.report_table(tidy, cells, runs)
    assert list(table.columns) == uta_report.REPORT_COLUMNS
    assert list(dict.fromkeys(table.system)) == ["teacher", "clip", "uta"]
    assert set(table.phase) == {"pretrain", "finetune"} and set(table.n) == {2}

    def pick(system, phase, dataset, metric="acc1"):
        r = table[
            (table.system == system)
            & (table.phase == phase)
            & (table.dataset == dataset)
            & (table.metric == metric)
        ]
        assert len(r) == 1
        return r.iloc[0]

    r = pick("uta", "pretrain", "wds/a")
    assert r["mean"] == pytest.approx(21.0) and r["std"] == pytest.approx(np.std([20, 22], ddof=1))
    assert r.runs == "uta-s0;uta-s1" and r.label == "UTA student"
    cls_mean, ret_mean = uta_report.CLASSIFICATION_MEAN, uta_report.RETRIEVAL_MEAN
    assert pick("teacher", "finetune", cls_mean)["mean"] == pytest.approx(41.0)
    assert pick("clip", "finetune", cls_mean)["mean"] == pytest.approx(41.0)  # the same runs
    assert pick("uta", "pretrain", ret_mean, "recall@1")["mean"] == pytest.approx((10.5 + 5.25) / 2)
    assert (
        pick("uta", "pretrain", "wds/a").epochs == 2
        and pick("clip", "pretrain", "wds/a").compute_vs_clip == 1
    )
    uta_flops = pick("uta", "pretrain", "wds/a").train_gflops
    assert 0 < uta_flops and pick("uta", "pretrain", "wds/a").compute_vs_clip == pytest.approx(
        uta_flops / pick("clip", "pretrain", "wds/a").train_gflops
    )
    summary = uta_report.report_summary(table)
    same = uta_report.SAME_LABEL  # the teacher is the CLIP baseline
    assert list(summary.system) == [same] * 2 + ["UTA student"] * 2
    assert list(summary.phase) == ["pretrain", "finetune"] * 2
    assert {"a", "b", "classification (mean)", "retrieval recall@1", "compute vs CLIP"} <= set(
        summary.columns
    )
    assert summary.iloc[2]["a"] == "21.0 ± 1.4" and summary.iloc[0]["compute vs CLIP"] == "1.00x"
    other = table.copy()
    other.loc[other.system == "teacher", "runs"] = "frequency-k8-m75-t1e-2-s0;frequency-k8-m75-t1e-2-s1"
    assert list(dict.fromkeys(uta_report.report_summary(other).system)) == list(uta_report.SYSTEMS.values())

    tidy_csv = tmp_path / "results.csv"
    tidy.to_csv(tidy_csv, index=False)
    cfg = {"uta": {"mask_ratio": 0.5, "map_grid": 6, "map_samples": 100}, "uta_cells": cells}
    paths = uta_report.write_report(
        cfg, tidy_csv, tmp_path / "results" / "uta.csv", tmp_path / "figures" / "uta", runs
    )
    back = pd.read_csv(paths["table"])
    assert len(back) == len(table) and "UTA student" in paths["summary"].read_text()
    curves = pd.read_csv(paths["loss_curves"])
    assert set(curves.run) == {"uta-s0", "uta-s1"} and set(curves.split) == {
        "train (step)",
        "train (epoch mean)",
        "val",
    }
    for stem in ("mask_probability", "loss_curves"):
        for ext in (".png", ".svg"):
            assert (tmp_path / "figures" / "uta" / f"{stem}{ext}").stat().st_size > 0
    empty = uta_report.write_report(
        {"uta": {}, "uta_cells": {}}, tidy_csv, tmp_path / "e" / "uta.csv", tmp_path / "e" / "fig", runs
    )
    assert pd.read_csv(empty["table"]).empty and (tmp_path / "e" / "fig" / "loss_curves.png").is_file()


def test_report_compute_without_the_teacher_export(uta_run, world, tmp_path):
    """A fresh clone has no teacher export (a DVC output), so a student's FLOPs cannot be counted again:
    the report takes them from the compute match its ``uta`` stage recorded (RUN/compute.json) and gives
    the same numbers; a student without that record has none ("–"), not a wrong one."""
    import shutil

    import pandas as pd

    from clipf.objectives.uta import match_compute, phase_compute

    runs = tmp_path / "runs"
    fake_clip_phase(runs / "clip-s0" / "pretrain", epochs=2)
    cells = {}
    for name in ("uta-s0", "uta-s1"):
        shutil.copytree(uta_run, runs / name / "pretrain")
        cells[name] = {"seed": int(name[-1]), "teacher": "clip-s0", "baseline": "clip-s0"}
    tidy = pd.DataFrame(
        [
            dict(run=r, seed=0, checkpoint="pretrain", dataset="wds/a", task="zeroshot_classification",
                 metric="acc1", value=0.3)
            for r in ("clip-s0", "uta-s0", "uta-s1")
        ]
    )  # fmt: skip

    def uta_compute(table):
        r = table[(table.system == "uta") & (table.phase == "pretrain")].iloc[0]
        return [r.epochs, r.train_gflops, r.compute_vs_clip]

    with_export = uta_compute(uta_report.report_table(tidy, {"uta-s0": cells["uta-s0"]}, runs))
    assert with_export[1] > 0
    u = read_json(uta_run / "clipf.json")["uta"]
    record = match_compute(
        runs / "clip-s0" / "pretrain", u["teacher"]["source"], "clipf-vit-micro", 64, epochs=2
    )
    (runs / "uta-s0" / "compute.json").write_text(json.dumps(record))
    for name in cells:  # the teacher's export is gone
        cfg = read_json(runs / name / "pretrain" / "clipf.json")
        cfg["uta"]["teacher"] = {"spec": "gone/export", "source": str(tmp_path / "gone" / "export")}
        (runs / name / "pretrain" / "clipf.json").write_text(json.dumps(cfg))
    with pytest.raises((FileNotFoundError, KeyError, ValueError)):
        phase_compute(runs / "uta-s0" / "pretrain")
    without = uta_compute(uta_report.report_table(tidy, {"uta-s0": cells["uta-s0"]}, runs))
    assert without == pytest.approx(with_export)
    none = uta_report.report_table(tidy, {"uta-s1": cells["uta-s1"]}, runs)  # no compute.json
    r = none[(none.system == "uta") & (none.phase == "pretrain")].iloc[0]
    assert np.isnan(r.train_gflops) and np.isnan(r.compute_vs_clip)
