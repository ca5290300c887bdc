"""UTA's model: the frozen :class:`Teacher` (where it comes from, how it loads), the student CLIP
(:func:`student_config`, :func:`build_student`), :class:`UTAModel` (student + head, aligned to the
teacher) and :class:`UTALoss` (token + global cosine losses), :func:`validation_loss`.

The student is an open_clip CLIP built from the *teacher's* config with the student's ``vision_cfg`` (so
``embed_dim``, ``quick_gelu`` and the text tower are the teacher's): its vision tower is trained from
scratch, its text tower and logit scale are the teacher's, frozen. The teacher is held outside the module
tree — not in checkpoints, the optimizer or DDP — frozen, in eval mode, run under ``torch.no_grad``.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clipf import export as E
from clipf import models
from clipf.engine import UsageError
from clipf.objectives.uta.masks import (
    ALIASES,
    DEFAULT_MASKER,
    DEFAULT_RATIO,
    check_ratio,
    get_masker,
    kept_count,
)

HEADS = ("linear", "mlp")


# =========================================================================== the teacher
@dataclass
class Teacher:
    """Where the frozen teacher comes from, how open_clip creates it, and (once loaded) the model."""

    spec: str  # what --teacher said
    name: str  # open_clip model name (may be local-dir: / hf-hub:)
    pretrained: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)  # create_model overrides of a clipf checkpoint
    pos_extend: str = E.DEFAULT_POS_EXTEND
    source: str = ""  # the resolved folder / file / tag, for logs and clipf.json
    model: nn.Module | None = None
    model_cfg: dict[str, Any] = field(default_factory=dict)
    preprocess_cfg: dict[str, Any] = field(default_factory=dict)

    @property
    def context_length(self) -> int:
        """The teacher's text context (its text tower's; 77 when its config does not say)."""
        return int(self.model_cfg.get("text_cfg", {}).get("context_length", 77))

    @property
    def tokenizer_name(self) -> str:
        """The open_clip model name whose tokenizer encodes text for the teacher's text tower."""
        return self.name

    def describe(self) -> dict[str, Any]:
        """Where the teacher came from, for clipf.json and the export."""
        return {"spec": self.spec, "model": self.name, "pretrained": self.pretrained, "source": self.source}

    def load(self) -> nn.Module:
        """Create the teacher on the CPU in fp32, frozen and in eval mode (a clear error if it fails)."""
        import open_clip

        models.register()
        try:
            with E.text_pos_resize(self.pos_extend):
                net = open_clip.create_model(
                    self.name,
                    pretrained=self.pretrained,
                    force_patch_dropout=0.0,
                    output_dict=True,
                    **self.kwargs,
                )
        except Exception as exc:  # noqa: BLE001 - open_clip raises many kinds
            raise UsageError(f"--teacher {self.spec}: cannot load it ({type(exc).__name__}: {exc})") from None
        if self.pretrained is None and not _has_weights(self.name):
            raise UsageError(f"--teacher {self.spec}: no weights found (open_clip would start it at random)")
        net.eval().requires_grad_(False)
        visual = getattr(net, "visual", None)
        from open_clip.transformer import VisionTransformer

        if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
            kind = type(visual).__name__ if visual is not None else "no vision tower"
            raise UsageError(
                f"--teacher {self.spec}: UTA aligns ViT patch tokens; its vision tower is {kind}"
                + (" with attentional pooling" if isinstance(visual, VisionTransformer) else "")
            )
        self.model = net
        pp = dict(open_clip.get_model_preprocess_cfg(net))
        self.preprocess_cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in pp.items()}
        if not self.model_cfg:
            self.model_cfg = teacher_model_config(self.name, self.kwargs)
        return net


def _has_weights(name: str) -> bool:
    from open_clip.factory import _find_checkpoint_in_dir, parse_model_name

    schema, ident = parse_model_name(name)
    if schema == "local-dir":
        return _find_checkpoint_in_dir(Path(ident)) is not None
    return True


