"""What the world is made of: shapes, colours, sizes, positions, backgrounds, and the words for them.

This module is the world's *content* (names, RGB values, geometry, phrasings, boilerplate, the POS of
every template word). The *knobs* (which of these are used, and how often each kind of word is said)
are in ``params.yaml: world:`` (:mod:`clipf.world.config`).

Every phrase is a sequence of words exactly as :func:`clipf.world.captions.words_of` splits captions
(lower-case letter runs, single digits, symbol runs), so a caption's gold words and tags line up with
what the maskers see.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
VOCAB_FILE = DATA / "en_words.tsv"

# ------------------------------------------------------------------------------------------ colours
# name -> (RGB, synonyms). Chosen to stay distinct at 32 px after jitter and noise.
COLORS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "red": ((215, 35, 35), ("crimson", "scarlet", "ruby", "cherry")),
    "orange": ((250, 135, 15), ("tangerine", "amber", "apricot")),
    "yellow": ((245, 220, 35), ("golden", "lemon", "mustard")),
    "green": ((35, 155, 55), ("emerald", "lime", "jade")),
    "cyan": ((40, 200, 215), ("turquoise", "aqua", "teal")),
    "blue": ((35, 65, 215), ("cobalt", "sapphire", "azure")),
    "purple": ((135, 45, 180), ("violet", "plum", "amethyst")),
    "pink": ((250, 130, 195), ("fuchsia", "rosy", "blush")),
    "brown": ((125, 75, 30), ("chocolate", "chestnut", "coffee")),
    "black": ((18, 18, 18), ("ebony", "jet", "onyx")),
    "white": ((250, 250, 250), ("ivory", "snowy", "pearl")),
    "gray": ((135, 135, 135), ("grey", "silver", "ash")),
}

# ------------------------------------------------------------------------------------------- shapes
# name -> (plural, synonyms as (singular, plural)). Geometry lives in clipf.world.scene.
SHAPES: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "circle": ("circles", (("disc", "discs"), ("dot", "dots"), ("orb", "orbs"))),
    "square": ("squares", (("tile", "tiles"), ("block", "blocks"), ("box", "boxes"))),
    "triangle": ("triangles", (("wedge", "wedges"), ("delta", "deltas"))),
    "star": ("stars", (("pentagram", "pentagrams"), ("sparkle", "sparkles"))),
    "cross": ("crosses", (("plus", "pluses"), ("crucifix", "crucifixes"))),
    "heart": ("hearts", (("valentine", "valentines"),)),
    "diamond": ("diamonds", (("rhombus", "rhombuses"), ("lozenge", "lozenges"))),
    "ring": ("rings", (("donut", "donuts"), ("hoop", "hoops"), ("loop", "loops"))),
    "crescent": ("crescents", (("moon", "moons"), ("sickle", "sickles"))),
    "arrow": ("arrows", (("pointer", "pointers"), ("dart", "darts"))),
    "hexagon": ("hexagons", (("hex", "hexes"),)),
    "bar": ("bars", (("stripe", "stripes"), ("rectangle", "rectangles"), ("strip", "strips"))),
}

# -------------------------------------------------------------------------------------------- sizes
# name -> (radius as a fraction of the image side, words: the plain one first)
SIZES: dict[str, tuple[float, tuple[str, ...]]] = {
    "small": (0.15, ("small", "little", "tiny", "mini")),
    "medium": (0.22, ("medium", "moderate", "midsize", "average")),
    "large": (0.30, ("large", "big", "huge", "giant")),
}

# ---------------------------------------------------------------------------------------- positions
# name -> ((x, y) centre as fractions of the side, phrases). The grounded word of a phrase is the one
# in POSITION_WORDS; the others ("on", "the", "side") are function / generic words.
POSITIONS: dict[str, tuple[tuple[float, float], tuple[str, ...]]] = {
    "center": ((0.5, 0.5), ("in the center", "in the middle", "centered", "at the center")),
    "left": ((0.25, 0.5), ("on the left", "on the left side", "at left", "to the left")),
    "right": ((0.75, 0.5), ("on the right", "on the right side", "at right", "to the right")),
    "top": ((0.5, 0.25), ("at the top", "on top", "in the upper part", "near the top")),
    "bottom": ((0.5, 0.75), ("at the bottom", "on the bottom", "in the lower part", "near the bottom")),
}
POSITION_WORDS = frozenset("center middle centered left right top upper bottom lower".split())
CORNERS: dict[str, tuple[float, float]] = {
    "top left": (0.2, 0.2),
    "top right": (0.8, 0.2),
    "bottom left": (0.2, 0.8),
    "bottom right": (0.8, 0.8),
}

# ---------------------------------------------------------------------------------------------- counts
COUNTS: dict[int, tuple[str, ...]] = {2: ("two", "a pair of"), 3: ("three", "several")}
COUNT_WORDS = frozenset({"two", "three", "pair", "several"})

# ---------------------------------------------------------------------------------------- backgrounds
# name -> (base RGB, texture, phrases, grounded words of the phrases)
BACKGROUNDS: dict[str, tuple[tuple[int, int, int], str, tuple[str, ...]]] = {
    "white": ((242, 242, 242), "flat", ("on white background", "isolated on white", "on a white backdrop")),
    "black": ((22, 22, 22), "flat", ("on black background", "on a dark background", "isolated on black")),
    "gray": ((105, 108, 112), "noise", ("on a gray background", "on grey", "gray backdrop")),
    "sky": ((120, 175, 235), "gradient", ("against a blue sky", "in the sky", "sky background")),
    "grass": ((70, 135, 45), "noise", ("on the grass", "on green grass", "in a grassy field")),
    "wood": ((165, 115, 70), "stripes", ("on a wooden table", "on wood", "wooden background")),
    "sand": ((225, 205, 160), "noise", ("on the sand", "on a sandy beach", "sandy background")),
    "paper": ((236, 228, 205), "noise", ("on paper", "on a sheet of paper", "paper texture")),
    "water": ((45, 100, 160), "waves", ("in the water", "on water", "water background")),
}
BACKGROUND_WORDS = frozenset(
    "white black dark gray grey blue sky green grass grassy field wood wooden table sand sandy beach "
    "paper water".split()
)

# --------------------------------------------------------------------------------------- boilerplate
# Most common first: captions pick them with Zipf weights (1 / rank), as web boilerplate is a few
# phrases used everywhere and a tail of rarer ones.
PREFIXES = (
    "stock photo of",
    "photo of",
    "a photo of",
    "image may contain :",
    "picture of",
    "close up of",
    "illustration of",
    "vector illustration of",
    "an image of",
    "icon of",
    "drawing of",
    "cartoon of",
    "clip art of",
    "view of",
    "detail of",
    "royalty free image of",
    "this is",
    "here is",
)
SUFFIXES = (
    "stock photo",
    "royalty free",
    "stock image",
    "vector illustration",
    "high resolution",
    "stock vector",
    "free download",
    "clip art",
    "hd wallpaper",
    "illustration",
    "image",
    "isolated",
    "close up",
    "high quality",
    "for sale",
    "background texture",
    "free stock photo",
    "photography",
    "digital art",
    "art print",
    "poster",
    "abstract background",
    "graphic design",
)
HASHTAGS = (
    "art design photography instagood illustration vector color minimal abstract pattern wallpaper "
    "graphic love photooftheday beautiful style creative geometry shapes picoftheday"
).split()
CONNECTORS = ("with", "and", "next to", "beside", "near", "plus")
GENERIC_NOUNS = ("shape", "object", "icon", "symbol", "sign", "figure")

# ------------------------------------------------------------------------------------- gold POS tags
# Universal POS of every word the templates, boilerplate and grounded vocabulary use (filler words
# carry their own tag in the vocabulary file). Punctuation is PUNCT.
_TAGS = {
    "DET": "a an the this one",
    "ADP": "of on in at to near beside next for with against up",
    "CCONJ": "and plus",
    "AUX": "may is",
    "VERB": "contain colored placed shown centered isolated",
    "ADV": "here",
    "NUM": "two three",
    "PRON": "",
    "ADJ": (
        "close free high digital abstract graphic stock royalty vector hd dark wooden sandy grassy upper lower "
        "several"
    ),
    "NOUN": (
        "photo picture image view detail illustration cartoon drawing clip art icon resolution "
        "download wallpaper sale photography texture print poster design quality background backdrop "
        "side part middle center left right top bottom corner sky grass field wood table sand beach "
        "paper water sheet shape object symbol sign figure pair color colour instagood photooftheday "
        "picoftheday geometry pattern love style shapes"
    ),
}
TAGS: dict[str, str] = {w: tag for tag, words in _TAGS.items() for w in words.split()}
TAGS.update({w: "ADJ" for w in ("beautiful", "minimal", "creative", "abstract")})
for _name, (_, _syn) in COLORS.items():
    TAGS.update({w: "ADJ" for w in (_name, *_syn)})
for _name, (_plural, _syn) in SHAPES.items():
    TAGS.update({w: "NOUN" for pair in ((_name, _plural), *_syn) for w in pair})
for _name, (_, _words) in SIZES.items():
    TAGS.update({w: "ADJ" for w in _words})
TAGS["centered"] = "VERB"


UPOS = frozenset("ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split())


def surface_forms(kind: str, value: str) -> frozenset[str]:
    """Every word a caption may use for a ``color``, ``shape`` (singular or plural) or ``size`` value."""
    if kind == "color":
        return frozenset({value, *COLORS[value][1]})
    if kind == "shape":
        plural, synonyms = SHAPES[value]
        return frozenset({value, plural, *(w for pair in synonyms for w in pair)})
    if kind == "size":
        return frozenset(SIZES[value][1])
    raise ValueError(f"no surface forms for {kind!r}")


def grounded_vocabulary() -> frozenset[str]:
    """Every word that can name something in a scene (kept out of the filler words)."""
    words = set(POSITION_WORDS) | COUNT_WORDS | BACKGROUND_WORDS
    for name, (_, syn) in COLORS.items():
        words |= {name, *syn}
    for name, (plural, syn) in SHAPES.items():
        words |= {name, plural, *(w for pair in syn for w in pair)}
    for _, words_ in SIZES.values():
        words |= set(words_)
    words |= {"one", "four", "five", "six", "seven", "eight", "nine", "ten", "round", "circular"}
    words |= {"square", "squared", "triangular", "rectangular", "colored", "coloured", "color", "colour"}
    return frozenset(words)


# ------------------------------------------------------------------------------- filler vocabulary
# Kept out of the filler: a few slurs and profanities present in any web frequency list, and the
# letters that wordfreq's tokenizer leaves from contractions ("don't" -> "don", "t").
_EXCLUDE = frozenset(
    "fuck fucking fucked fucker shit shitty bitch bitches cunt dick dicks cock pussy porn porno nigga "
    "nigger niggas fag faggot slut whore ass asshole bastard damn sex sexy nude naked rape tits boobs "
    "penis vagina".split()
)


def is_filler(word: str) -> bool:
    """May ``word`` be a filler word? (letters only, not grounded, not excluded, not a stray letter)"""
    return (
        word.isascii()
        and word.isalpha()
        and word.islower()
        and (len(word) > 1 or word in ("a", "i"))
        and word not in _EXCLUDE
        and word not in grounded_vocabulary()
    )


@cache
def filler_vocabulary() -> tuple[tuple[str, ...], tuple[float, ...], tuple[str, ...]]:
    """(words, English frequencies, UPOS tags) of the bundled filler vocabulary, most frequent first."""
    words, freqs, tags = [], [], []
    with open(VOCAB_FILE, encoding="utf-8", newline="") as f:
        for row in csv.reader((line for line in f if not line.startswith("#")), delimiter="\t"):
            word, freq, tag = row
            words.append(word)
            freqs.append(float(freq))
            tags.append(tag)
    return tuple(words), tuple(freqs), tuple(tags)


def tag_of(word: str) -> str:
    """Gold UPOS of a template or vocabulary word (PUNCT for symbol runs, X when unknown)."""
    if word in TAGS:
        return TAGS[word]
    if not any(c.isalnum() for c in word):
        return "PUNCT"
    if word.isdigit():
        return "NUM"
    return _filler_tags().get(word, "X")


@cache
def _filler_tags() -> dict[str, str]:
    words, _, tags = filler_vocabulary()
    return dict(zip(words, tags, strict=True))


def build_vocabulary_file(n: int = 20000, path: Path = VOCAB_FILE) -> int:
    """Write the filler vocabulary: the ``n`` most frequent English words (wordfreq) that may be filler,
    with their frequency and a part-of-speech tag (``clipf.pos``'s tagger on the word alone: its most
    likely tag). Run once by a maintainer (``python -m clipf.world.lexicon``); the file is committed so
    that generation needs neither wordfreq's data nor a tagger."""
    from importlib.metadata import version

    import wordfreq

    from clipf import pos

    top = [w for w in wordfreq.top_n_list("en", 4 * n) if is_filler(w)][:n]
    rows = [(w, wordfreq.word_frequency(w, "en"), pos.tag([w])[0]) for w in top]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(f"# word\tfrequency\tupos  (wordfreq {version('wordfreq')}, tagger {pos.tagger_name()})\n")
        for w, fr, t in rows:
            f.write(f"{w}\t{fr:.4g}\t{t}\n")
    filler_vocabulary.cache_clear()
    _filler_tags.cache_clear()
    return len(rows)


if __name__ == "__main__":
    print(f"{build_vocabulary_file()} words -> {VOCAB_FILE}")
