"""What clipf puts into open_clip_train's data pipeline: small pieces, each a drop-in for a stock one.

- :class:`EpochTokenizer`: a masking schedule as one tokenizer (the stage of the current epoch).
- :class:`SeededShuffle`: ``wds.shuffle`` seeded from (seed, rank, data worker, epoch), not the clock.
- :func:`count_and_continue`, :func:`has_caption_and_image`: webdataset's error handler and
  open_clip_train's sample filter, counting what they skip (a counter file per data process).
- :class:`CountingLoader`: the train DataLoader, counting batches, samples and text tokens.

They replace upstream names through :mod:`clipf.upstream` (``handler``, ``filter``, ``shuffle`` hooks).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from clipf import upstream

SKIP_DIR_ENV, SKIP_RANK_ENV = "CLIPF_SKIP_DIR", "CLIPF_SKIP_RANK"
FILTER = "open_clip_train.data.filter_no_caption_or_no_image"


class EpochTokenizer:
    """A masking schedule as one picklable tokenizer: the stage of the current epoch (a shared value the
    trainer sets before each epoch, seen by DataLoader workers), zero-padded to the tower's width."""

    def __init__(self, starts: Sequence[int], tokenizers: Sequence[Callable], width: int):
        self.starts = list(starts)
        self.tokenizers = list(tokenizers)
        self.width = int(width)
        self.epoch = multiprocessing.get_context().Value("i", 0, lock=False)

    def set_epoch(self, epoch: int) -> None:
        """Select the stage of 0-based ``epoch`` (in every DataLoader worker)."""
        self.epoch.value = int(epoch)

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        e = self.epoch.value
        i = max(j for j, s in enumerate(self.starts) if s <= e) if e >= self.starts[0] else 0
        ids = self.tokenizers[i](texts)
        if ids.shape[1] < self.width:
            ids = torch.nn.functional.pad(ids, (0, self.width - ids.shape[1]))
        return ids


# ---- data order: open_clip_train's sample shuffle buffer, seeded
class SeededShuffle:
    """``wds.shuffle`` as open_clip_train's training pipeline uses it, with its rng seeded.

    Stock ``wds.shuffle`` seeds from the pid and the clock, so two runs with the same ``--seed`` see
    their samples in different orders and end with different weights. Here the order is a function of
    (``--seed``, rank, data worker, epoch): ``dvc repro`` of a cell gives the same weights, bit for bit.
    ``seed``, ``rank`` and ``epoch`` (open_clip_train's ``SharedEpoch``) are set by ``Run.get_data``.
    """

    def __init__(self, bufsize: int = 1000, initial: int = 100):
        self.bufsize, self.initial = bufsize, initial
        self.seed, self.rank, self.epoch = 0, 0, None

    def __call__(self, src: Iterator[Any]) -> Iterator[Any]:
        import random

        import webdataset

        worker = torch.utils.data.get_worker_info()
        epoch = self.epoch.get_value() if self.epoch is not None else 0
        rng = random.Random(f"{self.seed}/{self.rank}/{worker.id if worker else 0}/{epoch}")
        return webdataset.shuffle(self.bufsize, self.initial, rng=rng)(src)


def pipeline_stages(obj: Any) -> Iterator[Any]:
    """The stages of a webdataset pipeline, through loaders (``WebLoader`` wraps a ``DataLoader``)."""
    for stage in getattr(obj, "pipeline", []):
        yield stage
        yield from pipeline_stages(stage)
    if isinstance(obj, torch.utils.data.DataLoader):
        yield obj.dataset
        yield from pipeline_stages(obj.dataset)


# ---- skipped records: counted in every process that runs the data pipeline
_skip_counts: dict[int, int] = {}


def count_and_continue(exn: BaseException) -> bool:
    """webdataset handler: log the error, count it (a file per process), keep going."""
    pid = os.getpid()
    n = _skip_counts[pid] = _skip_counts.get(pid, 0) + 1
    folder = os.environ.get(SKIP_DIR_ENV)
    if folder:
        rank = os.environ.get(SKIP_RANK_ENV, "0")
        with contextlib.suppress(OSError):
            tmp = os.path.join(folder, f".r{rank}-p{pid}.tmp")
            with open(tmp, "w") as fh:
                fh.write(str(n))
            os.replace(tmp, os.path.join(folder, f"r{rank}-p{pid}"))
    logging.warning(f"clipf: skipped a bad record ({describe(exn)}); {n} skipped by this data process")
    return True


def describe(exn: BaseException) -> str:
    """What went wrong, and where: webdataset's DecodingError carries the key and URL, not a message."""
    where = [str(getattr(exn, a)) for a in ("url", "key", "k") if getattr(exn, a, None)]
    cause = exn.__cause__
    text = f"{type(exn).__name__}: {exn}" if str(exn) else type(exn).__name__
    if cause is not None:
        text += f" <- {type(cause).__name__}: {cause}"
    return text + (f" [{' '.join(where)}]" if where else "")


def skip_total(folder: str | None, rank: int) -> int:
    """Records skipped so far by the data processes of ``rank`` (their counter files in ``folder``)."""
    total = 0
    for path in glob.glob(os.path.join(folder or "", f"r{rank}-p*")):
        with contextlib.suppress(OSError, ValueError):
            total += int(Path(path).read_text() or 0)
    return total


def has_caption_and_image(sample: dict) -> bool:
    """open_clip_train's filter, counting the samples it drops (an image or a caption missing)."""
    ok = upstream.original(FILTER)(sample)
    if not ok:
        count_and_continue(ValueError(f"sample {sample.get('__key__')!r} has no image or no caption"))
    return ok


class CountingLoader:
    """The train DataLoader, counting batches, samples and non-padding text tokens as they pass."""

    def __init__(self, loader: Any):
        self._loader = loader
        self.reset()

    def reset(self) -> None:
        """Zero the counts and restart the clocks (before each epoch)."""
        self.batches = self.samples = self.text_nonpad = 0
        self.t_start = time.perf_counter()
        self.t_first: float | None = None
        self.first_samples = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __iter__(self) -> Iterator[Any]:
        for batch in self._loader:
            texts = batch[1]
            self.batches += 1
            self.samples += len(texts)
            self.text_nonpad += int(torch.count_nonzero(texts))
            if self.t_first is None:
                self.t_first = time.perf_counter()
                self.first_samples = len(texts)
            yield batch
