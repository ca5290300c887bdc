"""What a ``clipf train`` command line means: clipf's options, the masking :class:`Stage` s, the
resolved :class:`Plan` and :func:`make_plan`, which checks everything before any training starts.

:func:`make_plan` is given the objective (a :class:`clipf.engine.Objective`; :mod:`clipf.train` looks
it up by name in :mod:`clipf.objectives`) and asks it for its part of the plan *before* the plan is
checked: its own options, the open_clip_train flags it implies, and the final plan (UTA: the teacher, its
text context). A plan is not changed after it was checked.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipf import export as E
from clipf import models
from clipf.engine import preflight
from clipf.engine.adapters import EpochTokenizer
from clipf.engine.preflight import UsageError, given, image_size, preprocess_overrides

MIN_TEXT_TOKENS, MAX_TEXT_TOKENS = 3, 77
FINETUNE_LR, FINETUNE_WARMUP_EPOCHS = 1e-5, 0.1
DEFAULT_OBJECTIVE = "clip"
DEFAULT_SAVE_MINUTES, DEFAULT_KEEP_STEPS = 30.0, 2


# =========================================================================== options
def clipf_parser() -> argparse.ArgumentParser:
    """clipf's own options (everything else goes to open_clip_train, or to the objective)."""
    p = argparse.ArgumentParser(
        prog="clipf train",
        add_help=False,
        allow_abbrev=False,
        description="open_clip_train + text masking. All open_clip_train options are accepted; "
        "clipf adds these.",
    )
    g = p.add_argument_group("clipf text masking")
    g.add_argument("--reduction-mask", default=None, metavar="NAME", help="text masker")
    g.add_argument("--text-tokens", type=int, default=None, metavar="K", help="text tokens in training")
    g.add_argument("--force-text-dropout", type=float, default=None, metavar="F", help="K = round(N(1-F))")
    g.add_argument("--mask-probability-file", "--freq-table", dest="freq_table", default=None, metavar="PATH")
    g.add_argument("--freq-threshold", type=float, default=None, metavar="T")
    g.add_argument(
        "--freq-rule",
        default=None,
        metavar="RULE",
        help="frequency masker's P rule: authors (default: 1 - round(sqrt(t/f), 6), no clamp) | clamped",
    )
    g.add_argument("--mask-option", action="append", default=[], metavar="KEY=VALUE")
    g.add_argument("--mask-schedule", default=None, metavar="SPEC", help="e.g. 0:frequency:8,5:block:8")
    g.add_argument("--full-context-length", type=int, default=None, metavar="N", help="default 32")
    g.add_argument("--pos-extend", choices=E.POS_EXTEND, default=E.DEFAULT_POS_EXTEND)
    g = p.add_argument_group("clipf training")
    g.add_argument("--lr-warmup-epochs", type=float, default=None, metavar="F")
    g.add_argument("--finetune", action="store_true", help="unmasked fine-tune preset")
    g.add_argument("--objective", default=None, metavar="NAME", help="clip | siglip | uta (clipf.objectives)")
    g.add_argument("--logs-dir", default=None, metavar="DIR", help="= --logs")
    g.add_argument("--no-export", action="store_true", help="skip the final export")
    g = p.add_argument_group("clipf checkpoints and preemption")
    g.add_argument(
        "--save-every-steps", type=int, default=None, metavar="N", help="step checkpoint every N steps"
    )
    g.add_argument(
        "--save-every-minutes", type=float, default=DEFAULT_SAVE_MINUTES, metavar="M",
        help=f"step checkpoint every M minutes of wall clock (rank 0's; default {DEFAULT_SAVE_MINUTES:g}; 0: off)",
    )  # fmt: skip
    g.add_argument(
        "--keep-step-checkpoints", type=int, default=DEFAULT_KEEP_STEPS, metavar="K",
        help=f"keep the newest K step checkpoints (default {DEFAULT_KEEP_STEPS}; epoch checkpoints are kept)",
    )  # fmt: skip
    return p


def objective_name(argv: Sequence[str]) -> str:
    """The ``--objective`` of a command line (``clip`` when not given)."""
    argv = [str(a) for a in argv]
    for a, b in zip(argv, [*argv[1:], ""], strict=True):
        if a == "--objective":
            return b
        if a.startswith("--objective="):
            return a.split("=", 1)[1]
    return DEFAULT_OBJECTIVE


