"""CLIP_benchmark on a run's exported models, and the tidy results table.

``clipf eval RUN`` runs CLIP_benchmark's own code — its dataset builder (``build_dataset``), model loader
(``load_clip``), zero-shot classifier and retrieval metrics — on ``RUN/<phase>/export`` (an open_clip
``local-dir:`` model written by :mod:`clipf.export`, text tower at the full 32-token context: evaluation
text is never masked nor cut). The model is loaded once per checkpoint and every dataset is evaluated with
it; each result is CLIP_benchmark's own JSON (``dataset, model, pretrained, task, metrics, language``)
plus a ``clipf`` block (weights hash, dataset fingerprint, options, versions)::

    RUN/eval/<checkpoint>/<dataset>.json   one (checkpoint, dataset); "/" in names -> "_" (wds_objects.json)
    RUN/eval/summary.json                  {checkpoint: {dataset: {metric: value}}} of pretrain / finetune
                                           (headline numbers for ``dvc metrics show``; no NaN)

``<checkpoint>`` is ``pretrain`` / ``finetune`` (the paper's two columns: after masked pre-training, after
the unmasked fine-tune), ``<phase>-epoch_N`` for ``--checkpoint RUN/<phase>/checkpoints/epoch_N.pt``
(exported to a temporary folder with :func:`clipf.export.export` first), or ``--label``.

Cached and resumable: a result whose key — sha256 of the export's weights and model/preprocess config, the
dataset's fingerprint (file names and sizes, and contents up to 256 MiB, else modification times), task,
split, language, recall@k, amp and CLIP_benchmark's version — matches the JSON on disk is read back, not
recomputed; new weights or a changed dataset recompute. Every file is written to a temporary name and
``os.replace``-d, so an interrupted evaluation leaves whole results or none.

Datasets. With no ``--datasets``, every evaluation set under ``--dataset-root`` (or ``--world DIR``: its
``eval/``) in CLIP_benchmark's webdataset layout is found and evaluated as ``wds/<name>``: classification
sets (``classnames.txt``, ``zeroshot_classification_templates.txt``, ``test/{0..}.tar`` with ``.cls``,
``test/nshards.txt``) and retrieval sets (``dataset_type.txt`` = ``retrieval``, ``.txt`` captions, one a
line). Any other CLIP_benchmark dataset (``imagenet1k``, ``cifar10``, ``cifar100``, ``mscoco_captions``,
``flickr30k``, ...) is read from ``--dataset-root`` as CLIP_benchmark's CLI reads ``--dataset_root``: a
folder, or a template with ``{dataset}`` / ``{dataset_cleaned}``; with a plain folder, a webdataset set is
looked for in ``ROOT/<name>`` first, then ``ROOT``, any other set in ``ROOT`` first, then ``ROOT/<name>``
(so one root serves ``imagenet1k`` beside ``cifar10``). clipf never downloads: a missing or incomplete set is an error
naming the dataset, the folder and the layout expected, before any model is loaded.

Stock CLIP_benchmark reads the same exports and sets with nothing from clipf installed (``--no_amp`` on
CPU, where CLIP_benchmark's default autocast would run in bfloat16; retrieval sets need ``--task
zeroshot_retrieval``, as ``--task auto`` only knows CLIP_benchmark's own retrieval names; ``--num_workers``
at most the set's shard count, as webdataset fails a DataLoader worker that gets no shard — clipf eval
caps it so)::

    clip_benchmark eval --model_type open_clip --model local-dir:runs/<cell>/pretrain/export \\
        --pretrained '' --dataset wds/<name> --dataset_root data/world/eval/<name> \\
        --task zeroshot_classification --batch_size 64 --num_workers 0 --no_amp \\
        --output 'stock-{dataset}.json'

(``--dataset_root 'data/world/eval/{dataset}'`` serves several ``--dataset wds/...`` at once; for the
retrieval set ``--task zeroshot_retrieval --recall_k 1 5 10``. Keep its output out of ``RUN/eval/``: that
folder is clipf's, and ``collect`` reads every JSON in it.)

``clipf eval collect [--runs runs] [--out runs/results.csv]`` gathers every ``RUN/eval/*/*.json`` into one
tidy table (CSV and Parquet beside it), one row per number:

    run, objective, masker, text_tokens, image_mask, seed, epochs, checkpoint, dataset, task, metric, value,
    model, freq_threshold, finetune_epochs, weights_sha256

with the run's settings from ``RUN/pretrain/clipf.json`` (the pre-training objective — ``clip``,
``siglip`` or ``uta`` (:mod:`clipf.uta`: text tower from a frozen teacher, ``image_mask`` is its patch
mask ratio) —, the cell: masker, K text tokens, FLIP image-mask ratio, seed, pre-training epochs) and
``RUN/finetune/clipf.json`` (fine-tune epochs). NaN metrics (acc5 of a
set with fewer than 5 classes) are left out.

Python: :func:`evaluate_run` (-> tidy DataFrame of what it evaluated or read back; ``df.attrs["computed"]``
/ ``["cached"]`` list the (checkpoint, dataset) pairs), :func:`evaluate_model` (one ``local-dir`` export,
no run), :func:`collect`, :func:`discover`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import math
import os
import re
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipf import files as files_
from clipf.files import CONFIG_NAME, FULL_CONTEXT, WEIGHTS_NAME, write_json

PHASES = ("pretrain", "finetune")
SUMMARY_NAME = "summary.json"
COLUMNS = [
    "run",
    "objective",
    "masker",
    "text_tokens",
    "image_mask",
    "seed",
    "epochs",
    "checkpoint",
    "dataset",
    "task",
    "metric",
    "value",
]
EXTRA_COLUMNS = ["model", "freq_threshold", "finetune_epochs", "weights_sha256"]
TASKS = ("zeroshot_classification", "zeroshot_retrieval", "image_caption_selection")
IMAGE_EXTS = (".webp", ".png", ".jpg", ".jpeg")
CONTENT_HASH_LIMIT = 256 * 2**20  # datasets up to this size are fingerprinted by content
FINGERPRINT_MAX_FILES = 200_000
DEFAULT_RECALL_K = (1, 5, 10)


class EvalError(RuntimeError):
    """Bad input to an evaluation: a missing or corrupt export, a dataset not where it should be."""


# ---------------------------------------------------------------- small helpers


def slug(name: str) -> str:
    """A dataset name as a file name: ``wds/objects`` -> ``wds_objects``."""
    return re.sub(r"[^\w.+-]", "_", name.replace("/", "_"))


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file (remembered per path, size and mtime within the process)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    """What one evaluation runs on: an open_clip ``local-dir`` export, or a ``.pt`` exported on demand."""

    label: str  # the RUN/eval/<label>/ folder
    source: Path  # export folder or training checkpoint
    sha256: str  # weights (+ config of an export) hash: the cache key's model part
    export: Path | None = None  # local-dir folder (None: a .pt, exported when needed)
    info: dict = field(default_factory=dict)


def check_export(folder: str | os.PathLike) -> dict:
    """Validate an open_clip ``local-dir`` export (config readable, safetensors whole); returns its hashes
    and text context length. Raises :class:`EvalError` naming the bad file."""
    folder = Path(folder)
    cfg_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for path in (cfg_path, weights):
        if not path.is_file():
            raise EvalError(f"{path}: missing — {folder} is not a finished export (open_clip local-dir)")
    try:
        cfg = json.loads(cfg_path.read_text())
        model_cfg = cfg["model_cfg"]
        context = int(model_cfg["text_cfg"].get("context_length", 77))
    except (ValueError, KeyError, TypeError) as exc:
        raise EvalError(f"{cfg_path}: not an open_clip config ({type(exc).__name__}: {exc})") from exc
    try:
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as fh:
            n = len(list(fh.keys()))
    except Exception as exc:  # SafetensorError is not importable by name
        raise EvalError(f"{weights}: corrupt or truncated safetensors file ({exc})") from exc
    if n == 0:
        raise EvalError(f"{weights}: no tensors")
    config_sha = _sha({"model_cfg": model_cfg, "preprocess_cfg": cfg.get("preprocess_cfg")})
    return {
        "weights_sha256": file_sha256(weights),
        "config_sha256": config_sha,
        "context_length": context,
        "provenance": cfg.get("clipf"),
    }


def _export_checkpoint(folder: Path, label: str) -> Checkpoint:
    info = check_export(folder)
    sha = hashlib.sha256((info["weights_sha256"] + info["config_sha256"]).encode()).hexdigest()
    return Checkpoint(label, folder, sha, folder, info)


def _pt_label(path: Path) -> str:
    if path.parent.name == "checkpoints" and path.parent.parent.name:
        return f"{path.parent.parent.name}-{path.stem}"
    return path.stem


def resolve_checkpoint(run: str | os.PathLike, checkpoint: str, label: str | None = None) -> Checkpoint:
    """``pretrain`` / ``finetune`` (``RUN/<phase>/export``), an export folder, or a training checkpoint
    file (``.pt``; exported before evaluation)."""
    run = Path(run)
    if checkpoint in PHASES:
        phase = run / checkpoint
        folder = phase / "export"
        if not folder.is_dir():
            ckpts = sorted(p.name for p in (phase / "checkpoints").glob("*.pt"))
            hint = (
                f"checkpoints there: {', '.join(ckpts)}; `clipf export {phase}/checkpoints/{ckpts[-1]}` "
                "writes the export"
                if ckpts
                else "no checkpoints either: has this phase been trained?"
            )
            if not phase.is_dir():
                raise EvalError(f"{phase}: no such phase folder (run not trained to {checkpoint}?)")
            raise EvalError(f"{folder}: no export — {checkpoint} did not finish ({hint})")
        return _export_checkpoint(folder, label or checkpoint)
    path = Path(checkpoint)
    if path.is_dir():
        default = path.parent.name if path.name == "export" and path.parent.name else path.name
        return _export_checkpoint(path, label or default)
    if not path.is_file():
        raise EvalError(
            f"--checkpoint {checkpoint}: not pretrain/finetune, an export folder nor a checkpoint file"
        )
    if path.stat().st_size == 0:
        raise EvalError(f"{path}: empty checkpoint file")
    if path.suffix == ".safetensors" and (path.parent / CONFIG_NAME).is_file():
        return _export_checkpoint(path.parent, label or path.parent.name)
    info = {"weights_sha256": file_sha256(path), "checkpoint": str(path.resolve())}
    recipe = {k: _run_config(run, path).get(k) for k in _EXPORT_KEYS}  # how it will be exported
    sha = hashlib.sha256((info["weights_sha256"] + _sha({**recipe, "context": FULL_CONTEXT})).encode())
    return Checkpoint(label or _pt_label(path), path, sha.hexdigest(), None, info)


_EXPORT_KEYS = ("model", "pos_extend", "image_size", "quick_gelu", "custom_text", "preprocess")


def _run_config(run: Path, checkpoint: Path) -> dict:
    """The clipf.json describing how a .pt was trained (its phase's, else the run's pre-training one)."""
    for path in (checkpoint.resolve().parent.parent / "clipf.json", run / "pretrain" / "clipf.json"):
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError as exc:
                raise EvalError(f"{path}: unreadable JSON ({exc})") from exc
    return {}


@contextlib.contextmanager
def exported(ckpt: Checkpoint, run: Path, model: str | None = None) -> Iterator[Path]:
    """The ``local-dir`` folder of ``ckpt``: its export, or a temporary export of a ``.pt`` (removed after)."""
    if ckpt.export is not None:
        yield ckpt.export
        return
    try:
        from clipf import export as clipf_export
    except ImportError as exc:  # pragma: no cover - clipf.export ships with clipf
        raise EvalError(
            f"{ckpt.source}: a training checkpoint needs an export first and clipf.export is unavailable "
            f"({exc}); export it with `clipf export` and pass the folder"
        ) from exc
    cfg = _run_config(run, ckpt.source)
    model = model or cfg.get("model")
    if not model:
        raise EvalError(
            f"{ckpt.source}: cannot export it — no clipf.json beside its run names the model (pass model=)"
        )
    with tempfile.TemporaryDirectory(prefix="clipf-eval-") as tmp:
        try:
            if cfg.get("objective") == "uta":  # student vision tower + the teacher's text tower
                from clipf import uta

                out = uta.export(ckpt.source, Path(tmp) / "export", verify=False)
            else:
                out = clipf_export.export(
                    ckpt.source,
                    model,
                    Path(tmp) / "export",
                    FULL_CONTEXT,
                    cfg.get("pos_extend") or clipf_export.DEFAULT_POS_EXTEND,
                    image_size=cfg.get("image_size"),
                    quick_gelu=bool(cfg.get("quick_gelu")),
                    custom_text=bool(cfg.get("custom_text")),
                    preprocess=cfg.get("preprocess") or None,
                    verify=False,
                )
        except Exception as exc:
            raise EvalError(f"{ckpt.source}: cannot export it ({type(exc).__name__}: {exc})") from exc
        info = check_export(out)
        ckpt.info.update({k: info[k] for k in ("config_sha256", "context_length")})
        ckpt.info["export_weights_sha256"] = info["weights_sha256"]
        ckpt.info["model"] = model
        yield out


# ---------------------------------------------------------------- datasets


def _is_wds_set(folder: Path, split: str = "test") -> bool:
    if not folder.is_dir():
        return False
    if any((folder / n).is_file() for n in ("classnames.txt", "dataset_type.txt")):
        return True
    return (folder / split / "nshards.txt").is_file() or any((folder / split).glob("*.tar"))


def world_root(world: str | os.PathLike) -> Path:
    """The evaluation-set folder of a ``clipf data synth`` world (``WORLD/eval``)."""
    world = Path(world)
    if (world / "eval").is_dir():
        return world / "eval"
    if world.is_dir():
        return world
    raise EvalError(f"--world {world}: no such folder")


def discover(dataset_root: str | os.PathLike, split: str = "test") -> list[str]:
    """Every CLIP_benchmark webdataset set under ``dataset_root`` (or the root itself), as ``wds/<name>``."""
    root = Path(dataset_root)
    if not root.is_dir():
        raise EvalError(f"dataset root {root}: no such folder")
    if _is_wds_set(root, split):
        return [f"wds/{root.name}"]
    found = [f"wds/{p.name}" for p in sorted(root.iterdir()) if _is_wds_set(p, split)]
    if not found:
        raise EvalError(
            f"{root}: no evaluation sets in CLIP_benchmark's webdataset layout "
            "(<name>/classnames.txt, zeroshot_classification_templates.txt, test/nshards.txt, test/0.tar ...)"
        )
    return found


def _short(name: str) -> str:
    return name.split("/", 1)[1] if name.startswith("wds/") else name


def _root_candidates(name: str, dataset_root: str | None) -> list[Path]:
    if not dataset_root:
        return []
    short = _short(name)
    if "{" in dataset_root:  # CLIP_benchmark's template
        return [Path(dataset_root.format(dataset=short, dataset_cleaned=short.replace("/", "-")))]
    root = Path(dataset_root)
    if not (root / short).is_dir():
        return [root]
    # a webdataset set is a folder of its own (ROOT/<name> first); a torchvision set keeps CLIP_benchmark's
    # reading of the root (ROOT first)
    return [root / short, root] if name.startswith("wds/") else [root, root / short]


@dataclass
class DatasetSpec:
    name: str  # CLIP_benchmark's name (wds/objects, imagenet1k)
    root: Path  # the folder handed to build_dataset
    task: str
    files: list[Path]  # what the fingerprint covers
    annotation_file: str = ""
    n_images: int | None = None  # of a webdataset retrieval set (recall@k needs k <= images)
    nshards: int | None = None  # of a webdataset set (DataLoader workers <= shards)

    @property
    def slug(self) -> str:
        return slug(self.name)


_KARPATHY = {"mscoco_captions": "coco_{split}_karpathy.json", "flickr30k": "flickr30k_{split}_karpathy.txt"}
_KARPATHY["flickr8k"] = "flickr8k_{split}_karpathy.txt"

LAYOUTS: dict[str, str] = {
    "imagenet1k": "ROOT/meta.bin (or ROOT/ILSVRC2012_devkit_t12.tar.gz) and ROOT/val/<wnid>/*.JPEG "
    "(or ROOT/ILSVRC2012_img_val.tar) — torchvision's ImageNet layout",
    "cifar10": "ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} "
    "(torchvision's CIFAR10, the extracted cifar-10-python.tar.gz)",
    "cifar100": "ROOT/cifar-100-python/{train,test,meta} (torchvision's CIFAR100)",
    "mscoco_captions": "ROOT/val2014/*.jpg and ROOT/coco_{split}_karpathy.json "
    "(github.com/mehdidc/retrieval_annotations)",
    "flickr30k": "ROOT/*.jpg (the Flickr30k images) and ROOT/flickr30k_{split}_karpathy.txt "
    "(github.com/mehdidc/retrieval_annotations)",
    "flickr8k": "ROOT/Images/*.jpg and ROOT/flickr8k_{split}_karpathy.txt",
    "wds": "ROOT/{split}/nshards.txt, ROOT/{split}/0.tar .. (N-1).tar; classification: ROOT/classnames.txt "
    "and ROOT/zeroshot_classification_templates.txt (one '{c}' template a line), .cls labels; retrieval: "
    "ROOT/dataset_type.txt = retrieval, .txt captions (one a line)",
}


def _layout(name: str, split: str) -> str:
    key = "wds" if name.startswith("wds/") else name
    text = LAYOUTS.get(key, "the folder CLIP_benchmark's build_dataset reads for it (see its README)")
    return text.replace("{split}", split)


def _wds_files(name: str, root: Path, split: str) -> tuple[str, list[Path], int | None, int]:
    """Check a webdataset set (raises EvalError naming the file); returns (task, files, number of images
    of a retrieval set, number of shards)."""
    if not root.is_dir():
        raise EvalError(f"{name}: {root}: no such folder")
    nfile = root / split / "nshards.txt"
    if not nfile.is_file():
        raise EvalError(f"{name}: {nfile}: missing (CLIP_benchmark reads the shard count from it)")
    try:
        nshards = int(nfile.read_text().strip())
    except ValueError as exc:
        raise EvalError(f"{name}: {nfile}: not an integer") from exc
    if nshards < 1:
        raise EvalError(f"{name}: {nfile}: {nshards} shards")
    kind = "classification"
    if (root / "dataset_type.txt").is_file():
        kind = (root / "dataset_type.txt").read_text().strip().lower() or "classification"
    files = [nfile]
    if kind == "retrieval":
        task = "zeroshot_retrieval"
    else:
        task = "zeroshot_classification"
        for fname in ("classnames.txt", "zeroshot_classification_templates.txt"):
            path = root / fname
            if not path.is_file():
                raise EvalError(f"{name}: {path}: missing (needed for zero-shot classification)")
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            if not lines:
                raise EvalError(f"{name}: {path}: empty")
            if fname.startswith("zeroshot") and not any("{c}" in ln for ln in lines):
                raise EvalError(f"{name}: {path}: no template holds the class placeholder {{c}}")
            files.append(path)
    if (root / "dataset_type.txt").is_file():
        files.append(root / "dataset_type.txt")
    n_images = 0
    for i in range(nshards):
        shard = root / split / f"{i}.tar"
        if not shard.is_file():
            raise EvalError(f"{name}: {shard}: missing ({nfile} says {nshards} shards)")
        try:
            with tarfile.open(shard) as tar:
                if task == "zeroshot_retrieval":  # every header: recall@k needs the image count
                    members = tar.getmembers()
                else:
                    members = [m for m in (tar.next() for _ in range(16)) if m is not None]
        except (tarfile.TarError, OSError) as exc:
            raise EvalError(f"{name}: {shard}: unreadable tar ({exc})") from exc
        if not members:
            raise EvalError(f"{name}: {shard}: empty shard (no samples)")
        images = sum(m.name.lower().endswith(IMAGE_EXTS) for m in members)
        if not images:
            raise EvalError(f"{name}: {shard}: no image ({'/'.join(IMAGE_EXTS)}) among its first records")
        n_images += images
        files.append(shard)
    return task, files, (n_images if task == "zeroshot_retrieval" else None), nshards


def _real_files(name: str, root: Path, split: str, annotation_file: str) -> list[Path]:
    """The files a non-webdataset set needs (checked) / is fingerprinted by."""
    missing: list[str] = []

    def need(*alternatives: str) -> Path | None:
        for alt in alternatives:
            if (root / alt).exists():
                return root / alt
        missing.append(" or ".join(str(root / a) for a in alternatives))
        return None

    if name == "imagenet1k":
        sub = "train" if split == "train" else "val"
        found = [need("meta.bin", "ILSVRC2012_devkit_t12.tar.gz"), need(sub, f"ILSVRC2012_img_{sub}.tar")]
    elif name == "cifar10":
        found = [need("cifar-10-batches-py")]
    elif name == "cifar100":
        found = [need("cifar-100-python")]
    elif name in _KARPATHY:
        images = {"mscoco_captions": "train2014" if split == "train" else "val2014", "flickr8k": "Images"}
        ann = annotation_file or _KARPATHY[name].format(split=split)
        found = [need(ann)]
        if name in images:
            found.append(need(images[name]))
        else:
            found.append(root)
    else:
        found = [root]
    if missing:
        raise EvalError(f"missing: {'; '.join(missing)}")
    return [p for p in found if p is not None]


def check_dataset(
    name: str, dataset_root: str | None, split: str = "test", annotation_file: str = ""
) -> DatasetSpec:
    """Where ``name`` is and which task it is, checked before any model is loaded; raises
    :class:`EvalError` naming the dataset, the folder and the expected layout."""
    from clip_benchmark.datasets.builder import get_dataset_default_task

    candidates = _root_candidates(name, dataset_root)
    if not candidates:
        raise EvalError(
            f"{name}: no --dataset-root given. Expected layout: {_layout(name, split)}. clipf eval never "
            "downloads datasets."
        )
    errors = []
    for root in candidates:
        try:
            n_images = nshards = None
            if name.startswith("wds/"):
                task, files, n_images, nshards = _wds_files(name, root, split)
            else:
                if not root.is_dir():
                    raise EvalError(f"{root}: no such folder")
                task = get_dataset_default_task(name)
                files = _real_files(name, root, split, annotation_file)
            if task not in TASKS:
                raise EvalError(f"task {task} is not run by clipf eval (use clip_benchmark itself)")
            return DatasetSpec(name, root, task, files, annotation_file, n_images, nshards)
        except EvalError as exc:
            errors.append(str(exc).removeprefix(f"{name}: "))
    where = " / ".join(str(c) for c in candidates)
    raise EvalError(
        f"{name}: not found under {where}: {'; '.join(dict.fromkeys(errors))}. "
        f"Expected layout (ROOT = --dataset-root, or ROOT/{_short(name)}, or a '{{dataset}}' template): "
        f"{_layout(name, split)}. clipf eval never downloads datasets."
    )


def fingerprint(files: Iterable[Path], limit: int = CONTENT_HASH_LIMIT) -> str:
    """Hash of a dataset's files: names and sizes, and contents when they total at most ``limit`` bytes
    (else modification times)."""
    entries: list[tuple[str, Path, os.stat_result]] = []
    for top in files:
        top = Path(top)
        if top.is_file():
            entries.append((top.name, top, top.stat()))
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for fname in sorted(filenames):
                p = Path(dirpath, fname)
                entries.append((str(p.relative_to(top.parent)), p, p.stat()))
            if len(entries) > FINGERPRINT_MAX_FILES:
                break
    h = hashlib.sha256()
    by_content = sum(st.st_size for _, _, st in entries) <= limit
    for rel, path, st in sorted(entries, key=lambda e: e[0]):
        h.update(f"{rel}\0{st.st_size}\0".encode())
        h.update(file_sha256(path).encode() if by_content else str(st.st_mtime_ns).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- running CLIP_benchmark


def _versions() -> dict:
    from importlib.metadata import version

    out = {}
    for pkg in ("clip_benchmark", "open_clip_torch", "torch"):
        with contextlib.suppress(Exception):
            out[pkg] = version(pkg)
    import clipf

    out["clipf"] = clipf.__version__
    return out


def recall_ks(spec: DatasetSpec, recall_k: Sequence[int]) -> list[int]:
    """The recall@k of a retrieval set that it can have (k <= its number of images)."""
    ks = [int(k) for k in recall_k]
    if spec.n_images is None:
        return ks
    kept = [k for k in ks if k <= spec.n_images]
    if len(kept) < len(ks):
        warnings.warn(
            f"{spec.name}: {spec.n_images} images, recall@k for k in {[k for k in ks if k not in kept]} "
            "left out",
            stacklevel=3,
        )
    if not kept:
        raise EvalError(f"{spec.name}: {spec.n_images} images: no recall@k with k in {ks} is defined")
    return kept


def cache_key(ckpt_sha: str, spec: DatasetSpec, data_fp: str, options: Mapping) -> str:
    opts = {k: options[k] for k in ("split", "language", "amp")}
    if spec.task == "zeroshot_retrieval":
        opts["recall_k"] = list(options["recall_k"])
    opts["annotation_file"] = spec.annotation_file
    opts["clip_benchmark"] = _versions().get("clip_benchmark")
    return _sha({"model": ckpt_sha, "dataset": spec.name, "data": data_fp, "task": spec.task, **opts})


@contextlib.contextmanager
def _quiet_and_offline(verbose: bool, threads: int | None, device: str) -> Iterator[None]:
    """Torch threads on CPU, CLIP_benchmark's progress bars off unless verbose, its shell downloads
    refused."""
    import functools

    import torch
    from clip_benchmark.datasets import builder
    from clip_benchmark.metrics import image_caption_selection, zeroshot_classification, zeroshot_retrieval

    def refuse(cmd: Any, *args: Any, **kwargs: Any) -> int:
        if isinstance(cmd, str) and cmd.startswith("which "):
            return 1  # has_kaggle()/has_gdown(): report the tool missing
        raise EvalError(f"clip_benchmark tried to download ({cmd!r}); clipf eval never downloads")

    patches = [(builder, "call", refuse)]
    if not verbose:
        for mod in (zeroshot_classification, zeroshot_retrieval, image_caption_selection):
            patches.append((mod, "tqdm", functools.partial(mod.tqdm, disable=True)))
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    old_threads = torch.get_num_threads()
    if device == "cpu" and threads:
        torch.set_num_threads(threads)
    for mod, name, value in patches:
        setattr(mod, name, value)
    try:
        yield
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)
        torch.set_num_threads(old_threads)


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, a DataLoader worker's traceback cut to its first and last line."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1].strip()}"
    return f"{type(exc).__name__}: {text}"


def _benchmark(model, transform, tokenizer, spec: DatasetSpec, options: Mapping) -> dict:
    """One dataset through CLIP_benchmark's builder and metric, as its ``clip_benchmark.cli.run`` does it
    (with ``download=False``)."""
    import torch
    from clip_benchmark.datasets.builder import build_dataset, get_dataset_collate_fn
    from clip_benchmark.metrics import image_caption_selection, zeroshot_classification, zeroshot_retrieval

    device, amp, bs, workers = (
        options["device"],
        options["amp"],
        options["batch_size"],
        options["num_workers"],
    )
    torch.manual_seed(options.get("seed", 0))
    dataset = build_dataset(
        dataset_name=spec.name,
        root=str(spec.root),
        transform=transform,
        split=options["split"],
        annotation_file=spec.annotation_file,
        download=False,
        language=options["language"],
        task=spec.task,
    )
    if spec.name.startswith("wds/"):
        # webdataset >= 1.0 fails a DataLoader worker that gets no shard: at most one worker a shard
        workers = min(workers, spec.nshards or 1)
        loader = torch.utils.data.DataLoader(
            dataset.batched(bs), batch_size=None, shuffle=False, num_workers=workers
        )
    else:
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=bs,
            shuffle=False,
            num_workers=workers,
            collate_fn=get_dataset_collate_fn(spec.name),
        )
    if spec.task == "zeroshot_classification":
        templates, classes = getattr(dataset, "templates", None), getattr(dataset, "classes", None)
        if not templates or not classes:
            raise EvalError(f"{spec.name}: no class names / templates for zero-shot classification")
        return zeroshot_classification.evaluate(
            model, loader, tokenizer, classes, templates, device=device, amp=amp, verbose=False
        )
    if spec.task == "zeroshot_retrieval":
        return zeroshot_retrieval.evaluate(
            model, loader, tokenizer, recall_k_list=list(options["recall_k"]), device=device, amp=amp
        )
    return image_caption_selection.evaluate(model, loader, tokenizer, device=device, amp=amp)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 16))


def _options(
    batch_size: int,
    num_workers: int | None,
    split: str,
    language: str,
    recall_k: Sequence[int],
    amp: bool | None,
    device: str | None,
    threads: int | None,
) -> dict:
    device = device or _default_device()
    threads = threads or _default_threads()
    return {
        "device": device,
        "amp": bool(device.startswith("cuda")) if amp is None else bool(amp),
        "batch_size": int(batch_size),
        "num_workers": min(4, threads) if num_workers is None else int(num_workers),
        "split": split,
        "language": language,
        "recall_k": [int(k) for k in recall_k],
        "threads": threads,
        "seed": 0,
    }


def _load_cached(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        dump = json.loads(path.read_text())
    except ValueError:
        return None  # a partial or foreign file is recomputed
    if isinstance(dump, dict) and dump.get("clipf", {}).get("cache_key") == key and "metrics" in dump:
        return dump
    return None


def _plan(
    datasets: Sequence[str] | None, dataset_root: str | os.PathLike | None, world: Any, split: str, ann: str
) -> list[DatasetSpec]:
    root = str(world_root(world)) if world is not None and dataset_root is None else dataset_root
    root = None if root is None else str(root)
    names = list(datasets or [])
    if not names:
        if root is None:
            raise EvalError("no datasets: pass datasets (--datasets), or --dataset-root/--world to find them")
        names = discover(root, split)
    return [check_dataset(n, root, split, ann) for n in dict.fromkeys(names)]


def evaluate_model(
    export: str | os.PathLike,
    datasets: Sequence[str] | None = None,
    dataset_root: str | os.PathLike | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    world: str | os.PathLike | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    split: str = "test",
    language: str = "en",
    recall_k: Sequence[int] = DEFAULT_RECALL_K,
    amp: bool | None = None,
    device: str | None = None,
    threads: int | None = None,
    annotation_file: str = "",
    force: bool = False,
    verbose: bool = False,
) -> dict[str, dict]:
    """CLIP_benchmark on one ``local-dir`` export: ``{dataset: CLIP_benchmark JSON}``; with ``out_dir``,
    written (and read back when cached) as ``out_dir/<dataset>.json``."""
    specs = _plan(datasets, dataset_root, world, split, annotation_file)
    ckpt = _export_checkpoint(Path(export), Path(export).name)
    opts = _options(batch_size, num_workers, split, language, recall_k, amp, device, threads)
    return _evaluate(
        ckpt, specs, opts, Path(export), None if out_dir is None else Path(out_dir), force, verbose
    )


def _evaluate(
    ckpt: Checkpoint,
    specs: Sequence[DatasetSpec],
    opts: dict,
    run: Path,
    out_dir: Path | None,
    force: bool,
    verbose: bool,
    run_name: str | None = None,
    computed: list | None = None,
) -> dict[str, dict]:
    results: dict[str, dict] = {}
    todo: list[tuple[DatasetSpec, str, str, Path | None]] = []
    for spec in specs:
        fp = fingerprint(spec.files)
        spec_opts = {**opts, "recall_k": recall_ks(spec, opts["recall_k"])}
        key = cache_key(ckpt.sha256, spec, fp, spec_opts)
        path = None if out_dir is None else out_dir / f"{spec.slug}.json"
        cached = None if (force or path is None) else _load_cached(path, key)
        if cached is not None:
            results[spec.name] = cached
        else:
            todo.append((spec, spec_opts, fp, key, path))
    if not todo:
        return results
    from clip_benchmark.models import load_clip

    with exported(ckpt, run) as folder, _quiet_and_offline(verbose, opts["threads"], opts["device"]):
        model_name = f"local-dir:{Path(folder).resolve()}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            try:
                model, transform, tokenizer = load_clip(
                    model_type="open_clip",
                    model_name=model_name,
                    pretrained="",
                    cache_dir=None,
                    device=opts["device"],
                )
            except Exception as exc:
                raise EvalError(
                    f"{ckpt.source}: open_clip cannot load it ({type(exc).__name__}: {exc})"
                ) from exc
        model.eval()
        context = int(getattr(tokenizer, "context_length", 0) or ckpt.info.get("context_length") or 0)
        if context and context < FULL_CONTEXT:
            warnings.warn(
                f"{ckpt.source}: text context {context} < {FULL_CONTEXT}: evaluation text is cut to {context} "
                "tokens (export at the full context with `clipf export --context-length 32`)",
                stacklevel=2,
            )
        for spec, spec_opts, fp, key, path in todo:
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=r"WebDataset\(shardshuffle=")
                    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
                    metrics = _benchmark(model, transform, tokenizer, spec, spec_opts)
            except EvalError:
                raise
            except Exception as exc:
                raise EvalError(
                    f"{spec.name} ({spec.root}): CLIP_benchmark failed: {_describe(exc)}"
                ) from exc
            dump = {
                "dataset": spec.name,
                "model": f"local-dir:{ckpt.source}" if ckpt.export is not None else str(ckpt.source),
                "pretrained": "",
                "task": spec.task,
                "metrics": metrics,
                "language": opts["language"],
                "clipf": {
                    "run": run_name,
                    "checkpoint": ckpt.label,
                    "source": str(Path(ckpt.source).resolve()),
                    "checkpoint_sha256": ckpt.sha256,
                    **{k: v for k, v in ckpt.info.items() if k != "provenance"},
                    "text_context_length": context,
                    "dataset_root": str(Path(spec.root).resolve()),
                    "dataset_fingerprint": fp,
                    "cache_key": key,
                    "options": {
                        k: spec_opts[k] for k in ("split", "language", "recall_k", "amp", "batch_size")
                    },
                    "device": opts["device"],
                    "seconds": round(time.perf_counter() - t0, 3),
                    "time": datetime.datetime.now().isoformat(timespec="seconds"),
                    "versions": _versions(),
                },
            }
            if path is not None:
                write_json(path, dump)
            if computed is not None:
                computed.append((ckpt.label, spec.name))
            results[spec.name] = dump
    return results


# ---------------------------------------------------------------- runs and the tidy table


def run_metadata(run: str | os.PathLike) -> dict:
    """The cell's settings (objective, masker, text_tokens, image_mask, seed, epochs, model,
    freq_threshold, finetune_epochs) from ``RUN/pretrain/clipf.json`` (+ ``RUN/finetune/clipf.json``); NaN
    if absent. ``objective`` is the pre-training's (a clipf.json without one is a contrastive run: clip)."""
    run = Path(run)
    nan = float("nan")
    meta = dict.fromkeys(["objective", "masker", "text_tokens", "image_mask", "seed", "epochs", "model"], nan)
    meta.update(freq_threshold=nan, finetune_epochs=nan)

    def read(path: Path) -> dict:
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            warnings.warn(f"{path}: unreadable JSON, run settings left empty", stacklevel=3)
            return {}

    pre = read(run / "pretrain" / "clipf.json") or read(run / "clipf.json")
    for key in ("masker", "text_tokens", "image_mask", "seed", "epochs", "model"):
        if pre.get(key) is not None:
            meta[key] = pre[key]
    if pre:
        meta["objective"] = pre.get("objective") or "clip"
    if pre.get("freq_threshold") is not None and meta["masker"] == "frequency":
        meta["freq_threshold"] = pre["freq_threshold"]
    fin = read(run / "finetune" / "clipf.json")
    if fin.get("epochs") is not None:
        meta["finetune_epochs"] = fin["epochs"]
    if fin and isinstance(meta["model"], float):
        meta["model"] = fin.get("model", nan)
    return meta


