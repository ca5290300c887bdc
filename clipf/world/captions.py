"""Captions: web-like alt-text for training pairs, clean descriptions for the retrieval set.

A caption is built as a list of *units* ``(word, tag, grounded)``: one word exactly as
:func:`words_of` (and so open_clip's tokenizer) splits text, its gold universal POS tag, and what in the
scene it names (``"shape"``, ``"color"``, ``"size"``, ``"position"`` of the main object;
``"extra.shape"``, ``"extra.color"``, ``"extra.count"``, ``"extra.position"``; ``"background"``) or None.
:func:`render_units` joins units into the caption string (punctuation glued, web casing), and
``words_of(caption) == [w for w, _, _ in units]`` always holds.

A web caption (:func:`web_caption`) mixes, in a random order:

- the description of the main object: a random subset of its shape / colour / size / position said in
  one of several phrasings ("a small red star on the left", "star in red", "on the right, a big ring",
  "heart (pink)", ...), sometimes with a rarer synonym ("crimson", "disc"), sometimes wrong (web noise);
- maybe the extra objects ("with two small blue stars") and the background ("isolated on white");
- filler words drawn from real English frequencies (the bundled wordfreq list): common words from the
  top ``vocab_size`` and about ``rare_words`` per caption from the ranks beyond (names, places,
  jargon), so function words dominate, the rank-frequency curve is Zipfian, and -- as on the web --
  ungrounded text is mostly a few frequent word types while the grounded words spread over many
  (synonyms);
- boilerplate: a prefix ("stock photo of"), a suffix ("royalty free"), hashtags, a trailing "..." --
  the common phrases far more often than the rare ones (Zipf weights).

Its length in words (punctuation not counted) follows a clipped lognormal (``caption.length``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import cache

import numpy as np

from clipf.world import lexicon as L
from clipf.world.scene import Draws, as_draws

Unit = tuple[str, str, str | None]

_WORD = re.compile(r"[a-z]+|\d|[^\sa-z\d]+")
_GLUE_LEFT = frozenset({",", ".", ":", "...", ")", "!", "?"})  # no space before
_GLUE_RIGHT = frozenset({"(", "#"})  # no space after
_SEPARATORS = ((" ", 0.45), (",", 0.25), ("-", 0.1), (".", 0.1), ("|", 0.05), (":", 0.05))
_DETS = (("a", 0.45), ("the", 0.25), ("one", 0.05), ("", 0.25))
# phrasings of the main object: 0 "a small red star", 1 "a star in red", 2 "a red colored star",
# 3 "star, small, red", 4 "small star (red)"
_FORMS = (0.5, 0.15, 0.08, 0.12, 0.15)


def words_of(text: str) -> list[str]:
    """Lower-cased words as open_clip's tokenizer splits ASCII text (letter runs, digits, symbol runs)."""
    return _WORD.findall(text.lower())


def _units(phrase: str, grounded: str | None = None, key_words: frozenset[str] | None = None) -> list[Unit]:
    """Units of a space-separated phrase; ``grounded`` labels every word, or only ``key_words``."""
    out = []
    for w in phrase.split():
        g = grounded if key_words is None or w in key_words else None
        out.append((w, L.tag_of(w), g))
    return out


def _weighted(d: Draws, pairs):
    return pairs[d.weighted([w for _, w in pairs])][0]


def _article(units: list[Unit], det: str) -> list[Unit]:
    """``det`` before the phrase, "a" becoming "an" before a vowel."""
    if not det:
        return units
    if det == "a" and units and units[0][0][0] in "aeiou":
        det = "an"
    return [(det, "DET", None), *units]


# ------------------------------------------------------------------------------------- filler words


@cache
def _filler(lo: int, hi: int) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """Filler words of English frequency ranks [lo, hi) (grounded words left out) and their CDF."""
    words, freqs, tags = L.filler_vocabulary()
    grounded = L.grounded_vocabulary()
    keep = [i for i in range(lo, min(hi, len(words))) if words[i] not in grounded]
    cdf = np.cumsum(np.asarray([freqs[i] for i in keep], dtype=np.float64))
    return tuple(words[i] for i in keep), tuple(tags[i] for i in keep), cdf / cdf[-1]


def _draw(d: Draws, n: int, lo: int, hi: int) -> list[Unit]:
    words, tags, cdf = _filler(lo, hi)
    idx = np.minimum(np.searchsorted(cdf, d.rng.random(n), side="right"), len(words) - 1).tolist()
    return [(words[i], tags[i], None) for i in idx]


def _poisson(d: Draws, mean: float) -> int:
    k, p = 0, math.exp(-mean)
    u, cum = d.u(), p
    while u > cum and k < 100:
        k += 1
        p *= mean / k
        cum += p
    return k


