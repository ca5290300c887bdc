"""Maskers: layout, promises (order, contiguity, untouched fitting captions), statistics, bad input."""

from __future__ import annotations

import json
import math
import pickle
import string
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer, _clean_lower

from clipf import masking as M
from clipf import pos
from clipf import text as T
from clipf.freq import FreqTable

torch.set_num_threads(1)
TOK = SimpleTokenizer()
LONG = [
    "A photo of a small brown dog running on the sandy beach at sunset, with waves crashing behind it.",
    "Stock illustration: happy family eating dinner together in a bright modern kitchen - vector art",
    "two young girls are playing with a red ball in the green park near the old stone bridge",
]
SHORT = ["a red car", "cat", "Hello, world!"]
ODD = ["", "   \t  ", "Ça va? 日本語のテキスト 🐶🐶 emoji", "naïve café — ünïcödé", "&amp; &lt;b&gt;"]
TABLE = FreqTable(
    counts={"a": 5000, "the": 5000, "of": 3000, "dog": 20, "photo": 200, "beach": 5}, total=20000
)
WORDS12 = "zero one two three four five six seven eight nine ten eleven".split()
OPTS = {"frequency": {"table": TABLE}}


def run(name: str, captions, k: int, seed: int = 0, **opts) -> torch.Tensor:
    return M.MASKERS[name](captions, k, np.random.default_rng(seed), **{**OPTS.get(name, {}), **opts})


def text_ids(row: torch.Tensor) -> list[int]:
    row = row.tolist()
    return row[1 : row.index(M.EOT)]


def full_ids(caption: str) -> list[int]:
    return TOK.encode(caption)


def is_subsequence(small: list[int], big: list[int]) -> bool:
    it = iter(big)
    return all(t in it for t in small)


@pytest.mark.parametrize("name", sorted(M.MASKERS))
@pytest.mark.parametrize("k", [3, 8, 16])
def test_layout(name, k):
    out = run(name, LONG + SHORT + ODD, k)
    assert out.dtype == torch.long and out.shape == (len(LONG + SHORT + ODD), k)
    for row in out:
        row = row.tolist()
        assert row[0] == M.SOT and row.count(M.EOT) == 1
        end = row.index(M.EOT)
        assert 1 <= end <= k - 1 and all(t == 0 for t in row[end + 1 :])
        assert all(t < M.SOT for t in row[1:end])
    for i, c in enumerate(LONG):  # overflowing captions use the budget (reference fill may leave a gap)
        assert len(text_ids(out[i])) >= min(k - 2, len(T.split_words(c))) or name == "frequency"


@pytest.mark.parametrize("name", sorted(M.MASKERS))
@pytest.mark.parametrize("k", [8, 16, 32])
def test_fitting_captions_untouched(name, k):
    fits = [c for c in SHORT + ODD + LONG if len(full_ids(c)) <= k - 2]
    assert fits
    for seed in range(3):
        assert torch.equal(run(name, fits, k, seed), TOK(fits, context_length=k))


@pytest.mark.parametrize("k", [3, 4, 8, 16, 77])
def test_truncate_is_open_clip(k):
    caps = LONG + SHORT + ODD
    assert torch.equal(M.truncate(caps, k, None), TOK(caps, context_length=k))


def test_clean_fast_path_matches_open_clip():
    rng = np.random.default_rng(0)
    pieces = [*string.printable, "&amp;", "&", "&lt;b&gt;", "<", "\x1b[31m", "\x7f", "\x00", "\x0b", "\x1c"]
    pieces += ["\r\n", "\u2028", "é", "Ã©", "ﬁ", "Ｌ", "“", "\xa0", "İ", "²", "٣", "ß", "ǅ", "🐶"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces, int(rng.integers(0, 40))))
        assert T.clean(text) == _clean_lower(text), repr(text)
        assert T.split_words(text) == TOK.pat.findall(_clean_lower(text)), repr(text)
        assert [t for w in T.encode_words(text)[1] for t in w] == TOK.encode(text), repr(text)


def test_encoder_matches_open_clip():
    for c in LONG + SHORT + ODD + ["it's 3:45pm!!! l'été—déjà vu", "<end_of_text> inside"]:
        words, ids = T.encode_words(c)
        assert [t for w in ids for t in w] == TOK.encode(c)
        assert words == T.split_words(c)


