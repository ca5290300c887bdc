"""What clipf puts into open_clip_train's data pipeline: small pieces, each a drop-in for a stock one.

- :class:`EpochTokenizer`: a masking schedule as one tokenizer (the stage of the current epoch).
- :class:`SeededShuffle`: ``wds.shuffle`` seeded from (seed, rank, data worker, epoch), not the clock.
- :func:`count_and_continue`, :func:`has_caption_and_image`: webdataset's error handler and
  open_clip_train's sample filter, counting what they skip (a counter file per data process).
- :class:`CountingLoader`: the train DataLoader, counting batches, samples and text tokens; it calls the
  run between steps (step checkpoints, stop requests) and starts a resumed epoch at its position.
- :class:`DataPosition`, :class:`SeededPreprocess`: a resumed epoch drops, before decoding, the samples
  its consumed batches held (replaying their captions through the masker), and data workers draw each
  sample's augmentation from (seed, rank, worker, epoch, sample index) — see :mod:`clipf.engine.resume`.

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
        """Select the stage of 0-based ``epoch`` (in every DataLoader worker); the stages' maskers draw
        that epoch's masks."""
        self.epoch.value = int(epoch)
        for tok in self.tokenizers:
            if hasattr(tok, "set_epoch"):
                tok.set_epoch(epoch)

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
        self.position: DataPosition | None = None  # set by Run.get_data

    def __call__(self, src: Iterator[Any]) -> Iterator[Any]:
        import random

        import webdataset

        worker = torch.utils.data.get_worker_info()
        epoch = self.epoch.get_value() if self.epoch is not None else 0
        if self.position is not None:
            self.position.begin_epoch(epoch)
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
    """The train DataLoader, counting batches, samples and non-padding text tokens as they pass.

    An epoch ends after ``num_batches`` batches (the epoch's length as open_clip_train sized it).
    ``on_start()`` runs once the epoch's iterator exists (a resumed epoch restores its RNG states there,
    after the DataLoader drew its seed); ``between(done)`` runs before each batch is fetched, ``done``
    batches of the epoch being finished (step checkpoints, stop requests: it may raise)."""

    def __init__(self, loader: Any):
        self._loader = loader
        self.on_start: Callable[[], Any] | None = None
        self.between: Callable[[int], Any] | None = None
        self.reset()

    def reset(self) -> None:
        """Zero the counts and restart the clocks (before each epoch)."""
        self.batches = self.samples = self.text_nonpad = 0
        self.t_start = time.perf_counter()
        self.t_first: float | None = None
        self.first_samples = 0

    def counters(self) -> dict[str, Any]:
        """The epoch's counts so far (what a step checkpoint keeps)."""
        return {"batches": self.batches, "samples": self.samples, "text_nonpad": self.text_nonpad}

    def restore(self, counters: dict[str, Any]) -> None:
        """Continue counting from a step checkpoint's counts."""
        self.batches, self.samples = int(counters["batches"]), int(counters["samples"])
        self.text_nonpad = int(counters["text_nonpad"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __iter__(self) -> Iterator[Any]:
        it = iter(self._loader)
        if self.on_start is not None:
            self.on_start()
        while True:
            if self.between is not None:
                self.between(self.batches)
            if self.batches >= self.num_batches:
                return  # a resumed epoch ends where the original did (its workers would go on)
            try:
                batch = next(it)
            except StopIteration:
                return
            texts = batch[1]
            self.batches += 1
            self.samples += len(texts)
            self.text_nonpad += int(torch.count_nonzero(texts))
            if self.t_first is None:
                self.t_first = time.perf_counter()
                self.first_samples = len(texts)
            yield batch


class DataPosition:
    """Where the data pipeline of a resumed epoch starts, as seen by every data process.

    ``skip[w]`` samples of epoch ``epoch`` were in batches worker ``w`` had delivered when the step
    checkpoint was written. The sample filter (:meth:`filter`, open_clip_train's select stage, before
    decoding) drops that many, passing each dropped caption through ``tokenizer`` so the masker's draws
    stay in step; every epoch starts the per-sample seeds (:class:`clipf.engine.resume.WorkerSeeds`).
    Samples a decoder rejects inside the dropped part are not known here: such a resume is off by
    those (they are counted as skipped records, as always).
    """

    def __init__(self, seeds: Any, tokenizer: Callable | None = None):
        self.seeds = seeds
        self.tokenizer = tokenizer
        self.epoch: int | None = None
        self.skip: list[int] = []
        self._started: tuple[int, int] | None = None  # (pid, epoch) this process is iterating
        self._left = 0  # samples still to drop in it
        self.on_main_begin: Callable[[], Any] | None = None  # once, when the main process starts an epoch

    def resume_at(self, epoch: int, skip: Sequence[int]) -> None:
        """Drop ``skip[w]`` samples in worker ``w`` of ``epoch`` (set before the epoch's iterator)."""
        self.epoch, self.skip = int(epoch), [int(n) for n in skip]

    def begin_epoch(self, epoch: int) -> None:
        """Called when a data process starts iterating ``epoch`` (again: webdataset repeats a short
        epoch; only the first call counts)."""
        key = (os.getpid(), int(epoch))
        if key == self._started:
            return
        info = torch.utils.data.get_worker_info()
        w = info.id if info is not None else 0
        self._started = key
        self._left = self.skip[w] if epoch == self.epoch and w < len(self.skip) else 0
        self.seeds.start_epoch(epoch, skip=self._left)
        if info is None and self.on_main_begin is not None:  # in-process data: after the loader's seed draw
            call, self.on_main_begin = self.on_main_begin, None
            call()

    def filter(self, sample: dict) -> bool:
        """open_clip_train's filter (counting what it drops), then the resumed epoch's drop."""
        if not has_caption_and_image(sample):
            return False
        if self._left > 0:
            self._left -= 1
            if self.tokenizer is not None:
                self.tokenizer(sample["txt"].decode("utf-8"))  # the masker draws what it drew
            return False
        return True


class SeededPreprocess:
    """The training image transform, each sample's augmentation seeded by its position in the epoch
    (:meth:`clipf.engine.resume.WorkerSeeds.seeded`)."""

    def __init__(self, preprocess: Callable, seeds: Any):
        self.preprocess, self.seeds = preprocess, seeds

    def __call__(self, image: Any) -> Any:
        return self.seeds.seeded(self.preprocess, image)

    def __getattr__(self, name: str) -> Any:  # the transform's own attributes (open_clip_train reads some)
        return getattr(self.preprocess, name)


def own_process_group(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a data worker leaves its trainer's process group. A preemption signal
    sent to the group (``clipf submit``'s batch script, torchrun's SIGTERM to a rank) is the training
    processes' to honour — finish the step, checkpoint, exit; a worker killed by it would crash the step.
    Workers still end with their trainer (its shutdown, or their watchdog when it dies)."""
    os.setpgid(0, 0)
