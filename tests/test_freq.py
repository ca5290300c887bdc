"""Word-frequency tables: every input kind, parallel counting, cleaning, P_mask, published files, bad input."""

from __future__ import annotations

import io
import json
import math
import tarfile
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from clipf import freq as F
from clipf import masking as M
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


def write_tar(path, captions=CAPTIONS):
    with tarfile.open(path, "w") as tf:
        for i, c in enumerate(captions):
            for ext, data in ((".txt", c.encode()), (".json", b"{}"), (".jpg", b"\xff\xd8")):
                info = tarfile.TarInfo(f"{i:05d}{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def build(inputs, **kw):
    return F.build_table([str(p) for p in inputs], progress=False, **{"min_count": 1, **kw})


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


def test_parallel_chunks_match_serial(tmp_path):
    captions = CAPTIONS * 40
    paths = [write_txt(tmp_path / "a.txt", captions), write_tar(tmp_path / "b.tar", captions)]
    serial = build(paths)
    for chunk in (7, 64, 1000):  # chunk boundaries inside lines, on newlines, ...
        parallel = build(paths, workers=2, chunk_bytes=chunk)
        assert parallel.counts == serial.counts and parallel.n_captions == serial.n_captions
    assert serial.counts == {w: 2 * c for w, c in expected_counts(captions).items()}


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


def test_min_count_and_cleaning(tmp_path):
    path = write_txt(tmp_path / "c.txt")
    raw = expected_counts()
    table = build([path], min_count=2)
    assert table.counts == {w: c for w, c in raw.items() if c >= 2}
    assert table.total == sum(raw.values())  # pruning rare words does not change the others' f
    clean = build([path], clean=True)
    for gone in ("the", "a", "on", ".", ",", "2", "0", "http", "www", "com", "naïve", "café"):
        assert gone in raw and gone not in clean.counts, gone
    assert "supercalifragilisticexpialidociousnessxyzabc" not in clean.counts  # over 30 characters
    assert {"dog", "beach", "cats", "photo", "eiffel", "tower"} <= set(clean.counts)
    assert clean.total == sum(clean.counts.values()) and clean.clean["stopwords"] is True
    assert F.CleanOptions(stopwords=False).keeps("the") and not F.CleanOptions().keeps("'s")
    assert "the" in F.stopwords() and len(F.stopwords()) == 179


def test_save_load_and_p_mask(tmp_path):
    table = build([write_txt(tmp_path / "c.txt")], clean=True)
    table.save(tmp_path / "t.json")
    back = F.load_table(tmp_path / "t.json")
    assert back.counts == table.counts and back.total == table.total and back.clean == table.clean
    assert back.sources == [str(tmp_path / "c.txt")] and not back.published
    for t in (1e-1, 1e-2, 1e-6):
        p = back.p_mask(t)
        for w, c in back.counts.items():
            assert p[w] == pytest.approx(max(0.0, 1 - math.sqrt(t / (c / back.total))))
    assert back.p_mask() == back.p_mask(F.DEFAULT_THRESHOLD)
    assert back.p_mask(1e-2)["dog"] < back.p_mask(1e-6)["dog"]  # threshold changes, no recount
    with pytest.raises(ValueError, match="positive"):
        back.p_mask(0)
    assert json.loads((tmp_path / "t.json").read_text())["format"] == F.FORMAT


def test_published_files(tmp_path):
    published = {"dog": 0.9, "the": 1.0, "caf\u00c3\u00a9": 0.5, "beach": 0}  # key in byte-level form
    (tmp_path / "p.json").write_text(json.dumps(published))
    table = F.load_table(tmp_path / "p.json")
    assert table.published and table.p_mask() == {"dog": 0.9, "the": 1.0, "café": 0.5, "beach": 0.0}
    with pytest.warns(UserWarning, match="threshold 1e-05 ignored"):
        table.p_mask(1e-5)
    (tmp_path / "p.py.json").write_text(repr({"dog": 0.9, "the": 1.0}))  # eval()-style literal
    assert F.load_table(tmp_path / "p.py.json").p_mask() == {"dog": 0.9, "the": 1.0}
    out = M.frequency(["the dog the dog the dog the beach"], 3, np.random.default_rng(0), table=table)
    assert M.decode(out[0]) == "beach"  # P = 0 beats everything; published P used directly
    assert "published" in F.show(table)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "malformed table: not JSON"),
        (b"[1, 2]", "non-empty JSON object, got list"),
        (b"{}", "non-empty JSON object"),
        (b'{"dog": 1.5}', "entry 'dog' has value '1.5'"),
        (b'{"dog": "x"}', "entry 'dog'"),
        (b'{"format": "clipf-freq/1", "total": 3}', "without a 'counts' object"),
        (b'{"format": "clipf-freq/1", "total": 3, "counts": {"a": -1}}', "count of 'a' is -1"),
        (b'{"format": "clipf-freq/1", "total": 3, "counts": {"a": 0}}', "count of 'a' is 0"),
        (b'{"format": "clipf-freq/1", "total": 1, "counts": {"a": 2}}', "'total' is 1"),
        (b'{"dog": 0.5, "\xff": 1}', "not a UTF-8 text file"),
    ],
)
def test_malformed_tables(tmp_path, content, message):
    (tmp_path / "bad.json").write_bytes(content)
    with pytest.raises(ValueError, match="bad.json") as err:
        F.load_table(tmp_path / "bad.json")
    assert message in str(err.value)


