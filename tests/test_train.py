"""clipf.train end to end on CPU: every masker through the real entrypoint, 2-process DDP (gloo),
kill -9 and --resume latest, K-token -> 32-token fine-tuning, counted corrupt records, bad input.

Runs are tiny (clipf-vit-micro, 32 px, 64 samples of batch 16, one thread): the point is behaviour.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from clipf import engine, files, models, train
from clipf import export as E
from clipf.freq import FreqTable

torch.set_num_threads(1)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
PY = sys.executable
WORDS = (
    "a the of on in with near under photo picture small large red green blue yellow old young happy dog "
    "cat car tree house bird boat man woman child river mountain beach city street table flower"
).split()
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 20)}


def write_shards(folder: Path, n_shards: int, per_shard: int, seed: int = 0) -> str:
    """img2dataset-style shards (png, txt, json) + sizes.json; captions of 3-25 words."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for s in range(n_shards):
        name = f"{s:05d}.tar"
        with wds.TarWriter(str(folder / name)) as sink:
            for i in range(per_shard):
                color = rng.choice(list(COLORS))
                img = np.zeros((32, 32, 3), np.uint8) + np.array(COLORS[color], np.uint8)
                img[rng.integers(0, 16) :, : rng.integers(8, 32)] //= 2
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="PNG")
                words = [color, *rng.choice(WORDS, size=rng.integers(2, 24))]
                sink.write(
                    {
                        "__key__": f"{s:05d}{i:04d}",
                        "png": buf.getvalue(),
                        "txt": " ".join(words),
                        "json": {"i": i},
                    }
                )
        sizes[name] = per_shard
    (folder / "sizes.json").write_text(json.dumps(sizes))
    return str(folder / f"{{00000..{n_shards - 1:05d}}}.tar")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("world")
    train_spec = write_shards(root / "train", 4, 32)
    write_shards(root / "val", 1, 32, seed=1)
    table = root / "freq.json"
    FreqTable(counts={w: 50 * (i + 1) for i, w in enumerate(WORDS)}, total=60000).save(table)
    return {"train": train_spec, "val": str(root / "val" / "00000.tar"), "table": str(table), "root": root}


def base_args(
    world: dict, logs: Path, name: str | None, *extra: str, samples: int = 64, warmup: bool = True
) -> list[str]:
    return [
        "--train-data", world["train"], "--train-num-samples", str(samples), "--dataset-type", "webdataset",
        "--model", "clipf-vit-micro", "--batch-size", "16", "--epochs", "1", "--workers", "0",
        "--precision", "fp32", "--logs", str(logs), *(["--name", name] if name else []),
        *(["--warmup", "1"] if warmup else []), "--seed", "0", *extra,
    ]  # fmt: skip


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def ckpt_rows(path: Path) -> int:
    return torch.load(path, weights_only=True)["state_dict"]["positional_embedding"].shape[0]


@pytest.fixture(scope="module")
def pretrained(world, tmp_path_factory) -> Path:
    """A K=6 frequency-masked pre-training run with 75% image masking and a val set (eval at 32)."""
    logs = tmp_path_factory.mktemp("runs")
    argv = base_args(
        world, logs, "k6/pretrain", "--reduction-mask", "frequency", "--text-tokens", "6",
        "--mask-probability-file", world["table"], "--freq-threshold", "1e-3",
        "--force-patch-dropout", "0.75", "--val-data", world["val"], "--val-num-samples", "32",
    )  # fmt: skip
    assert train.main(argv) == 0
    return logs / "k6" / "pretrain"


