"""Step checkpoints and resume (CPU); results go to bench/results/resume.json.

    python bench/resume.py cadence    clipf.train samples/CPU-s with step checkpoints at the default cadence
                                      (every 30 min: none in a short run, the per-step check only) and every
                                      8 steps, against --save-every-minutes 0 (off), alternating in one
                                      process (target: default >= 0.98x off)
    python bench/resume.py skip       resuming a 16-shard epoch at its start vs its end: time from the
                                      start of the process to the first trained step, shard bytes skipped
    python bench/resume.py size       a ViT-B/16 step checkpoint: bytes (model + AdamW state) and write time
    python bench/resume.py all        the three (--quick: a smoke run)

Same method as bench/train.py (one torch thread, --workers 0, this process's CPU clock); every number in
bench/README.md's resume section comes from the JSON written here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import train as bench_train  # noqa: E402  (bench/train.py: the world, the timed loop)

WORK = bench_train.ROOT / "bench" / "_work" / "resume"


def bench_cadence(repeats: int, steps: int, batch: int) -> dict:
    args = bench_train.common("clipf-vit-tiny", batch, steps, ["--dataset-type", "synthetic"])
    modes = {
        "off": ["--save-every-minutes", "0"],
        "default": [],
        "every_8_steps": ["--save-every-steps", "8", "--save-every-minutes", "0"],
    }
    rows: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(repeats):
        order = list(modes) if r % 2 == 0 else list(reversed(modes))
        for m in order:
            clock = bench_train.run_loop("clipf", [*args, *modes[m]], WORK / "cadence", f"{m}{r}")
            rows[m].append(bench_train.rates(clock, batch * steps))
            print(
                f"  cadence {m:14s} run {r}: {rows[m][-1]['samples_per_cpu_second']:.1f} samples/CPU-s",
                flush=True,
            )
    med = {m: statistics.median(x["samples_per_cpu_second"] for x in v) for m, v in rows.items()}
    return {
        "model": "clipf-vit-tiny", "batch_size": batch, "steps_per_run": steps, "data": "synthetic",
        "runs": rows, "median_samples_per_cpu_second": med,
        "ratio_default_vs_off": med["default"] / med["off"],
        "ratio_every_8_steps_vs_off": med["every_8_steps"] / med["off"], "target": 0.98,
    }  # fmt: skip


def bench_skip(n_train: int, batch: int) -> dict:
    """Train one epoch of a 16-shard world (a step checkpoint every step); resume from the one after the
    first and the one before the last step, each in its own run folder, timed to its first trained step."""
    import torch

    from clipf.engine import adapters

    world = bench_train.make_world(WORK / "world16", n_train, 64, per_shard=n_train // 16)
    steps = n_train // batch
    base = [
        "--train-data", world["train"]["pattern"], "--train-num-samples", str(n_train), "--dataset-type",
        "webdataset", "--model", "clipf-vit-micro", "--batch-size", str(batch), "--epochs", "1",
        "--workers", "0", "--precision", "fp32", "--warmup", "2", "--seed", "0", "--report-to", "",
        "--reduction-mask", "frequency", "--freq-table", world["freq"], "--text-tokens", "8",
        "--save-every-steps", "1", "--keep-step-checkpoints", str(steps), "--resume", "latest",
    ]  # fmt: skip
    logs = WORK / "skip"
    shutil.rmtree(logs, ignore_errors=True)
    bench_train.run_loop("clipf", base, logs, "whole")
    every = {p.name: p for p in (logs / "whole" / "checkpoints").glob("step_*.pt")}
    ckpts = [every[f"step_0_{n}.pt"] for n in (1, steps - 1)]  # after the first and before the last step
    out: dict = {"shards": 16, "samples": n_train, "batch_size": batch, "steps": steps, "cases": {}}
    real_iter = adapters.CountingLoader.__iter__
    for ckpt in ckpts:
        name = ckpt.stem
        run = logs / name
        shutil.rmtree(run, ignore_errors=True)
        (run / "checkpoints").mkdir(parents=True)
        shutil.copy(ckpt, run / "checkpoints" / ckpt.name)
        first: dict = {}

        def timed_iter(self, first=first):
            for batch_ in real_iter(self):
                yield batch_
                if "t" not in first:
                    first["t"] = time.perf_counter()

        adapters.CountingLoader.__iter__ = timed_iter
        t0 = time.perf_counter()
        try:
            bench_train.run_loop("clipf", [*base, "--epochs", "1"], logs, name)
        finally:
            adapters.CountingLoader.__iter__ = real_iter
        done = torch.load(ckpt, weights_only=True, mmap=True)["clipf"]["position"][1]
        out["cases"][name] = {
            "resumed_after_batches": done,
            "seconds_to_first_step": first["t"] - t0,
            # every consumed sample's tar member is read (not decoded): that share of the epoch's bytes
            "shard_bytes_skipped": round(
                done / steps * sum(p.stat().st_size for p in (WORK / "world16" / "train").glob("*.tar"))
            ),
        }
        print(f"  skip {name}: {out['cases'][name]}", flush=True)
    shard_bytes = sum(p.stat().st_size for p in (WORK / "world16" / "train").glob("*.tar"))
    out["epoch_shard_bytes"] = shard_bytes
    start, end = (out["cases"][c.stem] for c in ckpts)
    out["extra_seconds_end_vs_start"] = end["seconds_to_first_step"] - start["seconds_to_first_step"]
    out["skip_samples_per_second"] = (
        (end["resumed_after_batches"] - start["resumed_after_batches"])
        * batch
        / max(1e-9, out["extra_seconds_end_vs_start"])
    )
    return out


def bench_size() -> dict:
    """A ViT-B/16 CLIP (open_clip, random init) with AdamW state, saved as clipf saves a step checkpoint."""
    import open_clip
    import torch

    from clipf.files import atomic_save

    model = open_clip.create_model("ViT-B-16")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():  # AdamW's moments exist after a step
        p.grad = torch.zeros_like(p)
    opt.step()
    path = WORK / "vitb16_step.pt"
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    atomic_save({"epoch": 0, "state_dict": model.state_dict(), "optimizer": opt.state_dict()}, str(path))
    seconds = time.perf_counter() - t0
    size = path.stat().st_size
    path.unlink()
    params = sum(p.numel() for p in model.parameters())
    return {"model": "ViT-B-16", "parameters": params, "bytes": size, "write_seconds": seconds,
            "write_mb_per_second": size / seconds / 1e6}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["cadence", "skip", "size", "all"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(bench_train.RESULTS / "resume.json"))
    a = p.parse_args(argv)
    import logging

    import torch

    torch.set_num_threads(1)
    logging.root.addHandler(logging.NullHandler())
    path = Path(a.out)
    res = json.loads(path.read_text()) if path.is_file() and not a.quick else {}
    todo = ["cadence", "skip", "size"] if a.what == "all" else [a.what]
    for what in todo:
        t0 = time.perf_counter()
        print(f"{what} ...", flush=True)
        if what == "cadence":
            res[what] = bench_cadence(1 if a.quick else 6, 8 if a.quick else 24, 64)
        elif what == "skip":
            res[what] = bench_skip(1024 if a.quick else 4096, 64)
        else:
            res[what] = bench_size()
        res[what]["seconds"] = time.perf_counter() - t0
    res["host"] = {"cpu_count": os.cpu_count(), "threads_per_process": 1}
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
