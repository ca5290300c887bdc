"""The paper's tables and figures, from files the pipeline wrote (the tidy results table, metrics.json).

Every builder takes a DataFrame and returns a DataFrame or a matplotlib Figure; ``write_table`` and
``save_figure`` put them under ``figures/`` (CSV + Markdown + LaTeX, PNG + SVG). ``05_report.ipynb``
and ``clipf report`` call them; nothing here trains or evaluates.

- :mod:`clipf.report.tables`   the paper's numbers and our cells, the main / threshold / per-dataset
                                tables, per-epoch curves, compute; ``markdown``, ``write_table``
- :mod:`clipf.report.claims`   the paper's claims checked against seed noise
- :mod:`clipf.report.runs`     accuracy over epochs, held-out curves and compute read from run folders
- :mod:`clipf.report.bands`    the main table and claims per frequency band of the classes (head / torso / tail)
- :mod:`clipf.report.words`    what each text masker keeps (POS, frequency bins, Zipf, P_mask)
- :mod:`clipf.report.figures`  the figures; ``pyplot`` (Agg), ``save_figure``
- :mod:`clipf.report.predictions`  docs/PREDICTIONS.md judged on the results by its rule (stage
                                ``predictions``; ``python -m clipf.report.predictions``; imported on its own)
- :mod:`clipf.report.uta`      the UTA report (``uta_report`` stage; imported on its own: it reads UTA
                                training compute)

This package re-exports the first four, so ``from clipf import report; report.main_table(...)`` works.

The tidy table (``clipf eval collect``) has one row per measurement:
run, masker, text_tokens, image_mask, seed, epochs, checkpoint, protocol, dataset, task, metric, value
(``protocol``: the zero-shot protocol, ``full`` or ``masked``; a table without it is ``full``). The main
table shows our pre-train under both protocols: masked prompts beside the paper's pre-train column (its
protocol), full prompts, then our fine-tune beside the paper's fine-tune column (full prompts both):
:data:`PROTOCOL_NOTE`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clipf.files import write_json
from clipf.report.bands import BANDS, band_claims, band_sets, band_table, bands_figure
from clipf.report.claims import claims, verdict
from clipf.report.figures import (
    compute_figure,
    epochs_figure,
    frequency_figure,
    keep_accuracy_figure,
    keep_rate_figure,
    kept_share_figure,
    p_mask_figure,
    pyplot,
    save_figure,
    tokens_figure,
    training_figure,
    zipf_figure,
)
from clipf.report.runs import COMPUTE_KEYS, epoch_accuracy, main_cells, run_compute, val_curves
from clipf.report.tables import (
    CELL,
    CHECKPOINTS,
    DATASET_LABELS,
    MAIN_COLUMNS,
    MAIN_LABELS,
    MASKER_ORDER,
    PAPER_BESIDE,
    PAPER_IMAGE_MASK,
    PAPER_MASKING,
    PROTOCOL_NOTE,
    best_by_epoch,
    column,
    compute_table,
    datasets_table,
    describe,
    epoch_curves,
    fmt_mean_std,
    format_datasets_table,
    format_main_table,
    image_tokens,
    main_table,
    main_threshold,
    markdown,
    mean_std,
    measured_columns,
    only_protocol,
    paper_results,
    patches_of,
    summary,
    threshold_of,
    threshold_table,
    with_protocol,
    write_table,
    zero_shot,
)
from clipf.report.words import (
    POS_CLASSES,
    SPECIAL_IDS,
    decode_kept,
    frequency_bins,
    gold_pos,
    keep_rates,
    keep_table,
    kept_share,
    make_mask,
    masking_examples,
    p_mask_curves,
    pos_class,
    rank_frequency,
    read_samples,
    word_keep_stats,
    words_of,
    zipf_slope,
)

__all__ = [
    "BANDS",
    "band_claims",
    "band_sets",
    "band_table",
    "bands_figure",
    "COMPUTE_KEYS",
    "epoch_accuracy",
    "main_cells",
    "run_compute",
    "val_curves",
    "CELL",
    "CHECKPOINTS",
    "DATASET_LABELS",
    "MAIN_COLUMNS",
    "MAIN_LABELS",
    "MASKER_ORDER",
    "PAPER_BESIDE",
    "PAPER_IMAGE_MASK",
    "PAPER_MASKING",
    "POS_CLASSES",
    "PROTOCOL_NOTE",
    "SPECIAL_IDS",
    "best_by_epoch",
    "claims",
    "cli",
    "column",
    "compute_figure",
    "compute_table",
    "datasets_table",
    "decode_kept",
    "describe",
    "epoch_curves",
    "epochs_figure",
    "fmt_mean_std",
    "format_datasets_table",
    "format_main_table",
    "frequency_bins",
    "frequency_figure",
    "gold_pos",
    "image_tokens",
    "keep_accuracy_figure",
    "keep_rate_figure",
    "keep_rates",
    "keep_table",
    "kept_share",
    "kept_share_figure",
    "main_table",
    "main_threshold",
    "make_mask",
    "markdown",
    "masking_examples",
    "mean_std",
    "measured_columns",
    "only_protocol",
    "p_mask_curves",
    "p_mask_figure",
    "paper_results",
    "patches_of",
    "pos_class",
    "pyplot",
    "rank_frequency",
    "read_samples",
    "save_figure",
    "summary",
    "threshold_of",
    "threshold_table",
    "tokens_figure",
    "training_figure",
    "verdict",
    "with_protocol",
    "word_keep_stats",
    "words_of",
    "write_table",
    "zero_shot",
    "zipf_figure",
    "zipf_slope",
]


def cli(argv: list[str] | None = None) -> int:
    """``clipf report RESULTS [--out figures]``: the main table (CSV, Markdown, LaTeX) and summary.json."""
    import pandas as pd

    parser = argparse.ArgumentParser(
        prog="clipf report", description="The paper's main table from a tidy results table."
    )
    parser.add_argument("results", help="tidy results CSV (clipf eval collect)")
    parser.add_argument("--out", default="figures", help="output folder")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--metric", default="acc1")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument(
        "--rule", default=None, help="frequency cells of this rule (default: the most common)"
    )
    parser.add_argument("--patches", type=int, default=196)
    args = parser.parse_args(argv)
    tidy = pd.read_csv(args.results)
    table = main_table(tidy, args.dataset, args.metric, args.threshold, args.patches, rule=args.rule)
    paths = write_table(format_main_table(table), Path(args.out) / "main_table", caption=PROTOCOL_NOTE)
    write_json(Path(args.out) / "summary.json", summary(table))
    print(markdown(format_main_table(table)))
    print(PROTOCOL_NOTE)
    print("wrote", ", ".join(map(str, paths)))
    return 0
