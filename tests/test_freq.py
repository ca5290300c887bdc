"""Word-frequency tables: counting (every input kind, parallel, the authors' count and cleaning), the two
P rules, the authors' {word: P} files (load, export, bad input), `clipf freq show`, the t transfer."""

from __future__ import annotations

import gzip
import io
import json
import math
import subprocess
import sys
import tarfile
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from clipf import freq as F
from clipf import masking as M
from clipf import sources as S
from clipf import text as T

CAPTIONS = [
    "A dog runs on the beach.",
    "The dog and the cat, at http://www.example.com",
    "Two cats sleeping on a sofa in 2024",
    "naïve café photo of the Eiffel tower",
    "a supercalifragilisticexpialidociousnessxyzabc word",
    "the dog",
]


def expected_counts(captions=CAPTIONS) -> Counter:
    return Counter(w for c in captions for w in T.split_words(c))


def write_txt(path, captions=CAPTIONS):
    path.write_text("\n".join(captions) + "\n", encoding="utf-8")
    return path


def write_tar(path, captions=CAPTIONS, fmt=tarfile.USTAR_FORMAT, prefix=""):
    with tarfile.open(path, "w", format=fmt) as tf:
        for i, c in enumerate(captions):
            for ext, data in ((".txt", c.encode()), (".json", b"{}"), (".jpg", b"\xff\xd8" * 300)):
                info = tarfile.TarInfo(f"{prefix}{i:05d}{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def build(inputs, **kw):
    return F.build_table([str(p) for p in inputs], progress=False, **{"min_count": 1, **kw})


# --------------------------------------------------------------------------- counting
def test_txt_counts_match_the_maskers_words(tmp_path):
    table = build([write_txt(tmp_path / "c.txt")])
    assert table.counts == dict(expected_counts())
    assert table.total == sum(expected_counts().values()) and table.n_captions == len(CAPTIONS)
    assert "." in table.counts and "2" in table.counts  # open_clip's split: symbols, single digits


@pytest.mark.parametrize("kind", ["csv", "tsv", "parquet", "tar", "wds"])
def test_every_input_kind(tmp_path, kind):
    df = pd.DataFrame({"url": ["u"] * len(CAPTIONS), "caption": CAPTIONS})
    if kind == "csv":
        df.to_csv(path := tmp_path / "c.csv", index=False)
    elif kind == "tsv":
        df.to_csv(path := tmp_path / "c.tsv", index=False, sep="\t")
    elif kind == "parquet":
        df.to_parquet(path := tmp_path / "c.parquet", row_group_size=2)
    elif kind == "tar":
        path = write_tar(tmp_path / "00000.tar")
    else:
        import webdataset as wds

        path = tmp_path / "00001.tar"
        with wds.TarWriter(str(path)) as sink:
            for i, c in enumerate(CAPTIONS):
                sink.write({"__key__": f"{i:05d}", "txt": c, "json": {"i": i}})
    table = build([path])
    assert table.counts == dict(expected_counts()) and table.n_captions == len(CAPTIONS)


def test_column_errors(tmp_path):
    pd.DataFrame({"text": CAPTIONS}).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame({"text": CAPTIONS}).to_parquet(tmp_path / "c.parquet")
    for name in ("c.csv", "c.parquet"):
        with pytest.raises(ValueError, match=f"{name}: no column 'caption'; columns: text"):
            build([tmp_path / name])
    assert build([tmp_path / "c.csv"], column="text").counts == dict(expected_counts())


def test_parallel_chunks_match_serial(tmp_path, monkeypatch):
    captions = CAPTIONS * 40
    paths = [write_txt(tmp_path / "a.txt", captions), write_tar(tmp_path / "b.tar", captions)]
    pd.DataFrame({"caption": captions}).to_csv(csv_path := tmp_path / "c.csv", index=False)
    serial = build([*paths, csv_path])
    monkeypatch.setattr(S, "CSV_ROWS", 7)  # csv batches are read by the parent: many small tasks
    for chunk in (7, 64, 1000, None):  # chunk boundaries inside lines, on newlines, ..., automatic
        parallel = build([*paths, csv_path], workers=2, chunk_bytes=chunk)
        assert parallel.counts == serial.counts and parallel.n_captions == serial.n_captions
        assert parallel.total == serial.total
    assert serial.counts == {w: 3 * c for w, c in expected_counts(captions).items()}


def test_tar_reader_matches_tarfile(tmp_path):
    """The header-by-header reader gives tarfile's .txt members for ustar (long prefix), GNU long
    names and PAX headers, and gzip-compressed shards go through tarfile."""
    deep = "d" * 90 + "/" + "e" * 60 + "/"
    shards = [
        write_tar(tmp_path / "ustar.tar", prefix=deep),
        write_tar(tmp_path / "gnu.tar", fmt=tarfile.GNU_FORMAT, prefix="x" * 120 + "/"),
        write_tar(tmp_path / "pax.tar", fmt=tarfile.PAX_FORMAT, prefix="ü" * 70 + "/"),
    ]
    for shard in shards:
        with tarfile.open(shard) as tf:
            want = [(m.name, tf.extractfile(m).read()) for m in tf if m.name.endswith(".txt")]
        assert list(S.tar_texts(str(shard))) == want and len(want) == len(CAPTIONS), shard.name
    gz = tmp_path / "gz.tar"
    gz.write_bytes(gzip.compress(shards[0].read_bytes()))
    assert build([gz]).counts == dict(expected_counts())
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(shards[0].read_bytes() + b"junk")
    with pytest.warns(UserWarning, match="garbage.tar: unreadable tar shard .*garbage data after byte"):
        assert build([garbage]).counts == dict(expected_counts())  # everything before the damage


def test_inputs_dirs_globs_braces(tmp_path):
    for i in range(3):
        write_tar(tmp_path / f"{i:05d}.tar")
    want = {w: 3 * c for w, c in expected_counts().items()}
    assert build([tmp_path]).counts == want
    assert build([str(tmp_path / "*.tar")]).counts == want
    assert build([str(tmp_path / "{00000..00002}.tar")]).counts == want
    with pytest.raises(FileNotFoundError, match="input not found: .*00003.tar"):
        build([str(tmp_path / "{00000..00003}.tar")])
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="unsupported input kind '.json'"):
        build([tmp_path / "x.json"])


