"""The ``concepts`` world preset: 256 visual concepts named by rare English nouns, under a Zipf prior.

Each concept (:mod:`clipf.world.names`: real nouns spread over English frequencies 1e-7..6e-5, the band
of ImageNet-1k's class names) has its own look (:mod:`clipf.world.looks`: shape x colour x pattern with an
accent colour x size x background, any two concepts differing in >= 2 of these). A training pair draws a
concept from the prior -- P(rank r) proportional to r^-zipf, rank 1 the name most frequent in English --
draws an image of it, and writes phrase-structured alt-text about it (:mod:`clipf.world.alttext`), so the
informative word of a caption is one rare word, as on the web.

Evaluation sets (CLIP_benchmark ``wds/<name>``): ``concepts`` (zero-shot classification over every
concept, the ImageNet stand-in, ImageNet-style prompts), ``concepts_head`` / ``concepts_torso`` /
``concepts_tail`` (the same classifier, images of one frequency band only: the band's accuracy), and
``concepts_retrieval``. Each classification set has ``bands.json`` (concept -> band, rank, prior), and
the world has ``concepts.json`` (every concept: rank, prior, band, English frequency, look).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

from clipf.world import lexicon as L
from clipf.world import looks as K
from clipf.world import names as N
from clipf.world.alttext import clean_captions, concept_caption
from clipf.world.checks import (
    ConfigError,
    check_caption_length,
    check_common,
    check_number,
    check_prob,
    check_subset,
    check_weights,
)
from clipf.world.scene import GEOMETRY, Draws
from clipf.world.spec import CLASSIFICATION, RETRIEVAL, EvalSet

NAME = "concepts"
FORMATS = ("png", "jpg")
BANDS = ("head", "torso", "tail")  # thirds of the concepts by prior rank

DEFAULTS: dict[str, Any] = {
    "preset": NAME,
    "shard_size": 512,
    "image_format": "jpg",
    "jpeg_quality": 95,
    "eval_size": 500,
    "eval_captions": 5,
    "concepts": {
        "count": 256,  # names: evenly spaced over the ranks of clipf/world/data/concepts.tsv (256)
        "zipf": 1.1,  # P(concept of rank r) ~ r^-zipf: the most frequent concept count^zipf x the least
        "look_seed": 0,  # which look each concept gets (fixed per world, not per data seed)
        "min_distance": 2,  # least number of look factors in which any two concepts differ
        "shapes": ["circle", "square", "triangle", "star", "cross", "heart", "ring", "crescent"],
        "colors": ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"],
        "patterns": ["solid", "striped", "two_tone", "outlined"],
        "accents": ["white", "black", "yellow", "red"],  # the second colour of a pattern
        "sizes": ["small", "large"],  # a concept's size (radius 0.2 / 0.3 of the side)
        "backgrounds": ["white", "black", "sky", "grass"],
        "min_contrast": 120.0,  # RGB distance: colour vs background and accent (accent vs background: 3/4)
    },
    "scene": {  # instance variation of a concept's images
        "scale_jitter": 0.1,  # radius x U(1 -+ j)
        "aspect_jitter": 0.1,
        "rotation": 20.0,  # degrees, uniform +-
        "position_jitter": 0.12,  # centre offset, fraction of the side, uniform +-
        "color_jitter": 12,
        "background_jitter": 15,
        "noise": 5.0,
        "stripe_period": 0.5,  # stripes: one accent + one main stripe per this many radii
        "outline": 0.3,  # outlined: border width in radii
        "antialias": 4,
    },
    "caption": {
        "length": {"median": 17, "sigma": 0.45, "min": 8, "max": 40},  # words, lognormal clipped
        "mention": {  # P(a caption says it)
            "name": 0.85,
            "color": 0.6,
            "pattern": 0.4,
            "size": 0.35,
            "background": 0.5,
        },
        "shapes": {  # caption shapes around the noun phrase
            "phrase": 0.4,  # "a small pink flamingo on a white background"
            "describe": 0.25,  # "the flamingo is pink" / "flamingo, pink, striped"
            "opener": 0.15,  # "look at this cute flamingo"
            "product": 0.1,  # "vintage flamingo print"
            "keywords": 0.1,  # "flamingo stock photo: pink, striped"
        },
        "adjective": 0.25,  # a non-visual adjective ("vintage", "cute") before the noun
        "synonyms": 0.1,  # a colour said with a rarer word (crimson, ...)
        "noise": 0.03,  # the name said is another concept's (web noise)
        "unrelated": 0.03,  # the caption says nothing about the image
        "prefix": 0.35,  # "stock photo of", "close-up of", "image may contain:"
        "suffix": 0.3,  # "royalty free", "stock image"
        "hashtags": 0.2,
        "hashtag_name": 0.3,  # a hashtag is the concept's name
        "max_hashtags": 4,
        "rare_words": 1.0,  # rare filler words per caption (Poisson mean), in slots ("photo by ...")
        "rare_vocab": [2000, 20000],  # their English ranks (the bundled list), drawn by frequency
        "context_first": 0.3,  # a context phrase comes before the description
        "separators": {" ": 0.45, ",": 0.25, "-": 0.1, ".": 0.1, "|": 0.05, ":": 0.05},
        "ellipsis": 0.1,
        "case": {"lower": 0.4, "sentence": 0.4, "title": 0.2},
    },
}

# ImageNet-style prompts (CLIP's ImageNet templates, and longer ones): 5 to 13 BPE tokens before the name
TEMPLATES = (
    "a bad photo of a {c}.",
    "itap of a {c}.",
    "a photo of a {c}.",
    "art of the {c}.",
    "a close-up photo of the {c}.",
    "a bright photo of a {c}.",
    "a cropped photo of the {c}.",
    "a good photo of the {c}.",
    "a rendering of a {c}.",
    "a low resolution photo of the {c}.",
    "a jpeg corrupted photo of a {c}.",
    "a close-up photo of the {c} on a plain background.",
)
STREAMS = {
    "concepts": 20,
    "concepts_head": 21,
    "concepts_torso": 22,
    "concepts_tail": 23,
    "concepts_retrieval": 24,
}
SEPARATORS = (" ", ",", "-", ".", "|", ":")


# --------------------------------------------------------------------------------------- validation


def validate(cfg: Mapping) -> None:
    """Raise :class:`ConfigError` on the first bad value of a resolved ``concepts`` configuration."""
    check_common(cfg, FORMATS)
    c = cfg["concepts"]
    check_number(c["count"], "world.concepts.count", 3, len(N.concept_names()), integer=True)
    check_number(c["zipf"], "world.concepts.zipf", 0, 3)
    check_number(c["look_seed"], "world.concepts.look_seed", 0, 2**32 - 1, integer=True)
    check_number(c["min_distance"], "world.concepts.min_distance", 1, len(K.FACTORS), integer=True)
    check_subset(c["shapes"], GEOMETRY, "world.concepts.shapes", 1)
    check_subset(c["colors"], L.COLORS, "world.concepts.colors", 1)
    check_subset(c["patterns"], dict.fromkeys(K.PATTERNS), "world.concepts.patterns", 1)
    check_subset(c["accents"], L.COLORS, "world.concepts.accents", 1)
    check_subset(c["sizes"], K.SIZE_RADIUS, "world.concepts.sizes", 1)
    check_subset(c["backgrounds"], L.BACKGROUNDS, "world.concepts.backgrounds", 1)
    check_number(c["min_contrast"], "world.concepts.min_contrast", 0, 300)
    s = cfg["scene"]
    for key in ("scale_jitter", "aspect_jitter"):
        check_number(s[key], f"world.scene.{key}", 0, 0.5)
    check_number(s["rotation"], "world.scene.rotation", 0, 180)
    check_number(s["position_jitter"], "world.scene.position_jitter", 0, 0.3)
    check_number(s["color_jitter"], "world.scene.color_jitter", 0, 100)
    check_number(s["background_jitter"], "world.scene.background_jitter", 0, 100)
    check_number(s["noise"], "world.scene.noise", 0, 100)
    check_number(s["stripe_period"], "world.scene.stripe_period", 0.1, 2)
    check_number(s["outline"], "world.scene.outline", 0.05, 0.6)
    check_number(s["antialias"], "world.scene.antialias", 1, 8, integer=True)
    t = cfg["caption"]
    ln = t["length"]
    check_caption_length(ln)
    for key in ("name", "color", "pattern", "size", "background"):
        if key not in t["mention"]:
            raise ConfigError(f"world.caption.mention.{key}: missing")
        check_prob(t["mention"], key, "world.caption.mention")
    check_weights(
        t["shapes"], "world.caption.shapes", ("phrase", "describe", "opener", "product", "keywords")
    )
    for key in ("adjective", "synonyms", "noise", "unrelated", "prefix", "suffix", "hashtags"):
        check_prob(t, key, "world.caption")
    for key in ("hashtag_name", "context_first", "ellipsis"):
        check_prob(t, key, "world.caption")
    check_number(t["max_hashtags"], "world.caption.max_hashtags", 1, 20, integer=True)
    check_number(t["rare_words"], "world.caption.rare_words", 0, 20)
    rv, n_vocab = t["rare_vocab"], len(L.filler_vocabulary()[0])
    if not (
        isinstance(rv, list)
        and len(rv) == 2
        and all(isinstance(v, int) for v in rv)
        and 0 <= rv[0] < rv[1] <= n_vocab
    ):
        raise ConfigError(
            f"world.caption.rare_vocab: [low, high] English ranks, 0 <= low < high <= {n_vocab}, got {rv!r}"
        )
    check_weights(t["separators"], "world.caption.separators", SEPARATORS)
    check_weights(t["case"], "world.caption.case", ("lower", "sentence", "title"))
    try:
        table(cfg)
    except K.LookError as err:
        raise ConfigError(str(err)) from None


# ---------------------------------------------------------------------------------------- concepts


class ConceptTable:
    """The concepts of a configuration: names by rank, looks, prior, bands."""

    def __init__(self, ccfg: Mapping):
        self.names = tuple(N.pick_names(ccfg["count"]))
        n = len(self.names)
        weights = np.arange(1, n + 1, dtype=np.float64) ** -float(ccfg["zipf"])
        self.prior = weights / weights.sum()
        self.cdf = np.cumsum(self.prior)
        self.cdf[-1] = 1.0
        self.looks = K.assign_looks(self.names, ccfg)
        cut = (round(n / 3), round(2 * n / 3))
        self.band = tuple(BANDS[(i >= cut[0]) + (i >= cut[1])] for i in range(n))
        english = {r[0]: r for r in N.concept_names()}
        self.english = tuple(english[w][1] for w in self.names)
        self.bpe = tuple(english[w][2] for w in self.names)
        self.category = tuple(english[w][3] for w in self.names)

    def draw(self, d: Draws) -> int:
        """A concept index drawn from the prior."""
        return min(int(np.searchsorted(self.cdf, d.u(), side="right")), len(self.names) - 1)

    def indices(self, band: str) -> tuple[int, ...]:
        return tuple(i for i, b in enumerate(self.band) if b == band)

    def bands_file(self) -> dict[str, Any]:
        """``bands.json``: how the report groups a set's classes by frequency band."""
        return {
            "rule": "thirds of the concepts by rank of the world's Zipf prior (rank 1: most frequent)",
            "bands": {b: [self.names[i] for i in self.indices(b)] for b in BANDS},
            "band_of": dict(zip(self.names, self.band, strict=True)),
            "rank": {w: i + 1 for i, w in enumerate(self.names)},
            "prior": {w: float(f"{p:.6g}") for w, p in zip(self.names, self.prior, strict=True)},
        }

    def concepts_file(self) -> dict[str, Any]:
        """``concepts.json``: every concept with its rank, prior, band, English frequency and look."""
        rows = []
        for i, look in enumerate(self.looks):
            rows.append(
                {
                    "name": look["name"],
                    "rank": i + 1,
                    "prior": float(f"{self.prior[i]:.6g}"),
                    "band": self.band[i],
                    "english_frequency": self.english[i],
                    "bpe_tokens": self.bpe[i],
                    "category": self.category[i],
                    "look": {f: look[f] for f in K.FACTORS},
                }
            )
        ratio = float(self.prior[0] / self.prior[-1])
        return {"count": len(rows), "prior_ratio": round(ratio, 3), "concepts": rows}