@pytest.mark.parametrize("name", sorted(M.MASKERS))
def test_seed_reproducible(name):
    a, b = run(name, LONG * 20, 8, seed=7), run(name, LONG * 20, 8, seed=7)
    assert torch.equal(a, b)
    if name not in ("truncate", "syntax"):  # the deterministic ones
        assert not torch.equal(a, run(name, LONG * 20, 8, seed=8))


def test_block_is_contiguous_and_covers_all_starts():
    cap, k = LONG[0], 8
    toks, budget = full_ids(cap), k - 2
    starts = []
    for row in run("block", [cap] * 2000, k):
        kept = text_ids(row)
        assert len(kept) == budget
        match = [s for s in range(len(toks) - budget + 1) if toks[s : s + budget] == kept]
        assert match
        starts.append(match[0])
    counts = np.bincount(starts, minlength=len(toks) - budget + 1)
    expected = 2000 / len(counts)
    assert counts.min() > 0.6 * expected and counts.max() < 1.4 * expected


def test_random_keeps_order_and_is_uniform():
    cap, k = " ".join(WORDS12), 8  # 12 distinct one-token words
    toks = full_ids(cap)
    assert len(set(toks)) == 12
    hits = np.zeros(len(toks))
    for row in run("random", [cap] * 2000, k):
        kept = text_ids(row)
        assert len(kept) == k - 2 and is_subsequence(kept, toks)
        hits[[toks.index(t) for t in kept]] += 1
    assert np.allclose(hits / 2000, (k - 2) / len(toks), atol=0.05)


def test_shuffle_permutes():
    cap, k = " ".join(WORDS12), 8
    toks = full_ids(cap)
    in_order = 0
    for row in run("shuffle", [cap] * 500, k):
        kept = text_ids(row)
        assert len(kept) == k - 2 and all(kept.count(t) <= toks.count(t) for t in kept)
        in_order += is_subsequence(kept, toks)
    assert in_order < 25  # ordered by chance: ~1/720 for 6 distinct tokens


def test_masker_options():
    assert M.masker_options("frequency") == ["table", "threshold", "rule", "missing", "fill"]
    assert M.masker_options("syntax") == ["tagger", "fill"] and M.masker_options(M.block) == []


def test_aliases_and_unknown_names():
    assert M.get_masker("simple") is M.block
    assert M.get_masker(None) is M.truncate and M.get_masker("None") is M.truncate
    assert M.get_masker("none") is M.truncate
    with pytest.raises(ValueError, match="unknown masker 'bogus'.*frequency"):
        M.get_masker("bogus")


@pytest.mark.parametrize("name", sorted(M.MASKERS))
@pytest.mark.parametrize("k", [2, 0, -1, 2.5, "8", True])
def test_bad_k(name, k):
    with pytest.raises(ValueError, match="K"):
        run(name, LONG, k)


def test_empty_and_odd_captions():
    for name in M.MASKERS:
        out = run(name, ["", "   "], 8)
        assert out.tolist() == [[M.SOT, M.EOT] + [0] * 6] * 2
        with pytest.raises(TypeError, match="caption 1 is NoneType"):
            run(name, ["ok", None], 8)
    surrogate = run("frequency", ["lone \udcff surrogate " * 5], 8)  # open_clip itself would raise
    assert surrogate.shape == (1, 8)


def test_huge_captions():
    words = " ".join(["a photo of the dog on the beach"] * 3200)[:100_000]
    blob = "x" * 100_000  # one 100 000-character "word": BPE in MAX_WORD_CHARS pieces, not quadratic
    t = time.perf_counter()
    for name in M.MASKERS:
        out = run(name, [words, blob], 16)
        assert out.shape == (2, 16) and (out[:, 0] == M.SOT).all()
    assert time.perf_counter() - t < 20
    assert torch.equal(run("truncate", [words], 16), TOK([words], context_length=16))


# --------------------------------------------------------------------------- frequency
def p_table(ps: dict[str, float]) -> FreqTable:
    return FreqTable(probs=ps)


def reference_keep_rates(ps: np.ndarray, keep: int, draws: int, seed: int) -> np.ndarray:
    """The rule as written: u ~ U(0, 1) per word, keep the `keep` largest u - P."""
    u = np.random.default_rng(seed).random((draws, len(ps)))
    order = np.argsort(-(u - ps), axis=1)[:, :keep]
    return np.bincount(order.ravel(), minlength=len(ps)) / draws


