"""Training benchmarks for clipf.train (CPU); results go to bench/results/train_*.json.

    python bench/train.py overhead     clipf.train vs stock open_clip_train, same tiny config and data,
                                       alternating runs (target: clipf >= 0.97x stock samples/s)
    python bench/train.py speedup      what masking buys on the tiny model: (32 text tokens, no image mask)
                                       vs (8, 50%) vs (8, 75%) vs (4, 75%): samples/s ratio beside the
                                       FLOP ratio (torch.utils.flop_counter), and where the time goes
    python bench/train.py pos-extend   a K=8 CLIPF model evaluated at 32 tokens with the position table
                                       extended by `repeat` vs `interpolate` (and at K): picks the default
    python bench/train.py all          the three (add --quick for a smoke run of each)

Throughput is measured the same way for both trainers, in this process: open_clip_train's
``train_one_epoch`` (the loop both run) is wrapped with a wall clock and the thread's CPU clock. With one
torch thread and ``--workers 0`` the whole loop — data decoding, augmentation, text masking, forward,
backward, optimizer — is this thread's work, so samples per CPU-second is what the code costs, unaffected
by the other processes on this shared 2-core machine (samples per wall-second is recorded too). Every
number in bench/README.md comes from the JSON files written here.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "train"
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# ----------------------------------------------------------------------------- a small structured world
COLORS = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
    "purple": (140, 50, 170), "orange": (240, 140, 30), "white": (240, 240, 240), "black": (20, 20, 20),
}  # fmt: skip
SHAPES = ("square", "circle", "triangle", "cross", "bar")
PLACES = ("left", "right", "top", "bottom", "middle")
FILLER = (
    "a the of this is an image photo picture showing with and very nice small big there here on in "
    "at some it that looks like"
).split()


def _draw(rng: np.random.Generator, color: str, shape: str, place: str, size: int = 32) -> np.ndarray:
    img = rng.normal(128, 30, (size, size, 3)).clip(0, 255)
    r = int(rng.integers(5, 9))
    cx, cy = {"left": (8, 16), "right": (24, 16), "top": (16, 8), "bottom": (16, 24), "middle": (16, 16)}[
        place
    ]
    cx, cy = cx + int(rng.integers(-2, 3)), cy + int(rng.integers(-2, 3))
    yy, xx = np.mgrid[:size, :size]
    dx, dy = xx - cx, yy - cy
    mask = {
        "square": (abs(dx) <= r) & (abs(dy) <= r),
        "circle": dx**2 + dy**2 <= r * r,
        "triangle": (dy <= r) & (dy >= -r) & (abs(dx) <= (dy + r) / 2),
        "cross": ((abs(dx) <= r) & (abs(dy) <= r // 3)) | ((abs(dy) <= r) & (abs(dx) <= r // 3)),
        "bar": (abs(dx) <= r) & (abs(dy) <= max(1, r // 3)),
    }[shape]
    img[mask] = COLORS[color]
    return img.astype(np.uint8)


def _caption(rng: np.random.Generator, color: str, shape: str, place: str) -> str:
    """5-28 words; the informative words sit anywhere, among frequent filler words."""
    core = [color, shape, "on", "the", place]
    words = list(rng.choice(FILLER, size=int(rng.integers(0, 24))))
    for w in (core[:2], core[2:])[:: 1 if rng.random() < 0.5 else -1]:
        at = int(rng.integers(0, len(words) + 1))
        words[at:at] = w
    return " ".join(words)


def make_world(folder: Path, n_train: int, n_val: int, per_shard: int = 512, seed: int = 0) -> dict:
    """Webdataset shards (png, txt, json) + sizes.json, and a held-out val set with labels."""
    import webdataset as wds
    from PIL import Image

    done = folder / "world.json"
    if done.is_file():
        return json.loads(done.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    info: dict = {}
    for split, n in (("train", n_train), ("val", n_val)):
        (folder / split).mkdir(parents=True)
        sizes, k = {}, 0
        for s in range(max(1, -(-n // per_shard))):
            name, count = f"{s:05d}.tar", min(per_shard, n - k)
            with wds.TarWriter(str(folder / split / name)) as sink:
                for _ in range(count):
                    c, sh, p = rng.choice(list(COLORS)), rng.choice(SHAPES), rng.choice(PLACES)
                    buf = io.BytesIO()
                    Image.fromarray(_draw(rng, c, sh, p)).save(buf, format="PNG")
                    meta = {"color": str(c), "shape": str(sh), "place": str(p)}
                    key = f"{split}{k:07d}"
                    sink.write(
                        {"__key__": key, "png": buf.getvalue(), "txt": _caption(rng, c, sh, p), "json": meta}
                    )
                    k += 1
            sizes[name] = count
        (folder / split / "sizes.json").write_text(json.dumps(sizes))
        last = len(sizes) - 1
        info[split] = {
            "pattern": str(folder / split / f"{{00000..{last:05d}}}.tar"),
            "n": n,
            "shards": len(sizes),
        }
    from clipf.freq import build_table

    table = build_table(sorted((folder / "train").glob("*.tar")), progress=False)
    table.save(folder / "freq.json")
    info["freq"] = str(folder / "freq.json")
    done.write_text(json.dumps(info))
    return info


# ----------------------------------------------------------------------------- running trainers
def run_loop(kind: str, args: list[str], logs: Path, name: str) -> dict:
    """One training run in this process, its training loop timed: open_clip_train's ``train_one_epoch``
    (what both trainers run; clipf.train calls it from its wrapper) is wrapped with wall and thread-CPU
    clocks. One torch thread and ``--workers 0``: the loop, its data pipeline included, is this thread's
    work, so CPU seconds do not count other processes on the shared machine (wall seconds do)."""
    import logging

    from open_clip_train import main as oc_main

    from clipf import models, train

    models.register()
    shutil.rmtree(logs / name, ignore_errors=True)
    argv = [*args, "--logs", str(logs), "--name", name]
    real = oc_main.train_one_epoch
    clock = {"wall": 0.0, "cpu": 0.0}

    def timed(*a, **k):
        w, c = time.perf_counter(), time.thread_time()
        try:
            return real(*a, **k)
        finally:
            clock["wall"] += time.perf_counter() - w
            clock["cpu"] += time.thread_time() - c

    handlers = list(logging.root.handlers)
    oc_main.train_one_epoch = timed
    try:
        rc = train.main([*argv, "--no-export"]) if kind == "clipf" else oc_main.main(argv)
    finally:
        oc_main.train_one_epoch = real
        for h in logging.root.handlers[:]:  # stock open_clip_train leaves its handlers on the root logger
            if h not in handlers:
                logging.root.removeHandler(h)
                h.close()
    if rc not in (None, 0):
        raise RuntimeError(f"{kind} run {name} failed ({rc})")
    return clock


def rates(clock: dict, samples: int) -> dict:
    return {
        "samples_per_cpu_second": samples / clock["cpu"],
        "samples_per_second": samples / clock["wall"],
        "cpu_seconds": clock["cpu"],
        "wall_seconds": clock["wall"],
    }


def common(model: str, batch: int, steps: int, data: list[str]) -> list[str]:
    return [
        *data, "--train-num-samples", str(batch * steps), "--model", model, "--batch-size", str(batch),
        "--epochs", "1", "--workers", "0", "--precision", "fp32", "--warmup", "2", "--seed", "0",
        "--report-to", "",
    ]  # fmt: skip


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def bench_overhead(repeats: int, steps: int, batch: int) -> dict:
    """clipf.train vs stock open_clip_train, alternating in one process; synthetic data (stock
    open_clip_train 3.3 cannot read webdataset shards with webdataset >= 1.0: its group_by_keys_nothrow
    trips on the end-of-shard markers, which clipf.train works around)."""
    logs = WORK / "overhead"
    args = common("clipf-vit-tiny", batch, steps, ["--dataset-type", "synthetic"])
    rows: dict[str, list[dict]] = {"clipf": [], "stock": []}
    for r in range(repeats):
        for kind in ("clipf", "stock") if r % 2 == 0 else ("stock", "clipf"):
            rows[kind].append(rates(run_loop(kind, args, logs, f"{kind}{r}"), batch * steps))
            x = rows[kind][-1]
            print(
                f"  overhead {kind:5s} run {r}: {x['samples_per_cpu_second']:.1f} samples/CPU-s, {x['samples_per_second']:.1f} samples/s",
                flush=True,
            )
    pairs = [
        c["samples_per_cpu_second"] / s["samples_per_cpu_second"]
        for c, s in zip(rows["clipf"], rows["stock"], strict=True)
    ]
    med = {
        k: {m: _median(v, m) for m in ("samples_per_cpu_second", "samples_per_second")}
        for k, v in rows.items()
    }
    return {
        "model": "clipf-vit-tiny", "batch_size": batch, "steps_per_run": steps, "data": "synthetic", "workers": 0,
        "runs": rows, "median": med,
        "ratio_cpu": med["clipf"]["samples_per_cpu_second"] / med["stock"]["samples_per_cpu_second"],
        "ratio_wall": med["clipf"]["samples_per_second"] / med["stock"]["samples_per_second"],
        "ratio_cpu_per_pair": pairs, "target": 0.97,
    }  # fmt: skip


CONFIGS = [  # (label, text tokens, image mask)
    ("32 tok, no image mask", 32, 0.0),
    ("8 tok, 50% image mask", 8, 0.5),
    ("8 tok, 75% image mask", 8, 0.75),
    ("4 tok, 75% image mask", 4, 0.75),
]


def flops_per_step(model_name: str, k: int, mask: float, batch: int) -> dict:
    """Forward + backward FLOPs of one training step (torch.utils.flop_counter, train mode)."""
    import open_clip
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from clipf import models

    models.register()
    torch.manual_seed(0)
    net = open_clip.create_model(model_name, force_context_length=k, force_patch_dropout=mask or None)
    net.train()
    loss = open_clip.ClipLoss()
    images = torch.randn(batch, 3, 32, 32)
    texts = torch.randint(1, 49000, (batch, k))
    texts[:, -1] = 49407  # the end token, where features are read
    with FlopCounterMode(display=False) as counter:
        img, txt, scale = net(images, texts)
        loss(img, txt, scale).backward()
    per_module = counter.get_flop_counts()
    vis = sum(per_module.get("CLIP.visual", {}).values())
    total = counter.get_total_flops()
    return {"total": total, "visual": vis, "text": total - vis}


def time_parts(model_name: str, k: int, mask: float, batch: int, reps: int = 4) -> dict:
    """Thread-CPU seconds of one step's forward (+ loss), backward and AdamW step, outside the trainer."""
    import open_clip
    import torch

    from clipf import models

    models.register()
    torch.manual_seed(0)
    net = open_clip.create_model(model_name, force_context_length=k, force_patch_dropout=mask or None).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss = open_clip.ClipLoss()
    images, texts = torch.randn(batch, 3, 32, 32), torch.randint(1, 49000, (batch, k))
    parts: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}
    for i in range(reps + 1):
        t0 = time.thread_time()
        img, txt, scale = net(images, texts)
        value = loss(img, txt, scale)
        t1 = time.thread_time()
        value.backward()
        t2 = time.thread_time()
        opt.step()
        opt.zero_grad()
        t3 = time.thread_time()
        if i:
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                parts[key].append(dt)
    return {key: statistics.median(v) for key, v in parts.items()}