def filler_words(d: Draws, n: int, ccfg: Mapping) -> list[Unit]:
    """``n`` filler words: common ones by English frequency among the top ``vocab_size`` words, and
    about ``rare_words`` rare ones (ranks ``vocab_size``..``rare_vocab``, by frequency) among them."""
    if n <= 0:
        return []
    lo, hi = ccfg["vocab_size"], ccfg["rare_vocab"]
    n_rare = min(n, _poisson(d, ccfg["rare_words"])) if hi > lo and ccfg["rare_words"] else 0
    words = _draw(d, n - n_rare, 0, lo)
    for unit in _draw(d, n_rare, lo, hi) if n_rare else []:
        words.insert(d.below(len(words) + 1), unit)
    return words


def zipf_pick(d: Draws, items: Sequence):
    """An item of a most-common-first list, with probability proportional to 1 / rank."""
    return items[d.weighted(_zipf_weights(len(items)))]


@cache
def _zipf_weights(n: int) -> tuple[float, ...]:
    return tuple(1.0 / (i + 1) for i in range(n))


# --------------------------------------------------------------------------------- what is said


def _say(d: Draws, kind: str, value: str, ccfg: Mapping, scfg: Mapping) -> tuple[str, bool]:
    """The value of an attribute as said: maybe wrong (``noise``), maybe a synonym. -> (value, wrong)"""
    wrong = False
    if d.chance(ccfg["noise"]):
        pool = [
            v
            for v in scfg[
                {"color": "colors", "shape": "shapes", "size": "sizes", "position": "positions"}[kind]
            ]
            if v != value
        ]
        if pool:
            value, wrong = d.pick(pool), True
    return value, wrong


def _color_word(d: Draws, color: str, syn: float) -> str:
    synonyms = L.COLORS[color][1]
    return d.pick(synonyms) if synonyms and d.chance(syn) else color


def _shape_word(d: Draws, shape: str, syn: float, plural: bool = False) -> str:
    plural_form, synonyms = L.SHAPES[shape]
    if synonyms and d.chance(syn):
        one, many = d.pick(synonyms)
        return many if plural else one
    return plural_form if plural else shape


def _size_word(d: Draws, size: str, syn: float) -> str:
    words = L.SIZES[size][1]
    return d.pick(words[1:]) if len(words) > 1 and d.chance(syn) else words[0]


def _position_units(d: Draws, position: str, label: str = "position") -> list[Unit]:
    return _units(d.pick(L.POSITIONS[position][1]), label, L.POSITION_WORDS)


def describe_main(d: Draws, obj: Mapping, ccfg: Mapping, scfg: Mapping, wrong: list[str]) -> list[Unit]:
    """The main object as a web caption says it (a random subset of its attributes, random phrasing)."""
    m, syn = ccfg["mention"], ccfg["synonyms"]
    said = {k: d.chance(m[k]) for k in ("shape", "color", "size", "position")}
    vals = {}
    for k in ("shape", "color", "size", "position"):
        if said[k]:
            vals[k], bad = _say(d, k, obj[k], ccfg, scfg)
            if bad:
                wrong.append(k)
    shape = [(_shape_word(d, vals["shape"], syn), "NOUN", "shape")] if "shape" in vals else []
    if not shape and vals and d.chance(ccfg["generic_noun"]):
        shape = [(d.pick(L.GENERIC_NOUNS), "NOUN", None)]
    color = [(_color_word(d, vals["color"], syn), "ADJ", "color")] if "color" in vals else []
    size = [(_size_word(d, vals["size"], syn), "ADJ", "size")] if "size" in vals else []
    det = _weighted(d, _DETS)
    if shape:
        form = d.weighted(_FORMS)
        if form == 1 and color:  # "a big star in red"
            core = _article(size + shape, det) + [("in", "ADP", None)] + color
        elif form == 2 and color:  # "a red colored star"
            core = _article(size + color + [("colored", "VERB", None)] + shape, det)
        elif form == 3 and (color or size):  # "star, small, red"
            core = list(shape)
            for part in (size, color):
                if part:
                    core += [(",", "PUNCT", None), *part]
        elif form == 4 and color:  # "small star (red)"
            core = _article(size + shape, det) + [("(", "PUNCT", None), *color, (")", "PUNCT", None)]
        else:  # "a small red star"
            core = _article(size + color + shape, det)
    else:  # adjectives alone, tag-like: "red, small"
        core = color + ([(",", "PUNCT", None)] if color and size else []) + size
    if "position" in vals:
        where = _position_units(d, vals["position"])
        if core and d.chance(0.3):  # "on the left, a red star"
            core = where + [(",", "PUNCT", None)] + core
        else:
            core = core + where
    return core


