"""Masked CLIP pre-training and unmasked fine-tuning: open_clip_train with clipf's text masking plugged in.

Launch exactly as open_clip_train (``-m training.main`` of the seed README becomes ``-m clipf.train``)::

    torchrun --nproc_per_node=4 -m clipf.train --train-data "/data/cc12m/cc12m-train-{0000..2175}.tar" \\
        --train-num-samples 10968539 --dataset-type webdataset --model ViT-B-16 --batch-size 896 \\
        --force-patch-dropout 0.75 --force-text-dropout 0.75 --reduction-mask frequency \\
        --mask-probability-file cc12m_fq_1e6_words.json --lr 1e-3 --wd 0.2 --epochs 30 --precision amp
    torchrun --nproc_per_node=4 -m clipf.train ... --pretrained RUN/pretrain/checkpoints/epoch_30.pt \\
        --lr 1e-5 --lr-warmup-epochs 0.1 --epochs 1          # or: --finetune (that preset)
    clipf train ...                   # one process; clipf.train.main(argv) / cli(argv) in Python

Every open_clip_train option is accepted and means what it means there; clipf adds:

``--reduction-mask NAME``   text masker: truncate | block | random | shuffle | syntax | frequency
                            (aliases of the reference CLI: ``simple`` = block, ``None`` = truncate)
``--text-tokens K``         text tokens the tower sees in training (3 <= K <= 77, K <= N)
``--force-text-dropout F``  the reference's form: K = round(N x (1 - F)); 0.75 of 32 -> K = 8
``--mask-probability-file`` / ``--freq-table PATH``  word-frequency table of ``frequency`` (clipf.freq:
                            our counts JSON or the authors' {word: P} file); ``--freq-threshold t``
``--mask-option KEY=VALUE`` more masker options (``missing=keep``, ``fill=tokens``, ``tagger=brill``)
``--mask-schedule SPEC``    e.g. ``0:frequency:8,5:block:8`` — from epoch 5 (0-based) on, block masking
``--full-context-length N`` the unmasked text length (default 32, the paper's; CLIP/FLIP rows train at it)
``--pos-extend MODE``       repeat | interpolate: how K trained position rows reach N (clipf.export)
``--lr-warmup-epochs F``    warm-up as a fraction of an epoch (the reference's option; sets --warmup)
``--finetune``              unmasked fine-tune preset: needs --pretrained; no text / image masking,
                            --lr 1e-5 and --lr-warmup-epochs 0.1 unless given
``--objective clip|siglip`` contrastive loss (siglip = open_clip_train's --siglip)
``--objective uta``         UTA: align a ViT student's unmasked patch tokens to a frozen CLIP teacher
                            (``--teacher ...``; the model, loss and export are :mod:`clipf.uta`'s)
``--logs-dir DIR``          = --logs (torchrun's own parser rejects ``--logs`` as an ambiguous
                            abbreviation of its ``--logs-specs``; or put ``--`` before the options)
``--no-export``             skip the final export

FLIP image masking is open_clip's own ``--force-patch-dropout``.

How it plugs in (wrap, don't fork): clipf parses its options (``parse_known_args``), validates everything,
then calls ``open_clip_train.main.main(rest + ["--force-context-length", K])`` with a few names that main
module looks up swapped for the run: ``get_data`` builds the *train* split with a
:class:`clipf.masking.MaskingTokenizer` (K tokens) and val / ImageNet with the full N-token tokenizer;
``get_tokenizer`` (zero-shot prompts) returns the N-token tokenizer — never the K-token one, which would
cut prompts and lose class names; ``evaluate`` runs on a copy of the model whose text tower is extended
to N (:func:`clipf.export.extend_context`); ``train_one_epoch`` is timed and its batches counted;
``create_loss`` records the loss; ``torch.save`` becomes atomic; on CPU, DDP gets no ``device_ids``.
In open_clip_train.data the webdataset error handler counts what it skips, and the sample shuffle buffer is
seeded from ``--seed`` (stock: from the clock), so a run is reproducible bit for bit.

The text tower. A K-token tower is open_clip's own ``force_context_length=K`` (stock text towers take
batches of exactly their context length). Evaluation always runs at N with the K trained position rows
extended (``--pos-extend``, default ``repeat``; see :mod:`clipf.export` for the two modes and the
measurement); a ``--pretrained`` K-token checkpoint fine-tuned at N is loaded by open_clip's
``load_checkpoint`` with the same extension. A ``--mask-schedule`` that changes K runs the tower at the
largest K of the schedule and zero-pads the smaller-K batches: attention is causal and features are read
at the end token, so a padded K-token caption gives exactly the features a K-token tower gives — the
schedule changes what the tower sees, not its cost.

Outputs, RUN = ``--logs``/``--name`` (e.g. ``--logs runs --name cell/pretrain``)::

    RUN/out.log, params.txt           open_clip_train's log (progress lines carry samples/s and ETA)
    RUN/checkpoints/epoch_N.pt        open_clip_train checkpoints, written atomically
    RUN/tensorboard/                  TensorBoard (clipf sets --report-to tensorboard unless given)
    RUN/clipf.json                    resolved config: masker, K, schedule, N, table, threshold, image
                                      mask, pos_extend, seed, epochs, model, argv, versions, launches
    RUN/metrics.json                  a list, one record per epoch: epoch, loss, samples/s, seconds,
                                      tokens seen (text, image), skipped records, lr, eval metrics
    RUN/export/                       open_clip local-dir: model at N tokens (rank 0, end of training)

Data. Any open_clip_train dataset: webdataset shards (the embedded world, img2dataset CC3M/CC12M/LAION),
``--train-num-samples``, ``--dataset-resampled``, ``--workers``; csv; ``--dataset-type synthetic``. A
corrupt or truncated shard or an undecodable image is skipped with a warning and counted in every
DataLoader worker (a counter file per worker process); the count reaches out.log and metrics.json.
(clipf also passes ``eof_value=None`` to webdataset's ``tar_file_expander``: open_clip_train 3.3's
``group_by_keys_nothrow`` cannot read the end-of-shard markers of webdataset >= 1.0.)

Distributed. ``torchrun --nproc_per_node=G -m clipf.train ...`` (NCCL on GPUs, gloo on CPU), several
nodes with torchrun's rendezvous, or SLURM as open_clip_train does it: one task per GPU,
``srun --ntasks-per-node=G python -m clipf.train ...`` (SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID give
the ranks; export MASTER_ADDR and MASTER_PORT). ``clipf submit`` writes such scripts.

Resume. ``--resume latest`` (with ``--name``) picks the newest ``checkpoints/*.pt``: model, optimizer,
scaler and epoch come back, the LR schedule is recomputed from the step, the data restart at the
following epoch, metrics.json continues. Checkpoints are written to ``epoch_N.pt.tmp-PID`` and renamed,
so a kill -9 never leaves a corrupt ``*.pt``. With no checkpoint yet, ``--resume latest`` starts from
scratch (logged): the same command line serves the first launch and every requeue.

Precision ``--precision amp_bf16|amp|fp32|...`` and ``--torchcompile`` are open_clip_train's.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import datetime
import difflib
import functools
import glob
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipf import export as E
from clipf import models
from clipf.files import atomic_save, write_json

MIN_TEXT_TOKENS, MAX_TEXT_TOKENS = 3, 77
OBJECTIVES = ("clip", "siglip", "uta")
FINETUNE_LR, FINETUNE_WARMUP_EPOCHS = 1e-5, 0.1


class UsageError(ValueError):
    """Bad command line or inputs, found before any training starts."""


# =========================================================================== options
def clipf_parser() -> argparse.ArgumentParser:
    """clipf's own options (everything else goes to open_clip_train)."""
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
    g.add_argument("--mask-option", action="append", default=[], metavar="KEY=VALUE")
    g.add_argument("--mask-schedule", default=None, metavar="SPEC", help="e.g. 0:frequency:8,5:block:8")
    g.add_argument("--full-context-length", type=int, default=None, metavar="N", help="default 32")
    g.add_argument("--pos-extend", choices=E.POS_EXTEND, default=E.DEFAULT_POS_EXTEND)
    g = p.add_argument_group("clipf training")
    g.add_argument("--lr-warmup-epochs", type=float, default=None, metavar="F")
    g.add_argument("--finetune", action="store_true", help="unmasked fine-tune preset")
    g.add_argument("--objective", choices=OBJECTIVES, default=None)
    g.add_argument("--logs-dir", default=None, metavar="DIR", help="= --logs")
    g.add_argument("--no-export", action="store_true", help="skip the final export")
    return p


