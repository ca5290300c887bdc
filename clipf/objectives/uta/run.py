"""UTA as an objective of the training engine: its options and plan (:class:`UTAPlan`), the
:class:`UTARun` that swaps in the student, the loss, the teacher's tokenizer and the export, and
:data:`UTA`, what :mod:`clipf.objectives` registers as ``uta``.

The plan is made in two hooks the engine calls before it checks the plan (:func:`clipf.engine.make_plan`):
:meth:`UTAObjective.parse` takes the UTA options off the command line and rejects the ones that
contradict UTA; :meth:`UTAObjective.plan` loads the teacher, checks that student and teacher see the same
patch grid and returns the plan with the teacher's text context and the :class:`UTAPlan` attached.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipf import engine, upstream
from clipf import export as E
from clipf.engine import UsageError
from clipf.files import write_json
from clipf.objectives.uta.masks import (
    ALIASES,
    DEFAULT_MASKER,
    DEFAULT_RATIO,
    PATCH_MASKERS,
    check_ratio,
    get_masker,
    kept_count,
)
from clipf.objectives.uta.model import (
    HEADS,
    Teacher,
    UTALoss,
    UTAModel,
    build_student,
    image_grid,
    resolve_teacher,
    student_config,
    validation_loss,
)

TEACHER_PRECISIONS = ("auto", "bf16", "fp16", "fp32")
OC_MAIN = "open_clip_train.main"


def uta_parser() -> argparse.ArgumentParser:
    """UTA's own options (``--objective uta`` itself is the engine's)."""
    p = argparse.ArgumentParser(prog="clipf train --objective uta", add_help=False, allow_abbrev=False)
    g = p.add_argument_group("UTA: unmasked token alignment to a frozen CLIP teacher (clipf.objectives.uta)")
    g.add_argument(
        "--teacher", default=None, metavar="SPEC", help="local-dir: export, clipf run / checkpoint, model"
    )
    g.add_argument(
        "--teacher-pretrained", default=None, metavar="TAG|PATH", help="weights of an open_clip model name"
    )
    g.add_argument("--teacher-precision", choices=TEACHER_PRECISIONS, default="auto")
    g.add_argument(
        "--uta-mask-ratio", type=float, default=DEFAULT_RATIO, metavar="F", help="share of patches hidden"
    )
    g.add_argument("--uta-masker", default=DEFAULT_MASKER, metavar="NAME", help=" | ".join(PATCH_MASKERS))
    g.add_argument("--uta-head", choices=HEADS, default="linear")
    g.add_argument("--uta-token-weight", type=float, default=1.0, metavar="W")
    g.add_argument("--uta-global-weight", type=float, default=1.0, metavar="W")
    return p


# clipf / open_clip_train options that contradict UTA, and why
_REJECTED = {
    ("--reduction-mask", "--text-tokens", "--force-text-dropout", "--mask-schedule", "--mask-probability-file",
     "--freq-table", "--freq-threshold", "--mask-option"): "UTA trains on images only: text-masking options do not apply",
    ("--finetune",): "--finetune is the contrastive fine-tune: run it on the UTA export without --objective uta",
    ("--siglip",): "--siglip selects a contrastive loss; UTA has its own",
    ("--force-patch-dropout",): "UTA masks patches itself: use --uta-mask-ratio",
    ("--pretrained",): "the UTA student starts from scratch (continue a UTA run with --resume)",
    ("--distill-model", "--distill-pretrained"): "UTA is a distillation already (--teacher)",
    ("--lock-image", "--lock-text"): "UTA trains the vision tower and freezes the text tower itself",
    ("--force-quick-gelu", "--force-custom-text"): "the teacher's config decides the activation and text tower",
    ("--force-context-length", "--full-context-length"): "the text tower is the teacher's, at its context length",
    ("--coca-caption-loss-weight", "--coca-contrastive-loss-weight"): "UTA has its own loss",
}  # fmt: skip


@dataclass(frozen=True)
class UTAPlan:
    """What UTA adds to a run's :class:`clipf.engine.Plan` (its ``objective_plan``): the teacher (loaded),
    the patch masking, the head and loss weights, the student's config and patch grid."""

    teacher: Teacher
    ratio: float
    masker: str
    head: str
    token_weight: float
    global_weight: float
    teacher_precision: str
    model_cfg: dict[str, Any]
    image_size: tuple[int, int]
    grid: tuple[int, int]

    @property
    def n_keep(self) -> int:
        """Patches the student sees per image."""
        return kept_count(self.grid[0] * self.grid[1], self.ratio)

    def to_json(self) -> dict[str, Any]:
        """The ``uta`` block of ``RUN/clipf.json`` (what :func:`export` reads back)."""
        return {
            "teacher": self.teacher.describe(),
            "teacher_precision": self.teacher_precision,
            "mask_ratio": self.ratio,
            "masker": self.masker,
            "grid": list(self.grid),
            "kept_patches": self.n_keep,
            "head": self.head,
            "token_weight": self.token_weight,
            "global_weight": self.global_weight,
            "model_cfg": self.model_cfg,
            "preprocess_cfg": self.teacher.preprocess_cfg,
        }