def test_missing_table(tmp_path):
    with pytest.raises(FileNotFoundError, match="table not found: .*nope.json"):
        F.load_table(tmp_path / "nope.json")


def test_bad_input_is_counted_and_reported(tmp_path):
    txt = tmp_path / "c.txt"
    txt.write_bytes(b"a good caption\n\n   \nbad \xff\xfe bytes\nfine again\nmore \xc3 bad\n")
    with pytest.warns(UserWarning) as record:
        table = build([txt])
    message = str(record[0].message)
    assert "2 caption(s) with invalid UTF-8" in message and f"{txt} line 4" in message
    assert "2 empty caption(s) skipped" in message
    assert table.counts["bad"] == 2 and table.stats["invalid_utf8"] == 2 and table.n_captions == 4
    # the first bad line is located correctly from any chunk
    with pytest.warns(UserWarning, match=r"line 4\)"):
        build([txt], workers=2, chunk_bytes=5)

    shard = write_tar(tmp_path / "ok.tar")
    for cut in (512 + 5, 1500):  # inside a member's data, inside a header
        broken = tmp_path / f"broken{cut}.tar"
        broken.write_bytes(shard.read_bytes()[:cut])
        with pytest.warns(UserWarning, match=f"broken{cut}.tar: unreadable tar shard"):
            table = build([broken])
        assert table.stats["errors"] == 1

    pd.DataFrame({"caption": ["a dog", None, "a cat"]}).to_parquet(tmp_path / "n.parquet")
    with pytest.warns(UserWarning, match="1 null/non-text caption cell"):
        assert build([tmp_path / "n.parquet"]).n_captions == 2


def test_cli_build_and_show(tmp_path, capsys):
    src = write_txt(tmp_path / "c.txt", CAPTIONS * 3)
    out = tmp_path / "t.json"
    args = ["build", str(src), "--out", str(out), "--min-count", "2", "--clean", "--no-progress"]
    assert F.cli(args) == 0
    assert "wrote" in capsys.readouterr().err
    assert F.cli(["show", str(out), "--top", "3", "--thresholds", "1e-2", "1e-3"]) == 0
    shown = capsys.readouterr().out
    assert "vocabulary:" in shown and "P@0.01" in shown and "P@0.001" in shown and "dog" in shown
    assert F.cli(["show", str(tmp_path / "nope.json")]) == 2
    assert "table not found" in capsys.readouterr().err
    assert F.cli(["build", str(tmp_path / "none.txt"), "--out", str(out)]) == 2
    assert "input not found" in capsys.readouterr().err
    assert F.cli(["--help"]) == 0
