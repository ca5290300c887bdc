"""One ``open_clip_train.main.main`` call with clipf plugged in: :class:`Run` (the functions swapped in,
the records, the export, :meth:`Run.session`), :class:`Objective` (what an objective changes).

A :class:`Run` is the state shared by the functions :mod:`clipf.upstream` swaps into open_clip_train for
the run (``get_tokenizer``, ``create_model_and_transforms``, ``create_loss``, ``get_data``,
``train_one_epoch``, ``evaluate``). Objectives (:mod:`clipf.objectives`) subclass it and extend the methods
marked "Hook" (and the swapped-in ones).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import functools
import glob
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from clipf import export as E
from clipf import upstream
from clipf.engine import resume
from clipf.engine.adapters import (
    SKIP_DIR_ENV,
    SKIP_RANK_ENV,
    CountingLoader,
    DataPosition,
    SeededPreprocess,
    SeededShuffle,
    count_and_continue,
    own_process_group,
    pipeline_stages,
    skip_total,
)
from clipf.engine.plan import Plan
from clipf.engine.preflight import env_rank, env_world, image_size, preprocess_overrides
from clipf.files import EXIT_REQUEUE, PREEMPT_ENV, atomic_save, write_json

OC_MAIN = "open_clip_train.main"


class LossMeter:
    """The loss module, summing its total per step on the device (no host sync)."""

    def __init__(self, loss: Any):
        self._loss = loss
        self.reset()

    def reset(self) -> None:
        """Zero the sum and the step count (before each epoch)."""
        self.total: torch.Tensor | float = 0.0
        self.steps = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loss, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self._loss(*args, **kwargs)
        parts = out.values() if isinstance(out, dict) else out if isinstance(out, tuple | list) else [out]
        self.total = self.total + sum(p.detach().float() for p in parts)
        self.steps += 1
        return out


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def hms(seconds: float) -> str:
    """Seconds as ``H:MM:SS``."""
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


def image_tokens(model: torch.nn.Module) -> int | None:
    """Tokens per image in the vision transformer while training (class token + kept patches)."""
    visual = getattr(unwrap(model), "visual", None)
    grid = getattr(visual, "grid_size", None)
    if grid is None:
        return None
    patches = int(grid[0]) * int(grid[1])
    prob = float(getattr(getattr(visual, "patch_dropout", None), "prob", 0.0) or 0.0)
    if prob > 0:
        patches = max(1, int(patches * (1 - prob)))
    return patches + (1 if getattr(visual, "class_embedding", None) is not None else 0)


def last_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest ``checkpoints/epoch_N.pt`` of a run folder's checkpoint folder (by N), or None."""
    ckpts = sorted(
        glob.glob(os.path.join(folder, "epoch_*.pt")),
        key=lambda p: [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p)],
    )
    return ckpts[-1] if ckpts else None


class Progress(logging.Filter):
    """Appends ETA (epoch and run) to open_clip_train's ``Train Epoch:`` progress lines."""

    def __init__(self, run: Run):
        super().__init__()
        self.run = run

    def filter(self, record: logging.LogRecord) -> bool:
        loader, run = self.run.loader, self.run
        if loader is not None and isinstance(record.msg, str) and record.msg.startswith("Train Epoch:"):
            done, total = loader.batches, max(1, loader.num_batches)
            if done:
                per = (time.perf_counter() - loader.t_start) / done
                left = (total - done) * per
                later = (run.args.epochs - run.epoch - 1) * total * per
                record.msg += f" ETA: {hms(left)} epoch, {hms(left + later)} run"
        return True


class Preempted(RuntimeError):
    """A stop request (SIGTERM / SIGUSR1) honoured at a step boundary: a step checkpoint was written on
    every rank's behalf; the run exits with :data:`clipf.files.EXIT_REQUEUE` to be requeued."""

    def __init__(self, signal: str, checkpoint: Path | None):
        super().__init__(f"{signal}: stopped at a step boundary (checkpoint {checkpoint})")
        self.signal, self.checkpoint = signal, checkpoint