@dataclass(frozen=True)
class Stage:
    """One span of a masking schedule: from 0-based epoch ``start`` on, ``masker`` at K = ``k``."""

    start: int
    masker: str
    k: int


@dataclass
class Plan:
    """The resolved run: what clipf adds, and the argv handed to open_clip_train."""

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
    mask_options: dict[str, Any] = field(default_factory=dict)
    force_text_dropout: float | None = None
    pos_extend: str = E.DEFAULT_POS_EXTEND
    warmup_epochs: float | None = None
    finetune: bool = False
    objective: str = "clip"
    export: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def masked(self) -> bool:
        return bool(self.stages)

    def masker_opts(self, masker: str) -> dict[str, Any]:
        """The options of one masker: the --mask-option pairs it takes, the table and threshold."""
        from clipf import masking

        allowed = masking.masker_options(masking.get_masker(masker))
        opts = {k: v for k, v in self.mask_options.items() if k in allowed}
        if masking.get_masker(masker) is masking.frequency:
            if self.freq_table is not None:
                opts["table"] = self.freq_table
            if self.freq_threshold is not None:
                opts["threshold"] = self.freq_threshold
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
        current = None
        for s in self.stages:
            if s.start <= epoch:
                current = s
        return current

    def to_json(self) -> dict[str, Any]:
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
            "image_size": _image_size(oc),
            "quick_gelu": bool(oc.force_quick_gelu),
            "custom_text": bool(oc.force_custom_text),
            "preprocess": _preprocess_overrides(oc),
            "train_data": oc.train_data,
            "train_num_samples": oc.train_num_samples,
            "dataset_type": oc.dataset_type,
            "argv": self.argv,
            "open_clip_train_argv": self.oc_argv,
            "notes": self.notes,
        }


class EpochTokenizer:
    """A masking schedule as one picklable tokenizer: the stage of the current epoch (a shared value the
    trainer sets before each epoch, seen by DataLoader workers), zero-padded to the tower's width."""

    def __init__(self, starts: Sequence[int], tokenizers: Sequence[Callable], width: int):
        self.starts = list(starts)
        self.tokenizers = list(tokenizers)
        self.width = int(width)
        self.epoch = multiprocessing.get_context().Value("i", 0, lock=False)

    def set_epoch(self, epoch: int) -> None:
        self.epoch.value = int(epoch)

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        e = self.epoch.value
        i = max(j for j, s in enumerate(self.starts) if s <= e) if e >= self.starts[0] else 0
        ids = self.tokenizers[i](texts)
        if ids.shape[1] < self.width:
            ids = torch.nn.functional.pad(ids, (0, self.width - ids.shape[1]))
        return ids