def test_frequency_keep_rates_follow_p():
    ps = np.linspace(0.0, 0.99, 12)
    table = p_table(dict(zip(WORDS12, ps, strict=True)))
    cap, k, draws = " ".join(WORDS12), 8, 2000
    assert all(len(T.word_ids(w)) == 1 for w in WORDS12)
    out = M.frequency([cap] * draws, k, np.random.default_rng(0), table=table)
    kept = np.zeros(12)
    for row in out:
        words = M.decode(row).split()
        assert len(words) == k - 2 and words == [w for w in WORDS12 if w in words]  # order kept
        kept += [w in words for w in WORDS12]
    rate = kept / draws
    expected = reference_keep_rates(ps, k - 2, 20000, 1)
    assert np.abs(rate - expected).max() < 0.04
    assert rate[0] > 0.9 and rate[-1] < 0.15 and np.all(np.diff(rate) < 0.05)


def test_frequency_keep_rates_follow_negative_p():
    """The released rule's P < 0 in the u - P ranking: the rates are those of the rule as written."""
    ps = np.linspace(-0.9, 0.99, 12)
    table = p_table(dict(zip(WORDS12, ps, strict=True)))
    out = M.frequency([" ".join(WORDS12)] * 2000, 8, np.random.default_rng(0), table=table)
    rate = np.array([[w in M.decode(r).split() for w in WORDS12] for r in out]).mean(axis=0)
    assert np.abs(rate - reference_keep_rates(ps, 6, 20000, 1)).max() < 0.04
    assert rate[0] > 0.99 and np.all(np.diff(rate) < 0.05)


RULE_COUNTS = {"the": 300_000, "a": 200_000, "dog": 5_000, "koala": 100, "giraffe": 10, "zebra": 1}


def test_frequency_negative_p_ranks_first_rarest_first():
    """authors rule, t * total = 1000: P(koala) = -2.2, P(giraffe) = -9, P(zebra) = -30.6, P >= 0 for the
    rest; with P <= -1 apart by more than 1, the kept words are the rarest, deterministically."""
    table = FreqTable(counts=RULE_COUNTS, total=1_000_000)
    assert all(len(T.word_ids(w)) == 1 for w in RULE_COUNTS)
    cap = "the dog a koala the giraffe a zebra the dog"
    for k, want in ((3, "zebra"), (4, "giraffe zebra"), (5, "koala giraffe zebra")):
        out = M.frequency([cap] * 500, k, np.random.default_rng(k), table=table, threshold=1e-3)
        assert {M.decode(r) for r in out} == {want}, k
    six = M.frequency([cap] * 2000, 6, np.random.default_rng(0), table=table, threshold=1e-3)
    kept = [M.decode(r).split() for r in six]
    assert all(len(w) == 4 and {"koala", "giraffe", "zebra"} <= set(w) for w in kept)
    fourth = Counter(next(x for x in w if x not in ("koala", "giraffe", "zebra")) for w in kept)
    assert fourth["dog"] > fourth["the"] + fourth["a"]  # then P(dog) = 0.55 < P(a) = 0.93, P(the) = 0.94
    clamped = M.frequency(
        [cap] * 3000, 3, np.random.default_rng(0), table=table, threshold=1e-3, rule="clamped"
    )
    rates = Counter(M.decode(r) for r in clamped)  # clamped: the three rare words tie at P = 0
    assert set(rates) <= {"koala", "giraffe", "zebra", "dog"}
    assert all(abs(rates[w] / 3000 - 1 / 3) < 0.05 for w in ("koala", "giraffe", "zebra"))


def test_frequency_rules_and_defaults():
    table = FreqTable(counts=RULE_COUNTS, total=1_000_000)
    caps = LONG + ["the dog a koala the giraffe a zebra the dog " * 3]
    default = M.frequency(caps, 6, np.random.default_rng(4), table=table, threshold=1e-3)
    assert default.equal(
        M.frequency(caps, 6, np.random.default_rng(4), table=table, threshold=1e-3, rule="authors")
    )
    # clamped = the pre-`rule` masker: P = max(0, 1 - sqrt(t * total / c)) given as a published table
    old = {w: max(0.0, 1.0 - math.sqrt(1e-3 * 1_000_000 / c)) for w, c in RULE_COUNTS.items()}
    for k in (4, 8):
        a = M.frequency(caps, k, np.random.default_rng(k), table=table, threshold=1e-3, rule="clamped")
        assert a.equal(M.frequency(caps, k, np.random.default_rng(k), table=p_table(old)))
    with pytest.raises(ValueError, match="rule='word2vec' is not one of 'authors', 'clamped'"):
        M.frequency(caps, 6, None, table=table, rule="word2vec")
    with pytest.raises(ValueError, match="rule='bogus'"):
        M.MaskingTokenizer("frequency", 8, table=table, rule="bogus")


