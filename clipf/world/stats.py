"""Caption statistics of a split: lengths (words, BPE tokens), vocabulary, Zipf slope, function and
grounded word shares, and where the grounded words fall in the token sequence.

Words are the caption's gold words from each sample's JSON (``words``, ``grounded``; punctuation runs
are not counted as words); without metadata they come from :func:`clipf.world.captions.words_of` and
nothing is known to be grounded. BPE lengths use open_clip's tokenizer (``SimpleTokenizer().encode``,
per word, which is how it tokenizes), without the start/end tokens. Token positions are 0-based from
the first token after ``<start_of_text>``: a word "past token K" is cut by truncation to K tokens
(K - 2 caption tokens plus start/end).
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from clipf.world.captions import words_of
from clipf.world.generate import WorldError, is_world

FUNCTION_TAGS = frozenset({"DET", "ADP", "PRON", "CCONJ", "SCONJ", "AUX", "PART"})
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
CUTS = (8, 16, 32)
BUDGETS = (4, 6, 8, 16)  # text-token budgets K of the study: K - 2 caption tokens survive truncation
# English reference (wordfreq; paper/README.md): ImageNet-1k's class head nouns vs a running-text token
ENGLISH = {"imagenet_head_noun": 3.4e-6, "running_token": 1e-3}
# grounded kinds that name a world's classes: the concept name, or the main object's colour and shape
NAME_KINDS = {"concepts": ("name",), "shapes": ("shape", "color")}


def _split_dir(path: Path, split: str) -> Path:
    if is_world(path):
        return path / split
    if path.is_dir() and list(path.glob("*.tar")):
        return path
    raise WorldError(f"{path}: not a clipf world nor a folder of .tar shards")


def read_pairs(folder: str | Path, limit: int | None = None) -> Iterator[tuple[str, dict]]:
    """(caption, metadata) of the samples of a split folder's shards, in order."""
    shards = sorted(Path(folder).glob("*.tar"))
    if not shards:
        raise WorldError(f"{folder}: no .tar shards")
    n = 0
    for shard in shards:
        with tarfile.open(shard) as tar:
            samples: dict[str, dict[str, bytes]] = {}
            order = []
            for m in tar:
                if not m.isfile():
                    continue
                key, _, ext = m.name.rpartition(".")
                if ext in ("txt", "json"):
                    if key not in samples:
                        samples[key] = {}
                        order.append(key)
                    samples[key][ext] = tar.extractfile(m).read()
        for key in order:
            parts = samples[key]
            if "txt" not in parts:
                continue
            meta = json.loads(parts["json"]) if "json" in parts else {}
            yield parts["txt"].decode("utf-8"), meta
            n += 1
            if limit is not None and n >= limit:
                return


def _summary(values, quantiles=QUANTILES) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    out = {"mean": round(float(a.mean()), 3), "min": float(a.min()), "max": float(a.max())}
    out.update({f"p{int(q * 100)}": float(np.quantile(a, q)) for q in quantiles})
    return out


def zipf_slope(counts: Counter, points: int = 40) -> dict[str, float]:
    """Least-squares slope of log frequency on log rank, over ranks spaced evenly in log rank (so the
    long tail of rare words does not outweigh the head); with the R^2 of the fit."""
    freq = np.sort(np.fromiter(counts.values(), float))[::-1]
    if len(freq) < 3:
        return {"slope": float("nan"), "r2": float("nan"), "ranks": len(freq)}
    ranks = np.unique(np.round(np.logspace(0, np.log10(len(freq)), points)).astype(int))
    x, y = np.log(ranks), np.log(freq[ranks - 1])
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    r2 = 1 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())
    return {"slope": round(float(slope), 4), "r2": round(r2, 4), "ranks": len(freq)}


class _BPE:
    def __init__(self):
        from open_clip.tokenizer import SimpleTokenizer

        self.tok = SimpleTokenizer()
        self.cache: dict[str, int] = {}

    def length(self, word: str) -> int:
        n = self.cache.get(word)
        if n is None:
            n = self.cache[word] = len(self.tok.encode(word))
        return n


