"""The embedded image-caption worlds: synthetic scenes with web-like captions, in real data formats.

Two presets (:mod:`clipf.world.presets`, chosen with ``params.yaml: world.preset`` or ``clipf data synth
--preset``): ``shapes``, the committed study's world (geometric shapes; its class-naming colour and shape
words are frequent), and ``concepts`` (256 concepts named by rare English nouns under a Zipf prior,
phrase-structured alt-text). ``synthesize`` writes img2dataset-style webdataset shards (what
open_clip_train reads for CC3M/CC12M) and CLIP_benchmark ``wds/`` evaluation sets; ``stats`` measures the
captions; ``contact_sheet`` draws a grid of samples. ``clipf data synth|stats|show`` (:mod:`clipf.world.cli`)
drive them.
"""

from clipf.world.config import DEFAULTS, ConfigError, load_config
from clipf.world.generate import WorldError, is_world, shard_spec, synthesize
from clipf.world.presets import PRESETS, get_preset

__all__ = [
    "DEFAULTS",
    "PRESETS",
    "ConfigError",
    "WorldError",
    "contact_sheet",
    "get_preset",
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
