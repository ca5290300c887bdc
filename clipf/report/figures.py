"""The paper's figures (matplotlib, Agg backend) from the report's tables, and :func:`save_figure`
(deterministic PNG + SVG)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from clipf.report.tables import (
    MAIN_COLUMNS,
    MASKER_ORDER,
    PAPER_BESIDE,
    PAPER_MASKING,
    column,
    measured_columns,
)
from clipf.report.words import POS_CLASSES, zipf_slope


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend — except inside a Jupyter kernel, whose
    inline backend shows the figures (``matplotlib.use("Agg", force=False)`` would switch it off)."""
    import sys

    import matplotlib

    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def masker_colors(maskers: Iterable[str]) -> dict[str, str]:
    palette = {
        "truncate": "#7f7f7f",
        "random": "#1f77b4",
        "block": "#2ca02c",
        "shuffle": "#9467bd",
        "syntax": "#ff7f0e",
        "frequency": "#d62728",
    }
    return {m: palette.get(m, "#17becf") for m in maskers}


def _baseline_lines(ax, table: pd.DataFrame, checkpoint: str) -> None:
    """CLIP (dashed) and FLIP (dash-dot) of a main table as horizontal lines on ``ax``."""
    for row in table[table["masking"] == "none"].itertuples(index=False):
        mean = getattr(row, f"{checkpoint}_mean")
        if not pd.isna(mean):
            ax.axhline(
                mean, color="k", linestyle="--" if row.model == "CLIP" else "-.", lw=1, label=row.model
            )


PANEL_TITLES = {
    ("pretrain", "masked"): "pre-train, masked prompts",
    ("pretrain", "full"): "pre-train, full prompts",
    ("finetune", "full"): "fine-tune, full prompts",
}


def tokens_figure(table: pd.DataFrame, paper: pd.DataFrame | None = None):
    """Accuracy vs text tokens per masker (mean ± std over seeds), one panel per measured main-table
    column (pre-train under masked prompts when measured, pre-train and fine-tune under full prompts);
    CLIP/FLIP as horizontal lines; the paper's curves underneath when ``paper`` is given, each under our
    column of the same protocol (its pre-train column under masked prompts, its fine-tune under full)."""
    plt = pyplot()
    measured = measured_columns(table)
    panels = [(c, p) for c, p in MAIN_COLUMNS if column(c, p) in measured or p == "full"]
    if ("pretrain", "masked") in panels:
        paper_at = dict(PAPER_BESIDE)
    else:  # no masked numbers (results from before the protocols): the paper's pre-train under ours
        paper_at = {("pretrain", "full"): "paper_pretrain", ("finetune", "full"): "paper_finetune"}
    nrows = 1 if paper is None else 2
    fig, axes = plt.subplots(
        nrows, len(panels), figsize=(5 * len(panels), 3.6 * nrows), squeeze=False, sharex=True
    )
    masked = table[table["masking"] != "none"]
    colors = masker_colors(MASKER_ORDER)
    for i, (ckpt, protocol) in enumerate(panels):
        col = column(ckpt, protocol)
        ax = axes[0, i]
        for masker, group in masked.groupby("masker", sort=False):
            for r, g in group.groupby("image_mask"):
                g = g.sort_values("text_tokens")
                style = "-" if r == masked["image_mask"].mode().iloc[0] else ":"
                ax.errorbar(
                    g["text_tokens"],
                    g[f"{col}_mean"],
                    yerr=g[f"{col}_std"].fillna(0),
                    label=f"{masker}" + ("" if style == "-" else f" (mask {r:g})"),
                    color=colors.get(masker),
                    linestyle=style,
                    marker="o",
                    capsize=3,
                )
        _baseline_lines(ax, table, col)
        ax.set_title(f"ours: {PANEL_TITLES[ckpt, protocol]}")
        ax.set_ylabel("zero-shot top-1 (%)")
        if paper is None:
            continue
        pax = axes[1, i]
        if (ckpt, protocol) not in paper_at:
            pax.axis("off")
            pax.text(0.5, 0.5, "the paper: no column\nunder this protocol", ha="center", va="center")
            continue
        top1 = "pretrain_top1" if paper_at[ckpt, protocol] == "paper_pretrain" else "finetune_top1"
        pm = paper[(paper["image_tokens"] == 49) & (paper["masking"] != "none")]
        for masking, g in pm.groupby("masking", sort=False):
            ours = {PAPER_MASKING.get(m, m): m for m in MASKER_ORDER}.get(masking, masking)
            g = g.sort_values("text_tokens")
            pax.plot(g["text_tokens"], g[top1], marker="s", color=colors.get(ours), label=ours)
        for row in paper[paper["masking"] == "none"].itertuples(index=False):
            v = getattr(row, top1)
            if not pd.isna(v):
                pax.axhline(
                    v, color="k", linestyle="--" if row.model == "CLIP" else "-.", lw=1, label=row.model
                )
        what = "pre-train (masked prompts)" if top1 == "pretrain_top1" else "fine-tune (full prompts)"
        pax.set_title(f"paper (ImageNet): {what}")
        pax.set_ylabel("zero-shot top-1 (%)")
    for ax in axes[-1]:
        ax.set_xlabel("text tokens K")
    for ax in axes.flat:
        if not ax.axison:
            continue
        ax.set_xscale("log", base=2)
        ax.set_xticks([4, 6, 8, 16, 32], labels=["4", "6", "8", "16", "32"])
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes.flat)
    return fig