def test_min_count_cut_sets_the_total(tmp_path):
    """As the authors count: words under min_count are dropped and total is the sum of the rest."""
    path = write_txt(tmp_path / "c.txt")
    raw = expected_counts()
    table = build([path], min_count=2)
    assert table.counts == {w: c for w, c in raw.items() if c >= 2}
    assert table.total == sum(table.counts.values()) < sum(raw.values())
    assert table.stats["words_before_min_count"] == sum(raw.values())
    assert table.frequency("dog") == 3 / table.total
    with pytest.raises(ValueError, match="no word is seen 9 times or more"):
        build([path], min_count=9)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="min_count must be an integer >= 1"):
            build([path], min_count=bad)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        build([path], workers=0)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.warns(UserWarning, match="empty caption"), pytest.raises(ValueError, match="no words"):
        build([tmp_path / "empty.txt"])


# The authors' cleaning script (tests/word_clean_frequency.py), one case per rule, on the plain word.
CLEAN_CASES = [
    ("!!", "symbol"), (",", "symbol"), ("://", "symbol"), ("42", "number"), ("3.14", "number"),
    ("7", "number"), ("x", "short"), ("café", "non_ascii"), ("—", "non_ascii"), ("日本語", "non_ascii"),
    ("a" * 26, "too_long"), ("https", "url_fragment"), ("wwwfoo", "url_fragment"),
    ("blogspotting", "url_fragment"), ("wordpress", "url_fragment"), ("'s", "stopword"),
    ("'re", "stopword"), ("the", "stopword"), ("don", "stopword"), ("ourselves", "stopword"),
    ("a" * 25, "kept"), ("com", "kept"), ("dog", "kept"), ("<start_of_text>", "kept"), ("'", "symbol"),
]  # fmt: skip


@pytest.mark.parametrize("word, category", CLEAN_CASES)
def test_cleaning_rules(word, category):
    assert F.CleanOptions().classify(word) == category


