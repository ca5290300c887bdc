"""The world's knobs: loading, preset choice and validation.

``load_config(None)`` gives the default preset's defaults; ``load_config("params.yaml")`` reads the
file's ``world:`` section (a file that *is* the section works too); ``load_config({...})`` takes a dict.
The section is either

- the preset layout ``{preset: NAME, presets: {NAME: {...knobs...}, ...}}`` (what params.yaml holds): the
  knobs of the chosen preset (``preset=`` argument, else the section's ``preset``, else ``shapes``), or
- the knobs of one preset directly (``{"caption": {...}}``; a resolved configuration, as a world's
  manifest records it, names its preset in ``preset`` unless it is ``shapes``).

Whatever is given is deep-merged over that preset's ``DEFAULTS`` (:mod:`clipf.world.presets`); unknown
keys, unknown presets and out-of-range values raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clipf.world.checks import ConfigError, merge
from clipf.world.presets import DEFAULT, PRESETS, get_preset, preset_of
from clipf.world.presets.shapes import FORMATS

DEFAULTS: dict[str, Any] = PRESETS[DEFAULT].DEFAULTS  # the shapes world's (the original) defaults

__all__ = ["DEFAULTS", "FORMATS", "ConfigError", "fingerprint", "load_config", "validate"]


def _section(source: str | Path | Mapping | None) -> Mapping:
    if source is None:
        return {}
    if isinstance(source, Mapping):
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
        return {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"world: expected a mapping, got {given!r}")
    return given


def load_config(source: str | Path | Mapping | None = None, preset: str | None = None) -> dict[str, Any]:
    """The full configuration of one world: ``source`` (a params.yaml path, its ``world`` section, or
    None) resolved for ``preset`` (None: the section's ``preset``, else ``shapes``), merged over that
    preset's defaults, validated."""
    given = dict(_section(source))
    if "presets" in given:  # the preset layout
        extra = set(given) - {"preset", "presets"}
        if extra:
            raise ConfigError(f"world.{sorted(extra)[0]}: unknown key (known: preset, presets)")
        presets = given["presets"] or {}
        if not isinstance(presets, Mapping):
            raise ConfigError(f"world.presets: expected a mapping of preset name -> knobs, got {presets!r}")
        for name in presets:
            get_preset(name)
        name = preset or given.get("preset") or DEFAULT
        module = get_preset(name)
        knobs = dict(presets.get(name) or {})
        where = f"world.presets.{name}"
    else:
        named = given.pop("preset", None)
        if preset is not None and named is not None and named != preset:
            raise ConfigError(f"world.preset: the configuration is of preset {named!r}, not {preset!r}")
        module = get_preset(preset or named)
        knobs, where = given, "world"
    inner = knobs.pop("preset", None)
    if inner not in (None, module.NAME):
        raise ConfigError(f"{where}.preset: {inner!r} inside the knobs of preset {module.NAME!r}")
    cfg = merge(module.DEFAULTS, knobs, where)
    validate(cfg)
    return cfg


def validate(cfg: Mapping) -> None:
    """Raise :class:`ConfigError` on the first bad value of a resolved configuration."""
    preset_of(dict(cfg)).validate(cfg)


def fingerprint(cfg: Mapping) -> str:
    """Short hash of a resolved configuration (recorded beside the data)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