def _image_size(oc: argparse.Namespace) -> int | None:
    size = oc.force_image_size
    if isinstance(size, list | tuple):
        size = size[0] if len(size) == 1 else None
    return size


def _preprocess_overrides(oc: argparse.Namespace) -> dict[str, Any]:
    out = {"mean": oc.image_mean, "std": oc.image_std}
    out.update(interpolation=oc.image_interpolation, resize_mode=oc.image_resize_mode)
    return {k: v for k, v in out.items() if v is not None}


def _given(argv: Sequence[str], *flags: str) -> bool:
    return any(a == f or a.startswith(f + "=") for a in argv for f in flags)


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _env_int(*names: str, default: int = 0) -> int:
    for name in names:
        if os.environ.get(name, "").lstrip("-").isdigit():
            return int(os.environ[name])
    return default


def _env_rank() -> int:
    return _env_int("RANK", "PMI_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK")


def _env_world() -> int:
    return _env_int("WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", default=1)


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


# =========================================================================== validation
def make_plan(argv: Sequence[str]) -> Plan:
    """Parse and check a command line; every error is a :class:`UsageError` raised before training."""
    from open_clip_train.params import parse_args as oc_parse_args

    from clipf import masking

    argv = [str(a) for a in argv]
    try:
        ns, rest = clipf_parser().parse_known_args([a for a in argv if a != "--"])
    except SystemExit as exc:  # argparse printed its message
        raise UsageError(f"bad clipf option (exit {exc.code})") from None
    notes: list[str] = []
    rest = _rewrite_warmup(rest, ns)
    if ns.logs_dir is not None:
        if _given(rest, "--logs"):
            raise UsageError("give --logs or --logs-dir, not both")
        rest += ["--logs", ns.logs_dir]
    if ns.objective == "uta":
        raise UsageError("--objective uta is planned by clipf.uta.make_plan (clipf.train.main dispatches it)")
    if ns.objective == "siglip" and not _given(rest, "--siglip"):
        rest.append("--siglip")
    if not _given(rest, "--report-to"):
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
        if not _given(rest, "--lr"):
            rest += ["--lr", str(FINETUNE_LR)]
        if not _given(rest, "--warmup") and ns.lr_warmup_epochs is None:
            ns.lr_warmup_epochs = FINETUNE_WARMUP_EPOCHS
        if not _given(rest, "--force-patch-dropout"):
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
    native = _check_model(oc.model)

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
    for key in ("table", "threshold"):
        if key in mask_options:
            raise UsageError(f"--mask-option {key}=...: use --freq-table / --freq-threshold")
    takes = {o for s in stages for o in masking.masker_options(masking.get_masker(s.masker))}
    unknown = sorted(set(mask_options) - takes)
    if unknown:
        raise UsageError(
            f"--mask-option {', '.join(unknown)}: not an option of the masker(s) in use "
            f"({', '.join(sorted(takes - {'table', 'threshold'})) or 'none'})"
        )
    if ns.freq_table is not None and not Path(ns.freq_table).is_file():
        raise UsageError(f"--mask-probability-file / --freq-table {ns.freq_table}: no such file")
    uses_freq = any(masking.get_masker(s.masker) is masking.frequency for s in stages)
    if ns.freq_table is not None and not uses_freq:
        notes.append("--freq-table given but no stage uses the frequency masker: ignored")
    if ns.freq_threshold is not None and ns.freq_threshold <= 0:
        raise UsageError(f"--freq-threshold must be > 0, got {ns.freq_threshold}")

    oc_argv = list(rest) + ["--force-context-length", str(train_context)]
    oc = oc_parse_args(oc_argv)
    plan = Plan(
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
        mask_options=mask_options,
        force_text_dropout=ns.force_text_dropout,
        pos_extend=ns.pos_extend,
        warmup_epochs=ns.lr_warmup_epochs,
        finetune=ns.finetune,
        objective="siglip" if oc.siglip else "clip",
        export=not ns.no_export,
        notes=notes,
    )
    if stages:
        _check_bpe_tokenizer(oc.model)
        try:
            plan.train_tokenizer()  # loads the frequency table, checks masker options
        except (ValueError, TypeError, OSError, LookupError) as exc:
            raise UsageError(f"text masking: {exc}") from None
    _check_data(oc)
    _check_run_dir(oc)
    if oc.pretrained:
        _check_pretrained(oc, train_context)
    return plan


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


def _check_model(name: str) -> int | None:
    """The model's native text context (None when unknown); a clear error for an unknown name."""
    import open_clip
    from open_clip.factory import parse_model_name

    schema, ident = parse_model_name(name)
    if schema == "hf-hub":
        return None
    if schema == "local-dir" and not (Path(ident) / E.CONFIG_NAME).is_file():
        raise UsageError(f"--model {name}: no {E.CONFIG_NAME} in {ident}")
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        close = difflib.get_close_matches(name, open_clip.list_models(), n=5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"--model {name!r} is not an open_clip or clipf architecture{hint}")
    return int(cfg.get("text_cfg", {}).get("context_length", 77))


def _check_bpe_tokenizer(model: str) -> None:
    import open_clip

    tok = open_clip.get_tokenizer(model)
    if type(tok) is not open_clip.SimpleTokenizer:
        raise UsageError(
            f"text masking emits open_clip's CLIP BPE ids; --model {model} uses {type(tok).__name__}"
        )


def _shards(spec: str) -> list[str]:
    from open_clip_train.data import expand_urls

    urls: list[str] = []
    for part in spec.split("::"):
        urls += expand_urls(part)[0]
    return urls