class UTAObjective(engine.Objective):
    """``--objective uta``: the engine's hooks for UTA."""

    name = "uta"

    def parse(self, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
        """The UTA options off the command line (checked); options that contradict UTA are refused."""
        try:
            ns, rest = uta_parser().parse_known_args([a for a in argv if a != "--"])
        except SystemExit as exc:
            raise UsageError(f"bad UTA option (exit {exc.code})") from None
        if ns.teacher is None:
            raise UsageError(
                "--objective uta needs --teacher (a local-dir: export, a clipf run or checkpoint, or MODEL)"
            )
        try:
            check_ratio(ns.uta_mask_ratio)
            get_masker(ns.uta_masker)
        except ValueError as exc:
            raise UsageError(f"--uta-mask-ratio / --uta-masker: {exc}") from None
        for name, w in (
            ("--uta-token-weight", ns.uta_token_weight),
            ("--uta-global-weight", ns.uta_global_weight),
        ):
            if not (w >= 0 and math.isfinite(w)):
                raise UsageError(f"{name} must be a finite number >= 0, got {w}")
        if ns.uta_token_weight == 0 and ns.uta_global_weight == 0:
            raise UsageError("--uta-token-weight and --uta-global-weight are both 0: nothing to learn")
        for flags, why in _REJECTED.items():
            given = [f for f in flags if engine.given(rest, f)]
            if given:
                raise UsageError(f"{given[0]} with --objective uta: {why}")
        return ns, rest

    def plan(self, plan: engine.Plan, options: argparse.Namespace) -> engine.Plan:
        """Load the teacher, match the student's patch grid to it; the plan with the teacher's text
        context, a note, and the :class:`UTAPlan` (``plan.objective_plan``)."""
        ns = options
        if plan.oc.accum_freq > 1:
            raise UsageError(
                "--accum-freq with --objective uta: the UTA loss is per sample; use a smaller --batch-size"
            )
        ratio, masker = check_ratio(ns.uta_mask_ratio), ALIASES.get(ns.uta_masker, ns.uta_masker)
        teacher = resolve_teacher(ns.teacher, ns.teacher_pretrained)
        net = teacher.load()
        cfg = student_config(plan.model, teacher.model_cfg, engine.image_size(plan.oc))
        size, grid = image_grid(cfg["vision_cfg"]["image_size"], cfg["vision_cfg"]["patch_size"])
        t_size = tuple(int(s) for s in net.visual.image_size)
        t_grid = tuple(int(g) for g in net.visual.grid_size)
        if (size, grid) != (t_size, t_grid):
            raise UsageError(
                f"--teacher {ns.teacher} sees {t_size[0]}x{t_size[1]} px images as a {t_grid[0]}x{t_grid[1]} patch "
                f"grid; the student (--model {plan.model}) sees {size[0]}x{size[1]} px as {grid[0]}x{grid[1]}: UTA "
                "aligns student token i with teacher token i, so image size and patch grid must match (pick a "
                "student with the teacher's patch size, or --force-image-size)"
            )
        uta = UTAPlan(
            teacher=teacher,
            ratio=ratio,
            masker=masker,
            head=ns.uta_head,
            token_weight=ns.uta_token_weight,
            global_weight=ns.uta_global_weight,
            teacher_precision=ns.teacher_precision,
            model_cfg=cfg,
            image_size=size,
            grid=grid,
        )
        note = (
            f"UTA: teacher {teacher.source or teacher.name}; student {plan.model} sees {uta.n_keep} of "
            f"{grid[0] * grid[1]} patches ({masker}, ratio {ratio}); text tower and logit scale are the teacher's"
        )
        return plan.replace(
            objective="uta",
            full_context=teacher.context_length,
            notes=[*plan.notes, note],
            objective_plan=uta,
        )

    def make_run(self, plan: engine.Plan) -> UTARun:
        """A :class:`UTARun`."""
        return UTARun(plan)


# =========================================================================== the run
def teacher_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The teacher's dtype for ``--teacher-precision`` on ``device`` (auto: bf16 on GPU, fp32 on CPU)."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


class UTARun(engine.Run):
    """:class:`clipf.engine.Run` with the UTA model, loss, teacher tokenizer, records and export."""

    def __init__(self, plan: engine.Plan):
        super().__init__(plan)
        self.uta: UTAPlan = plan.objective_plan
        self.uta_loss = UTALoss(self.uta.token_weight, self.uta.global_weight)

    def get_tokenizer(self, model_name: str, cache_dir: str | None = None, **_: Any) -> Callable:
        """Val / zero-shot text goes to the teacher's text tower: the teacher's tokenizer and context."""
        return upstream.original(f"{OC_MAIN}.get_tokenizer")(
            self.uta.teacher.tokenizer_name, cache_dir=cache_dir, context_length=self.plan.full_context
        )

    def create_model_and_transforms(self, model_name: str, pretrained: Any = None, **kw: Any) -> Any:
        """The :class:`UTAModel`: the student (open_clip's factory, the teacher's text tower) + the teacher."""
        device = torch.device(kw.get("device") or "cpu")
        create = upstream.original(f"{OC_MAIN}.create_model_and_transforms")
        student, pp_train, pp_val = build_student(self.uta.model_cfg, self.uta.teacher, create, **kw)
        teacher = self.uta.teacher.model
        teacher.to(device=device, dtype=teacher_dtype(self.uta.teacher_precision, device))
        model = UTAModel(
            student,
            teacher,
            masker=self.uta.masker,
            ratio=self.uta.ratio,
            head=self.uta.head,
            seed=self.plan.oc.seed,
            rank=engine.env_rank(),
        )
        precision = kw.get("precision") or "fp32"
        dtype = {"pure_bf16": torch.bfloat16, "pure_fp16": torch.float16}.get(precision)
        model.head.to(device=device, dtype=dtype)
        return model, pp_train, pp_val

    def create_loss(self, args: argparse.Namespace) -> Any:
        """:class:`UTALoss`, metered."""
        self.loss = engine.LossMeter(self.uta_loss)
        return self.loss

    def objective_state(self) -> Any:
        """The student's patch-mask generator (a step checkpoint resumes its draws), as JSON text."""
        model, _, _ = self.train_state
        return json.dumps(engine.unwrap(model).rng.bit_generator.state)

    def restore_objective_state(self, state: Any) -> None:
        if state is not None:
            model, _, _ = self.train_state
            engine.unwrap(model).rng.bit_generator.state = json.loads(state)

    def train_one_epoch(self, model: Any, data: dict, loss: Any, epoch: int, *rest: Any, **kw: Any):
        """The engine's epoch, with the epoch's patch masks and the loss terms reset."""
        engine.unwrap(model).set_epoch(epoch)
        self.uta_loss.reset()
        return super().train_one_epoch(model, data, loss, epoch, *rest, **kw)

    def evaluate(self, model: Any, data: dict, epoch: int, args: argparse.Namespace, *rest: Any, **kw: Any):
        """The engine's evaluation, plus the UTA loss on the val images (fixed masks)."""
        metrics = super().evaluate(model, data, epoch, args, *rest, **kw)
        every = args.val_frequency
        if (
            args.rank != 0
            or "val" not in data
            or not (every and (epoch % every == 0 or epoch == args.epochs))
        ):
            return metrics
        from open_clip import get_input_dtype
        from open_clip_train.precision import get_autocast

        device = torch.device(args.device)
        vals = validation_loss(
            engine.unwrap(model),
            data["val"].dataloader,
            self.uta_loss,
            device,
            get_input_dtype(args.precision),
            get_autocast(args.precision, device_type=device.type),
            seed=args.seed,
        )
        if not vals:
            return metrics
        logging.info(f"clipf: UTA val epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in vals.items()))
        writer = kw.get("tb_writer") or (rest[0] if rest else None)
        if writer is not None and args.save_logs:
            for k, v in vals.items():
                writer.add_scalar(f"val/{k}", v, epoch)
        metrics = {**(metrics or {}), **vals}
        if self.records is not None and self.log_dir is not None:
            for rec in self.records:
                if rec["epoch"] == epoch:
                    rec.update({f"val/{k}": v for k, v in vals.items()})
            write_json(self.log_dir / "metrics.json", self.records)
        return metrics

    def write_config(self, epoch: int) -> None:
        """The engine's clipf.json, with the ``uta`` block."""
        super().write_config(epoch)
        path = self.log_dir / "clipf.json"
        cfg = json.loads(path.read_text())
        cfg.update(objective="uta", image_mask=self.uta.ratio, uta=self.uta.to_json())
        write_json(path, cfg)

    def epoch_record(self, model: Any, epoch: int, optimizer: Any, seconds: float) -> None:
        """The engine's record, with the two loss terms and the student's image tokens."""
        sums = self.uta_loss.sums
        tok, glob, steps = self.reduce(
            [float(sums["token_loss"]), float(sums["global_loss"]), float(self.uta_loss.steps)]
        )
        super().epoch_record(model, epoch, optimizer, seconds)
        if not self.master or not self.records:
            return
        rec = self.records[-1]
        prev = self.records[-2] if len(self.records) > 1 else {}
        per_image = self.uta.n_keep + 1
        rec.update(
            objective="uta",
            image_mask=self.uta.ratio,
            image_tokens=per_image,
            image_tokens_seen=int(prev.get("image_tokens_seen", 0)) + rec["samples"] * per_image,
            token_loss=tok / steps if steps else None,
            global_loss=glob / steps if steps else None,
        )
        if self.log_dir is not None:
            write_json(self.log_dir / "metrics.json", self.records)

    def export(self, checkpoint: str, out: Path) -> None:
        """The UTA export (:func:`export`) in place of the engine's CLIP one."""
        export(checkpoint, out)
        logging.info(f"clipf: exported the UTA student {checkpoint} -> {out} (open_clip local-dir:)")


# =========================================================================== export
def export(checkpoint: str | os.PathLike, out: str | os.PathLike, *, verify: bool = True) -> Path:
    """Write ``out/`` — an open_clip ``local-dir:`` model: the UTA student's vision tower, the teacher's
    text tower and logit scale — from a UTA checkpoint (its run's ``clipf.json`` has the config)."""
    import open_clip
    from safetensors.torch import save_file

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    run = E.run_config(checkpoint)
    if run.get("objective") != "uta" or "uta" not in run:
        raise ValueError(f"{checkpoint}: not a UTA run's checkpoint (its clipf.json has no 'uta' block)")
    sd = engine.read_state_dict(str(checkpoint))
    state = {k[len("student.") :]: v.contiguous().clone() for k, v in sd.items() if k.startswith("student.")}
    if not state:
        raise ValueError(f"{checkpoint}: no student.* weights")
    uta = run["uta"]
    config = {
        "model_cfg": uta["model_cfg"],
        "preprocess_cfg": uta["preprocess_cfg"],
        "clipf": {
            "objective": "uta",
            "checkpoint": str(checkpoint.resolve()),
            "student_model": run.get("model"),
            "teacher": uta["teacher"],
            "mask_ratio": uta["mask_ratio"],
            "masker": uta["masker"],
            "context_length": int(uta["model_cfg"]["text_cfg"].get("context_length", 77)),
        },
    }
    with E.atomic_dir(out) as tmp:
        save_file(state, str(tmp / E.WEIGHTS_NAME))
        (tmp / E.CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        if verify:
            back = open_clip.create_model(f"local-dir:{tmp}")  # strict load: every key fits
            if E.text_context(back) != config["clipf"]["context_length"]:
                raise RuntimeError("export check failed: text context differs")
    return Path(out)


UTA = UTAObjective()