def stats(
    path: str | Path, split: str = "train", limit: int | None = None, write: bool = True
) -> dict[str, Any]:
    """Statistics of the captions of ``path`` (a world: its ``split``; or a folder of shards).

    Written to ``path/stats.json`` (a world) when ``write``. Keys: ``pairs``, ``words`` and
    ``bpe_tokens`` (summaries: mean, min, max, p5..p95), ``bpe_longer_than`` (share of captions over
    8/16/32 tokens), ``vocabulary``, ``word_tokens``, ``zipf`` (slope, r2), ``function_share``,
    ``grounded_share``, ``grounded_by_kind``, ``grounded_past_token`` (share of grounded word
    occurrences starting past token 8 / 16 / 32), ``first_grounded_past_token`` (share of captions with
    grounding whose first grounded word is past token 8 / 16 / 32), ``first_word_grounded``,
    ``first_grounded_word`` (summary of its word index), ``no_grounding``, ``wrong_attribute``,
    ``unrelated``, ``median_frequency`` (corpus frequency of function / ungrounded content / grounded
    word occurrences), ``pos_share``, ``top_words``.
    """
    path = Path(path)
    folder = _split_dir(path, split)
    bpe = _BPE()
    n = 0
    n_words, n_tokens, first_word = [], [], []
    counts: Counter = Counter()
    tags: Counter = Counter()
    kinds: Counter = Counter()
    grounded_words = 0
    classes: list[tuple[str, int]] = []  # (word, 0 function / 1 ungrounded content / 2 grounded)
    g_starts: list[int] = []
    first_start: list[int] = []
    first_is_grounded = no_ground = wrong = unrelated = 0
    cfg = _config(folder)
    preset = (cfg or {}).get("preset", "shapes") if cfg is not None else None
    name_kinds = NAME_KINDS.get(preset or "", ())
    name_starts: list[int | None] = []  # BPE position of the first name word of each caption
    classes_seen: Counter = Counter()
    for caption, meta in read_pairs(folder, limit):
        n += 1
        pairs = meta.get("words")
        if pairs:
            words = [w for w, _ in pairs]
            wtags = [t for _, t in pairs]
            ground = meta.get("grounded") or [None] * len(words)
        else:
            words = words_of(caption)
            wtags = ["PUNCT" if not any(c.isalnum() for c in w) else "X" for w in words]
            ground = [None] * len(words)
        pos = 0
        starts = []
        first_idx = None
        first_name = None
        k = 0
        for w, t, g in zip(words, wtags, ground, strict=True):
            length = bpe.length(w)
            if t not in ("PUNCT", "SYM"):
                counts[w] += 1
                tags[t] += 1
                classes.append((w, 2 if g is not None else int(t not in FUNCTION_TAGS)))
                if g in name_kinds and first_name is None:
                    first_name = pos
                if g is not None:
                    grounded_words += 1
                    kinds[g] += 1
                    starts.append(pos)
                    if first_idx is None:
                        first_idx = k
                k += 1
            pos += length
        n_words.append(k)
        n_tokens.append(pos)
        name_starts.append(first_name)
        classes_seen[_class_of(meta.get("scene"), preset)] += 1
        g_starts += starts
        if starts:
            first_start.append(starts[0])
            first_word.append(first_idx)
            first_is_grounded += first_idx == 0
        else:
            no_ground += 1
        wrong += bool(meta.get("wrong"))
        unrelated += bool(meta.get("unrelated"))
    if not n:
        raise WorldError(f"{folder}: no captions")
    total = sum(counts.values())
    g = np.asarray(g_starts)
    f = np.asarray(first_start)
    out: dict[str, Any] = {
        "split": str(folder),
        "pairs": n,
        "words": _summary(n_words),
        "bpe_tokens": _summary(n_tokens),
        "bpe_longer_than": {str(c): round(float(np.mean(np.asarray(n_tokens) > c)), 4) for c in CUTS},
        "vocabulary": len(counts),
        "word_tokens": total,
        "zipf": zipf_slope(counts),
        "function_share": round(sum(v for t, v in tags.items() if t in FUNCTION_TAGS) / total, 4),
        "grounded_share": round(grounded_words / total, 4),
        "grounded_by_kind": {k: round(v / total, 4) for k, v in sorted(kinds.items())},
        "grounded_past_token": {str(c): round(float(np.mean(g >= c)), 4) if len(g) else None for c in CUTS},
        "first_grounded_past_token": {
            str(c): round(float(np.mean(f >= c)), 4) if len(f) else None for c in CUTS
        },
        "first_word_grounded": round(first_is_grounded / n, 4),
        "first_grounded_word": _summary(first_word) if first_word else None,
        "no_grounding": round(no_ground / n, 4),
        "wrong_attribute": round(wrong / n, 4),
        "unrelated": round(unrelated / n, 4),
        "median_frequency": _median_frequency(classes, counts, total),
        "pos_share": {t: round(v / total, 4) for t, v in tags.most_common()},
        "top_words": [[w, c] for w, c in counts.most_common(25)],
    }
    if cfg is not None:
        out["world"] = world_block(cfg, counts, classes, total, classes_seen, name_starts, n_words, n_tokens)
    if write and is_world(path):
        from clipf.files import write_json

        write_json(path / "stats.json", out)
    return out


