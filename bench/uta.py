"""UTA vs unmasked CLIP training of the same student, in one run; results -> bench/results/uta.json.

    python bench/uta.py            # CPU, one thread per process (the machine is shared)
    python bench/uta.py --quick    # a smoke run of every part

Three measurements, all on the same student architecture (``--student``, default ``clipf-vit-tiny``:
32 px, 8x8 patches) and the same data, the teacher being that architecture too (a random-init export:
the cost of a step does not depend on the weights; in the study the teacher is the CLIP baseline run of
the same architecture):

1. end to end — ``python -m clipf.train`` runs (unmasked CLIP, 32 text tokens; UTA at mask ratio 0.5 and
   0.75), alternated ``--repeats`` times; samples/s = batch / median per-step "Batch (t)" of
   open_clip_train's log (``--log-every-n-steps 1``, first steps dropped), data loading included.
2. step breakdown, in one process — median wall time of a CLIP step (forward + backward + AdamW), a UTA
   step, the frozen teacher's forward alone and the mask drawing alone, interleaved; the teacher's share of
   the UTA step.
3. FLOPs per training step (torch.utils.flop_counter, forward + backward) of CLIP and UTA, for the student
   here and for ViT-B/16 at 224 px with a ViT-B/16 teacher (the paper's scale; meta tensors, nothing runs).

Target: a UTA step at mask ratio 0.5 costs no more than an unmasked CLIP step of the same student.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "uta"
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
STEP = re.compile(r"Train Epoch: \d+ \[.*?Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+),")
COLORS = [(220, 40, 40), (40, 180, 60), (40, 70, 220), (230, 210, 40), (140, 50, 170), (240, 140, 30)]


def make_shards(folder: Path, n: int, size: int, per_shard: int = 256) -> str:
    """Image-caption webdataset shards (coloured squares on noise) + sizes.json."""
    import webdataset as wds
    from PIL import Image

    if (folder / "sizes.json").is_file():
        sizes = json.loads((folder / "sizes.json").read_text())
        if sum(sizes.values()) == n:
            return str(folder / f"{{00000..{len(sizes) - 1:05d}}}.tar")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = {}
    for s in range(-(-n // per_shard)):
        count = min(per_shard, n - s * per_shard)
        with wds.TarWriter(str(folder / f"{s:05d}.tar")) as sink:
            for i in range(count):
                c = int(rng.integers(len(COLORS)))
                img = rng.normal(128, 30, (size, size, 3)).clip(0, 255)
                y, x = rng.integers(0, size // 2, 2)
                img[y : y + size // 2, x : x + size // 2] = COLORS[c]
                buf = io.BytesIO()
                Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
                sink.write(
                    {"__key__": f"{s:05d}{i:05d}", "png": buf.getvalue(), "txt": f"a photo of colour {c}"}
                )
        sizes[f"{s:05d}.tar"] = count
    (folder / "sizes.json").write_text(json.dumps(sizes))
    return str(folder / f"{{00000..{len(sizes) - 1:05d}}}.tar")


def make_teacher(model: str, folder: Path) -> Path:
    import open_clip

    from clipf import export as E
    from clipf import models

    models.register()
    if (folder / E.WEIGHTS_NAME).is_file():
        return folder
    torch.manual_seed(0)
    ckpt = folder.parent / f"{folder.name}.pt"
    folder.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": open_clip.create_model(model).state_dict()}, ckpt)
    return E.export(ckpt, model, folder)


# ----------------------------------------------------------------------------- 1. end to end
def run_trainer(name: str, extra: list[str], data: str, n: int, args: argparse.Namespace) -> dict:
    logs = WORK / "runs"
    shutil.rmtree(logs / name, ignore_errors=True)
    argv = [
        "--model", args.student, "--train-data", data, "--train-num-samples", str(n),
        "--dataset-type", "webdataset", "--batch-size", str(args.batch), "--epochs", "1", "--workers", "1",
        "--precision", "fp32", "--lr", "1e-3", "--warmup", "1", "--seed", "0", "--log-every-n-steps", "1",
        "--logs-dir", str(logs), "--name", name, "--no-export", "--report-to", "none", *extra,
    ]  # fmt: skip
    t0 = time.perf_counter()
    res = subprocess.run([PY, "-m", "clipf.train", *argv], env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"{name} failed:\n{res.stderr[-3000:]}")
    steps = [float(m.group(2)) for m in STEP.finditer((logs / name / "out.log").read_text())]
    return {"step_seconds": steps[args.warmup :], "wall_seconds": wall}


def end_to_end(args: argparse.Namespace, teacher: Path) -> dict:
    n = args.batch * (args.steps + args.warmup)
    data = make_shards(WORK / f"data{args.image_size}", n, args.image_size)
    rows = {
        "clip": [],
        "uta-m50": ["--objective", "uta", "--teacher", str(teacher), "--uta-mask-ratio", "0.5"],
        "uta-m75": ["--objective", "uta", "--teacher", str(teacher), "--uta-mask-ratio", "0.75"],
    }
    steps: dict[str, list[float]] = {k: [] for k in rows}
    walls: dict[str, list[float]] = {k: [] for k in rows}
    for r in range(args.repeats):
        for name, extra in rows.items():
            out = run_trainer(f"{name}-{r}", extra, data, n, args)
            steps[name] += out["step_seconds"]
            walls[name].append(out["wall_seconds"])
            print(
                f"  e2e {name} repeat {r}: median step {statistics.median(out['step_seconds']) * 1e3:.1f} ms",
                flush=True,
            )
    out = {}
    for name in rows:
        med = statistics.median(steps[name])
        out[name] = {
            "samples_per_second": args.batch / med,
            "median_step_seconds": med,
            "steps_measured": len(steps[name]),
            "process_wall_seconds": walls[name],
        }
    for name in rows:
        out[name]["vs_clip"] = out[name]["samples_per_second"] / out["clip"]["samples_per_second"]
    return out


# ----------------------------------------------------------------------------- 2. step breakdown
def models_for(student: str, device: str = "cpu", ratio: float = 0.5, masker: str = "reversed_block"):
    """An open_clip CLIP of ``student`` and a UTA model of the same student with a same-architecture
    teacher (both random init)."""
    import open_clip

    from clipf import models
    from clipf.objectives import uta

    models.register()
    torch.manual_seed(0)
    clip = open_clip.create_model(student, device=device, output_dict=True)
    teacher = open_clip.create_model(student, device=device).eval().requires_grad_(False)
    torch.manual_seed(0)
    student_clip = open_clip.create_model(student, device=device, output_dict=True)
    for name, p in student_clip.named_parameters():
        p.requires_grad = name.startswith("visual.")
    model = uta.UTAModel(student_clip, teacher, ratio=ratio, masker=masker).to(device)
    return clip, model


def step_breakdown(args: argparse.Namespace) -> dict:
    from open_clip import ClipLoss

    from clipf.objectives import uta

    torch.set_num_threads(1)
    clip, model = models_for(args.student)
    clip.train()
    model.train()
    size = clip.visual.image_size[0]
    images = torch.randn(args.batch, 3, size, size)
    texts = torch.randint(1, 49000, (args.batch, clip.context_length))
    clip_loss, uta_loss = ClipLoss(), uta.UTALoss()
    opt_c = torch.optim.AdamW([p for p in clip.parameters() if p.requires_grad], lr=1e-4)
    opt_u = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def clip_step():
        out = clip(images, texts)
        loss = clip_loss(out["image_features"], out["text_features"], out["logit_scale"])
        opt_c.zero_grad()
        loss.backward()
        opt_c.step()

    def uta_step():
        loss = uta_loss(**model(images, texts))
        opt_u.zero_grad()
        loss.backward()
        opt_u.step()

    kinds = {
        "clip_step": clip_step,
        "uta_step": uta_step,
        "teacher_forward": lambda: model.teach(images),
        "mask_draw": lambda: model.sample_keep(args.batch),
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(args.reps + 3):
        for name, fn in kinds.items():
            t0 = time.perf_counter()
            fn()
            if r >= 3:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "median_seconds": med,
        "reps": args.reps,
        "batch": args.batch,
        "uta_over_clip": med["uta_step"] / med["clip_step"],
        "teacher_share_of_uta_step": med["teacher_forward"] / med["uta_step"],
        "mask_share_of_uta_step": med["mask_draw"] / med["uta_step"],
    }


# ----------------------------------------------------------------------------- 3. FLOPs
def flops(student: str, batch: int, ratios=(0.5, 0.75)) -> dict:
    """Forward + backward FLOPs of one step (meta tensors): CLIP, and UTA per mask ratio with the
    teacher's forward shown apart."""
    from open_clip import ClipLoss
    from torch.utils.flop_counter import FlopCounterMode

    from clipf.objectives import uta

    def count(fn) -> int:
        with FlopCounterMode(display=False) as counter:
            fn()
        return int(counter.get_total_flops())

    clip, _ = models_for(student, device="meta")
    size = clip.visual.image_size[0]
    images = torch.randn(batch, 3, size, size, device="meta")
    texts = torch.zeros(batch, clip.context_length, dtype=torch.long, device="meta")
    loss = ClipLoss()

    def clip_step():
        out = clip.train()(images, texts)
        loss(out["image_features"], out["text_features"], out["logit_scale"]).backward()

    out = {"clip": count(clip_step)}
    for ratio in ratios:
        _, model = models_for(student, device="meta", ratio=ratio)
        model.train()
        teacher = count(lambda m=model: m.teach(images))
        total = count(lambda m=model: uta.UTALoss()(**m(images, texts)).backward())
        out[f"uta-m{round(ratio * 100)}"] = {
            "total": total,
            "teacher_forward": teacher,
            "vs_clip": total / out["clip"],
        }
    grid = clip.visual.grid_size
    return {"student": student, "image_size": size, "grid": list(grid), "batch": batch, "flops_per_step": out}


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--student", default="clipf-vit-tiny")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=12, help="measured steps per end-to-end run")
    p.add_argument("--warmup", type=int, default=3, help="steps dropped per end-to-end run")
    p.add_argument("--repeats", type=int, default=3, help="alternated end-to-end runs per row")
    p.add_argument("--reps", type=int, default=20, help="in-process repetitions per step kind")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "uta.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats, args.reps = 3, 1, 1, 3
        args.out = str(WORK / "uta_quick.json")
    os.environ.update({k: ENV[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    logging.getLogger().setLevel(logging.ERROR)  # open_clip's "initialized randomly" warnings
    sys.path.insert(0, str(ROOT))
    from clipf import models

    models.register()
    import open_clip

    args.image_size = open_clip.get_model_config(args.student)["vision_cfg"]["image_size"]
    teacher = make_teacher(args.student, WORK / f"teacher-{args.student}")
    print("1/3 end to end (clipf.train subprocesses)", flush=True)
    e2e = end_to_end(args, teacher)
    print("2/3 step breakdown (in process)", flush=True)
    breakdown = step_breakdown(args)
    print("3/3 FLOPs", flush=True)
    fl = [flops(args.student, args.batch), flops("ViT-B-16", 1)]
    result = {
        "what": "UTA (same-architecture frozen teacher) vs unmasked CLIP training of the same student",
        "date": time.strftime("%Y-%m-%d"),
        "platform": platform.platform(),
        "cpu_threads": 1,
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__},
        "student": args.student,
        "batch": args.batch,
        "masker": "reversed_block",
        "end_to_end": e2e,
        "step_breakdown": breakdown,
        "flops": fl,
        "target_met": e2e["uta-m50"]["samples_per_second"] >= e2e["clip"]["samples_per_second"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"-> {args.out}")
    return 0


def table(r: dict) -> str:
    e, b = r["end_to_end"], r["step_breakdown"]
    lines = ["| run | samples/s (end to end) | vs CLIP |", "|---|---|---|"]
    lines += [f"| {k} | {v['samples_per_second']:.1f} | {v['vs_clip']:.2f}x |" for k, v in e.items()]
    m = b["median_seconds"]
    lines += [
        "",
        f"step (batch {b['batch']}): CLIP {m['clip_step'] * 1e3:.1f} ms, UTA {m['uta_step'] * 1e3:.1f} ms "
        f"({b['uta_over_clip']:.2f}x), teacher forward {m['teacher_forward'] * 1e3:.1f} ms "
        f"({b['teacher_share_of_uta_step']:.0%} of the UTA step), masks {m['mask_draw'] * 1e3:.2f} ms",
    ]
    for f in r["flops"]:
        fp = f["flops_per_step"]
        parts = ", ".join(
            f"{k} {v['vs_clip']:.2f}x (teacher {v['teacher_forward'] / v['total']:.0%})"
            for k, v in fp.items()
            if k != "clip"
        )
        lines.append(f"FLOPs/step {f['student']} {f['image_size']}px: {parts} of CLIP")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