def _local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def _check_data(oc: argparse.Namespace) -> None:
    from open_clip_train import data as oc_data

    dtype = oc.dataset_type
    if not (oc.train_data or dtype == "synthetic" or oc.val_data or oc.imagenet_val or oc.imagenet_v2):
        raise UsageError(
            "no data: give --train-data (or --dataset-type synthetic), --val-data or --imagenet-val"
        )
    if dtype == "synthetic" and not oc.train_num_samples:
        raise UsageError("--dataset-type synthetic needs --train-num-samples")
    for flag, spec in (("--train-data", oc.train_data), ("--val-data", oc.val_data)):
        if not spec:
            continue
        kind = dtype
        if kind == "auto":
            ext = spec.split(".")[-1]
            kind = {"csv": "csv", "tsv": "csv", "tar": "webdataset"}.get(ext)
            if kind is None:
                raise UsageError(f"{flag} {spec}: cannot tell the dataset type; give --dataset-type")
        if kind == "csv":
            if not Path(spec).is_file():
                raise UsageError(f"{flag} {spec}: no such file")
            continue
        if kind != "webdataset":
            continue
        try:
            urls = _shards(spec)
        except Exception as exc:  # noqa: BLE001 - braceexpand errors vary
            raise UsageError(f"{flag} {spec}: cannot expand the shard pattern ({exc})") from None
        missing = [u for u in urls if _local(u) and not os.path.isfile(u)]
        if missing:
            raise UsageError(
                f"{flag}: {len(missing)} of {len(urls)} shards do not exist (first: {missing[0]})"
            )
        if flag == "--train-data":
            if not oc.train_num_samples:
                try:
                    size, _ = oc_data.get_dataset_size(spec)
                except Exception:  # noqa: BLE001 - a sizes.json without an entry for a shard
                    size = None
                if not size:
                    raise UsageError(
                        f"{flag}: the number of samples is unknown (no sizes.json / __len__ beside the "
                        "shards): give --train-num-samples"
                    )
            workers = max(1, oc.workers) * _env_world()
            if not oc.dataset_resampled and len(urls) < workers:
                raise UsageError(
                    f"{flag}: {len(urls)} shards for {workers} data workers (--workers x processes); "
                    "use fewer --workers or --dataset-resampled"
                )
    if oc.imagenet_val and not Path(oc.imagenet_val).is_dir():
        raise UsageError(f"--imagenet-val {oc.imagenet_val}: no such folder")


def _check_run_dir(oc: argparse.Namespace) -> None:
    if oc.resume == "latest":
        if not oc.name:
            raise UsageError("--resume latest needs --name (the run to resume)")
        return
    if oc.resume and not oc.resume.startswith(("s3://", "gs://")) and not Path(oc.resume).is_file():
        raise UsageError(f"--resume {oc.resume}: no such checkpoint")
    if oc.name and oc.logs and oc.logs.lower() != "none":
        run = Path(oc.logs, oc.name)
        if (run / "out.log").exists() and _env_rank() == 0:
            raise UsageError(
                f"{run} already holds a run: --resume latest to continue it, or another --name / --logs"
            )


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # noqa: BLE001 - not a zip checkpoint: plain load
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UsageError(f"--pretrained {path}: not a state_dict / open_clip_train checkpoint")
    if obj and next(iter(obj)).startswith("module."):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _check_pretrained(oc: argparse.Namespace, context: int) -> None:
    """A ``--pretrained`` file must be a checkpoint of ``--model`` (positional tables may differ in
    length: open_clip resizes them); a tag must be one open_clip knows for the model."""
    import open_clip
    from open_clip.factory import convert_state_dict

    path = oc.pretrained
    if not os.path.isfile(path):
        if open_clip.get_pretrained_cfg(oc.model, path):
            return
        tags = open_clip.list_pretrained_tags_by_model(oc.model)
        raise UsageError(
            f"--pretrained {path}: no such file, nor a pretrained tag of {oc.model} (tags: {tags})"
        )
    if path.endswith((".npz", ".npy")) or _env_rank() != 0:
        return
    try:
        sd = _read_state_dict(path)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable file
        raise UsageError(f"--pretrained {path}: cannot read it ({type(exc).__name__}: {exc})") from None
    net = open_clip.create_model(
        oc.model,
        device="meta",
        force_context_length=context,
        force_image_size=_image_size(oc),
        force_quick_gelu=oc.force_quick_gelu,
        force_custom_text=oc.force_custom_text,
    )
    sd = convert_state_dict(net, sd)
    if "positional_embedding" in sd and not hasattr(net, "positional_embedding"):
        from open_clip.model import convert_to_custom_text_state_dict

        sd = convert_to_custom_text_state_dict(sd)
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items()}
    resized = {"positional_embedding", "text.positional_embedding", "visual.positional_embedding"}
    missing = sorted(set(want) - set(have) - {"logit_bias"})
    extra = sorted(set(have) - set(want) - {"text.transformer.embeddings.position_ids"})
    shapes = [
        f"{k} {have[k]} vs {want[k]}"
        for k in sorted(set(want) & set(have))
        if have[k] != want[k]
        and not (k in resized and have[k][-1:] == want[k][-1:])
        and math.prod(have[k]) != math.prod(want[k])
    ]
    if missing or extra or shapes:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            detail.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if shapes:
            detail.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
        raise UsageError(
            f"--pretrained {path} is not a checkpoint of --model {oc.model}: " + ", ".join(detail)
        )


# =========================================================================== run-time pieces
class _Overlay(types.ModuleType):
    """A module seen through some replaced attributes (what one open_clip_train module sees)."""

    def __init__(self, module: types.ModuleType, **overrides: Any):
        super().__init__(module.__name__)
        self.__dict__.update(overrides)
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _ddp(module: torch.nn.Module, device_ids: Sequence[Any] | None = None, **kwargs: Any) -> Any:
    """DistributedDataParallel, without the ``device_ids=[cpu]`` open_clip_train passes on CPU (gloo)."""
    if device_ids and all(torch.device(d).type == "cpu" for d in device_ids):
        device_ids = None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids, **kwargs)


