"""The evaluation sets: found under a root (CLIP_benchmark's webdataset layout) or named, checked before any
model is loaded (an error names the dataset, the folder and the layout expected), and fingerprinted."""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from clipf.evaluate.base import TASKS, EvalError, file_sha256, slug

IMAGE_EXTS = (".webp", ".png", ".jpg", ".jpeg")
CONTENT_HASH_LIMIT = 256 * 2**20  # datasets up to this size are fingerprinted by content
FINGERPRINT_MAX_FILES = 200_000


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
