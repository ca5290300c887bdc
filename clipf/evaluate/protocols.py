"""The two zero-shot protocols: how the text side (class prompts, retrieval captions) is encoded.

``full`` (default; what clipf always did): the export's own open_clip tokenizer at the full context
(32 tokens): prompts are never masked nor cut, the K trained position rows extended (``--pos-extend``).

``masked`` (the authors' in-training protocol: open_clip_train's zero-shot evaluation is handed the
training tokenizer): every text encoded by the training masker of the phase that produced the
checkpoint — its masker, K, frequency table, threshold t, rule and ``--mask-option`` s, read from that
phase's ``clipf.json`` — then zero-padded to the export's context. Under ``--pos-extend repeat`` (the
default) a text of at most K tokens encodes on the 32-position export exactly as on the K-token tower
as trained (causal attention, pooled at the end token), so this *is* the K-token tower's number. A phase
trained without a masker (the fine-tune, the CLIP baseline: truncation at K = 32, a UTA student: the
teacher's text tower) has nothing to mask with: ``masked`` is ``full`` there, and says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipf.evaluate.base import EvalError, file_sha256
from clipf.files import FULL_CONTEXT

PROTOCOLS = ("full", "masked")
DEFAULT_PROTOCOL = "full"
LEGACY_RULE = "clamped"  # the only rule clipf had before `--freq-rule` was recorded in clipf.json


def check_protocols(protocols: str | Sequence[str] | None) -> list[str]:
    """The protocols asked for (one name or several), each checked, duplicates dropped."""
    if protocols is None:
        return [DEFAULT_PROTOCOL]
    names = [protocols] if isinstance(protocols, str) else list(protocols)
    if not names:
        raise EvalError(f"no prompt protocol given (known: {', '.join(PROTOCOLS)})")
    bad = [p for p in names if p not in PROTOCOLS]
    if bad:
        raise EvalError(f"unknown prompt protocol {bad[0]!r} (known: {', '.join(PROTOCOLS)})")
    return list(dict.fromkeys(names))


def trained_rule(config: Mapping) -> str | None:
    """The frequency rule a run was trained with: ``freq_rule`` of its clipf.json, else a ``rule`` mask
    option, else (a frequency run from before the rule was recorded) ``clamped``; None without the
    frequency masker."""
    stages = config.get("mask_schedule") or [{"masker": config.get("masker")}]
    if not any(s.get("masker") == "frequency" for s in stages):
        return None
    if config.get("freq_rule"):
        return str(config["freq_rule"])
    rule = (config.get("mask_options") or {}).get("rule")
    return str(rule) if rule else LEGACY_RULE


@dataclass(frozen=True)
class PromptSpec:
    """How one protocol encodes a checkpoint's text side. ``masker`` None: the export's own tokenizer at
    the full context (``full``, or ``masked`` on a phase trained without a masker)."""

    protocol: str
    masker: str | None = None
    k: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the masker's options (table as a path)
    seed: int = 0
    table_sha256: str | None = None
    config: str | None = None  # the clipf.json it was read from
    notes: tuple[str, ...] = ()

    @property
    def same_as_full(self) -> bool:
        """True when the texts are encoded as under ``full``."""
        return self.masker is None

    def key(self) -> dict | None:
        """What the cache key adds for this encoding (None for the full protocol's: the key of before)."""
        if self.same_as_full:
            return None
        opts = {k: v for k, v in self.options.items() if k != "table"}
        return {
            "protocol": self.protocol,
            "masker": self.masker,
            "k": self.k,
            "options": opts,
            "table_sha256": self.table_sha256,
            "seed": self.seed,
        }

    def record(self) -> dict:
        """The ``prompts`` block a result JSON carries."""
        return {
            "protocol": self.protocol,
            "masker": self.masker,
            "text_tokens": self.k,
            "options": {k: str(v) if k == "table" else v for k, v in self.options.items()},
            "table_sha256": self.table_sha256,
            "seed": self.seed,
            "same_as_full": self.same_as_full,
            "config": self.config,
            "notes": list(self.notes),
        }


def phase_config(
    ckpt_source: Path, export: Path | None, provenance: Mapping | None, run: Path
) -> tuple[dict, Path | None]:
    """The clipf.json of the phase that trained a checkpoint, and its path: beside its ``export/``, the
    phase of the ``.pt`` it was exported from (the export's provenance), or the ``.pt`` 's own phase."""
    candidates: list[Path] = []
    if export is not None:
        candidates.append(Path(export).parent / "clipf.json")
        src = (provenance or {}).get("checkpoint")
        if src:
            candidates.append(Path(src).parent.parent / "clipf.json")
    else:
        candidates.append(Path(ckpt_source).resolve().parent.parent / "clipf.json")
    for path in candidates:
        if path.is_file():
            try:
                return json.loads(path.read_text()), path
            except ValueError as exc:
                raise EvalError(f"{path}: unreadable JSON ({exc})") from exc
    return {}, None


def stage_at(config: Mapping, epoch: int | None = None) -> tuple[str | None, int | None]:
    """(masker, K) of the masking in effect at 1-based ``epoch`` (None: the last epoch trained)."""
    schedule = config.get("mask_schedule")
    if not schedule:
        return config.get("masker"), config.get("text_tokens")
    last = int(config.get("epochs") or 1) if epoch is None else int(epoch)
    current = schedule[0]
    for s in schedule:
        if int(s["start"]) <= last - 1:
            current = s
    return current["masker"], int(current["k"])


def prompt_spec(
    protocol: str,
    config: Mapping,
    config_path: Path | None,
    *,
    epoch: int | None = None,
    seed: int = 0,
    full_context: int = FULL_CONTEXT,
) -> PromptSpec:
    """The encoding of ``protocol`` for a checkpoint trained as ``config`` (its phase's clipf.json) says."""
    if protocol == "full":
        return PromptSpec("full")
    from clipf import masking

    where = str(config_path) if config_path else None
    if config_path is None:
        raise EvalError(
            "--prompts masked: no clipf.json describes how this checkpoint was trained (looked beside its "
            "export and its checkpoint); the masked protocol needs the training masker"
        )
    masker, k = stage_at(config, epoch)
    if masker in (None, "none") or (masker == "truncate" and int(k or full_context) >= full_context):
        what = "no text masker" if masker in (None, "none") else f"truncation at K = {k}"
        note = f"{where}: trained with {what}: the masked protocol is the full one here"
        return PromptSpec("masked", seed=seed, config=where, notes=(note,))
    fn = masking.get_masker(masker)
    allowed = masking.masker_options(fn)
    opts = {key: v for key, v in (config.get("mask_options") or {}).items() if key in allowed}
    notes: list[str] = []
    sha = None
    if fn is masking.frequency:
        table = config.get("freq_table")
        if not table:
            raise EvalError(f"{where}: a frequency run with no freq_table recorded: cannot mask its prompts")
        if not Path(table).is_file():
            raise EvalError(
                f"{where}: its frequency table {table} is gone: cannot mask the prompts as trained"
            )
        opts["table"] = table
        sha = file_sha256(table)
        if config.get("freq_threshold") is not None:
            opts["threshold"] = float(config["freq_threshold"])
        opts["rule"] = trained_rule(config)
        if not config.get("freq_rule") and "rule" not in (config.get("mask_options") or {}):
            notes.append(f"{where}: no freq_rule recorded (trained before --freq-rule): rule {LEGACY_RULE}")
    pos = config.get("pos_extend") or "repeat"
    if pos != "repeat":
        notes.append(
            f"{where}: --pos-extend {pos}: the export's first {k} position rows are not the trained ones, so "
            "masked prompts on it are not the K-token tower's encoding"
        )
    return PromptSpec("masked", masker, int(k), opts, seed, sha, where, tuple(notes))


class PaddedTokenizer:
    """``texts -> LongTensor[N, context]``: a K-token tokenizer's ids zero-padded to ``context``."""

    def __init__(self, inner: Callable, k: int, context: int):
        if k > context:
            raise EvalError(f"masked prompts of K = {k} tokens do not fit the export's {context} positions")
        self.inner, self.k, self.context_length = inner, int(k), int(context)

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None):
        import torch

        ids = self.inner(texts)
        pad = self.context_length - ids.shape[1]
        return torch.nn.functional.pad(ids, (0, pad)) if pad > 0 else ids


def masked_tokenizer(spec: PromptSpec, context: int) -> PaddedTokenizer:
    """The training masker of ``spec`` (a fresh, seeded :class:`clipf.masking.MaskingTokenizer`: the same
    masks whatever was evaluated before), zero-padded to ``context`` positions."""
    from clipf import masking

    try:
        inner = masking.MaskingTokenizer(
            spec.masker, spec.k, seed=spec.seed, follow_torch_seed=False, **spec.options
        )
    except (ValueError, OSError) as exc:
        raise EvalError(f"{spec.config}: cannot rebuild its training masker ({exc})") from exc
    return PaddedTokenizer(inner, spec.k, context)


def protocol_dir(out_dir: os.PathLike | str, protocol: str) -> Path:
    """Where a checkpoint's results of ``protocol`` go: ``RUN/eval/<checkpoint>/`` for ``full`` (as
    always), ``RUN/eval/<checkpoint>/<protocol>/`` for the others."""
    return Path(out_dir) if protocol == DEFAULT_PROTOCOL else Path(out_dir) / protocol
