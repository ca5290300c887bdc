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
                            (``--teacher ...``; the model, loss and export are :mod:`clipf.objectives.uta`'s)
``--logs-dir DIR``          = --logs (torchrun's own parser rejects ``--logs`` as an ambiguous
                            abbreviation of its ``--logs-specs``; or put ``--`` before the options)
``--no-export``             skip the final export

FLIP image masking is open_clip's own ``--force-patch-dropout``.

How it plugs in (wrap, don't fork): clipf parses its options (``parse_known_args``), validates everything
(:func:`clipf.engine.make_plan`), then calls ``open_clip_train.main.main(rest + ["--force-context-length",
K])`` with a few names that main module looks up swapped for the run (every one a row of
:data:`clipf.upstream.PATCHES`): ``get_data`` builds the *train* split with a
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

import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from clipf import engine, models, objectives
from clipf.engine import Plan, Run, UsageError

__all__ = ["UsageError", "cli", "drive", "main", "make_plan", "make_run", "objective", "parse_quietly"]


def objective(name: str) -> engine.Objective:
    """The objective ``--objective NAME`` selects (:mod:`clipf.objectives`); a UsageError if unknown."""
    try:
        return objectives.get(name)
    except ValueError as exc:
        raise UsageError(f"--objective: {exc}") from None


def make_plan(argv: Sequence[str]) -> Plan:
    """:func:`clipf.engine.make_plan` for the objective the command line names."""
    return engine.make_plan(argv, objective(engine.objective_name(argv)))


def make_run(plan: Plan) -> Run:
    """The :class:`clipf.engine.Run` of a checked plan, from its objective."""
    return objective(plan.objective).make_run(plan)


def _help() -> None:
    from open_clip_train.params import parse_args as oc_parse_args

    print(__doc__.split("\n\n", 1)[0])
    engine.clipf_parser().print_help()
    print(f"\nobjectives (--objective): {', '.join(objectives.OBJECTIVES)}")
    print("\nopen_clip_train's options (all accepted):\n")
    with contextlib.suppress(SystemExit):
        oc_parse_args(["--help"])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m clipf.train`` / ``torchrun -m clipf.train``; returns an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        _help()
        return 0
    plan = parse_quietly(make_plan, argv)
    return 2 if plan is None else drive(make_run(plan))


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


def drive(run: Run, oc_argv: Sequence[str] | None = None) -> int:
    """``open_clip_train.main.main(oc_argv)`` (default: the plan's) inside ``run.session()`` (the
    upstream patches, :mod:`clipf.upstream`), then ``run.finish()``; an exit code."""
    from open_clip_train import main as oc_main

    try:
        with run.session():
            try:
                rc = oc_main.main(list(run.plan.oc_argv if oc_argv is None else oc_argv))
            except engine.Preempted as stop:  # SIGTERM / SIGUSR1: step checkpoint written
                return run.preempted(stop)
            if rc not in (None, 0):
                print(
                    f"clipf train: open_clip_train stopped (returned {rc}); see its message above",
                    file=sys.stderr,
                )
                return 1
            return run.finish()
    except UsageError as exc:  # e.g. --resume of a checkpoint written under other options
        print(f"clipf train: error: {exc}", file=sys.stderr)
        return 2


def cli(argv: list[str] | None = None) -> int:
    """``clipf train ...``."""
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