def test_cleaning_keeps_the_total_and_is_recorded(tmp_path):
    path = write_txt(tmp_path / "c.txt")
    plain, clean = build([path]), build([path], clean=True)
    for gone in ("the", "a", "on", ".", ",", "2", "0", "http", "www", "naïve", "café"):
        assert gone in plain.counts and gone not in clean.counts, gone
    assert {"dog", "beach", "cats", "photo", "eiffel", "tower", "com"} <= set(clean.counts)
    assert "supercalifragilisticexpialidociousnessxyzabc" not in clean.counts  # over 25 characters
    assert clean.total == plain.total > sum(clean.counts.values())  # their cleaning runs on the P file
    assert clean.frequency("dog") == plain.frequency("dog")
    assert clean.clean["stopwords"] is True and clean.clean["max_len"] == 25
    assert clean.stats["cleaned_types"]["stopword"] >= 5 and "kept" not in clean.stats["cleaned_types"]
    assert F.CleanOptions(stopwords=False).keeps("the") and not F.CleanOptions().keeps("'s")
    assert F.CleanOptions(max_len=None).keeps("a" * 60)
    assert "the" in F.stopwords() and len(F.stopwords()) == 179


def reference_counts(captions: list[str], min_count: int) -> tuple[dict[str, int], int]:
    """The authors' count as their description reads: open_clip's encode_text words (basic clean,
    whitespace clean, lower case, the tokenizer's regex, byte-level form), words under min_count
    dropped, total = the sum of the counts left."""
    from open_clip import tokenizer as oc

    tok = oc.SimpleTokenizer()
    counter: Counter = Counter()
    for caption in captions:
        cleaned = oc.whitespace_clean(oc.basic_clean(caption)).lower()
        counter.update(
            "".join(tok.byte_encoder[b] for b in w.encode("utf-8")) for w in tok.pat.findall(cleaned)
        )
    kept = {w: c for w, c in counter.items() if c >= min_count}
    return kept, sum(kept.values())


def test_counting_and_export_parity_with_the_authors(tmp_path):
    """`clipf freq build` + `clipf freq export` give the authors' file for the same captions, bit for
    bit: their words, their min-count cut and total, their 1 - round(sqrt(t/f), 6)."""
    rng = np.random.default_rng(0)
    vocab = "the a dog café naïve photo of on beach it's don't 2024 &amp; Ünïcödé — #sunset :) x".split()
    captions = [" ".join(rng.choice(vocab, rng.integers(3, 12))) for _ in range(300)]
    captions += ["a rare zebra", "Stock   Photo\tof A   DOG", "mojibake: Ã©tÃ© caf\u00c3\u00a9"] * 6
    path = write_txt(tmp_path / "caps.txt", captions)
    counts, total = reference_counts(captions, 5)
    t = 1e-2
    ref = {w: 1 - round(np.sqrt(t / (c / total)), 6) for w, c in counts.items()}
    assert any(p < 0 for p in ref.values()) and any(p > 0 for p in ref.values())
    table_path, out = tmp_path / "t.json", tmp_path / "p.json"
    assert F.cli(["build", str(path), "--out", str(table_path), "--no-progress"]) == 0  # --min-count 5
    table = F.load_table(table_path)
    assert table.total == total and {T.byte_form(w): c for w, c in table.counts.items()} == counts
    assert (
        F.cli(["export", str(table_path), "--threshold", str(t), "--rule", "authors", "--out", str(out)]) == 0
    )
    written = json.loads(out.read_text())
    assert written == ref and all(isinstance(v, float) for v in written.values())
    assert "caf\u00c3\u00a9" in written and "café" not in written  # keys in byte-level form, as theirs
    assert out.read_text().isascii()  # json.dump's default escaping, as theirs


