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
import glob
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from clipf import export as E
from clipf import upstream
from clipf.engine.adapters import (
    SKIP_DIR_ENV,
    SKIP_RANK_ENV,
    CountingLoader,
    EpochTokenizer,
    SeededShuffle,
    count_and_continue,
    has_caption_and_image,
    pipeline_stages,
    skip_total,
)
from clipf.engine.plan import Plan
from clipf.engine.preflight import image_size, preprocess_overrides
from clipf.files import write_json

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

    # ---- paths
    @property
    def log_dir(self) -> Path | None:
        """``--logs``/``--name`` (None: logging off)."""
        a = self.args
        if a is None or not a.logs or a.logs.lower() == "none":
            return None
        return Path(a.logs, a.name)

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
            "filter": has_caption_and_image,
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
        data: dict[str, Any] = {}
        if args.train_data or args.dataset_type == "synthetic":
            build = oc_data.get_dataset_fn(args.train_data, args.dataset_type)
            data["train"] = build(args, pp_train, is_train=True, epoch=epoch, tokenizer=train_tok)
            for stage in pipeline_stages(data["train"].dataloader):
                if isinstance(stage, SeededShuffle):
                    stage.seed, stage.rank, stage.epoch = args.seed, args.rank, data["train"].shared_epoch
            self.loader = CountingLoader(data["train"].dataloader)
            data["train"].dataloader = self.loader
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
        if isinstance(self.tokenizer, EpochTokenizer):
            self.tokenizer.set_epoch(epoch)
        if self.loader is not None:
            self.loader.reset()
        if self.loss is not None:
            self.loss.reset()
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
        if self.skip_dir:
            shutil.rmtree(self.skip_dir, ignore_errors=True)
        if args is not None and getattr(args, "distributed", False) and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        return rc

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """For the length of one run: the upstream patches (:func:`clipf.upstream.patched` ``"train"``),
        the progress filter on the root logger, the skip-counter environment; all put back after."""
        handlers = list(logging.root.handlers)
        progress = Progress(self)
        logging.root.addFilter(progress)
        env = {k: os.environ.get(k) for k in (SKIP_DIR_ENV, SKIP_RANK_ENV)}
        try:
            with upstream.patched("train", **self.hooks()):
                yield
        finally:
            logging.root.removeFilter(progress)
            for h in logging.root.handlers[:]:
                if h not in handlers:  # open_clip_train's setup_logging adds a pair per call
                    logging.root.removeHandler(h)
                    h.close()
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
