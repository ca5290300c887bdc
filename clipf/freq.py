"""Word-frequency tables for CLIPF: count words once, derive P_mask(t) for any threshold on load.

A table stores **counts** (plus the total, the minimum count, the cleaning options and the sources), so
the threshold t of P_mask(w) = max(0, 1 − √(t / f(w))), f(w) = count(w) / total, can change without
recounting. Words are split exactly as the maskers split them (:func:`clipf.text.split_words`:
open_clip's cleaning + pre-tokenization regex). ``total`` counts every word kept by the cleaning,
including words later dropped for being under ``min_count``, so pruning rare words does not change the
frequencies of the others.

:func:`load_table` also reads the authors' published ``{word: P}`` files unchanged (JSON, or the Python
dict literal their code ``eval()``-ed; keys in the tokenizer's byte-level form are mapped back to plain
words); P is then used directly and the threshold is ignored.
"""

from __future__ import annotations

import argparse
import ast
import csv
import glob
import json
import math
import multiprocessing
import os
import sys
import tarfile
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from clipf.text import split_words

FORMAT = "clipf-freq/1"
DEFAULT_THRESHOLD = 1e-6  # the authors' CC12M file is named cc12m_fq_1e6_words.json
DEFAULT_MIN_COUNT = 5  # the authors' minimum count
SUFFIXES = {".txt": "txt", ".text": "txt", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".tar": "tar"}
URL_FRAGMENTS = frozenset(
    "http https www com org net html htm php asp aspx jpg jpeg png gif webp cdn".split()
)


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    """The bundled English stopword list (NLTK's list, no download)."""
    text = (Path(__file__).parent / "data" / "stopwords_en.txt").read_text(encoding="utf-8")
    return frozenset(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#"))


@dataclass(frozen=True)
class CleanOptions:
    """Which words to drop from a table, as the authors did (dropped words are *missing* at masking)."""

    stopwords: bool = True  # bundled English list; contractions ('s, 't, ...) match without the quote
    symbols: bool = True  # words without a letter or digit (punctuation runs)
    numbers: bool = True  # words with a digit
    urls: bool = True  # URL fragments: http, www, com, jpg, ...
    non_ascii: bool = True  # words with a non-ASCII character
    max_len: int | None = 30  # words longer than this many characters

    def keeps(self, word: str) -> bool:
        """Whether ``word`` survives the cleaning."""
        if self.stopwords and word.lstrip("'") in stopwords():
            return False
        if self.symbols and not any(c.isalnum() for c in word):
            return False
        if self.numbers and any(c.isnumeric() for c in word):
            return False
        if self.urls and word in URL_FRAGMENTS:
            return False
        if self.non_ascii and not word.isascii():
            return False
        return not (self.max_len is not None and len(word) > self.max_len)


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
    _p_cache: dict[float, dict[str, float]] = field(default_factory=dict, repr=False, compare=False)

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

    def p_mask(self, threshold: float | None = None) -> dict[str, float]:
        """``{word: P_mask}`` at threshold t (None: :data:`DEFAULT_THRESHOLD`); cached per t."""
        if self.published:
            if threshold is not None and threshold not in self._p_cache:  # say it once per threshold
                warnings.warn(
                    f"threshold {threshold:g} ignored: {self.path or 'this table'} holds published P values",
                    stacklevel=2,
                )
                self._p_cache[threshold] = self.probs
            return self.probs
        t = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        if not t > 0 or math.isinf(t):
            raise ValueError(f"frequency threshold must be a positive number, got {threshold!r}")
        if t not in self._p_cache:
            scale = t * self.total
            self._p_cache[t] = {w: max(0.0, 1.0 - math.sqrt(scale / c)) for w, c in self.counts.items()}
        return self._p_cache[t]

    def top(self, n: int = 20) -> list[tuple[str, float]]:
        """The ``n`` most frequent words with their counts (P for a published table)."""
        items = self.probs.items() if self.published else self.counts.items()
        return sorted(items, key=lambda kv: (-kv[1], kv[0]))[:n]

    def to_json(self) -> dict[str, Any]:
        """The JSON document :meth:`save` writes."""
        if self.published:
            return dict(self.probs)
        head = {k: getattr(self, k) for k in ("total", "min_count", "clean", "sources", "n_captions")}
        counts = dict(sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return {"format": FORMAT, **head, "stats": self.stats, "counts": counts}

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as JSON (counts sorted by frequency)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=0)
            f.write("\n")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_p_cache": {}}


# --------------------------------------------------------------------------- loading
def _plain_word(key: str) -> str:
    """A key in the tokenizer's byte-level unicode form back to the plain word (ASCII: unchanged)."""
    if key.isascii():
        return key
    from open_clip.tokenizer import bytes_to_unicode

    decoder = {v: k for k, v in bytes_to_unicode().items()}
    try:
        return bytes(decoder[c] for c in key).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return key  # already a plain word


def _is_p(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0


def load_table(path: str | os.PathLike) -> FreqTable:
    """Load our counts JSON or the authors' ``{word: P}`` file (format detected)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word-frequency table not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        try:  # the authors read their files with eval(): accept a Python dict literal, safely
            data = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ValueError(
                f"{path}: malformed table: not JSON (line {err.lineno}, column {err.colno}: {err.msg})"
            ) from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: a table must be a non-empty JSON object, got {type(data).__name__}")
    if data.get("format") == FORMAT:
        return _counts_table(data, path)
    bad = next(((k, v) for k, v in data.items() if not isinstance(k, str) or not _is_p(v)), None)
    if bad is not None:
        raise ValueError(
            f'{path}: neither a clipf counts table ("format": "{FORMAT}") nor a published '
            f"{{word: P}} file: entry {bad[0]!r} has value {str(bad[1])[:40]!r}, not a P in [0, 1]"
        )
    probs = {_plain_word(k): float(v) for k, v in data.items()}
    return FreqTable(probs=probs, sources=[str(path)], path=str(path))


def _counts_table(data: dict[str, Any], path: Path) -> FreqTable:
    counts = data.get("counts")
    if not isinstance(counts, dict):
        raise ValueError(f"{path}: counts table without a 'counts' object")
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


# --------------------------------------------------------------------------- counting
Unit = tuple[str, str, Any, Any]  # (kind, path, a, b): txt byte range / parquet row group / csv sep


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Input files: paths, directories (their supported files), globs and ``{a..b}`` brace patterns."""
    from braceexpand import braceexpand

    files: list[Path] = []
    for item in map(str, inputs):
        if Path(item).is_dir():
            found = sorted(p for p in Path(item).rglob("*") if p.suffix.lower() in SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{item}: directory holds no {'/'.join(SUFFIXES)} files")
            files += found
            continue
        if Path(item).exists():
            files.append(Path(item))
            continue
        names = [m for pat in braceexpand(item) for m in (sorted(glob.glob(pat)) or [pat])]
        missing = [n for n in names if not Path(n).is_file()]
        if missing:
            raise FileNotFoundError(f"input not found: {missing[0]}")
        files += map(Path, names)
    for f in files:
        if f.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{f}: unsupported input kind {f.suffix!r}; use {', '.join(SUFFIXES)}")
    return files


def _units(files: Sequence[Path], column: str, chunk_bytes: int) -> list[Unit]:
    units: list[Unit] = []
    for f in files:
        kind = SUFFIXES[f.suffix.lower()]
        if kind == "txt":
            size = f.stat().st_size
            units += [
                (kind, str(f), s, min(s + chunk_bytes, size)) for s in range(0, max(size, 1), chunk_bytes)
            ]
        elif kind == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(f)
            if column not in pf.schema_arrow.names:
                raise ValueError(f"{f}: no column {column!r}; columns: {', '.join(pf.schema_arrow.names)}")
            units += [(kind, str(f), g, column) for g in range(pf.num_row_groups)]
        elif kind == "csv":
            sep = "\t" if f.suffix.lower() == ".tsv" else ","
            with open(f, encoding="utf-8", errors="replace", newline="") as fh:
                header = next(csv.reader(fh, delimiter=sep), [])
            if column not in header:
                raise ValueError(f"{f}: no column {column!r}; columns: {', '.join(header) or '(none)'}")
            units.append((kind, str(f), sep, column))
        else:
            units.append((kind, str(f), None, None))
    return units


def _txt_lines(path: str, start: int, end: int) -> Iterator[bytes]:
    """Lines starting in [start, end) (a line straddling ``start`` belongs to the previous chunk)."""
    with open(path, "rb") as f:
        if start:
            f.seek(start - 1)
            f.readline()
        while f.tell() < end:
            line = f.readline()
            if not line:
                break
            yield line.rstrip(b"\r\n")


def _captions(unit: Unit, stats: dict[str, Any]) -> Iterator[str]:
    """Captions of one unit; invalid UTF-8 -> U+FFFD (counted), null/unreadable records counted."""
    kind, path, a, b = unit

    def decode(raw: bytes, where: Any) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            stats["invalid_utf8"] += 1
            stats.setdefault("first_invalid", where)
            return raw.decode("utf-8", "replace")

    if kind == "txt":
        for i, raw in enumerate(_txt_lines(path, a, b)):
            stats["lines"] += 1
            yield decode(raw, i)
    elif kind == "tar":
        try:
            with tarfile.open(path, "r|*") as tf:
                for member in tf:
                    if member.isfile() and member.name.endswith(".txt"):
                        yield decode(tf.extractfile(member).read(), f"member {member.name}")
                end = tf.offset
            with open(path, "rb") as f:  # tarfile stops silently at a cut header: look past the end
                f.seek(end)
                if f.read().strip(b"\0"):
                    raise tarfile.ReadError(f"truncated or garbage data after byte {end}")
        except (tarfile.TarError, EOFError, OSError) as e:
            stats["errors"].append(f"{path}: unreadable tar shard ({e}); counted what came before")
    elif kind == "parquet":
        import pyarrow.parquet as pq

        for value in pq.ParquetFile(path).read_row_group(a, columns=[b]).column(0).to_pylist():
            if isinstance(value, str):
                yield value
            else:
                stats["skipped"] += 1
    else:
        import pandas as pd

        reader = pd.read_csv(
            path, sep=a, usecols=[b], dtype=str, keep_default_na=False, chunksize=65536,
            encoding_errors="replace",
        )  # fmt: skip
        for chunk in reader:
            for i, value in zip(chunk.index, chunk[b], strict=True):
                if "\ufffd" in value:
                    stats["invalid_utf8"] += 1
                    stats.setdefault("first_invalid", f"row {i + 1}")
                yield value


def _count_unit(unit: Unit) -> tuple[Counter, dict[str, Any]]:
    stats: dict[str, Any] = {
        "captions": 0,
        "empty": 0,
        "lines": 0,
        "invalid_utf8": 0,
        "skipped": 0,
        "errors": [],
    }
    counts: Counter = Counter()
    for caption in _captions(unit, stats):
        words = split_words(caption)
        if words:
            counts.update(words)
            stats["captions"] += 1
        else:
            stats["empty"] += 1
    return counts, stats


def build_table(
    inputs: Iterable[str | os.PathLike],
    *,
    column: str = "caption",
    min_count: int = DEFAULT_MIN_COUNT,
    clean: CleanOptions | bool | None = None,
    workers: int = 1,
    progress: bool = True,
    chunk_bytes: int = 32 << 20,
) -> FreqTable:
    """Count words over caption files (txt: one per line; csv/tsv/parquet: ``column``; webdataset
    ``.tar`` shards: their ``.txt`` members), in parallel over files and chunks.

    Bad input is counted and reported in one warning (never silent): lines with invalid UTF-8 are
    decoded with U+FFFD replacement, empty captions and null cells are skipped, an unreadable tar shard
    contributes what was read before the damage.
    """
    from tqdm import tqdm

    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    opts = CleanOptions() if clean is True else (clean or None)
    files = expand_inputs(inputs)
    units = _units(files, column, chunk_bytes)
    results: list[Any] = [None] * len(units)
    bar = tqdm(total=len(units), unit="chunk", desc="counting words", disable=not progress, file=sys.stderr)
    if workers > 1 and len(units) > 1:
        ctx = multiprocessing.get_context(
            "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        )
        with ctx.Pool(min(workers, len(units))) as pool:
            for i, res in pool.imap_unordered(_count_indexed, enumerate(units)):
                results[i] = res
                bar.update()
    else:
        for i, unit in enumerate(units):
            results[i] = _count_unit(unit)
            bar.update()
    bar.close()

    counts: Counter = Counter()
    stats = {"captions": 0, "empty": 0, "invalid_utf8": 0, "skipped": 0, "errors": []}
    lines_before: dict[str, int] = {}
    first_bad: list[str] = []
    for unit, (c, s) in zip(units, results, strict=True):
        counts.update(c)
        for key in ("captions", "empty", "invalid_utf8", "skipped"):
            stats[key] += s[key]
        stats["errors"] += s["errors"]
        where = s.get("first_invalid")
        if unit[0] == "txt" and where is not None:
            where = f"line {lines_before.get(unit[1], 0) + where + 1}"
        if where is not None:
            first_bad.append(f"{unit[1]} {where}")
        lines_before[unit[1]] = lines_before.get(unit[1], 0) + s["lines"]
    _warn_bad_input(stats, first_bad)

    kept = {w: c for w, c in counts.items() if opts is None or opts.keeps(w)}
    table = FreqTable(
        counts={w: c for w, c in kept.items() if c >= min_count},
        total=sum(kept.values()),
        min_count=min_count,
        clean=asdict(opts) if opts else None,
        sources=[str(f) for f in files],
        n_captions=stats["captions"],
        stats={**{k: v for k, v in stats.items() if k != "errors"}, "errors": len(stats["errors"])},
    )
    return table


def _count_indexed(item: tuple[int, Unit]) -> tuple[int, tuple[Counter, dict[str, Any]]]:
    return item[0], _count_unit(item[1])


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
def show(table: FreqTable, top: int = 20, thresholds: Sequence[float] = (1e-4, 1e-5, 1e-6, 1e-7)) -> str:
    """A readable summary: sources, sizes, the top words and their P_mask at a few thresholds."""
    lines = [f"table: {table.path or '(in memory)'}"]
    if table.published:
        lines += [f"published {{word: P}} file: {len(table)} words (threshold does not apply)", ""]
        lines += [f"{'word':<20} {'P':>8}"] + [f"{w:<20} {p:>8.4f}" for w, p in table.top(top)]
        return "\n".join(lines)
    clean = ", ".join(k for k, v in (table.clean or {}).items() if v) or "none"
    lines += [
        f"sources: {', '.join(table.sources) or '-'}",
        f"captions: {table.n_captions}  words (total): {table.total}  vocabulary: {len(table)}"
        f"  min_count: {table.min_count}  cleaning: {clean}",
        "",
    ]
    head = f"{'word':<20} {'count':>10} {'f':>10} " + " ".join(
        f"{'P@' + format(t, 'g'):>9}" for t in thresholds
    )
    lines.append(head)
    ps = [table.p_mask(t) for t in thresholds]
    for w, c in table.top(top):
        lines.append(f"{w:<20} {c:>10} {table.frequency(w):>10.2e} " + " ".join(f"{p[w]:>9.4f}" for p in ps))
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    """``clipf freq build|show``."""
    ap = argparse.ArgumentParser(prog="clipf freq", description="word-frequency tables for CLIPF")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="count words over caption files")
    b.add_argument("inputs", nargs="+", help="txt (one caption a line), csv/tsv/parquet, webdataset .tar")
    b.add_argument("--out", required=True, help="table JSON to write")
    b.add_argument("--column", default="caption", help="caption column of csv/parquet inputs")
    b.add_argument("--min-count", type=int, default=DEFAULT_MIN_COUNT)
    b.add_argument("--clean", action="store_true", help="drop stopwords, symbols, numbers, URL bits, ...")
    b.add_argument("--max-len", type=int, default=30, help="with --clean: drop longer words")
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("show", help="summarise a table")
    s.add_argument("table")
    s.add_argument("--top", type=int, default=20)
    s.add_argument("--thresholds", type=float, nargs="+", default=[1e-4, 1e-5, 1e-6, 1e-7])
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _print_warning
            if args.cmd == "build":
                clean = CleanOptions(max_len=args.max_len) if args.clean else None
                table = build_table(
                    args.inputs,
                    column=args.column,
                    min_count=args.min_count,
                    clean=clean,
                    workers=args.workers,
                    progress=not args.no_progress,
                )
                table.save(args.out)
                print(
                    f"wrote {args.out}: {table.n_captions} captions, {table.total} words, "
                    f"{len(table)} distinct words with count >= {table.min_count}",
                    file=sys.stderr,
                )
            else:
                print(show(load_table(args.table), args.top, args.thresholds))
    except (ValueError, OSError) as e:
        print(f"clipf freq: error: {e}", file=sys.stderr)
        return 2
    return 0


def _print_warning(message: Warning | str, *_: Any, **__: Any) -> None:
    print(f"warning: {message}", file=sys.stderr)
