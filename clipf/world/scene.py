"""Scenes: sample one (objects on a background) and render it as an RGB array.

A scene is a JSON-able dict::

    {"background": "grass",
     "objects": [{"shape": "star", "color": "red", "size": "large", "position": "left",
                  "x": 0.27, "y": 0.52, "radius": 0.30, "rotation": -7.1, "aspect": 1.04,
                  "rgb": [222, 31, 40], "region": "left"}, ...]}

``objects[0]`` is the *main* object: the largest, the one the captions and the evaluation labels are
about, drawn last (on top). Extra objects are smaller (``scene.extra_scale`` of the main radius); when
several they may be copies of one kind (``scene.same_extras``), which captions count ("two blue stars").
Their ``size`` is relative ("small"), their ``position`` the 3x3-grid region they fall in.

Rendering is NumPy + PIL only: the background is a texture from a per-size bank (a few fixed variants,
mirrored and brightness-jittered), each object an anti-aliased coverage mask (``scene.antialias``-times
supersampled polygon, drawn only over its bounding box) pasted in its colour, then Gaussian pixel noise
cropped at a random offset from a fixed per-size noise canvas -- all PIL operations in C. Everything random comes from the ``rng`` passed in, so a
scene and its pixels are a pure function of the seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from clipf.world import lexicon as L

# ------------------------------------------------------------------------------------------ geometry


def _regular(n: int, r: float = 1.0, start: float = -90.0) -> list[tuple[float, float]]:
    a0 = math.radians(start)
    return [
        (r * math.cos(a0 + 2 * math.pi * i / n), r * math.sin(a0 + 2 * math.pi * i / n)) for i in range(n)
    ]


def _star(points: int = 5, inner: float = 0.42) -> list[tuple[float, float]]:
    out = []
    for i in range(2 * points):
        r = 1.0 if i % 2 == 0 else inner
        a = math.radians(-90 + 180 * i / points)
        out.append((r * math.cos(a), r * math.sin(a) + 0.08))
    return out


def _heart(n: int = 40) -> list[tuple[float, float]]:
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x = 16 * math.sin(t) ** 3
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
        pts.append((x / 17.0, (y + 2.5) / 17.0))
    return pts


_CIRCLE = _regular(48)
# shape -> list of (polygon in the unit frame, fill 255 or hole 0)
GEOMETRY: dict[str, list[tuple[list[tuple[float, float]], int]]] = {
    "circle": [(_CIRCLE, 255)],
    "square": [([(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)], 255)],
    "triangle": [([(0.0, -1.0 + 0.22), (0.92, 0.6 + 0.22 - 0.15), (-0.92, 0.6 + 0.22 - 0.15)], 255)],
    "star": [(_star(), 255)],
    "cross": [
        (
            [
                (-0.3, -0.95),
                (0.3, -0.95),
                (0.3, -0.3),
                (0.95, -0.3),
                (0.95, 0.3),
                (0.3, 0.3),
                (0.3, 0.95),
                (-0.3, 0.95),
                (-0.3, 0.3),
                (-0.95, 0.3),
                (-0.95, -0.3),
                (-0.3, -0.3),
            ],
            255,
        )
    ],
    "heart": [(_heart(), 255)],
    "diamond": [([(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)], 255)],
    "ring": [(_CIRCLE, 255), (_regular(48, 0.55), 0)],
    "crescent": [(_CIRCLE, 255), ([(x * 0.85 + 0.45, y * 0.85 - 0.2) for x, y in _CIRCLE], 0)],
    "arrow": [
        (
            [
                (-1.0, -0.25),
                (0.15, -0.25),
                (0.15, -0.65),
                (1.0, 0.0),
                (0.15, 0.65),
                (0.15, 0.25),
                (-1.0, 0.25),
            ],
            255,
        )
    ],
    "hexagon": [(_regular(6, 1.0, 0.0), 255)],
    "bar": [([(-1.0, -0.32), (1.0, -0.32), (1.0, 0.32), (-1.0, 0.32)], 255)],
}
GEOM_NP = {k: [(np.asarray(p, dtype=np.float64), fill) for p, fill in v] for k, v in GEOMETRY.items()}
assert set(GEOMETRY) == set(L.SHAPES)


def region_of(x: float, y: float) -> str:
    """The 3x3-grid region of a point: "top left", "top", ..., "center", ..., "bottom right"."""
    col = "left" if x < 1 / 3 else ("right" if x > 2 / 3 else "")
    row = "top" if y < 1 / 3 else ("bottom" if y > 2 / 3 else "")
    return " ".join(p for p in (row, col) if p) or "center"


# ------------------------------------------------------------------------------------------ sampling


class Draws:
    """Uniform draws from a NumPy generator, fetched in blocks (one ``rng.random`` call per 1024 draws:
    per-call overhead, not arithmetic, dominates a scene's sampling)."""

    __slots__ = ("rng", "_next")

    def __init__(self, rng: np.random.Generator | int | None = None):
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self._next = iter(()).__next__

    def u(self) -> float:
        """One U(0, 1) draw."""
        try:
            return self._next()
        except StopIteration:
            self._next = iter(self.rng.random(1024).tolist()).__next__
            return self._next()

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.u()

    def below(self, n: int) -> int:
        """An integer in [0, n)."""
        return min(int(self.u() * n), n - 1)

    def pick(self, items):
        return items[self.below(len(items))]

    def weighted(self, weights) -> int:
        """An index drawn with probability proportional to ``weights``."""
        x = self.u() * sum(weights)
        for i, w in enumerate(weights):
            x -= w
            if x < 0:
                return i
        return max(i for i, w in enumerate(weights) if w > 0)

    def chance(self, p: float) -> bool:
        return self.u() < p


def as_draws(rng) -> Draws:
    return rng if isinstance(rng, Draws) else Draws(rng)


def sample_scene(rng, cfg: Mapping, force: Mapping | None = None) -> dict:
    """A random scene under ``cfg`` (the ``world.scene`` section); ``rng``: a NumPy generator or
    :class:`Draws`. ``force`` fixes attributes of the main object (``shape``, ``color``, ``size``,
    ``position``) -- used for class-balanced eval sets."""
    d = as_draws(rng)
    force = force or {}
    shape = force.get("shape") or d.pick(cfg["shapes"])
    color = force.get("color") or d.pick(cfg["colors"])
    size = force.get("size") or d.pick(cfg["sizes"])
    position = force.get("position") or d.pick(cfg["positions"])
    rgb = L.COLORS[color][0]
    contrast = cfg["min_contrast"]
    bgs = [b for b in cfg["backgrounds"] if math.dist(L.BACKGROUNDS[b][0], rgb) >= contrast]
    if not bgs:  # nothing contrasts enough: the most distant background
        bgs = [max(cfg["backgrounds"], key=lambda b: math.dist(L.BACKGROUNDS[b][0], rgb))]
    background = d.pick(bgs)
    bg_rgb = L.BACKGROUNDS[background][0]

    n_objects = 1 + d.weighted(cfg["objects"])
    j = cfg["scale_jitter"]
    radius = L.SIZES[size][0] * d.uniform(1 - j, 1 + j)
    (px, py), pj = L.POSITIONS[position][0], cfg["position_jitter"]
    reach = radius * 1.08
    x = min(max(px + d.uniform(-pj, pj), reach), 1 - reach)
    y = min(max(py + d.uniform(-pj, pj), reach), 1 - reach)
    main = _object(d, cfg, shape, color, radius, x, y)
    main.update(size=size, position=position, region=region_of(x, y))
    objects = [main]
    if n_objects == 1:
        return {"background": background, "objects": objects}

    extra_colors = [c for c in cfg["colors"] if math.dist(L.COLORS[c][0], bg_rgb) >= contrast] or [color]
    same = n_objects > 2 and d.chance(cfg["same_extras"])
    kind = (d.pick(cfg["shapes"]), d.pick(extra_colors))
    lo, hi = cfg["extra_scale"]
    for _ in range(n_objects - 1):
        e_shape, e_color = kind if same else (d.pick(cfg["shapes"]), d.pick(extra_colors))
        r = radius * d.uniform(lo, hi)
        for _try in range(20):
            ex, ey = d.uniform(r * 1.08, 1 - r * 1.08), d.uniform(r * 1.08, 1 - r * 1.08)
            if all(math.hypot(ex - o["x"], ey - o["y"]) >= 0.9 * (o["radius"] + r) for o in objects):
                extra = _object(d, cfg, e_shape, e_color, r, ex, ey)
                extra.update(size="small", position=region_of(ex, ey))
                objects.append(extra)
                break
    return {"background": background, "objects": objects}


def _object(d: Draws, cfg, shape: str, color: str, radius: float, x: float, y: float) -> dict:
    cj, aj, rot = cfg["color_jitter"], cfg["aspect_jitter"], cfg["rotation"]
    base = L.COLORS[color][0]
    rgb = [min(255, max(0, int(c + d.uniform(-cj, cj + 1)))) for c in base] if cj else list(base)
    return {
        "shape": shape,
        "color": color,
        "x": round(x, 4),
        "y": round(y, 4),
        "radius": round(radius, 4),
        "rotation": round(d.uniform(-rot, rot), 2) if rot else 0.0,
        "aspect": round(d.uniform(1 - aj, 1 + aj), 3) if aj else 1.0,
        "rgb": rgb,
    }


# ----------------------------------------------------------------------------------------- rendering

BANK = 4  # background variants per (background, size)


@cache
def noise_image(size: int, sigma: float) -> Image.Image:
    """Gaussian pixel noise of std ``sigma`` plus 128, over a (2 size)^2 RGB canvas, fixed (crops of it
    at a random offset vary per image)."""
    noise = np.rint(np.random.default_rng(0x5EED).standard_normal((2 * size, 2 * size, 3)) * sigma) + 128
    return Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))


