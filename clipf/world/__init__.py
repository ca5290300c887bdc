"""The embedded image-caption world: synthetic scenes with web-like captions, in real data formats.

``synthesize`` writes img2dataset-style webdataset shards (what open_clip_train reads for CC3M/CC12M)
and CLIP_benchmark ``wds/`` evaluation sets; ``stats`` measures the captions; ``contact_sheet`` draws a
grid of samples. ``clipf data synth|stats|show`` (:mod:`clipf.world.cli`) drive them.
"""

from clipf.world.config import DEFAULTS, ConfigError, load_config
from clipf.world.generate import WorldError, is_world, shard_spec, synthesize

__all__ = [
    "DEFAULTS",
    "ConfigError",
    "WorldError",
    "contact_sheet",
    "is_world",
    "load_config",
    "shard_spec",
    "stats",
    "synthesize",
]


def stats(*args, **kwargs):
    """See :func:`clipf.world.stats.stats`."""
    from clipf.world.stats import stats as _stats

    return _stats(*args, **kwargs)


def contact_sheet(*args, **kwargs):
    """See :func:`clipf.world.sheet.contact_sheet`."""
    from clipf.world.sheet import contact_sheet as _sheet

    return _sheet(*args, **kwargs)