def teacher_model_config(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The open_clip config of model ``name`` as created with ``kwargs`` (create_model overrides), no
    patch dropout (empty when open_clip does not know the name)."""
    import open_clip

    cfg = copy.deepcopy(open_clip.get_model_config(name) or {})
    if not cfg:
        return cfg
    if kwargs.get("force_context_length"):
        cfg["text_cfg"]["context_length"] = int(kwargs["force_context_length"])
    if kwargs.get("force_image_size"):
        cfg["vision_cfg"]["image_size"] = kwargs["force_image_size"]
    if kwargs.get("force_quick_gelu"):
        cfg["quick_gelu"] = True
    if kwargs.get("force_custom_text"):
        cfg["custom_text"] = True
    cfg["vision_cfg"]["patch_dropout"] = 0.0
    return cfg


def _is_export(folder: Path) -> bool:
    return (folder / E.CONFIG_NAME).is_file()


def _last_checkpoint(phase: Path) -> Path | None:
    ckpts = sorted(phase.glob("checkpoints/epoch_*.pt"), key=lambda p: int(p.stem.split("_")[-1]))
    return ckpts[-1] if ckpts else None


def _from_checkpoint(spec: str, path: Path) -> Teacher:
    cfg = E.run_config(path)
    if not cfg.get("model"):
        raise UsageError(
            f"--teacher {spec}: no clipf.json beside its run names the architecture; give "
            f"--teacher MODEL --teacher-pretrained {path}"
        )
    if cfg.get("objective") == "uta":
        raise UsageError(
            f"--teacher {spec}: a UTA run's checkpoint; use its export (RUN/export) as the teacher"
        )
    full = int(cfg.get("full_context_length") or E.FULL_CONTEXT)
    kwargs = {
        "force_context_length": full,
        "force_image_size": cfg.get("image_size"),
        "force_quick_gelu": bool(cfg.get("quick_gelu")),
        "force_custom_text": bool(cfg.get("custom_text")),
        "force_preprocess_cfg": cfg.get("preprocess") or None,
    }
    kwargs = {k: v for k, v in kwargs.items() if v not in (None, False)}
    model_cfg = E.model_config(
        cfg["model"],
        full,
        image_size=cfg.get("image_size"),
        quick_gelu=bool(cfg.get("quick_gelu")),
        custom_text=bool(cfg.get("custom_text")),
    )
    return Teacher(
        spec,
        cfg["model"],
        str(path),
        kwargs,
        cfg.get("pos_extend") or E.DEFAULT_POS_EXTEND,
        source=str(path.resolve()),
        model_cfg=model_cfg,
    )


def resolve_teacher(spec: str, pretrained: str | None = None) -> Teacher:
    """What ``--teacher SPEC [--teacher-pretrained P]`` names (nothing is loaded; see :meth:`Teacher.load`)."""
    import open_clip
    from open_clip.factory import parse_model_name

    models.register()
    spec = str(spec)
    try:
        schema, ident = parse_model_name(spec)
    except ValueError as exc:
        raise UsageError(f"--teacher {spec}: {exc}") from None
    if schema == "local-dir":
        folder = Path(ident)
        if not _is_export(folder):
            raise UsageError(
                f"--teacher {spec}: no {E.CONFIG_NAME} in {folder} (not an open_clip local-dir: model)"
            )
        spec_local = f"local-dir:{folder}"
        if pretrained:
            raise UsageError(
                "--teacher-pretrained goes with an open_clip model name; a local-dir: model has its weights"
            )
        return Teacher(spec, spec_local, source=str(folder.resolve()))
    if schema == "hf-hub":
        if pretrained:
            raise UsageError(
                "--teacher-pretrained goes with an open_clip model name; hf-hub: models have their weights"
            )
        return Teacher(spec, spec, source=spec)
    path = Path(spec)
    if path.is_dir():
        if pretrained:
            raise UsageError(
                f"--teacher {spec} is a folder: --teacher-pretrained goes with an open_clip model name"
            )
        candidates = [path, path / "export", path / "finetune" / "export", path / "pretrain" / "export"]
        for folder in candidates:
            if _is_export(folder):
                return Teacher(spec, f"local-dir:{folder}", source=str(folder.resolve()))
        for phase in (path, path / "finetune", path / "pretrain"):
            ckpt = _last_checkpoint(phase)
            if ckpt is not None:
                return _from_checkpoint(spec, ckpt)
        raise UsageError(
            f"--teacher {spec}: a folder, but neither an export ({E.CONFIG_NAME}), a clipf run phase (export/ "
            "or checkpoints/epoch_N.pt) nor a clipf run (finetune/ or pretrain/ with either)"
        )
    if path.is_file():
        if pretrained:
            raise UsageError(f"--teacher {spec} is a file: give --teacher MODEL --teacher-pretrained {spec}")
        return _from_checkpoint(spec, path)
    if open_clip.get_model_config(spec) is None:
        if "/" in spec or spec.endswith((".pt", ".pth", ".bin", ".safetensors")):
            raise UsageError(f"--teacher {spec}: no such file or folder")
        close = difflib.get_close_matches(spec, open_clip.list_models(), n=5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(
            f"--teacher {spec!r}: not a local-dir: export, a clipf run or checkpoint, nor an open_clip model name{hint}"
        )
    if not pretrained:
        raise UsageError(
            f"--teacher {spec} needs --teacher-pretrained TAG|PATH (a randomly initialised teacher teaches nothing)"
        )
    if not os.path.isfile(pretrained) and not open_clip.get_pretrained_cfg(spec, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(spec)
        raise UsageError(
            f"--teacher-pretrained {pretrained}: no such file, nor a pretrained tag of {spec} (tags: {tags})"
        )
    return Teacher(spec, spec, pretrained, source=pretrained)


# =========================================================================== the student
def image_grid(image_size: Any, patch_size: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((height, width), (grid_h, grid_w))`` of a ViT config's image and patch size (int or pair)."""
    size = tuple(image_size) if isinstance(image_size, list | tuple) else (image_size, image_size)
    patch = tuple(patch_size) if isinstance(patch_size, list | tuple) else (patch_size, patch_size)
    return (int(size[0]), int(size[-1])), (int(size[0]) // int(patch[0]), int(size[-1]) // int(patch[-1]))


def student_config(model: str, teacher_cfg: Mapping[str, Any], image_size: Any = None) -> dict[str, Any]:
    """The student's open_clip config: the teacher's (embed_dim, text tower, quick_gelu, ...) with the
    ``vision_cfg`` of architecture ``model`` (no patch dropout; ``image_size`` overrides)."""
    import open_clip

    models.register()
    cfg = open_clip.get_model_config(model)
    if cfg is None:
        raise UsageError(f"--model {model!r}: not an open_clip or clipf architecture")
    vision = copy.deepcopy(cfg["vision_cfg"])
    if vision.get("timm_model_name") or isinstance(vision.get("layers"), list | tuple):
        raise UsageError(f"--model {model}: UTA trains an open_clip ViT student; its vision tower is not one")
    if vision.get("attentional_pool") or vision.get("pool_type", "tok") not in ("tok", "avg"):
        raise UsageError(f"--model {model}: UTA needs a ViT with class-token or average pooling")
    vision["patch_dropout"] = 0.0
    if image_size is not None:
        vision["image_size"] = image_size
    out = copy.deepcopy(dict(teacher_cfg))
    out["vision_cfg"] = vision
    return out


class KeepPatches(nn.Module):
    """In place of a ViT's ``patch_dropout``: keeps the class token and the patches at ``self.keep``
    (``[N, n_keep]`` grid indices) — open_clip's PatchDropout gather, with the indices chosen outside."""

    def __init__(self) -> None:
        super().__init__()
        self.keep: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keep is None:
            return x
        cls, patches = x[:, :1], x[:, 1:]
        idx = self.keep.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
        return torch.cat([cls, patches.gather(1, idx)], dim=1)


def make_head(kind: str, width: int, target: int) -> nn.Module:
    """Student token width -> teacher token width: ``linear`` or ``mlp`` (Linear-GELU-Linear)."""
    if kind == "linear":
        return nn.Linear(width, target)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(width, target), nn.GELU(), nn.Linear(target, target))
    raise ValueError(f"unknown UTA head {kind!r} (known: {', '.join(HEADS)})")


@contextlib.contextmanager
def _tokens_out(visual: nn.Module):
    """Within the block an open_clip ViT returns (pooled, tokens), as ``output_tokens=True`` makes it."""
    before = visual.output_tokens
    visual.output_tokens = True
    try:
        yield
    finally:
        visual.output_tokens = before


class UTAModel(nn.Module):
    """A CLIP ``student`` (trainable ViT + the teacher's frozen text tower) trained by aligning its tokens
    of the kept patches to a frozen ``teacher``'s.

    Training mode, ``forward(image, text)`` (``text`` unused): draws the kept patches (:attr:`masker`,
    :attr:`ratio`, a generator seeded by (seed, rank, epoch)) and returns what :class:`UTALoss` takes.
    Eval mode: the student's CLIP outputs (``image_features``, ``text_features``, ``logit_scale``), so
    open_clip_train's zero-shot and val evaluation run on it unchanged. The teacher is not a submodule:
    it is in no ``state_dict``, optimizer or DDP bucket.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        *,
        masker: str = DEFAULT_MASKER,
        ratio: float = DEFAULT_RATIO,
        head: str = "linear",
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        super().__init__()
        self.student = student
        visual = student.visual
        visual.patch_dropout = KeepPatches()
        self.head = make_head(head, visual.transformer.width, teacher.visual.transformer.width)
        object.__setattr__(self, "teacher", teacher)  # not registered: frozen, never saved
        teacher.eval().requires_grad_(False)
        self.masker_name = ALIASES.get(masker, masker)
        self.masker = get_masker(masker)
        self.ratio = check_ratio(ratio)
        self.grid = tuple(int(g) for g in visual.grid_size)
        self.n_keep = kept_count(self.grid[0] * self.grid[1], self.ratio)
        self.seed, self.rank = int(seed), int(rank)
        self.set_epoch(0)

    # ---- what open_clip_train and clipf.train read from a CLIP model
    @property
    def visual(self) -> nn.Module:
        return self.student.visual

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.student.logit_scale

    @property
    def context_length(self) -> int:
        return E.text_context(self.student)

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.student.encode_image(image, normalize=normalize)

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.student.encode_text(text, normalize=normalize)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.student.set_grad_checkpointing(enable)

    def train(self, mode: bool = True) -> UTAModel:
        super().train(mode)
        self.teacher.eval()
        return self

    # ---- UTA
    def set_epoch(self, epoch: int) -> None:
        """Masks of epoch ``epoch`` come from ``default_rng([seed, rank, epoch])`` (a resumed run draws the
        masks an uninterrupted one would)."""
        self.rng = np.random.default_rng([self.seed, self.rank, int(epoch)])

    def sample_keep(self, n: int, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Kept patch indices ``[n, n_keep]`` for ``n`` images (the epoch's rng, or ``rng``)."""
        return self.masker(n, self.grid[0], self.grid[1], self.ratio, self.rng if rng is None else rng)

    @torch.no_grad()
    def teach(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's final patch tokens ``[N, P, W_t]`` and image embedding ``[N, E]`` (float32)."""
        t = self.teacher
        p = next(t.parameters())
        if p.device != image.device:
            t.to(image.device)
        with _tokens_out(t.visual):
            pooled, tokens = t.visual(image.to(p.dtype))
        return tokens.float(), pooled.float()

    def align(self, image: torch.Tensor, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """Student on the kept patches ``keep`` ([N, n_keep]), teacher on the whole image: the loss inputs."""
        t_tokens, t_image = self.teach(image)
        visual = self.student.visual
        visual.patch_dropout.keep = keep
        try:
            with _tokens_out(visual):
                s_image, s_tokens = visual(image)
        finally:
            visual.patch_dropout.keep = None
        head_dtype = next(self.head.parameters()).dtype
        idx = keep.unsqueeze(-1).expand(-1, -1, t_tokens.shape[-1])
        return {
            "student_tokens": self.head(s_tokens.to(head_dtype)),
            "teacher_tokens": t_tokens.gather(1, idx),
            "image_features": s_image,
            "teacher_features": t_image,
            "logit_scale": self.student.logit_scale.exp(),
        }

    def forward(self, image: torch.Tensor | None = None, text: torch.Tensor | None = None) -> dict:
        if self.training and image is not None:
            keep = self.sample_keep(image.shape[0]).to(image.device, non_blocking=True)
            return self.align(image, keep)
        return self.student(image, text)


class UTALoss(nn.Module):
    """``token_loss = w_tok * mean(1 - cos(student token, teacher token))`` over kept patches,
    ``global_loss = w_glob * mean(1 - cos(student image embedding, teacher image embedding))``; keeps
    the per-term sums of the epoch (:meth:`reset`)."""

    def __init__(self, token_weight: float = 1.0, global_weight: float = 1.0) -> None:
        super().__init__()
        self.token_weight, self.global_weight = float(token_weight), float(global_weight)
        self.reset()

    def reset(self) -> None:
        """Zero the per-term sums and the step count (before each epoch)."""
        self.sums: dict[str, torch.Tensor | float] = {"token_loss": 0.0, "global_loss": 0.0}
        self.steps = 0

    def terms(
        self, student_tokens, teacher_tokens, image_features, teacher_features
    ) -> dict[str, torch.Tensor]:
        """The two weighted terms, ``token_loss`` and ``global_loss`` (nothing is summed)."""
        tok = 1.0 - F.cosine_similarity(student_tokens.float(), teacher_tokens.float(), dim=-1).mean()
        glob = 1.0 - F.cosine_similarity(image_features.float(), teacher_features.float(), dim=-1).mean()
        return {"token_loss": self.token_weight * tok, "global_loss": self.global_weight * glob}

    def forward(
        self,
        student_tokens: torch.Tensor,
        teacher_tokens: torch.Tensor,
        image_features: torch.Tensor,
        teacher_features: torch.Tensor,
        output_dict: bool = False,
        **_: Any,
    ) -> dict[str, torch.Tensor] | torch.Tensor:
        losses = self.terms(student_tokens, teacher_tokens, image_features, teacher_features)
        for k, v in losses.items():
            self.sums[k] = self.sums[k] + v.detach()
        self.steps += 1
        return losses if output_dict else sum(losses.values())


@torch.no_grad()
def validation_loss(
    model: UTAModel,
    loader: Any,
    loss: UTALoss,
    device: Any,
    input_dtype: Any = None,
    autocast: Any = None,
    seed: int = 0,
) -> dict[str, float]:
    """The UTA loss on a loader's images with fixed masks (``default_rng([seed, 2**31 - 1])``), so epochs
    compare: ``uta_loss``, ``uta_token_loss``, ``uta_global_loss`` (sample-weighted means)."""
    rng = np.random.default_rng([seed, 2**31 - 1])
    autocast = autocast or contextlib.nullcontext
    totals = {"token_loss": 0.0, "global_loss": 0.0}
    n = 0
    was_training = model.training
    model.eval()
    try:
        for images, *_ in loader:
            images = images.to(device=device, dtype=input_dtype, non_blocking=True)
            keep = model.sample_keep(images.shape[0], rng).to(images.device)
            with autocast():
                out = model.align(images, keep)
                terms = loss.terms(
                    out["student_tokens"],
                    out["teacher_tokens"],
                    out["image_features"],
                    out["teacher_features"],
                )
            for k, v in terms.items():
                totals[k] += float(v) * images.shape[0]
            n += images.shape[0]
    finally:
        model.train(was_training)
    if not n:
        return {}
    out = {f"uta_{k}": v / n for k, v in totals.items()}
    out["uta_loss"] = out["uta_token_loss"] + out["uta_global_loss"]
    return out


def build_student(
    model_cfg: Mapping[str, Any], teacher: Teacher, create: Callable[..., Any] | None = None, **kwargs: Any
) -> tuple[nn.Module, Any, Any]:
    """The student CLIP (``model_cfg``, :func:`student_config`; vision tower at random, the loaded
    ``teacher``'s text tower and logit scale loaded and frozen) and its transforms, through open_clip's
    ``create_model_and_transforms`` or ``create`` (``kwargs``: its options, e.g. precision, device)."""
    import open_clip

    create = create or open_clip.create_model_and_transforms
    kwargs.update(
        load_weights=False, force_patch_dropout=0.0, force_context_length=None, force_image_size=None
    )
    with tempfile.TemporaryDirectory(prefix="clipf-uta-") as tmp:
        cfg = {"model_cfg": dict(model_cfg), "preprocess_cfg": teacher.preprocess_cfg}
        (Path(tmp) / E.CONFIG_NAME).write_text(json.dumps(cfg))
        with quiet_logger("open_clip.factory"):
            student, pp_train, pp_val = create(f"local-dir:{tmp}", None, **kwargs)
    frozen = {k: v for k, v in teacher.model.state_dict().items() if not k.startswith("visual.")}
    result = student.load_state_dict(frozen, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("visual.")]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"the teacher's text tower does not fit the student: missing {missing[:3]}, unexpected "
            f"{result.unexpected_keys[:3]}"
        )
    for name, p in student.named_parameters():
        p.requires_grad = name.startswith("visual.")
    return student, pp_train, pp_val


@contextlib.contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Within the block, logger ``name`` reports errors only."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
