"""The training engine: open_clip_train's ``main`` with clipf plugged in (wrap, don't fork).

- :mod:`~clipf.engine.plan`: clipf's options, :class:`Stage`, :class:`Plan`, :func:`make_plan`.
- :mod:`~clipf.engine.preflight`: :class:`UsageError` and the checks run before training; small readers
  of arguments and environment (:func:`given`, :func:`env_rank`, :func:`image_size`, ...).
- :mod:`~clipf.engine.adapters`: data-pipeline pieces (seeded shuffle, counting handler / loader,
  :class:`EpochTokenizer`).
- :mod:`~clipf.engine.resume`: step checkpoints and exact resume (positions, damaged files, identities,
  RNG states, stop requests); :class:`Run` uses it.
- :mod:`~clipf.engine.run`: :class:`Run` (the functions swapped into open_clip_train, records, export),
  :class:`Objective` (what an objective of :mod:`clipf.objectives` changes), :class:`LossMeter`,
  :func:`unwrap`.

Imports go plan -> preflight, adapters; run -> plan, preflight, adapters; none to clipf.objectives (the
entry point :mod:`clipf.train` looks an objective up and hands it to :func:`make_plan`). The
third-party names the engine replaces are listed in :mod:`clipf.upstream`.
"""

from clipf.engine.adapters import (
    CountingLoader,
    EpochTokenizer,
    SeededShuffle,
    count_and_continue,
    has_caption_and_image,
)
from clipf.engine.plan import (
    FINETUNE_LR,
    FINETUNE_WARMUP_EPOCHS,
    MAX_TEXT_TOKENS,
    MIN_TEXT_TOKENS,
    Plan,
    Stage,
    check_plan,
    clipf_parser,
    make_plan,
    objective_name,
    parse_schedule,
)
from clipf.engine.preflight import (
    UsageError,
    env_rank,
    env_world,
    given,
    image_size,
    preprocess_overrides,
    read_state_dict,
)
from clipf.engine.run import (
    LossMeter,
    Objective,
    Preempted,
    Run,
    hms,
    image_tokens,
    last_checkpoint,
    unwrap,
)

__all__ = [
    "FINETUNE_LR",
    "FINETUNE_WARMUP_EPOCHS",
    "MAX_TEXT_TOKENS",
    "MIN_TEXT_TOKENS",
    "CountingLoader",
    "EpochTokenizer",
    "LossMeter",
    "Objective",
    "Plan",
    "Preempted",
    "Run",
    "SeededShuffle",
    "Stage",
    "UsageError",
    "check_plan",
    "clipf_parser",
    "count_and_continue",
    "env_rank",
    "env_world",
    "given",
    "has_caption_and_image",
    "hms",
    "image_size",
    "image_tokens",
    "last_checkpoint",
    "make_plan",
    "objective_name",
    "parse_schedule",
    "preprocess_overrides",
    "read_state_dict",
    "unwrap",
]
