"""The world's knobs: defaults (mirroring ``params.yaml: world:``), loading and validation.

``load_config(None)`` gives the defaults; ``load_config("params.yaml")`` reads the file's ``world:``
section (a file that *is* the section works too); ``load_config({...})`` takes a dict. Whatever is given
is deep-merged over :data:`DEFAULTS`; unknown keys and out-of-range values raise :class:`ConfigError`
naming the key.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clipf.world import lexicon as L

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

FORMATS = ("png", "jpg")


class ConfigError(ValueError):
    """A bad ``world:`` setting (the message names the key)."""


def _merge(base: dict, over: Mapping, path: str = "world") -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        where = f"{path}.{key}"
        if key not in base:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(base)})")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a mapping, got {value!r}")
            out[key] = _merge(base[key], value, where)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(source: str | Path | Mapping | None = None) -> dict[str, Any]:
    """The full world configuration: ``source`` (a params.yaml path, its ``world`` section, or None)
    merged over :data:`DEFAULTS`, validated."""
    if source is None:
        given: Mapping = {}
    elif isinstance(source, Mapping):
        given = source.get("world", source) if "world" in source else source
    else:
        import yaml

        path = Path(source)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a YAML mapping")
        given = data.get("world", data) if "world" in data else data
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"world: expected a mapping, got {given!r}")
    cfg = _merge(DEFAULTS, given)
    validate(cfg)
    return cfg


def _prob(cfg: Mapping, key: str, where: str) -> None:
    v = cfg[key]
    if not isinstance(v, int | float) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
        raise ConfigError(f"{where}.{key}: must be a probability in [0, 1], got {v!r}")


def _number(v: Any, where: str, lo: float, hi: float = float("inf"), integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(v, bool) or not isinstance(v, kind) or not lo <= v <= hi:
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: must be {what} in [{lo}, {hi}], got {v!r}")


def _subset(values: Any, known: Mapping, where: str, least: int) -> None:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{where}: expected a list of names")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ConfigError(f"{where}: unknown {', '.join(map(repr, unknown))} (known: {', '.join(known)})")
    if len(set(values)) != len(values) or len(values) < least:
        raise ConfigError(f"{where}: needs at least {least} distinct names, got {values!r}")


def validate(cfg: Mapping) -> None:
    """Raise :class:`ConfigError` on the first bad value."""
    _number(cfg["shard_size"], "world.shard_size", 1, 9999, integer=True)
    if cfg["image_format"] not in FORMATS:
        raise ConfigError(f"world.image_format: one of {', '.join(FORMATS)}, got {cfg['image_format']!r}")
    _number(cfg["jpeg_quality"], "world.jpeg_quality", 1, 100, integer=True)
    _number(cfg["eval_size"], "world.eval_size", 0, 10**7, integer=True)
    _number(cfg["eval_captions"], "world.eval_captions", 1, 20, integer=True)
    s = cfg["scene"]
    _subset(s["shapes"], L.SHAPES, "world.scene.shapes", 2)
    _subset(s["colors"], L.COLORS, "world.scene.colors", 2)
    _subset(s["sizes"], L.SIZES, "world.scene.sizes", 1)
    _subset(s["positions"], L.POSITIONS, "world.scene.positions", 1)
    _subset(s["backgrounds"], L.BACKGROUNDS, "world.scene.backgrounds", 1)
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
    _prob(s, "same_extras", "world.scene")
    _number(s["rotation"], "world.scene.rotation", 0, 180)
    for key in ("scale_jitter", "aspect_jitter"):
        _number(s[key], f"world.scene.{key}", 0, 0.5)
    _number(s["position_jitter"], "world.scene.position_jitter", 0, 0.2)
    _number(s["color_jitter"], "world.scene.color_jitter", 0, 100)
    _number(s["background_jitter"], "world.scene.background_jitter", 0, 100)
    _number(s["noise"], "world.scene.noise", 0, 100)
    _number(s["min_contrast"], "world.scene.min_contrast", 0, 300)
    _number(s["antialias"], "world.scene.antialias", 1, 8, integer=True)
    c = cfg["caption"]
    ln = c["length"]
    for key in ("median", "sigma", "min", "max"):
        if key not in ln:
            raise ConfigError(f"world.caption.length.{key}: missing")
    _number(ln["min"], "world.caption.length.min", 1, 200, integer=True)
    _number(ln["max"], "world.caption.length.max", ln["min"], 200, integer=True)
    _number(ln["median"], "world.caption.length.median", ln["min"], ln["max"])
    _number(ln["sigma"], "world.caption.length.sigma", 0, 3)
    n_vocab = len(L.filler_vocabulary()[0])
    _number(c["vocab_size"], "world.caption.vocab_size", 10, n_vocab, integer=True)
    _number(c["rare_vocab"], "world.caption.rare_vocab", c["vocab_size"], n_vocab, integer=True)
    _number(c["rare_words"], "world.caption.rare_words", 0, 20)
    for key in ("shape", "color", "size", "position", "extras", "background"):
        if key not in c["mention"]:
            raise ConfigError(f"world.caption.mention.{key}: missing")
        _prob(c["mention"], key, "world.caption.mention")
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
        _prob(c, key, "world.caption")
    _number(c["max_hashtags"], "world.caption.max_hashtags", 1, 20, integer=True)
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
        _number(case[key], f"world.caption.case.{key}", 0, 1e9)


def fingerprint(cfg: Mapping) -> str:
    """Short hash of a resolved configuration (recorded beside the data)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
