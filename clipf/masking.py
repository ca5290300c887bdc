"""Text maskers: which K−2 of a caption's tokens a K-token text tower sees.

Every masker is a small function ``fn(captions, k, rng, **opts) -> LongTensor[N, k]`` registered by
name in :data:`MASKERS`. Rows are laid out exactly as open_clip's tokenizer lays them out — start token
49406, the kept BPE ids of open_clip's vocabulary, end token 49407, zero padding — so the output feeds
a stock open_clip text tower. A caption that already fits (at most K−2 BPE tokens) is never altered: its
row equals ``open_clip.tokenizer.SimpleTokenizer()(caption, context_length=k)``.

All maskers share one encoder (:func:`clipf.text.encode_words`): open_clip's cleaning (ftfy, HTML unescape,
whitespace collapse, lower case) done once, its pre-tokenization regex to split *words*, and a
word -> BPE ids cache. Words are what the frequency rule and syntax masking select; ``truncate``,
``block``, ``random`` and ``shuffle`` work on BPE tokens, as open_clip's reduction masks do.

Randomness comes only from the ``rng`` argument, one uniform draw per word/token of each caption that
overflows (one per caption for ``block``), so the same seed gives the same masks.
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from clipf import text
from clipf.freq import DEFAULT_RULE, RULES
from clipf.text import EOT, SOT, encode_words, split_cased

MaskerFn = Callable[..., torch.Tensor]
MASKERS: dict[str, MaskerFn] = {}
ALIASES: dict[str, str] = {"simple": "block", "None": "truncate", "none": "truncate"}


def register(name: str) -> Callable[[MaskerFn], MaskerFn]:
    """Decorator: add a masker function to :data:`MASKERS` under ``name``."""

    def deco(fn: MaskerFn) -> MaskerFn:
        MASKERS[name] = fn
        return fn

    return deco


def get_masker(name: str | None) -> MaskerFn:
    """The masker called ``name`` (aliases: ``simple`` -> block, ``None``/``none`` -> truncate)."""
    key = ALIASES.get(str(name), name)
    if key not in MASKERS:
        valid = ", ".join([*MASKERS, *ALIASES])
        raise ValueError(f"unknown masker {name!r}; valid names: {valid}")
    return MASKERS[key]


def check_k(k: Any) -> int:
    """Validate a token budget K (start + end token + at least one text token)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"K (text tokens) must be an integer >= 3, got {k!r}")
    if k < 3:
        raise ValueError(f"K (text tokens) must be >= 3 (start + end token + one text token), got {k}")
    return int(k)


def _as_list(captions: str | Sequence[str]) -> list[str]:
    if isinstance(captions, str):
        return [captions]
    out = list(captions)
    for i, c in enumerate(out):
        if not isinstance(c, str):
            raise TypeError(f"caption {i} is {type(c).__name__}, expected str")
    return out


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _pack(rows: list[Sequence[int]], k: int) -> torch.Tensor:
    """open_clip layout: [sot, ids..., eot, 0...]; every row already holds at most k-2 ids."""
    out = np.zeros((len(rows), k), dtype=np.int64)
    out[:, 0] = SOT
    for i, row in enumerate(rows):
        n = len(row)
        if n:
            out[i, 1 : n + 1] = row
        out[i, n + 1] = EOT
    return torch.from_numpy(out)


def _flat(ids: Iterable[tuple[int, ...]]) -> list[int]:
    return list(chain.from_iterable(ids))


def _token_masker(
    captions: str | Sequence[str], k: int, rng: np.random.Generator | int | None, pick: Callable
) -> torch.Tensor:
    """Shared body of the token-level maskers: ``pick(tokens, budget, rng)`` on overflowing captions."""
    budget = check_k(k) - 2
    flats = [_flat(encode_words(c)[1]) for c in _as_list(captions)]
    rows: list[Sequence[int]] = []
    gen = _as_rng(rng)
    for toks in flats:
        rows.append(toks if len(toks) <= budget else pick(toks, budget, gen))
    return _pack(rows, k)