class ShiftedWriter:
    """A TensorBoard writer whose steps are offset (a resumed epoch's loop counts from 0 again)."""

    def __init__(self, writer: Any, shift: int):
        self._writer, self._shift = writer, int(shift)

    def add_scalar(self, tag: str, value: Any, global_step: int | None = None, *args: Any, **kw: Any) -> Any:
        step = None if global_step is None else global_step + self._shift
        return self._writer.add_scalar(tag, value, step, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


# =========================================================================== the run
class Run:
    """State shared by the swapped-in functions during one ``open_clip_train.main.main`` call."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.args: argparse.Namespace | None = None
        self.loader: CountingLoader | None = None
        self.loss: LossMeter | None = None
        self.tokenizer: Callable | None = None
        self.epoch = 0
        self.records: list[dict[str, Any]] | None = None
        self.skip_dir: str | None = None
        self.skips_before = 0
        self.started = False
        # step checkpoints and exact resume (clipf.engine.resume)
        self.seeds = resume.WorkerSeeds(0, 0)
        self.position = DataPosition(self.seeds)
        self.clock = resume.SaveClock(plan.save_every_steps, plan.save_every_minutes)
        self.stop: resume.StopRequest | None = None
        self.resume_from: Path | None = None  # the checkpoint --resume resolves to (checked)
        self.resume_record: dict[str, Any] | None = None  # a step checkpoint's clipf record, until used
        self.train_state: tuple[Any, Any, Any] | None = None  # (model, optimizer, scaler) of the epoch

    # ---- paths
    @property
    def log_dir(self) -> Path | None:
        """``--logs``/``--name`` (None: logging off)."""
        a = self.args
        if a is None or not a.logs or a.logs.lower() == "none":
            return None
        return Path(a.logs, a.name)

    @property
    def distributed(self) -> bool:
        """Whether this run's processes form an initialised torch.distributed group."""
        return bool(getattr(self.args, "distributed", False)) and torch.distributed.is_initialized()

    @property
    def master(self) -> bool:
        """Whether this process is rank 0."""
        return self.args is not None and self.args.rank == 0

    def hooks(self) -> dict[str, Any]:
        """The values :func:`clipf.upstream.patched` ``("train")`` puts in place for this run."""
        return {
            "get_tokenizer": self.get_tokenizer,
            "create_model_and_transforms": self.create_model_and_transforms,
            "create_loss": self.create_loss,
            "get_data": self.get_data,
            "train_one_epoch": self.train_one_epoch,
            "evaluate": self.evaluate,
            "shuffle": SeededShuffle,
            "handler": count_and_continue,
            "filter": self.position.filter,
            "save": self.save_checkpoint,
            "get_latest_checkpoint": self.latest_checkpoint,
        }

    # ---- swapped into open_clip_train.main
    def get_tokenizer(self, model_name: str, cache_dir: str | None = None, **_: Any) -> Callable:
        """Zero-shot / val tokenizer: always the full N tokens."""
        return upstream.original(f"{OC_MAIN}.get_tokenizer")(
            model_name, cache_dir=cache_dir, context_length=self.plan.full_context
        )

    def create_model_and_transforms(self, *args: Any, **kwargs: Any) -> Any:
        """open_clip's, loading a ``--pretrained`` K-token checkpoint with ``--pos-extend``."""
        with E.text_pos_resize(self.plan.pos_extend):
            return upstream.original(f"{OC_MAIN}.create_model_and_transforms")(*args, **kwargs)

    def create_loss(self, args: argparse.Namespace) -> Any:
        """open_clip's loss, metered."""
        self.loss = LossMeter(upstream.original(f"{OC_MAIN}.create_loss")(args))
        return self.loss

    def get_data(
        self, args: argparse.Namespace, preprocess_fns: Any, epoch: int = 0, tokenizer: Any = None
    ) -> dict:
        """open_clip_train's data: the train split with the masking tokenizer, seeded and counted."""
        from open_clip_train import data as oc_data

        self.args = args
        full_tok = tokenizer if tokenizer is not None else self.get_tokenizer(args.model, args.cache_dir)
        self.tokenizer = self.plan.train_tokenizer()
        train_tok = self.tokenizer or upstream.original(f"{OC_MAIN}.get_tokenizer")(
            args.model, cache_dir=args.cache_dir, context_length=self.plan.train_context
        )
        self.skip_dir = tempfile.mkdtemp(prefix=f"clipf-skips-r{args.rank}-")
        os.environ[SKIP_DIR_ENV], os.environ[SKIP_RANK_ENV] = self.skip_dir, str(args.rank)
        pp_train, pp_val = preprocess_fns
        self.seeds.seed, self.seeds.rank = args.seed, args.rank
        self.position.tokenizer = self.tokenizer
        data: dict[str, Any] = {}
        if args.train_data or args.dataset_type == "synthetic":
            build = oc_data.get_dataset_fn(args.train_data, args.dataset_type)
            pp_seeded = SeededPreprocess(pp_train, self.seeds)
            data["train"] = build(args, pp_seeded, is_train=True, epoch=epoch, tokenizer=train_tok)
            for stage in pipeline_stages(data["train"].dataloader):
                if isinstance(stage, SeededShuffle):
                    stage.seed, stage.rank, stage.epoch = args.seed, args.rank, data["train"].shared_epoch
                    stage.position = self.position
                if isinstance(stage, torch.utils.data.DataLoader) and stage.worker_init_fn is None:
                    stage.worker_init_fn = own_process_group
                if isinstance(stage, torch.utils.data.DataLoader) and args.workers > 0:
                    # the workers' base seed from (seed, rank), not from the trainer's RNG: a resumed
                    # run's fresh workers get the seed the first epoch's workers had
                    stage.generator = torch.Generator().manual_seed(
                        int(args.seed) * 1_000_003 + int(args.rank)
                    )
            self.loader = CountingLoader(data["train"].dataloader)
            self.loader.on_start, self.loader.between = self.epoch_started, self.between_steps
            data["train"].dataloader = self.loader
            rec = self.resume_record
            if rec is not None:
                at_epoch, done = rec["position"]
                per_worker = resume.worker_skips(done, args.workers)
                self.position.resume_at(at_epoch, [n * args.batch_size for n in per_worker])
            if self.plan.warmup_epochs is not None:
                per_epoch = self.loader.num_batches // args.accum_freq
                args.warmup = round(self.plan.warmup_epochs * per_epoch)
        if args.val_data:
            build = oc_data.get_dataset_fn(args.val_data, args.dataset_type)
            data["val"] = build(args, pp_val, is_train=False, tokenizer=full_tok)
        if args.imagenet_val is not None:
            data["imagenet-val"] = oc_data.get_imagenet(args, preprocess_fns, "val")
        if args.imagenet_v2 is not None:
            data["imagenet-v2"] = oc_data.get_imagenet(args, preprocess_fns, "v2")
        if self.master and self.log_dir is not None:
            self.write_config(epoch)
        if self.master:
            for note in self.plan.notes:
                logging.info(f"clipf: note: {note}")
            stage = self.plan.stage(epoch)
            what = f"{stage.masker} masking, K={stage.k}" if stage else "no text masking"
            logging.info(
                f"clipf: train text {what} (tower context {self.plan.train_context}); eval text at "
                f"N={self.plan.full_context} (pos-extend {self.plan.pos_extend}); warmup {args.warmup} steps"
            )
        return data

    def train_one_epoch(
        self, model: Any, data: dict, loss: Any, epoch: int, optimizer: Any, *rest: Any, **kw: Any
    ):
        """open_clip_train's epoch, timed; its record goes to metrics.json."""
        if not self.started:
            self.started = True
            self._load_records(epoch)
        self.epoch = epoch
        self.train_state = (model, optimizer, rest[0] if rest else None)
        if hasattr(self.tokenizer, "set_epoch"):  # MaskingTokenizer, EpochTokenizer: the epoch's masks
            self.tokenizer.set_epoch(epoch)
        if self.loader is not None:
            self.loader.reset()
        if self.loss is not None:
            self.loss.reset()
        rec = self.resume_record
        if rec is not None and rec["position"][0] == epoch and len(rest) >= 2:
            shift = rec["position"][1] // max(1, self.args.accum_freq)  # the loop's step counts from 0 again
            rest = list(rest)
            if rest[1] is not None:
                rest[1] = functools.partial(_shifted_schedule, rest[1], shift)
            if kw.get("tb_writer") is not None:
                kw["tb_writer"] = ShiftedWriter(kw["tb_writer"], shift)
        t0 = time.perf_counter()
        out = upstream.original(f"{OC_MAIN}.train_one_epoch")(
            model, data, loss, epoch, optimizer, *rest, **kw
        )
        seconds = time.perf_counter() - t0
        self.epoch_record(model, epoch, optimizer, seconds)
        return out

    def evaluate(self, model: Any, data: dict, epoch: int, args: argparse.Namespace, *rest: Any, **kw: Any):
        """open_clip_train's evaluation, at N text tokens; its metrics go to metrics.json."""
        evaluate = upstream.original(f"{OC_MAIN}.evaluate")
        if args.rank != 0:
            return evaluate(model, data, epoch, args, *rest, **kw)
        net = unwrap(model)
        if E.text_context(net) != self.plan.full_context:
            net = E.extend_context(copy.deepcopy(net), self.plan.full_context, self.plan.pos_extend)
            args = copy.copy(args)
            args.distributed = False
            model = net
        metrics = evaluate(model, data, epoch, args, *rest, **kw)
        if metrics and self.records is not None and self.log_dir is not None:
            for rec in self.records:
                if rec["epoch"] == epoch:
                    rec.update({f"val/{k}": v for k, v in metrics.items() if k != "epoch"})
            write_json(self.log_dir / "metrics.json", self.records)
        return metrics

    # ---- records
    def write_config(self, epoch: int) -> None:
        """Hook: write ``RUN/clipf.json`` (the plan, versions, one more launch) at the start of a launch."""
        import open_clip

        path = self.log_dir / "clipf.json"
        old = json.loads(path.read_text()) if path.is_file() else {}
        cfg = self.plan.to_json()
        cfg["warmup"] = self.args.warmup
        cfg["world_size"] = self.args.world_size
        cfg["versions"] = {
            "clipf": __import__("clipf").__version__,
            "open_clip": open_clip.__version__,
            "torch": torch.__version__,
        }
        launch = {
            "time": datetime.datetime.now().isoformat(timespec="seconds"),
            "argv": self.plan.argv,
            "resume": self.args.resume,
            "start_epoch": epoch,
            "world_size": self.args.world_size,
        }
        cfg["launches"] = [*old.get("launches", []), launch]
        write_json(path, cfg)

    def _load_records(self, start_epoch: int) -> None:
        self.records = []
        path = self.log_dir / "metrics.json" if self.log_dir is not None else None
        if self.master and path is not None and path.is_file() and start_epoch > 0:
            with contextlib.suppress(ValueError, OSError):
                old = json.loads(path.read_text())
                self.records = [r for r in old if isinstance(r, dict) and r.get("epoch", 0) <= start_epoch]
        if self.log_dir is not None and self.master:
            for stale in glob.glob(os.path.join(self.args.checkpoint_path, "*.tmp-*")):
                with contextlib.suppress(OSError):
                    os.remove(stale)  # left by a kill during an (atomic) checkpoint write

    def reduce(self, values: list[float]) -> list[float]:
        """Sums of ``values`` over the processes (all-reduce; as given in one process)."""
        args = self.args
        if not getattr(args, "distributed", False) or getattr(args, "horovod", False):
            return values
        t = torch.tensor(values, dtype=torch.float64, device=args.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def epoch_record(self, model: Any, epoch: int, optimizer: Any, seconds: float) -> None:
        """Hook: append the epoch's record to ``self.records`` and ``RUN/metrics.json`` (rank 0); every
        rank calls it (the counts are all-reduced)."""
        args, loader, meter = self.args, self.loader, self.loss
        batches = loader.batches if loader is not None else 0
        skipped_now = skip_total(self.skip_dir, args.rank)
        loss_sum = float(meter.total) if meter is not None and meter.steps else 0.0
        steps = meter.steps if meter is not None else 0
        samples, nonpad, loss_sum, steps, skipped = self.reduce(
            [
                float(loader.samples if loader is not None else 0),
                float(loader.text_nonpad if loader is not None else 0),
                loss_sum,
                float(steps),
                float(skipped_now - self.skips_before),
            ]
        )
        self.skips_before = skipped_now
        if not self.master:
            return
        samples, skipped = int(samples), int(skipped)
        stage = self.plan.stage(epoch)
        prev = self.records[-1] if self.records else {}
        per_image = image_tokens(model)
        steady = None
        if loader is not None and loader.t_first is not None and batches > 1:
            span = loader.t_start + seconds - loader.t_first
            local_steady = loader.samples - loader.first_samples
            steady = local_steady * args.world_size / span if span > 0 else None
        ctx = self.plan.train_context
        rec = {
            "epoch": epoch + 1,
            "masker": stage.masker if stage else "none",
            "text_tokens": stage.k if stage else self.plan.full_context,
            "text_context": ctx,
            "image_mask": float(args.force_patch_dropout or 0.0),
            "image_tokens": per_image,
            "steps": batches,
            "samples": samples,
            "train_seconds": seconds,
            "samples_per_second": samples / seconds if seconds > 0 else None,
            "samples_per_second_steady": steady,
            "loss": loss_sum / steps if steps else None,
            "lr": optimizer.param_groups[0]["lr"] if optimizer is not None else None,
            "skipped": skipped,
            "skipped_total": int(prev.get("skipped_total", 0)) + skipped,
            "samples_seen": int(prev.get("samples_seen", 0)) + samples,
            "text_tokens_seen": int(prev.get("text_tokens_seen", 0)) + samples * ctx,
            "text_tokens_nonpad_seen": int(prev.get("text_tokens_nonpad_seen", 0)) + int(nonpad),
            "image_tokens_seen": int(prev.get("image_tokens_seen", 0)) + samples * (per_image or 0),
            "train_seconds_total": float(prev.get("train_seconds_total", 0.0)) + seconds,
            "world_size": args.world_size,
            "time": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        self.records = [r for r in self.records if r.get("epoch") != rec["epoch"]] + [rec]
        if self.log_dir is not None:
            write_json(self.log_dir / "metrics.json", self.records)
        loss_txt = f"{rec['loss']:.4f}" if rec["loss"] is not None else "n/a"
        sps = rec["samples_per_second"] or 0.0
        logging.info(
            f"clipf: epoch {epoch + 1}/{args.epochs} done in {hms(seconds)}: loss {loss_txt}, "
            f"{sps:.1f} samples/s ({sps / args.world_size:.1f}/process), {samples} samples, "
            f"skipped {skipped} bad records ({rec['skipped_total']} in total)"
        )

    # ---- step checkpoints, exact resume, stop requests (clipf.engine.resume)
    def identity(self) -> dict[str, Any]:
        """The options a checkpoint must share with this run to be resumed by it."""
        cfg = self.plan.to_json()
        oc = self.plan.oc
        cfg.update(
            world_size=env_world(),
            workers=oc.workers,
            accum_freq=oc.accum_freq,
            dataset_resampled=bool(oc.dataset_resampled),
        )
        return resume.identity(cfg)

    def prepare_resume(self) -> None:
        """Before open_clip_train starts: resolve ``--resume`` (``latest``: the newest epoch or step
        checkpoint that loads; damaged ones are named and passed over) and refuse a checkpoint written
        under other options (:class:`~clipf.engine.resume.ResumeError`, a UsageError). Every rank does
        this (same files, same answer), so a refusal stops all of them."""
        oc = self.plan.oc
        if not oc.resume:
            return
        if oc.resume == "latest":
            if not oc.name or not oc.logs or str(oc.logs).lower() == "none":
                return  # open_clip_train says what is missing
            master = env_rank() == 0
            path = resume.choose_latest(
                Path(oc.logs, oc.name, "checkpoints"),
                (lambda m: print(m, file=sys.stderr, flush=True)) if master else (lambda m: None),
            )
        else:
            path = Path(oc.resume)
        if path is None or not path.is_file():
            return
        self.resume_from = path
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - not a torch zip archive: open_clip_train reports it when it loads
            return
        record = ckpt.get(resume.RECORD) if isinstance(ckpt, dict) else None
        if isinstance(record, dict):
            resume.check_identity(path, record.get("identity"), self.identity())
            if record.get("position") and "ranks" in record:
                self.resume_record = record

    def latest_checkpoint(self, path: str, remote: bool = False) -> str | None:
        """Swapped in for open_clip_train's ``get_latest_checkpoint``: the choice of :meth:`prepare_resume`."""
        return str(self.resume_from) if self.resume_from is not None else None

    def save_checkpoint(self, obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        """open_clip_train's ``torch.save`` of a checkpoint: this run's identity added, written atomically."""
        if isinstance(obj, dict) and "state_dict" in obj and "epoch" in obj and resume.RECORD not in obj:
            obj = {**obj, resume.RECORD: {"identity": self.identity()}}
        atomic_save(obj, f, *args, **kwargs)

    def objective_state(self) -> Any:
        """Hook: this rank's objective state a step checkpoint must keep (UTA: its mask generator)."""
        return None

    def restore_objective_state(self, state: Any) -> None:
        """Hook: put :meth:`objective_state`'s value back in a resumed epoch."""

    def epoch_started(self) -> None:
        """The epoch's data iterator exists: a resumed epoch puts back this rank's RNG states, counters
        and objective state now — after the DataLoader drew its seed, before the first batch."""
        rec = self.resume_record
        if rec is None or rec["position"][0] != self.epoch:
            return
        self.resume_record = None
        at_epoch, done = rec["position"]
        mine = rec["ranks"][self.args.rank]
        if self.args.workers > 0:
            resume.set_rng_state(mine["rng"])
        else:  # the in-process pipeline draws the loader's seed from torch's RNG when it starts: after that
            self.position.on_main_begin = functools.partial(resume.set_rng_state, mine["rng"])
        self.loader.restore(mine["counters"])
        if self.loss is not None:
            self.loss.total, self.loss.steps = float(mine["loss"][0]), int(mine["loss"][1])
        self.restore_objective_state(mine.get("objective"))
        self.clock.saved(at_epoch * self.loader.num_batches + done)
        if self.master:
            logging.info(
                f"clipf: resuming from step checkpoint {self.resume_from} (epoch {at_epoch}, batch {done}/"
                f"{self.loader.num_batches}): the consumed samples are dropped before decoding, their "
                "captions replayed through the masker"
            )

    def between_steps(self, done: int) -> None:
        """Before each batch (``done`` batches of the epoch finished): a step checkpoint when rank 0's
        clock says so or any rank got a stop request (all ranks agree through one all-reduce); then, on
        a stop request, :class:`Preempted`."""
        args = self.args
        stop = self.stop is not None and self.stop.signal is not None
        at = self.epoch * self.loader.num_batches + done
        due = self.master and done > 0 and self.clock.due(at)
        if done % self.boundary or done >= self.loader.num_batches:
            return  # between boundaries: the next one; the epoch's end: its epoch checkpoint
        if self.distributed:
            flags = torch.tensor([float(stop), float(due)], device=args.device)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            stop, due = bool(flags[0] > 0), bool(flags[1] > 0)
        if not (stop or due):
            return
        path = self.save_step(done)
        if stop:
            raise Preempted(self.stop.signal if self.stop and self.stop.signal else "stop request", path)

    @property
    def boundary(self) -> int:
        """Step checkpoints sit at multiples of this many batches: whole gradient accumulations, and whole
        rounds of the data workers (a resumed DataLoader takes its first batch from worker 0 again)."""
        return math.lcm(max(1, self.args.accum_freq), max(1, self.args.workers))

    def save_step(self, done: int) -> Path | None:
        """Write ``step_<epoch>_<done>.pt`` (rank 0; every rank's RNG states, counters and objective state
        gathered into it), keep the newest ``--keep-step-checkpoints``; a failed write (disk full) is
        logged and keeps the previous ones."""
        args = self.args
        model, optimizer, scaler = self.train_state
        meter = self.loss
        mine = {
            "rng": resume.rng_state(),
            "counters": self.loader.counters(),
            "loss": [
                float(meter.total) if meter is not None and meter.steps else 0.0,
                meter.steps if meter else 0,
            ],
            "objective": self.objective_state(),
        }
        ranks = [mine]
        if self.distributed:
            ranks = [None] * args.world_size
            torch.distributed.all_gather_object(ranks, mine)
        path = None
        if self.master and self.log_dir is not None:
            path = Path(args.checkpoint_path) / resume.Position(self.epoch, done).step_name()
            ckpt = {
                "epoch": self.epoch,
                "name": args.name,
                # as open_clip_train saves it: the DDP wrapper's keys (module.*), not torch.compile's
                "state_dict": getattr(model, "_orig_mod", model).state_dict(),
                "optimizer": optimizer.state_dict(),
            }
            if scaler is not None:
                ckpt["scaler"] = scaler.state_dict()
            ckpt[resume.RECORD] = {
                "identity": self.identity(),
                "position": [self.epoch, done],
                "ranks": ranks,
                "workers": args.workers,
            }
            t0 = time.perf_counter()
            try:
                atomic_save(ckpt, str(path))
            except OSError as exc:
                logging.error(
                    f"clipf: step checkpoint {path} not written ({exc}); the previous ones are kept"
                )
                path = None
            else:
                resume.prune_steps(args.checkpoint_path, self.plan.keep_step_checkpoints)
                logging.info(
                    f"clipf: step checkpoint {path.name} (epoch {self.epoch}, batch {done}/"
                    f"{self.loader.num_batches}) written in {time.perf_counter() - t0:.2f} s"
                )
        self.clock.saved(self.epoch * self.loader.num_batches + done)
        if self.distributed:
            torch.distributed.barrier()
        return path

    def preempted(self, stop: Preempted) -> int:
        """After a honoured stop request: tell the batch script (``$CLIPF_PREEMPT_FILE``), clean up, exit
        code :data:`~clipf.files.EXIT_REQUEUE`."""
        if self.master:
            logging.warning(
                f"clipf: {stop.signal}: stopped after a step checkpoint ({stop.checkpoint}); run the same command "
                "with --resume latest to continue exactly"
            )
            flag = os.environ.get(PREEMPT_ENV)
            if flag:
                with contextlib.suppress(OSError):
                    Path(flag).parent.mkdir(parents=True, exist_ok=True)
                    Path(flag).write_text(f"{stop.checkpoint}\n")
        self.close()
        return EXIT_REQUEUE

    # ---- end of training
    def export(self, checkpoint: str, out: Path) -> None:
        """Hook: write ``out`` (an open_clip local-dir: model) from the last checkpoint."""
        args = self.args
        E.export(
            checkpoint,
            self.plan.model,
            out,
            self.plan.full_context,
            self.plan.pos_extend,
            image_size=image_size(args),
            quick_gelu=bool(args.force_quick_gelu),
            custom_text=bool(args.force_custom_text),
            preprocess=preprocess_overrides(args) or None,
        )
        logging.info(
            f"clipf: exported {checkpoint} -> {out} (open_clip local-dir:, {self.plan.full_context} "
            f"text tokens, pos-extend {self.plan.pos_extend})"
        )

    def finish(self) -> int:
        """After training: the export (rank 0, unless ``--no-export``), clean-up; an exit code."""
        args = self.args
        rc = 0
        if args is not None and self.master and self.plan.export and self.log_dir is not None:
            last = last_checkpoint(args.checkpoint_path)
            if last is not None:
                try:
                    self.export(last, self.log_dir / "export")
                except Exception as exc:  # noqa: BLE001 - report, keep the checkpoints
                    logging.error(f"clipf: export of {last} failed: {type(exc).__name__}: {exc}")
                    rc = 1
        self.close()
        return rc

    def close(self) -> None:
        """The end of a run, finished or stopped: the skip counters' folder, the process group."""
        if self.skip_dir:
            shutil.rmtree(self.skip_dir, ignore_errors=True)
        if self.distributed:
            torch.distributed.destroy_process_group()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """For the length of one run: the upstream patches (:func:`clipf.upstream.patched` ``"train"``),
        the progress filter on the root logger, the skip-counter environment; all put back after, with
        the loggers' levels (open_clip_train's setup_logging sets every logger to INFO, torch's included,
        which then prints its TorchDynamo / FakeTensor statistics when the process exits)."""
        handlers = list(logging.root.handlers)
        manager = logging.root.manager
        levels = {n: getattr(lg, "level", logging.NOTSET) for n, lg in manager.loggerDict.items()}
        root_level = logging.root.level
        progress = Progress(self)
        logging.root.addFilter(progress)
        env = {k: os.environ.get(k) for k in (SKIP_DIR_ENV, SKIP_RANK_ENV)}
        try:
            self.prepare_resume()
            with resume.StopRequest() as self.stop, upstream.patched("train", **self.hooks()):
                yield
        finally:
            logging.root.removeFilter(progress)
            for h in logging.root.handlers[:]:
                if h not in handlers:  # open_clip_train's setup_logging adds a pair per call
                    logging.root.removeHandler(h)
                    h.close()
            logging.root.setLevel(root_level)
            for name, level in levels.items():
                if isinstance(manager.loggerDict.get(name), logging.Logger):
                    manager.loggerDict[name].setLevel(level)
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


# =========================================================================== objectives
class Objective:
    """What a training objective changes in the engine; registered by name in :mod:`clipf.objectives`
    (the engine imports none: :mod:`clipf.train` looks the objective up and hands it over).
    The defaults are the engine's own: no options of its own, the plan as resolved, a :class:`Run`."""

    name = "clip"
    oc_flags: tuple[str, ...] = ()  # open_clip_train flags the objective implies (siglip: --siglip)

    def parse(self, argv: list[str]) -> tuple[Any, list[str]]:
        """Take the objective's own options off ``argv`` (and reject options that contradict it):
        ``(its options, the rest)``. Raises :class:`~clipf.engine.UsageError`."""
        return None, list(argv)

    def plan(self, plan: Plan, options: Any) -> Plan:
        """The plan the objective trains, from the resolved one, before it is checked
        (``plan.replace(...)``). Raises :class:`~clipf.engine.UsageError`."""
        return plan

    def make_run(self, plan: Plan) -> Run:
        """The :class:`Run` of a checked plan."""
        return Run(plan)


def _shifted_schedule(scheduler: Callable[[int], Any], shift: int, step: int) -> Any:
    """open_clip_train's LR schedule at ``step + shift`` (a resumed epoch's loop counts from 0)."""
    return scheduler(step + shift)