# --------------------------------------------------------------------------- every masker
@pytest.mark.parametrize(
    "masker", ["truncate", "block", "random", "shuffle", "syntax", "frequency", "simple"]
)
def test_pretrain_each_masker(world, tmp_path, masker):
    extra = ["--mask-probability-file", world["table"]] if masker == "frequency" else []
    argv = base_args(
        world, tmp_path, f"{masker}/pretrain", "--reduction-mask", masker, "--text-tokens", "8", *extra
    )
    assert train.main(argv) == 0
    run = tmp_path / masker / "pretrain"
    cfg = read_json(run / "clipf.json")
    assert cfg["masker"] == {"simple": "block"}.get(masker, masker)
    assert (cfg["text_tokens"], cfg["text_context"], cfg["full_context_length"]) == (8, 8, 32)
    assert (
        cfg["model"] == "clipf-vit-micro" and cfg["epochs"] == 1 and cfg["seed"] == 0 and cfg["argv"] == argv
    )
    (rec,) = read_json(run / "metrics.json")
    assert rec["epoch"] == 1 and rec["samples"] == 64 and rec["steps"] == 4
    assert np.isfinite(rec["loss"]) and rec["samples_per_second"] > 0
    assert rec["text_tokens_seen"] == 64 * 8 and 64 * 3 <= rec["text_tokens_nonpad_seen"] <= 64 * 8
    assert rec["image_tokens_seen"] == 64 * (16 + 1) and rec["skipped_total"] == 0
    assert ckpt_rows(run / "checkpoints" / "epoch_1.pt") == 8
    assert read_json(run / "export" / E.CONFIG_NAME)["model_cfg"]["text_cfg"]["context_length"] == 32
    assert list((run / "tensorboard").glob("events.*"))
    log = (run / "out.log").read_text()
    assert "ETA:" in log and "samples/s" in log and f"{cfg['masker']} masking, K=8" in log


@pytest.mark.parametrize("masker", ["random", "frequency"])
def test_same_seed_same_weights(world, tmp_path, masker):
    """`dvc repro` of a cell reproduces it: same argv and seed, bit-identical weights (data order, text
    masks, patch dropout all seeded); another seed gives other weights."""
    extra = ["--reduction-mask", masker, "--text-tokens", "6", "--force-patch-dropout", "0.75"]
    if masker == "frequency":
        extra += ["--mask-probability-file", world["table"]]

    def weights(name: str, seed: str) -> dict:
        argv = base_args(world, tmp_path, name, *extra)
        argv[argv.index("--seed") + 1] = seed
        assert train.main(argv) == 0
        return torch.load(tmp_path / name / "checkpoints" / "epoch_1.pt", weights_only=True)["state_dict"]

    a, b, c = weights("a", "0"), weights("b", "0"), weights("c", "1")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_pretrain_run_outputs(pretrained):
    cfg = read_json(pretrained / "clipf.json")
    assert cfg["masker"] == "frequency" and cfg["freq_threshold"] == 1e-3 and cfg["image_mask"] == 0.75
    assert cfg["freq_table"].endswith("freq.json") and cfg["pos_extend"] == E.DEFAULT_POS_EXTEND
    (rec,) = read_json(pretrained / "metrics.json")
    assert rec["image_tokens"] == 1 + 4  # 16 patches, 75% dropped, + class token
    # the val set was evaluated at full length by a 6-token tower: the eval copy was extended to 32
    assert "val/clip_val_loss" in rec and np.isfinite(rec["val/clip_val_loss"])
    assert ckpt_rows(pretrained / "checkpoints" / "epoch_1.pt") == 6


def test_train_and_eval_tokenizers(world, tmp_path):
    """Train captions are masked to K; val captions and zero-shot prompts stay at N = 32."""
    plan = train.make_plan(
        base_args(world, tmp_path, "tok", "--reduction-mask", "block", "--text-tokens", "4")
        + ["--val-data", world["val"], "--val-num-samples", "32"]
    )
    plan.oc.logs = "none"  # no run folder
    run = train.make_run(plan)
    zero_shot = run.get_tokenizer("clipf-vit-micro", context_length=4)  # what open_clip_train asks for
    assert zero_shot(["a photo of a golden retriever, a type of dog."]).shape == (1, 32)
    import open_clip

    _, pp_train, pp_val = open_clip.create_model_and_transforms("clipf-vit-micro")
    plan.oc.rank, plan.oc.world_size, plan.oc.distributed = 0, 1, False
    with run.session():  # the data pipeline runs with clipf's handlers in place
        data = run.get_data(plan.oc, (pp_train, pp_val), tokenizer=zero_shot)
        images, texts = next(iter(data["train"].dataloader))
        _, val_texts = next(iter(data["val"].dataloader))
    assert images.shape == (16, 3, 32, 32) and texts.shape == (16, 4)
    assert val_texts.shape[1] == 32 and (val_texts[:, 4:] != 0).any()  # long captions kept whole