def bench_speedup(repeats: int, steps: int, batch: int, world: dict) -> dict:
    """Masking speed-up on clipf-vit-tiny, samples per CPU-second of the training loop: synthetic data
    (model compute) and the world's shards with frequency masking (decode, augment, mask, train)."""
    logs = WORK / "speedup"
    model = "clipf-vit-tiny"
    out: dict = {"model": model, "batch_size": batch, "steps_per_run": steps, "workers": 0, "configs": []}
    for label, k, mask in CONFIGS:
        flops = flops_per_step(model, k, mask, batch)
        parts = time_parts(model, k, mask, batch)
        cfg: dict = {
            "label": label,
            "text_tokens": k,
            "image_mask": mask,
            "flops_per_step": flops,
            "parts_cpu_seconds": parts,
        }
        masking = [] if k == 32 else ["--text-tokens", str(k)]
        image = ["--force-patch-dropout", str(mask)] if mask else []
        shards = [
            "--train-data",
            world["train"]["pattern"],
            "--dataset-type",
            "webdataset",
            "--dataset-resampled",
        ]
        freq = ["--reduction-mask", "frequency", "--freq-table", world["freq"]] if masking else []
        for data_name, data in (("synthetic", ["--dataset-type", "synthetic"]), ("shards", shards + freq)):
            runs = [
                rates(
                    run_loop(
                        "clipf",
                        common(model, batch, steps, data) + masking + image,
                        logs,
                        f"k{k}m{mask}{data_name}{r}",
                    ),
                    batch * steps,
                )
                for r in range(repeats)
            ]
            cfg[data_name] = {
                "runs": runs,
                **{m: _median(runs, m) for m in ("samples_per_cpu_second", "samples_per_second")},
            }
            print(
                f"  speedup {label:24s} {data_name:9s}: {cfg[data_name]['samples_per_cpu_second']:.1f} samples/CPU-s",
                flush=True,
            )
        out["configs"].append(cfg)
    base = out["configs"][0]
    for cfg in out["configs"]:
        cfg["flop_ratio"] = base["flops_per_step"]["total"] / cfg["flops_per_step"]["total"]
        cfg["model_step_ratio"] = sum(base["parts_cpu_seconds"].values()) / sum(
            cfg["parts_cpu_seconds"].values()
        )
        for data_name in ("synthetic", "shards"):
            d, b = cfg[data_name], base[data_name]
            d["speedup"] = d["samples_per_cpu_second"] / b["samples_per_cpu_second"]
            d["share_of_flop_ratio"] = d["speedup"] / cfg["flop_ratio"]
            d["speedup_wall"] = d["samples_per_second"] / b["samples_per_second"]
            per_sample = 1 / d["samples_per_cpu_second"]
            model_part = sum(cfg["parts_cpu_seconds"].values()) / batch
            d["cpu_per_sample"] = {
                "model_step": model_part,
                "rest (data, tokenize, loop)": per_sample - model_part,
            }
    out["target_share_of_flop_ratio"] = 0.8
    return out