def test_frequency_frequent_words_kept_less_with_counts_table():
    counts = {"the": 100_000, "a": 80_000, "photo": 5_000, "dog": 50, "beach": 30, "sunset": 20}
    table = FreqTable(counts=counts, total=300_000)
    cap = "the photo of a dog on the beach at sunset with a photo"
    # t = 1e-3: P(the) ~ 0.95, P(a) ~ 0.94, P(photo) ~ 0.76, P(dog|beach|sunset) = 0; "of", "on",
    # "at", "with" are missing (P = 1). Four slots: the three rare words, then mostly "photo".
    out = M.frequency([cap] * 2000, 6, np.random.default_rng(3), table=table, threshold=1e-3)
    rate = {w: np.mean([w in M.decode(r).split() for r in out]) for w in [*counts, "of", "with"]}
    assert min(rate["dog"], rate["beach"], rate["sunset"]) > 0.95
    assert 0.4 < rate["photo"] < 0.9 and rate["the"] < 0.25 and rate["a"] < 0.25
    assert rate["of"] < 0.1 and rate["with"] < 0.1


def test_frequency_missing_words():
    table = p_table({w: 0.5 for w in WORDS12[:10]})
    cap = " ".join(WORDS12)  # "ten", "eleven" are missing from the table
    for missing, p in (("mask", 1.0), ("keep", 0.0)):
        out = M.frequency([cap] * 2000, 8, np.random.default_rng(0), table=table, missing=missing)
        rate = np.mean([["ten" in r, "eleven" in r] for r in map(M.decode, out)], axis=0)
        expected = reference_keep_rates(np.array([0.5] * 10 + [p, p]), 6, 20000, 1)[10:]
        assert np.abs(rate - expected).max() < 0.03, (missing, rate, expected)
        assert (rate < 0.1).all() if missing == "mask" else (rate > 0.9).all()
    with pytest.raises(ValueError, match="missing='drop'"):
        M.frequency([cap], 8, None, table=table, missing="drop")


def reference_frequency(caption: str, k: int, rng: np.random.Generator, p: dict[str, float]) -> list[int]:
    """The authors' selection, re-implemented plainly from its description (re-encode + truncate)."""
    text = T.clean(caption)
    words = TOK.pat.findall(text)
    if len(TOK.encode(text)) <= k - 2:
        return TOK.encode(text)
    keep = min(k - 2, len(words))
    score = rng.random(len(words)) - np.array([p.get(w, 1.0) for w in words])
    chosen = sorted(np.argsort(-score, kind="stable")[:keep])
    return TOK.encode(" ".join(words[i] for i in chosen))[:keep]


def test_frequency_reference_parity():
    caps = (
        LONG + SHORT + ["unbelievably extraordinarily antidisestablishmentarianism", "photograph photographs"]
    )
    for rule, t in (("authors", None), ("authors", 1e-2), ("clamped", 1e-2)):
        p = TABLE.p_mask(t, rule)
        for k in (4, 8, 16):
            ours, theirs = np.random.default_rng(5), np.random.default_rng(5)
            for c in caps:
                got = text_ids(M.frequency([c], k, ours, table=TABLE, threshold=t, rule=rule)[0])
                assert got == reference_frequency(c, k, theirs, p), (rule, t, k, c)


def test_frequency_fill_modes():
    long_words = "unbelievably extraordinarily antidisestablishmentarianism"
    n_tok = len(full_ids(long_words))
    assert n_tok > 6
    ref = M.frequency([long_words], 8, np.random.default_rng(0), table=TABLE)
    assert len(text_ids(ref[0])) == 3  # reference quirk: all 3 words kept, cut to 3 tokens
    tok = M.frequency([long_words] + LONG, 8, np.random.default_rng(0), table=TABLE, fill="tokens")
    for row, cap in zip(tok, [long_words] + LONG, strict=True):
        kept = text_ids(row)
        assert len(kept) == 6 and is_subsequence(kept, full_ids(cap))
    with pytest.raises(ValueError, match="fill='all'"):
        M.frequency(LONG, 8, None, table=TABLE, fill="all")