def test_zero_shot_prompts_at_full_length(world, tmp_path, monkeypatch):
    """The trap: open_clip_train builds its zero-shot tokenizer at --force-context-length (K), cutting
    prompts to K tokens. Under clipf.train a K=4 tower builds its classifier from 32-token prompts."""
    from open_clip_train import zero_shot

    for c in range(2):
        (tmp_path / "imagenet" / f"n{c:08d}").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 40), (200 * c, 50, 50)).save(
                tmp_path / "imagenet" / f"n{c:08d}" / f"{i}.png"
            )
    seen = {}
    real = zero_shot.build_zero_shot_classifier

    def spy(model, tokenizer, classnames, templates, **kw):  # 5 classes, 2 templates: a small test
        seen["prompt"] = tokenizer(["a photo of a goldfish, a type of fish."])
        seen["context"] = model.context_length
        return real(model, tokenizer, classnames[:5], templates[:2], **kw)  # top-5 needs 5

    monkeypatch.setattr(zero_shot, "build_zero_shot_classifier", spy)
    argv = base_args(
        world, tmp_path, "zs", "--reduction-mask", "truncate", "--text-tokens", "4",
        "--imagenet-val", str(tmp_path / "imagenet"), "--zeroshot-frequency", "1",
    )  # fmt: skip
    assert train.main(argv) == 0
    assert seen["prompt"].shape == (1, 32) and (seen["prompt"][0, 4:] != 0).any() and seen["context"] == 32
    (rec,) = read_json(tmp_path / "zs" / "metrics.json")
    assert "val/imagenet-zeroshot-val-top1" in rec


# --------------------------------------------------------------------------- the seed README's commands
SEED_PRETRAIN = """--train-data "/data/cc12m/cc12m-train-{0000..2175}.tar" --train-num-samples 10968539
--imagenet-val "/data/imagenet/validation/" --dataset-type webdataset --model ViT-B-16 --batch-size 896
--aug-cfg scale="(0.50, 1.0)" --force-patch-dropout 0.75 --force-text-dropout 0.75 --reduction-mask "frequency"
--mask-probability-file "../data/cc12m/cc12m_fq_1e6_words.json" --lr 1e-3 --wd 0.2 --epochs 30 --precision amp
--workers 4"""
SEED_FINETUNE = """--train-data "/data/cc12m/cc12m-train-{0000..2175}.tar" --train-num-samples 10968539
--imagenet-val "/data/imagenet/validation/" --dataset-type webdataset --model ViT-B-16
--pretrained "/path/to/checkpoints/epoch_K.pt" --batch-size 160 --aug-cfg scale="(0.50, 1.0)" --lr 1e-5
--lr-warmup-epochs 0.1 --epochs 1 --precision amp --workers 4"""


def seed_argv(text: str, tmp_path: Path, world: dict) -> list[str]:
    """The README command (shlex-split as a shell would), its paths pointed at small local stand-ins."""
    import shlex

    (tmp_path / "imagenet").mkdir(exist_ok=True)
    ckpt = tmp_path / "epoch_K.pt"
    ckpt.touch()
    cc12m = tmp_path / "cc12m"
    cc12m.mkdir(exist_ok=True)
    for i in range(2176):
        (cc12m / f"cc12m-train-{i:04d}.tar").touch()
    text = text.replace("../data/cc12m/cc12m_fq_1e6_words.json", world["table"])
    text = text.replace("/data/cc12m/", f"{cc12m}/").replace(
        "/data/imagenet/validation/", str(tmp_path / "imagenet")
    )
    text = text.replace("/path/to/checkpoints/epoch_K.pt", str(ckpt))
    return shlex.split(text)


def test_seed_readme_commands_parse(world, tmp_path, monkeypatch):
    no_check = lambda oc, ctx: None  # noqa: E731 - no 600 MB ViT-B-16 file here
    monkeypatch.setattr(engine.preflight, "check_pretrained", no_check)
    pre = train.make_plan(seed_argv(SEED_PRETRAIN, tmp_path, world))
    assert (
        pre.stages == [engine.Stage(0, "frequency", 8)] and pre.full_context == 32 and pre.train_context == 8
    )
    assert (
        pre.oc.force_patch_dropout == 0.75
        and pre.oc.aug_cfg == {"scale": (0.5, 1.0)}
        and pre.oc.model == "ViT-B-16"
    )
    assert pre.oc.force_context_length == 8 and pre.oc.epochs == 30 and pre.oc.precision == "amp"
    ft = train.make_plan(seed_argv(SEED_FINETUNE, tmp_path, world))
    assert not ft.stages and ft.train_context == 32 and ft.warmup_epochs == 0.1 and ft.oc.lr == 1e-5
    assert ft.oc.pretrained.endswith("epoch_K.pt") and ft.oc.force_context_length == 32


