"""UTA — unmasked token alignment to a frozen CLIP teacher (Liu et al., TMLR 2024).

Instead of masking caption words, a ViT *student* is trained on the unmasked patches of each image only
and every token it outputs is aligned to the token at the same grid position of a frozen CLIP vision
encoder (the *teacher*), which sees the whole image. The student's pooled, projected output is aligned to
the teacher's image embedding. The student lands in the teacher's embedding space, so with the teacher's
text tower beside it it is a CLIP model, zero-shot evaluable without ever seeing a caption::

    clipf train --objective uta --teacher runs/truncate-k32-m0-s0 --model clipf-vit-tiny \\
        --train-data "data/world/train/{00000..00003}.tar" --dataset-type webdataset \\
        --batch-size 64 --epochs 3 --lr 1e-3 --logs-dir runs --name uta-m50-s0/pretrain
    torchrun --nproc_per_node=4 -m clipf.train --objective uta --teacher ViT-B-16 \\
        --teacher-pretrained laion2b_s34b_b88k --model ViT-B-16 --precision amp_bf16 ...

Everything else is ``clipf train``'s (:mod:`clipf.train`): data, ``--resume latest``, DDP / SLURM,
``--precision``, TensorBoard, ``metrics.json``, ``clipf.json``, atomic checkpoints. ``--model`` names the
*student's* architecture (its ``vision_cfg`` is used); UTA adds:

``--teacher SPEC``               a ``local-dir:`` export (or its folder), a clipf run (``RUN``: its
                                 ``finetune/export``, else ``pretrain/export``, else the last
                                 checkpoint; ``RUN/<phase>``: its ``export/`` or last checkpoint), a clipf
                                 checkpoint ``epoch_N.pt`` (the run's ``clipf.json`` names the
                                 architecture), ``hf-hub:ORG/REPO``, or an open_clip model name with
``--teacher-pretrained TAG|PATH`` its weights (open_clip's pretrained tag or a file)
``--teacher-precision P``        auto (bf16 on GPU, fp32 on CPU) | bf16 | fp16 | fp32
``--uta-mask-ratio F``           share of patches the student does not see, in (0, 1); default 0.5
``--uta-masker NAME``            random | block (BEiT block-wise) | reversed_block (default, the paper's:
                                 the student keeps what block-wise masking would drop)
``--uta-head linear|mlp``        student token -> teacher token width (default linear)
``--uta-token-weight W``, ``--uta-global-weight W``  loss weights (default 1, 1)

The objective. ``loss = w_tok * mean_i(1 - cos(head(s_i), t_i)) + w_glob * (1 - cos(s_img, t_img))`` over
the kept patch positions ``i``: ``s_i`` are the student's final tokens (after ``ln_post``) of the kept
patches, ``t_i`` the teacher's final tokens (after its ``ln_post``) at the same grid positions, ``s_img``
the student's projected pooled output and ``t_img`` the teacher's image embedding. No mask tokens: the
kept patch embeddings are gathered after the positional embedding, exactly where open_clip's
``PatchDropout`` gathers (:class:`KeepPatches` takes its place in the student), so a step costs the
student ``(1 - ratio)`` of its tokens plus one no-grad teacher forward. open_clip_train logs both terms
(``Token_loss``, ``Global_loss``; TensorBoard ``train/token_loss``, ``train/global_loss``); ``metrics.json``
gets their epoch means and, with ``--val-data``, the UTA loss on the validation images (fixed masks) as
``val/uta_loss`` beside open_clip_train's own val metrics (student image x teacher text).

The model. The student is an open_clip CLIP built from the *teacher's* config with the student's
``vision_cfg`` (so ``embed_dim``, ``quick_gelu`` and the text tower are the teacher's): its vision tower
is trained from scratch, its text tower and logit scale are the teacher's, frozen. Images are
preprocessed with the teacher's mean / std / interpolation; the student's image size and patch grid must
equal the teacher's (token i of one is token i of the other; no interpolation: an error names both
grids). The teacher itself is held outside the module tree — not in checkpoints, the optimizer or DDP —
frozen, in eval mode, run under ``torch.no_grad`` (bf16 on GPU by default); ``--resume`` loads it again
from ``--teacher``.

Export. ``RUN/export/`` (end of training; ``clipf uta export CKPT`` for any checkpoint) is an
open_clip ``local-dir:`` model — the student's vision tower, the teacher's text tower and logit scale —
that stock open_clip / CLIP_benchmark / ``clipf eval`` load with no contrastive step. A short contrastive
fine-tune starts from it like any open_clip model::

    clipf train --model local-dir:RUN/export --pretrained RUN/export/open_clip_model.safetensors --finetune ...

Masking strategies are small functions in :data:`PATCH_MASKERS` (``fn(n_batch, grid_h, grid_w, ratio,
rng) -> LongTensor[N, n_keep]`` of kept patch indices, row-major over the grid, ascending), the way text
maskers are in :mod:`clipf.masking`; :func:`mask_probability` gives the paper's Figure 3 (per-location
masking probability over 5 000 samples).

In the study (``params.yaml`` ``uta:``, ``dvc.yaml`` stages ``uta``, ``uta_finetune``, ``uta_eval``,
``uta_finetune_eval``, ``uta_report``): one student per seed, ``runs/uta-s<seed>``, taught by the seed's
unmasked CLIP baseline cell (its ``pretrain/export``), trained for the epochs that give it the training
FLOPs of that CLIP baseline (:func:`match_compute`, :data:`MATCH_RULE`), evaluated like every cell, and
reported beside its teacher and CLIP from scratch (:func:`clipf.report.uta.write_report`: ``results/uta.csv``,
``figures/uta/``). ``clipf uta eval|report`` are those stages (:func:`clipf.study.uta_eval`,
:mod:`clipf.report.uta`); ``notebooks/06_uta.ipynb`` the training one (:func:`clipf.study.uta_run`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clipf import engine, models, train, upstream
from clipf import export as E
from clipf.engine import UsageError
from clipf.files import write_json

DEFAULT_RATIO = 0.5
DEFAULT_MASKER = "reversed_block"
HEADS = ("linear", "mlp")
TEACHER_PRECISIONS = ("auto", "bf16", "fp16", "fp32")

# =========================================================================== patch maskers
PatchMaskerFn = Callable[..., torch.Tensor]
PATCH_MASKERS: dict[str, PatchMaskerFn] = {}
ALIASES: dict[str, str] = {
    "reversed-block": "reversed_block",
    "reversed": "reversed_block",
    "blockwise": "block",
}


def register(name: str) -> Callable[[PatchMaskerFn], PatchMaskerFn]:
    """Decorator: add a patch masker to :data:`PATCH_MASKERS` under ``name``."""

    def deco(fn: PatchMaskerFn) -> PatchMaskerFn:
        PATCH_MASKERS[name] = fn
        return fn

    return deco


def get_masker(name: str) -> PatchMaskerFn:
    """The patch masker called ``name`` (aliases: ``reversed-block`` / ``reversed``, ``blockwise``)."""
    key = ALIASES.get(str(name), name)
    if key not in PATCH_MASKERS:
        raise ValueError(
            f"unknown patch masker {name!r}; valid names: {', '.join([*PATCH_MASKERS, *ALIASES])}"
        )
    return PATCH_MASKERS[key]


def check_ratio(ratio: Any) -> float:
    """A mask ratio: the share of patches hidden from the student, strictly between 0 and 1."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float | np.floating):
        raise ValueError(f"mask ratio must be a number in (0, 1), got {ratio!r}")
    if not 0.0 < float(ratio) < 1.0:
        raise ValueError(
            f"mask ratio must be in (0, 1) (the share of patches the student does not see), got {ratio}"
        )
    return float(ratio)