def tidy_rows(run: str, meta: Mapping, checkpoint: str, dump: Mapping) -> list[dict]:
    """One tidy row per finite metric of a CLIP_benchmark JSON."""
    rows = []
    sha = (dump.get("clipf") or {}).get("checkpoint_sha256", "")
    for metric, value in (dump.get("metrics") or {}).items():
        if _finite(value):
            rows.append(
                {
                    "run": run,
                    **{
                        k: meta.get(k)
                        for k in ("objective", "masker", "text_tokens", "image_mask", "seed", "epochs")
                    },
                    "checkpoint": checkpoint,
                    "dataset": dump.get("dataset"),
                    "task": dump.get("task"),
                    "metric": metric,
                    "value": float(value),
                    **{k: meta.get(k) for k in EXTRA_COLUMNS if k != "weights_sha256"},
                    "weights_sha256": sha,
                }
            )
    return rows


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows, columns=COLUMNS + EXTRA_COLUMNS)


def read_results(run: str | os.PathLike, name: str | None = None) -> list[dict]:
    """Tidy rows of every ``RUN/eval/<checkpoint>/<dataset>.json``."""
    run = Path(run)
    meta = run_metadata(run)
    rows = []
    for path in sorted((run / "eval").glob("*/*.json")):
        try:
            dump = json.loads(path.read_text())
        except ValueError:
            warnings.warn(f"{path}: unreadable JSON, skipped", stacklevel=2)
            continue
        if not isinstance(dump, dict) or "metrics" not in dump or "task" not in dump:
            continue
        rows += tidy_rows(name or run.name, meta, path.parent.name, dump)
    return rows