# --------------------------------------------------------------------------- schedule
def test_epoch_tokenizer_switches_and_pads():
    from clipf.masking import MaskingTokenizer

    tok = engine.EpochTokenizer([0, 2], [MaskingTokenizer("truncate", 4), MaskingTokenizer("block", 6)], 6)
    caption = ["one two three four five six seven eight nine ten eleven twelve"]
    first = tok(caption)
    assert first.shape == (1, 6) and (first[0, 4:] == 0).all()
    tok.set_epoch(2)
    assert tok(caption).shape == (1, 6) and (tok(caption)[0] != 0).all()
    assert engine.parse_schedule("0:frequency:8, 5:block", None, 8) == [
        engine.Stage(0, "frequency", 8),
        engine.Stage(5, "block", 8),
    ]
    assert engine.parse_schedule("3:block:4", "random", 8)[0] == engine.Stage(0, "random", 8)


def test_mask_schedule_run(world, tmp_path):
    argv = base_args(
        world, tmp_path, "sched", "--mask-schedule", "0:frequency:4,1:block:6",
        "--freq-table", world["table"], "--epochs", "2",
    )  # fmt: skip
    assert train.main(argv) == 0
    recs = read_json(tmp_path / "sched" / "metrics.json")
    assert [(r["masker"], r["text_tokens"], r["text_context"]) for r in recs] == [
        ("frequency", 4, 6),
        ("block", 6, 6),
    ]
    assert "zero-padded" in (tmp_path / "sched" / "out.log").read_text()


# --------------------------------------------------------------------------- fine-tune and export
def test_finetune_k_checkpoint_at_32(pretrained, world, tmp_path):
    ckpt = pretrained / "checkpoints" / "epoch_1.pt"
    argv = base_args(world, tmp_path, "k6/finetune", "--pretrained", str(ckpt), "--finetune", warmup=False)
    assert train.main(argv) == 0
    run = tmp_path / "k6" / "finetune"
    cfg = read_json(run / "clipf.json")
    assert cfg["finetune"] and cfg["masker"] == "none" and cfg["text_context"] == 32
    assert cfg["lr"] == 1e-5 and cfg["lr_warmup_epochs"] == 0.1 and cfg["warmup"] == 0  # round(0.1 * 4)
    assert cfg["image_mask"] == 0.0
    (rec,) = read_json(run / "metrics.json")
    assert rec["text_context"] == 32 and rec["image_tokens"] == 17
    assert ckpt_rows(run / "checkpoints" / "epoch_1.pt") == 32


def test_run_export_evaluates_at_32(pretrained):
    """RUN/export (written at the end of training) holds the trained 6-token tower at 32 tokens."""
    import open_clip

    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{pretrained / 'export'}")
    tok = open_clip.get_tokenizer(f"local-dir:{pretrained / 'export'}")
    short, long = "a red dog", "a photo of a small red dog on the beach near the old house under a tree"
    ckpt = str(pretrained / "checkpoints" / "epoch_1.pt")
    k6 = open_clip.create_model("clipf-vit-micro", pretrained=ckpt, force_context_length=6)  # as trained
    assert tok([short, long]).shape == (2, 32) and k6.context_length == 6
    with torch.no_grad():
        feats = model.eval().encode_text(tok([short, long]))
        ref = k6.eval().encode_text(open_clip.get_tokenizer("clipf-vit-micro", context_length=6)([short]))
    assert torch.allclose(feats[0], ref[0], atol=1e-5) and not torch.allclose(feats[0], feats[1], atol=1e-3)