def _figure_legend(fig, axes) -> None:
    """One legend for all panels, to the right, each label once."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.legend(list(seen.values()), list(seen), loc="center right", fontsize=8, frameon=False)


def epochs_figure(curves: pd.DataFrame, ylabel: str = "zero-shot top-1 (%)"):
    """Accuracy vs training epoch, one panel per text-token budget, a line per series of
    :func:`epoch_curves` (mean over seeds, band = ± std): does the best masker change over training?"""
    plt = pyplot()
    ks = sorted(curves["text_tokens"].unique()) if not curves.empty else [0]
    fig, axes = plt.subplots(1, len(ks), figsize=(3.6 * len(ks), 3.4), squeeze=False, sharey=True)
    colors = masker_colors(MASKER_ORDER)
    for ax, k in zip(axes[0], ks, strict=True):
        sub = curves[curves["text_tokens"] == k]
        for (name, masker), g in sub.groupby(["series", "masker"], sort=False):
            stats = g.groupby("epoch")["value"].agg(["mean", "std"]).reset_index()
            color = "k" if name in ("CLIP", "FLIP") else colors.get(masker)
            style = "--" if name == "CLIP" else "-." if name == "FLIP" else ":" if "(" in name else "-"
            ax.plot(stats["epoch"], stats["mean"], marker="o", color=color, linestyle=style, label=name)
            low, high = stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0)
            ax.fill_between(stats["epoch"], low, high, color=color, alpha=0.12)
        ax.set_title(f"K = {k}")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    _figure_legend(fig, axes[0])
    return fig


def compute_figure(
    compute: pd.DataFrame, xs: Sequence[str] = ("samples_per_second", "tokens_seen"), y: str = "pretrain_acc"
):
    """Accuracy against throughput and against tokens processed, a point per cell (colour = masker,
    label = text tokens / image-mask %)."""
    plt = pyplot()
    xs = [x for x in xs if x in compute.columns]
    fig, axes = plt.subplots(1, len(xs), figsize=(5 * len(xs), 3.8), squeeze=False, sharey=True)
    colors = masker_colors(MASKER_ORDER)
    for ax, x in zip(axes[0], xs, strict=True):
        for row in compute.itertuples(index=False):
            at = (getattr(row, x), getattr(row, y))
            ax.scatter(*at, color=colors.get(row.masker), s=40, label=row.masker)
            label = f"K{row.text_tokens}/m{round(row.image_mask * 100)}"
            ax.annotate(label, at, fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(x.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("zero-shot top-1 (%)" if y.endswith("_acc") else y.replace("_", " "))
    _figure_legend(fig, axes[0])
    return fig


def keep_rate_figure(
    rates: pd.DataFrame, classes: Sequence[str] = ("noun", "adjective", "verb", "function", "grounded")
):
    """Keep rate against K, one panel per POS class (and grounded words when known), a line per masker."""
    plt = pyplot()
    classes = [c for c in classes if c in rates.columns]
    fig, axes = plt.subplots(1, len(classes), figsize=(3.3 * len(classes), 3.2), squeeze=False, sharey=True)
    colors = masker_colors(MASKER_ORDER)
    for ax, cls in zip(axes[0], classes, strict=True):
        for masker, g in rates.groupby("masker", sort=False):
            g = g.sort_values("text_tokens")
            ax.plot(g["text_tokens"], g[cls], marker="o", color=colors.get(masker), label=masker)
        ax.set_title(cls)
        ax.set_xlabel("text tokens K")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("share of words kept")
    _figure_legend(fig, axes[0])
    return fig


def keep_accuracy_figure(
    rates: pd.DataFrame,
    table: pd.DataFrame,
    classes: Sequence[str] = ("grounded", "noun", "adjective", "function"),
    checkpoint: str = "pretrain",
):
    """What a masker keeps next to what the model learns: for each POS class (and the grounded words),
    its keep rate (x) against zero-shot accuracy (y, mean ± std over seeds), a point per masker and K,
    a line per masker across K; CLIP / FLIP as horizontal lines."""
    plt = pyplot()
    classes = [c for c in classes if c in rates.columns]
    merged = table[table["masking"] != "none"].merge(rates, on=["masker", "text_tokens"], how="inner")
    fig, axes = plt.subplots(1, len(classes), figsize=(3.4 * len(classes), 3.4), squeeze=False, sharey=True)
    colors = masker_colors(MASKER_ORDER)
    for ax, cls in zip(axes[0], classes, strict=True):
        for masker, g in merged.groupby("masker", sort=False):
            g = g.sort_values("text_tokens")
            ax.errorbar(
                g[cls],
                g[f"{checkpoint}_mean"],
                yerr=g[f"{checkpoint}_std"].fillna(0),
                color=colors.get(masker),
                marker="o",
                capsize=2,
                label=masker,
            )
            for row in g.itertuples(index=False):
                ax.annotate(
                    f"{row.text_tokens}",
                    (getattr(row, cls), getattr(row, f"{checkpoint}_mean")),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        _baseline_lines(ax, table, checkpoint)
        ax.set_title(f"{cls} words kept")
        ax.set_xlabel("keep rate")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"zero-shot top-1 (%), {checkpoint}")
    _figure_legend(fig, axes[0])
    return fig


def kept_share_figure(share: pd.DataFrame):
    """Composition of the kept words (share of nouns, adjectives, verbs, function words...), a stacked
    bar per masker, a panel per K: the paper's word-distribution figure."""
    plt = pyplot()
    ks = sorted(share["text_tokens"].unique())
    classes = [c for c in POS_CLASSES if c in share.columns]
    colors = dict(zip(POS_CLASSES, ("#1f77b4", "#ff7f0e", "#2ca02c", "#bbbbbb", "#eeeeee"), strict=True))
    fig, axes = plt.subplots(1, len(ks), figsize=(3.2 * len(ks), 3.4), squeeze=False, sharey=True)
    for ax, k in zip(axes[0], ks, strict=True):
        sub = share[share["text_tokens"] == k].set_index("masker")
        sub = sub.reindex([m for m in MASKER_ORDER if m in sub.index])
        bottom = np.zeros(len(sub))
        for cls in classes:
            ax.bar(
                sub.index, sub[cls], bottom=bottom, color=colors[cls], label=cls, edgecolor="white", lw=0.5
            )
            bottom += sub[cls].to_numpy()
        ax.set_title(f"K = {k}")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    axes[0, 0].set_ylabel("share of kept words")
    _figure_legend(fig, axes[0][:1])
    return fig