def describe_extras(d: Draws, extras: Sequence[Mapping], ccfg: Mapping, scfg: Mapping) -> list[Unit]:
    """The extra objects: counted when they are one kind ("two small blue stars"), else listed."""
    syn = ccfg["synonyms"]
    out = [(w, L.tag_of(w), None) for w in d.pick(L.CONNECTORS).split()]
    kinds = {(o["shape"], o["color"]) for o in extras}
    if len(extras) > 1 and len(kinds) == 1:
        shape, color = next(iter(kinds))
        count = _units(d.pick(L.COUNTS[min(len(extras), 3)]), "extra.count", L.COUNT_WORDS)
        small = [("small", "ADJ", None)] if d.chance(0.3) else []
        out += count + small
        out += [(_color_word(d, color, syn), "ADJ", "extra.color")]
        out += [(_shape_word(d, shape, syn, plural=True), "NOUN", "extra.shape")]
        return out
    for i, o in enumerate(extras):
        if i:
            out.append(("and", "CCONJ", None))
        phrase = [
            (_color_word(d, o["color"], syn), "ADJ", "extra.color"),
            (_shape_word(d, o["shape"], syn), "NOUN", "extra.shape"),
        ]
        out += _article(phrase, "a")
        if " " in o["position"] and d.chance(0.3):  # a corner: "in the top left corner"
            out += [("in", "ADP", None), ("the", "DET", None)]
            out += [(w, "NOUN", "extra.position") for w in o["position"].split()]
            out += [("corner", "NOUN", None)]
    return out


def describe_background(d: Draws, background: str) -> list[Unit]:
    return _units(d.pick(L.BACKGROUNDS[background][2]), "background", L.BACKGROUND_WORDS)


# ------------------------------------------------------------------------------------- assembling


def render_units(units: Sequence[Unit], case: str = "lower") -> str:
    """Join units into a caption: punctuation glued, ``case`` = lower | sentence | title."""
    parts: list[str] = []
    prev = None
    for word, _, _ in units:
        if case == "title" and word.isalpha():
            word = word[0].upper() + word[1:]
        if parts and word not in _GLUE_LEFT and prev not in _GLUE_RIGHT:
            parts.append(" ")
        parts.append(word)
        prev = word
    text = "".join(parts)
    if case == "sentence" and text:
        text = text[0].upper() + text[1:]
    return text


def _tidy(units: list[Unit]) -> list[Unit]:
    """Drop punctuation that would fuse with its neighbour into one symbol run ("),", ")..."), doubled
    separators (", -"), and separators opening or closing the caption."""
    out: list[Unit] = []
    for u in units:
        if u[1] in ("PUNCT", "SYM"):
            opener = u[0] in _GLUE_RIGHT
            if not out:
                if not opener:
                    continue
            elif out[-1][1] in ("PUNCT", "SYM"):
                prev = out[-1][0]
                if u[0] in _GLUE_LEFT or prev in _GLUE_RIGHT or (prev != ")" and not opener):
                    continue
        out.append(u)
    while out and out[-1][1] in ("PUNCT", "SYM") and out[-1][0] not in (")", "...", "."):
        out.pop()
    return out


def _n_words(units: Sequence[Unit]) -> int:
    return sum(1 for u in units if u[1] not in ("PUNCT", "SYM"))


def _length(d: Draws, spec: Mapping) -> int:
    # lognormal via two uniforms (Box-Muller), clipped
    z = math.sqrt(-2.0 * math.log(max(d.u(), 1e-12))) * math.cos(2 * math.pi * d.u())
    n = int(round(spec["median"] * math.exp(spec["sigma"] * z)))
    return min(max(n, spec["min"]), spec["max"])


