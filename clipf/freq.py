"""Word-frequency tables for CLIPF: count words once, derive P_mask(t) for any threshold and rule on load.

A table stores **counts** (plus the total, the minimum count, the cleaning options and the sources), so
the threshold t can change without recounting. Words are split exactly as the maskers split them
(:func:`clipf.text.split_words`: open_clip's cleaning + pre-tokenization regex, i.e. what the
authors' ``encode_text`` returns). As in the authors' ``tests/data_counter.py``, words seen fewer than
``min_count`` times are dropped and ``total`` is the sum of the counts *after* that cut, so
f(w) = count(w) / total; the optional cleaning (the authors' ``word_clean_frequency.py``) removes words
from the table afterwards without changing ``total``. A word missing from a table gets P = 1.

Two rules (:data:`RULES`), by name:

- ``authors`` (default, the released code): P(w) = 1 − round(√(t / f(w)), 6), **no clamp**: a word
  rarer than t gets P < 0 and, in the masker's u − P ranking, is kept ahead of every word with P ≥ 0,
  rarest first.
- ``clamped``: the word2vec subsampling reading P(w) = max(0, 1 − √(t / f(w))).

:func:`load_table` also reads the authors' published ``{word: P}`` files unchanged (JSON, or the Python
dict literal their code ``eval()``-ed; keys in the tokenizer's byte-level form are mapped to plain
words; any finite P ≤ 1, negative included); P is then used directly and the threshold is ignored.
:func:`export_probs` writes such a file from a counts table. See docs/FREQUENCY.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import multiprocessing
import os
import re
import sys
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from clipf.files import write_text
from clipf.sources import Unit, expand_inputs, read_captions, tasks, units
from clipf.text import byte_encoder, byte_form, split_words

FORMAT = "clipf-freq/2"  # /2: total after the min-count cut (the authors' count); /1 counted it before
FORMAT_PREFIX = "clipf-freq/"
RULES = ("authors", "clamped")
DEFAULT_RULE = "authors"
ROUND_DIGITS = 6  # the authors' 1 - round(sqrt(t / f), 6)
DEFAULT_THRESHOLD = 1e-6  # the authors' CC12M file is named cc12m_fq_1e6_words.json
DEFAULT_MIN_COUNT = 5  # the authors' minimum count
# Transfer of CC12M's t = 1e-6 to another corpus (docs/FREQUENCY.md, "Choosing t"): the share of running
# (alphabetic) word tokens with P > 0 on CC12M at t = 1e-6, estimated with wordfreq's English
# frequencies (reference_share(); the constant lets transfer_threshold run without wordfreq).
CC12M_TOKENS = 2.2e8  # ~11 M captions x ~20 words: only sets the min-count cut f >= 5 / CC12M_TOKENS
CC12M_SHARE = 0.974

# The authors' cleaning (tests/word_clean_frequency.py), rule by rule.
CLEAN_CATEGORIES = ("symbol", "number", "short", "non_ascii", "too_long", "url_fragment", "stopword")
SYMBOL_CATEGORIES = frozenset("SP")  # Unicode "Symbol" and "Punctuation"
NUMBER_RE = re.compile(r"^\d+([.,]\d+)?$")
CONTRACTION_SUFFIXES = frozenset({"'s", "'t", "'re", "'ve", "'ll", "'d", "'m"})
URL_FRAGMENTS = (".com", ".net", ".org", ".edu", ".gov", ".io", "blogspot", "wordpress", "http", "www", "://")
MAX_LEN = 25


@cache
def stopwords() -> frozenset[str]:
    """The bundled English stopword list (NLTK's list, no download)."""
    text = (Path(__file__).parent / "data" / "stopwords_en.txt").read_text(encoding="utf-8")
    return frozenset(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#"))


@dataclass(frozen=True)
class CleanOptions:
    """Which words to drop from a table, as the authors' cleaning script does (dropped words are
    *missing* at masking: P = 1). Each check runs on the word's byte-level form, as theirs does on the
    keys of their files; ``classify`` returns the first rule that rejects a word."""

    symbols: bool = True  # every character a Unicode symbol or punctuation
    numbers: bool = True  # 42, 3.14, 1,000 (open_clip's split leaves single digits)
    short: bool = True  # fewer than 2 characters
    non_ascii: bool = True  # a non-ASCII character
    max_len: int | None = MAX_LEN  # longer than this many characters
    urls: bool = True  # contains .com, www, http, blogspot, ...
    stopwords: bool = True  # 's 't 're ... and (alphabetic words) NLTK's English list

    def classify(self, word: str) -> str:
        """The cleaning rule that drops ``word`` (one of :data:`CLEAN_CATEGORIES`), or ``"kept"``."""
        token = byte_form(word)
        if self.symbols and all(unicodedata.category(ch)[0] in SYMBOL_CATEGORIES for ch in token):
            return "symbol"
        if self.numbers and NUMBER_RE.match(token):
            return "number"
        if self.short and len(token) < 2:
            return "short"
        if self.non_ascii and not token.isascii():
            return "non_ascii"
        if self.max_len is not None and len(token) > self.max_len:
            return "too_long"
        if self.urls and any(frag in token.lower() for frag in URL_FRAGMENTS):
            return "url_fragment"
        if self.stopwords and (
            token in CONTRACTION_SUFFIXES or (token.isalpha() and token.lower() in stopwords())
        ):
            return "stopword"
        return "kept"

    def keeps(self, word: str) -> bool:
        """Whether ``word`` survives the cleaning."""
        return self.classify(word) == "kept"


# --------------------------------------------------------------------------- the rules
def check_rule(rule: str | None) -> str:
    """A rule name (None: :data:`DEFAULT_RULE`); anything else than :data:`RULES` is an error."""
    rule = DEFAULT_RULE if rule is None else rule
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} is not one of {', '.join(map(repr, RULES))}")
    return rule


def check_threshold(threshold: float | None) -> float:
    """A threshold t (None: :data:`DEFAULT_THRESHOLD`): a positive finite number."""
    t = DEFAULT_THRESHOLD if threshold is None else threshold
    if isinstance(t, bool) or not isinstance(t, int | float | np.floating) or not 0 < t < math.inf:
        raise ValueError(f"frequency threshold must be a positive number, got {threshold!r}")
    return float(t)


def p_values(freqs: Any, threshold: float | None = None, rule: str | None = None) -> np.ndarray:
    """P_mask of relative frequencies f (array-like) at threshold t under ``rule`` (for curves/plots).

    ``authors``: 1 − round(√(t/f), 6), computed as the authors' numpy code computes it (bit-identical);
    ``clamped``: max(0, 1 − √(t/f)).
    """
    t, rule = check_threshold(threshold), check_rule(rule)
    f = np.asarray(freqs, dtype=np.float64)
    if rule == "clamped":
        return np.maximum(0.0, 1.0 - np.sqrt(t / f))
    return 1.0 - np.round(np.sqrt(t / f), ROUND_DIGITS)


@dataclass
class FreqTable:
    """Word counts (or, for a published file, P values) and how they were made."""

    counts: dict[str, int] = field(default_factory=dict, repr=False)
    total: int = 0
    min_count: int = 1
    clean: dict[str, Any] | None = None
    sources: list[str] = field(default_factory=list)
    n_captions: int = 0
    stats: dict[str, Any] = field(default_factory=dict, repr=False)
    probs: dict[str, float] | None = field(default=None, repr=False)  # published {word: P}: used as is
    path: str | None = None
    _p_cache: dict[tuple, dict[str, float]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def published(self) -> bool:
        """True for the authors' ``{word: P}`` files (no counts; threshold ignored)."""
        return self.probs is not None

    def __len__(self) -> int:
        return len(self.probs if self.published else self.counts)

    def frequency(self, word: str) -> float | None:
        """f(w) = count / total, None for a word missing from the table (or a published table)."""
        c = self.counts.get(word)
        return c / self.total if c and self.total else None

    def p_mask(self, threshold: float | None = None, rule: str | None = None) -> dict[str, float]:
        """``{word: P_mask}`` at threshold t (None: :data:`DEFAULT_THRESHOLD`) under ``rule`` (None:
        :data:`DEFAULT_RULE`), cached. A published table's P are returned as they are (its threshold
        does not apply: said once per threshold); ``rule="clamped"`` clamps them at 0."""
        rule = check_rule(rule)
        if self.published:
            if threshold is not None and ("warned", threshold) not in self._p_cache:
                warnings.warn(
                    f"threshold {threshold:g} ignored: {self.path or 'this table'} holds published P values",
                    stacklevel=2,
                )
                self._p_cache[("warned", threshold)] = {}
            if rule == "clamped":
                if ("clamped",) not in self._p_cache:
                    self._p_cache[("clamped",)] = {w: max(0.0, p) for w, p in self.probs.items()}
                return self._p_cache[("clamped",)]
            return self.probs
        t = check_threshold(threshold)
        key = (t, rule)
        if key not in self._p_cache:
            if rule == "clamped":  # the pre-`rule` expression, kept bit-identical
                scale = t * self.total
                self._p_cache[key] = {w: max(0.0, 1.0 - math.sqrt(scale / c)) for w, c in self.counts.items()}
            else:
                c = np.fromiter(self.counts.values(), np.float64, len(self.counts))
                p = p_values(c / self.total, t, rule)
                self._p_cache[key] = dict(zip(self.counts, p.tolist(), strict=True))
        return self._p_cache[key]

    def top(self, n: int = 20) -> list[tuple[str, float]]:
        """The ``n`` most frequent words with their counts (highest P for a published table)."""
        items = self.probs.items() if self.published else self.counts.items()
        return sorted(items, key=lambda kv: (-kv[1], kv[0]))[:n]

    def to_json(self) -> dict[str, Any]:
        """The JSON document :meth:`save` writes."""
        if self.published:
            return published_probs(self)
        head = {k: getattr(self, k) for k in ("total", "min_count", "clean", "sources", "n_captions")}
        counts = dict(sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return {"format": FORMAT, **head, "stats": self.stats, "counts": counts}

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as JSON (counts sorted by frequency), atomically."""
        write_text(path, json.dumps(self.to_json(), ensure_ascii=False, indent=0) + "\n")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_p_cache": {}}


# --------------------------------------------------------------------------- the authors' file format
def published_probs(
    table: FreqTable, threshold: float | None = None, rule: str | None = None
) -> dict[str, float]:
    """``{byte-level word: P}`` in the authors' file format (most frequent word first)."""
    p = table.p_mask(threshold, rule)
    words = [w for w, _ in table.top(len(table))]
    out = {byte_form(w): p[w] for w in words}
    if len(out) != len(words):
        seen: dict[str, str] = {}
        for w in words:
            if byte_form(w) in seen:
                raise ValueError(f"words {seen[byte_form(w)]!r} and {w!r} have the same byte-level form")
            seen[byte_form(w)] = w
    return out


def export_probs(
    table: FreqTable, path: str | os.PathLike, threshold: float | None = None, rule: str | None = None
) -> dict[str, float]:
    """Write the authors' ``{word: P}`` JSON (as their ``json.dump``: compact, ASCII-escaped) of
    ``table`` at ``threshold`` under ``rule``; returns what was written."""
    probs = published_probs(table, threshold, rule)
    write_text(path, json.dumps(probs) + "\n")
    return probs


# --------------------------------------------------------------------------- loading
@cache
def _byte_decoder() -> dict[str, int]:
    return {c: b for b, c in byte_encoder().items()}


def plain_word(key: str) -> str:
    """A key in the tokenizer's byte-level unicode form back to the plain word (ASCII: unchanged; a
    key that is not a valid byte-level form is taken as a plain word)."""
    if key.isascii():
        return key
    decoder = _byte_decoder()
    try:
        return bytes(decoder[c] for c in key).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return key


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[Any, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _parse(text: str, path: Path) -> Any:
    """JSON (duplicate keys refused), else a Python dict literal as the authors' ``eval()`` read it."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as e:
        raise ValueError(f"{path}: malformed table: key {e.args[0]!r} appears twice") from None
    except json.JSONDecodeError as err:
        try:
            node = ast.parse(text, mode="eval").body
            if not isinstance(node, ast.Dict) or None in node.keys:
                return ast.literal_eval(node)
            return _no_duplicates(
                [
                    (ast.literal_eval(k), ast.literal_eval(v))
                    for k, v in zip(node.keys, node.values, strict=True)
                ]
            )
        except _DuplicateKey as e:
            raise ValueError(f"{path}: malformed table: key {e.args[0]!r} appears twice") from None
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise ValueError(
                f"{path}: malformed table: not JSON (line {err.lineno}, column {err.colno}: {err.msg})"
            ) from None


def _p_problem(value: Any) -> str | None:
    """Why ``value`` is not a mask probability of a published file (None: it is one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"value {str(value)[:40]!r} is not a number"
    if not math.isfinite(value):
        return f"value {value!r} is not a finite number"
    if value > 1:
        return f"value {value!r} is above 1 (P = 1 - sqrt(t/f) is at most 1)"
    return None


def load_table(path: str | os.PathLike) -> FreqTable:
    """Load our counts JSON or the authors' ``{word: P}`` file (format detected).

    Errors name the file and the entry: not UTF-8, not JSON (nor a dict literal), not a non-empty
    object, duplicate keys (also after mapping byte-level keys to plain words), a P that is not a
    finite number <= 1, a counts table of another format version or with bad counts.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word-frequency table not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    data = _parse(text, path)
    if not isinstance(data, dict) or not data:
        what = "an empty object" if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: a table must be a non-empty JSON object, got {what}")
    fmt = data.get("format")
    if isinstance(fmt, str):
        if fmt == FORMAT:
            return _counts_table(data, path)
        if fmt.startswith(FORMAT_PREFIX):
            raise ValueError(
                f"{path}: counts table of format {fmt!r}; this clipf reads {FORMAT!r} (since /2 the total "
                "is taken after the min-count cut, as the authors count): rebuild it with `clipf freq build`"
            )
    probs: dict[str, float] = {}
    first: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: not a {{word: P}} file: key {key!r} is not a string")
        problem = _p_problem(value)
        if problem is not None:
            hint = ""
            if all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in data.values()):
                hint = " (this looks like a {word: count} file: build a counts table with `clipf freq build`)"
            raise ValueError(
                f'{path}: neither a clipf counts table ("format": "{FORMAT}") nor a published '
                f"{{word: P}} file: entry {key!r}: {problem}{hint}"
            )
        word = plain_word(key)
        if word in probs:
            raise ValueError(
                f"{path}: entries {first[word]!r} and {key!r} are the same word {word!r} "
                "(one in byte-level form): keep one"
            )
        probs[word], first[word] = float(value), key
    return FreqTable(probs=probs, sources=[str(path)], path=str(path))


def _counts_table(data: dict[str, Any], path: Path) -> FreqTable:
    counts = data.get("counts")
    if not isinstance(counts, dict):
        raise ValueError(f"{path}: counts table without a 'counts' object")
    if not counts:
        raise ValueError(f"{path}: counts table with no words")
    for w, c in counts.items():
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"{path}: count of {w!r} is {c!r}, not a positive integer")
    total = data.get("total")
    if isinstance(total, bool) or not isinstance(total, int) or total < sum(counts.values()):
        raise ValueError(f"{path}: 'total' is {total!r}, not an integer >= the sum of the counts")
    return FreqTable(
        counts=counts,
        total=total,
        min_count=int(data.get("min_count", 1)),
        clean=data.get("clean"),
        sources=list(data.get("sources", [])),
        n_captions=int(data.get("n_captions", 0)),
        stats=dict(data.get("stats", {})),
        path=str(path),
    )


# --------------------------------------------------------------------------- what a threshold does
def p_summary(
    table: FreqTable, threshold: float | None = None, rule: str | None = None
) -> dict[str, dict[str, float]]:
    """Word types and (counts tables) shares of all tokens with P > 0, P = 0, P < 0 at t under
    ``rule``; ``missing``: tokens of words the cleaning removed (P = 1 at masking)."""
    p = table.p_mask(threshold, rule)
    types = {"positive": 0, "zero": 0, "negative": 0}
    mass = {"positive": 0, "zero": 0, "negative": 0}
    for w, v in p.items():
        kind = "positive" if v > 0 else "negative" if v < 0 else "zero"
        types[kind] += 1
        mass[kind] += table.counts.get(w, 0)
    out: dict[str, dict[str, float]] = {"types": {k: float(n) for k, n in types.items()}}
    if not table.published and table.total:
        out["tokens"] = {k: n / table.total for k, n in mass.items()}
        out["tokens"]["missing"] = 1.0 - sum(table.counts.values()) / table.total
    return out


def token_share(
    table: FreqTable, threshold: float | None = None, rule: str | None = None, letters_only: bool = True
) -> float:
    """Share of the table's word tokens with P > 0 at t (``letters_only``: alphabetic words only)."""
    p = table.p_mask(threshold, rule)
    words = [w for w in table.counts if w.isalpha() or not letters_only]
    mass = sum(table.counts[w] for w in words)
    return sum(table.counts[w] for w in words if p[w] > 0) / mass if mass else float("nan")


def reference_share(
    threshold: float = DEFAULT_THRESHOLD, tokens: float = CC12M_TOKENS, min_count: int = DEFAULT_MIN_COUNT
) -> float:
    """The stand-in for CC12M's share of alphabetic word tokens with P > 0 at ``threshold``: wordfreq's
    English frequencies (large list), words under the min-count cut ``min_count / tokens`` left out."""
    import wordfreq

    f = np.array([v for w, v in wordfreq.get_frequency_dict("en", wordlist="large").items() if w.isalpha()])
    f = f[f >= min_count / tokens]
    return float(f[f > threshold].sum() / f.sum())


def transfer_threshold(
    table: FreqTable, share: float = CC12M_SHARE, rule: str | None = None, letters_only: bool = True
) -> float:
    """The t at which ``table``'s share of (alphabetic) word tokens with P > 0 is nearest ``share``
    (CC12M's at t = 1e-6): the shortest decimal between the frequencies of the last word with P > 0
    and the first with P <= 0 (nearest their geometric mean)."""
    if table.published:
        raise ValueError(
            f"{table.path or 'table'}: a published {{word: P}} file has no counts to transfer t to"
        )
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share!r}")
    by_count = Counter(c for w, c in table.counts.items() if w.isalpha() or not letters_only)
    if not by_count:
        raise ValueError(f"{table.path or 'table'}: no alphabetic words to transfer t to")
    levels = sorted(by_count, reverse=True)  # distinct counts, most frequent first
    mass = np.cumsum([c * by_count[c] for c in levels]) / sum(c * n for c, n in by_count.items())
    cut = int(np.argmin(np.abs(mass - share)))  # words with count >= levels[cut] get P > 0
    hi = levels[cut] / table.total
    lo = levels[cut + 1] / table.total if cut + 1 < len(levels) else hi / 4
    mid = math.sqrt(hi * lo)
    rule = check_rule(rule)
    for digits in range(1, 17):
        t = float(f"{mid:.{digits - 1}e}")
        if p_values([hi], t, rule)[0] > 0 >= p_values([lo], t, rule)[0]:
            return t
    return mid


def _sources(paths: Sequence[str]) -> str:
    if len(paths) <= 3:
        return ", ".join(paths) or "-"
    return f"{len(paths)} files: {paths[0]}, {paths[1]}, ..., {paths[-1]}"


def show(
    table: FreqTable,
    top: int = 20,
    threshold: float | None = None,
    rule: str | None = None,
    thresholds: Sequence[float] = (),
) -> str:
    """A readable summary: sources, sizes, what t does under ``rule`` (types and token shares with
    P > 0, = 0, < 0) and the top words with their P (also at ``thresholds``)."""
    t, rule = check_threshold(threshold), check_rule(rule)
    lines = [f"table: {table.path or '(in memory)'}"]
    if table.published:
        lines += [f"published {{word: P}} file: {len(table)} words (no counts: the threshold does not apply)"]
    else:
        clean = ", ".join(k for k, v in (table.clean or {}).items() if v) or "none"
        lines += [
            f"sources: {_sources(table.sources)}",
            f"captions: {table.n_captions}  words (total after the min-count cut): {table.total}  "
            f"vocabulary: {len(table)}  min_count: {table.min_count}  cleaning: {clean}",
        ]
    summary = p_summary(table, None if table.published else t, rule)
    formula = "max(0, 1 - sqrt(t/f))" if rule == "clamped" else "1 - round(sqrt(t/f), 6)"
    where = "" if table.published else f" at t = {t:g}"
    lines += ["", f"rule {rule}: P = {formula}{where}" + (" (published P)" if table.published else "")]
    lines.append(f"{'':<14} {'types':>9}" + ("" if table.published else f" {'tokens':>8}"))
    names = {"positive": "P > 0", "zero": "P = 0", "negative": "P < 0"}
    for kind, label in names.items():
        row = f"{label:<14} {int(summary['types'][kind]):>9}"
        if "tokens" in summary:
            row += f" {summary['tokens'][kind]:>8.2%}"
        lines.append(row)
    if summary.get("tokens", {}).get("missing"):
        lines.append(f"{'not in table':<14} {'-':>9} {summary['tokens']['missing']:>8.2%}  (cleaned: P = 1)")
    lines.append("")
    if table.published:
        lines += [f"{'word':<20} {'P':>10}"]
        lines += [f"{w:<20} {p:>10.6f}" for w, p in table.top(top)]
        return "\n".join(lines)
    extra = [check_threshold(x) for x in thresholds]
    head = f"{'word':<20} {'count':>10} {'f':>10} {'P':>10}" + "".join(
        f" {'P@' + format(x, 'g'):>10}" for x in extra
    )
    lines.append(head)
    ps = [table.p_mask(t, rule)] + [table.p_mask(x, rule) for x in extra]
    for w, c in table.top(top):
        cells = "".join(f" {p[w]:>10.4f}" for p in ps)
        lines.append(f"{w:<20} {c:>10} {table.frequency(w):>10.2e}{cells}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- counting
def _count_task(task: Unit) -> tuple[Counter, dict[str, Any]]:
    stats: dict[str, Any] = {
        "captions": 0,
        "empty": 0,
        "lines": 0,
        "invalid_utf8": 0,
        "skipped": 0,
        "errors": [],
    }
    counts: Counter = Counter()
    update = counts.update
    for caption in read_captions(task, stats):
        words = split_words(caption)
        if words:
            update(words)
            stats["captions"] += 1
        else:
            stats["empty"] += 1
    return counts, stats


def _results(todo: Iterator[Unit], workers: int) -> Iterator[tuple[Unit, tuple[Counter, dict[str, Any]]]]:
    """``(task, (counts, stats))`` in task order; with ``workers`` > 1 on a process pool, at most
    2 x workers tasks in flight (a csv file is never read ahead into memory)."""
    if workers <= 1:
        for task in todo:
            yield task, _count_task(task)
        return
    from collections import deque

    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with ctx.Pool(workers) as pool:
        pending: deque = deque()
        for task in todo:
            # a csv batch is sent with its captions; report it without them
            pending.append(
                (task[:3] + (None,) if task[0] == "rows" else task, pool.apply_async(_count_task, (task,)))
            )
            while len(pending) >= 2 * workers:
                done, res = pending.popleft()
                yield done, res.get()
        while pending:
            done, res = pending.popleft()
            yield done, res.get()


def build_table(
    inputs: Iterable[str | os.PathLike],
    *,
    column: str = "caption",
    min_count: int = DEFAULT_MIN_COUNT,
    clean: CleanOptions | bool | None = None,
    workers: int = 1,
    progress: bool = True,
    chunk_bytes: int | None = None,
) -> FreqTable:
    """Count words over caption files (txt: one per line; csv/tsv/parquet: ``column``; webdataset
    ``.tar`` shards: their ``.txt`` members), in parallel (``workers`` processes) over files and chunks.

    Words seen fewer than ``min_count`` times are dropped and ``total`` is the sum of the counts left
    (the authors' count); ``clean`` then removes words from the table, ``total`` unchanged (their
    cleaning runs on the finished file). Bad input is counted and reported in one warning (never
    silent): lines with invalid UTF-8 are decoded with U+FFFD replacement, empty captions and null
    cells are skipped, an unreadable tar shard contributes what was read before the damage.
    Counting imports neither torch nor open_clip.
    """
    from tqdm import tqdm

    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    opts = CleanOptions() if clean is True else (clean or None)
    files = expand_inputs(inputs)
    parts = units(files, column, chunk_bytes, workers)
    has_csv = any(u[0] == "csv" for u in parts)
    bar = tqdm(
        total=None if has_csv else len(parts), unit="chunk", desc="counting words", disable=not progress,
        file=sys.stderr,
    )  # fmt: skip

    counts: Counter = Counter()
    stats: dict[str, Any] = {"captions": 0, "empty": 0, "invalid_utf8": 0, "skipped": 0, "errors": []}
    lines_before: dict[str, int] = {}
    first_bad: list[str] = []
    for task, (c, s) in _results(tasks(parts), workers):
        counts.update(c)
        for key in ("captions", "empty", "invalid_utf8", "skipped"):
            stats[key] += s[key]
        stats["errors"] += s["errors"]
        where = s.get("first_invalid")
        if task[0] == "txt" and where is not None:
            where = f"line {lines_before.get(task[1], 0) + where + 1}"
        if where is not None:
            first_bad.append(f"{task[1]} {where}")
        lines_before[task[1]] = lines_before.get(task[1], 0) + s["lines"]
        bar.update()
    bar.close()
    _warn_bad_input(stats, first_bad)

    above = {w: c for w, c in counts.items() if c >= min_count}
    if not above:
        why = f"no word is seen {min_count} times or more" if counts else "no words"
        raise ValueError(
            f"clipf freq build: {why} in {len(files)} input file(s) ({len(counts)} distinct words)"
        )
    dropped = Counter(opts.classify(w) for w in above) if opts else Counter()
    dropped.pop("kept", None)
    table = FreqTable(
        counts={w: c for w, c in above.items() if opts is None or opts.keeps(w)},
        total=sum(above.values()),
        min_count=min_count,
        clean=asdict(opts) if opts else None,
        sources=[str(f) for f in files],
        n_captions=stats["captions"],
        stats={
            **{k: v for k, v in stats.items() if k != "errors"},
            "errors": len(stats["errors"]),
            "words_before_min_count": sum(counts.values()),
            "types_before_min_count": len(counts),
            "cleaned_types": {k: dropped[k] for k in CLEAN_CATEGORIES if dropped[k]},
        },
    )
    if not table.counts:
        raise ValueError(f"clipf freq build: the cleaning removed all {len(above)} words")
    return table


def _warn_bad_input(stats: dict[str, Any], first_bad: list[str]) -> None:
    notes = list(stats["errors"])
    if stats["invalid_utf8"]:
        notes.append(
            f"{stats['invalid_utf8']} caption(s) with invalid UTF-8 decoded with U+FFFD replacement "
            f"(first: {first_bad[0]})"
        )
    if stats["skipped"]:
        notes.append(f"{stats['skipped']} null/non-text caption cell(s) skipped")
    if stats["empty"]:
        notes.append(f"{stats['empty']} empty caption(s) skipped")
    if notes:
        warnings.warn("clipf freq build: " + "; ".join(notes), stacklevel=3)


# --------------------------------------------------------------------------- `clipf freq`
def cli(argv: list[str] | None = None) -> int:
    """``clipf freq build|show|export|transfer``."""
    ap = argparse.ArgumentParser(prog="clipf freq", description="word-frequency tables for CLIPF")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="count words over caption files")
    b.add_argument("inputs", nargs="+", help="txt (one caption a line), csv/tsv/parquet, webdataset .tar")
    b.add_argument("--out", required=True, help="table JSON to write")
    b.add_argument("--column", default="caption", help="caption column of csv/parquet inputs")
    b.add_argument("--min-count", type=int, default=DEFAULT_MIN_COUNT, help="drop rarer words (default 5)")
    b.add_argument(
        "--clean", action="store_true", help="the authors' cleaning: symbols, numbers, stopwords..."
    )
    b.add_argument(
        "--max-len", type=int, default=MAX_LEN, help="with --clean: drop longer words (default 25)"
    )
    b.add_argument("--workers", type=int, default=1, help="counting processes")
    b.add_argument("--no-progress", action="store_true")
    rules = {"choices": RULES, "default": DEFAULT_RULE, "help": f"P rule (default {DEFAULT_RULE})"}
    s = sub.add_parser("show", help="summarise a table: what a threshold and rule do")
    s.add_argument("table")
    s.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="t (default 1e-6)")
    s.add_argument("--rule", **rules)
    s.add_argument("--top", type=int, default=20)
    s.add_argument("--thresholds", type=float, nargs="+", default=[], help="also show P at these t")
    e = sub.add_parser("export", help="write the authors' {word: P} file from a counts table")
    e.add_argument("table")
    e.add_argument("--out", required=True)
    e.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="t (default 1e-6)")
    e.add_argument("--rule", **rules)
    t = sub.add_parser("transfer", help="CC12M's t = 1e-6 transferred to this table's corpus")
    t.add_argument("table")
    t.add_argument(
        "--share", type=float, default=CC12M_SHARE, help=f"share of tokens with P > 0 ({CC12M_SHARE})"
    )
    t.add_argument("--rule", **rules)
    try:
        args = ap.parse_args(argv)
    except SystemExit as err:
        return int(err.code or 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _print_warning
            return _run(args)
    except (ValueError, OSError) as err:
        print(f"clipf freq: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "build":
        table = build_table(
            args.inputs,
            column=args.column,
            min_count=args.min_count,
            clean=CleanOptions(max_len=args.max_len) if args.clean else None,
            workers=args.workers,
            progress=not args.no_progress,
        )
        table.save(args.out)
        print(
            f"wrote {args.out}: {table.n_captions} captions, {table.total} words after the min-count cut, "
            f"{len(table)} distinct words with count >= {table.min_count}",
            file=sys.stderr,
        )
    elif args.cmd == "show":
        print(show(load_table(args.table), args.top, args.threshold, args.rule, args.thresholds))
    elif args.cmd == "export":
        table = load_table(args.table)
        probs = export_probs(table, args.out, None if table.published else args.threshold, args.rule)
        neg = sum(p < 0 for p in probs.values())
        print(
            f"wrote {args.out}: {len(probs)} words, rule {args.rule}, t = {args.threshold:g}, {neg} with P < 0",
            file=sys.stderr,
        )
    else:
        table = load_table(args.table)
        t = transfer_threshold(table, args.share, args.rule)
        print(
            f"t = {t:g}: {token_share(table, t, args.rule):.2%} of the alphabetic word tokens have P > 0 "
            f"(target {args.share:.2%}, CC12M at t = 1e-6); literal t = 1e-6: "
            f"{token_share(table, 1e-6, args.rule):.2%}"
        )
    return 0


def _print_warning(message: Warning | str, *_: Any, **__: Any) -> None:
    print(f"warning: {message}", file=sys.stderr)
