"""Accuracy by frequency band of the class: the main table and the paper's claims on the head, torso and
tail thirds of a world's concepts (``<dataset>_head`` / ``_torso`` / ``_tail``, e.g. the concepts world's
``wds/concepts_tail``: its rarest-named concepts). Where CLIPF's mechanism should show is the tail: the
classes named by the rarest words, which a frequency masker keeps and the others drop as often as any."""

from __future__ import annotations

import pandas as pd

from clipf.report.claims import claims
from clipf.report.figures import masker_colors, pyplot
from clipf.report.tables import MAIN_LABELS, MASKER_ORDER, column, main_table

BANDS = ("head", "torso", "tail")


def band_sets(tidy: pd.DataFrame, dataset: str) -> dict[str, str]:
    """``{band: dataset}`` of the band sets of ``dataset`` present in the results (may be empty)."""
    present = set(tidy["dataset"].dropna())
    return {b: f"{dataset}_{b}" for b in BANDS if f"{dataset}_{b}" in present}


def band_table(tidy: pd.DataFrame, dataset: str, metric: str = "acc1", **main_kwargs) -> pd.DataFrame:
    """:func:`main_table` on each band set of ``dataset`` (:func:`band_sets`), a ``band`` column first;
    empty when the world has no band sets."""
    parts = [
        main_table(tidy, ds, metric, **main_kwargs).assign(band=band)
        for band, ds in band_sets(tidy, dataset).items()
    ]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    return table[["band", *[c for c in table.columns if c != "band"]]]


def band_claims(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims (:func:`claims`) within each band of :func:`band_table`, a ``band`` column first."""
    parts = [claims(g.drop(columns="band")).assign(band=b) for b, g in table.groupby("band", sort=False)]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return out[["band", *[c for c in out.columns if c != "band"]]]


def bands_figure(table: pd.DataFrame, checkpoint: str = "pretrain", protocol: str = "full"):
    """Zero-shot top-1 per band (head, torso, tail) for each masker, one panel per K (mean ± std over
    seeds); the unmasked CLIP baseline as a grey line."""
    plt = pyplot()
    col = column(checkpoint, protocol)
    masked = table[table["masking"] != "none"]
    ks = sorted(masked["text_tokens"].unique())
    fig, axes = plt.subplots(
        1, max(len(ks), 1), figsize=(3.2 * max(len(ks), 1), 3.2), sharey=True, squeeze=False
    )
    bands = [b for b in BANDS if b in set(table["band"])]
    x = range(len(bands))
    colors = masker_colors(MASKER_ORDER)
    clip = table[(table["masking"] == "none") & (table["image_mask"] == 0)]
    for ax, k in zip(axes[0], ks, strict=False):
        for masker, g in masked[masked["text_tokens"] == k].groupby("masker"):
            g = g.set_index("band").reindex(bands)
            ax.errorbar(
                x,
                g[f"{col}_mean"],
                yerr=g[f"{col}_std"].fillna(0),
                marker="o",
                capsize=3,
                label=masker,
                color=colors.get(masker),
            )
        if not clip.empty:
            c = clip.set_index("band").reindex(bands)
            ax.plot(x, c[f"{col}_mean"], color="grey", linestyle="--", label="CLIP (32 tokens)")
        ax.set_xticks(list(x), bands)
        ax.set_title(f"K = {k}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"top-1 (%), {MAIN_LABELS.get((checkpoint, protocol), col)}")
    axes[0][-1].legend(fontsize=7, loc="center right")
    fig.tight_layout()
    return fig
