"""What each concept of the ``concepts`` world looks like, and drawing one image of it.

A *look* is a combination of six factors: shape (a silhouette of :data:`clipf.world.scene.GEOMETRY`),
colour, pattern (``solid``, ``striped``, ``two_tone``, ``outlined``) with an accent colour (``none`` for
solid), size (``small`` / ``large``) and background. :func:`assign_looks` gives every concept a
different look, any two of them differing in at least ``min_distance`` factors, with every object
colour contrasting with its background and accent. It depends only on the config (``concepts.look_seed``):
a world's concepts look the same whatever the data seed.

An image (:func:`render_concept`) draws the look with instance variation: scale, aspect, rotation and
position jitter, colour jitter, a background variant with an exposure shift, and pixel noise -- the
same texture banks and noise as :mod:`clipf.world.scene`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from clipf.world import lexicon as L
from clipf.world import scene as S
from clipf.world.scene import as_draws

PATTERNS = ("solid", "striped", "two_tone", "outlined")
FACTORS = ("shape", "color", "pattern", "accent", "size", "background")
SIZE_RADIUS = {"small": 0.2, "large": 0.3}  # radius as a fraction of the image side


class LookError(ValueError):
    """The requested looks cannot be made (too many concepts for the factors and distance)."""


def _contrast(a: str, b: str, table_a, table_b) -> float:
    return math.dist(table_a[a][0], table_b[b][0])


def candidate_looks(ccfg: Mapping) -> list[dict]:
    """Every allowed factor combination: the colour contrasts with the background (``min_contrast``);
    a pattern's accent differs from the colour and contrasts with it and with the background."""
    lo = ccfg["min_contrast"]
    out = []
    for shape, color, size, bg in itertools.product(
        ccfg["shapes"], ccfg["colors"], ccfg["sizes"], ccfg["backgrounds"]
    ):
        if _contrast(color, bg, L.COLORS, L.BACKGROUNDS) < lo:
            continue
        for pattern in ccfg["patterns"]:
            accents = ["none"] if pattern == "solid" else ccfg["accents"]
            for accent in accents:
                if accent != "none" and (
                    accent == color
                    or _contrast(accent, color, L.COLORS, L.COLORS) < lo
                    or _contrast(accent, bg, L.COLORS, L.BACKGROUNDS) < lo * 0.75
                ):
                    continue
                out.append(
                    {
                        "shape": shape,
                        "color": color,
                        "pattern": pattern,
                        "accent": accent,
                        "size": size,
                        "background": bg,
                    }
                )
    return out


def distance(a: Mapping, b: Mapping) -> int:
    """In how many factors two looks differ."""
    return sum(a[f] != b[f] for f in FACTORS)


def assign_looks(names: Sequence[str], ccfg: Mapping) -> list[dict]:
    """A look for each name (in order): drawn from :func:`candidate_looks` in a seeded random order,
    each kept when it differs from every look kept so far in ``min_distance`` factors or more."""
    pool = candidate_looks(ccfg)
    rng = np.random.default_rng(np.random.SeedSequence([ccfg["look_seed"], 0x100C5]))
    order = rng.permutation(len(pool))
    need, d_min = len(names), ccfg["min_distance"]
    codes = np.array([[ccfg_index(ccfg, f, look[f]) for f in FACTORS] for look in pool], dtype=np.int16)
    kept: list[int] = []
    for i in order:
        if kept and int((codes[kept] != codes[i]).sum(axis=1).min()) < d_min:
            continue
        kept.append(int(i))
        if len(kept) == need:
            break
    if len(kept) < need:
        raise LookError(
            f"world.concepts: only {len(kept)} looks differ pairwise in >= {d_min} factors "
            f"(of {len(pool)} allowed combinations), {need} concepts wanted: lower min_distance or count, "
            "or add shapes / colours / patterns / accents / backgrounds"
        )
    return [{"name": n, **pool[i]} for n, i in zip(names, kept, strict=True)]


def ccfg_index(ccfg: Mapping, factor: str, value: str) -> int:
    """A factor value as a small integer (for distance computations)."""
    if factor == "accent":
        return -1 if value == "none" else ccfg["accents"].index(value)
    return ccfg[
        {
            "shape": "shapes",
            "color": "colors",
            "pattern": "patterns",
            "size": "sizes",
            "background": "backgrounds",
        }[factor]
    ].index(value)


# ------------------------------------------------------------------------------------------ drawing


