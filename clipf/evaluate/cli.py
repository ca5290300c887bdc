"""``clipf eval RUN ...`` and ``clipf eval collect ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipf.evaluate.base import COLUMNS, DEFAULT_RECALL_K, EXTRA_COLUMNS, EvalError
from clipf.evaluate.benchmark import evaluate_run
from clipf.evaluate.collect import collect
from clipf.evaluate.protocols import DEFAULT_PROTOCOL, PROTOCOLS


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clipf eval",
        description="CLIP_benchmark (zero-shot classification and retrieval) on a run's exported models. "
        "`clipf eval collect` builds the tidy results table.",
        epilog="Stock equivalent: clip_benchmark eval --model_type open_clip --model local-dir:RUN/pretrain/"
        "export --pretrained '' --dataset wds/NAME --dataset_root WORLD/eval/NAME --no_amp",
    )
    p.add_argument("run", help="run folder, e.g. runs/<cell> (holds pretrain/ and finetune/)")
    p.add_argument(
        "--checkpoint",
        nargs="+",
        default=None,
        help="pretrain | finetune | an export folder | a .pt (exported first); default: both phases",
    )
    p.add_argument("--label", help="eval folder name for a --checkpoint PATH (default: <phase>-epoch_N)")
    p.add_argument(
        "--datasets", nargs="+", default=None, help="CLIP_benchmark dataset names (default: every set found)"
    )
    p.add_argument(
        "--dataset-root",
        help="folder of the sets (webdataset sets as ROOT/<name>), or a CLIP_benchmark template ROOT/{dataset}",
    )
    p.add_argument("--world", help="a `clipf data synth` folder: evaluate on its eval/ sets")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--num-workers", type=int, default=None, help="DataLoader workers (default: min(4, threads))"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: cores available, <= 16)"
    )
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=None, help="autocast (default: CUDA only)"
    )
    p.add_argument("--split", default="test")
    p.add_argument("--language", default="en")
    p.add_argument("--recall-k", type=int, nargs="+", default=list(DEFAULT_RECALL_K))
    p.add_argument("--annotation-file", default="", help="retrieval annotations (mscoco_captions, flickr30k)")
    p.add_argument(
        "--prompts",
        nargs="+",
        choices=PROTOCOLS,
        default=[DEFAULT_PROTOCOL],
        metavar="PROTOCOL",
        help="zero-shot protocol(s): full (prompts at 32 tokens; default) | masked (the authors' in-training "
        "protocol: prompts and captions through the run's training masker at its K); both: --prompts full masked",
    )
    p.add_argument("--force", action="store_true", help="recompute cached results")
    p.add_argument("--verbose", action="store_true", help="CLIP_benchmark's progress bars")
    return p


def _collect_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clipf eval collect",
        description="Gather RUN/eval/<checkpoint>/[<protocol>/]<dataset>.json of every run into one tidy table "
        "(CSV + Parquet): " + ", ".join(COLUMNS + EXTRA_COLUMNS) + ".",
    )
    p.add_argument("--runs", default="runs", help="folder of runs (or one run)")
    p.add_argument("--out", default="runs/results.csv", help="CSV path; the Parquet file goes beside it")
    p.add_argument("--no-parquet", action="store_true")
    return p


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "collect":
            args = _collect_parser().parse_args(argv[1:])
            df = collect(args.runs, args.out, parquet=not args.no_parquet)
            print(f"{args.out}: {len(df)} rows, {df['run'].nunique()} runs")
            return 0
        args = _eval_parser().parse_args(argv)
        if args.dataset_root and args.world:
            raise EvalError("--dataset-root and --world: pass one")
        df = evaluate_run(
            args.run,
            args.checkpoint,
            args.datasets,
            args.dataset_root,
            world=args.world,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            split=args.split,
            language=args.language,
            recall_k=args.recall_k,
            amp=args.amp,
            device=args.device,
            threads=args.threads,
            annotation_file=args.annotation_file,
            label=args.label,
            prompts=args.prompts,
            force=args.force,
            verbose=args.verbose,
        )
    except EvalError as exc:
        print(f"clipf eval: error: {exc}", file=sys.stderr)
        return 2
    n_done, n_cached = len(df.attrs["computed"]), len(df.attrs["cached"])
    print(f"{args.run}: {n_done} evaluated, {n_cached} cached -> {Path(args.run) / 'eval'}")
    if not df.empty:
        columns = "checkpoint" if df["protocol"].nunique() == 1 else ["checkpoint", "protocol"]
        table = df.pivot_table(index=["dataset", "metric"], columns=columns, values="value")
        print(table.round(4).to_string())
    return 0
