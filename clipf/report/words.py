"""What each text masker keeps: words, POS classes and frequency bins of kept words, the Zipf curve and
P_mask(t) of the frequency masker (``01_frequency``)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from clipf import text

POS_CLASSES = ("noun", "adjective", "verb", "function", "other")
SPECIAL_IDS = {0, 49406, 49407}  # pad, <start_of_text>, <end_of_text> in open_clip's BPE vocabulary


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
    return words_of(text.decode(ids))


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


def p_mask_curves(
    freqs: Sequence[float], thresholds: Sequence[float], rule: str | None = None
) -> pd.DataFrame:
    """P_mask(f) of each threshold t over the frequencies ``freqs`` under ``rule``
    (:func:`clipf.freq.p_values`: ``authors``, the default, 1 - round(sqrt(t / f), 6), negative for words
    rarer than t; ``clamped``, max(0, 1 - sqrt(t / f))): columns threshold, rule, freq, p_mask."""
    from clipf import freq as freq_

    rule = freq_.check_rule(rule)
    f = np.asarray(sorted(set(map(float, freqs))))
    rows = [
        pd.DataFrame({"threshold": t, "rule": rule, "freq": f, "p_mask": freq_.p_values(f, t, rule)})
        for t in thresholds
    ]
    return pd.concat(rows, ignore_index=True)


def make_mask(
    table=None, threshold: float | None = None, seed: int = 0, rule: str | None = None
) -> Callable[[str, list[str], int], object]:
    """``mask(masker, captions, k)`` with clipf's maskers (the frequency masker gets ``table``,
    ``threshold`` and ``rule``; None: its default, the released rule)."""
    from clipf import masking

    def mask(masker: str, captions: list[str], k: int):
        opts = (
            {"table": table, "threshold": threshold, **({"rule": rule} if rule else {})}
            if masking.get_masker(masker) is masking.frequency
            else {}
        )
        return masking.get_masker(masker)(captions, k, np.random.default_rng(seed), **opts)

    return mask


def masking_examples(captions: Sequence[str], mask: Callable, maskers: Sequence[str], k: int) -> pd.DataFrame:
    """Each caption and what every masker keeps of it at budget ``k`` (decoded text)."""
    out = pd.DataFrame({"caption": list(captions)})
    for masker in maskers:
        rows = mask(masker, list(captions), k)
        out[masker] = [text.decode(r) for r in rows]
    return out