def web_caption(scene: Mapping, rng, cfg: Mapping) -> tuple[str, list[Unit], dict]:
    """A web-like caption of ``scene`` (``cfg``: the full world config). -> (caption, units, info)

    ``info``: ``target_words`` (the drawn length), ``unrelated`` (says nothing of the image), ``wrong``
    (attributes of the main object said wrongly).
    """
    d = as_draws(rng)
    c, s = cfg["caption"], cfg["scene"]
    main, extras = scene["objects"][0], scene["objects"][1:]
    target = _length(d, c["length"])
    unrelated = d.chance(c["unrelated"])
    wrong: list[str] = []

    prefix = _units(zipf_pick(d, L.PREFIXES)) if d.chance(c["prefix"]) else []
    blocks: list[list[Unit]] = []  # grounded blocks
    if not unrelated:
        desc = describe_main(d, main, c, s, wrong)
        if extras and d.chance(c["mention"]["extras"]):
            desc = desc + describe_extras(d, extras, c, s)
        if desc:
            blocks.append(desc)
        if d.chance(c["mention"]["background"]):
            bg = describe_background(d, scene["background"])
            if blocks and d.chance(0.5):
                blocks[0] = blocks[0] + bg
            else:
                blocks.append(bg)
    suffix = _units(zipf_pick(d, L.SUFFIXES)) if d.chance(c["suffix"]) else []
    tags: list[Unit] = []
    if d.chance(c["hashtags"]):
        for _ in range(1 + d.below(c["max_hashtags"])):
            if not unrelated and d.chance(c["hashtag_grounded"]):
                which = d.pick(("color", "shape"))
                word = main["color"] if which == "color" else main["shape"]
                tags += [("#", "SYM", None), (word, L.tag_of(word), which)]
            else:
                word = zipf_pick(d, L.HASHTAGS)
                tags += [("#", "SYM", None), (word, L.tag_of(word), None)]

    fixed = _n_words(prefix) + sum(map(_n_words, blocks)) + _n_words(suffix) + _n_words(tags)
    for part in ("tags", "suffix", "prefix"):  # too long already: drop boilerplate first
        if fixed <= c["length"]["max"]:
            break
        n = _n_words({"tags": tags, "suffix": suffix, "prefix": prefix}[part])
        fixed -= n
        if part == "tags":
            tags = []
        elif part == "suffix":
            suffix = []
        else:
            prefix = []
    n_filler = max(0, target - fixed)
    lo, hi = c["filler_chunks"]
    n_chunks = min(n_filler, lo + d.below(hi - lo + 1))
    chunks: list[list[Unit]] = []
    if n_chunks:
        cuts = sorted({1 + d.below(n_filler - 1) for _ in range(n_chunks - 1)} if n_filler > 1 else set())
        bounds = [0, *cuts, n_filler]
        words = filler_words(d, n_filler, c)
        chunks = [words[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]

    middle = chunks + blocks
    order = sorted(range(len(middle)), key=lambda _: d.u())
    middle = [middle[i] for i in order]
    if blocks and d.chance(c["grounded_first"]):  # the description right after the prefix
        first = next(i for i, seg in enumerate(middle) if seg is blocks[0])
        middle.insert(0, middle.pop(first))

    units: list[Unit] = list(prefix)
    for i, seg in enumerate(middle):
        if i:
            sep = _weighted(d, _SEPARATORS)
            if sep != " ":
                units.append((sep, "PUNCT", None))
        units += seg
    if suffix:
        sep = d.pick(("-", "|", ",", " "))
        if sep != " ":
            units.append((sep, "PUNCT", None))
        units += suffix
    units += tags
    if d.chance(c["ellipsis"]):
        units.append(("...", "PUNCT", None))
    elif d.chance(0.3):
        units.append((".", "PUNCT", None))
    units = _tidy(units)
    case = _weighted(d, list(c["case"].items()))
    caption = render_units(units, case)
    return caption, units, {"target_words": target, "unrelated": unrelated, "wrong": wrong}


# ----------------------------------------------------------------------------- clean descriptions


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def clean_captions(scene: Mapping, rng, n: int) -> list[str]:
    """``n`` distinct-as-possible clean descriptions of a scene (the retrieval set's captions)."""
    d = as_draws(rng)
    o = scene["objects"][0]
    shape, color, size, pos = o["shape"], o["color"], o["size"], o["position"]
    where = L.POSITIONS[pos][1][0]
    bg = L.BACKGROUNDS[scene["background"]][2][0]
    extras = scene["objects"][1:]
    if extras:
        kinds = {(e["shape"], e["color"]) for e in extras}
        if len(extras) > 1 and len(kinds) == 1:
            sh, co = next(iter(kinds))
            others = f"{L.COUNTS[min(len(extras), 3)][0]} small {co} {L.SHAPES[sh][0]}"
        else:
            others = " and ".join(f"{_a(e['color'])} small {e['color']} {e['shape']}" for e in extras)
    pool = [
        f"{_a(size)} {size} {color} {shape} {where}.",
        f"{_a(color)} {color} {shape} {bg}.",
        f"a photo of {_a(color)} {color} {shape}.",
        f"the {shape} is {color} and {size}, {where}.",
        f"{_a(size)} {size} {shape} in {color} {bg}.",
        f"{_a(color)} {color} {shape} {where} {bg}.",
        f"{size} {color} {shape}",
    ]
    if extras:
        pool += [
            f"{_a(color)} {color} {shape} with {others}.",
            f"{_a(size)} {size} {color} {shape} and {others}.",
        ]
    first = [pool[0], pool[-2] if extras else pool[1]]
    rest = [p for p in pool if p not in first]
    order = sorted(range(len(rest)), key=lambda _: d.u())
    out = first + [rest[i] for i in order]
    while len(out) < n:
        out += out[: n - len(out)]
    return out[:n]
