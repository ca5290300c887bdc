"""Step checkpoints and exact resume: where a run is, what it must restore, which checkpoint to trust.

A run's position is ``(epoch, batches)``: ``batches`` of epoch ``epoch`` (0-based) are done. An epoch
checkpoint ``epoch_E.pt`` (open_clip_train's) sits at ``(E, 0)``; a step checkpoint
``step_<epoch>_<batches>.pt`` (clipf's) anywhere inside an epoch. Both carry the model, optimizer and
scaler state the way open_clip_train saves them (so open_clip_train's own resume loads them), plus a
``clipf`` record: the run's identity (options that must match to resume), and for a step checkpoint the
position, the RNG states of every rank (torch, CUDA, numpy, python) and the epoch's running counters.

Exactness rests on a data order that is a function of (seed, epoch, rank, data worker) — open_clip_train's
seeded shard shuffle, clipf's seeded sample shuffle — and on per-epoch seeds in the data workers
(:class:`WorkerSeeds`): the resumed epoch rebuilds the same stream and drops, before decoding, the samples
the consumed batches held (:func:`worker_skips`), replaying only their captions through the masker.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipf.engine.preflight import UsageError

STEP_PATTERN = re.compile(r"^step_(\d+)_(\d+)\.pt$")
EPOCH_PATTERN = re.compile(r"^epoch_(\d+)\.pt$")
RECORD = "clipf"  # the key of clipf's record inside a checkpoint dict
# Options that must be equal for a checkpoint to be resumed (the data position and the optimizer state
# mean nothing under another model, masking, batch or world size).
IDENTITY_KEYS = (
    "objective", "model", "masker", "text_tokens", "mask_schedule", "image_mask", "batch_size",
    "world_size", "workers", "accum_freq", "train_data", "train_num_samples", "dataset_resampled",
    "seed", "freq_threshold", "freq_rule", "precision",
)  # fmt: skip


class ResumeError(UsageError):
    """A checkpoint that cannot be resumed by this run; the message names the file and the options."""


@dataclass(frozen=True, order=True)
class Position:
    """``batches`` of epoch ``epoch`` (0-based) are done."""

    epoch: int
    batches: int = 0

    @staticmethod
    def of(path: str | os.PathLike) -> Position | None:
        """The position a checkpoint file name says, or None for another file."""
        name = Path(path).name
        if m := STEP_PATTERN.match(name):
            return Position(int(m[1]), int(m[2]))
        if m := EPOCH_PATTERN.match(name):
            return Position(int(m[1]), 0)
        return None

    def step_name(self) -> str:
        return f"step_{self.epoch}_{self.batches}.pt"


# --------------------------------------------------------------------------- choosing a checkpoint
def damage(path: str | os.PathLike) -> str | None:
    """Why a checkpoint file cannot be loaded (empty, not a torch zip archive, a CRC error), or None.

    ``torch.save`` writes a zip archive; a file cut short by a kill or a full disk has no central
    directory, and a flipped byte fails the CRC check (which reads the whole file once)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file"
        if not zipfile.is_zipfile(path):
            return "not a complete torch checkpoint (truncated?)"
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
        return f"CRC error in {bad}" if bad else None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        return f"{type(exc).__name__}: {exc}"


def checkpoints(folder: str | os.PathLike) -> list[tuple[Position, Path]]:
    """Epoch and step checkpoints in ``folder``, newest position first (an epoch checkpoint before a
    step checkpoint of the same position)."""
    folder = Path(folder)
    found = [(p, f) for f in folder.glob("*.pt") if (p := Position.of(f)) is not None]
    return sorted(found, key=lambda pf: (pf[0], EPOCH_PATTERN.match(pf[1].name) is not None), reverse=True)


def choose_latest(folder: str | os.PathLike, log: Callable[[str], Any] = print) -> Path | None:
    """The newest checkpoint in ``folder`` that loads; each newer damaged one is named in ``log``."""
    for _, path in checkpoints(folder):
        why = damage(path)
        if why is None:
            return path
        log(f"clipf: skipping damaged checkpoint {path} ({why}); trying the previous one")
    return None


