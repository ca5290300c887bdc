"""``synthesize``: write a whole world (training / validation shards, evaluation sets) atomically.

Layout (``docs/ARCHITECTURE.md``)::

    DIR/world.json                 manifest: counts, shard patterns, eval sets, resolved config
    DIR/train/00000.tar ...        img2dataset-style shards: KEY.jpg|png, KEY.txt, KEY.json
    DIR/train/00000_stats.json ... img2dataset's per-shard stats
    DIR/train/sizes.json           {"00000.tar": n, ...} (open_clip_train's get_dataset_size reads it)
    DIR/train/_info.json           count, shards, pattern, seed stream, config
    DIR/val/...                    same, another seed stream
    DIR/eval/<name>/...            CLIP_benchmark wds sets (clipf.world.evalsets)
    DIR/eval/benchmark.txt         their names as ``wds/<name>`` lines

Everything is a pure function of (seed, sizes, image size, config): each shard draws from its own
``SeedSequence([seed, stream, shard])``, so the bytes do not depend on ``workers``. The world is built in
a hidden sibling folder and renamed into place at the end; on any error (a full disk included) that
folder is removed and ``DIR`` is left as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import multiprocessing
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clipf.files import write_json, write_text
from clipf.world import shards as W
from clipf.world.config import fingerprint, load_config
from clipf.world.presets import preset_of
from clipf.world.scene import Draws
from clipf.world.spec import RETRIEVAL, EvalSet, balanced_labels

__all__ = ["MANIFEST", "WorldError", "balanced_labels", "is_world", "shard_spec", "synthesize"]

FORMAT = "clipf-world/1"
STREAMS = {"train": 0, "val": 1}
MIN_SIZE, MAX_SIZE = 32, 224
MANIFEST = "world.json"


class WorldError(Exception):
    """A request ``synthesize`` refuses (bad sizes, an existing dataset, a full disk...)."""


# ------------------------------------------------------------------------------------------ checks


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise WorldError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise WorldError(f"{name} must be {rng}, got {value}")
    return value


def is_world(path: str | Path) -> bool:
    """Does ``path`` hold a clipf world (a manifest, or a split with ``sizes.json``)?"""
    path = Path(path)
    return (path / MANIFEST).exists() or (path / "train" / "sizes.json").exists()


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise WorldError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not is_world(out):
            raise WorldError(f"{out}: not empty and not a clipf world; refusing to write into it")
        if not overwrite:
            raise WorldError(
                f"{out}: already holds a dataset (pass --overwrite / overwrite=True to replace it)"
            )


# -------------------------------------------------------------------------------------------- jobs


def _shard_rng(seed: int, stream: int, shard: int) -> Draws:
    return Draws(np.random.default_rng(np.random.SeedSequence([seed, stream, shard])))


def _pair_shard(job: Mapping) -> tuple[str, int]:
    """Render and write one training / validation shard. -> (shard name, samples)"""
    cfg, size, split, seed = job["cfg"], job["image_size"], job["split"], job["seed"]
    preset = preset_of(cfg)
    d = _shard_rng(seed, STREAMS[split], job["shard"])
    fmt, quality = cfg["image_format"], cfg["jpeg_quality"]
    ext = W.EXTENSIONS[fmt]
    digits = W.key_digits(cfg["shard_size"])
    members = []
    for i in range(job["count"]):
        key = f"{job['shard']:05d}{i:0{digits}d}"
        pixels, caption, extra = preset.pair(d, cfg, size)
        image = W.encode_image(pixels, fmt, quality)
        meta = {
            "key": key,
            "status": "success",
            "error_message": None,
            "url": f"clipf-world://{seed}/{split}/{job['start'] + i}",
            "caption": caption,
            "width": size,
            "height": size,
            "original_width": size,
            "original_height": size,
            "sha256": hashlib.sha256(image).hexdigest(),
            **extra,
        }
        members += [
            (f"{key}.{ext}", image),
            (f"{key}.txt", caption.encode("utf-8")),
            (f"{key}.json", json.dumps(meta, separators=(",", ":")).encode("utf-8")),
        ]
    folder = Path(job["dir"])
    W.write_tar(folder / job["name"], members)
    n = job["count"]
    stats = {
        "count": n,
        "successes": n,
        "failed_to_download": 0,
        "failed_to_resize": 0,
        "status_dict": {"success": n},
    }
    write_json(folder / job["name"].replace(".tar", "_stats.json"), stats)
    return job["name"], n


def _eval_shard(job: Mapping) -> tuple[str, int]:
    """Render and write one shard of an evaluation set. -> (shard name, samples)"""
    cfg, size = job["cfg"], job["image_size"]
    preset = preset_of(cfg)
    spec: EvalSet = preset.eval_sets(cfg)[job["set"]]
    d = _shard_rng(job["seed"], spec.stream, job["shard"])
    fmt, quality = cfg["image_format"], cfg["jpeg_quality"]
    ext = W.EXTENSIONS[fmt]
    members = []
    for i, label in enumerate(job["labels"]):
        index = job["start"] + i
        key = f"s{index:07d}"
        pixels, text, extra = preset.eval_item(d, cfg, spec, label, size)
        members.append((f"{key}.{ext}", W.encode_image(pixels, fmt, quality)))
        if spec.task == RETRIEVAL:
            members.append((f"{key}.txt", text.encode("utf-8")))
        else:
            members.append((f"{key}.cls", str(label).encode()))
        meta = {"key": key, **extra, "label": label}
        members.append((f"{key}.json", json.dumps(meta, separators=(",", ":")).encode("utf-8")))
    W.write_tar(Path(job["dir"]) / job["name"], members)
    return job["name"], len(job["labels"])


def _run(job: Mapping) -> tuple[str, str, int]:
    fn = _pair_shard if job["kind"] == "pairs" else _eval_shard
    name, n = fn(job)
    return job["group"], name, n


# --------------------------------------------------------------------------------------- planning


def _pair_jobs(stage: Path, split: str, n: int, common: Mapping) -> list[dict]:
    shard_size = common["cfg"]["shard_size"]
    n_shards = math.ceil(n / shard_size)
    folder = stage / split
    folder.mkdir(parents=True)
    jobs = []
    for s in range(n_shards):
        start = s * shard_size
        jobs.append(
            {
                **common,
                "kind": "pairs",
                "group": split,
                "split": split,
                "dir": str(folder),
                "shard": s,
                "name": W.shard_name(s, n_shards),
                "start": start,
                "count": min(shard_size, n - start),
            }
        )
    return jobs


def _eval_jobs(stage: Path, spec: EvalSet, n: int, common: Mapping) -> list[dict]:
    cfg, name = common["cfg"], spec.name
    labels = spec.labels(n, common["seed"])
    shard_size = cfg["shard_size"]
    folder = stage / "eval" / name / "test"
    folder.mkdir(parents=True)
    jobs = []
    for s in range(math.ceil(n / shard_size)):
        chunk = labels[s * shard_size : (s + 1) * shard_size]
        jobs.append(
            {
                **common,
                "kind": "eval",
                "group": f"eval/{name}",
                "set": name,
                "dir": str(folder),
                "shard": s,
                "name": f"{s}.tar",
                "start": s * shard_size,
                "labels": chunk,
            }
        )
    return jobs


def _finish_split(stage: Path, split: str, names: dict[str, int], common: Mapping) -> dict:
    folder = stage / split
    sizes = {n: names[n] for n in sorted(names)}
    write_json(folder / "sizes.json", sizes)
    info = {
        "format": FORMAT,
        "split": split,
        "count": sum(sizes.values()),
        "shards": len(sizes),
        "pattern": W.brace_pattern(split, list(sizes)),
        "seed": common["seed"],
        "stream": STREAMS[split],
        "image_size": common["image_size"],
        "image_format": common["cfg"]["image_format"],
        "config": common["cfg"],
        "fingerprint": fingerprint(common["cfg"]),
    }
    write_json(folder / "_info.json", info)
    return {"count": info["count"], "shards": info["shards"], "pattern": info["pattern"]}


def _finish_eval(stage: Path, spec: EvalSet, names: dict[str, int], common: Mapping) -> dict:
    cfg = common["cfg"]
    folder = stage / "eval" / spec.name
    write_text(folder / "test" / "nshards.txt", f"{len(names)}\n")
    n = sum(names.values())
    info: dict[str, Any] = {"name": spec.name, "n": n, "seed": common["seed"], "stream": spec.stream}
    if spec.task == RETRIEVAL:
        write_text(folder / "dataset_type.txt", "retrieval\n")
        info.update(task=RETRIEVAL, captions_per_image=cfg["eval_captions"])
    else:
        classes = list(spec.classes)
        write_text(folder / "classnames.txt", "\n".join(classes) + "\n")
        write_text(folder / "zeroshot_classification_templates.txt", "\n".join(spec.templates) + "\n")
        labels = spec.labels(n, common["seed"])
        counts = np.bincount(labels, minlength=len(classes)).tolist() if n else [0] * len(classes)
        info.update(
            task=spec.task,
            attribute=spec.attribute,
            classes=classes,
            class_counts=dict(zip(classes, counts, strict=True)),
            templates=list(spec.templates),
        )
    info.update(spec.info)
    info.update(
        nshards=len(names),
        image_size=common["image_size"],
        image_format=cfg["image_format"],
        fingerprint=fingerprint(cfg),
    )
    write_json(folder / "info.json", info)
    for fname, obj in spec.files.items():
        write_json(folder / fname, obj)
    return {k: info[k] for k in ("task", "n", "nshards")}


# -------------------------------------------------------------------------------------------- API


def synthesize(
    out: str | Path,
    n_train: int,
    n_val: int,
    image_size: int,
    seed: int = 0,
    cfg: Mapping | str | Path | None = None,
    *,
    n_eval: int | None = None,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = True,
    preset: str | None = None,
) -> dict:
    """Write a world to ``out``; returns its manifest (also ``out/world.json``).

    ``cfg``: the ``world`` knobs (a dict, a params.yaml path, or None for the defaults); ``preset``: which
    world (:mod:`clipf.world.presets`; None: the config's ``preset``, else ``shapes``). ``n_eval``:
    images per evaluation set (None: ``cfg['eval_size']``; 0: no eval sets). ``workers``: processes
    (the bytes do not depend on it). Raises :class:`WorldError` (nothing written) on bad sizes, an
    ``out`` that already holds a dataset without ``overwrite``, or a full disk.
    """
    n_train = _check_int("n_train (--train)", n_train, 1, 10**9)
    n_val = _check_int("n_val (--val)", n_val, 0, 10**9)
    image_size = _check_int("image_size (--image-size)", image_size, MIN_SIZE, MAX_SIZE)
    seed = _check_int("seed (--seed)", seed, 0, 2**63 - 1)
    workers = _check_int("workers (--workers)", workers, 1, 256)
    from clipf.world.config import ConfigError

    try:
        cfg = load_config(cfg, preset)
    except ConfigError as err:
        raise WorldError(str(err)) from None
    n_eval = _check_int("n_eval (--eval)", cfg["eval_size"] if n_eval is None else n_eval, 0, 10**7)
    out = Path(out)
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    try:
        manifest = _build(stage, n_train, n_val, n_eval, image_size, seed, cfg, workers, progress)
        _swap(stage, out)
    except OSError as err:
        shutil.rmtree(stage, ignore_errors=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise WorldError(
                f"out of disk space while writing the world ({err}); nothing was written to {out}"
            ) from err
        raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return manifest


def _build(stage, n_train, n_val, n_eval, image_size, seed, cfg, workers, progress) -> dict:
    stage.mkdir(parents=True)
    common = {"cfg": cfg, "image_size": image_size, "seed": seed}
    preset = preset_of(cfg)
    sets = preset.eval_sets(cfg) if n_eval else {}
    jobs = _pair_jobs(stage, "train", n_train, common)
    if n_val:
        jobs += _pair_jobs(stage, "val", n_val, common)
    for spec in sets.values():
        jobs += _eval_jobs(stage, spec, n_eval, common)
    done: dict[str, dict[str, int]] = {}
    total = n_train + n_val + n_eval * len(sets)
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="clipf data synth", unit="img", disable=not progress) as bar:
        if workers == 1 or len(jobs) == 1:
            results = map(_run, jobs)
            pool = None
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            pool = ctx.Pool(min(workers, len(jobs)))
            results = pool.imap_unordered(_run, jobs)
        try:
            for group, name, n in results:
                done.setdefault(group, {})[name] = n
                bar.update(n)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()

    manifest: dict[str, Any] = {"format": FORMAT, "seed": seed, "image_size": image_size}
    manifest["train"] = _finish_split(stage, "train", done["train"], common)
    if n_val:
        manifest["val"] = _finish_split(stage, "val", done["val"], common)
    if sets:
        manifest["eval"] = {
            name: _finish_eval(stage, spec, done[f"eval/{name}"], common) for name, spec in sets.items()
        }
        write_text(stage / "eval" / "benchmark.txt", "".join(f"wds/{n}\n" for n in sets))
    for fname, obj in preset.world_files(cfg).items():
        write_json(stage / fname, obj)
    manifest.update(config=cfg, fingerprint=fingerprint(cfg))
    write_json(stage / MANIFEST, manifest)
    return manifest


def _swap(stage: Path, out: Path) -> None:
    """Move the finished world into place (replacing an old one, or an empty folder)."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        try:
            os.replace(stage, out)
        except BaseException:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, out)


def shard_spec(folder: str | Path) -> tuple[str, int]:
    """(brace-expanded shard pattern, sample count) of a split folder, from its ``sizes.json``: what
    open_clip_train takes as ``--train-data`` / ``--train-num-samples``."""
    folder = Path(folder)
    sizes_file = folder / "sizes.json"
    if not sizes_file.exists():
        raise WorldError(f"{sizes_file}: missing (is {folder} a `clipf data synth` split?)")
    sizes = json.loads(sizes_file.read_text())
    if not sizes:
        raise WorldError(f"{sizes_file}: no shards")
    return W.brace_pattern(folder, list(sizes)), int(sum(sizes.values()))