def frequency_figure(bins: pd.DataFrame, k: int):
    """Kept-word frequency distribution at budget K per masker, against all words (the paper's
    word-distribution figure)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    colors = masker_colors(MASKER_ORDER)
    every = bins[bins["masker"] == "all words"]
    ax.bar(
        every["log10_freq"],
        every["share"],
        width=0.8 * np.diff(sorted(bins["log10_freq"].unique())).min(initial=0.2),
        color="#dddddd",
        label="all words",
    )
    for masker, g in bins[(bins["text_tokens"] == k) & (bins["masker"] != "all words")].groupby(
        "masker", sort=False
    ):
        ax.plot(g["log10_freq"], g["share"], marker="o", color=colors.get(masker), label=masker)
    ax.set_xlabel("log10 word frequency")
    ax.set_ylabel("share of kept words")
    ax.set_title(f"kept words at K = {k}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def zipf_figure(ranks: pd.DataFrame, label: int = 12):
    """Rank-frequency on log-log axes, the top words labelled, with the fitted Zipf slope."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog(ranks["rank"], ranks["freq"], marker=".", linestyle="none", ms=3)
    for row in ranks.head(label).itertuples(index=False):
        ax.annotate(row.word, (row.rank, row.freq), fontsize=7, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel("rank")
    ax.set_ylabel("relative frequency f(w)")
    ax.set_title(f"rank-frequency (slope {zipf_slope(ranks):.2f})")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def p_mask_figure(curves: pd.DataFrame, words: pd.DataFrame | None = None, floor: float = -3.0):
    """P_mask against word frequency, one line per threshold t (and rule, when ``curves`` has several);
    ``words`` (word, freq) marked on top. Under the released rule words rarer than t have P < 0 (kept
    first): the axis goes down to the lowest P, at most to ``floor``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    rules = "rule" in curves and curves["rule"].nunique() > 1
    for (t, rule), g in curves.assign(rule=curves.get("rule", "")).groupby(["threshold", "rule"]):
        ax.semilogx(g["freq"], g["p_mask"], label=f"t = {t:g}" + (f" ({rule})" if rules else ""))
    if words is not None:
        for row in words.itertuples(index=False):
            ax.axvline(row.freq, color="#bbbbbb", lw=0.6)
            ax.annotate(row.word, (row.freq, 1.0), fontsize=7, rotation=90, va="top")
    ax.axhline(0.0, color="k", lw=0.6)
    low = max(float(curves["p_mask"].min()), floor) if len(curves) else 0.0
    ax.set_xlabel("word frequency f(w)")
    ax.set_ylabel("P_mask(w)")
    ax.set_ylim(min(low, 0.0) - 0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def training_figure(metrics: pd.DataFrame, x: str = "epoch"):
    """Training curves of one run: every numeric per-epoch column of metrics.json, a panel each."""
    plt = pyplot()
    cols = [c for c in metrics.columns if c != x and metrics[c].dtype.kind in "fi"]
    n = max(1, len(cols))
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
    for ax, col in zip(axes.flat, cols, strict=False):
        ax.plot(metrics[x] if x in metrics else np.arange(len(metrics)), metrics[col], marker="o")
        ax.set_title(col, fontsize=9)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(cols) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def save_figure(fig, stem: str | Path) -> list[Path]:
    """``stem``.png and .svg (deterministic SVG: no timestamps, fixed hash salt)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150, metadata={"Software": None})
    plt = pyplot()
    with plt.rc_context({"svg.hashsalt": "clipf"}):
        fig.savefig(paths[1], metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return paths