def write_summary(run: str | os.PathLike) -> Path:
    """``RUN/eval/summary.json``: {checkpoint: {dataset: {metric: value}}} of pretrain and finetune."""
    run = Path(run)
    out: dict[str, dict] = {}
    for row in read_results(run):
        if row["checkpoint"] in PHASES:
            out.setdefault(row["checkpoint"], {}).setdefault(row["dataset"], {})[row["metric"]] = row["value"]
    return write_json(run / "eval" / SUMMARY_NAME, out)


def evaluate_run(
    run: str | os.PathLike,
    checkpoint: str | Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    dataset_root: str | os.PathLike | None = None,
    *,
    world: str | os.PathLike | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    split: str = "test",
    language: str = "en",
    recall_k: Sequence[int] = DEFAULT_RECALL_K,
    amp: bool | None = None,
    device: str | None = None,
    threads: int | None = None,
    annotation_file: str = "",
    label: str | None = None,
    force: bool = False,
    verbose: bool = False,
):
    """CLIP_benchmark on a run's checkpoint(s); returns the tidy rows (DataFrame, columns as
    :func:`collect`) of every (checkpoint, dataset) asked for, computed or read back from the cache.

    ``checkpoint``: ``"pretrain"``, ``"finetune"``, an export folder or a ``.pt`` path, or a list; None:
    both phases the run has. ``datasets``: CLIP_benchmark names; None: every webdataset set under
    ``dataset_root`` (or ``world``'s ``eval/``). ``amp``: None = on CUDA only. ``force``: recompute.
    ``df.attrs["computed"]`` / ``df.attrs["cached"]``: the (checkpoint, dataset) pairs of each kind.
    """
    run = Path(run)
    if not run.is_dir():
        raise EvalError(f"{run}: no such run folder")
    specs = _plan(datasets, dataset_root, world, split, annotation_file)
    if checkpoint is None:
        wanted = [p for p in PHASES if (run / p).is_dir()]
        if not wanted:
            raise EvalError(f"{run}: neither pretrain/ nor finetune/ — nothing to evaluate")
    else:
        wanted = [checkpoint] if isinstance(checkpoint, str | os.PathLike) else list(checkpoint)
    if label is not None and len(wanted) > 1:
        raise EvalError("label= names one checkpoint; pass one checkpoint with it")
    ckpts = [resolve_checkpoint(run, str(c), label) for c in wanted]
    opts = _options(batch_size, num_workers, split, language, recall_k, amp, device, threads)
    meta = run_metadata(run)
    rows: list[dict] = []
    computed: list[tuple[str, str]] = []
    for ckpt in ckpts:
        if not re.fullmatch(r"[\w.+-]+", ckpt.label):
            raise EvalError(f"checkpoint label {ckpt.label!r}: letters, digits, '_', '-', '.', '+' only")
        results = _evaluate(
            ckpt, specs, opts, run, run / "eval" / ckpt.label, force, verbose, run.name, computed
        )
        for spec in specs:
            rows += tidy_rows(run.name, meta, ckpt.label, results[spec.name])
    write_summary(run)
    df = _frame(rows)
    pairs = [(c.label, s.name) for c in ckpts for s in specs]
    df.attrs["computed"] = computed
    df.attrs["cached"] = [p for p in pairs if p not in computed]
    return df


