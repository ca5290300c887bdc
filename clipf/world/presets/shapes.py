"""The ``shapes`` world preset (the committed study's world): geometric shapes in six colours, sizes and
positions on plain backgrounds, with web-like captions whose grounded words are a few frequent colour and
shape words among word-by-word English filler (:mod:`clipf.world.scene`, :mod:`clipf.world.captions`,
:mod:`clipf.world.evalsets`).

Its resolved configuration has no ``preset`` key (it is the format every world had before presets), so
its manifest, fingerprints and shards are byte-identical to the ones the committed study was made with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL import Image

from clipf.world import evalsets as E
from clipf.world import lexicon as L
from clipf.world.captions import clean_captions, web_caption
from clipf.world.checks import (
    ConfigError,
    check_caption_length,
    check_common,
    check_number,
    check_prob,
    check_subset,
)
from clipf.world.scene import Draws, render_image, sample_scene
from clipf.world.spec import CLASSIFICATION, RETRIEVAL, EvalSet

NAME = "shapes"
FORMATS = ("png", "jpg")

DEFAULTS: dict[str, Any] = {
    "shard_size": 512,  # pairs per webdataset shard
    "image_format": "jpg",  # jpg (as img2dataset writes CC3M/CC12M) | png
    "jpeg_quality": 95,
    "eval_size": 500,  # images per evaluation set
    "eval_captions": 5,  # captions per image of the retrieval set
    "scene": {
        "shapes": [
            "circle",
            "square",
            "triangle",
            "star",
            "cross",
            "heart",
        ],  # + diamond, ring, crescent, arrow, hexagon, bar
        "colors": ["red", "yellow", "green", "blue", "white", "black"],  # + L.COLORS
        "sizes": ["small", "medium", "large"],
        "positions": ["center", "left", "right", "top", "bottom"],
        "backgrounds": ["white", "black", "gray", "sky", "sand"],  # + L.BACKGROUNDS
        "objects": [0.85, 0.1, 0.05],  # P(1, 2, 3, ... objects); the main object is the largest
        "same_extras": 0.3,  # the extra objects are copies of one kind ("two blue stars")
        "extra_scale": [0.45, 0.6],  # extra object radius / main object radius
        "rotation": 15.0,  # degrees, uniform +-
        "scale_jitter": 0.1,  # radius x U(1 - j, 1 + j)
        "aspect_jitter": 0.1,  # x / y stretch x U(1 - j, 1 + j)
        "position_jitter": 0.05,  # fraction of the side, uniform +-
        "color_jitter": 12,  # per channel, uniform +-
        "background_jitter": 15,  # background brightness, uniform +-
        "noise": 5.0,  # pixel noise sigma (0..255 scale)
        "min_contrast": 120.0,  # RGB distance between an object's colour and its background
        "antialias": 4,  # supersampling of the object masks
    },
    "caption": {
        "length": {"median": 18, "sigma": 0.45, "min": 8, "max": 40},  # words, lognormal clipped
        "vocab_size": 2000,  # filler: the top-N English words (wordfreq), drawn by frequency
        "rare_words": 1.0,  # + rare filler per caption (Poisson mean): English ranks vocab_size..rare_vocab
        "rare_vocab": 20000,
        "mention": {  # P(a caption says it)
            "shape": 0.95,
            "color": 0.8,
            "size": 0.7,
            "position": 0.8,
            "extras": 0.5,
            "background": 0.35,
        },
        "synonyms": 0.15,  # a value said with a rarer synonym (crimson, disc, huge, ...)
        "generic_noun": 0.1,  # shape unsaid: "object", "icon", ... stands in (else no noun)
        "noise": 0.03,  # a said value is wrong (web noise)
        "unrelated": 0.03,  # the caption says nothing about the image
        "prefix": 0.35,  # boilerplate before ("stock photo of", "image may contain :")
        "suffix": 0.3,  # boilerplate after ("royalty free", "high resolution")
        "hashtags": 0.15,  # trailing hashtags
        "hashtag_grounded": 0.3,  # a hashtag names the main object's colour or shape
        "max_hashtags": 4,
        "grounded_first": 0.3,  # the description comes first (after any prefix), else among the filler
        "filler_chunks": [1, 3],  # runs of filler words per caption (min, max)
        "ellipsis": 0.1,  # the caption ends in "..." (cut alt-text)
        "case": {"lower": 0.4, "sentence": 0.4, "title": 0.2},
    },
}


def validate(cfg: Mapping) -> None:
    """Raise :class:`ConfigError` on the first bad value of a resolved ``shapes`` configuration."""
    check_common(cfg, FORMATS)
    s = cfg["scene"]
    check_subset(s["shapes"], L.SHAPES, "world.scene.shapes", 2)
    check_subset(s["colors"], L.COLORS, "world.scene.colors", 2)
    check_subset(s["sizes"], L.SIZES, "world.scene.sizes", 1)
    check_subset(s["positions"], L.POSITIONS, "world.scene.positions", 1)
    check_subset(s["backgrounds"], L.BACKGROUNDS, "world.scene.backgrounds", 1)
    objs = s["objects"]
    if (
        not isinstance(objs, list)
        or not 1 <= len(objs) <= 5
        or not all(isinstance(p, int | float) and p >= 0 for p in objs)
        or sum(objs) <= 0
    ):
        raise ConfigError(
            f"world.scene.objects: weights of 1..5 objects (1 to 5 non-negative numbers), got {objs!r}"
        )
    lo_hi = s["extra_scale"]
    if not (isinstance(lo_hi, list) and len(lo_hi) == 2 and 0.1 <= lo_hi[0] <= lo_hi[1] <= 0.9):
        raise ConfigError(
            f"world.scene.extra_scale: [low, high] with 0.1 <= low <= high <= 0.9, got {lo_hi!r}"
        )
    check_prob(s, "same_extras", "world.scene")
    check_number(s["rotation"], "world.scene.rotation", 0, 180)
    for key in ("scale_jitter", "aspect_jitter"):
        check_number(s[key], f"world.scene.{key}", 0, 0.5)
    check_number(s["position_jitter"], "world.scene.position_jitter", 0, 0.2)
    check_number(s["color_jitter"], "world.scene.color_jitter", 0, 100)
    check_number(s["background_jitter"], "world.scene.background_jitter", 0, 100)
    check_number(s["noise"], "world.scene.noise", 0, 100)
    check_number(s["min_contrast"], "world.scene.min_contrast", 0, 300)
    check_number(s["antialias"], "world.scene.antialias", 1, 8, integer=True)
    c = cfg["caption"]
    ln = c["length"]
    check_caption_length(ln)
    n_vocab = len(L.filler_vocabulary()[0])
    check_number(c["vocab_size"], "world.caption.vocab_size", 10, n_vocab, integer=True)
    check_number(c["rare_vocab"], "world.caption.rare_vocab", c["vocab_size"], n_vocab, integer=True)
    check_number(c["rare_words"], "world.caption.rare_words", 0, 20)
    for key in ("shape", "color", "size", "position", "extras", "background"):
        if key not in c["mention"]:
            raise ConfigError(f"world.caption.mention.{key}: missing")
        check_prob(c["mention"], key, "world.caption.mention")
    for key in (
        "synonyms",
        "generic_noun",
        "noise",
        "unrelated",
        "prefix",
        "suffix",
        "hashtags",
        "hashtag_grounded",
        "grounded_first",
        "ellipsis",
    ):
        check_prob(c, key, "world.caption")
    check_number(c["max_hashtags"], "world.caption.max_hashtags", 1, 20, integer=True)
    fc = c["filler_chunks"]
    if not (
        isinstance(fc, list)
        and len(fc) == 2
        and all(isinstance(v, int) for v in fc)
        and 1 <= fc[0] <= fc[1] <= 10
    ):
        raise ConfigError(f"world.caption.filler_chunks: [min, max] with 1 <= min <= max <= 10, got {fc!r}")
    case = c["case"]
    if set(case) - {"lower", "sentence", "title"} or not case or sum(case.values()) <= 0:
        raise ConfigError(f"world.caption.case: weights of lower / sentence / title, got {case!r}")
    for key in case:
        check_number(case[key], f"world.caption.case.{key}", 0, 1e9)


# -------------------------------------------------------------------------------------------- hooks


def eval_sets(cfg: Mapping) -> dict[str, EvalSet]:
    """Shape, colour, colour+shape, size and position classification, and caption retrieval."""
    out = {}
    for name, (attribute, stream, templates) in E.EVAL_SETS.items():
        task = RETRIEVAL if attribute is None else CLASSIFICATION
        classes = tuple(E.classes(name, cfg["scene"]))
        out[name] = EvalSet(name, stream, task, attribute, classes, tuple(templates))
    return out


def pair(d: Draws, cfg: Mapping, size: int) -> tuple[Image.Image, str, dict[str, Any]]:
    """One training pair: (image, caption, metadata beyond the img2dataset fields)."""
    scene = sample_scene(d, cfg["scene"])
    image = render_image(scene, size, cfg["scene"], d)
    caption, units, info = web_caption(scene, d, cfg)
    meta = {
        "scene": scene,
        "words": [[w, t] for w, t, _ in units],
        "grounded": [g for _, _, g in units],
        "wrong": info["wrong"],
        "unrelated": info["unrelated"],
    }
    return image, caption, meta


def eval_item(
    d: Draws, cfg: Mapping, spec: EvalSet, label: int | None, size: int
) -> tuple[Image.Image, str | None, dict[str, Any]]:
    """One evaluation image: (image, its captions one a line for retrieval else None, metadata)."""
    force = E.force_of(spec.name, spec.classes[label]) if label is not None else None
    scene = sample_scene(d, cfg["scene"], force)
    image = render_image(scene, size, cfg["scene"], d)
    text = "\n".join(clean_captions(scene, d, cfg["eval_captions"])) if label is None else None
    return image, text, {"scene": scene}


def world_files(cfg: Mapping) -> dict[str, Any]:
    """Extra JSON files at the world's root: none."""
    return {}
