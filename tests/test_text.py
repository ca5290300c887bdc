"""clipf.text matches open_clip's text pipeline and stays torch-free; clipf.files writes atomically."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from clipf import files, text

SAMPLES = [
    "A photo of a Dog on the beach!", "  two\tcats\n\nin   a box  ", "café crème &amp; croissant",
    "Ünïcödé wörds 123 and 4.5", "emoji 🐶🐱 and CJK 猫", "it's the dog's toy, isn't it?", "",
    "<start_of_text> tags <end_of_text>", "mojibake: Ã©tÃ©",
]  # fmt: skip


def test_cleaning_and_split_match_open_clip():
    from open_clip import tokenizer as oc

    tok = oc.SimpleTokenizer()
    assert text.PATTERN == tok.pat.pattern
    assert text.byte_encoder() == oc.bytes_to_unicode()
    for s in SAMPLES:
        cleaned = oc.whitespace_clean(oc.basic_clean(s)).lower()
        assert text.clean(s) == cleaned, s
        assert text.split_words(s) == tok.pat.findall(cleaned), s
        assert [t for w in text.encode_words(s)[1] for t in w] == tok.encode(s), s


def test_importing_and_splitting_does_not_load_torch():
    code = (
        "import sys; from clipf import text, files, freq; text.split_words('a dog'); "
        "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_write_json_is_atomic_and_world_readable(tmp_path):
    path = tmp_path / "sub" / "a.json"
    files.write_json(path, {"b": 1, "a": [1.5]})
    assert json.loads(path.read_text()) == {"b": 1, "a": [1.5]}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask

    class Boom:
        pass

    def explode(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.atomic_write(path, explode)
    assert json.loads(path.read_text()) == {"b": 1, "a": [1.5]}  # the old content survives
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temp file left
    files.write_json(path, {"x": Boom()})  # unknown objects are written as their repr
    assert json.loads(path.read_text())["x"].startswith("<")


def test_sort_keys(tmp_path):
    files.write_json(tmp_path / "s.json", {"b": 1, "a": 2}, sort_keys=True)
    assert (tmp_path / "s.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