# ---- data order: open_clip_train's sample shuffle buffer, seeded
class _SeededShuffle:
    """``wds.shuffle`` as open_clip_train's training pipeline uses it, with its rng seeded.

    Stock ``wds.shuffle`` seeds from the pid and the clock, so two runs with the same ``--seed`` see
    their samples in different orders and end with different weights. Here the order is a function of
    (``--seed``, rank, data worker, epoch): ``dvc repro`` of a cell gives the same weights, bit for bit.
    ``seed``, ``rank`` and ``epoch`` (open_clip_train's ``SharedEpoch``) are set by ``Run.get_data``.
    """

    def __init__(self, bufsize: int = 1000, initial: int = 100):
        self.bufsize, self.initial = bufsize, initial
        self.seed, self.rank, self.epoch = 0, 0, None

    def __call__(self, src: Iterator[Any]) -> Iterator[Any]:
        import random

        import webdataset

        worker = torch.utils.data.get_worker_info()
        epoch = self.epoch.get_value() if self.epoch is not None else 0
        rng = random.Random(f"{self.seed}/{self.rank}/{worker.id if worker else 0}/{epoch}")
        return webdataset.shuffle(self.bufsize, self.initial, rng=rng)(src)


def _stages(obj: Any) -> Iterator[Any]:
    """The stages of a webdataset pipeline, through loaders (``WebLoader`` wraps a ``DataLoader``)."""
    for stage in getattr(obj, "pipeline", []):
        yield stage
        yield from _stages(stage)
    if isinstance(obj, torch.utils.data.DataLoader):
        yield obj.dataset
        yield from _stages(obj.dataset)


# ---- skipped records: counted in every process that runs the data pipeline
_SKIP_DIR_ENV, _SKIP_RANK_ENV = "CLIPF_SKIP_DIR", "CLIPF_SKIP_RANK"
_skip_counts: dict[int, int] = {}


def count_and_continue(exn: BaseException) -> bool:
    """webdataset handler: log the error, count it (a file per process), keep going."""
    pid = os.getpid()
    n = _skip_counts[pid] = _skip_counts.get(pid, 0) + 1
    folder = os.environ.get(_SKIP_DIR_ENV)
    if folder:
        rank = os.environ.get(_SKIP_RANK_ENV, "0")
        with contextlib.suppress(OSError):
            tmp = os.path.join(folder, f".r{rank}-p{pid}.tmp")
            with open(tmp, "w") as fh:
                fh.write(str(n))
            os.replace(tmp, os.path.join(folder, f"r{rank}-p{pid}"))
    logging.warning(f"clipf: skipped a bad record ({_describe(exn)}); {n} skipped by this data process")
    return True


def _describe(exn: BaseException) -> str:
    """What went wrong, and where: webdataset's DecodingError carries the key and URL, not a message."""
    where = [str(getattr(exn, a)) for a in ("url", "key", "k") if getattr(exn, a, None)]
    cause = exn.__cause__
    text = f"{type(exn).__name__}: {exn}" if str(exn) else type(exn).__name__
    if cause is not None:
        text += f" <- {type(cause).__name__}: {cause}"
    return text + (f" [{' '.join(where)}]" if where else "")


def _skip_total(folder: str | None, rank: int) -> int:
    total = 0
    for path in glob.glob(os.path.join(folder or "", f"r{rank}-p*")):
        with contextlib.suppress(OSError, ValueError):
            total += int(Path(path).read_text() or 0)
    return total


def _has_caption_and_image(sample: dict) -> bool:
    """open_clip_train's filter, counting the samples it drops (an image or a caption missing)."""
    ok = _ORIGINAL["filter"](sample)
    if not ok:
        count_and_continue(ValueError(f"sample {sample.get('__key__')!r} has no image or no caption"))
    return ok


_ORIGINAL: dict[str, Any] = {}


class _CountingLoader:
    """The train DataLoader, counting batches, samples and non-padding text tokens as they pass."""

    def __init__(self, loader: Any):
        self._loader = loader
        self.reset()

    def reset(self) -> None:
        self.batches = self.samples = self.text_nonpad = 0
        self.t_start = time.perf_counter()
        self.t_first: float | None = None
        self.first_samples = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __iter__(self) -> Iterator[Any]:
        for batch in self._loader:
            texts = batch[1]
            self.batches += 1
            self.samples += len(texts)
            self.text_nonpad += int(torch.count_nonzero(texts))
            if self.t_first is None:
                self.t_first = time.perf_counter()
                self.first_samples = len(texts)
            yield batch


