"""The paper's tables and figures, from files the pipeline wrote (the tidy results table, metrics.json).

Every builder takes a DataFrame and returns a DataFrame or a matplotlib Figure; ``write_table`` and
``save_figure`` put them under ``figures/`` (CSV + Markdown + LaTeX, PNG + SVG). ``05_report.ipynb``
and ``clipf report`` call them; nothing here trains or evaluates.

The tidy table (``clipf eval collect``) has one row per measurement:
run, masker, text_tokens, image_mask, seed, epochs, checkpoint, dataset, task, metric, value.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

CHECKPOINTS = ("pretrain", "finetune")
MASKER_ORDER = ("truncate", "random", "block", "shuffle", "syntax", "frequency")
PAPER_MASKING = {"truncate": "truncation"}  # our masker name -> the paper's column
PAPER_IMAGE_MASK = {197: 0.0, 98: 0.5, 49: 0.75}  # ViT-B/16 image tokens -> patch-dropout ratio
POS_CLASSES = ("noun", "adjective", "verb", "function", "other")
SPECIAL_IDS = {0, 49406, 49407}  # pad, <start_of_text>, <end_of_text> in open_clip's BPE vocabulary


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


def zero_shot(tidy: pd.DataFrame, dataset: str | None = None, metric: str = "acc1") -> pd.DataFrame:
    """Zero-shot classification rows of one dataset (default: the first), value in percent."""
    rows = tidy[(tidy["task"] == "zeroshot_classification") & (tidy["metric"] == metric)]
    if rows.empty:
        raise ValueError(f"no zero-shot classification {metric!r} rows in the results table")
    datasets = sorted(rows["dataset"].unique())
    dataset = dataset or datasets[0]
    if dataset not in datasets:
        raise ValueError(f"dataset {dataset!r} not in the results (have: {', '.join(datasets)})")
    rows = rows[rows["dataset"] == dataset].copy()
    rows["value"] = rows["value"].astype(float) * (100.0 if rows["value"].max() <= 1.0 else 1.0)
    parsed = rows["run"].map(threshold_of)
    rows["threshold"] = (
        rows["freq_threshold"].astype(float).fillna(parsed) if "freq_threshold" in rows else parsed
    )
    return rows


def main_threshold(rows: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
    """Drop frequency cells of the threshold sweep other than ``threshold`` (default: the most common)."""
    freq = rows["masker"] == "frequency"
    if not freq.any():
        return rows
    if threshold is None:
        threshold = rows.loc[freq, "threshold"].mode().iloc[0]
    return rows[~freq | np.isclose(rows["threshold"], threshold)]


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
) -> pd.DataFrame:
    """The paper's main table from our runs: one row per (masker, text tokens, image mask), mean/std/n
    over seeds for each checkpoint, the paper's number beside it; in the paper's row order."""
    rows = main_threshold(zero_shot(tidy, dataset, metric), threshold)
    stats = rows.groupby([*CELL, "checkpoint"])["value"].apply(mean_std).unstack()
    stats = stats.unstack("checkpoint")
    stats.columns = [f"{ckpt}_{stat}" for stat, ckpt in stats.columns]
    table = stats.reset_index()
    for ckpt in CHECKPOINTS:
        for stat in ("mean", "std", "n"):
            if f"{ckpt}_{stat}" not in table:
                table[f"{ckpt}_{stat}"] = 0 if stat == "n" else np.nan
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
    cols += [f"{c}_{s}" for c in CHECKPOINTS for s in ("mean", "std", "n")] + [
        "paper_pretrain",
        "paper_finetune",
    ]
    table = table[cols].reset_index(drop=True)
    for ckpt in CHECKPOINTS:
        table[f"{ckpt}_n"] = table[f"{ckpt}_n"].fillna(0).astype(int)
    return table


def format_main_table(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """The main table as the paper lays it out, each of our cells followed by the paper's number."""

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
    for ckpt, label in (("pretrain", "Pre-train"), ("finetune", "Fine-tune")):
        out[label] = [
            fmt_mean_std(m, s, n, digits)
            for m, s, n in table[[f"{ckpt}_mean", f"{ckpt}_std", f"{ckpt}_n"]].itertuples(index=False)
        ]
        out[f"{label} (paper)"] = table[f"paper_{ckpt}"].map(paper)
    return out


