"""``clipf uta export|maps|eval|report``: the UTA command line (training is ``clipf train --objective uta``).

An entry point like :mod:`clipf.cli`: ``eval`` and ``report`` are the study's ``uta_eval`` and
``uta_report`` stages and call :func:`clipf.study.uta_eval` and :mod:`clipf.report.uta` (imported inside
the command). Nothing in clipf imports this module; the package's ``__init__`` does not either, so the
study and the report can import :mod:`clipf.objectives.uta` without a cycle.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from clipf.engine import UsageError
from clipf.objectives.uta.masks import DEFAULT_RATIO, PATCH_MASKERS, mask_probability_maps
from clipf.objectives.uta.run import export


def cli(argv: list[str] | None = None) -> int:
    """``clipf uta export|maps|eval|report`` (training: ``clipf train --objective uta``)."""
    parser = argparse.ArgumentParser(
        prog="clipf uta",
        description="UTA helpers (training: clipf train --objective uta; clipf/objectives/uta/)",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser(
        "export", help="a UTA checkpoint -> open_clip local-dir: model (student vision + teacher text)"
    )
    p.add_argument("checkpoint")
    p.add_argument("--out", default=None, help="default: RUN/<phase>/export beside the checkpoints")
    p = sub.add_parser("maps", help="per-location masking probability of each patch masker (JSON)")
    p.add_argument("--grid", type=int, default=14)
    p.add_argument("--ratio", type=float, default=DEFAULT_RATIO)
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=None, metavar="STEM", help="also write STEM.png / STEM.svg (Figure 3)")
    p = sub.add_parser("eval", help="stage uta_eval: CLIP_benchmark on a UTA student's export (live plan)")
    p.add_argument("cell", help="the student's run under --runs (uta-s0)")
    p.add_argument("phase", choices=["pretrain", "finetune"])
    p.add_argument("--runs", default="runs")
    p.add_argument("--world", default=None, help="the student's world in the plan (its data)")
    p = sub.add_parser("report", help="stage uta_report: results/uta.csv and figures/uta/ (live plan)")
    p.add_argument("--results", default="results/results.csv", help="the tidy table (clipf eval collect)")
    p.add_argument("--out", default="results/uta.csv")
    p.add_argument("--figures", default="figures/uta")
    p.add_argument("--runs", default="runs")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "export":
            out = args.out or Path(args.checkpoint).resolve().parent.parent / "export"
            print(export(args.checkpoint, out))
        elif args.cmd == "maps":
            maps = mask_probability_maps(tuple(PATCH_MASKERS), args.grid, args.ratio, args.samples, args.seed)
            if args.figure:
                from clipf.report import save_figure
                from clipf.report.uta import mask_map_figure

                shown = {k: maps[k] for k in ("block", "reversed_block")}
                save_figure(mask_map_figure(shown, args.ratio, args.samples), args.figure)
            print(json.dumps({k: np.round(v, 4).tolist() for k, v in maps.items()}))
        else:
            from clipf import study
            from clipf.report.uta import write_report

            cfg = study.config(world=getattr(args, "world", None))
            if args.cmd == "eval":
                study.uta_eval(cfg, args.cell, args.phase, args.runs)
            else:
                paths = write_report(cfg, args.results, args.out, args.figures, args.runs)
                print(Path(paths["summary"]).read_text())
                print("wrote", ", ".join(str(p) for p in paths.values()))
    except (OSError, ValueError, RuntimeError, UsageError) as exc:
        print(f"clipf uta {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