def find_runs(runs: str | os.PathLike) -> list[Path]:
    """Run folders (those with an ``eval/``) at or below ``runs``, sorted."""
    runs = Path(runs)
    if (runs / "eval").is_dir():
        return [runs]
    if not runs.is_dir():
        raise EvalError(f"{runs}: no such folder")
    return sorted(p.parent for p in runs.rglob("eval") if p.is_dir() and any(p.glob("*/*.json")))


def collect(runs: str | os.PathLike = "runs", out: str | os.PathLike | None = None, parquet: bool = True):
    """The tidy table of every run under ``runs`` (a DataFrame); with ``out``, written as CSV (and
    Parquet beside it) through temporary files — never half-written."""
    runs = Path(runs)
    rows: list[dict] = []
    base = runs if not (runs / "eval").is_dir() else runs.parent
    for run in find_runs(runs):
        rows += read_results(run, run.relative_to(base).as_posix())
    if not rows:
        raise EvalError(
            f"{runs}: no CLIP_benchmark results (RUN/eval/<checkpoint>/<dataset>.json); run `clipf eval RUN`"
        )
    df = _frame(rows).sort_values(["run", "checkpoint", "dataset", "metric"], kind="stable")
    df = df.reset_index(drop=True)
    if out is not None:  # both serialised before either file is replaced
        out = Path(out)
        files = {out: df.to_csv(index=False).encode()}
        if parquet:
            import io

            buf = io.BytesIO()
            df.to_parquet(buf, index=False)
            files[out.with_suffix(".parquet")] = buf.getvalue()
        for path, data in files.items():
            files_.write_text(path, data) if isinstance(data, str) else files_.atomic_write(
                path, lambda fh, d=data: fh.write(d)
            )
    return df