@cache
def background_bank(name: str, size: int) -> tuple[Image.Image, ...]:
    """A few fixed size x size variants of a background texture, each also mirrored."""
    base, texture, _ = L.BACKGROUNDS[name]
    base = np.asarray(base, dtype=np.float32)
    rng = np.random.default_rng([0xB6, size, list(L.BACKGROUNDS).index(name)])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for _ in range(BANK):
        if texture == "flat":
            img = np.broadcast_to(base, (size, size, 3)).copy()
        elif texture == "noise":  # blotchy: coarse noise upsampled + fine grain
            k = max(2, size // 8)
            coarse = rng.standard_normal((k, k)).astype(np.float32)
            coarse = np.asarray(
                Image.fromarray(coarse, mode="F").resize((size, size), Image.BILINEAR), dtype=np.float32
            )
            grain = rng.standard_normal((size, size)).astype(np.float32)
            img = base + (10 * coarse + 5 * grain)[..., None]
        elif texture == "gradient":  # sky: deeper at the top, paler below
            t = (yy + 0.15 * rng.standard_normal()).clip(0, 1)[..., None]
            img = base * (1 - 0.55 * t) + 245 * 0.55 * t
        elif texture == "stripes":  # wood grain
            period = rng.uniform(0.08, 0.16)
            phase = rng.uniform(0, 2 * np.pi)
            wave = np.sin(
                2 * np.pi * yy / period + phase + 2.0 * np.sin(2 * np.pi * xx * rng.uniform(0.5, 1.5))
            )
            img = base * (1 + 0.13 * wave)[..., None]
        elif texture == "waves":
            phase = rng.uniform(0, 2 * np.pi)
            wave = np.sin(2 * np.pi * (yy * 6 + 0.6 * np.sin(2 * np.pi * xx * 2 + phase)))
            img = base + (18 * wave)[..., None]
        else:  # pragma: no cover - lexicon and bank disagree
            raise ValueError(f"unknown texture {texture!r}")
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        out += [Image.fromarray(img), Image.fromarray(np.ascontiguousarray(img[:, ::-1]))]  # + mirror
    return tuple(out)


def polygon(points: np.ndarray, obj: Mapping, scale: float, ox: float, oy: float) -> list[float]:
    """Unit-frame points -> flat pixel coordinates on a (supersampled) canvas whose origin is (ox, oy)."""
    a = math.radians(obj["rotation"])
    r = obj["radius"] * scale
    sx, sy = r * obj["aspect"], r / obj["aspect"]
    ca, sa = math.cos(a), math.sin(a)
    m = np.array([[sx * ca, sx * sa], [-sy * sa, sy * ca]])
    shift = np.array([obj["x"] * scale - ox, obj["y"] * scale - oy])
    return (points @ m + shift).ravel().tolist()


def object_box(obj: Mapping, size: int) -> tuple[int, int, int, int] | None:
    """The pixel box (x0, y0, x1, y1) that holds an object on a size x size image (None: outside)."""
    reach = obj["radius"] * max(obj["aspect"], 1 / obj["aspect"]) * 1.2 * size
    x0 = max(0, int(math.floor(obj["x"] * size - reach)))
    y0 = max(0, int(math.floor(obj["y"] * size - reach)))
    x1 = min(size, int(math.ceil(obj["x"] * size + reach)))
    y1 = min(size, int(math.ceil(obj["y"] * size + reach)))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def object_mask(obj: Mapping, size: int, box: tuple[int, int, int, int], ss: int, reduce: bool = True):
    """The object's coverage over ``box`` as an "L" image, drawn ``ss``-times supersampled (and reduced
    back unless ``reduce`` is False)."""
    x0, y0, x1, y1 = box
    mask = Image.new("L", ((x1 - x0) * ss, (y1 - y0) * ss), 0)
    draw = ImageDraw.Draw(mask)
    for points, fill in GEOM_NP[obj["shape"]]:
        draw.polygon(polygon(points, obj, size * ss, x0 * ss, y0 * ss), fill=fill)
    if ss > 1 and reduce:
        mask = mask.reduce(ss)
    return mask


def start_image(background: str, size: int, cfg: Mapping, d: Draws) -> tuple[Image.Image, int]:
    """A fresh copy of a background variant and the exposure shift drawn for it."""
    bank = background_bank(background, size)
    img = bank[d.below(len(bank))]
    bj = cfg["background_jitter"]
    shift = round(d.uniform(-bj, bj)) if bj else 0
    return img.copy(), shift


def finish_image(img: Image.Image, shift: int, size: int, cfg: Mapping, d: Draws) -> Image.Image:
    """Pixel noise and the exposure shift, in one pass: img + (noise + 128) - 128 + shift, clipped."""
    sigma = cfg["noise"]
    if sigma:
        ox, oy = d.below(size), d.below(size)
        noise = noise_image(size, float(sigma)).crop((ox, oy, ox + size, oy + size))
        img = ImageChops.add(img, noise, 1.0, shift - 128)
    elif shift:
        img = ImageChops.add(img, Image.new("RGB", img.size), 1.0, shift)
    return img


def render_image(scene: Mapping, size: int, cfg: Mapping, rng) -> Image.Image:
    """The scene as a size x size RGB PIL image (``cfg``: the ``world.scene`` section; ``rng``: a NumPy
    generator or :class:`Draws`)."""
    d = as_draws(rng)
    img, shift = start_image(scene["background"], size, cfg, d)
    ss = int(cfg["antialias"])
    for obj in reversed(scene["objects"]):  # the main object last, on top
        box = object_box(obj, size)
        if box is None:
            continue
        img.paste(tuple(obj["rgb"]), box[:2], object_mask(obj, size, box, ss))
    return finish_image(img, shift, size, cfg, d)


def render(scene: Mapping, size: int, cfg: Mapping, rng) -> np.ndarray:
    """The scene as a (size, size, 3) uint8 array (see :func:`render_image`)."""
    return np.asarray(render_image(scene, size, cfg, rng))