@cache
def _table(key: str) -> ConceptTable:
    return ConceptTable(json.loads(key))


def table(cfg: Mapping) -> ConceptTable:
    """The :class:`ConceptTable` of a resolved configuration (cached)."""
    return _table(json.dumps(cfg["concepts"], sort_keys=True))


# -------------------------------------------------------------------------------------------- hooks


def eval_sets(cfg: Mapping) -> dict[str, EvalSet]:
    """Concept classification (all concepts; per band), and retrieval."""
    t = table(cfg)
    files = {"bands.json": t.bands_file()}
    out = {
        "concepts": EvalSet(
            "concepts", STREAMS["concepts"], CLASSIFICATION, "concept", t.names, TEMPLATES, files=files
        ),
    }
    for band in BANDS:
        name = f"concepts_{band}"
        out[name] = EvalSet(
            name,
            STREAMS[name],
            CLASSIFICATION,
            "concept",
            t.names,
            TEMPLATES,
            t.indices(band),
            info={"band": band},
            files=files,
        )
    out["concepts_retrieval"] = EvalSet(
        "concepts_retrieval", STREAMS["concepts_retrieval"], RETRIEVAL, None, t.names
    )
    return out


def _scene(t: ConceptTable, i: int, d: Draws, cfg: Mapping) -> dict:
    look = t.looks[i]
    obj = K.sample_instance(look, d, cfg["scene"])
    return {"concept": look["name"], "rank": i + 1, "background": look["background"], "objects": [obj]}


