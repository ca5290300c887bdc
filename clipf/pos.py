"""Part-of-speech tags for syntax masking, offline out of the box.

Two taggers, never downloading anything:

- ``perceptron`` — NLTK's averaged perceptron (Penn Treebank tags, what CLIPA/open_clip use), when its
  data is already installed (``nltk.data.find``; install it yourself with
  ``python -m nltk.downloader averaged_perceptron_tagger_eng``).
- ``brill`` — the Brill tagger trained on UD English-EWT shipped inside the ``brill-postagger`` package
  (universal POS tags). Its wrapper class calls ``nltk.download`` on construction, so we unpickle its
  ``en_ewt-ud-brill.pkl`` directly and tag words we split ourselves.

``tagger="auto"`` picks the perceptron when its data is present, otherwise Brill; :func:`tagger_name`
says which one runs. Tags are cached per word sequence.
"""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

TAGGERS = ("auto", "perceptron", "brill")
_PERCEPTRON_DATA = ("taggers/averaged_perceptron_tagger_eng/", "taggers/averaged_perceptron_tagger/")
_BRILL_MODEL = "en_ewt-ud-brill.pkl"


def _perceptron_data() -> str | None:
    import nltk

    for resource in _PERCEPTRON_DATA:
        try:
            nltk.data.find(resource)
            return resource
        except LookupError:
            continue
    return None


def brill_model_path() -> Path | None:
    """Path of the bundled English Brill model, or None when ``brill-postagger`` is not installed."""
    spec = importlib.util.find_spec("brill_postaggers")  # locate without importing its wrapper
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _BRILL_MODEL
    return path if path.exists() else None


@cache
def tagger_name(tagger: str = "auto") -> str:
    """Which tagger ``tagger`` resolves to here ("perceptron" or "brill"); raises if it is unavailable.

    Resolved once per process (``tagger_name.cache_clear()`` after installing NLTK data).
    """
    if tagger not in TAGGERS:
        raise ValueError(f"tagger={tagger!r} is not one of {', '.join(TAGGERS)}")
    if tagger in ("auto", "perceptron") and _perceptron_data():
        return "perceptron"
    if tagger == "perceptron":
        raise LookupError(
            "NLTK's perceptron tagger data is not installed (clipf never downloads it); run "
            "`python -m nltk.downloader averaged_perceptron_tagger_eng` or use tagger='brill'"
        )
    if brill_model_path() is None:
        raise LookupError(
            f"no POS tagger available: NLTK perceptron data missing and brill-postagger's {_BRILL_MODEL} "
            "not found (pip install brill-postagger)"
        )
    return "brill"


@cache
def _load(name: str) -> Any:
    if name == "perceptron":
        from nltk.tag.perceptron import PerceptronTagger

        if _perceptron_data() == _PERCEPTRON_DATA[0]:
            return PerceptronTagger(lang="eng")
        return PerceptronTagger()
    with open(brill_model_path(), "rb") as f:  # the package's own file, installed with it
        return pickle.load(f)


@lru_cache(maxsize=1 << 16)
def _tag(name: str, words: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(t for _, t in _load(name).tag(list(words)))


def tag(words: Sequence[str], tagger: str = "auto") -> tuple[str, ...]:
    """POS tag of each word (Penn Treebank for the perceptron, universal POS for Brill)."""
    if not words:
        return ()
    return _tag(tagger_name(tagger), tuple(words))


_UPOS_PRIORITY = {"NOUN": 1, "PROPN": 1, "ADJ": 2, "VERB": 3, "AUX": 3}


def priority(tag: str) -> int:
    """CLIPA's keep priority: 1 noun, 2 adjective, 3 verb, 4 anything else (PTB or UPOS tags).

    UPOS ``AUX`` counts as a verb because the Penn tagset CLIPA used tags auxiliaries ``VB*``.
    """
    if tag in _UPOS_PRIORITY:
        return _UPOS_PRIORITY[tag]
    if tag.startswith("NN"):
        return 1
    if tag.startswith("JJ"):
        return 2
    if tag.startswith("VB"):
        return 3
    return 4
