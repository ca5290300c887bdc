"""The world presets: each a module with ``NAME``, ``DEFAULTS``, ``validate``, and the generation hooks
``eval_sets(cfg)``, ``pair(d, cfg, size)``, ``eval_item(d, cfg, spec, label, size)``, ``world_files(cfg)``.

``shapes`` is the committed study's world (geometric shapes, frequent grounded words); ``concepts`` is a
world of 256 concepts named by rare English nouns under a Zipf prior (the paper's premise). Which one a
world uses is data: ``params.yaml: world.preset`` or ``clipf data synth --preset``.
"""

from __future__ import annotations

from types import ModuleType

from clipf.world.checks import ConfigError
from clipf.world.presets import concepts, shapes

PRESETS: dict[str, ModuleType] = {shapes.NAME: shapes, concepts.NAME: concepts}
DEFAULT = shapes.NAME


def get_preset(name: str | None) -> ModuleType:
    """The preset module called ``name`` (None: :data:`DEFAULT`); an unknown name raises
    :class:`ConfigError` naming the option and the known presets."""
    key = DEFAULT if name is None else name
    if key not in PRESETS:
        raise ConfigError(f"world.preset (--preset): unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[key]


def preset_of(cfg: dict) -> ModuleType:
    """The preset of a resolved configuration (no ``preset`` key: ``shapes``, the original format)."""
    return get_preset(cfg.get("preset", DEFAULT))
