"""The ``concepts`` world (issue 18): rare-noun names, Zipf prior, phrase-structured alt-text, distinct
looks, banded evaluation sets; presets as data; the ``shapes`` world unchanged."""

from __future__ import annotations

import hashlib
import json
import math
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from clipf.world import alttext as A
from clipf.world import config as K
from clipf.world import generate as G
from clipf.world import lexicon as L
from clipf.world import looks as LK
from clipf.world import names as N
from clipf.world.cli import cli
from clipf.world.presets import PRESETS
from clipf.world.presets import concepts as P
from clipf.world.scene import Draws

SMALL = {"shard_size": 25, "eval_size": 20}
# sha256 over (path, bytes) of every file of `synthesize(out, 60, 20, 32, seed=7, cfg=SMALL)`, made by the
# code before presets existed (commit 32ddd6b): the shapes world must not change by a byte
SHAPES_SMALL_SHA256 = "1d47ae63c927d4c3435723c683011012379e8fd8dc05a0ff230875aa0244aa2d"


def tree_sha256(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """2 000 training pairs of the concepts world, 40 images per evaluation set, 32 px."""
    out = tmp_path_factory.mktemp("c") / "world"
    G.synthesize(out, 2000, 0, 32, seed=1, n_eval=40, progress=False, preset="concepts")
    return out


@pytest.fixture(scope="module")
def stats(world) -> dict:
    from clipf.world.stats import stats as compute

    return compute(world)


# ------------------------------------------------------------------------------- presets are data


def test_shapes_world_is_byte_identical_to_before_presets(tmp_path):
    G.synthesize(tmp_path / "w", 60, 20, 32, seed=7, cfg=SMALL, progress=False)
    assert tree_sha256(tmp_path / "w") == SHAPES_SMALL_SHA256
    G.synthesize(tmp_path / "p", 60, 20, 32, seed=7, cfg=SMALL, progress=False, preset="shapes")
    assert tree_sha256(tmp_path / "p") == SHAPES_SMALL_SHA256
    layout = {"world": {"preset": "shapes", "presets": {"shapes": SMALL, "concepts": {}}}}
    G.synthesize(tmp_path / "l", 60, 20, 32, seed=7, cfg=layout, progress=False)
    assert tree_sha256(tmp_path / "l") == SHAPES_SMALL_SHA256


def test_presets_are_data(tmp_path):
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    assert params["world"]["preset"] == "shapes" and set(params["world"]["presets"]) == set(PRESETS)
    cfg = K.load_config(params, "concepts")
    assert cfg["preset"] == "concepts" and cfg == P.DEFAULTS
    assert "preset" not in K.load_config(params)  # shapes keeps the original format
    edited = {"preset": "concepts", "presets": {"concepts": {"concepts": {"count": 200}}}}
    assert K.load_config(edited)["concepts"]["count"] == 200
    assert K.load_config(K.load_config(edited)) == K.load_config(edited)  # a resolved config round-trips


@pytest.mark.parametrize(
    "source, preset, message",
    [
        (None, "nope", r"world.preset \(--preset\): unknown preset 'nope' \(known: shapes, concepts\)"),
        ({"preset": "nope", "presets": {}}, None, r"unknown preset 'nope'"),
        ({"presets": {"nope": {}}}, None, r"unknown preset 'nope'"),
        ({"preset": "concepts", "presets": {"concepts": {"concepts": {"count": 9999}}}}, None, "count"),
        ({"presets": {}, "scene": {}}, None, r"world.scene: unknown key \(known: preset, presets\)"),
        ({"preset": "concepts", "caption": {}}, "shapes", "of preset 'concepts', not 'shapes'"),
        (
            {"concepts": {"count": 256, "min_distance": 6, "shapes": ["circle"]}},
            "concepts",
            "only .* looks differ pairwise",
        ),
    ],
)
def test_bad_presets_are_refused_naming_the_option(source, preset, message):
    with pytest.raises(K.ConfigError, match=message):
        K.load_config(source, preset)


def test_cli_preset_option(tmp_path, capsys):
    rc = cli(["synth", "--out", str(tmp_path / "w"), "--train", "4", "--preset", "nope", "--no-progress"])
    assert rc == 2 and "unknown preset 'nope' (known: shapes, concepts)" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    argv = ["synth", "--out", str(tmp_path / "c"), "--train", "30", "--eval", "8", "--preset", "concepts"]
    assert cli([*argv, "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "c" / "world.json").read_text())
    assert manifest["config"]["preset"] == "concepts" and set(manifest["eval"]) == set(P.STREAMS)
    assert cli(["stats", str(tmp_path / "c")]) == 0
    assert "token / name frequency" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = G.synthesize(tmp_path / "a", 60, 20, 32, seed=7, cfg=SMALL, progress=False, preset="concepts")
    G.synthesize(tmp_path / "b", 60, 20, 32, seed=7, cfg=SMALL, workers=2, progress=False, preset="concepts")
    assert tree_sha256(tmp_path / "a") == tree_sha256(tmp_path / "b")
    assert a["train"]["shards"] == 3 and a["config"]["preset"] == "concepts"
    G.synthesize(tmp_path / "c", 60, 20, 32, seed=8, cfg=SMALL, progress=False, preset="concepts")
    for name in ("train/00000.tar", "eval/concepts/test/0.tar", "eval/concepts_retrieval/test/0.tar"):
        assert (tmp_path / "c" / name).read_bytes() != (tmp_path / "a" / name).read_bytes()
    # the concepts themselves (names, looks, prior) do not depend on the data seed
    assert (tmp_path / "c" / "concepts.json").read_bytes() == (tmp_path / "a" / "concepts.json").read_bytes()


# ----------------------------------------------------------------------------------------- names


def test_names_are_real_rare_english_nouns_spread_over_the_band():
    rows = N.concept_names()
    names = [r[0] for r in rows]
    freqs = np.array([r[1] for r in rows])
    assert len(names) == len(set(names)) == 256
    assert all(w.isascii() and w.isalpha() and w.islower() for w in names)
    assert not set(names) & (N.EXCLUDED | A.caption_vocabulary())
    assert list(freqs) == sorted(freqs, reverse=True)  # rank 1 = most frequent in English
    assert N.LOW <= freqs.min() and freqs.max() <= N.HIGH
    assert 1e-6 <= np.median(freqs) <= 1e-5  # ImageNet-1k's class head nouns: 3.4e-6
    decades = np.histogram(np.log10(freqs), bins=[-7, -6, -5, -4])[0]
    assert decades.min() >= 40  # every decade of the band holds many names
    candidates = {w for w, _ in N.candidates()}
    assert set(names) <= candidates and len(candidates) >= 600


# ------------------------------------------------------------------------------------------ looks


def test_looks_are_distinct_and_contrast():
    t = P.table(P.DEFAULTS)
    looks = t.looks
    assert len(looks) == 256 and len({tuple(lk[f] for f in LK.FACTORS) for lk in looks}) == 256
    assert min(LK.distance(a, b) for i, a in enumerate(looks) for b in looks[i + 1 :]) >= 2
    for lk in looks:
        assert math.dist(L.COLORS[lk["color"]][0], L.BACKGROUNDS[lk["background"]][0]) >= 120
        if lk["pattern"] != "solid":
            assert lk["accent"] != lk["color"]
    assert len({lk["shape"] for lk in looks}) == 8 and len({lk["pattern"] for lk in looks}) == 4


def test_concepts_differ_at_32_px():
    """Two concepts that differ in any one factor give different pictures at the study's resolution."""
    cfg = P.DEFAULTS["scene"]
    quiet = {**cfg, "noise": 0, "background_jitter": 0, "color_jitter": 0, "rotation": 0}
    quiet.update(scale_jitter=0, aspect_jitter=0, position_jitter=0)
    base = {"name": "x", "shape": "star", "color": "red", "pattern": "striped", "accent": "white"}
    base.update(size="large", background="black")
    variants = [
        {"shape": "cross"},
        {"color": "blue"},
        {"pattern": "outlined"},
        {"pattern": "two_tone"},
        {"pattern": "solid", "accent": "none"},
        {"accent": "yellow"},
        {"size": "small"},
        {"background": "sky"},
    ]

    def image(look):
        obj = LK.sample_instance(look, Draws(0), quiet)
        scene = {"background": look["background"], "objects": [obj]}
        return np.asarray(LK.render_concept(scene, 32, quiet, Draws(0)), dtype=float)

    ref = image(base)
    for v in variants:
        diff = np.abs(image({**base, **v}) - ref).mean()
        assert diff > 4, (v, diff)


# --------------------------------------------------------------------------------------- captions


def test_captions_are_phrases_aligned_with_the_maskers_words():
    from clipf.text import split_words

    t = P.table(P.DEFAULTS)
    ccfg = P.DEFAULTS["caption"]
    d = Draws(3)
    first_name = Counter()
    for _ in range(2000):
        look = t.looks[t.draw(d)]
        caption, units, info = A.concept_caption(look, d, ccfg, t.names, t.cdf)
        words = [w for w, _, _ in units]
        assert A.words_of(caption) == words == split_words(caption), caption
        assert all(tag in L.UPOS for _, tag, _ in units), caption
        said = [w for w, _, g in units if g == "name"]
        if said and not info["wrong"]:
            assert set(said) == {look["name"]}
        names_in = [w for w in words if w in t.names]
        assert len(set(names_in)) <= 1 + info["wrong"], caption
        first_name[next((j for j, u in enumerate(units) if u[2] == "name"), None)] += 1
    assert len(first_name) > 10  # the name lands in many places


def test_phrase_banks_have_gold_tags_and_avoid_look_words():
    phrases = [*A.PREFIXES, *A.SUFFIXES, *A.CONTEXT, *A.OPENERS, *A.PRODUCTS, *A.ADJECTIVES, *A.HASHTAGS]
    words = {w for p in phrases for w in A.words_of(p) if w.isalpha()}
    assert not {w for w in words if A.tag_of(w) == "X"}
    look_words = set(L.COLORS) | {w for ws in A.SIZE_WORDS.values() for w in ws} | set(L.BACKGROUND_WORDS)
    assert not words & look_words  # filler phrases never say a colour, size or background


def test_statistics_bars(stats, world):
    """Issue 18's bars, on a small generated world."""
    w = stats["world"]
    assert w["preset"] == "concepts" and w["classes"] >= 200
    assert w["prior_ratio"] >= 30 and w["prior_ratio_seen"] >= 30
    assert w["token_over_name"] >= 100  # the names are >= 100x rarer than the median running token
    assert 1e-6 <= w["name_english_median"] <= 1e-5
    assert 0.7 <= w["captions_with_name"] <= 0.95
    assert 14 <= stats["words"]["p50"] <= 22 and stats["bpe_longer_than"]["16"] >= 0.5
    assert 0.3 <= stats["function_share"] <= 0.6
    # K = 4..8 truncation cuts the name from many captions, K = 16 from few
    cut = w["name_cut_by_truncation"]
    assert cut["4"] > cut["6"] > cut["8"] > cut["16"] and cut["8"] >= 0.3 and cut["16"] <= 0.3
    # not word-by-word filler: rare filler words come about once per caption
    vocab = A.caption_vocabulary() | set(P.table(P.DEFAULTS).names)
    rare = sum(c for word, c in Counter(_words(world)).items() if word not in vocab and word.isalpha())
    assert 0.5 <= rare / stats["pairs"] <= 1.6


def _words(world: Path) -> list[str]:
    from clipf.world.stats import read_pairs

    return [word for _, meta in read_pairs(world / "train") for word, _ in meta["words"]]


def test_prior_is_zipf_and_training_pairs_follow_it(world):
    from clipf.world.stats import read_pairs

    t = P.table(P.DEFAULTS)
    assert t.prior[0] / t.prior[-1] == pytest.approx(256**1.1)
    counts = Counter(meta["scene"]["concept"] for _, meta in read_pairs(world / "train"))
    head = sum(counts[n] for n in t.names[:10]) / 2000
    assert head == pytest.approx(t.prior[:10].sum(), abs=0.04)


# ----------------------------------------------------------------------------------- evaluation sets


def test_eval_sets_bands_and_templates(world):
    import torchvision.transforms as T
    from clip_benchmark.datasets.builder import build_dataset
    from open_clip.tokenizer import SimpleTokenizer

    t = P.table(P.DEFAULTS)
    names = (world / "eval" / "benchmark.txt").read_text().split()
    assert names == [f"wds/{n}" for n in P.STREAMS]
    bands = json.loads((world / "eval" / "concepts" / "bands.json").read_text())
    assert sorted(bands["band_of"]) == sorted(t.names)
    assert [len(bands["bands"][b]) for b in P.BANDS] == [85, 86, 85]
    assert bands["bands"]["head"][0] == t.names[0] and bands["rank"][t.names[-1]] == 256
    for name in P.STREAMS:
        root = world / "eval" / name
        info = json.loads((root / "info.json").read_text())
        ds = build_dataset(
            f"wds/{name}", root=str(root), transform=T.ToTensor(), split="test", task=info["task"]
        )
        targets = [y for _, ys in ds.batched(20) for y in ys]
        assert len(targets) == 40
        if info["task"] == "zeroshot_classification":
            assert ds.classes == list(t.names) and (root / "bands.json").exists()
            band = info.get("band")
            if band:
                assert {bands["band_of"][t.names[int(y)]] for y in targets} == {band}
        else:
            assert all(len(c) == 5 and any(n in c[0] for n in t.names) for c in targets)
    tok = SimpleTokenizer()
    before = [len(tok.encode(tpl.split("{c}")[0])) for tpl in P.TEMPLATES]
    assert min(before) >= 3 and sum(b >= 6 for b in before) >= 3  # K = 4..8 cut the name of many prompts
    concepts = json.loads((world / "concepts.json").read_text())
    assert concepts["count"] == 256 and concepts["concepts"][0]["band"] == "head"


def test_eval_images_are_the_labelled_concept(world):
    t = P.table(P.DEFAULTS)
    with tarfile.open(world / "eval" / "concepts_tail" / "test" / "0.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    for key in sorted({n.rsplit(".", 1)[0] for n in files}):
        label, meta = int(files[f"{key}.cls"]), json.loads(files[f"{key}.json"])
        assert meta["scene"]["concept"] == t.names[label] and t.band[label] == "tail"
        obj = meta["scene"]["objects"][0]
        assert {f: obj[f] for f in ("shape", "color", "pattern", "size")} == {
            f: t.looks[label][f] for f in ("shape", "color", "pattern", "size")
        }