def pair(d: Draws, cfg: Mapping, size: int) -> tuple[Image.Image, str, dict[str, Any]]:
    """One training pair: (image, caption, metadata beyond the img2dataset fields)."""
    t = table(cfg)
    i = t.draw(d)
    scene = _scene(t, i, d, cfg)
    image = K.render_concept(scene, size, cfg["scene"], d)
    caption, units, info = concept_caption(t.looks[i], d, cfg["caption"], t.names, t.cdf)
    meta = {
        "scene": scene,
        "words": [[w, tag] for w, tag, _ in units],
        "grounded": [g for _, _, g in units],
        "wrong": ["name"] if info["wrong"] else [],
        "unrelated": info["unrelated"],
    }
    return image, caption, meta


def eval_item(
    d: Draws, cfg: Mapping, spec: EvalSet, label: int | None, size: int
) -> tuple[Image.Image, str | None, dict[str, Any]]:
    """One evaluation image of concept ``label``: (image, captions one a line for retrieval, metadata)."""
    t = table(cfg)
    scene = _scene(t, label, d, cfg)
    image = K.render_concept(scene, size, cfg["scene"], d)
    text = None
    if spec.task == RETRIEVAL:
        text = "\n".join(clean_captions(t.looks[label], d, cfg["eval_captions"]))
    return image, text, {"scene": scene}


def world_files(cfg: Mapping) -> dict[str, Any]:
    """``concepts.json`` at the world's root."""
    return {"concepts.json": table(cfg).concepts_file()}