class _LossMeter:
    """The loss module, summing its total per step on the device (no host sync)."""

    def __init__(self, loss: Any):
        self._loss = loss
        self.reset()

    def reset(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.steps = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loss, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self._loss(*args, **kwargs)
        parts = out.values() if isinstance(out, dict) else out if isinstance(out, tuple | list) else [out]
        self.total = self.total + sum(p.detach().float() for p in parts)
        self.steps += 1
        return out


def _hms(seconds: float) -> str:
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


class _Progress(logging.Filter):
    """Appends ETA (epoch and run) to open_clip_train's ``Train Epoch:`` progress lines."""

    def __init__(self, run: Run):
        super().__init__()
        self.run = run

    def filter(self, record: logging.LogRecord) -> bool:
        loader, run = self.run.loader, self.run
        if loader is not None and isinstance(record.msg, str) and record.msg.startswith("Train Epoch:"):
            done, total = loader.batches, max(1, loader.num_batches)
            if done:
                per = (time.perf_counter() - loader.t_start) / done
                left = (total - done) * per
                later = (run.args.epochs - run.epoch - 1) * total * per
                record.msg += f" ETA: {_hms(left)} epoch, {_hms(left + later)} run"
        return True


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def _image_tokens(model: torch.nn.Module) -> int | None:
    """Tokens per image in the vision transformer while training (class token + kept patches)."""
    visual = getattr(_unwrap(model), "visual", None)
    grid = getattr(visual, "grid_size", None)
    if grid is None:
        return None
    patches = int(grid[0]) * int(grid[1])
    prob = float(getattr(getattr(visual, "patch_dropout", None), "prob", 0.0) or 0.0)
    if prob > 0:
        patches = max(1, int(patches * (1 - prob)))
    return patches + (1 if getattr(visual, "class_embedding", None) is not None else 0)


# =========================================================================== the run
class Run:
    """State shared by the swapped-in functions during one ``open_clip_train.main.main`` call."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.args: argparse.Namespace | None = None
        self.loader: _CountingLoader | None = None
        self.loss: _LossMeter | None = None
        self.tokenizer: Callable | None = None
        self.epoch = 0
        self.records: list[dict[str, Any]] | None = None
        self.skip_dir: str | None = None
        self.skips_before = 0
        self.started = False

    # ---- paths
    @property
    def log_dir(self) -> Path | None:
        a = self.args
        if a is None or not a.logs or a.logs.lower() == "none":
            return None
        return Path(a.logs, a.name)

    @property
    def master(self) -> bool:
        return self.args is not None and self.args.rank == 0

    # ---- swapped into open_clip_train.main
    def get_tokenizer(self, model_name: str, cache_dir: str | None = None, **_: Any) -> Callable:
        """Zero-shot / val tokenizer: always the full N tokens."""
        return _ORIGINAL["get_tokenizer"](
            model_name, cache_dir=cache_dir, context_length=self.plan.full_context
        )

    def create_model_and_transforms(self, *args: Any, **kwargs: Any) -> Any:
        with E.text_pos_resize(self.plan.pos_extend):
            return _ORIGINAL["create_model_and_transforms"](*args, **kwargs)

    def create_loss(self, args: argparse.Namespace) -> Any:
        self.loss = _LossMeter(_ORIGINAL["create_loss"](args))
        return self.loss

    def get_data(
        self, args: argparse.Namespace, preprocess_fns: Any, epoch: int = 0, tokenizer: Any = None
    ) -> dict:
        from open_clip_train import data as oc_data

        self.args = args
        full_tok = tokenizer if tokenizer is not None else self.get_tokenizer(args.model, args.cache_dir)
        self.tokenizer = self.plan.train_tokenizer()
        train_tok = self.tokenizer or _ORIGINAL["get_tokenizer"](
            args.model, cache_dir=args.cache_dir, context_length=self.plan.train_context
        )
        self.skip_dir = tempfile.mkdtemp(prefix=f"clipf-skips-r{args.rank}-")
        os.environ[_SKIP_DIR_ENV], os.environ[_SKIP_RANK_ENV] = self.skip_dir, str(args.rank)
        pp_train, pp_val = preprocess_fns
        data: dict[str, Any] = {}
        if args.train_data or args.dataset_type == "synthetic":
            build = oc_data.get_dataset_fn(args.train_data, args.dataset_type)
            data["train"] = build(args, pp_train, is_train=True, epoch=epoch, tokenizer=train_tok)
            for stage in _stages(data["train"].dataloader):
                if isinstance(stage, _SeededShuffle):
                    stage.seed, stage.rank, stage.epoch = args.seed, args.rank, data["train"].shared_epoch
            self.loader = _CountingLoader(data["train"].dataloader)
            data["train"].dataloader = self.loader
            if self.plan.warmup_epochs is not None:
                per_epoch = self.loader.num_batches // args.accum_freq
                args.warmup = round(self.plan.warmup_epochs * per_epoch)
        if args.val_data:
            build = oc_data.get_dataset_fn(args.val_data, args.dataset_type)
            data["val"] = build(args, pp_val, is_train=False, tokenizer=full_tok)
        if args.imagenet_val is not None:
            data["imagenet-val"] = oc_data.get_imagenet(args, preprocess_fns, "val")
        if args.imagenet_v2 is not None:
            data["imagenet-v2"] = oc_data.get_imagenet(args, preprocess_fns, "v2")
        if self.master and self.log_dir is not None:
            self._write_config(epoch)
        if self.master:
            for note in self.plan.notes:
                logging.info(f"clipf: note: {note}")
            stage = self.plan.stage(epoch)
            what = f"{stage.masker} masking, K={stage.k}" if stage else "no text masking"
            logging.info(
                f"clipf: train text {what} (tower context {self.plan.train_context}); eval text at "
                f"N={self.plan.full_context} (pos-extend {self.plan.pos_extend}); warmup {args.warmup} steps"
            )
        return data

    def train_one_epoch(
        self, model: Any, data: dict, loss: Any, epoch: int, optimizer: Any, *rest: Any, **kw: Any
    ):
        if not self.started:
            self.started = True
            self._load_records(epoch)
        self.epoch = epoch
        if isinstance(self.tokenizer, EpochTokenizer):
            self.tokenizer.set_epoch(epoch)
        if self.loader is not None:
            self.loader.reset()
        if self.loss is not None:
            self.loss.reset()
        t0 = time.perf_counter()
        out = _ORIGINAL["train_one_epoch"](model, data, loss, epoch, optimizer, *rest, **kw)
        seconds = time.perf_counter() - t0
        self._epoch_record(model, epoch, optimizer, seconds)
        return out

    def evaluate(self, model: Any, data: dict, epoch: int, args: argparse.Namespace, *rest: Any, **kw: Any):
        if args.rank != 0:
            return _ORIGINAL["evaluate"](model, data, epoch, args, *rest, **kw)
        net = _unwrap(model)
        if E.text_context(net) != self.plan.full_context:
            net = E.extend_context(copy.deepcopy(net), self.plan.full_context, self.plan.pos_extend)
            args = copy.copy(args)
            args.distributed = False
            model = net
        metrics = _ORIGINAL["evaluate"](model, data, epoch, args, *rest, **kw)
        if metrics and self.records is not None and self.log_dir is not None:
            for rec in self.records:
                if rec["epoch"] == epoch:
                    rec.update({f"val/{k}": v for k, v in metrics.items() if k != "epoch"})
            write_json(self.log_dir / "metrics.json", self.records)
        return metrics

    # ---- records
    def _write_config(self, epoch: int) -> None:
        import open_clip

        path = self.log_dir / "clipf.json"
        old = json.loads(path.read_text()) if path.is_file() else {}
        cfg = self.plan.to_json()
        cfg["warmup"] = self.args.warmup
        cfg["world_size"] = self.args.world_size
        cfg["versions"] = {
            "clipf": __import__("clipf").__version__,
            "open_clip": open_clip.__version__,
            "torch": torch.__version__,
        }
        launch = {
            "time": datetime.datetime.now().isoformat(timespec="seconds"),
            "argv": self.plan.argv,
            "resume": self.args.resume,
            "start_epoch": epoch,
            "world_size": self.args.world_size,
        }
        cfg["launches"] = [*old.get("launches", []), launch]
        write_json(path, cfg)

    def _load_records(self, start_epoch: int) -> None:
        self.records = []
        path = self.log_dir / "metrics.json" if self.log_dir is not None else None
        if self.master and path is not None and path.is_file() and start_epoch > 0:
            with contextlib.suppress(ValueError, OSError):
                old = json.loads(path.read_text())
                self.records = [r for r in old if isinstance(r, dict) and r.get("epoch", 0) <= start_epoch]
        if self.log_dir is not None and self.master:
            for stale in glob.glob(os.path.join(self.args.checkpoint_path, "*.tmp-*")):
                with contextlib.suppress(OSError):
                    os.remove(stale)  # left by a kill during an (atomic) checkpoint write

    def _reduce(self, values: list[float]) -> list[float]:
        args = self.args
        if not getattr(args, "distributed", False) or getattr(args, "horovod", False):
            return values
        t = torch.tensor(values, dtype=torch.float64, device=args.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def _epoch_record(self, model: Any, epoch: int, optimizer: Any, seconds: float) -> None:
        args, loader, meter = self.args, self.loader, self.loss
        batches = loader.batches if loader is not None else 0
        skipped_now = _skip_total(self.skip_dir, args.rank)
        loss_sum = float(meter.total) if meter is not None and meter.steps else 0.0
        steps = meter.steps if meter is not None else 0
        samples, nonpad, loss_sum, steps, skipped = self._reduce(
            [
                float(loader.samples if loader is not None else 0),
                float(loader.text_nonpad if loader is not None else 0),
                loss_sum,
                float(steps),
                float(skipped_now - self.skips_before),
            ]
        )
        self.skips_before = skipped_now
        if not self.master:
            return
        samples, skipped = int(samples), int(skipped)
        stage = self.plan.stage(epoch)
        prev = self.records[-1] if self.records else {}
        per_image = _image_tokens(model)
        steady = None
        if loader is not None and loader.t_first is not None and batches > 1:
            span = loader.t_start + seconds - loader.t_first
            local_steady = loader.samples - loader.first_samples
            steady = local_steady * args.world_size / span if span > 0 else None
        ctx = self.plan.train_context
        rec = {
            "epoch": epoch + 1,
            "masker": stage.masker if stage else "none",
            "text_tokens": stage.k if stage else self.plan.full_context,
            "text_context": ctx,
            "image_mask": float(args.force_patch_dropout or 0.0),
            "image_tokens": per_image,
            "steps": batches,
            "samples": samples,
            "train_seconds": seconds,
            "samples_per_second": samples / seconds if seconds > 0 else None,
            "samples_per_second_steady": steady,
            "loss": loss_sum / steps if steps else None,
            "lr": optimizer.param_groups[0]["lr"] if optimizer is not None else None,
            "skipped": skipped,
            "skipped_total": int(prev.get("skipped_total", 0)) + skipped,
            "samples_seen": int(prev.get("samples_seen", 0)) + samples,
            "text_tokens_seen": int(prev.get("text_tokens_seen", 0)) + samples * ctx,
            "text_tokens_nonpad_seen": int(prev.get("text_tokens_nonpad_seen", 0)) + int(nonpad),
            "image_tokens_seen": int(prev.get("image_tokens_seen", 0)) + samples * (per_image or 0),
            "train_seconds_total": float(prev.get("train_seconds_total", 0.0)) + seconds,
            "world_size": args.world_size,
            "time": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        self.records = [r for r in self.records if r.get("epoch") != rec["epoch"]] + [rec]
        if self.log_dir is not None:
            write_json(self.log_dir / "metrics.json", self.records)
        loss_txt = f"{rec['loss']:.4f}" if rec["loss"] is not None else "n/a"
        sps = rec["samples_per_second"] or 0.0
        logging.info(
            f"clipf: epoch {epoch + 1}/{args.epochs} done in {_hms(seconds)}: loss {loss_txt}, "
            f"{sps:.1f} samples/s ({sps / args.world_size:.1f}/process), {samples} samples, "
            f"skipped {skipped} bad records ({rec['skipped_total']} in total)"
        )

    # ---- end of training
    def finish(self) -> int:
        args = self.args
        rc = 0
        if args is not None and self.master and self.plan.export and self.log_dir is not None:
            ckpts = sorted(
                glob.glob(os.path.join(args.checkpoint_path, "epoch_*.pt")),
                key=lambda p: [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p)],
            )
            if ckpts:
                out = self.log_dir / "export"
                try:
                    E.export(
                        ckpts[-1],
                        self.plan.model,
                        out,
                        self.plan.full_context,
                        self.plan.pos_extend,
                        image_size=_image_size(args),
                        quick_gelu=bool(args.force_quick_gelu),
                        custom_text=bool(args.force_custom_text),
                        preprocess=_preprocess_overrides(args) or None,
                    )
                    logging.info(
                        f"clipf: exported {ckpts[-1]} -> {out} (open_clip local-dir:, {self.plan.full_context} "
                        f"text tokens, pos-extend {self.plan.pos_extend})"
                    )
                except Exception as exc:  # noqa: BLE001 - report, keep the checkpoints
                    logging.error(f"clipf: export of {ckpts[-1]} failed: {type(exc).__name__}: {exc}")
                    rc = 1
        if self.skip_dir:
            shutil.rmtree(self.skip_dir, ignore_errors=True)
        if args is not None and getattr(args, "distributed", False) and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        return rc


@contextlib.contextmanager
def _swapped(run: Run) -> Iterator[None]:
    """Swap the names open_clip_train looks up for the duration of one run."""
    from open_clip_train import data as oc_data
    from open_clip_train import main as oc_main
    from webdataset import tariterators

    _ORIGINAL.update(
        get_tokenizer=oc_main.get_tokenizer,
        create_model_and_transforms=oc_main.create_model_and_transforms,
        create_loss=oc_main.create_loss,
        train_one_epoch=oc_main.train_one_epoch,
        evaluate=oc_main.evaluate,
        filter=oc_data.filter_no_caption_or_no_image,
    )
    torch_view = _Overlay(
        torch,
        save=atomic_save,
        nn=_Overlay(torch.nn, parallel=_Overlay(torch.nn.parallel, DistributedDataParallel=_ddp)),
    )
    swaps = [
        (oc_main, "get_tokenizer", run.get_tokenizer),
        (oc_main, "create_model_and_transforms", run.create_model_and_transforms),
        (oc_main, "create_loss", run.create_loss),
        (oc_main, "get_data", run.get_data),
        (oc_main, "train_one_epoch", run.train_one_epoch),
        (oc_main, "evaluate", run.evaluate),
        (oc_main, "torch", torch_view),
        (oc_data, "wds", _Overlay(oc_data.wds, shuffle=_SeededShuffle)),
        (oc_data, "log_and_continue", count_and_continue),
        (oc_data, "filter_no_caption_or_no_image", _has_caption_and_image),
        (
            oc_data,
            "tarfile_to_samples_nothrow",
            functools.partial(oc_data.tarfile_to_samples_nothrow, handler=count_and_continue),
        ),
        (oc_data, "tar_file_expander", functools.partial(tariterators.tar_file_expander, eof_value=None)),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in swaps]
    handlers = list(logging.root.handlers)
    progress = _Progress(run)
    logging.root.addFilter(progress)
    env = {k: os.environ.get(k) for k in (_SKIP_DIR_ENV, _SKIP_RANK_ENV)}
    try:
        for obj, name, new in swaps:
            setattr(obj, name, new)
        yield
    finally:
        for obj, name, old in saved:
            setattr(obj, name, old)
        logging.root.removeFilter(progress)
        for h in logging.root.handlers[:]:
            if h not in handlers:  # open_clip_train's setup_logging adds a pair per call
                logging.root.removeHandler(h)
                h.close()
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _help() -> None:
    from open_clip_train.params import parse_args as oc_parse_args

    print(__doc__.split("\n\n", 1)[0])
    clipf_parser().print_help()
    print("\nopen_clip_train's options (all accepted):\n")
    with contextlib.suppress(SystemExit):
        oc_parse_args(["--help"])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m clipf.train`` / ``torchrun -m clipf.train``; returns an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        _help()
        return 0
    from clipf import uta

    if uta.requested(argv):  # --objective uta: clipf.uta swaps in the teacher-aligned model and loss
        return uta.main(argv)
    plan = parse_quietly(make_plan, argv)
    return 2 if plan is None else drive(Run(plan), plan.oc_argv)


def parse_quietly(make: Callable[[Sequence[str]], Any], argv: Sequence[str]) -> Any:
    """``make(argv)`` (a plan) with clipf's models registered and open_clip's logging held back (no
    ``logging.basicConfig()`` from it while we validate); on a :class:`UsageError`, print it, return None."""
    models.register()
    quiet = logging.NullHandler()
    logging.root.addHandler(quiet)
    try:
        return make(argv)
    except UsageError as exc:
        print(f"clipf train: error: {exc}", file=sys.stderr)
        return None
    finally:
        logging.root.removeHandler(quiet)


def drive(run: Run, oc_argv: list[str]) -> int:
    """``open_clip_train.main.main(oc_argv)`` with ``run``'s swaps in place, then ``run.finish()``."""
    from open_clip_train import main as oc_main

    with _swapped(run):
        rc = oc_main.main(oc_argv)
        if rc not in (None, 0):
            print(
                f"clipf train: open_clip_train stopped (returned {rc}); see its message above",
                file=sys.stderr,
            )
            return 1
        return run.finish()


def cli(argv: list[str] | None = None) -> int:
    """``clipf train ...``."""
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
