"""``clipf data``: generate and inspect the embedded image-caption world.

clipf data synth --out DIR --train N --val M --image-size S --seed X [--eval N]
                 [--preset shapes|concepts] [--config params.yaml] [--overwrite] [--workers W] [--no-progress]
clipf data stats DIR [--split train] [--limit N] [--json]
clipf data show  DIR [--out figures/world_contact_sheet.png] [--n 16] [--cols 4] [--split train]
clipf data spec  DIR [--split train]        # open_clip_train's --train-data / --train-num-samples
"""

from __future__ import annotations

import argparse
import json
import sys

from clipf.world.config import ConfigError
from clipf.world.generate import MAX_SIZE, MIN_SIZE, WorldError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clipf data", description="the embedded image-caption world")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("synth", help="write training/validation shards and evaluation sets")
    p.add_argument("--out", required=True, help="output directory (the world)")
    p.add_argument("--train", type=int, required=True, help="training pairs")
    p.add_argument("--val", type=int, default=0, help="validation pairs (default 0)")
    p.add_argument(
        "--image-size", type=int, default=32, help=f"image side, {MIN_SIZE}..{MAX_SIZE} (default 32)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eval", type=int, default=None, help="images per evaluation set (default: world.eval_size; 0: none)"
    )
    p.add_argument("--config", default=None, help="params.yaml (its world: section) or a YAML of the section")
    p.add_argument(
        "--preset",
        default=None,
        help="which world: shapes | concepts (default: the config's world.preset, else shapes)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a world already in --out")
    p.add_argument("--workers", type=int, default=1, help="processes (the output does not depend on it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("stats", help="caption statistics of a split (also written to DIR/stats.json)")
    p.add_argument("dir")
    p.add_argument("--split", default="train")
    p.add_argument("--limit", type=int, default=None, help="first N pairs only")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the summary")

    p = sub.add_parser("show", help="contact sheet of sample images and captions")
    p.add_argument("dir")
    p.add_argument("--out", default="figures/world_contact_sheet.png")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--cols", type=int, default=4)
    p.add_argument("--split", default="train")

    p = sub.add_parser("spec", help="shard pattern and sample count of a split, as JSON")
    p.add_argument("dir")
    p.add_argument("--split", default="train")
    return ap


def cli(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "synth":
            from clipf.world.generate import synthesize

            m = synthesize(
                args.out,
                args.train,
                args.val,
                args.image_size,
                args.seed,
                args.config,
                n_eval=args.eval,
                overwrite=args.overwrite,
                workers=args.workers,
                progress=not args.no_progress,
                preset=args.preset,
            )
            evals = ", ".join(m.get("eval", {})) or "none"
            print(
                f"clipf data synth: {m['train']['count']} train / {m.get('val', {}).get('count', 0)} val pairs "
                f"at {m['image_size']} px in {args.out} (eval sets: {evals})"
            )
        elif args.cmd == "stats":
            from clipf.world.stats import format_stats, stats

            s = stats(args.dir, split=args.split, limit=args.limit)
            print(json.dumps(s, indent=2) if args.json else format_stats(s))
        elif args.cmd == "show":
            from clipf.world.sheet import contact_sheet

            print(contact_sheet(args.dir, args.out, n=args.n, cols=args.cols, split=args.split))
        elif args.cmd == "spec":
            from pathlib import Path

            from clipf.world.generate import shard_spec

            pattern, n = shard_spec(Path(args.dir) / args.split)
            print(json.dumps({"train_data": pattern, "train_num_samples": n}))
    except (WorldError, ConfigError) as err:
        print(f"clipf data {args.cmd}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
