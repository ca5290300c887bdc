"""Caption text as the maskers and the frequency counter see it — torch-free.

One place for open_clip's text pipeline up to the BPE: cleaning (ftfy, HTML unescape, whitespace
collapse, lower case), the pre-tokenization regex that splits *words*, the byte-level unicode form of a
word (the form the authors' probability files use as keys) and a word -> BPE ids cache.

Importing this module, cleaning and splitting do not import torch or open_clip, so ``clipf freq build``
counts millions of captions on a CPU box without them. Only :func:`word_ids` / :func:`encode_words` (BPE)
load open_clip's ``SimpleTokenizer`` (and with it torch), on first use. The cleaning, the regex and the
byte table are open_clip's (checked against it in ``tests/test_text.py``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

import ftfy
import regex

SOT, EOT = 49406, 49407  # open_clip's <start_of_text>, <end_of_text>
MAX_WORD_CHARS = 256  # longer "words" are BPE-encoded in pieces (open_clip's BPE is quadratic in length)

# open_clip.tokenizer.SimpleTokenizer.pat (with its two special tokens), used on non-ASCII text.
PATTERN = r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
WORD_PAT = regex.compile(PATTERN, regex.IGNORECASE)
# On cleaned lower-case ASCII text (single spaces: the only whitespace left) open_clip's pattern is
# exactly this stdlib pattern, which runs ~2x faster than the `regex` module's Unicode classes.
_ASCII_PAT = re.compile(r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^ a-z0-9]+")
_WS = re.compile(r"\s+")


def basic_clean(text: str) -> str:
    """open_clip's ``basic_clean``: ftfy, HTML unescape twice, strip."""
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def whitespace_clean(text: str) -> str:
    """open_clip's ``whitespace_clean``: collapse whitespace runs to one space, strip."""
    return _WS.sub(" ", text).strip()


def clean_cased(text: str) -> str:
    """open_clip's cleaning (ftfy, HTML unescape, whitespace collapse) without the lower-casing.

    Printable ASCII text without ``&`` skips ftfy and HTML unescaping, which leave such text unchanged
    (none of their fixes applies: no mojibake, entities, control characters, wide forms or line breaks
    to fix); the test suite checks this against open_clip's cleaning.
    """
    if text.isascii() and text.isprintable() and "&" not in text:
        return " ".join(text.split())
    return whitespace_clean(basic_clean(text))


def clean(text: str) -> str:
    """open_clip's default (``clean='lower'``) caption cleaning."""
    return clean_cased(text).lower()


def find_words(cleaned: str) -> list[str]:
    """open_clip's pre-tokenization regex on already cleaned, lower-cased text."""
    return (_ASCII_PAT if cleaned.isascii() else WORD_PAT).findall(cleaned)


def split_words(caption: str) -> list[str]:
    """Words of a caption as the CLIPF reference defines them: cleaned, then open_clip's regex."""
    return find_words(clean(caption))


def split_cased(caption: str) -> list[str]:
    """The same words before lower-casing (what a POS tagger wants)."""
    return WORD_PAT.findall(clean_cased(caption))


@cache
def byte_encoder() -> dict[int, str]:
    """GPT-2 / open_clip ``bytes_to_unicode``: byte -> printable unicode character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def byte_form(word: str) -> str:
    """A word in the tokenizer's byte-level unicode form (identical for ASCII words)."""
    enc = byte_encoder()
    return "".join(enc[b] for b in word.encode("utf-8", "replace"))


# --------------------------------------------------------------------------- BPE (loads open_clip)
_WORD_IDS: dict[str, tuple[int, ...]] = {}
_WORD_IDS_MAX = 1 << 20


@cache
def bpe_tokenizer() -> Any:
    """open_clip's shared ``SimpleTokenizer`` (imported on first use: it imports torch)."""
    from open_clip import tokenizer as oc

    return getattr(oc, "_tokenizer", None) or oc.SimpleTokenizer()


def _bpe_ids(word: str) -> tuple[int, ...]:
    if len(word) > MAX_WORD_CHARS:  # pathological input: encode in pieces, don't cache
        pieces = range(0, len(word), MAX_WORD_CHARS)
        return tuple(t for i in pieces for t in _bpe_ids(word[i : i + MAX_WORD_CHARS]))
    tok = bpe_tokenizer()
    ids = tuple(tok.encoder[t] for t in tok.bpe(byte_form(word)).split(" "))
    if len(_WORD_IDS) >= _WORD_IDS_MAX:
        _WORD_IDS.clear()
    _WORD_IDS[word] = ids
    return ids


def word_ids(word: str) -> tuple[int, ...]:
    """BPE ids of one word (cached)."""
    return _WORD_IDS.get(word) or _bpe_ids(word)


def encode_words(caption: str) -> tuple[list[str], list[tuple[int, ...]]]:
    """Words of a caption and each word's BPE ids; concatenated they equal open_clip's ``encode``."""
    words = split_words(caption)
    get = _WORD_IDS.get
    return words, [get(w) or _bpe_ids(w) for w in words]


def decode(ids: Sequence[int]) -> str:
    """Text of BPE ids (start/end/pad tokens dropped)."""
    return bpe_tokenizer().decode([int(t) for t in ids if int(t) not in (0, SOT, EOT)]).strip()