def sample_instance(look: Mapping, rng, scfg: Mapping) -> dict:
    """One image's object of a concept: the look plus position, radius, rotation, aspect and colours."""
    d = as_draws(rng)
    j, aj, rot, pj = scfg["scale_jitter"], scfg["aspect_jitter"], scfg["rotation"], scfg["position_jitter"]
    radius = SIZE_RADIUS[look["size"]] * d.uniform(1 - j, 1 + j)
    reach = radius * 1.08
    x = min(max(0.5 + d.uniform(-pj, pj), reach), 1 - reach)
    y = min(max(0.5 + d.uniform(-pj, pj), reach), 1 - reach)
    cj = scfg["color_jitter"]

    def jitter(rgb):
        return [min(255, max(0, int(c + d.uniform(-cj, cj + 1)))) for c in rgb] if cj else list(rgb)

    obj = {
        "shape": look["shape"],
        "color": look["color"],
        "pattern": look["pattern"],
        "accent": look["accent"],
        "size": look["size"],
        "x": round(x, 4),
        "y": round(y, 4),
        "radius": round(radius, 4),
        "rotation": round(d.uniform(-rot, rot), 2) if rot else 0.0,
        "aspect": round(d.uniform(1 - aj, 1 + aj), 3) if aj else 1.0,
        "rgb": jitter(L.COLORS[look["color"]][0]),
    }
    obj["accent_rgb"] = jitter(L.COLORS[look["accent"]][0]) if look["accent"] != "none" else None
    return obj


def erode(mask: Image.Image, r: int) -> Image.Image:
    """Grey-level erosion of an "L" mask by a (2r + 1)-pixel square (outside the image counts as 0)."""
    a = np.pad(np.asarray(mask), r)
    a = sliding_window_view(a, 2 * r + 1, axis=1).min(axis=-1)
    a = sliding_window_view(a, 2 * r + 1, axis=0).min(axis=-1)
    return Image.fromarray(np.ascontiguousarray(a), mode="L")


def _pattern_mask(obj: Mapping, size: int, box, ss: int, scfg: Mapping) -> np.ndarray:
    """Where the accent goes inside the object's box (supersampled grid), as 0/1: stripes across the
    object's own axis, or its lower half."""
    x0, y0, x1, y1 = box
    h, w = (y1 - y0) * ss, (x1 - x0) * ss
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    px = (xx + 0.5) / (size * ss) + x0 / size - obj["x"]
    py = (yy + 0.5) / (size * ss) + y0 / size - obj["y"]
    a = math.radians(obj["rotation"])
    v = (-px * math.sin(a) + py * math.cos(a)) / obj["radius"]  # along the object's vertical axis
    if obj["pattern"] == "striped":
        return (np.floor(v / (scfg["stripe_period"] / 2)) % 2 == 1).astype(np.uint8)
    return (v > 0).astype(np.uint8)  # two_tone: the lower half


def render_concept(scene: Mapping, size: int, scfg: Mapping, rng) -> Image.Image:
    """The image of a concept scene (``{"background": ..., "objects": [instance]}``) as a size x size
    RGB PIL image (``scfg``: the concepts world's ``scene`` section)."""
    d = as_draws(rng)
    img, shift = S.start_image(scene["background"], size, scfg, d)
    ss = int(scfg["antialias"])
    for obj in scene["objects"]:
        box = S.object_box(obj, size)
        if box is None:
            continue
        big = S.object_mask(obj, size, box, ss, reduce=False)
        pattern = obj["pattern"]
        if pattern == "solid":
            img.paste(tuple(obj["rgb"]), box[:2], big.reduce(ss) if ss > 1 else big)
            continue
        accent = tuple(obj["accent_rgb"])
        if pattern == "outlined":  # the accent shape, its eroded inside in the main colour
            border = max(1, round(scfg["outline"] * obj["radius"] * size * ss))
            inner = erode(big, border)
            img.paste(accent, box[:2], big.reduce(ss) if ss > 1 else big)
            img.paste(tuple(obj["rgb"]), box[:2], inner.reduce(ss) if ss > 1 else inner)
            continue
        part = np.asarray(big, dtype=np.uint8) * _pattern_mask(obj, size, box, ss, scfg)
        part_img = Image.fromarray(part, mode="L")
        img.paste(tuple(obj["rgb"]), box[:2], big.reduce(ss) if ss > 1 else big)
        img.paste(accent, box[:2], part_img.reduce(ss) if ss > 1 else part_img)
    return S.finish_image(img, shift, size, scfg, d)


def look_phrase(look: Mapping) -> str:
    """A short description of a look: "large red striped (white) star on sky"."""
    pattern = "" if look["pattern"] == "solid" else f" {look['pattern']} ({look['accent']})"
    return f"{look['size']} {look['color']}{pattern} {look['shape']} on {look['background']}"