def threshold_table(tidy: pd.DataFrame, dataset: str | None = None, metric: str = "acc1") -> pd.DataFrame:
    """Frequency masking across thresholds t (mean/std/n over seeds per checkpoint)."""
    rows = zero_shot(tidy, dataset, metric)
    rows = rows[rows["masker"] == "frequency"]
    if rows.empty:
        return pd.DataFrame(
            columns=["text_tokens", "image_mask", "threshold", "checkpoint", "mean", "std", "n"]
        )
    stats = rows.groupby(["text_tokens", "image_mask", "threshold", "checkpoint"])["value"].apply(mean_std)
    return stats.unstack().reset_index()


def summary(table: pd.DataFrame) -> dict:
    """Headline numbers for ``dvc metrics``: mean accuracy per cell and checkpoint, the best masker per K."""
    out: dict = {ckpt: {} for ckpt in CHECKPOINTS}
    for row in table.itertuples(index=False):
        key = f"{row.masker}-k{row.text_tokens}-m{round(row.image_mask * 100):d}"
        for ckpt in CHECKPOINTS:
            mean = getattr(row, f"{ckpt}_mean")
            if not pd.isna(mean):
                out[ckpt][key] = round(float(mean), 3)
    masked = table[table["masking"] != "none"]
    for ckpt in CHECKPOINTS:
        best = {}
        for k, group in masked.dropna(subset=[f"{ckpt}_mean"]).groupby("text_tokens"):
            best[f"k{k}"] = str(group.loc[group[f"{ckpt}_mean"].idxmax(), "masker"])
        out[f"best_masker_{ckpt}"] = best
    return out


DATASET_LABELS = {
    "wds/world_objects": "colour+shape",
    "wds/world_color": "colour",
    "wds/world_shape": "shape",
    "wds/world_size": "size",
    "wds/world_position": "position",
    "wds/world_retrieval": "retrieval",
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
) -> pd.DataFrame:
    """Every evaluation set side by side for one checkpoint: a row per cell (the main table's order),
    a column per dataset, mean / std / n over seeds in percent. Classification sets report top-1,
    retrieval sets ``retrieval_metric``. The threshold sweep's extra frequency cells are left out."""
    clf = (tidy["task"] == "zeroshot_classification") & (tidy["metric"] == "acc1")
    ret = (tidy["task"] == "zeroshot_retrieval") & (tidy["metric"] == retrieval_metric)
    rows = tidy[(clf | ret) & (tidy["checkpoint"] == checkpoint)].copy()
    if rows.empty:
        raise ValueError(f"no {checkpoint!r} classification / retrieval rows in the results table")
    rows["value"] = rows["value"].astype(float) * 100.0
    parsed = rows["run"].map(threshold_of)
    rows["threshold"] = (
        rows["freq_threshold"].astype(float).fillna(parsed) if "freq_threshold" in rows else parsed
    )
    rows = main_threshold(rows, threshold)
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


def _verdict(diff: float, se: float, z: float = 2.0) -> str:
    if pd.isna(diff):
        return "not measured"
    if pd.isna(se) or se == 0:
        return "better (one seed)" if diff > 0 else "worse (one seed)" if diff < 0 else "equal"
    if diff > z * se:
        return "better"
    if diff < -z * se:
        return "worse"
    return "within noise"