# ---------------------------------------------------------------- `clipf eval`


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clipf eval",
        description="CLIP_benchmark (zero-shot classification and retrieval) on a run's exported models. "
        "`clipf eval collect` builds the tidy results table.",
        epilog="Stock equivalent: clip_benchmark eval --model_type open_clip --model local-dir:RUN/pretrain/"
        "export --pretrained '' --dataset wds/NAME --dataset_root WORLD/eval/NAME --no_amp",
    )
    p.add_argument("run", help="run folder, e.g. runs/<cell> (holds pretrain/ and finetune/)")
    p.add_argument(
        "--checkpoint",
        nargs="+",
        default=None,
        help="pretrain | finetune | an export folder | a .pt (exported first); default: both phases",
    )
    p.add_argument("--label", help="eval folder name for a --checkpoint PATH (default: <phase>-epoch_N)")
    p.add_argument(
        "--datasets", nargs="+", default=None, help="CLIP_benchmark dataset names (default: every set found)"
    )
    p.add_argument(
        "--dataset-root",
        help="folder of the sets (webdataset sets as ROOT/<name>), or a CLIP_benchmark template ROOT/{dataset}",
    )
    p.add_argument("--world", help="a `clipf data synth` folder: evaluate on its eval/ sets")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--num-workers", type=int, default=None, help="DataLoader workers (default: min(4, threads))"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: cores available, <= 16)"
    )
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=None, help="autocast (default: CUDA only)"
    )
    p.add_argument("--split", default="test")
    p.add_argument("--language", default="en")
    p.add_argument("--recall-k", type=int, nargs="+", default=list(DEFAULT_RECALL_K))
    p.add_argument("--annotation-file", default="", help="retrieval annotations (mscoco_captions, flickr30k)")
    p.add_argument("--force", action="store_true", help="recompute cached results")
    p.add_argument("--verbose", action="store_true", help="CLIP_benchmark's progress bars")
    return p