def test_build_runs_without_torch(tmp_path):
    src = write_tar(tmp_path / "00000.tar", CAPTIONS * 20)
    out = tmp_path / "t.json"
    code = (
        "import sys; from clipf.cli import main; "
        f"rc = main(['freq', 'build', {str(src)!r}, {str(tmp_path / '00000.tar')!r}, '--out', {str(out)!r}, "
        "'--workers', '2', '--min-count', '1', '--no-progress']); "
        "main(['freq', 'show', " + repr(str(out)) + "]); "
        "print(rc, sorted(m for m in ('torch', 'open_clip') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "0 []"
    assert F.load_table(out).counts == {w: 40 * c for w, c in expected_counts().items()}


def test_bad_input_is_counted_and_reported(tmp_path):
    txt = tmp_path / "c.txt"
    txt.write_bytes(b"a good caption\n\n   \nbad \xff\xfe bytes\nfine again\nmore \xc3 bad\n")
    with pytest.warns(UserWarning) as record:
        table = build([txt])
    message = str(record[0].message)
    assert "2 caption(s) with invalid UTF-8" in message and f"{txt} line 4" in message
    assert "2 empty caption(s) skipped" in message
    assert table.counts["bad"] == 2 and table.stats["invalid_utf8"] == 2 and table.n_captions == 4
    with pytest.warns(UserWarning, match=r"line 4\)"):  # located correctly from any chunk
        build([txt], workers=2, chunk_bytes=5)

    shard = write_tar(tmp_path / "ok.tar")
    for cut, n in ((512 + 5, 0), (1500, 1), (2560 + 100, 1)):  # in a caption, a header, skipped data
        broken = tmp_path / f"broken{cut}.tar"
        broken.write_bytes(shard.read_bytes()[:cut])
        with pytest.warns(UserWarning, match=f"broken{cut}.tar: unreadable tar shard"):
            table = build([shard, broken])
        assert table.stats["errors"] == 1 and table.n_captions == len(CAPTIONS) + n
    bad_sum = bytearray(shard.read_bytes())
    bad_sum[1024 + 10] ^= 1  # second header corrupted: the first caption is counted, then it stops
    (tmp_path / "sum.tar").write_bytes(bytes(bad_sum))
    with pytest.warns(UserWarning, match="bad or cut header at byte 1024"):
        assert build([tmp_path / "sum.tar"]).n_captions == 1
    with pytest.warns(UserWarning, match="unreadable"), pytest.raises(ValueError, match="no words in 1"):
        build([tmp_path / "broken517.tar"])

    pd.DataFrame({"caption": ["a dog", None, "a cat"]}).to_parquet(tmp_path / "n.parquet")
    with pytest.warns(UserWarning, match="1 null/non-text caption cell"):
        assert build([tmp_path / "n.parquet"]).n_captions == 2
    (tmp_path / "c.csv").write_bytes(b"caption\na dog\nbad \xff cell\n")
    with pytest.warns(UserWarning, match=r"c.csv row 2\)"):
        build([tmp_path / "c.csv"])


# --------------------------------------------------------------------------- the rules
RULE_TABLE = F.FreqTable(counts={"the": 400_000, "dog": 2_000, "zebra": 40, "okapi": 1}, total=1_000_000)


def test_authors_rule_is_their_expression_bit_for_bit():
    for t in (1e-6, 1e-4, 2e-3, 0.05):
        p = RULE_TABLE.p_mask(t)
        assert p == RULE_TABLE.p_mask(t, "authors")
        for w, c in RULE_TABLE.counts.items():
            freqs = c / RULE_TABLE.total
            assert p[w] == 1 - round(np.sqrt(t / freqs), 6), (t, w)  # no tolerance: same float
    p = RULE_TABLE.p_mask(1e-3)
    assert p["okapi"] == pytest.approx(1 - math.sqrt(1000), abs=1e-6) and p["okapi"] < -30  # no clamp
    assert p["zebra"] < 0 < p["dog"] < p["the"] < 1
    assert RULE_TABLE.p_mask(1e-3) is RULE_TABLE.p_mask(1e-3, "authors")  # cached
    assert F.DEFAULT_RULE == "authors" and F.RULES == ("authors", "clamped")


def test_clamped_rule_is_the_old_expression_bit_for_bit():
    for t in (1e-6, 1e-3, 0.05):
        p = RULE_TABLE.p_mask(t, "clamped")
        for w, c in RULE_TABLE.counts.items():
            assert p[w] == max(0.0, 1.0 - math.sqrt(t * RULE_TABLE.total / c))
    assert RULE_TABLE.p_mask(1e-3, "clamped")["okapi"] == 0.0
    curve = F.p_values([1e-2, 1e-4, 1e-8], 1e-6, "clamped")
    assert curve[-1] == 0 and np.allclose(curve[:2], [0.99, 0.9])
    assert F.p_values([1e-8], 1e-6)[0] == pytest.approx(-9.0)


@pytest.mark.parametrize("bad", [0, -1e-6, float("nan"), float("inf"), "1e-6", True])
def test_bad_thresholds_and_rules(bad):
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        RULE_TABLE.p_mask(bad)
    with pytest.raises(ValueError, match="rule='word2vec' is not one of 'authors', 'clamped'"):
        RULE_TABLE.p_mask(1e-6, "word2vec")


def test_save_load_and_p_mask(tmp_path):
    table = build([write_txt(tmp_path / "c.txt")], clean=True)
    table.save(tmp_path / "t.json")
    back = F.load_table(tmp_path / "t.json")
    assert back.counts == table.counts and back.total == table.total and back.clean == table.clean
    assert back.sources == [str(tmp_path / "c.txt")] and not back.published
    assert back.p_mask() == back.p_mask(F.DEFAULT_THRESHOLD, F.DEFAULT_RULE)
    assert back.p_mask(1e-2)["dog"] < back.p_mask(1e-6)["dog"]  # threshold changes, no recount
    assert json.loads((tmp_path / "t.json").read_text())["format"] == F.FORMAT == "clipf-freq/2"


# --------------------------------------------------------------------------- the authors' files
def test_published_files_with_negative_p(tmp_path):
    published = {"dog": 0.9, "the": 1.0, "caf\u00c3\u00a9": -0.467123, "zebra": -5.21, "beach": 0}
    (tmp_path / "p.json").write_text(json.dumps(published))
    table = F.load_table(tmp_path / "p.json")
    want = {"dog": 0.9, "the": 1.0, "café": -0.467123, "zebra": -5.21, "beach": 0.0}
    assert table.published and table.p_mask() == want and table.p_mask(rule="authors") == want
    assert table.p_mask(rule="clamped") == {**want, "café": 0.0, "zebra": 0.0}
    with pytest.warns(UserWarning, match="threshold 1e-05 ignored"):
        table.p_mask(1e-5)
    (tmp_path / "p.py.json").write_text(repr({"dog": 0.9, "goldfinch": -5.21}))  # eval()-style literal
    assert F.load_table(tmp_path / "p.py.json").p_mask() == {"dog": 0.9, "goldfinch": -5.21}
    out = M.frequency(["the dog the dog zebra the beach"], 3, np.random.default_rng(0), table=table)
    assert M.decode(out[0]) == "zebra"  # P < 0 beats everything; published P used directly
    shown = F.show(table)
    assert "published" in shown and "zebra" in shown.split("word")[-1]
    assert "P < 0" in shown and "        2" in shown.split("P < 0")[1].splitlines()[0]


def test_export_round_trip_gives_identical_masks(tmp_path):
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(60)] + ["café", "naïve", "the", "a", "of"]
    weights = 1 / np.arange(1, len(words) + 1)
    captions = [
        " ".join(rng.choice(words, rng.integers(4, 30), p=weights / weights.sum())) for _ in range(400)
    ]
    table = build([write_txt(tmp_path / "c.txt", captions)], min_count=2)
    for rule, t in (("authors", 1e-3), ("authors", 3e-2), ("clamped", 1e-2)):
        out = tmp_path / f"{rule}-{t}.json"
        written = F.export_probs(table, out, t, rule)
        loaded = F.load_table(out)
        assert loaded.published and loaded.p_mask() == table.p_mask(t, rule)
        assert list(written)[:3] == [T.byte_form(w) for w, _ in table.top(3)]  # most frequent first
        for k in (4, 6, 8):
            a = M.frequency(captions, k, np.random.default_rng(k), table=table, threshold=t, rule=rule)
            b = M.frequency(captions, k, np.random.default_rng(k), table=loaded)
            assert a.equal(b), (rule, t, k)
        assert sum(p < 0 for p in written.values()) > 0 if rule == "authors" else min(written.values()) >= 0
    again = tmp_path / "again.json"  # a published file exports as itself
    F.export_probs(F.load_table(tmp_path / "authors-0.001.json"), again)
    assert json.loads(again.read_text()) == json.loads((tmp_path / "authors-0.001.json").read_text())


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "malformed table: not JSON"),
        (b"[1, 2]", "non-empty JSON object, got list"),
        (b"{}", "non-empty JSON object, got an empty object"),
        (b'{"dog": 1.5}', "entry 'dog': value 1.5 is above 1"),
        (b'{"dog": 0.5, "cat": 1.0000001}', "entry 'cat': value 1.0000001 is above 1"),
        (b'{"dog": NaN}', "entry 'dog': value nan is not a finite number"),
        (b'{"dog": -Infinity}', "entry 'dog': value -inf is not a finite number"),
        (b'{"dog": "x"}', "entry 'dog': value 'x' is not a number"),
        (b'{"dog": "0.5"}', "entry 'dog': value '0.5' is not a number"),
        (b'{"dog": true}', "entry 'dog': value 'True' is not a number"),
        (b'{"dog": null}', "entry 'dog': value 'None' is not a number"),
        (b'{"dog": [0.5]}', "entry 'dog': value '[0.5]' is not a number"),
        (b'{"dog": 10, "the": 4000}', "looks like a {word: count} file"),
        (b'{"dog": 0.5, "dog": 0.7}', "key 'dog' appears twice"),
        (b"{'dog': 0.5, 'dog': -0.7}", "key 'dog' appears twice"),
        ('{"café": 0.5, "caf\u00c3\u00a9": 0.4}'.encode(), "entries 'café' and 'cafÃ©' are the same word"),
        (b'{"format": "clipf-freq/1", "total": 3, "counts": {"a": 3}}', "format 'clipf-freq/1'"),
        (b'{"format": "clipf-freq/3", "total": 3, "counts": {"a": 3}}', "rebuild it with `clipf freq build`"),
        (b'{"format": "clipf-freq/2", "total": 3}', "without a 'counts' object"),
        (b'{"format": "clipf-freq/2", "total": 3, "counts": {}}', "counts table with no words"),
        (b'{"format": "clipf-freq/2", "total": 3, "counts": {"a": -1}}', "count of 'a' is -1"),
        (b'{"format": "clipf-freq/2", "total": 3, "counts": {"a": 0}}', "count of 'a' is 0"),
        (b'{"format": "clipf-freq/2", "total": 3, "counts": {"a": 1, "a": 2}}', "key 'a' appears twice"),
        (b'{"format": "clipf-freq/2", "total": 1, "counts": {"a": 2}}', "'total' is 1"),
        (b'{"dog": 0.5, "\xff": 1}', "not a UTF-8 text file"),
    ],
)
def test_malformed_tables(tmp_path, content, message):
    (tmp_path / "bad.json").write_bytes(content)
    with pytest.raises(ValueError, match="bad.json") as err:
        F.load_table(tmp_path / "bad.json")
    assert message in str(err.value)
    with pytest.raises(ValueError, match="bad.json"):  # the masker and `clipf mask` say the same
        M.frequency(["a dog"], 8, None, table=str(tmp_path / "bad.json"))