@dataclass(frozen=True)
class Stage:
    """One span of a masking schedule: from 0-based epoch ``start`` on, ``masker`` at K = ``k``."""

    start: int
    masker: str
    k: int


@dataclass(frozen=True)
class Plan:
    """The resolved run: what clipf adds, and the argv handed to open_clip_train. Frozen: it is built,
    handed to its objective (:meth:`clipf.engine.Objective.plan`), checked, and not changed after."""

    argv: list[str]
    oc_argv: list[str]
    oc: argparse.Namespace
    model: str
    full_context: int
    train_context: int
    stages: list[Stage] = field(default_factory=list)
    masker_arg: str | None = None
    freq_table: str | None = None
    freq_threshold: float | None = None
    freq_rule: str | None = None  # the frequency masker's rule (None: no stage uses it)
    mask_options: dict[str, Any] = field(default_factory=dict)
    force_text_dropout: float | None = None
    pos_extend: str = E.DEFAULT_POS_EXTEND
    warmup_epochs: float | None = None
    finetune: bool = False
    objective: str = DEFAULT_OBJECTIVE
    export: bool = True
    notes: list[str] = field(default_factory=list)
    objective_plan: Any = None  # what the objective resolved (UTA: its UTAPlan); None for CLIP
    save_every_steps: int | None = None  # step checkpoints (clipf.engine.resume)
    save_every_minutes: float | None = DEFAULT_SAVE_MINUTES
    keep_step_checkpoints: int = DEFAULT_KEEP_STEPS

    def replace(self, **changes: Any) -> Plan:
        """A copy with ``changes`` (what an objective's :meth:`~clipf.engine.Objective.plan` returns)."""
        return dataclasses.replace(self, **changes)

    @property
    def masked(self) -> bool:
        """Whether the training text is masked."""
        return bool(self.stages)

    def masker_opts(self, masker: str) -> dict[str, Any]:
        """The options of one masker: the --mask-option pairs it takes, the table, threshold and rule."""
        from clipf import masking

        allowed = masking.masker_options(masking.get_masker(masker))
        opts = {k: v for k, v in self.mask_options.items() if k in allowed}
        if masking.get_masker(masker) is masking.frequency:
            if self.freq_table is not None:
                opts["table"] = self.freq_table
            if self.freq_threshold is not None:
                opts["threshold"] = self.freq_threshold
            if self.freq_rule is not None:
                opts["rule"] = self.freq_rule
        return opts

    def train_tokenizer(self) -> Callable | None:
        """The training split's tokenizer (None: unmasked, use open_clip's at N)."""
        from clipf import masking

        if not self.stages:
            return None
        toks = [
            masking.MaskingTokenizer(s.masker, s.k, seed=self.oc.seed, **self.masker_opts(s.masker))
            for s in self.stages
        ]
        if len(toks) == 1:
            return toks[0]
        return EpochTokenizer([s.start for s in self.stages], toks, self.train_context)

    def stage(self, epoch: int) -> Stage | None:
        """The masking stage of 0-based ``epoch`` (None: unmasked)."""
        current = None
        for s in self.stages:
            if s.start <= epoch:
                current = s
        return current

    def to_json(self) -> dict[str, Any]:
        """The resolved config as ``RUN/clipf.json`` records it."""
        oc = self.oc
        first = self.stages[0] if self.stages else None

        return {
            "model": self.model,
            "masker": first.masker if first else "none",
            "masker_arg": self.masker_arg,
            "text_tokens": first.k if first else self.full_context,
            "text_context": self.train_context,
            "full_context_length": self.full_context,
            "force_text_dropout": self.force_text_dropout,
            "mask_schedule": [vars(s) for s in self.stages] if len(self.stages) > 1 else None,
            "freq_table": str(Path(self.freq_table).resolve()) if self.freq_table else None,
            "freq_threshold": self.freq_threshold,
            "freq_rule": self.freq_rule,
            "mask_options": self.mask_options,
            "image_mask": oc.force_patch_dropout or 0.0,
            "pos_extend": self.pos_extend,
            "objective": self.objective,
            "finetune": self.finetune,
            "pretrained": oc.pretrained or None,
            "seed": oc.seed,
            "epochs": oc.epochs,
            "batch_size": oc.batch_size,
            "lr": oc.lr,
            "wd": oc.wd,
            "warmup": oc.warmup,
            "lr_warmup_epochs": self.warmup_epochs,
            "precision": oc.precision,
            "image_size": image_size(oc),
            "quick_gelu": bool(oc.force_quick_gelu),
            "custom_text": bool(oc.force_custom_text),
            "preprocess": preprocess_overrides(oc),
            "train_data": oc.train_data,
            "train_num_samples": oc.train_num_samples,
            "dataset_type": oc.dataset_type,
            "argv": self.argv,
            "open_clip_train_argv": self.oc_argv,
            "notes": self.notes,
        }


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_schedule(spec: str, default_masker: str | None, default_k: int | None) -> list[Stage]:
    """``"0:frequency:8,5:block:8"`` -> stages; an entry's K may be left out (``5:block``: the base K).
    Without an entry at epoch 0 the base masker / K (``--reduction-mask`` / ``--text-tokens``) start."""
    stages: dict[int, Stage] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (2, 3):
            raise UsageError(f"--mask-schedule entry {entry!r} is not EPOCH:MASKER[:K] (e.g. 5:block:8)")
        try:
            start = int(parts[0])
            k = int(parts[2]) if len(parts) == 3 and parts[2] != "" else default_k
        except ValueError:
            raise UsageError(f"--mask-schedule entry {entry!r}: EPOCH and K must be integers") from None
        if start < 0:
            raise UsageError(f"--mask-schedule entry {entry!r}: epoch must be >= 0")
        if k is None:
            raise UsageError(f"--mask-schedule entry {entry!r} has no K and no --text-tokens is given")
        if start in stages:
            raise UsageError(f"--mask-schedule: epoch {start} appears twice")
        stages[start] = Stage(start, parts[1], k)
    if not stages:
        raise UsageError("--mask-schedule is empty")
    if 0 not in stages:
        if default_masker is None and default_k is None:
            raise UsageError(
                "--mask-schedule must start at epoch 0 (or give --reduction-mask / --text-tokens for "
                "the epochs before its first entry)"
            )
        stages[0] = Stage(0, default_masker or "truncate", default_k or min(s.k for s in stages.values()))
    return [stages[e] for e in sorted(stages)]