def prune_steps(folder: str | os.PathLike, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` step checkpoints (epoch checkpoints are never touched)."""
    steps = [f for p, f in checkpoints(folder) if STEP_PATTERN.match(f.name)]
    gone = steps[max(0, keep) :]
    for f in gone:
        with contextlib.suppress(OSError):
            f.unlink()
    return gone


def check_identity(path: str | os.PathLike, saved: Mapping[str, Any] | None, now: Mapping[str, Any]) -> None:
    """Refuse a checkpoint written under other options (named, with both values)."""
    if not saved:
        return  # a checkpoint from before clipf recorded identities (or a stock open_clip_train one)
    diff = [k for k in IDENTITY_KEYS if k in saved and k in now and saved[k] != now[k]]
    if diff:
        what = ", ".join(f"{k} = {saved[k]!r} there, {now[k]!r} now" for k in diff)
        raise ResumeError(f"{path}: written by a run with other options ({what}); resume it with its own "
                          "command line, or start a new run (--name)")  # fmt: skip


# --------------------------------------------------------------------------- RNG and data position
def rng_state() -> dict[str, Any]:
    """This process's random states — python, numpy, torch CPU and (if initialised) CUDA — as tensors,
    tuples and numbers only, so a checkpoint holding them loads with ``torch.load(weights_only=True)``
    (open_clip_train's ``pt_load``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state`'s output."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def worker_skips(batches: int, workers: int) -> list[int]:
    """Batches each data worker had delivered when ``batches`` were consumed: a DataLoader takes whole
    batches from its workers in turn (worker ``j % W`` made batch ``j``); one in-process "worker" for 0."""
    n = max(1, int(workers))
    return [len(range(w, int(batches), n)) for w in range(n)]


class WorkerSeeds:
    """Per-sample augmentation seeds, so a resumed epoch draws each sample's crop as the original did.

    A training image's augmentation draws from torch's RNG. Left alone, that stream is the trainer's own
    (``--workers 0``: interleaved with patch dropout, and webdataset's batcher pulls one sample ahead of
    the batch it yields) or a persistent DataLoader worker's (running on across epochs). Either way a
    resumed run could not replay it. :meth:`seeded` runs one sample's transform on a forked RNG seeded
    from (seed, rank, data worker, epoch, sample index in the epoch), leaving the caller's stream as it
    was: augmentation is a function of the sample's position, whatever ran before.
    """

    def __init__(self, seed: int, rank: int):
        self.seed, self.rank = int(seed), int(rank)
        self.epoch = 0  # until a data process starts an epoch (a pipeline without SeededShuffle never does)
        self.index = 0

    def start_epoch(self, epoch: int, skip: int = 0) -> None:
        """A data process starts ``epoch``; the first ``skip`` samples are not transformed (resumed)."""
        self.epoch, self.index = int(epoch), int(skip)

    def sample_seed(self) -> int:
        """The seed of the next sample (and count it)."""
        info = torch.utils.data.get_worker_info()
        mix = np.random.SeedSequence(
            [self.seed, self.rank, info.id + 1 if info else 0, self.epoch, self.index]
        )
        self.index += 1
        return int(mix.generate_state(1, np.uint64)[0] >> 1)

    def seeded(self, fn: Callable[[Any], Any], x: Any) -> Any:
        """``fn(x)`` with torch's CPU RNG seeded for this sample, then put back.

        The CPU generator itself, not ``torch.manual_seed``: in a CUDA build of torch that has not
        initialised CUDA (every data worker), ``torch.manual_seed`` also queues a lazy CUDA seeding call
        with a formatted stack trace, per call — 0.3 ms a sample and a queue that only grows. The CPU
        stream drawn is the same (``torch.manual_seed`` seeds this generator)."""
        seed = self.sample_seed()
        gen = torch.default_generator
        state = gen.get_state()
        gen.manual_seed(seed)
        try:
            return fn(x)
        finally:
            gen.set_state(state)


# --------------------------------------------------------------------------- stop requests
class StopRequest:
    """SIGTERM / SIGUSR1 (preemption, SLURM's time limit) ask the run to checkpoint and stop at the next
    step; installed for the length of a run, previous handlers restored after."""

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.signal: str | None = None
        self._saved: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                with contextlib.suppress(ValueError):  # not the main thread: no handler
                    self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._saved.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, old)
        self._saved.clear()


class SaveClock:
    """When rank 0 wants a step checkpoint: every ``steps`` steps and/or every ``minutes`` of wall clock
    since the last save (or the start)."""

    def __init__(self, steps: int | None = None, minutes: float | None = None):
        self.steps = int(steps) if steps else None
        self.seconds = float(minutes) * 60 if minutes else None
        self.last_step = 0
        self.last_time = time.monotonic()

    def due(self, step: int) -> bool:
        by_steps = self.steps is not None and step - self.last_step >= self.steps
        by_time = self.seconds is not None and time.monotonic() - self.last_time >= self.seconds
        return by_steps or by_time

    def saved(self, step: int) -> None:
        self.last_step, self.last_time = int(step), time.monotonic()


def identity(values: Mapping[str, Any], keys: Iterable[str] = IDENTITY_KEYS) -> dict[str, Any]:
    """The identity record of a run (the :data:`IDENTITY_KEYS` it has)."""
    return {k: values[k] for k in keys if k in values}