# --------------------------------------------------------------------------- token-level maskers
@register("truncate")
def truncate(captions: Sequence[str], k: int, rng: np.random.Generator | int | None = None) -> torch.Tensor:
    """CLIP's default: the first K−2 tokens (identical to open_clip's tokenizer at context length K)."""
    return _token_masker(captions, k, rng, lambda toks, budget, _: toks[:budget])


@register("block")
def block(captions: Sequence[str], k: int, rng: np.random.Generator | int | None = None) -> torch.Tensor:
    """A random contiguous span of K−2 tokens (CLIPA "block", open_clip ``simple``)."""

    def pick(toks: list[int], budget: int, gen: np.random.Generator) -> list[int]:
        start = int(gen.random() * (len(toks) - budget + 1))
        return toks[start : start + budget]

    return _token_masker(captions, k, rng, pick)


@register("random")
def random(captions: Sequence[str], k: int, rng: np.random.Generator | int | None = None) -> torch.Tensor:
    """K−2 tokens drawn uniformly without replacement, original order kept (CLIPA "random")."""

    def pick(toks: list[int], budget: int, gen: np.random.Generator) -> list[int]:
        keep = np.sort(np.argsort(gen.random(len(toks)))[:budget])
        return [toks[i] for i in keep]

    return _token_masker(captions, k, rng, pick)


@register("shuffle")
def shuffle(captions: Sequence[str], k: int, rng: np.random.Generator | int | None = None) -> torch.Tensor:
    """K−2 tokens drawn uniformly without replacement, in random order (open_clip ``shuffle``)."""

    def pick(toks: list[int], budget: int, gen: np.random.Generator) -> list[int]:
        return [toks[i] for i in np.argsort(gen.random(len(toks)))[:budget]]

    return _token_masker(captions, k, rng, pick)


# --------------------------------------------------------------------------- word-level selection
def _select_words(
    order: np.ndarray, ids: list[tuple[int, ...]], budget: int, fill: str, cut: int
) -> list[int]:
    """Token ids of the kept words, in original order; ``order`` ranks word indices best first.

    ``fill="reference"`` keeps the first min(budget, n_words) ranked words and cuts the result to
    ``cut`` tokens; ``fill="tokens"`` fills exactly ``budget`` tokens greedily with whole words
    (a word that no longer fits is skipped) and tops a remaining gap up with the first tokens of
    the best-ranked word left out.
    """
    if fill == "reference":
        kept = np.sort(order[: min(budget, len(order))]).tolist()
        return _flat([ids[i] for i in kept])[:cut]
    lens = np.fromiter((len(ids[i]) for i in order), dtype=np.int64, count=len(order))
    csum = np.cumsum(lens)
    j = int(np.searchsorted(csum, budget, side="right"))
    if j and csum[j - 1] == budget:
        return _flat(ids[i] for i in np.sort(order[:j]))
    chosen, space, gap_word = [], budget, None
    for rank, i in enumerate(order):
        if lens[rank] <= space:
            chosen.append(i)
            space -= int(lens[rank])
        elif gap_word is None:
            gap_word = i
        if space == 0:
            break
    if space:  # total > budget, so some word was skipped: top the gap up with its first tokens
        chosen.append(gap_word)
    return [t for i in sorted(chosen) for t in (ids[i][:space] if space and i == gap_word else ids[i])]


FILLS = ("reference", "tokens")
MISSING = {"mask": 1.0, "keep": 0.0}


