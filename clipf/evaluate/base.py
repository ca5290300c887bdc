"""What every part of ``clipf eval`` shares: the error, the phases, the tidy table's columns, hashing."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

PHASES = ("pretrain", "finetune")
SUMMARY_NAME = "summary.json"
CELL_NAME = "cell.json"  # RUN/cell.json: the plan's cell (world, masker, ...), written by the study
COLUMNS = [
    "run",
    "world",
    "objective",
    "masker",
    "text_tokens",
    "image_mask",
    "seed",
    "epochs",
    "checkpoint",
    "protocol",
    "dataset",
    "task",
    "metric",
    "value",
]
EXTRA_COLUMNS = ["model", "freq_threshold", "freq_rule", "finetune_epochs", "weights_sha256"]
TASKS = ("zeroshot_classification", "zeroshot_retrieval", "image_caption_selection")
DEFAULT_RECALL_K = (1, 5, 10)


class EvalError(RuntimeError):
    """Bad input to an evaluation: a missing or corrupt export, a dataset not where it should be."""


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


def sha_of(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys; non-JSON values as str)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def is_finite(v: Any) -> bool:
    """A real (non-bool) int or float that is not NaN or infinite."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
