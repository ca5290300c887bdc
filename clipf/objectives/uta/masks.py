"""UTA's patch maskers: which patches of an image the student sees, registered by name like the text
maskers of :mod:`clipf.masking`.

A masker is ``fn(n_batch, grid_h, grid_w, ratio, rng) -> LongTensor[N, n_keep]``: the kept patch indices,
row-major over the grid, ascending, exactly :func:`kept_count` per row. :func:`mask_probability` gives
the paper's Figure 3 (per-location masking probability over 5 000 samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

DEFAULT_RATIO = 0.5
DEFAULT_MASKER = "reversed_block"

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