# --------------------------------------------------------------------------- kill -9 and resume
def test_kill_and_resume(world, tmp_path):
    args = base_args(
        world, tmp_path, "run", "--epochs", "3", "--dataset-resampled", "--reduction-mask", "block",
        "--text-tokens", "6", "--resume", "latest", samples=640,
    )  # fmt: skip
    ckpts = tmp_path / "run" / "checkpoints"
    proc = subprocess.Popen(
        [PY, "-m", "clipf.train", *args], env=ENV, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 240
    while not (ckpts / "epoch_1.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "first checkpoint never appeared"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid epoch 2
    proc.wait()
    assert sorted(p.name for p in ckpts.glob("*.pt")) == ["epoch_1.pt"]
    assert train.main(args) == 0  # --resume latest: continue
    assert sorted(p.name for p in ckpts.glob("*.pt")) == ["epoch_1.pt", "epoch_2.pt", "epoch_3.pt"]
    log = (tmp_path / "run" / "out.log").read_text()
    assert "resuming checkpoint" in log and "epoch_1.pt" in log
    recs = read_json(tmp_path / "run" / "metrics.json")
    launches = read_json(tmp_path / "run" / "clipf.json")["launches"]
    assert [r["epoch"] for r in recs] == [1, 2, 3] and [x["start_epoch"] for x in launches] == [0, 1]
    assert recs[-1]["samples_seen"] == 3 * 640

    # the uninterrupted run: same schedule and optimizer state (its text masks are drawn from another stream)
    ref_args = ["ref" if a == "run" else a for a in args]
    assert train.main(ref_args) == 0  # --resume latest with nothing to resume: starts from scratch
    assert "No latest resume checkpoint found" in (tmp_path / "ref" / "out.log").read_text()
    ref = read_json(tmp_path / "ref" / "metrics.json")
    assert [r["lr"] for r in recs] == pytest.approx([r["lr"] for r in ref], rel=1e-9)
    final = [
        torch.load(p / "checkpoints" / "epoch_3.pt", weights_only=True)
        for p in (tmp_path / "run", tmp_path / "ref")
    ]
    steps = [{int(s["step"]) for s in c["optimizer"]["state"].values()} for c in final]
    assert steps[0] == steps[1] == {3 * 40}


def test_a_run_puts_the_loggers_levels_back(world, tmp_path):
    """open_clip_train's setup_logging sets every logger to INFO for the run; after it the levels are what
    they were, so torch does not print its TorchDynamo / FakeTensor statistics when the process exits."""
    import logging

    from clipf import train

    names = ["torch._dynamo", "torch._subclasses.fake_tensor", "clipf.test.quiet"]
    logging.getLogger("clipf.test.quiet").setLevel(logging.ERROR)
    before = [logging.getLogger(n).level for n in names] + [logging.root.level]
    assert train.main(base_args(world, tmp_path, "quiet")) == 0
    assert [logging.getLogger(n).level for n in names] + [logging.root.level] == before
    assert not logging.getLogger("torch._dynamo").isEnabledFor(logging.INFO)


def test_atomic_save_never_leaves_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "epoch_1.pt"
    files.atomic_save({"a": torch.ones(3)}, str(target))
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_save({"a": torch.zeros(3)}, str(target))
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(torch.load(target)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_1.pt"]


# --------------------------------------------------------------------------- corrupt data
def test_corrupt_shards_are_skipped_and_counted(world, tmp_path):
    src = Path(world["root"]) / "train"
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(2):
        (bad / f"{i:05d}.tar").write_bytes((src / f"{i:05d}.tar").read_bytes())
    whole = (src / "00002.tar").read_bytes()
    (bad / "00002.tar").write_bytes(whole[: len(whole) // 2 + 100])  # truncated mid-file
    with wds.TarWriter(str(bad / "00003.tar")) as sink:
        for i in range(4):
            sink.write({"__key__": f"bad{i}", "png": b"not an image", "txt": "a red dog"})
        sink.write({"__key__": "nocaption", "png": (src / "00000.tar").read_bytes()[:10]})
    (bad / "sizes.json").write_text(json.dumps({f"{i:05d}.tar": 32 for i in range(4)}))
    spec = str(bad / "{00000..00003}.tar")
    argv = base_args({**world, "train": spec}, tmp_path, "bad", "--workers", "2")
    assert train.main(argv) == 0
    (rec,) = read_json(tmp_path / "bad" / "metrics.json")
    assert rec["skipped"] >= 5 and rec["skipped_total"] == rec["skipped"] and rec["samples"] == 64
    log = (tmp_path / "bad" / "out.log").read_text()
    assert "clipf: skipped a bad record" in log and "bad0 png" in log
    assert f"skipped {rec['skipped']} bad records" in log


# --------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def other_arch_ckpt(tmp_path_factory) -> str:
    import open_clip

    models.register()
    path = tmp_path_factory.mktemp("other") / "tiny.pt"
    net = open_clip.create_model("clipf-vit-tiny")
    torch.save({"epoch": 1, "state_dict": net.state_dict()}, path)
    return str(path)


BAD = {
    "unknown masker": (["--reduction-mask", "frequenzy", "--text-tokens", "8"], "unknown masker"),
    "K < 3": (["--reduction-mask", "block", "--text-tokens", "2"], "must be in [3, 77]"),
    "K > 77": (["--reduction-mask", "block", "--text-tokens", "78"], "must be in [3, 77]"),
    "K > N": (["--text-tokens", "40"], "exceeds the full context length N=32"),
    "no table": (["--reduction-mask", "frequency", "--text-tokens", "8"], "word-frequency table"),
    "missing table": (["--reduction-mask", "frequency", "--freq-table", "/no/such.json"], "no such file"),
    "text dropout": (["--force-text-dropout", "1.0"], "must be in [0, 1)"),
    "dropout vs K": (["--force-text-dropout", "0.75", "--text-tokens", "6"], "disagree"),
    "schedule": (["--mask-schedule", "0:block:8,x:random"], "EPOCH and K must be integers"),
    "mask option": (["--reduction-mask", "block", "--mask-option", "fil=tokens"], "fil"),
    "objective": (["--objective", "clipp"], "unknown objective 'clipp'"),
    "option typo": (["--epocs", "3"], "open_clip_train rejected"),
    "model": (["--model", "ViT-B-17"], "did you mean"),
    "shards": (["--train-data", "/no/such/{00000..00003}.tar"], "4 of 4 shards do not exist"),
    "resume nameless": (["--resume", "latest"], "needs --name"),
    "resume missing": (["--resume", "/no/such/epoch_3.pt"], "no such checkpoint"),
    "finetune": (["--finetune"], "needs --pretrained"),
    "finetune masked": (["--finetune", "--text-tokens", "8"], "drop the text-masking options"),
    "context": (["--text-tokens", "8", "--force-context-length", "8"], "use --text-tokens"),
    "pretrained tag": (["--pretrained", "laion2b"], "no such file, nor a pretrained tag"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_before_training(world, tmp_path, capsys, case):
    extra, message = BAD[case]
    argv = base_args(world, tmp_path, None if case == "resume nameless" else "bad", *extra)
    assert train.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_bad_pretrained_architecture(world, tmp_path, capsys, other_arch_ckpt):
    from clipf.cli import main as clipf_main

    argv = ["train", *base_args(world, tmp_path, "ft", "--pretrained", other_arch_ckpt)]
    assert clipf_main(argv) == 2
    err = capsys.readouterr().err
    assert "is not a checkpoint of --model clipf-vit-micro" in err and "of another shape" in err


def test_existing_run_needs_resume(world, tmp_path, capsys):
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "out.log").write_text("")
    assert train.main(base_args(world, tmp_path, "done")) == 2
    assert "--resume latest to continue it" in capsys.readouterr().err


def test_warmup_fraction_and_help(world, tmp_path, capsys):
    plan = train.make_plan(base_args(world, tmp_path, "w", "--warmup", "0.25") + ["--text-tokens", "8"])
    assert plan.warmup_epochs == 0.25 and plan.stages == [engine.Stage(0, "truncate", 8)]
    assert "--force-context-length" in plan.oc_argv and plan.oc.force_context_length == 8
    assert train.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--reduction-mask" in out and "--train-num-samples" in out


def test_models_registered():
    import open_clip

    names = models.register()
    assert (
        {"clipf-vit-tiny", "clipf-vit-tiny-64", "clipf-vit-micro"}
        <= set(names)
        <= set(open_clip.list_models())
    )
    tiny = open_clip.create_model("clipf-vit-tiny")
    assert 5e6 < sum(p.numel() for p in tiny.parameters()) < 15e6
    assert tiny.context_length == 32 and tiny.visual.image_size == (32, 32)


# --------------------------------------------------------------------------- the frequency rule
def authors_file(path: Path, threshold: float = 5e-3) -> Path:
    """A {word: P} file written as the authors' tests/data_counter.py writes it (json.dump of
    1 - round(sqrt(t / f), 6), no clamp): words rarer than t get P < 0."""
    counts = {w: 5 * (i + 1) ** 2 for i, w in enumerate(WORDS)}
    total = sum(counts.values())
    probs = {w: 1 - round(float(np.sqrt(threshold / (c / total))), 6) for w, c in counts.items()}
    assert min(probs.values()) < -1 and max(probs.values()) > 0.5  # negative entries, as theirs
    path.write_text(json.dumps(probs))
    return path


def test_seed_readme_pretraining_with_an_authors_file(world, tmp_path, monkeypatch):
    """The seed README's pre-training masking flags, verbatim, with a file in the authors' format that has
    negative entries: it plans (rule authors, P as in the file), trains, and records the rule."""
    probs_file = authors_file(tmp_path / "cc_fq_words.json")
    probs = read_json(probs_file)
    monkeypatch.setattr(engine.preflight, "check_pretrained", lambda oc, ctx: None)
    pre = train.make_plan(seed_argv(SEED_PRETRAIN, tmp_path, {**world, "table": str(probs_file)}))
    assert pre.freq_rule == "authors" and pre.masker_opts("frequency")["rule"] == "authors"
    assert pre.to_json()["freq_rule"] == "authors"
    # the masking flags of the README, on the tiny world
    flags = ["--force-patch-dropout", "0.75", "--force-text-dropout", "0.75", "--reduction-mask", "frequency"]
    flags += ["--mask-probability-file", str(probs_file)]
    assert train.main(base_args(world, tmp_path, "seed/pretrain", *flags)) == 0
    run = tmp_path / "seed" / "pretrain"
    cfg = read_json(run / "clipf.json")
    assert (cfg["masker"], cfg["text_tokens"], cfg["freq_rule"]) == ("frequency", 8, "authors")
    assert (run / "export" / files.CONFIG_NAME).is_file()
    # the rarest words (P <= -1) outrank every word with P >= 0: all kept, whatever the draw
    plan = train.make_plan(base_args(world, tmp_path, "again/pretrain", *flags))
    tok = plan.train_tokenizer()
    rare = sorted((w for w in WORDS if probs[w] <= -1), key=probs.get)[:3]
    common = [w for w in WORDS if probs[w] >= 0][:10]
    from clipf.masking import decode

    for _ in range(5):
        kept = decode(tok([" ".join(common[:5] + rare + common[5:])])[0]).split()
        assert set(rare) <= set(kept) and len(kept) == 6


def test_freq_rule_option(world, tmp_path, capsys):
    """--freq-rule clamped reaches the masker and clipf.json; a bad rule, or the option without the
    frequency masker, is refused before training."""
    extra = ["--reduction-mask", "frequency", "--text-tokens", "6", "--freq-table", world["table"]]
    plan = train.make_plan(base_args(world, tmp_path, "c", *extra, "--freq-rule", "clamped"))
    assert plan.masker_opts("frequency")["rule"] == "clamped" and plan.to_json()["freq_rule"] == "clamped"
    assert train.make_plan(base_args(world, tmp_path, "d", *extra)).freq_rule == "authors"
    unmasked = train.make_plan(
        base_args(world, tmp_path, "e", "--reduction-mask", "block", "--text-tokens", "6")
    )
    assert unmasked.freq_rule is None and unmasked.to_json()["freq_rule"] is None
    for argv, message in (
        ([*extra, "--freq-rule", "clampd"], "--freq-rule 'clampd': one of authors, clamped"),
        (
            ["--reduction-mask", "block", "--text-tokens", "6", "--freq-rule", "clamped"],
            "masker(s) in use: block",
        ),
        ([*extra, "--mask-option", "rule=clamped"], "use --freq-table / --freq-threshold / --freq-rule"),
    ):
        assert train.main(base_args(world, tmp_path, "bad", *argv)) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
