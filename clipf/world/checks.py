"""Checks shared by every world preset: the error type, deep-merging knobs over defaults, and value checks
whose messages name the key (``world.caption.noise: must be a probability in [0, 1], got 1.5``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """A bad ``world:`` setting (the message names the key)."""


def merge(base: dict, over: Mapping, path: str = "world") -> dict:
    """``over`` deep-merged over a copy of ``base``; a key ``base`` lacks raises :class:`ConfigError`."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        where = f"{path}.{key}"
        if key not in base:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(base)})")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a mapping, got {value!r}")
            out[key] = merge(base[key], value, where)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_prob(cfg: Mapping, key: str, where: str) -> None:
    """``cfg[key]`` is a probability."""
    v = cfg[key]
    if not isinstance(v, int | float) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
        raise ConfigError(f"{where}.{key}: must be a probability in [0, 1], got {v!r}")


def check_number(v: Any, where: str, lo: float, hi: float = float("inf"), integer: bool = False) -> None:
    """``v`` is a number (an integer when ``integer``) in [lo, hi]."""
    kind = int if integer else (int, float)
    if isinstance(v, bool) or not isinstance(v, kind) or not lo <= v <= hi:
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: must be {what} in [{lo}, {hi}], got {v!r}")


def check_subset(values: Any, known: Mapping, where: str, least: int) -> None:
    """``values`` is a list of at least ``least`` distinct names of ``known``."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{where}: expected a list of names")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ConfigError(f"{where}: unknown {', '.join(map(repr, unknown))} (known: {', '.join(known)})")
    if len(set(values)) != len(values) or len(values) < least:
        raise ConfigError(f"{where}: needs at least {least} distinct names, got {values!r}")


def check_weights(weights: Any, where: str, names: tuple[str, ...] | None = None) -> None:
    """``weights``: a mapping of non-negative numbers (keys among ``names`` when given), not all zero."""
    if not isinstance(weights, Mapping) or not weights:
        raise ConfigError(f"{where}: expected a mapping of weights, got {weights!r}")
    if names is not None and set(weights) - set(names):
        raise ConfigError(f"{where}: weights of {' / '.join(names)}, got {weights!r}")
    for key, value in weights.items():
        check_number(value, f"{where}.{key}", 0, 1e9)
    if sum(weights.values()) <= 0:
        raise ConfigError(f"{where}: weights of {' / '.join(names or weights)}, got {weights!r}")


def check_caption_length(ln: Mapping, where: str = "world.caption.length") -> None:
    """A caption-length spec ``{median, sigma, min, max}`` (words, lognormal, clipped)."""
    for key in ("median", "sigma", "min", "max"):
        if key not in ln:
            raise ConfigError(f"{where}.{key}: missing")
    check_number(ln["min"], f"{where}.min", 1, 200, integer=True)
    check_number(ln["max"], f"{where}.max", ln["min"], 200, integer=True)
    check_number(ln["median"], f"{where}.median", ln["min"], ln["max"])
    check_number(ln["sigma"], f"{where}.sigma", 0, 3)


def check_common(cfg: Mapping, formats: tuple[str, ...]) -> None:
    """The knobs every preset has: shard size, image format and quality, eval-set sizes."""
    check_number(cfg["shard_size"], "world.shard_size", 1, 9999, integer=True)
    if cfg["image_format"] not in formats:
        raise ConfigError(f"world.image_format: one of {', '.join(formats)}, got {cfg['image_format']!r}")
    check_number(cfg["jpeg_quality"], "world.jpeg_quality", 1, 100, integer=True)
    check_number(cfg["eval_size"], "world.eval_size", 0, 10**7, integer=True)
    check_number(cfg["eval_captions"], "world.eval_captions", 1, 20, integer=True)