def _check_choice(name: str, value: str, choices: Sequence[str] | dict[str, Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


# --------------------------------------------------------------------------- frequency (CLIPF)
_TABLES: dict[str, Any] = {}


def _resolve_table(table: Any) -> Any:
    """A FreqTable from a table object or a path (each path loaded once per process)."""
    if hasattr(table, "p_mask"):  # a clipf.freq.FreqTable
        return table
    if table is None:
        raise ValueError(
            "the frequency masker needs a word-frequency table: pass table=FreqTable or a path "
            "(build one with `clipf freq build`, or use the authors' {word: P} JSON)"
        )
    if not isinstance(table, str | os.PathLike):
        raise TypeError(f"table must be a FreqTable or a path, got {type(table).__name__}")
    key = os.fspath(table)
    if key not in _TABLES:
        from clipf.freq import load_table

        _TABLES[key] = load_table(key)
    return _TABLES[key]


@register("frequency")
def frequency(
    captions: Sequence[str],
    k: int,
    rng: np.random.Generator | int | None = None,
    *,
    table: Any = None,
    threshold: float | None = None,
    rule: str = DEFAULT_RULE,
    missing: str = "mask",
    fill: str = "reference",
) -> torch.Tensor:
    """CLIPF word-frequency masking.

    Each word w gets P(w) from ``table`` (a :class:`clipf.freq.FreqTable` or a path to one) at threshold
    t = ``threshold`` (None: :data:`clipf.freq.DEFAULT_THRESHOLD`) under ``rule``: ``"authors"``
    (default, the released code) P = 1 − round(√(t / f(w)), 6) without a clamp, so a word rarer than t
    has P < 0 and is kept ahead of every word with P ≥ 0, rarest first; ``"clamped"`` (word2vec)
    P = max(0, 1 − √(t / f(w))). The authors' published ``{word: P}`` files give P directly and ignore
    ``threshold`` (``"clamped"`` clamps their P at 0). When a caption has more than K−2 BPE tokens,
    draw u ~ U(0, 1) per word and keep the words with the largest u − P(w), in their original order.

    ``missing`` — a word absent from the table (below the table's minimum count, or removed by its
    cleaning: stopwords, symbols, numbers...): ``"mask"`` (default, the authors' code) gives it P = 1,
    so it goes first; ``"keep"`` (the formula read literally: a rare word has f ~ 0) gives P = 0.
    The two readings differ only for such words.

    ``fill`` — ``"reference"`` (default, parity with the authors' code): keep min(K−2, n_words) words,
    then cut to that many tokens, so multi-token words can push the last kept words out and a caption
    with few long words leaves part of the budget empty. ``"tokens"``: fill exactly K−2 tokens with the
    best-scoring whole words (a word that no longer fits is skipped; a gap left at the end takes the
    first tokens of the best word left out).
    """
    _check_choice("rule", rule, RULES)
    _check_choice("missing", missing, MISSING)
    _check_choice("fill", fill, FILLS)
    budget = check_k(k) - 2
    p_of = _resolve_table(table).p_mask(threshold, rule).get
    default = MISSING[missing]
    rows: list[Sequence[int]] = []
    over = []  # (row, words, ids) of the captions over budget
    for caption in _as_list(captions):
        words, ids = encode_words(caption)
        if sum(map(len, ids)) > budget:
            over.append((len(rows), words, ids))
        rows.append(_flat(ids))
    if over:  # one uniform per word, drawn for all captions at once (same stream as one by one)
        u = _as_rng(rng).random(sum(len(words) for _, words, _ in over))
        start = 0
        for i, words, ids in over:
            n = len(words)
            score = u[start : start + n] - np.fromiter(map(p_of, words, repeat(default)), float, n)
            start += n
            rows[i] = _select_words(np.argsort(-score, kind="stable"), ids, budget, fill, min(budget, n))
    return _pack(rows, k)


# --------------------------------------------------------------------------- syntax (CLIPA)
@register("syntax")
def syntax(
    captions: Sequence[str],
    k: int,
    rng: np.random.Generator | int | None = None,
    *,
    tagger: str = "auto",
    fill: str = "reference",
) -> torch.Tensor:
    """CLIPA syntax masking: keep words by POS priority nouns > adjectives > verbs > rest.

    Deterministic (``rng`` unused): ties keep the earlier word; kept words stay in original order.
    Words are tagged with :mod:`clipf.pos` (``tagger="auto"|"perceptron"|"brill"``; see
    :func:`clipf.pos.tagger_name`), on the cased cleaned caption. ``fill="reference"`` is open_clip's
    rule (keep K−2 words, then cut to K−2 tokens); ``"tokens"`` fills K−2 tokens with whole words.
    """
    from clipf import pos

    _check_choice("fill", fill, FILLS)
    budget = check_k(k) - 2
    rows: list[Sequence[int]] = []
    for caption in _as_list(captions):
        words, ids = encode_words(caption)
        if sum(map(len, ids)) <= budget:
            rows.append(_flat(ids))
            continue
        cased = split_cased(caption)
        tags = pos.tag(cased if len(cased) == len(words) else words, tagger)
        order = np.argsort(np.fromiter(map(pos.priority, tags), np.int64, len(tags)), kind="stable")
        rows.append(_select_words(order, ids, budget, fill, budget))
    return _pack(rows, k)


# --------------------------------------------------------------------------- the trainer's tokenizer
def masker_options(masker: str | MaskerFn | None) -> list[str]:
    """The keyword options a masker takes (e.g. ``["table", "threshold", "missing", "fill"]``)."""
    fn = masker if callable(masker) else get_masker(masker)
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]


def _rank() -> int:
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


class MaskingTokenizer:
    """Picklable ``(str | list[str]) -> LongTensor[N, k]`` applying a masker; the trainer's tokenizer.

    Its random generator is created lazily on the first call in each process and again at each new
    epoch (:meth:`set_epoch`, a value shared with DataLoader workers), from ``(seed, rank, DataLoader
    worker id, loader salt, epoch)``: rank from ``RANK``/``SLURM_PROCID``; inside a torch DataLoader
    worker the worker id and, when ``follow_torch_seed`` (default), the DataLoader's base seed
    (``torch.initial_seed() - worker id``, reproducible when torch is seeded, as open_clip_train does
    with ``--seed``). Each epoch's masks are thus a function of the epoch, not of how many captions the
    process masked before — what lets a run resumed mid-epoch replay exactly (epoch 0 draws what it
    always drew). In the main process, or with ``follow_torch_seed=False``, masks depend on ``seed``
    (+ rank, worker id, epoch) only.
    """

    def __init__(self, masker: str, k: int, seed: int = 0, follow_torch_seed: bool = True, **opts: Any):
        self.masker = masker
        self.fn = get_masker(masker)
        self.k = check_k(k)
        self.seed = int(seed)
        self.follow_torch_seed = follow_torch_seed
        allowed = masker_options(self.fn)
        unknown = sorted(set(opts) - set(allowed))
        if unknown:
            raise ValueError(
                f"masker {masker!r} takes no option(s) {unknown}; its options: {allowed or 'none'}"
            )
        if self.fn is syntax:
            from clipf import pos

            pos.tagger_name(opts.get("tagger", "auto"))
        self.fn([""], self.k, None, **opts)  # bad options or table fail now, not in a DataLoader worker
        self.opts = opts
        self._rng: np.random.Generator | None = None
        self._owner: tuple[int, int, int] | None = None
        self._epoch = multiprocessing.get_context().Value("i", 0, lock=False)

    @property
    def context_length(self) -> int:
        """K, as open_clip tokenizers expose it."""
        return self.k

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose masks the next calls draw (seen by DataLoader workers forked after this)."""
        self._epoch.value = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def _generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        epoch = self.epoch
        owner = (os.getpid(), info.id if info else -1, epoch)
        if self._rng is None or owner != self._owner:
            salt = info.seed - info.id if info and self.follow_torch_seed else 0
            entropy = [self.seed, _rank(), info.id + 1 if info else 0, salt % (1 << 64)]
            if epoch:
                entropy.append(epoch)
            self._rng, self._owner = np.random.default_rng(entropy), owner
        return self._rng

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        if context_length is not None and context_length != self.k:
            raise ValueError(f"this MaskingTokenizer makes K={self.k} tokens, asked for {context_length}")
        return self.fn(texts, self.k, self._generator(), **self.opts)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_rng=None, _owner=None, fn=None, _epoch=self.epoch)  # a copy sees the epoch at pickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        epoch = state.pop("_epoch", 0)
        self.__dict__.update(state)
        self._epoch = multiprocessing.get_context().Value("i", int(epoch), lock=False)
        self.fn = get_masker(self.masker)

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.opts.items())
        return f"MaskingTokenizer({self.masker!r}, k={self.k}, seed={self.seed}{opts})"


# --------------------------------------------------------------------------- `clipf mask`
def read_lines(path: str | os.PathLike | None, what: str = "clipf") -> list[str]:
    """Lines of a text file (``None``/``-`` = stdin), newline stripped; invalid UTF-8 is decoded with
    U+FFFD replacement and reported on stderr with its count and first line number."""
    name = "<stdin>" if path in (None, "-") else str(path)
    data = sys.stdin.buffer.read() if name == "<stdin>" else Path(path).read_bytes()
    lines, bad = [], []
    for n, raw in enumerate(data.splitlines(), 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(raw.decode("utf-8", "replace"))
            bad.append(n)
    if bad:
        print(
            f"{what}: {name}: {len(bad)} line(s) with invalid UTF-8 (first: line {bad[0]}), "
            "decoded with U+FFFD replacement",
            file=sys.stderr,
        )
    return lines


def decode(ids: Sequence[int] | torch.Tensor) -> str:
    """Text of a row's kept tokens (start/end tokens and padding dropped)."""
    return text.decode([int(t) for t in ids])


def cli(argv: list[str] | None = None) -> int:
    """``clipf mask``: mask captions (one per line) and write JSON lines ``{caption, kept, ids}``."""
    ap = argparse.ArgumentParser(prog="clipf mask", description=cli.__doc__)
    ap.add_argument("--masker", required=True, help=f"one of {', '.join([*MASKERS, *ALIASES])}")
    ap.add_argument("--tokens", "-k", type=int, required=True, help="K: text tokens incl. start/end")
    ap.add_argument("--table", help="word-frequency table (frequency masker)")
    ap.add_argument("--threshold", type=float, help="frequency threshold t (default 1e-6)")
    ap.add_argument(
        "--freq-rule", dest="rule", choices=RULES, help=f"P rule (frequency; default {DEFAULT_RULE})"
    )
    ap.add_argument("--missing", choices=list(MISSING), help="words absent from the table (frequency)")
    ap.add_argument("--fill", choices=FILLS, help="word selection (frequency, syntax)")
    ap.add_argument("--tagger", choices=("auto", "perceptron", "brill"), help="POS tagger (syntax)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input", default="-", help="captions, one per line ('-' = stdin)")
    ap.add_argument("--batch-size", type=int, default=1024)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        fn = get_masker(args.masker)
        k = check_k(args.tokens)
        flags = {n: f"--{n}" for n in ("table", "threshold", "missing", "fill", "tagger")}
        flags["rule"] = "--freq-rule"
        opts = {n: getattr(args, n) for n in flags if getattr(args, n) is not None}
        for name in sorted(set(opts) - set(masker_options(fn))):
            raise ValueError(f"{flags[name]} does not apply to the {args.masker!r} masker")
        if fn is frequency:
            opts["table"] = _resolve_table(opts.get("table"))
        captions = read_lines(args.input, "clipf mask")
        rng = np.random.default_rng(args.seed)
        size = max(1, args.batch_size)
        for s in range(0, len(captions), size):
            batch = captions[s : s + size]
            for caption, row in zip(batch, fn(batch, k, rng, **opts).tolist(), strict=True):
                rec = {"caption": caption, "kept": decode(row), "ids": row}
                sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
    except (ValueError, TypeError, OSError, LookupError) as e:
        print(f"clipf mask: error: {e}", file=sys.stderr)
        return 2
    return 0