def claims(table: pd.DataFrame, checkpoints: Sequence[str] = CHECKPOINTS, z: float = 2.0) -> pd.DataFrame:
    """The paper's masking claims checked on :func:`main_table`: at every K (and image mask), frequency masking against
    truncation and against the best other masker. ``diff`` is frequency minus the other (points),
    ``se`` the standard error of that difference over seeds; the verdict is ``better`` / ``worse`` when
    ``|diff| > z * se`` and ``within noise`` otherwise."""
    masked = table[table["masking"] != "none"]
    out = []
    for ckpt in checkpoints:
        for (k, r), group in masked.groupby(["text_tokens", "image_mask"]):
            by = group.set_index("masker")
            if "frequency" not in by.index:
                continue
            f = by.loc["frequency"]
            others = by.drop(index="frequency").dropna(subset=[f"{ckpt}_mean"])
            if others.empty:
                continue
            best = others[f"{ckpt}_mean"].idxmax()
            for label, other in (("truncation", "truncate"), ("best other masker", best)):
                if other not in by.index:
                    continue
                o = by.loc[other]
                diff = f[f"{ckpt}_mean"] - o[f"{ckpt}_mean"]
                se = np.sqrt(
                    (f[f"{ckpt}_std"] ** 2) / max(f[f"{ckpt}_n"], 1)
                    + (o[f"{ckpt}_std"] ** 2) / max(o[f"{ckpt}_n"], 1)
                )
                out.append(
                    {
                        "checkpoint": ckpt,
                        "text_tokens": int(k),
                        "image_mask": float(r),
                        "claim": f"frequency beats {label}",
                        "other": other,
                        "frequency": round(float(f[f"{ckpt}_mean"]), 2),
                        "other_value": round(float(o[f"{ckpt}_mean"]), 2),
                        "diff": round(float(diff), 2),
                        "se": round(float(se), 2) if not pd.isna(se) else np.nan,
                        "seeds": int(min(f[f"{ckpt}_n"], o[f"{ckpt}_n"])),
                        "verdict": _verdict(diff, se, z),
                    }
                )
    return pd.DataFrame(out)


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
    image_tokens_seen (from metrics.json); ``accuracy``: run, checkpoint, value.
    """
    acc = (
        accuracy.pivot_table(index="run", columns="checkpoint", values="value")
        .add_suffix("_acc")
        .reset_index()
    )
    merged = runs.merge(acc, on="run", how="left")
    if {"text_tokens_seen", "image_tokens_seen"} <= set(merged.columns):
        merged["tokens_seen"] = merged["text_tokens_seen"] + merged["image_tokens_seen"]
    numeric = [
        c for c in merged.columns if c not in ("run", "masker", "seed") and merged[c].dtype.kind in "fi"
    ]
    numeric = [c for c in numeric if c not in ("text_tokens", "image_mask")]
    return merged.groupby(["masker", "text_tokens", "image_mask"], as_index=False)[numeric].mean()


# ---------------------------------------------------------------- what each masker keeps

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|\d|[^\sa-z\d]+")


def words_of(text: str) -> list[str]:
    """Lower-cased words as open_clip's tokenizer splits them (letter runs, digits, symbol runs)."""
    return _WORD.findall(text.lower())


def pos_class(tag: str) -> str:
    """Coarse class of a POS tag (Universal or Penn Treebank): noun, adjective, verb, function, other."""
    t = str(tag).upper()
    if t in ("NOUN", "PROPN") or t.startswith("NN"):
        return "noun"
    if t == "ADJ" or t.startswith("JJ"):
        return "adjective"
    if t in ("VERB", "AUX") or t.startswith("VB") or t == "MD":
        return "verb"
    if t in (
        "DET",
        "ADP",
        "CCONJ",
        "SCONJ",
        "CONJ",
        "PRON",
        "PART",
        "DT",
        "IN",
        "CC",
        "TO",
        "PRP",
        "PRP$",
        "WDT",
        "EX",
    ):
        return "function"
    return "other"


def decode_kept(ids: Sequence[int]) -> list[str]:
    """The words left in one masked token row (special and pad tokens dropped)."""
    from open_clip.tokenizer import _tokenizer

    return words_of(_tokenizer.decode([int(i) for i in ids if int(i) not in SPECIAL_IDS]))


def keep_table(samples: Sequence[Sequence[tuple]], kept: Sequence[Sequence[str]]) -> pd.DataFrame:
    """One row per word occurrence: sample, word, pos (class), kept (bool), grounded.

    ``samples[i]`` is caption i as (word, POS tag) or (word, POS tag, grounded) tuples — grounded:
    whether the word names something in the image (the world's metadata knows); ``kept[i]`` the words
    its masked row kept. A word counts as kept while the kept words still hold an unused copy of it
    (order-free, so shuffling maskers are measured too); a word cut in half by the budget is not kept.
    """
    out = []
    for i, (words, keep) in enumerate(zip(samples, kept, strict=True)):
        left = Counter(keep)
        for word, tag, *grounded in words:
            w = word.lower()
            hit = left[w] > 0
            if hit:
                left[w] -= 1
            out.append((i, w, pos_class(tag), hit, bool(grounded[0]) if grounded else None))
    return pd.DataFrame(out, columns=["sample", "word", "pos", "kept", "grounded"])


def keep_rates(words: pd.DataFrame, by: Sequence[str] = ("masker", "text_tokens")) -> pd.DataFrame:
    """Share of each POS class's words kept, per ``by`` group (columns: the POS classes, all, and
    ``grounded`` — the share of words naming something in the image — when the samples say which)."""
    by = list(by)
    rates = words.groupby([*by, "pos"])["kept"].mean().unstack("pos")
    rates["all"] = words.groupby(by)["kept"].mean()
    cols = [c for c in (*POS_CLASSES, "all") if c in rates.columns]
    if "grounded" in words and words["grounded"].notna().any():
        grounded = words[words["grounded"].fillna(False).astype(bool)]
        rates["grounded"] = grounded.groupby(by)["kept"].mean()
        cols.append("grounded")
    return rates[cols].reset_index()