def _config(folder: Path) -> dict | None:
    """The resolved world configuration a split was made with (its ``_info.json``), or None."""
    info = folder / "_info.json"
    if not info.exists():
        return None
    return json.loads(info.read_text()).get("config")


def _class_of(scene: dict | None, preset: str | None) -> str | None:
    if not scene:
        return None
    if preset == "concepts":
        return scene.get("concept")
    main = scene["objects"][0]
    return f"{main['color']} {main['shape']}"


def _names_of(cfg: dict) -> tuple[list[str], list[float | None], float]:
    """A world's class names (the words that name its classes), their English frequencies (None when
    unknown) and the prior ratio of its classes (most / least frequent)."""
    if cfg.get("preset") == "concepts":
        from clipf.world.presets.concepts import table

        t = table(cfg)
        return list(t.names), list(t.english), float(t.prior[0] / t.prior[-1])
    words = [*cfg["scene"]["colors"], *cfg["scene"]["shapes"]]
    try:
        import wordfreq

        english = [wordfreq.word_frequency(w, "en") for w in words]
    except ImportError:  # pragma: no cover - wordfreq is a dev dependency
        english = [None] * len(words)
    return words, english, 1.0


def _sig(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.3g}")


def world_block(
    cfg, counts: Counter, classes, total: int, seen: Counter, name_starts, n_words, n_tokens
) -> dict:
    """The statistics issue 18 compares across worlds, next to the English reference: class count,
    prior ratio, how rare the class names are against the median running token, caption length."""
    preset = cfg.get("preset", "shapes")
    names, english, prior_ratio = _names_of(cfg)
    type_f = [counts[w] / total for w in names]
    name_set = set(names)
    token_f = [counts[w] / total for w, _ in classes]
    occ_f = [counts[w] / total for w, _ in classes if w in name_set]
    token_median = float(np.median(token_f))
    name_median = float(np.median(type_f))
    present = [c for c in seen.values() if c]
    with_name = [p for p in name_starts if p is not None]
    known = [e for e in english if e is not None]
    return {
        "preset": preset,
        "classes": len(names)
        if preset == "concepts"
        else len(cfg["scene"]["colors"]) * len(cfg["scene"]["shapes"]),
        "class_names": len(names),
        "prior_ratio": round(prior_ratio, 3),
        "prior_ratio_seen": round(max(present) / min(present), 3) if present else None,
        "classes_seen": len(present),
        "name_frequency_median": _sig(name_median),
        "name_frequency_occurrence_median": _sig(float(np.median(occ_f))) if occ_f else None,
        "token_frequency_median": _sig(token_median),
        "token_over_name": round(token_median / name_median, 1) if name_median else None,
        "name_share": round(sum(counts[w] for w in names) / total, 4),
        "name_english_median": _sig(float(np.median(known))) if known else None,
        "english": {
            **ENGLISH,
            "token_over_name": round(ENGLISH["running_token"] / ENGLISH["imagenet_head_noun"], 1),
        },
        "captions_with_name": round(len(with_name) / len(name_starts), 4) if name_starts else None,
        "name_cut_by_truncation": {
            str(k): round(float(np.mean(np.asarray(with_name) >= k - 2)), 4) if with_name else None
            for k in BUDGETS
        },
        "words_median": float(np.median(n_words)),
        "bpe_tokens_median": float(np.median(n_tokens)),
        "bpe_over_16": round(float(np.mean(np.asarray(n_tokens) > 16)), 4),
    }


