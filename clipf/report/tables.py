"""The paper's tables from the tidy results table: its numbers beside ours (main table, threshold sweep,
per-dataset table, summary), per-epoch curves, compute, and the writers (CSV + Markdown + LaTeX).

The tidy table (``clipf eval collect``) has one row per measurement:
run, masker, text_tokens, image_mask, seed, epochs, checkpoint, protocol, dataset, task, metric, value
(+ freq_threshold, freq_rule, ...). A table without ``protocol`` (written before the two zero-shot
protocols existed) is the ``full`` protocol.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from clipf.files import write_text

CHECKPOINTS = ("pretrain", "finetune")
FULL, MASKED = "full", "masked"  # the zero-shot protocols (clipf.evaluate.protocols)
# The main table's columns of ours, in order: (checkpoint, protocol). The paper's pre-train column was
# measured by open_clip_train's in-training zero-shot evaluation, handed the training tokenizer (class
# prompts masked to K by the cell's own masker): our masked protocol sits beside it. Its fine-tune column
# (after the unmasked tuning) used full prompts: our full protocol; our pre-train under full prompts is
# shown between the two.
MAIN_COLUMNS = (("pretrain", MASKED), ("pretrain", FULL), ("finetune", FULL))
PAPER_BESIDE = {("pretrain", MASKED): "paper_pretrain", ("finetune", FULL): "paper_finetune"}
PROTOCOL_NOTE = (
    "Pre-train (masked prompts) is the paper's pre-train protocol: open_clip_train's in-training zero-shot "
    "evaluation with the training tokenizer, class prompts masked to K by the cell's own masker; it sits "
    "beside the paper's pre-train column. Full prompts (32 tokens, never masked) is the protocol of the "
    "paper's fine-tune column, beside which our fine-tune sits; our pre-train under full prompts is shown "
    "between the two."
)
MASKER_ORDER = ("truncate", "random", "block", "shuffle", "syntax", "frequency")
PAPER_MASKING = {"truncate": "truncation"}  # our masker name -> the paper's column
PAPER_IMAGE_MASK = {197: 0.0, 98: 0.5, 49: 0.75}  # ViT-B/16 image tokens -> patch-dropout ratio


# ---------------------------------------------------------------- the paper's numbers and our cells


def paper_results() -> pd.DataFrame:
    """The published zero-shot ImageNet-1K top-1 (%) (``clipf/paper/clipf_results.csv``)."""
    with resources.files("clipf.paper").joinpath("clipf_results.csv").open() as fh:
        paper = pd.read_csv(fh)
    paper["image_mask"] = paper["image_tokens"].map(PAPER_IMAGE_MASK)
    return paper


def describe(masker: str, text_tokens: int, image_mask: float, full_text_tokens: int = 32) -> tuple[str, str]:
    """(model, masking) as the paper names a cell: CLIP / FLIP / CLIPA / CLIPF and the text masking."""
    if masker in ("none", "truncate") and text_tokens >= full_text_tokens:
        return ("CLIP" if image_mask == 0 else "FLIP"), "none"
    return ("CLIPF" if masker == "frequency" else "CLIPA"), PAPER_MASKING.get(masker, masker)


def image_tokens(image_mask: float, patches: int = 196) -> int:
    """Image tokens the paper's way: patches + class token unmasked, else the kept patches."""
    return patches + 1 if image_mask == 0 else int(round(patches * (1 - image_mask)))