# ----------------------------------------------------------------------------- pos-extend
def project_world(folder: Path, n_train: int, n_val: int, n_eval: int) -> dict:
    """The project's embedded world (clipf.world, default knobs, 32 px) and a frequency table of its
    training captions (clipf.freq)."""
    from clipf.freq import build_table
    from clipf.world.generate import synthesize

    done = folder / "bench.json"
    if done.is_file():
        return json.loads(done.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    manifest = synthesize(folder, n_train, n_val, 32, seed=0, n_eval=n_eval, progress=False)
    shards = sorted((folder / "train").glob("*.tar"))
    build_table(shards, progress=False).save(folder / "freq.json")
    info = {
        "train": str(folder / "train" / f"{{00000..{len(shards) - 1:05d}}}.tar"),
        "freq": str(folder / "freq.json"),
        "eval": str(folder / "eval"),
        "sets": sorted(manifest["eval"]),
    }
    done.write_text(json.dumps(info))
    return info


def _headline(result: dict) -> dict[str, float]:
    """acc1 of each classification set, recall@1/5 of each retrieval set, from CLIP_benchmark JSON."""
    out = {}
    for name, res in result.items():
        m = res["metrics"]
        short = name.split("/")[-1].replace("world_", "")
        if "acc1" in m:
            out[f"{short} acc1"] = m["acc1"]
        for key in (
            "image_retrieval_recall@1",
            "text_retrieval_recall@1",
            "image_retrieval_recall@5",
            "text_retrieval_recall@5",
        ):
            if key in m:
                out[f"{short} {key.replace('_retrieval_recall', ' R')}"] = m[key]
    return out


def bench_pos_extend(epochs: int, seeds: list[int], n_train: int, k: int = 8, batch: int = 64) -> dict:
    """Train a K-token CLIPF tower (frequency masking, 50% image mask) on the project's world, export it
    at K, at 32 with ``repeat`` and at 32 with ``interpolate``, and run CLIP_benchmark (clipf.evaluate) on
    every evaluation set of the world."""
    from clipf import evaluate
    from clipf import export as E

    world = project_world(WORK / f"project_world_{n_train}", n_train, 512, 500)
    logs = WORK / "pos_extend"
    variants = (
        (f"K={k}", "trained", "repeat"),
        ("32, repeat", 32, "repeat"),
        ("32, interpolate", 32, "interpolate"),
    )
    runs = []
    for seed in seeds:
        name = f"k{k}s{seed}"
        shutil.rmtree(logs / name, ignore_errors=True)
        argv = [
            "--train-data", world["train"], "--train-num-samples", str(n_train), "--dataset-type", "webdataset",
            "--model", "clipf-vit-tiny", "--batch-size", str(batch), "--epochs", str(epochs), "--workers", "1",
            "--precision", "fp32", "--lr", "1e-3", "--wd", "0.1", "--warmup", "50", "--seed", str(seed),
            "--reduction-mask", "frequency", "--text-tokens", str(k), "--freq-table", world["freq"],
            "--force-patch-dropout", "0.5", "--logs", str(logs), "--name", name, "--no-export", "--report-to", "",
        ]  # fmt: skip
        t0 = time.perf_counter()
        res = subprocess.run(
            [PY, "-m", "clipf.train", *argv], capture_output=True, text=True, env=ENV, cwd=ROOT
        )
        if res.returncode:
            raise RuntimeError(res.stderr[-3000:])
        ckpt = logs / name / "checkpoints" / f"epoch_{epochs}.pt"
        row: dict = {"seed": seed, "train_seconds": time.perf_counter() - t0}
        for label, ctx, mode in variants:
            folder = E.export(ckpt, "clipf-vit-tiny", logs / name / f"export_{ctx}_{mode}", ctx, mode)
            result = evaluate.evaluate_model(folder, dataset_root=world["eval"], num_workers=0, threads=1)
            row[label] = _headline(result)
            print(
                f"  pos-extend seed {seed} {label:16s}: "
                + ", ".join(f"{m} {v:.3f}" for m, v in row[label].items()),
                flush=True,
            )
        runs.append(row)
    labels = [v[0] for v in variants]
    metrics = list(runs[0][labels[0]])
    mean = {lbl: {m: statistics.fmean(r[lbl][m] for r in runs) for m in metrics} for lbl in labels}
    return {
        "model": "clipf-vit-tiny", "text_tokens": k, "image_mask": 0.5, "masker": "frequency", "epochs": epochs,
        "train_pairs": n_train, "batch_size": batch, "seeds": seeds, "eval_sets": world["sets"], "runs": runs, "mean": mean,
    }  # fmt: skip


def report(folder: Path = RESULTS) -> str:
    """The markdown tables of bench/README.md's Training section, from the JSON results."""
    lines: list[str] = []
    path = folder / "train_overhead.json"
    if path.is_file():
        r = json.loads(path.read_text())
        m = r["median"]
        lines += [
            "| trainer | samples / CPU-s | samples / s (wall) |",
            "|---|---|---|",
            *(
                f"| {k} | {m[k]['samples_per_cpu_second']:.1f} | {m[k]['samples_per_second']:.1f} |"
                for k in ("stock", "clipf")
            ),
            f"| **clipf / stock** | **{r['ratio_cpu']:.3f}** | {r['ratio_wall']:.3f} |",
            "",
            f"Per alternating pair (CPU): {', '.join(f'{x:.3f}' for x in r['ratio_cpu_per_pair'])}.",
            "",
        ]
    path = folder / "train_speedup.json"
    if path.is_file():
        r = json.loads(path.read_text())
        lines += [
            "| text tokens, image mask | GFLOP/step (fwd+bwd) | FLOP ratio | model-step CPU ratio | speed-up, synthetic | share of FLOP ratio | speed-up, shards + masking | share |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in r["configs"]:
            syn, sh = c["synthetic"], c["shards"]
            lines.append(
                f"| {c['label']} | {c['flops_per_step']['total'] / 1e9:.1f} | {c['flop_ratio']:.2f}x | {c['model_step_ratio']:.2f}x "
                f"| {syn['speedup']:.2f}x ({syn['samples_per_cpu_second']:.0f}/CPU-s) | {syn['share_of_flop_ratio']:.0%} "
                f"| {sh['speedup']:.2f}x ({sh['samples_per_cpu_second']:.0f}/CPU-s) | {sh['share_of_flop_ratio']:.0%} |"
            )
        lines += [
            "",
            f"CPU ms per sample (batch {r['batch_size']}): model step (forward, backward, AdamW) vs the rest of the loop:",
            "",
        ]
        lines += [
            "| text tokens, image mask | forward | backward | AdamW | rest, synthetic | rest, shards + masking |",
            "|---|---|---|---|---|---|",
        ]
        for c in r["configs"]:
            p = {k: 1000 * v / r["batch_size"] for k, v in c["parts_cpu_seconds"].items()}
            rest = [
                1000 * c[d]["cpu_per_sample"]["rest (data, tokenize, loop)"] for d in ("synthetic", "shards")
            ]
            lines.append(
                f"| {c['label']} | {p['forward']:.2f} | {p['backward']:.2f} | {p['optimizer']:.2f} | {rest[0]:.2f} | {rest[1]:.2f} |"
            )
        lines.append("")
    path = folder / "train_pos_extend.json"
    if path.is_file():
        r = json.loads(path.read_text())
        labels = list(r["mean"])
        lines += [
            "| metric (%, mean of seeds "
            + ", ".join(map(str, r["seeds"]))
            + ") | "
            + " | ".join(labels)
            + " |"
        ]
        lines += ["|---" * (len(labels) + 1) + "|"]
        for m in r["mean"][labels[0]]:
            lines.append(f"| {m} | " + " | ".join(f"{100 * r['mean'][lbl][m]:.1f}" for lbl in labels) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["overhead", "speedup", "pos-extend", "all", "report"])
    p.add_argument("--quick", action="store_true", help="a smoke run: few steps, one repeat")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args(argv)
    if a.what == "report":
        print(report(Path(a.out)))
        return 0
    import logging

    import torch

    torch.set_num_threads(1)
    logging.root.addHandler(logging.NullHandler())  # no logging.basicConfig() echo between runs
    quick = a.quick
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    host = {
        "cpu_count": os.cpu_count(),
        "threads_per_process": 1,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    todo = ["overhead", "speedup", "pos-extend"] if a.what == "all" else [a.what]
    for what in todo:
        t0 = time.perf_counter()
        print(f"{what} ...", flush=True)
        if what == "overhead":
            res = bench_overhead(a.repeats or (1 if quick else 6), 6 if quick else 24, 64)
        elif what == "speedup":
            world = make_world(WORK / ("world_quick" if quick else "world"), 1024 if quick else 8192, 256)
            res = bench_speedup(
                a.repeats or (1 if quick else 2), 4 if quick else 8, 64 if quick else 256, world
            )
        else:
            res = bench_pos_extend(1 if quick else 5, [0] if quick else [0, 1], 1024 if quick else 8192)
        res["host"] = host
        res["seconds"] = time.perf_counter() - t0
        name = {"overhead": "train_overhead", "speedup": "train_speedup", "pos-extend": "train_pos_extend"}[
            what
        ]
        path = out / f"{name}{'_quick' if quick else ''}.json"
        path.write_text(json.dumps(res, indent=2) + "\n")
        print(f"{what}: wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