def kept_share(words: pd.DataFrame, by: Sequence[str] = ("masker", "text_tokens")) -> pd.DataFrame:
    """Composition of the kept words: share of each POS class among them (rows sum to 1)."""
    by = list(by)
    kept = words[words["kept"]]
    share = kept.groupby(by)["pos"].value_counts(normalize=True).unstack("pos").fillna(0.0)
    return share[[c for c in POS_CLASSES if c in share.columns]].reset_index()


def read_samples(folder: str | Path, n: int = 500) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Up to ``n`` captions of a webdataset split and their (word, POS) pairs.

    POS is the gold tagging in each sample's JSON metadata when it has one (``words``/``tokens``/
    ``pos`` fields, see :func:`gold_pos`); otherwise :func:`clipf.pos.tag` tags the words.
    """
    import tarfile

    captions, metas = [], []
    for shard in sorted(Path(folder).glob("*.tar")):
        with tarfile.open(shard) as tar:
            members: dict[str, dict[str, bytes]] = {}
            for m in tar.getmembers():
                if not m.isfile():
                    continue
                key, _, ext = m.name.rpartition(".")
                if ext in ("txt", "json"):
                    members.setdefault(key, {})[ext] = tar.extractfile(m).read()
        for key in sorted(members):
            parts = members[key]
            if "txt" not in parts:
                continue
            captions.append(parts["txt"].decode("utf-8").strip())
            metas.append(json.loads(parts["json"]) if "json" in parts else {})
            if len(captions) >= n:
                break
        if len(captions) >= n:
            break
    if not captions:
        raise FileNotFoundError(f"{folder}: no .tar shards with .txt captions")
    return captions, [gold_pos(c, m) for c, m in zip(captions, metas, strict=True)]


def gold_pos(caption: str, meta: Mapping) -> list[tuple]:
    """(word, POS) pairs of a caption from its metadata, else tagged by :mod:`clipf.pos`; with
    ``grounded`` in the metadata (the world's: per word, the scene attribute it names, or null),
    (word, POS, grounded) triples.

    Accepts ``words: [[w, tag], ...]`` / ``[{"word"|"text": w, "pos"|"tag": t}, ...]`` (also under
    ``tokens``), or ``pos: [tag, ...]`` aligned with the caption's words.
    """
    for key in ("words", "tokens", "pos_tags", "tagged"):
        items = meta.get(key)
        if isinstance(items, list) and items and isinstance(items[0], list | tuple | Mapping):
            pairs = []
            for it in items:
                if isinstance(it, Mapping):
                    pairs.append(
                        (str(it.get("word", it.get("text", ""))), str(it.get("pos", it.get("tag", "X"))))
                    )
                else:
                    pairs.append((str(it[0]), str(it[1])))
            grounded = meta.get("grounded")
            if isinstance(grounded, list) and len(grounded) == len(pairs):
                return [(w, t, g is not None) for (w, t), g in zip(pairs, grounded, strict=True)]
            return pairs
    words = words_of(caption)
    tags = meta.get("pos")
    if isinstance(tags, list) and len(tags) == len(words):
        return list(zip(words, map(str, tags), strict=True))
    from clipf import pos

    return list(zip(words, pos.tag(words), strict=True))


def word_keep_stats(
    samples: Sequence[Sequence[tuple[str, str]]],
    mask: Callable[[str, list[str], int], Sequence[Sequence[int]]],
    maskers: Sequence[str],
    ks: Sequence[int],
    freq: Mapping[str, float] | None = None,
    captions: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mask every caption with every masker at every K; one row per word occurrence (``keep_table``)
    with masker, text_tokens and, given ``freq`` (word -> relative frequency), the word's frequency.

    ``mask(masker, captions, k)`` returns the masked token rows (e.g. ``clipf.masking``'s maskers);
    ``captions`` (default: the words joined) are what is masked.
    """
    captions = list(captions) if captions is not None else [" ".join(w[0] for w in s) for s in samples]
    frames = []
    for masker in maskers:
        for k in ks:
            rows = mask(masker, captions, k)
            table = keep_table(samples, [decode_kept(r) for r in rows])
            table.insert(0, "text_tokens", int(k))
            table.insert(0, "masker", masker)
            frames.append(table)
    words = pd.concat(frames, ignore_index=True)
    if freq is not None:
        words["freq"] = words["word"].map(lambda w: freq.get(w, np.nan))
    return words


def frequency_bins(words: pd.DataFrame, bins: int = 12) -> pd.DataFrame:
    """Kept-word frequency distribution: per (masker, text_tokens) the share of kept words in each
    log10-frequency bin, beside the share of all words (``masker == 'all words'``)."""
    known = words.dropna(subset=["freq"])
    logf = np.log10(known["freq"].astype(float))
    edges = np.linspace(logf.min(), logf.max() + 1e-9, bins + 1)
    known = known.assign(bin=pd.cut(logf, edges, include_lowest=True, labels=False))
    centers = (edges[:-1] + edges[1:]) / 2
    kept = known[known["kept"]]
    share = (
        kept.groupby(["masker", "text_tokens"])["bin"]
        .value_counts(normalize=True)
        .rename("share")
        .reset_index()
    )
    # every (masker, K) group holds the same word occurrences: take the first for "all words"
    first = known[
        (known["masker"] == known["masker"].iloc[0]) & (known["text_tokens"] == known["text_tokens"].iloc[0])
    ]
    every = first["bin"].value_counts(normalize=True).rename("share").reset_index()
    every["masker"], every["text_tokens"] = "all words", 0
    out = pd.concat([share, every], ignore_index=True)
    out["log10_freq"] = out["bin"].map(lambda b: centers[int(b)])
    return out.sort_values(["masker", "text_tokens", "bin"]).reset_index(drop=True)


def rank_frequency(counts: Mapping[str, int]) -> pd.DataFrame:
    """Words by rank with count and relative frequency (Zipf's law: log f ~ -a log rank)."""
    total = sum(counts.values()) or 1
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    df = pd.DataFrame(items, columns=["word", "count"])
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df["freq"] = df["count"] / total
    return df


def zipf_slope(ranks: pd.DataFrame) -> float:
    """Least-squares slope of log10 f on log10 rank (about -1 for natural text)."""
    if len(ranks) < 2:
        return float("nan")
    return float(np.polyfit(np.log10(ranks["rank"]), np.log10(ranks["freq"]), 1)[0])


def p_mask_curves(freqs: Sequence[float], thresholds: Sequence[float]) -> pd.DataFrame:
    """P_mask(f) = max(0, 1 - sqrt(t / f)) for each threshold t over the frequencies ``freqs``."""
    f = np.asarray(sorted(set(map(float, freqs))))
    rows = [
        pd.DataFrame({"threshold": t, "freq": f, "p_mask": np.maximum(0.0, 1.0 - np.sqrt(t / f))})
        for t in thresholds
    ]
    return pd.concat(rows, ignore_index=True)


def make_mask(
    table=None, threshold: float | None = None, seed: int = 0
) -> Callable[[str, list[str], int], object]:
    """``mask(masker, captions, k)`` with clipf's maskers (the frequency masker gets ``table``, ``threshold``)."""
    from clipf import masking

    def mask(masker: str, captions: list[str], k: int):
        opts = (
            {"table": table, "threshold": threshold}
            if masking.get_masker(masker) is masking.frequency
            else {}
        )
        return masking.get_masker(masker)(captions, k, np.random.default_rng(seed), **opts)

    return mask


def masking_examples(captions: Sequence[str], mask: Callable, maskers: Sequence[str], k: int) -> pd.DataFrame:
    """Each caption and what every masker keeps of it at budget ``k`` (decoded text)."""
    from open_clip.tokenizer import _tokenizer

    out = pd.DataFrame({"caption": list(captions)})
    for masker in maskers:
        rows = mask(masker, list(captions), k)
        out[masker] = [
            _tokenizer.decode([int(i) for i in r if int(i) not in SPECIAL_IDS]).strip() for r in rows
        ]
    return out


# ---------------------------------------------------------------- figures


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (unless one is already chosen)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _masker_colors(maskers: Iterable[str]) -> dict[str, str]:
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


def tokens_figure(table: pd.DataFrame, paper: pd.DataFrame | None = None):
    """Accuracy vs text tokens per masker (mean ± std over seeds), pre-train and fine-tune side by
    side; CLIP/FLIP as horizontal lines; the paper's curves underneath when ``paper`` is given."""
    plt = pyplot()
    nrows = 1 if paper is None else 2
    fig, axes = plt.subplots(nrows, 2, figsize=(10, 3.6 * nrows), squeeze=False, sharex=True)
    masked = table[table["masking"] != "none"]
    colors = _masker_colors(MASKER_ORDER)
    for col, ckpt in enumerate(CHECKPOINTS):
        ax = axes[0, col]
        for masker, group in masked.groupby("masker", sort=False):
            for r, g in group.groupby("image_mask"):
                g = g.sort_values("text_tokens")
                style = "-" if r == masked["image_mask"].mode().iloc[0] else ":"
                ax.errorbar(
                    g["text_tokens"],
                    g[f"{ckpt}_mean"],
                    yerr=g[f"{ckpt}_std"].fillna(0),
                    label=f"{masker}" + ("" if style == "-" else f" (mask {r:g})"),
                    color=colors.get(masker),
                    linestyle=style,
                    marker="o",
                    capsize=3,
                )
        _baseline_lines(ax, table, ckpt)
        ax.set_title(f"ours: {'pre-train' if ckpt == 'pretrain' else 'fine-tune'}")
        ax.set_ylabel("zero-shot top-1 (%)")
        if paper is not None:
            pax = axes[1, col]
            pm = paper[(paper["image_tokens"] == 49) & (paper["masking"] != "none")]
            for masking, g in pm.groupby("masking", sort=False):
                ours = {PAPER_MASKING.get(m, m): m for m in MASKER_ORDER}.get(masking, masking)
                g = g.sort_values("text_tokens")
                pax.plot(g["text_tokens"], g[f"{ckpt}_top1"], marker="s", color=colors.get(ours), label=ours)
            for row in paper[paper["masking"] == "none"].itertuples(index=False):
                v = getattr(row, f"{ckpt}_top1")
                if not pd.isna(v):
                    pax.axhline(
                        v, color="k", linestyle="--" if row.model == "CLIP" else "-.", lw=1, label=row.model
                    )
            pax.set_title(f"paper (ImageNet): {'pre-train' if ckpt == 'pretrain' else 'fine-tune'}")
            pax.set_ylabel("zero-shot top-1 (%)")
    for ax in axes[-1]:
        ax.set_xlabel("text tokens K")
    for ax in axes.flat:
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
    colors = _masker_colors(MASKER_ORDER)
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
    colors = _masker_colors(MASKER_ORDER)
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
    colors = _masker_colors(MASKER_ORDER)
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
    colors = _masker_colors(MASKER_ORDER)
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
    colors = _masker_colors(MASKER_ORDER)
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


def p_mask_figure(curves: pd.DataFrame, words: pd.DataFrame | None = None):
    """P_mask against word frequency, one line per threshold t; ``words`` (word, freq) marked on top."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for t, g in curves.groupby("threshold"):
        ax.semilogx(g["freq"], g["p_mask"], label=f"t = {t:g}")
    if words is not None:
        for row in words.itertuples(index=False):
            ax.axvline(row.freq, color="#bbbbbb", lw=0.6)
            ax.annotate(row.word, (row.freq, 1.0), fontsize=7, rotation=90, va="top")
    ax.set_xlabel("word frequency f(w)")
    ax.set_ylabel("P_mask(w)")
    ax.set_ylim(-0.02, 1.02)
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


# ---------------------------------------------------------------- writers


def markdown(df: pd.DataFrame) -> str:
    """A GitHub table, cells exactly as formatted ("1.0" stays "1.0", not 1)."""
    return df.to_markdown(index=False, disable_numparse=True)


def write_table(df: pd.DataFrame, stem: str | Path, caption: str | None = None) -> list[Path]:
    """``stem``.csv, .md and .tex."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".tex")]
    df.to_csv(paths[0], index=False)
    paths[1].write_text(markdown(df) + "\n")
    paths[2].write_text(df.to_latex(index=False, caption=caption, escape=True))
    return paths


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


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="clipf report", description="The paper's main table from a tidy results table."
    )
    parser.add_argument("results", help="tidy results CSV (clipf eval collect)")
    parser.add_argument("--out", default="figures", help="output folder")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--metric", default="acc1")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--patches", type=int, default=196)
    args = parser.parse_args(argv)
    tidy = pd.read_csv(args.results)
    table = main_table(tidy, args.dataset, args.metric, args.threshold, args.patches)
    paths = write_table(format_main_table(table), Path(args.out) / "main_table")
    (Path(args.out) / "summary.json").write_text(json.dumps(summary(table), indent=2) + "\n")
    print(markdown(format_main_table(table)))
    print("wrote", ", ".join(map(str, paths)))
    return 0
