"""Alt-text of the ``concepts`` world: phrase-structured web captions around one concept name.

A caption is built from *phrases*, never word by word: an optional boilerplate prefix ("close-up of",
"stock photo of", "image may contain:"), one of several caption shapes around the object's noun phrase
(``[det] [adjective] [size] [colour] [pattern] NAME [with accent stripes]``), optional context phrases
("for sale", "in my room", "i love this"), a background phrase ("on a white background", "against a
blue sky"), a boilerplate suffix ("royalty free") and hashtags ("#flamingo #nature"). What is said of
the look (colour, pattern, size, background) is a random subset, as in real alt-text; the name is said
in most captions (``mention.name``), sometimes wrongly (``noise``: another concept's name), sometimes
never (``unrelated``). About ``rare_words`` rare English words per caption (names, places, jargon from
the bundled wordfreq list) sit in phrase slots ("photo by ...", "#...", "... collection"): they are as
rare as the concept names but say nothing about the image.

Each word is a *unit* ``(word, tag, grounded)`` as in :mod:`clipf.world.captions`: the word exactly as
open_clip's tokenizer splits text, its universal POS tag, and what it names (``name``, ``color``,
``pattern``, ``size``, ``background``) or None; ``words_of(caption) == [w for w, _, _ in units]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import cache

import numpy as np

from clipf.world import lexicon as L
from clipf.world.captions import words_of
from clipf.world.scene import Draws, as_draws

Unit = tuple[str, str, str | None]
_Piece = tuple[str, str, str | None, bool]  # a unit + "a space before it"
_TOKEN = re.compile(r"\s+|[a-z]+|\d|[^\sa-z\d]+")

# ---------------------------------------------------------------------------------------- phrases
# Most common first: each list is drawn with Zipf weights (1 / rank), as web boilerplate is a few
# phrases used everywhere and a tail of rarer ones.
PREFIXES = (
    "stock photo of",
    "close-up of",
    "a photo of",
    "image may contain:",
    "picture of",
    "closeup of",
    "an image of",
    "illustration of",
    "macro shot of",
    "a picture of",
    "this is",
    "here is",
    "top view of",
    "detail of",
)
SUFFIXES = (
    "stock photo",
    "royalty free",
    "stock image",
    "high resolution",
    "free stock photo",
    "hd wallpaper",
    "stock illustration",
    "close up",
    "high quality",
    "photography",
    "digital art",
    "art print",
)
CONTEXT = (
    "for sale",
    "i love this",
    "in the garden",
    "at the zoo",
    "for kids",
    "at home",
    "with copy space",
    "on display",
    "my new favorite",
    "this is one of my favorites",
    "in my room",
    "free shipping",
    "great gift idea",
    "top view",
    "one of the most popular",
    "side view",
    "so cute",
    "just arrived",
    "made by hand",
    "from our shop",
    "the best thing about it",
    "in stock now",
    "buy now",
    "click to enlarge",
    "for your home",
    "that you can use every day",
    "in the city",
    "at the park",
    "it is a lot of fun",
    "in the kitchen",
    "near the window",
    "last summer",
    "this week",
    "how to make your own",
    "all rights reserved",
    "best price",
    "a great way to start the day",
    "new design",
    "see more",
    "for the whole family",
    "view full size",
    "one of a kind",
    "what do you think",
    "when you need it",
    "from my collection",
    "at the museum",
    "we are so happy with it",
    "in the morning",
    "on the way home",
    "for the first time",
    "a gift for him",
    "a gift for her",
    "back to school",
    "happy birthday",
    "good morning",
    "thank you so much",
    "have a nice day",
    "ready to ship",
    "best seller",
    "sold out",
    "coming soon",
    "on sale",
    "shop now",
    "learn more",
    "read more",
    "more info",
    "photo credit",
    "image source",
    "share this",
    "new collection",
    "as seen on tv",
    "in the middle of the night",
    "on the other side",
    "as part of the series",
    "all you need to know",
    "the story of my life",
)
# caption shapes that open with a phrase before the noun phrase: "look at this", ...
OPENERS = (
    "look at this",
    "i saw",
    "we found",
    "here is",
    "check out this",
    "there is",
    "i made",
    "my",
)
PRODUCTS = ("print", "poster", "sticker", "toy", "card", "ornament", "design", "figure", "pattern", "decal")
# slots for the rare filler words: "{} collection", "photo by {}" ...
RARE_SLOTS = ("photo by {}", "{} collection", "from {}", "by {}", "{} edition", "via {}", "#{}")
ADJECTIVES = (
    "beautiful",
    "cute",
    "old",
    "vintage",
    "new",
    "wild",
    "fresh",
    "handmade",
    "funny",
    "lovely",
    "happy",
    "cool",
    "amazing",
    "real",
    "single",
    "young",
)
GENERIC = ("object", "thing", "item", "one")  # the noun when the name is not said
HASHTAGS = (
    "nature photography art instagood love photooftheday beautiful design picoftheday cute style "
    "home shop gift kids"
).split()

# look attributes: how a caption says them ({a}: the accent colour)
SIZE_WORDS = {"small": ("small", "little", "tiny", "mini"), "large": ("large", "big", "huge", "giant")}
PATTERN_ADJ = {  # before the name
    "striped": ("striped", "{a} striped", "stripy"),
    "two_tone": ("two-tone", "two-colored", "half {a}"),
    "outlined": ("outlined", "{a}-edged", "{a} rimmed"),
}
PATTERN_PP = {  # after the name
    "striped": ("with {a} stripes", "with stripes"),
    "two_tone": ("in two colors", "with a {a} half"),
    "outlined": ("with a {a} border", "outlined in {a}", "with a {a} rim"),
}

# ------------------------------------------------------------------------------------- gold tags
_TAGS = {
    "DET": "a an the this my our some every whole all",
    "ADP": "of on in at for with from by to near via against as about",
    "CCONJ": "and or",
    "PRON": "i we you what it him her that your",
    "AUX": "may is do are can have",
    "VERB": "contain love look saw found made buy click enlarge see think check arrived colored rimmed "
    "edged outlined isolated reserved use make start need know ship sold coming shop learn read share "
    "seen",
    "ADV": "here just so now out there how when much soon",
    "NUM": "two one",
    "ADJ": "close free high digital best great new first top side full cute stripy striped kind popular "
    "most happy nice good own other more",
    "NOUN": (
        "photo picture image closeup macro shot illustration view detail stock resolution wallpaper art "
        "print quality sale photography garden zoo kids home copy space display favorite room shipping gift "
        "idea hand shop buy price design size collection city park table window summer week rights way "
        "time lot fun museum morning favorites edition kitchen poster sticker toy card ornament figure pattern "
        "decal object thing item stripes border rim half colors tone background backdrop sky grass field "
        "nature instagood love photooftheday picoftheday style hd day family birthday morning school "
        "seller info credit source tv middle night series story life thing"
    ),
}
TAGS: dict[str, str] = {w: t for t, words in _TAGS.items() for w in words.split()}
TAGS.update({w: "ADJ" for w in ADJECTIVES})
TAGS.update({"free": "ADJ", "royalty": "NOUN", "up": "ADP", "all": "DET", "more": "ADJ", "now": "ADV"})


def tag_of(word: str) -> str:
    """Gold UPOS of a caption word (the world's own phrase words first, then the shapes lexicon)."""
    return TAGS.get(word) or L.tag_of(word)


def _phrase_words() -> set[str]:
    phrases = [*PREFIXES, *SUFFIXES, *CONTEXT, *OPENERS, *PRODUCTS, *ADJECTIVES, *GENERIC, *HASHTAGS]
    phrases += [p.format(a="") for ps in (*PATTERN_ADJ.values(), *PATTERN_PP.values()) for p in ps]
    phrases += [s.format("") for s in RARE_SLOTS]
    phrases += [p for _, _, ps in L.BACKGROUNDS.values() for p in ps]
    phrases += [w for ws in SIZE_WORDS.values() for w in ws]
    return {w for p in phrases for w in words_of(p) if w.isalpha()}


@cache
def caption_vocabulary() -> frozenset[str]:
    """Every word a concepts-world caption can use besides the concept names and the rare filler."""
    words = _phrase_words()
    for name, (_, syn) in L.COLORS.items():
        words |= {name, *syn}
    words |= set(L.grounded_vocabulary())
    return frozenset(words)


# ------------------------------------------------------------------------------------- assembling


def pieces(phrase: str, grounded: str | None = None, key: frozenset[str] | None = None) -> list[_Piece]:
    """A phrase as pieces, keeping where its spaces were ("close-up" stays glued); ``grounded`` labels
    every word, or only the words in ``key``."""
    out: list[_Piece] = []
    space = True
    for m in _TOKEN.finditer(phrase.lower()):
        w = m.group()
        if w.isspace():
            space = True
            continue
        g = grounded if key is None or w in key else None
        out.append((w, tag_of(w) if any(c.isalnum() for c in w) else "PUNCT", g, space))
        space = False
    return out


def render(ps: Sequence[_Piece], case: str = "lower") -> str:
    """The caption string: pieces joined with their spaces (none before ``, . : ...``), cased."""
    parts: list[str] = []
    for w, _, _, space in ps:
        if case == "title" and w.isalpha():
            w = w[0].upper() + w[1:]
        if parts and space and w not in (",", ".", ":", "...", "!", "?"):
            parts.append(" ")
        parts.append(w)
    text = "".join(parts)
    if case == "sentence" and text:
        text = text[0].upper() + text[1:]
    return text


def _zipf_pick(d: Draws, items: Sequence, s: float = 1.0):
    """An item of a most-common-first list, with probability proportional to 1 / rank^s."""
    return items[d.weighted(_zipf(len(items), s))]


@cache
def _zipf(n: int, s: float) -> tuple[float, ...]:
    return tuple(1.0 / (i + 1) ** s for i in range(n))


def _weighted(d: Draws, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    return keys[d.weighted([weights[k] for k in keys])]


@cache
def _rare_filler(
    lo: int, hi: int, exclude: frozenset[str]
) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    words, freqs, tags = L.filler_vocabulary()
    keep = [i for i in range(lo, min(hi, len(words))) if words[i] not in exclude]
    cdf = np.cumsum(np.asarray([freqs[i] for i in keep], dtype=np.float64))
    return tuple(words[i] for i in keep), tuple(tags[i] for i in keep), cdf / cdf[-1]


def rare_word(d: Draws, ccfg: Mapping, exclude: frozenset[str]) -> tuple[str, str]:
    """A rare English filler word (ranks ``rare_vocab`` [lo, hi) of the bundled list, by frequency)."""
    lo, hi = ccfg["rare_vocab"]
    words, tags, cdf = _rare_filler(lo, hi, exclude)
    i = min(int(np.searchsorted(cdf, d.u(), side="right")), len(words) - 1)
    return words[i], tags[i]


def _poisson(d: Draws, mean: float) -> int:
    k, p = 0, math.exp(-mean)
    u, cum = d.u(), p
    while u > cum and k < 50:
        k += 1
        p *= mean / k
        cum += p
    return k


def _n_words(ps: Sequence[_Piece]) -> int:
    return sum(1 for p in ps if p[1] not in ("PUNCT", "SYM"))


def _length(d: Draws, spec: Mapping) -> int:
    z = math.sqrt(-2.0 * math.log(max(d.u(), 1e-12))) * math.cos(2 * math.pi * d.u())
    return min(max(int(round(spec["median"] * math.exp(spec["sigma"] * z))), spec["min"]), spec["max"])


def _an(ps: list[_Piece], det: str) -> list[_Piece]:
    if not det:
        return ps
    if det == "a" and ps and ps[0][0][0] in "aeiou":
        det = "an"
    return [(det, "DET", None, True), *ps]


# ----------------------------------------------------------------------------------- the caption


def _said(d: Draws, look: Mapping, m: Mapping) -> dict[str, bool]:
    return {k: d.chance(m[k]) for k in ("color", "pattern", "size", "background")}


def _pattern_adj(d: Draws, look: Mapping) -> list[_Piece]:
    phrase = d.pick(PATTERN_ADJ[look["pattern"]]).format(a=look["accent"])
    return pieces(phrase, "pattern")


def _pattern_pp(d: Draws, look: Mapping) -> list[_Piece]:
    phrase = d.pick(PATTERN_PP[look["pattern"]]).format(a=look["accent"])
    return pieces(phrase, "pattern", frozenset({look["accent"], "stripes", "border", "rim", "half", "two"}))


def _color(d: Draws, color: str, syn: float) -> list[_Piece]:
    synonyms = L.COLORS[color][1]
    word = d.pick(synonyms) if synonyms and d.chance(syn) else color
    return [(word, "ADJ", "color", True)]


def noun_phrase(d: Draws, name: str | None, look: Mapping, said: Mapping, ccfg: Mapping) -> list[_Piece]:
    """``[det] [adjective] [size] [colour] [pattern] NAME [pattern phrase]``: what is said of the look
    in a random order of the usual kinds (the generic noun stands in when ``name`` is None)."""
    pre: list[_Piece] = []
    post: list[_Piece] = []
    if d.chance(ccfg["adjective"]):
        pre += pieces(_zipf_pick(d, ADJECTIVES))
    if said["size"]:
        pre += pieces(d.pick(SIZE_WORDS[look["size"]]), "size")
    if said["pattern"] and look["pattern"] != "solid" and d.chance(0.5):
        post = _pattern_pp(d, look)
        said = {**said, "pattern": False}
    if said["color"]:
        pre += _color(d, look["color"], ccfg["synonyms"])
    if said["pattern"] and look["pattern"] != "solid":
        pre += _pattern_adj(d, look)
    noun = [(name, "NOUN", "name", True)] if name else pieces(d.pick(GENERIC))
    det = _weighted(d, {"a": 0.45, "the": 0.2, "": 0.3, "this": 0.05})
    return _an(pre + noun, det) + post


def _hashtags(d: Draws, name: str | None, look: Mapping, ccfg: Mapping, exclude) -> list[_Piece]:
    out: list[_Piece] = []
    for _ in range(1 + d.below(ccfg["max_hashtags"])):
        r = d.u()
        if name and r < ccfg["hashtag_name"]:
            word, tag, g = name, "NOUN", "name"
        elif name and r < ccfg["hashtag_name"] + 0.1:
            word, tag, g = look["color"], "ADJ", "color"
        else:
            word = _zipf_pick(d, HASHTAGS)
            tag, g = tag_of(word), None
        out += [("#", "SYM", None, True), (word, tag, g, False)]
    return out


@cache
def _exclude(names: tuple[str, ...]) -> frozenset[str]:
    """Words the rare filler never uses: the names (and their plurals) and the caption vocabulary."""
    return frozenset(names) | {n + s for n in names for s in ("s", "es")} | caption_vocabulary()


def concept_caption(
    look: Mapping, rng, ccfg: Mapping, names: Sequence[str], cdf: np.ndarray
) -> tuple[str, list[Unit], dict]:
    """A web caption of one image of concept ``look`` (``name``, ``color``, ``pattern``, ``accent``,
    ``size``, ``background``). ``names`` / ``cdf``: every concept name and the prior's CDF (for a
    wrong name). -> (caption, units, info: target_words, unrelated, wrong)"""
    d = as_draws(rng)
    target = _length(d, ccfg["length"])
    unrelated = d.chance(ccfg["unrelated"])
    wrong = False
    name: str | None = None
    if not unrelated and d.chance(ccfg["mention"]["name"]):
        name = look["name"]
        if d.chance(ccfg["noise"]):
            other = names[min(int(np.searchsorted(cdf, d.u(), side="right")), len(names) - 1)]
            wrong, name = other != name, other
    said = (
        _said(d, look, ccfg["mention"])
        if not unrelated
        else dict.fromkeys(("color", "pattern", "size", "background"), False)
    )
    exclude = _exclude(tuple(names))
    bg = pieces(d.pick(L.BACKGROUNDS[look["background"]][2]), "background", L.BACKGROUND_WORDS)

    # the body: one of the caption shapes around the noun phrase
    body: list[_Piece] = []
    opened = False
    if not unrelated and (name or any(said.values())):
        shape = _weighted(d, ccfg["shapes"])
        np_ = noun_phrase(d, name, look, said, ccfg)
        if shape == "phrase":  # "a small pink flamingo on a white background"
            body = np_ + (bg if said["background"] else [])
        elif shape == "opener":  # "look at this cute flamingo"
            body = pieces(_zipf_pick(d, OPENERS)) + np_ + (bg if said["background"] else [])
            opened = True
        elif shape == "product" and name:  # "vintage flamingo print"
            body = [p for p in np_ if p[1] != "DET"] + pieces(_zipf_pick(d, PRODUCTS))
            if said["background"]:
                body += bg
        elif shape == "keywords" and name:  # "flamingo stock photo: pink, striped, white background"
            body = [(name, "NOUN", "name", True)] + pieces(d.pick(("stock photo:", "image of", "-")))
            words = [p for p in np_ if p[2] in ("color", "size", "pattern") and p[1] != "DET"]
            if said["background"]:
                words += [p for p in bg if p[2]]
            for i, p in enumerate(words):
                body += ([(",", "PUNCT", None, False)] if i else []) + [(p[0], p[1], p[2], True)]
        else:  # "the flamingo is pink" / "flamingo, pink, striped"
            noun = [(name, "NOUN", "name", True)] if name else pieces(d.pick(GENERIC))
            attrs = [p for p in np_ if p[2] in ("color", "size", "pattern")]
            if attrs and d.chance(0.5):
                body = _an(noun, "the") + pieces("is") + attrs
            else:
                body = list(noun)
                for p in attrs:
                    body += [(",", "PUNCT", None, False), (p[0], p[1], p[2], True)]
            if said["background"]:
                body += bg
    if body and not opened and d.chance(ccfg["prefix"]):
        body = pieces(_zipf_pick(d, PREFIXES)) + body
    suffix = pieces(_zipf_pick(d, SUFFIXES)) if d.chance(ccfg["suffix"]) else []
    tags = _hashtags(d, name, look, ccfg, exclude) if d.chance(ccfg["hashtags"]) else []

    # rare filler words in their slots, and context phrases up to the drawn length
    extras: list[list[_Piece]] = []
    for _ in range(_poisson(d, ccfg["rare_words"])):
        word, tag = rare_word(d, ccfg, exclude)
        slot = d.pick(RARE_SLOTS)
        ps = pieces(slot.format(word))
        extras.append([(w, tag if w == word else t, g, s) for w, t, g, s in ps])
    have = _n_words(body) + _n_words(suffix) + _n_words(tags) + sum(map(_n_words, extras))
    while have < target:
        ps = pieces(_zipf_pick(d, CONTEXT, 0.7))
        extras.append(ps)
        have += _n_words(ps)
    before = [e for e in extras if d.chance(ccfg["context_first"])]
    after = [e for e in extras if not any(e is b for b in before)]

    out: list[_Piece] = []
    segments = before + ([body] if body else []) + after
    for i, seg in enumerate(segments):
        if i and seg[0][1] not in ("PUNCT", "SYM"):
            sep = _weighted(d, ccfg["separators"])
            if sep != " ":
                out.append((sep, "PUNCT", None, sep not in (",", ".", ":")))
        out += seg
    if suffix:
        sep = d.pick((" - ", " | ", ", ", " "))
        if sep.strip():
            out.append((sep.strip(), "PUNCT", None, sep[0] == " "))
        out += suffix
    out += tags
    if d.chance(ccfg["ellipsis"]) and out and out[-1][1] not in ("PUNCT", "SYM"):
        out.append(("...", "PUNCT", None, False))
    out = _tidy(out)
    case = _weighted(d, ccfg["case"])
    caption = render(out, case)
    units = [(w, t, g) for w, t, g, _ in out]
    return caption, units, {"target_words": target, "unrelated": unrelated, "wrong": wrong}


def _tidy(ps: list[_Piece]) -> list[_Piece]:
    """No separator first, last, or next to another symbol (which would fuse into one symbol word)."""
    out: list[_Piece] = []
    for p in ps:
        if p[1] == "PUNCT" and p[0] != "...":
            if not out or out[-1][1] in ("PUNCT", "SYM"):
                continue
        if p[1] == "SYM" and out and out[-1][1] in ("PUNCT", "SYM") and not p[3]:
            continue
        out.append(p)
    while out and out[-1][1] == "PUNCT" and out[-1][0] != "...":
        out.pop()
    return out


# ----------------------------------------------------------------------------- clean descriptions


def clean_captions(look: Mapping, rng, n: int) -> list[str]:
    """``n`` clean descriptions of an image of concept ``look`` (the retrieval set's captions)."""
    d = as_draws(rng)
    name, color, size = look["name"], look["color"], look["size"]
    bg = L.BACKGROUNDS[look["background"]][2][0]
    pattern = "" if look["pattern"] == "solid" else PATTERN_ADJ[look["pattern"]][0] + " "
    with_ = (
        "" if look["pattern"] == "solid" else " " + PATTERN_PP[look["pattern"]][0].format(a=look["accent"])
    )
    pool = [
        f"a photo of a {name}.",
        f"a {size} {color} {pattern}{name} {bg}.",
        f"a {color} {name}{with_}.",
        f"the {name} is {color}.",
        f"a {pattern}{name} {bg}.",
        f"close-up of a {size} {name}.",
        f"{name}, {color}, {bg}",
    ]
    pool = [re.sub(r"\ba ([aeiou])", r"an \1", p) for p in pool]
    first, rest = pool[:2], pool[2:]
    order = sorted(range(len(rest)), key=lambda _: d.u())
    out = first + [rest[i] for i in order]
    while len(out) < n:
        out += out[: n - len(out)]
    return out[:n]