def patches_of(model: str) -> int:
    """Number of image patches of an open_clip ViT config (196 for ViT-B-16 at 224 px)."""
    import open_clip

    try:
        from clipf import models

        models.register()
    except ImportError:  # only open_clip's own configs
        pass
    cfg = open_clip.get_model_config(model)
    if cfg is None:
        raise ValueError(f"unknown open_clip model config {model!r}")
    vision = cfg["vision_cfg"]
    size, patch = vision["image_size"], vision.get("patch_size", 16)
    size = size[0] if isinstance(size, list | tuple) else size
    patch = patch[0] if isinstance(patch, list | tuple) else patch
    return (size // patch) ** 2


_THRESHOLD = re.compile(r"-t(\d+(?:p\d+)?e-?\d+)(?:-|$)")


def threshold_of(run: str) -> float:
    """The frequency threshold a run name carries (``frequency-k8-m75-t1e-3-s0`` -> 0.001), else NaN."""
    m = _THRESHOLD.search(str(run))
    return float(m.group(1).replace("p", ".")) if m else float("nan")


# ---------------------------------------------------------------- the tidy table


def column(checkpoint: str, protocol: str = FULL) -> str:
    """The main table's column prefix of a (checkpoint, protocol): ``pretrain``, ``pretrain_masked``."""
    return checkpoint if protocol == FULL else f"{checkpoint}_{protocol}"


def with_protocol(tidy: pd.DataFrame) -> pd.DataFrame:
    """``tidy`` with a ``protocol`` column (a table written before protocols existed: all ``full``)."""
    if "protocol" in tidy:
        return tidy.assign(protocol=tidy["protocol"].fillna(FULL))
    return tidy.assign(protocol=FULL)


def only_protocol(tidy: pd.DataFrame, protocol: str = FULL) -> pd.DataFrame:
    """The rows of one zero-shot protocol."""
    rows = with_protocol(tidy)
    return rows[rows["protocol"] == protocol]


def zero_shot(tidy: pd.DataFrame, dataset: str | None = None, metric: str = "acc1") -> pd.DataFrame:
    """Zero-shot classification rows of one dataset (default: the first), value in percent."""
    rows = tidy[(tidy["task"] == "zeroshot_classification") & (tidy["metric"] == metric)]
    if rows.empty:
        raise ValueError(f"no zero-shot classification {metric!r} rows in the results table")
    datasets = sorted(rows["dataset"].unique())
    dataset = dataset or datasets[0]
    if dataset not in datasets:
        raise ValueError(f"dataset {dataset!r} not in the results (have: {', '.join(datasets)})")
    rows = with_protocol(rows[rows["dataset"] == dataset])
    rows["value"] = rows["value"].astype(float) * (100.0 if rows["value"].max() <= 1.0 else 1.0)
    parsed = rows["run"].map(threshold_of)
    rows["threshold"] = (
        rows["freq_threshold"].astype(float).fillna(parsed) if "freq_threshold" in rows else parsed
    )
    return rows


def main_threshold(
    rows: pd.DataFrame, threshold: float | None = None, rule: str | None = None
) -> pd.DataFrame:
    """Drop frequency cells of the threshold sweep other than ``threshold`` (default: the most common),
    and those of another frequency rule than ``rule`` (default: the most common; ``freq_rule`` column)."""
    freq = rows["masker"] == "frequency"
    if not freq.any():
        return rows
    if threshold is None:  # the most common; none when no frequency cell names one
        common = rows.loc[freq, "threshold"].mode()
        threshold = common.iloc[0] if len(common) else None
    if threshold is not None:
        rows = rows[~freq | np.isclose(rows["threshold"], threshold)]
    freq = rows["masker"] == "frequency"
    if "freq_rule" in rows and rows.loc[freq, "freq_rule"].notna().any():
        rule = rule or rows.loc[freq, "freq_rule"].dropna().mode().iloc[0]
        rows = rows[~freq | (rows["freq_rule"] == rule)]
    return rows


def mean_std(values: pd.Series) -> pd.Series:
    v = values.astype(float)
    return pd.Series({"mean": v.mean(), "std": v.std(ddof=1) if len(v) > 1 else np.nan, "n": len(v)})


def fmt_mean_std(mean: float, std: float, n: int, digits: int = 1) -> str:
    """``35.5 ± 0.4`` (std over seeds, n-1), ``35.5`` for one seed, ``–`` for none."""
    if n == 0 or pd.isna(mean):
        return "–"
    if n == 1 or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


CELL = ["masker", "text_tokens", "image_mask"]


def main_table(
    tidy: pd.DataFrame,
    dataset: str | None = None,
    metric: str = "acc1",
    threshold: float | None = None,
    patches: int = 196,
    full_text_tokens: int = 32,
    rule: str | None = None,
) -> pd.DataFrame:
    """The paper's main table from our runs: one row per (masker, text tokens, image mask), mean/std/n
    over seeds for each of :data:`MAIN_COLUMNS` — ``pretrain_masked_*`` (masked prompts), ``pretrain_*``
    and ``finetune_*`` (full prompts) — the paper's numbers beside; in the paper's row order. Frequency
    cells: those of ``threshold`` and ``rule`` (default: the most common)."""
    rows = main_threshold(zero_shot(tidy, dataset, metric), threshold, rule)
    rows = rows.assign(
        column=[column(c, p) for c, p in rows[["checkpoint", "protocol"]].itertuples(index=False)]
    )
    stats = rows.groupby([*CELL, "column"])["value"].apply(mean_std).unstack()
    stats = stats.unstack("column")
    stats.columns = [f"{col}_{stat}" for stat, col in stats.columns]
    table = stats.reset_index()
    shown = [column(c, p) for c, p in MAIN_COLUMNS]
    for col in shown:
        for stat in ("mean", "std", "n"):
            if f"{col}_{stat}" not in table:
                table[f"{col}_{stat}"] = 0 if stat == "n" else np.nan
    named = [describe(m, k, r, full_text_tokens) for m, k, r in table[CELL].itertuples(index=False)]
    table["model"] = [model for model, _ in named]
    table["masking"] = [masking for _, masking in named]
    table["image_tokens"] = table["image_mask"].map(lambda r: image_tokens(r, patches))
    paper = paper_results().rename(
        columns={"pretrain_top1": "paper_pretrain", "finetune_top1": "paper_finetune"}
    )
    paper["text_tokens"] = paper["text_tokens"].clip(upper=full_text_tokens)
    table = table.merge(
        paper[["masking", "text_tokens", "image_mask", "paper_pretrain", "paper_finetune"]],
        on=["masking", "text_tokens", "image_mask"],
        how="left",
    )
    table["_order"] = table["masker"].map({m: i for i, m in enumerate(MASKER_ORDER)})
    table = table.sort_values(["image_mask", "text_tokens", "_order"], ascending=[True, False, True])
    cols = ["model", "masking", "image_tokens", "text_tokens", "masker", "image_mask"]
    cols += [f"{c}_{s}" for c in shown for s in ("mean", "std", "n")] + ["paper_pretrain", "paper_finetune"]
    table = table[cols].reset_index(drop=True)
    for col in shown:
        table[f"{col}_n"] = table[f"{col}_n"].fillna(0).astype(int)
    return table


MAIN_LABELS = {
    ("pretrain", MASKED): "Pre-train (masked prompts)",
    ("pretrain", FULL): "Pre-train (full prompts)",
    ("finetune", FULL): "Fine-tune (full prompts)",
}


def format_main_table(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """The main table as the paper lays it out: our pre-train under masked prompts, the paper's pre-train
    column beside it (the same protocol), our pre-train under full prompts, our fine-tune, the paper's
    fine-tune column beside it (full prompts both) — :data:`PROTOCOL_NOTE`."""

    def paper(v: float) -> str:
        return "–" if pd.isna(v) else f"{v:.1f}"

    out = pd.DataFrame(
        {
            "Model": table["model"],
            "Masking": table["masking"],
            "Image tokens": table["image_tokens"],
            "Text tokens": table["text_tokens"],
        }
    )
    for ckpt, protocol in MAIN_COLUMNS:
        col = column(ckpt, protocol)
        out[MAIN_LABELS[ckpt, protocol]] = [
            fmt_mean_std(m, s, n, digits)
            for m, s, n in table[[f"{col}_mean", f"{col}_std", f"{col}_n"]].itertuples(index=False)
        ]
        if (ckpt, protocol) in PAPER_BESIDE:
            out[f"{'Pre-train' if ckpt == 'pretrain' else 'Fine-tune'} (paper)"] = table[
                PAPER_BESIDE[ckpt, protocol]
            ].map(paper)
    return out


def threshold_table(tidy: pd.DataFrame, dataset: str | None = None, metric: str = "acc1") -> pd.DataFrame:
    """Frequency masking across thresholds t (and rules) (mean/std/n over seeds per checkpoint and
    zero-shot protocol)."""
    rows = zero_shot(tidy, dataset, metric)
    rows = rows[rows["masker"] == "frequency"]
    keys = ["text_tokens", "image_mask", "threshold"]
    if "freq_rule" in rows:
        rows = rows.assign(freq_rule=rows["freq_rule"].fillna("clamped"))
        keys.append("freq_rule")
    keys += ["checkpoint", "protocol"]
    if rows.empty:
        return pd.DataFrame(columns=[*keys, "mean", "std", "n"])
    stats = rows.groupby(keys)["value"].apply(mean_std)
    return stats.unstack().reset_index()


def measured_columns(table: pd.DataFrame) -> list[str]:
    """The main table's column prefixes (:func:`column`) that hold at least one number."""
    cols = [column(c, p) for c, p in MAIN_COLUMNS]
    return [c for c in cols if f"{c}_n" in table and table[f"{c}_n"].fillna(0).sum() > 0]


def summary(table: pd.DataFrame) -> dict:
    """Headline numbers for ``dvc metrics``: mean accuracy per cell and column (``pretrain``,
    ``finetune``: full prompts; ``pretrain_masked``: masked prompts, when measured), the best masker per K."""
    cols = [
        c for c in (column(c, p) for c, p in MAIN_COLUMNS) if c in CHECKPOINTS or c in measured_columns(table)
    ]
    cols = sorted(cols, key=lambda c: (c not in CHECKPOINTS, c))
    out: dict = {col: {} for col in cols}
    for row in table.itertuples(index=False):
        key = f"{row.masker}-k{row.text_tokens}-m{round(row.image_mask * 100):d}"
        for col in cols:
            mean = getattr(row, f"{col}_mean")
            if not pd.isna(mean):
                out[col][key] = round(float(mean), 3)
    masked = table[table["masking"] != "none"]
    for col in cols:
        best = {}
        for k, group in masked.dropna(subset=[f"{col}_mean"]).groupby("text_tokens"):
            best[f"k{k}"] = str(group.loc[group[f"{col}_mean"].idxmax(), "masker"])
        out[f"best_masker_{col}"] = best
    return out


DATASET_LABELS = {
    "wds/world_objects": "colour+shape",
    "wds/world_color": "colour",
    "wds/world_shape": "shape",
    "wds/world_size": "size",
    "wds/world_position": "position",
    "wds/world_retrieval": "retrieval",
    "wds/concepts": "concepts",
    "wds/concepts_head": "head third",
    "wds/concepts_torso": "torso third",
    "wds/concepts_tail": "tail third",
    "wds/concepts_retrieval": "retrieval",
}


def _ordered_cells(cells: pd.DataFrame, full_text_tokens: int = 32) -> pd.DataFrame:
    """``cells`` (masker, text_tokens, image_mask, ...) with the paper's model / masking names, in the
    main table's row order (baselines first, then K descending, maskers in MASKER_ORDER)."""
    named = [describe(m, k, r, full_text_tokens) for m, k, r in cells[CELL].itertuples(index=False)]
    out = cells.assign(model=[a for a, _ in named], masking=[b for _, b in named])
    out["_order"] = out["masker"].map({m: i for i, m in enumerate(MASKER_ORDER)})
    out = out.sort_values(["image_mask", "text_tokens", "_order"], ascending=[True, False, True])
    return out.drop(columns="_order").reset_index(drop=True)


def datasets_table(
    tidy: pd.DataFrame,
    threshold: float | None = None,
    checkpoint: str = "pretrain",
    retrieval_metric: str = "image_retrieval_recall@1",
    full_text_tokens: int = 32,
    protocol: str = FULL,
    rule: str | None = None,
) -> pd.DataFrame:
    """Every evaluation set side by side for one checkpoint and zero-shot protocol: a row per cell (the
    main table's order), a column per dataset, mean / std / n over seeds in percent. Classification sets
    report top-1, retrieval sets ``retrieval_metric``. The threshold sweep's extra frequency cells (and
    another rule's) are left out."""
    tidy = only_protocol(tidy, protocol)
    clf = (tidy["task"] == "zeroshot_classification") & (tidy["metric"] == "acc1")
    ret = (tidy["task"] == "zeroshot_retrieval") & (tidy["metric"] == retrieval_metric)
    rows = tidy[(clf | ret) & (tidy["checkpoint"] == checkpoint)].copy()
    if rows.empty:
        raise ValueError(
            f"no {checkpoint!r} classification / retrieval rows ({protocol} prompts) in the results table"
        )
    rows["value"] = rows["value"].astype(float) * 100.0
    parsed = rows["run"].map(threshold_of)
    rows["threshold"] = (
        rows["freq_threshold"].astype(float).fillna(parsed) if "freq_threshold" in rows else parsed
    )
    rows = main_threshold(rows, threshold, rule)
    stats = rows.groupby([*CELL, "dataset"])["value"].apply(mean_std).unstack()
    wide = stats.unstack("dataset")
    wide.columns = [f"{dataset}_{stat}" for stat, dataset in wide.columns]
    return _ordered_cells(wide.reset_index(), full_text_tokens)


def format_datasets_table(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """:func:`datasets_table` as text: ``mean ± std`` per dataset, columns named for readers."""
    out = pd.DataFrame(
        {"Model": table["model"], "Masking": table["masking"], "Text tokens": table["text_tokens"]}
    )
    datasets = sorted(
        {c.rsplit("_", 1)[0] for c in table.columns if c.endswith("_mean")},
        key=lambda d: (list(DATASET_LABELS).index(d) if d in DATASET_LABELS else len(DATASET_LABELS), d),
    )
    for d in datasets:
        n = table[f"{d}_n"].fillna(0).astype(int)
        out[DATASET_LABELS.get(d, d)] = [
            fmt_mean_std(m, s, k, digits)
            for m, s, k in zip(table[f"{d}_mean"], table[f"{d}_std"], n, strict=True)
        ]
    return out


# ---------------------------------------------------------------- per-epoch and compute


def epoch_curves(rows: Iterable[Mapping], full_text_tokens: int = 32) -> pd.DataFrame:
    """A tidy frame (run, masker, text_tokens, image_mask, seed, epoch, value, series) from per-epoch
    records; ``series`` names a line: the masker, CLIP / FLIP for the unmasked-text baselines, and
    ``masker (mask r)`` for an image-mask ratio other than the grid's main one."""
    cols = ["run", "masker", "text_tokens", "image_mask", "seed", "epoch", "value", "series"]
    df = pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(columns=cols)
    masked = df[df["text_tokens"] < full_text_tokens]
    main = masked["image_mask"].mode().iloc[0] if not masked.empty else None

    def series(masker: str, k: int, r: float) -> str:
        model, _ = describe(masker, k, r, full_text_tokens)
        if model in ("CLIP", "FLIP"):
            return model
        return masker if main is None or np.isclose(r, main) else f"{masker} (mask {r:g})"

    df["series"] = [
        series(m, k, r) for m, k, r in df[["masker", "text_tokens", "image_mask"]].itertuples(index=False)
    ]
    return df.sort_values(["run", "epoch"]).reset_index(drop=True)[cols]


def best_by_epoch(curves: pd.DataFrame) -> pd.DataFrame:
    """Per text-token budget and epoch, the masker (series) with the best mean accuracy over seeds."""
    if curves.empty:
        return pd.DataFrame(columns=["text_tokens", "epoch", "best_masker", "value"])
    means = curves.groupby(["text_tokens", "epoch", "series"])["value"].mean().reset_index()
    idx = means.groupby(["text_tokens", "epoch"])["value"].idxmax()
    best = means.loc[idx].rename(columns={"series": "best_masker"})
    return best[["text_tokens", "epoch", "best_masker", "value"]].reset_index(drop=True)


def compute_table(runs: pd.DataFrame, accuracy: pd.DataFrame) -> pd.DataFrame:
    """Speed and budget per cell (mean over seeds) beside its accuracy.

    ``runs``: one row per run with samples_per_second, train_seconds, text_tokens_seen,
    image_tokens_seen (from metrics.json); ``accuracy``: run, checkpoint, [protocol,] value —
    ``pretrain_acc`` / ``finetune_acc`` (full prompts), ``pretrain_masked_acc`` (masked prompts).
    """
    accuracy = with_protocol(accuracy)
    accuracy = accuracy.assign(
        column=[column(c, p) for c, p in accuracy[["checkpoint", "protocol"]].itertuples(index=False)]
    )
    acc = accuracy.pivot_table(index="run", columns="column", values="value").add_suffix("_acc").reset_index()
    merged = runs.merge(acc, on="run", how="left")
    if {"text_tokens_seen", "image_tokens_seen"} <= set(merged.columns):
        merged["tokens_seen"] = merged["text_tokens_seen"] + merged["image_tokens_seen"]
    numeric = [
        c for c in merged.columns if c not in ("run", "masker", "seed") and merged[c].dtype.kind in "fi"
    ]
    numeric = [c for c in numeric if c not in ("text_tokens", "image_mask")]
    return merged.groupby(["masker", "text_tokens", "image_mask"], as_index=False)[numeric].mean()


# ---------------------------------------------------------------- writers


def markdown(df: pd.DataFrame) -> str:
    """A GitHub table, cells exactly as formatted ("1.0" stays "1.0", not 1)."""
    return df.to_markdown(index=False, disable_numparse=True)


def write_table(df: pd.DataFrame, stem: str | Path, caption: str | None = None) -> list[Path]:
    """``stem``.csv, .md and .tex (each written atomically)."""
    stem = Path(stem)
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".tex")]
    write_text(paths[0], df.to_csv(index=False))
    write_text(paths[1], markdown(df) + "\n")
    write_text(paths[2], df.to_latex(index=False, caption=caption, escape=True))
    return paths