def kept_count(n_patches: int, ratio: float) -> int:
    """Patches the student sees: ``max(1, int(n * (1 - ratio)))``, open_clip's PatchDropout count."""
    return max(1, int(n_patches * (1.0 - check_ratio(ratio)) + 1e-9))


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _indices(keep: np.ndarray, n_keep: int) -> torch.Tensor:
    """``[N, H, W]`` boolean kept-maps (exactly ``n_keep`` True per row) -> ascending flat indices."""
    flat = keep.reshape(keep.shape[0], -1)
    return torch.from_numpy(np.nonzero(flat)[1].reshape(flat.shape[0], n_keep).astype(np.int64))


@register("random")
def random(
    n_batch: int, grid_h: int, grid_w: int, ratio: float, rng: np.random.Generator | int | None = None
) -> torch.Tensor:
    """Uniformly random patches (FLIP / MAE): every location is masked with probability ~ratio."""
    n = grid_h * grid_w
    k = kept_count(n, ratio)
    order = _as_rng(rng).random((n_batch, n)).argsort(axis=1)[:, :k]
    return torch.from_numpy(np.sort(order, axis=1).astype(np.int64))


def block_mask(
    n_batch: int, grid_h: int, grid_w: int, n_masked: int, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """BEiT's block-wise masking, vectorised over the batch: ``[N, H, W]`` bool, exactly ``n_masked``
    True per sample.

    As BEiT's ``MaskingGenerator``: rectangles of area U(min_block, still to mask) and aspect ratio
    log-U(0.3, 1/0.3), strictly smaller than the grid on each side, placed uniformly; a rectangle is
    accepted when it masks something new and no more than is still to mask; a sample stops after 10
    rejections in a row. ``min_block`` is BEiT's 16 patches of a 14x14 grid, scaled with the grid's area.
    Unlike BEiT, every sample masks exactly ``n_masked`` (the student's batch needs one token count):
    when fewer than ``min_block`` patches are left to mask, smaller rectangles may finish the job, and a
    sample that still stops short is topped up with uniformly random patches.
    """
    rng = _as_rng(rng)
    n_patches = grid_h * grid_w
    if not 0 <= n_masked <= n_patches:
        raise ValueError(f"n_masked must be in [0, {n_patches}], got {n_masked}")
    min_block = max(1, round(16 * n_patches / 196))
    lo, hi = math.log(0.3), math.log(1 / 0.3)
    mask = np.zeros((n_batch, grid_h, grid_w), bool)
    count = np.zeros(n_batch, np.int64)
    fails = np.zeros(n_batch, np.int64)
    rows, cols = np.arange(grid_h), np.arange(grid_w)
    while True:
        active = (count < n_masked) & (fails < 10)
        if not active.any():
            break
        left_to_mask = n_masked - count
        smallest = np.minimum(min_block, np.maximum(left_to_mask, 1))  # the last few patches: smaller blocks
        area = rng.uniform(smallest, np.maximum(smallest, left_to_mask))
        aspect = np.exp(rng.uniform(lo, hi, n_batch))
        h = np.rint(np.sqrt(area * aspect)).astype(np.int64)
        w = np.rint(np.sqrt(area / aspect)).astype(np.int64)
        fits = (h < grid_h) & (w < grid_w) & (h > 0) & (w > 0)
        top = np.floor(rng.random(n_batch) * (grid_h - np.clip(h, 0, grid_h) + 1)).astype(np.int64)
        left = np.floor(rng.random(n_batch) * (grid_w - np.clip(w, 0, grid_w) + 1)).astype(np.int64)
        in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
        in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
        block = in_rows[:, :, None] & in_cols[:, None, :]
        new = (block & ~mask).sum(axis=(1, 2))
        accept = active & fits & (new > 0) & (new <= left_to_mask)
        mask |= block & accept[:, None, None]
        count += np.where(accept, new, 0)
        fails = np.where(accept, 0, fails + active)
    short = np.nonzero(count < n_masked)[0]
    for i in short:  # top up (rare): uniformly among the unmasked patches
        free = np.flatnonzero(~mask[i])
        extra = rng.choice(free, size=n_masked - count[i], replace=False)
        mask[i].reshape(-1)[extra] = True
    return mask


@register("block")
def block(
    n_batch: int, grid_h: int, grid_w: int, ratio: float, rng: np.random.Generator | int | None = None
) -> torch.Tensor:
    """Block-wise masking (BEiT): rectangles of patches are hidden; the student sees the rest."""
    n = grid_h * grid_w
    k = kept_count(n, ratio)
    return _indices(~block_mask(n_batch, grid_h, grid_w, n - k, rng), k)


@register("reversed_block")
def reversed_block(
    n_batch: int, grid_h: int, grid_w: int, ratio: float, rng: np.random.Generator | int | None = None
) -> torch.Tensor:
    """The paper's reversed block-wise masking: the student sees the rectangles block-wise masking would
    hide (drawn to cover exactly the kept count), and nothing else."""
    k = kept_count(grid_h * grid_w, ratio)
    return _indices(block_mask(n_batch, grid_h, grid_w, k, rng), k)


def keep_to_mask(keep: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """``[N, n_keep]`` kept indices -> ``[N, H, W]`` bool, True where the patch is masked."""
    seen = torch.zeros(keep.shape[0], grid_h * grid_w, dtype=torch.bool)
    seen.scatter_(1, keep.cpu(), True)
    return (~seen).reshape(-1, grid_h, grid_w)


def mask_probability(
    masker: str,
    grid_h: int = 14,
    grid_w: int = 14,
    ratio: float = DEFAULT_RATIO,
    n_samples: int = 5000,
    seed: int = 0,
) -> np.ndarray:
    """``[H, W]``: how often each grid location is masked, over ``n_samples`` masks (the paper's Fig. 3)."""
    keep = get_masker(masker)(n_samples, grid_h, grid_w, ratio, np.random.default_rng(seed))
    return keep_to_mask(keep, grid_h, grid_w).double().mean(0).numpy()


def mask_probability_maps(
    maskers: Sequence[str] = ("block", "reversed_block"),
    grid: int | tuple[int, int] = 14,
    ratio: float = DEFAULT_RATIO,
    n_samples: int = 5000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """:func:`mask_probability` of several maskers, same grid, ratio and seed."""
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    return {m: mask_probability(m, gh, gw, ratio, n_samples, seed) for m in maskers}


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
        return int(self.model_cfg.get("text_cfg", {}).get("context_length", 77))

    @property
    def tokenizer_name(self) -> str:
        return self.name

    def describe(self) -> dict[str, Any]:
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
            self.model_cfg = _config_of(self.name, self.kwargs)
        return net


def _has_weights(name: str) -> bool:
    from open_clip.factory import _find_checkpoint_in_dir, parse_model_name

    schema, ident = parse_model_name(name)
    if schema == "local-dir":
        return _find_checkpoint_in_dir(Path(ident)) is not None
    return True


def _config_of(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
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
def _grid(image_size: Any, patch_size: Any) -> tuple[tuple[int, int], tuple[int, int]]:
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
        self.sums: dict[str, torch.Tensor | float] = {"token_loss": 0.0, "global_loss": 0.0}
        self.steps = 0

    def terms(
        self, student_tokens, teacher_tokens, image_features, teacher_features
    ) -> dict[str, torch.Tensor]:
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


# =========================================================================== options and plan
def requested(argv: Sequence[str]) -> bool:
    """Whether a ``clipf train`` command line asks for ``--objective uta``."""
    argv = [str(a) for a in argv]
    return "--objective=uta" in argv or any(
        a == "--objective" and b == "uta" for a, b in zip(argv, argv[1:], strict=False)
    )


def uta_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clipf train --objective uta", add_help=False, allow_abbrev=False)
    g = p.add_argument_group("UTA: unmasked token alignment to a frozen CLIP teacher (clipf.uta)")
    g.add_argument("--objective", choices=["uta"], required=True)
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


@dataclass
class UTAPlan:
    """A UTA run: :class:`clipf.engine.Plan` (data, run folder, open_clip_train argv) + teacher and options."""

    base: engine.Plan
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
        return kept_count(self.grid[0] * self.grid[1], self.ratio)

    def to_json(self) -> dict[str, Any]:
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


def make_plan(argv: Sequence[str]) -> UTAPlan:
    """Parse and check a ``--objective uta`` command line; every error is a UsageError before training."""
    argv = [str(a) for a in argv]
    try:
        ns, rest = uta_parser().parse_known_args([a for a in argv if a != "--"])
    except SystemExit as exc:
        raise UsageError(f"bad UTA option (exit {exc.code})") from None
    if ns.teacher is None:
        raise UsageError(
            "--objective uta needs --teacher (a local-dir: export, a clipf run or checkpoint, or MODEL)"
        )
    try:
        ratio = check_ratio(ns.uta_mask_ratio)
        masker = ALIASES.get(ns.uta_masker, ns.uta_masker)
        get_masker(masker)
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
    base = train.make_plan(rest)
    if base.oc.accum_freq > 1:
        raise UsageError(
            "--accum-freq with --objective uta: the UTA loss is per sample; use a smaller --batch-size"
        )

    teacher = resolve_teacher(ns.teacher, ns.teacher_pretrained)
    net = teacher.load()
    cfg = student_config(base.model, teacher.model_cfg, engine.image_size(base.oc))
    size, grid = _grid(cfg["vision_cfg"]["image_size"], cfg["vision_cfg"]["patch_size"])
    t_size, t_grid = tuple(int(s) for s in net.visual.image_size), tuple(int(g) for g in net.visual.grid_size)
    if (size, grid) != (t_size, t_grid):
        raise UsageError(
            f"--teacher {ns.teacher} sees {t_size[0]}x{t_size[1]} px images as a {t_grid[0]}x{t_grid[1]} patch grid; "
            f"the student (--model {base.model}) sees {size[0]}x{size[1]} px as {grid[0]}x{grid[1]}: UTA aligns "
            "student token i with teacher token i, so image size and patch grid must match (pick a student with "
            "the teacher's patch size, or --force-image-size)"
        )
    base.argv = argv  # the whole command line, UTA options included, into clipf.json
    base.objective = "uta"
    base.full_context = teacher.context_length
    base.notes.append(
        f"UTA: teacher {teacher.source or teacher.name}; student {base.model} sees {kept_count(grid[0] * grid[1], ratio)}"
        f" of {grid[0] * grid[1]} patches ({masker}, ratio {ratio}); text tower and logit scale are the teacher's"
    )
    return UTAPlan(
        base=base,
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


# =========================================================================== the run
def _teacher_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def build_student(
    plan: UTAPlan, create: Callable[..., Any] | None = None, **kwargs: Any
) -> tuple[nn.Module, Any, Any]:
    """The student CLIP (``plan.model_cfg``; vision tower at random, the teacher's text tower and logit
    scale loaded and frozen) and its transforms, through open_clip's ``create_model_and_transforms``
    (``kwargs``: its options, e.g. precision, device, aug_cfg)."""
    import open_clip

    create = create or open_clip.create_model_and_transforms
    kwargs.update(
        load_weights=False, force_patch_dropout=0.0, force_context_length=None, force_image_size=None
    )
    with tempfile.TemporaryDirectory(prefix="clipf-uta-") as tmp:
        cfg = {"model_cfg": plan.model_cfg, "preprocess_cfg": plan.teacher.preprocess_cfg}
        (Path(tmp) / E.CONFIG_NAME).write_text(json.dumps(cfg))
        with _quiet("open_clip.factory"):
            student, pp_train, pp_val = create(f"local-dir:{tmp}", None, **kwargs)
    frozen = {k: v for k, v in plan.teacher.model.state_dict().items() if not k.startswith("visual.")}
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
def _quiet(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class UTARun(engine.Run):
    """:class:`clipf.engine.Run` with the UTA model, loss, teacher tokenizer, records and export."""

    def __init__(self, plan: UTAPlan):
        super().__init__(plan.base)
        self.uta = plan
        self.uta_loss = UTALoss(plan.token_weight, plan.global_weight)

    def get_tokenizer(self, model_name: str, cache_dir: str | None = None, **_: Any) -> Callable:
        """Val / zero-shot text goes to the teacher's text tower: the teacher's tokenizer and context."""
        return upstream.original("open_clip_train.main.get_tokenizer")(
            self.uta.teacher.tokenizer_name, cache_dir=cache_dir, context_length=self.plan.full_context
        )

    def create_model_and_transforms(self, model_name: str, pretrained: Any = None, **kw: Any) -> Any:
        device = torch.device(kw.get("device") or "cpu")
        student, pp_train, pp_val = build_student(
            self.uta, upstream.original("open_clip_train.main.create_model_and_transforms"), **kw
        )
        teacher = self.uta.teacher.model
        teacher.to(device=device, dtype=_teacher_dtype(self.uta.teacher_precision, device))
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
        self.loss = engine.LossMeter(self.uta_loss)
        return self.loss

    def train_one_epoch(self, model: Any, data: dict, loss: Any, epoch: int, *rest: Any, **kw: Any):
        engine.unwrap(model).set_epoch(epoch)
        self.uta_loss.reset()
        return super().train_one_epoch(model, data, loss, epoch, *rest, **kw)

    def evaluate(self, model: Any, data: dict, epoch: int, args: argparse.Namespace, *rest: Any, **kw: Any):
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

    def _write_config(self, epoch: int) -> None:
        super()._write_config(epoch)
        path = self.log_dir / "clipf.json"
        cfg = json.loads(path.read_text())
        cfg.update(objective="uta", image_mask=self.uta.ratio, uta=self.uta.to_json())
        write_json(path, cfg)

    def _epoch_record(self, model: Any, epoch: int, optimizer: Any, seconds: float) -> None:
        sums = self.uta_loss.sums
        tok, glob, steps = self._reduce(
            [float(sums["token_loss"]), float(sums["global_loss"]), float(self.uta_loss.steps)]
        )
        super()._epoch_record(model, epoch, optimizer, seconds)
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

    def finish(self) -> int:
        wanted, self.plan.export = self.plan.export, False
        try:
            rc = super().finish()  # clipf.train's clean-up, without its (CLIP) export
        finally:
            self.plan.export = wanted
        args = self.args
        if not (wanted and args is not None and self.master and self.log_dir is not None):
            return rc
        last = _last_checkpoint(Path(self.log_dir))
        if last is None:
            return rc
        out = Path(self.log_dir) / "export"
        try:
            export(last, out)
            logging.info(f"clipf: exported the UTA student {last} -> {out} (open_clip local-dir:)")
        except Exception as exc:  # noqa: BLE001 - report, keep the checkpoints
            logging.error(f"clipf: UTA export of {last} failed: {type(exc).__name__}: {exc}")
            rc = 1
        return rc


def main(argv: Sequence[str]) -> int:
    """``clipf train --objective uta ...`` (called by :func:`clipf.train.main`); returns an exit code."""
    plan = train.parse_quietly(make_plan, argv)
    return 2 if plan is None else train.drive(UTARun(plan), plan.base.oc_argv)


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


# =========================================================================== training compute
def _meta_model(model_cfg: Mapping[str, Any]) -> nn.Module:
    """An open_clip model of a config on the meta device: shapes only, no memory, no weights."""
    import open_clip

    with tempfile.TemporaryDirectory(prefix="clipf-uta-") as tmp:
        (Path(tmp) / E.CONFIG_NAME).write_text(json.dumps({"model_cfg": dict(model_cfg)}))
        with _quiet(""), torch.device("meta"):
            return open_clip.create_model(
                f"local-dir:{tmp}", load_weights=False, pretrained_text=False, device="meta", output_dict=True
            )


def _count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with _quiet("torch.utils.module_tracker"), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _image_batch(model_cfg: Mapping[str, Any], batch: int) -> torch.Tensor:
    (h, w), _ = _grid(model_cfg["vision_cfg"]["image_size"], model_cfg["vision_cfg"]["patch_size"])
    return torch.empty(batch, 3, h, w, device="meta")


def clip_flops_per_sample(
    model_cfg: Mapping[str, Any], text_tokens: int | None = None, image_mask: float = 0.0, batch: int = 2
) -> float:
    """Training FLOPs per image-text pair of a contrastive (CLIP / FLIP) step of an architecture: forward +
    backward of both towers at ``text_tokens`` text positions (default: the config's) and FLIP patch
    dropout ``image_mask``, counted by ``torch.utils.flop_counter`` on meta tensors (the optimizer step and
    the loss's batch x batch logits are left out)."""
    from open_clip.loss import ClipLoss

    cfg = copy.deepcopy(dict(model_cfg))
    if text_tokens:
        cfg["text_cfg"]["context_length"] = int(text_tokens)
    cfg["vision_cfg"]["patch_dropout"] = float(image_mask or 0.0)
    net = _meta_model(cfg).train()
    images = _image_batch(cfg, batch)
    texts = torch.zeros(
        batch, int(cfg["text_cfg"].get("context_length", 77)), dtype=torch.long, device="meta"
    )
    loss = ClipLoss()

    def step() -> None:
        out = net(images, texts)
        loss(out["image_features"], out["text_features"], out["logit_scale"]).backward()

    return _count_flops(step) / batch


def uta_flops_per_sample(
    student_cfg: Mapping[str, Any],
    teacher_cfg: Mapping[str, Any],
    ratio: float = DEFAULT_RATIO,
    masker: str = DEFAULT_MASKER,
    head: str = "linear",
    batch: int = 2,
) -> dict[str, float]:
    """Training FLOPs per image of a UTA step (``flops``): the frozen teacher's forward on the whole image
    (``teacher``, also given apart) + forward and backward of the student's vision tower on its kept patches
    and of the head; the text tower is not run. Counted as :func:`clip_flops_per_sample`."""
    with torch.device("meta"):
        student, teacher = _meta_model(student_cfg), _meta_model(teacher_cfg)
        for name, p in student.named_parameters():
            p.requires_grad = name.startswith("visual.")
        model = UTAModel(student, teacher, masker=masker, ratio=ratio, head=head).train()
    images = _image_batch(student_cfg, batch)
    loss = UTALoss()
    total = _count_flops(lambda: loss(**model(images)).backward())
    return {"flops": total / batch, "teacher": _count_flops(lambda: model.teach(images)) / batch}


def teacher_config(spec: str | os.PathLike) -> dict[str, Any]:
    """The open_clip config of a ``--teacher`` (nothing is loaded)."""
    import open_clip

    t = resolve_teacher(str(spec))
    if t.model_cfg:
        return t.model_cfg
    if t.name.startswith("local-dir:"):
        return json.loads((Path(t.name[len("local-dir:") :]) / E.CONFIG_NAME).read_text())["model_cfg"]
    if t.name.startswith("hf-hub:"):
        raise UsageError(f"--teacher {spec}: the config of an hf-hub: teacher is not read offline")
    return _config_of(t.name, {}) or copy.deepcopy(open_clip.get_model_config(t.name))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def phase_compute(phase_dir: str | os.PathLike) -> dict[str, Any]:
    """Training compute of a finished phase (``RUN/pretrain``): ``epochs``, ``samples`` seen (metrics.json's
    ``samples_seen``, else epochs x train_num_samples), ``flops_per_sample`` (:func:`clip_flops_per_sample`
    for a contrastive run, :func:`uta_flops_per_sample` for a UTA one), ``flops`` and ``train_seconds``."""
    phase_dir = Path(phase_dir)
    cfg = _read_json(phase_dir / "clipf.json")
    if not cfg:
        raise FileNotFoundError(f"{phase_dir / 'clipf.json'}: missing (has this phase been trained?)")
    records = _read_json(phase_dir / "metrics.json") or []
    last = records[-1] if records else {}
    samples = last.get("samples_seen") or int(cfg.get("epochs") or 0) * int(cfg.get("train_num_samples") or 0)
    out: dict[str, Any] = {
        "objective": cfg.get("objective") or "clip",
        "model": cfg.get("model"),
        "epochs": int(last.get("epoch") or cfg.get("epochs") or 0),
        "samples": int(samples),
        "train_seconds": last.get("train_seconds_total"),
    }
    if out["objective"] == "uta":
        u = cfg["uta"]
        teacher = u["teacher"].get("source") or u["teacher"]["spec"]
        f = uta_flops_per_sample(
            u["model_cfg"], teacher_config(teacher), u["mask_ratio"], u["masker"], u["head"]
        )
        out.update(
            flops_per_sample=f["flops"], teacher_flops_per_sample=f["teacher"], mask_ratio=u["mask_ratio"]
        )
    else:
        model_cfg = E.model_config(
            cfg["model"],
            int(cfg.get("text_context") or cfg.get("text_tokens") or E.FULL_CONTEXT),
            image_size=cfg.get("image_size"),
            quick_gelu=bool(cfg.get("quick_gelu")),
            custom_text=bool(cfg.get("custom_text")),
        )
        out.update(
            flops_per_sample=clip_flops_per_sample(model_cfg, None, cfg.get("image_mask") or 0.0),
            text_tokens=model_cfg["text_cfg"]["context_length"],
            image_mask=cfg.get("image_mask") or 0.0,
        )
    out["flops"] = out["flops_per_sample"] * out["samples"]
    return out


MATCH_RULE = (
    "UTA epochs = round(S_clip x F_clip / (N x F_uta)): S_clip samples the CLIP baseline's pre-training saw, "
    "F_clip its training FLOPs per pair (both towers, forward + backward), N the UTA run's samples per epoch, "
    "F_uta the UTA training FLOPs per image (the frozen teacher's forward + the student's forward and "
    "backward on its kept patches); FLOPs counted by torch.utils.flop_counter. The teacher's own training is "
    "not counted (it is the CLIP baseline itself)."
)


def match_compute(
    baseline: str | os.PathLike,
    teacher: str | os.PathLike,
    student_model: str,
    samples_per_epoch: int,
    ratio: float = DEFAULT_RATIO,
    masker: str = DEFAULT_MASKER,
    head: str = "linear",
    epochs: int | str = "matched",
) -> dict[str, Any]:
    """UTA epochs at the training compute of the CLIP baseline's pre-training ``baseline`` (``RUN/pretrain``),
    by :data:`MATCH_RULE`, or ``epochs`` as given (an integer); the record of both sides' compute."""
    clip = phase_compute(baseline)
    student_cfg = student_config(student_model, teacher_config(teacher))
    f = uta_flops_per_sample(student_cfg, teacher_config(teacher), ratio, masker, head)
    n = int(samples_per_epoch)
    if n < 1:
        raise ValueError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
    if epochs == "matched":
        n_epochs = max(1, round(clip["flops"] / (n * f["flops"])))
    elif isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1:
        n_epochs = epochs
    else:
        raise ValueError(f"epochs: 'matched' or a positive integer, got {epochs!r}")
    uta = {
        "model": student_model,
        "teacher": str(teacher),
        "mask_ratio": float(ratio),
        "masker": ALIASES.get(masker, masker),
        "samples_per_epoch": n,
        "flops_per_sample": f["flops"],
        "teacher_flops_per_sample": f["teacher"],
        "epochs": n_epochs,
        "samples": n_epochs * n,
        "flops": n_epochs * n * f["flops"],
    }
    return {
        "rule": MATCH_RULE if epochs == "matched" else f"epochs given: {epochs}",
        "matched": epochs == "matched",
        "epochs": n_epochs,
        "baseline": {"run": str(baseline), **clip},
        "uta": uta,
        "flops_per_sample_vs_baseline": f["flops"] / clip["flops_per_sample"],
        "compute_vs_baseline": uta["flops"] / clip["flops"] if clip["flops"] else None,
    }


# =========================================================================== `clipf uta`
def cli(argv: list[str] | None = None) -> int:
    """``clipf uta export|maps|eval|report`` (training: ``clipf train --objective uta``)."""
    parser = argparse.ArgumentParser(
        prog="clipf uta", description="UTA helpers (training: clipf train --objective uta; clipf/uta.py)"
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser(
        "export", help="a UTA checkpoint -> open_clip local-dir: model (student vision + teacher text)"
    )
    p.add_argument("checkpoint")
    p.add_argument("--out", default=None, help="default: RUN/<phase>/export beside the checkpoints")
    p = sub.add_parser("maps", help="per-location masking probability of each patch masker (JSON)")
    p.add_argument("--grid", type=int, default=14)
    p.add_argument("--ratio", type=float, default=DEFAULT_RATIO)
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=None, metavar="STEM", help="also write STEM.png / STEM.svg (Figure 3)")
    p = sub.add_parser("eval", help="stage uta_eval: CLIP_benchmark on a UTA student's export (live plan)")
    p.add_argument("cell", help="the student's run under --runs (uta-s0)")
    p.add_argument("phase", choices=["pretrain", "finetune"])
    p.add_argument("--runs", default="runs")
    p = sub.add_parser("report", help="stage uta_report: results/uta.csv and figures/uta/ (live plan)")
    p.add_argument("--results", default="results/results.csv", help="the tidy table (clipf eval collect)")
    p.add_argument("--out", default="results/uta.csv")
    p.add_argument("--figures", default="figures/uta")
    p.add_argument("--runs", default="runs")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "export":
            out = args.out or Path(args.checkpoint).resolve().parent.parent / "export"
            print(export(args.checkpoint, out))
        elif args.cmd == "maps":
            maps = mask_probability_maps(tuple(PATCH_MASKERS), args.grid, args.ratio, args.samples, args.seed)
            if args.figure:
                from clipf.report import save_figure
                from clipf.report.uta import mask_map_figure

                shown = {k: maps[k] for k in ("block", "reversed_block")}
                save_figure(mask_map_figure(shown, args.ratio, args.samples), args.figure)
            print(json.dumps({k: np.round(v, 4).tolist() for k, v in maps.items()}))
        else:
            from clipf import study
            from clipf.report.uta import write_report

            cfg = study.config()
            if args.cmd == "eval":
                study.uta_eval(cfg, args.cell, args.phase, args.runs)
            else:
                paths = write_report(cfg, args.results, args.out, args.figures, args.runs)
                print(Path(paths["summary"]).read_text())
                print("wrote", ", ".join(str(p) for p in paths.values()))
    except (OSError, ValueError, RuntimeError, UsageError) as exc:
        print(f"clipf uta {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