def test_a_word_called_format_is_a_word(tmp_path):
    (tmp_path / "p.json").write_text('{"format": 0.25, "dog": -1.5}')
    assert F.load_table(tmp_path / "p.json").p_mask() == {"format": 0.25, "dog": -1.5}


def test_missing_table(tmp_path):
    with pytest.raises(FileNotFoundError, match="table not found: .*nope.json"):
        F.load_table(tmp_path / "nope.json")


# --------------------------------------------------------------------------- show, transfer
def test_p_summary_and_show(tmp_path, capsys):
    s = F.p_summary(RULE_TABLE, 1e-3)
    assert s["types"] == {"positive": 2.0, "zero": 0.0, "negative": 2.0}
    assert s["tokens"]["negative"] == pytest.approx(41 / 1e6) and s["tokens"]["positive"] == pytest.approx(
        0.402
    )
    assert s["tokens"]["missing"] == pytest.approx(1 - 402_041 / 1e6)
    clamped = F.p_summary(RULE_TABLE, 1e-3, "clamped")
    assert clamped["types"] == {"positive": 2.0, "zero": 2.0, "negative": 0.0}
    exact = F.FreqTable(counts={"a": 100, "b": 1}, total=101)  # f(b) = t exactly: P = 0 either way
    assert F.p_summary(exact, 1 / 101)["types"]["zero"] == 1

    src = write_txt(tmp_path / "c.txt", CAPTIONS * 3)
    out = tmp_path / "t.json"
    assert F.cli(["build", str(src), "--out", str(out), "--min-count", "2", "--clean", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().err
    table = F.load_table(out)
    args = [
        "show",
        str(out),
        "--top",
        "3",
        "--threshold",
        "0.05",
        "--rule",
        "authors",
        "--thresholds",
        "1e-3",
    ]
    assert F.cli(args) == 0
    shown = capsys.readouterr().out
    want = F.p_summary(table, 0.05)
    assert "rule authors: P = 1 - round(sqrt(t/f), 6) at t = 0.05" in shown and "P@0.001" in shown
    for label, kind in (("P > 0", "positive"), ("P = 0", "zero"), ("P < 0", "negative")):
        row = next(line for line in shown.splitlines() if line.startswith(label)).split()
        assert int(row[3]) == want["types"][kind] and row[4] == f"{want['tokens'][kind]:.2%}"
    assert "not in table" in shown and "dog" in shown
    assert F.cli(["show", str(out), "--rule", "clamped"]) == 0
    assert "max(0, 1 - sqrt(t/f)) at t = 1e-06" in capsys.readouterr().out
    assert F.cli(["show", str(tmp_path / "nope.json")]) == 2
    assert "table not found" in capsys.readouterr().err
    assert F.cli(["show", str(out), "--rule", "bogus"]) == 2
    assert F.cli(["build", str(tmp_path / "none.txt"), "--out", str(out)]) == 2
    assert "input not found" in capsys.readouterr().err
    assert F.cli(["--help"]) == 0


def letters(i: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, ...: alphabetic word names."""
    out, i = "", i + 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(97 + r) + out
    return out


def zipf_table(n_types: int = 3000, tokens: int = 200_000) -> F.FreqTable:
    counts = np.maximum(1, np.round(tokens / (np.arange(1, n_types + 1) * math.log(n_types)))).astype(int)
    return F.FreqTable(counts={letters(i): int(c) for i, c in enumerate(counts)}, total=int(counts.sum()))


def test_transfer_threshold():
    table = zipf_table()
    for share in (0.5, 0.9, F.CC12M_SHARE, 0.99):
        t = F.transfer_threshold(table, share)
        got = F.token_share(table, t)
        levels = sorted(set(table.counts.values()), reverse=True)
        reachable = [sum(c for c in table.counts.values() if c >= lv) / table.total for lv in levels]
        assert abs(got - share) == pytest.approx(min(abs(r - share) for r in reachable))  # nearest step
        assert len(f"{t:e}".split("e")[0].rstrip("0").rstrip(".").replace(".", "")) <= 3  # short decimal
    ts = [F.transfer_threshold(table, s) for s in (0.5, 0.9, 0.99)]
    assert ts[0] > ts[1] > ts[2]  # protecting less of the text = a larger t
    assert F.transfer_threshold(table, 0.9, "clamped") == F.transfer_threshold(table, 0.9)
    assert F.token_share(table, 1e-9) == 1.0
    with pytest.raises(ValueError, match="share must be in"):
        F.transfer_threshold(table, 1.2)
    with pytest.raises(ValueError, match="no counts"):
        F.transfer_threshold(F.FreqTable(probs={"a": 0.5}))


def test_reference_share_is_the_committed_constant():
    pytest.importorskip("wordfreq")
    assert F.reference_share() == pytest.approx(F.CC12M_SHARE, abs=5e-4)
    low, high = F.reference_share(tokens=F.CC12M_TOKENS / 2), F.reference_share(tokens=F.CC12M_TOKENS * 2)
    assert abs(high - low) < 5e-3  # the corpus-size guess (x4 here) barely matters


def test_cli_transfer(tmp_path, capsys):
    path = tmp_path / "z.json"
    zipf_table().save(path)
    assert F.cli(["transfer", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"t = {F.transfer_threshold(zipf_table()):g}:") and "target 97.40%" in out