def _median_frequency(classes, counts: Counter, total: int) -> dict[str, float | None]:
    """Median corpus frequency of the word occurrences of each kind: function words, ungrounded
    content words, grounded words (what a frequency masker sees)."""
    out = {}
    for name, kind in (("function", 0), ("ungrounded_content", 1), ("grounded", 2)):
        f = [counts[w] / total for w, k in classes if k == kind]
        out[name] = float(f"{np.median(f):.3g}") if f else None
    return out


def format_stats(s: dict) -> str:
    """A short human-readable report of :func:`stats`' dict."""
    w, t = s["words"], s["bpe_tokens"]
    lines = [
        f"pairs                 {s['pairs']}",
        f"words / caption       mean {w['mean']:.1f}  p5 {w['p5']:.0f}  median {w['p50']:.0f}  "
        f"p95 {w['p95']:.0f}  (min {w['min']:.0f}, max {w['max']:.0f})",
        f"BPE tokens / caption  mean {t['mean']:.1f}  p5 {t['p5']:.0f}  median {t['p50']:.0f}  "
        f"p95 {t['p95']:.0f}  (min {t['min']:.0f}, max {t['max']:.0f})",
        "longer than K tokens  " + "  ".join(f">{k}: {v:.0%}" for k, v in s["bpe_longer_than"].items()),
        f"vocabulary            {s['vocabulary']} words, {s['word_tokens']} word tokens",
        f"Zipf slope            {s['zipf']['slope']:.3f} (R^2 {s['zipf']['r2']:.3f}, log-spaced ranks)",
        f"function words        {s['function_share']:.1%}",
        f"grounded words        {s['grounded_share']:.1%}  ("
        + ", ".join(f"{k} {v:.1%}" for k, v in s["grounded_by_kind"].items())
        + ")",
        "grounded past token K " + "  ".join(f"{k}: {v:.0%}" for k, v in s["grounded_past_token"].items()),
        "first grounded past K "
        + "  ".join(f"{k}: {v:.0%}" for k, v in s["first_grounded_past_token"].items()),
        f"first word grounded   {s['first_word_grounded']:.1%}; no grounding {s['no_grounding']:.1%}; "
        f"a wrong attribute {s['wrong_attribute']:.1%}",
        "median word frequency "
        + "  ".join(
            f"{k.replace('_', ' ')} {v:.2g}" for k, v in s["median_frequency"].items() if v is not None
        ),
        "top words             " + " ".join(w for w, _ in s["top_words"][:15]),
    ]
    wb = s.get("world")
    if wb:
        e = wb["english"]
        seen = f" (seen {wb['prior_ratio_seen']:g})" if wb["prior_ratio_seen"] else ""
        lines += [
            f"world                 {wb['preset']}: {wb['classes']} classes named by {wb['class_names']} words; "
            f"prior most / least {wb['prior_ratio']:g}{seen}; a name in {wb['captions_with_name']:.0%} of captions",
            f"name frequency        median {wb['name_frequency_median']:.2g} per name "
            f"({wb['name_frequency_occurrence_median'] or 0:.2g} per occurrence); English median "
            + (f"{wb['name_english_median']:.2g}" if wb["name_english_median"] else "n/a")
            + f" (ImageNet-1k head nouns: {e['imagenet_head_noun']:.2g})",
            f"token / name frequency median token {wb['token_frequency_median']:.2g} = "
            + (f"{wb['token_over_name']:g}x" if wb["token_over_name"] else "n/a (most names unseen)")
            + f" the median name (English: {e['running_token']:.0e} vs "
            f"{e['imagenet_head_noun']:.2g} = {e['token_over_name']:g}x)",
            "name cut by truncation "
            + "  ".join(f"K={k}: {v:.0%}" for k, v in wb["name_cut_by_truncation"].items() if v is not None)
            + f"   (captions: {wb['words_median']:g} words, {wb['bpe_tokens_median']:g} BPE tokens median, "
            f"{wb['bpe_over_16']:.0%} over 16)",
        ]
    return "\n".join(lines)