# =========================================================================== planning
def make_plan(argv: Sequence[str], objective: Any) -> Plan:
    """Parse and check a command line for ``objective`` (a :class:`clipf.engine.Objective`, the one its
    ``--objective`` names); every error is a :class:`UsageError` raised before training.

    The objective takes its own options off the command line first (:meth:`~clipf.engine.Objective.parse`),
    completes the plan (:meth:`~clipf.engine.Objective.plan`), and then the whole plan is checked
    (:func:`check_plan`)."""
    argv = [str(a) for a in argv]
    options, rest = objective.parse(argv)
    plan = objective.plan(_resolve(argv, rest, objective.oc_flags), options)
    check_plan(plan)
    return plan


def check_plan(plan: Plan) -> None:
    """The checks of a finished plan that need more than its options (:mod:`clipf.engine.preflight`):
    tokenizer and masker options, data, run folder, ``--pretrained``."""
    oc = plan.oc
    if plan.stages:
        preflight.check_bpe_tokenizer(oc.model)
        try:
            plan.train_tokenizer()  # loads the frequency table, checks masker options
        except (ValueError, TypeError, OSError, LookupError) as exc:
            raise UsageError(f"text masking: {exc}") from None
    preflight.check_data(oc)
    preflight.check_run_dir(oc)
    if oc.pretrained:
        preflight.check_pretrained(oc, plan.train_context)