def _collect_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clipf eval collect",
        description="Gather RUN/eval/<checkpoint>/<dataset>.json of every run into one tidy table "
        "(CSV + Parquet): " + ", ".join(COLUMNS + EXTRA_COLUMNS) + ".",
    )
    p.add_argument("--runs", default="runs", help="folder of runs (or one run)")
    p.add_argument("--out", default="runs/results.csv", help="CSV path; the Parquet file goes beside it")
    p.add_argument("--no-parquet", action="store_true")
    return p


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "collect":
            args = _collect_parser().parse_args(argv[1:])
            df = collect(args.runs, args.out, parquet=not args.no_parquet)
            print(f"{args.out}: {len(df)} rows, {df['run'].nunique()} runs")
            return 0
        args = _eval_parser().parse_args(argv)
        if args.dataset_root and args.world:
            raise EvalError("--dataset-root and --world: pass one")
        df = evaluate_run(
            args.run,
            args.checkpoint,
            args.datasets,
            args.dataset_root,
            world=args.world,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            split=args.split,
            language=args.language,
            recall_k=args.recall_k,
            amp=args.amp,
            device=args.device,
            threads=args.threads,
            annotation_file=args.annotation_file,
            label=args.label,
            force=args.force,
            verbose=args.verbose,
        )
    except EvalError as exc:
        print(f"clipf eval: error: {exc}", file=sys.stderr)
        return 2
    n_done, n_cached = len(df.attrs["computed"]), len(df.attrs["cached"])
    print(f"{args.run}: {n_done} evaluated, {n_cached} cached -> {Path(args.run) / 'eval'}")
    if not df.empty:
        table = df.pivot_table(index=["dataset", "metric"], columns="checkpoint", values="value")
        print(table.round(4).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