def test_frequency_needs_a_table(tmp_path):
    with pytest.raises(ValueError, match="needs a word-frequency table"):
        M.frequency(LONG, 8, None)
    with pytest.raises(FileNotFoundError, match="not found"):
        M.frequency(LONG, 8, None, table=tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: malformed"):
        M.frequency(LONG, 8, None, table=str(bad))
    with pytest.raises(TypeError, match="FreqTable or a path"):
        M.frequency(LONG, 8, None, table=42)


# --------------------------------------------------------------------------- syntax
def test_syntax_prefers_nouns():
    cap = "the big dog and a small cat in the green park"
    assert M.decode(M.syntax([cap], 5, None)[0]) == "dog cat park"
    assert M.decode(M.syntax([cap], 8, None)[0]) == "big dog small cat green park"  # then adjectives
    for cap in LONG + ["the old man is reading a newspaper on the wooden bench"]:
        words = T.split_words(cap)
        prio = [pos.priority(t) for t in pos.tag(T.split_cased(cap))]
        for k in (4, 6, 8):
            kept = text_ids(M.syntax([cap], k, None, fill="tokens")[0])
            keep = [i for i, w in enumerate(words) if is_subsequence(list(T.word_ids(w)), kept)]
            # what syntax kept never ranks below what it dropped (ties: earlier words first)
            dropped = [prio[i] for i in range(len(words)) if i not in keep]
            assert max(prio[i] for i in keep) <= min(dropped, default=9), (cap, k)


def test_syntax_taggers(monkeypatch):
    assert pos.tagger_name("auto") in ("perceptron", "brill")
    assert pos.tagger_name("brill") == "brill"
    assert pos.priority("NNS") == pos.priority("PROPN") == 1 and pos.priority("DET") == 4
    with pytest.raises(ValueError, match="tagger='bogus'"):
        pos.tagger_name("bogus")
    monkeypatch.setattr(pos, "_perceptron_data", lambda: None)
    pos.tagger_name.cache_clear()
    try:
        assert pos.tagger_name("auto") == "brill"
        with pytest.raises(LookupError, match="never downloads"):
            pos.tagger_name("perceptron")
    finally:
        pos.tagger_name.cache_clear()
    assert M.syntax(LONG, 8, None, tagger="brill").shape == (3, 8)


# --------------------------------------------------------------------------- MaskingTokenizer
def test_masking_tokenizer_pickles_and_reproduces(tmp_path):
    path = tmp_path / "t.json"
    TABLE.save(path)
    tok = M.MaskingTokenizer("frequency", 8, seed=3, table=str(path))
    first = tok(LONG)
    clone = pickle.loads(pickle.dumps(tok))
    assert torch.equal(clone(LONG), first)
    assert torch.equal(M.MaskingTokenizer("frequency", 8, seed=3, table=TABLE)(LONG), first)
    assert tok(LONG[0]).shape == (1, 8) and tok(LONG, context_length=8).shape == (3, 8)
    assert tok.context_length == 8
    with pytest.raises(ValueError, match="K=8"):
        tok(LONG, context_length=16)
    with pytest.raises(ValueError, match="takes no option"):
        M.MaskingTokenizer("random", 8, table=TABLE)
    with pytest.raises(ValueError, match="needs a word-frequency table"):
        M.MaskingTokenizer("frequency", 8)
    with pytest.raises(ValueError, match="K"):
        M.MaskingTokenizer("random", 2)
    assert "frequency" in repr(tok)


class Captions(torch.utils.data.Dataset):
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __len__(self):
        return 64

    def __getitem__(self, i):
        return self.tokenizer(LONG[0])[0]  # as open_clip_train does, per sample


def test_masking_tokenizer_in_dataloader_workers():
    def epoch(tok, seed=0):
        torch.manual_seed(seed)
        dl = torch.utils.data.DataLoader(Captions(tok), batch_size=8, num_workers=2)
        return torch.cat(list(dl))

    tok = M.MaskingTokenizer("random", 8, seed=1)
    tok(LONG)  # an rng made in the parent must not be inherited by the workers
    a, b = epoch(tok), epoch(tok)
    assert a.shape == (64, 8) and torch.equal(a, b)  # reproducible
    assert not torch.equal(a[:8], a[8:16])  # the two workers draw different masks
    assert not torch.equal(a, epoch(tok, seed=1))  # a new epoch seed gives new masks
    fixed = M.MaskingTokenizer("random", 8, seed=1, follow_torch_seed=False)
    assert torch.equal(epoch(fixed), epoch(fixed, seed=1))


# --------------------------------------------------------------------------- CLI
def test_cli_freq_rule_and_authors_file(tmp_path, capsys):
    """`clipf mask` reads a file in the authors' format with negative P; --freq-rule picks the rule."""
    src = tmp_path / "caps.txt"
    src.write_text("the dog a koala the giraffe a zebra the dog\n" * 4)
    authors = tmp_path / "authors.json"
    authors.write_text(
        json.dumps({"the": 0.99, "a": 0.98, "dog": 0.55, "koala": -2.16, "giraffe": -9.0, "zebra": -30.6})
    )
    assert (
        M.cli(["--masker", "frequency", "--tokens", "4", "--table", str(authors), "--input", str(src)]) == 0
    )
    assert {json.loads(line)["kept"] for line in capsys.readouterr().out.splitlines()} == {"giraffe zebra"}
    table = tmp_path / "t.json"
    FreqTable(counts=RULE_COUNTS, total=1_000_000).save(table)
    base = [
        "--masker",
        "frequency",
        "--tokens",
        "3",
        "--table",
        str(table),
        "--threshold",
        "1e-3",
        "--input",
        str(src),
    ]
    assert M.cli([*base, "--freq-rule", "authors"]) == 0
    assert {json.loads(line)["kept"] for line in capsys.readouterr().out.splitlines()} == {"zebra"}
    assert M.cli([*base, "--freq-rule", "clamped", "--seed", "1"]) == 0
    assert len({json.loads(line)["kept"] for line in capsys.readouterr().out.splitlines()}) > 1
    assert M.cli(["--masker", "random", "--tokens", "8", "--freq-rule", "clamped"]) == 2
    assert "--freq-rule does not apply to the 'random' masker" in capsys.readouterr().err
    assert M.cli([*base, "--freq-rule", "word2vec"]) == 2  # argparse: invalid choice


def test_cli_round_trip(tmp_path, capsys):
    table = tmp_path / "t.json"
    TABLE.save(table)
    src = tmp_path / "caps.txt"
    src.write_bytes("\n".join(LONG + ["", "日本語"]).encode() + b"\nbad \xff byte\n")
    rc = M.cli(["--masker", "frequency", "--tokens", "8", "--table", str(table), "--input", str(src)])
    out, err = capsys.readouterr()
    assert rc == 0 and "1 line(s) with invalid UTF-8 (first: line 6)" in err
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["caption"] for r in recs] == LONG + ["", "日本語", "bad \ufffd byte"]
    for r in recs:
        assert len(r["ids"]) == 8 and r["ids"][0] == M.SOT
        assert r["kept"] == M.decode(r["ids"])
    assert recs[3]["ids"] == [M.SOT, M.EOT] + [0] * 6
    again = M.cli(["--masker", "frequency", "--tokens", "8", "--table", str(table), "--input", str(src)])
    assert again == 0 and capsys.readouterr().out == out  # same seed, same masks


@pytest.mark.parametrize(
    "args, message",
    [
        (["--masker", "nope", "--tokens", "8"], "unknown masker 'nope'"),
        (["--masker", "random", "--tokens", "2"], "must be >= 3"),
        (["--masker", "frequency", "--tokens", "8"], "needs a word-frequency table"),
        (["--masker", "frequency", "--tokens", "8", "--table", "/no/such.json"], "not found: /no/such.json"),
        (["--masker", "random", "--tokens", "8", "--tagger", "brill"], "--tagger does not apply"),
        (["--masker", "random", "--tokens", "8", "--input", "/no/such.txt"], "/no/such.txt"),
    ],
)
def test_cli_errors(args, message, capsys):
    assert M.cli(args) == 2
    assert message in capsys.readouterr().err


def test_python_m_clipf_mask():
    proc = subprocess.run(
        [sys.executable, "-m", "clipf", "mask", "--masker", "simple", "--tokens", "6", "--seed", "2"],
        input="\n".join(LONG), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(recs) == 3 and all(len(r["ids"]) == 6 and len(r["kept"].split()) >= 1 for r in recs)