def _resolve(argv: list[str], rest: list[str], oc_flags: Sequence[str]) -> Plan:
    """clipf's and open_clip_train's options of ``rest`` (the objective's own taken off) -> a plan, its
    options checked: model, N, K, stages, masker options."""
    from open_clip_train.params import parse_args as oc_parse_args

    from clipf import freq, masking

    try:
        ns, rest = clipf_parser().parse_known_args([a for a in rest if a != "--"])
    except SystemExit as exc:  # argparse printed its message
        raise UsageError(f"bad clipf option (exit {exc.code})") from None
    notes: list[str] = []
    rest = _rewrite_warmup(rest, ns)
    if ns.logs_dir is not None:
        if given(rest, "--logs"):
            raise UsageError("give --logs or --logs-dir, not both")
        rest += ["--logs", ns.logs_dir]
    rest += [f for f in oc_flags if not given(rest, f)]
    if not given(rest, "--report-to"):
        rest += ["--report-to", "tensorboard"]
    masked_args = [
        ns.reduction_mask is not None,
        ns.text_tokens is not None,
        ns.force_text_dropout is not None,
        ns.mask_schedule is not None,
    ]
    if ns.finetune:
        if any(masked_args):
            raise UsageError("--finetune is unmasked fine-tuning: drop the text-masking options")
        if not given(rest, "--lr"):
            rest += ["--lr", str(FINETUNE_LR)]
        if not given(rest, "--warmup") and ns.lr_warmup_epochs is None:
            ns.lr_warmup_epochs = FINETUNE_WARMUP_EPOCHS
        if not given(rest, "--force-patch-dropout"):
            rest += ["--force-patch-dropout", "0"]
    try:
        oc = oc_parse_args(rest)
    except SystemExit as exc:  # argparse printed its message
        raise UsageError(f"open_clip_train rejected the options above (exit {exc.code})") from None
    if ns.finetune and not oc.pretrained:
        raise UsageError("--finetune needs --pretrained PATH (the pre-trained checkpoint)")
    if ns.lr_warmup_epochs is not None and ns.lr_warmup_epochs < 0:
        raise UsageError(f"--lr-warmup-epochs must be >= 0, got {ns.lr_warmup_epochs}")

    models.register()
    native = preflight.check_model(oc.model)

    # ---- full context N and the training K
    forced = oc.force_context_length
    if ns.full_context_length is not None:
        full = ns.full_context_length
    elif forced is not None and not any(masked_args):
        full = forced
    else:
        full = min(E.FULL_CONTEXT, native) if native else E.FULL_CONTEXT
    if not MIN_TEXT_TOKENS <= full <= 10_000:
        raise UsageError(f"--full-context-length must be >= {MIN_TEXT_TOKENS}, got {full}")
    if forced is not None and not any(masked_args) and forced != full:
        raise UsageError(f"--force-context-length {forced} and --full-context-length {full} disagree")
    if forced is not None and any(masked_args):
        raise UsageError(
            "with text masking the tower's context is K: use --text-tokens, not --force-context-length"
        )

    k = ns.text_tokens
    if ns.force_text_dropout is not None:
        f = ns.force_text_dropout
        if not 0.0 <= f < 1.0:
            raise UsageError(f"--force-text-dropout must be in [0, 1), got {f}")
        k_drop = round(full * (1.0 - f))
        if k is not None and k != k_drop:
            raise UsageError(
                f"--text-tokens {k} and --force-text-dropout {f} (K={k_drop} of {full}) disagree"
            )
        k = k_drop
    if ns.mask_schedule is not None:
        stages = parse_schedule(ns.mask_schedule, ns.reduction_mask, k)
    elif any(masked_args):
        stages = [Stage(0, ns.reduction_mask or "truncate", k if k is not None else full)]
    else:
        stages = []
    for s in stages:
        try:
            masking.get_masker(s.masker)
        except ValueError as exc:
            raise UsageError(f"--reduction-mask / --mask-schedule: {exc}") from None
    stages = [Stage(s.start, masking.ALIASES.get(s.masker, s.masker), s.k) for s in stages]
    for s in stages:
        if not MIN_TEXT_TOKENS <= s.k <= MAX_TEXT_TOKENS:
            raise UsageError(
                f"K (text tokens) must be in [{MIN_TEXT_TOKENS}, {MAX_TEXT_TOKENS}] (start + end token + at "
                f"least one word; open_clip's BPE context), got {s.k}"
            )
        if s.k > full:
            raise UsageError(f"K={s.k} exceeds the full context length N={full} (--full-context-length)")
        if s.start >= oc.epochs:
            notes.append(f"mask-schedule entry at epoch {s.start} is never reached with --epochs {oc.epochs}")
    train_context = max((s.k for s in stages), default=full)
    if len({s.k for s in stages}) > 1:
        notes.append(
            f"K changes across the schedule: the text tower runs at K={train_context}; smaller-K epochs are "
            "zero-padded (identical features, no speed-up)"
        )

    mask_options = {}
    for item in ns.mask_option:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--mask-option {item!r} is not KEY=VALUE")
        mask_options[key.strip()] = _value(val)
    for key in ("table", "threshold", "rule"):
        if key in mask_options:
            raise UsageError(f"--mask-option {key}=...: use --freq-table / --freq-threshold / --freq-rule")
    takes = {o for s in stages for o in masking.masker_options(masking.get_masker(s.masker))}
    unknown = sorted(set(mask_options) - takes)
    if unknown:
        raise UsageError(
            f"--mask-option {', '.join(unknown)}: not an option of the masker(s) in use "
            f"({', '.join(sorted(takes - {'table', 'threshold', 'rule'})) or 'none'})"
        )
    if ns.freq_table is not None and not Path(ns.freq_table).is_file():
        raise UsageError(f"--mask-probability-file / --freq-table {ns.freq_table}: no such file")
    uses_freq = any(masking.get_masker(s.masker) is masking.frequency for s in stages)
    if ns.freq_table is not None and not uses_freq:
        notes.append("--freq-table given but no stage uses the frequency masker: ignored")
    if ns.freq_threshold is not None and ns.freq_threshold <= 0:
        raise UsageError(f"--freq-threshold must be > 0, got {ns.freq_threshold}")
    freq_rule = None
    if ns.freq_rule is not None and ns.freq_rule not in freq.RULES:
        raise UsageError(f"--freq-rule {ns.freq_rule!r}: one of {', '.join(freq.RULES)}")
    if ns.freq_rule is not None and not uses_freq:
        names = ", ".join(sorted({s.masker for s in stages})) or "none (unmasked)"
        raise UsageError(
            f"--freq-rule is the frequency masker's option; the masker(s) in use: {names} "
            "(--reduction-mask frequency, or a frequency stage in --mask-schedule)"
        )
    if uses_freq:
        freq_rule = ns.freq_rule or freq.DEFAULT_RULE

    if ns.save_every_steps is not None and ns.save_every_steps < 1:
        raise UsageError(f"--save-every-steps must be >= 1, got {ns.save_every_steps}")
    if ns.save_every_minutes is not None and ns.save_every_minutes < 0:
        raise UsageError(f"--save-every-minutes must be >= 0 (0: off), got {ns.save_every_minutes}")
    if ns.keep_step_checkpoints < 1:
        raise UsageError(f"--keep-step-checkpoints must be >= 1, got {ns.keep_step_checkpoints}")

    oc_argv = list(rest) + ["--force-context-length", str(train_context)]
    oc = oc_parse_args(oc_argv)
    return Plan(
        argv=argv,
        oc_argv=oc_argv,
        oc=oc,
        model=oc.model,
        full_context=full,
        train_context=train_context,
        stages=stages,
        masker_arg=ns.reduction_mask,
        freq_table=ns.freq_table,
        freq_threshold=ns.freq_threshold,
        freq_rule=freq_rule,
        mask_options=mask_options,
        force_text_dropout=ns.force_text_dropout,
        pos_extend=ns.pos_extend,
        warmup_epochs=ns.lr_warmup_epochs,
        finetune=ns.finetune,
        objective=ns.objective or DEFAULT_OBJECTIVE,
        export=not ns.no_export,
        notes=notes,
        save_every_steps=ns.save_every_steps,
        save_every_minutes=ns.save_every_minutes or None,
        keep_step_checkpoints=ns.keep_step_checkpoints,
    )


def _rewrite_warmup(rest: list[str], ns: argparse.Namespace) -> list[str]:
    """``--warmup 0.1`` (a fraction, not an int) is read as ``--lr-warmup-epochs 0.1``."""
    out: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--warmup" and i + 1 < len(rest) or arg.startswith("--warmup="):
            value = arg.split("=", 1)[1] if "=" in arg else rest[i + 1]
            step = 1 if "=" in arg else 2
            if not re.fullmatch(r"\d+", value) and re.fullmatch(r"\d*\.\d*(e-?\d+)?", value):
                if ns.lr_warmup_epochs is not None:
                    raise UsageError("give --lr-warmup-epochs or a fractional --warmup, not both")
                ns.lr_warmup_epochs = float(value)
                i += step
                continue
        out.append(arg)
        i += 1
    return out
