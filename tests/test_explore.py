"""clipf.explore: the functions behind the masker explorer notebook (00_explore) and its widgets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from clipf import explore, masking, text
from clipf.freq import FreqTable

CAPTION = "a photo of a small red circle on a sandy beach near the old lighthouse at dawn"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return explore.ensure_world(root=tmp_path_factory.mktemp("explore"), n_train=64)


@pytest.fixture(scope="module")
def table() -> FreqTable:
    # "a" and "the" frequent, the scene words middling, "lighthouse"/"dawn"/"old" absent (missing)
    counts = {"a": 400, "the": 300, "of": 200, "on": 150, "photo": 40, "small": 30, "red": 30, "circle": 30}
    counts |= {"sandy": 5, "beach": 5, "near": 20, "at": 60}
    return FreqTable(counts=counts, total=2000)


def test_ensure_world_makes_a_small_world_once_and_reuses_it(world: Path):
    assert world.name == "explore" and (world / "train" / "sizes.json").exists()
    assert explore.ensure_world(root=world.parent.parent) == world  # found again, not rebuilt
    assert explore.ensure_world(world) == world
    with pytest.raises(FileNotFoundError, match="not a clipf world"):
        explore.ensure_world(world / "train")


def test_captions_and_table_of_the_world(world: Path, tmp_path: Path):
    captions = explore.world_captions(world, 10)
    assert len(captions) == 10 and all(isinstance(c, str) and c for c in captions)
    counted = explore.table_for(world)
    assert counted.total > 0 and counted.min_count == 1
    assert explore.table_for(world, counted) is counted
    counted.save(tmp_path / "t.json")
    assert explore.table_for(world, tmp_path / "t.json").counts == counted.counts
    (tmp_path / "caps.txt").write_text("first caption\n\n  second one \n")
    assert explore.read_captions(tmp_path / "caps.txt") == ["first caption", "second one"]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="no captions"):
        explore.read_captions(tmp_path / "empty.txt")


def test_world_sheet_is_an_image_and_writes_nothing_into_the_world(world: Path):
    before = sorted(p.relative_to(world) for p in world.rglob("*"))
    image = explore.world_sheet(world, n=4, cols=2)
    assert image.size[0] > 0 and image.mode == "RGB"
    assert sorted(p.relative_to(world) for p in world.rglob("*")) == before


def test_rules_authors_is_unclamped_clamped_is_not(table: FreqTable):
    t = 1e-2
    authors, clamped = explore.p_values(table, t, "authors"), explore.p_values(table, t, "clamped")
    f = table.counts["sandy"] / table.total  # 2.5e-3 < t: negative under the released rule
    assert authors["sandy"] == pytest.approx(1 - math.sqrt(t / f)) and authors["sandy"] < 0
    assert clamped["sandy"] == 0.0
    assert authors["a"] == pytest.approx(clamped["a"]) == pytest.approx(1 - math.sqrt(t / 0.2))
    with pytest.raises(ValueError, match="rule='nope'"):
        explore.p_values(table, t, "nope")
    # a missing word takes the masker's `missing` value: masked first by default
    assert explore.word_p(["lighthouse", "a"], authors) == [1.0, authors["a"]]
    assert explore.word_p(["lighthouse"], authors, missing="keep") == [0.0]


def test_masker_options_only_what_each_masker_takes(table: FreqTable):
    assert explore.masker_opts("truncate", table, 1e-2, "authors") == {}
    freq = explore.masker_opts("frequency", table, 1e-2, "authors")
    assert freq["table"] is table and freq["threshold"] == 1e-2
    assert ("rule" in freq) == explore.supports_rule() == ("rule" in masking.masker_options("frequency"))


def test_align_subsequence_multiset_and_repeated_tokens():
    ids = [(1,), (2, 3), (1,), (4,)]
    assert explore.align(ids, [1, 2, 3]) == [1, 2, 0, 0]
    assert explore.align(ids, [2, 1, 4]) == [0, 1, 1, 1]  # in order: 1 after 2 is the second copy
    assert explore.align(ids, [4, 1, 2]) == [1, 1, 0, 1]  # shuffled: matched as a multiset
    assert explore.align(ids, [1, 1]) == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="not in the caption"):
        explore.align(ids, [9, 1])


@pytest.mark.parametrize("name", list(masking.MASKERS))
def test_mask_caption_keeps_k_minus_2_tokens_of_the_caption(name: str, table: FreqTable):
    k = 6
    m = explore.mask_caption(CAPTION, name, k, 0, **explore.masker_opts(name, table, 1e-2, "authors"))
    words, ids = text.encode_words(CAPTION)
    assert m.words == words and m.ids == ids
    assert 0 < len(m.row) <= k - 2 and sum(m.kept) == len(m.row)
    assert sum(m.whole()) <= k - 2
    full = explore.mask_caption(CAPTION, name, 32, 0, **explore.masker_opts(name, table, 1e-2, "authors"))
    assert all(full.whole()) and full.text == text.decode([t for i in ids for t in i])


def test_survival_truncation_is_deterministic_frequency_favours_rare_words(table: FreqTable):
    k = 6
    trunc = explore.survival(CAPTION, "truncate", k, draws=20).set_index("word")
    assert trunc.loc["photo", "survival"] == 1.0 and trunc.loc["dawn", "survival"] == 0.0
    assert trunc.loc["a", "n"] == 3 and trunc.loc["a", "survival"] == pytest.approx(
        2 / 3
    )  # "a photo of a": 2 of 3 copies
    opts = explore.masker_opts("frequency", table, 1e-2, "authors")
    freq = explore.survival(CAPTION, "frequency", k, draws=100, seed=1, **opts).set_index("word")
    assert list(freq.index) == list(dict.fromkeys(text.split_words(CAPTION)))
    assert freq.loc["sandy", "survival"] > freq.loc["a", "survival"]
    assert freq.loc["the", "survival"] < 0.2


def test_survival_table_and_prompts(table: FreqTable):
    df = explore.survival_table(CAPTION, 8, table, 1e-2, "authors", ["truncate", "frequency"], draws=10)
    assert list(df.columns) == ["word", "P", "truncate", "frequency"]
    assert df["word"].is_unique and df[["truncate", "frequency"]].stack().between(0, 1).all()
    opts = explore.masker_opts("frequency", table, 1e-2, "authors")
    full = explore.prompt_under("a photo of a {c}.", "red circle", "full", "frequency", 4, **opts)
    assert full.text == "a photo of a red circle ."
    masked = explore.prompt_under("a photo of a {c}.", "red circle", "masked", "frequency", 4, **opts)
    assert len(masked.row) == 2 and masked.text != full.text
    with pytest.raises(ValueError, match="protocol"):
        explore.prompt_under("a {c}", "x", "both", "truncate", 4)
    prompts = explore.prompt_table("a photo of a {c}.", "red circle", 4, table, 1e-2)
    assert list(prompts.columns) == list(explore.PROTOCOLS) and set(prompts.index) == set(masking.MASKERS)
    assert prompts["full"].nunique() == 1


def test_render_html_and_figure(table: FreqTable):
    page = explore.render(CAPTION, 6, table, 1e-2, "authors", "masked", draws=10)
    for name in masking.MASKERS:
        assert f"<h4>{name}</h4>" in page
    assert "Survival over 10 draws" in page and "prompt (masked)" in page
    assert explore.colour(1.5) == explore.colour(1.0) != explore.colour(-3.0) == explore.colour(0.0)
    with pytest.raises(ValueError, match="K"):
        explore.render(CAPTION, 2, table)
    df = explore.survival_table(CAPTION, 6, table, draws=5)
    fig = explore.survival_figure(df, "t")
    assert len(fig.axes[0].patches) == len(df) * len(masking.MASKERS)


def test_explorer_widgets_call_back(table: FreqTable, tmp_path: Path):
    pytest.importorskip("ipywidgets")
    ui = explore.explorer(["first caption here", CAPTION], table, draws=5)
    box, files, sliders, choices, _, out = ui.children
    (sample, path, load), (ks, _, pick), (rules, protos) = files.children, sliders.children, choices.children
    assert box.value == "first caption here" and "<h4>frequency</h4>" in out.value
    sample.value = 1
    assert box.value == CAPTION
    before = out.value
    ks.value = 4
    assert out.value != before and "keeps <b>2</b>" in out.value
    pick.value = "syntax"
    assert "<h4>syntax</h4>" in out.value and "<h4>frequency</h4>" not in out.value
    protos.value = "masked"
    assert "prompt (masked)" in out.value
    rules.value = "clamped"
    assert "rule <b>clamped</b>" in out.value
    (tmp_path / "mine.txt").write_text("my own caption about a blue star\n")
    path.value = str(tmp_path / "mine.txt")
    load.click()
    assert box.value == "my own caption about a blue star" and sample.max == 0
    path.value = str(tmp_path / "missing.txt")
    load.click()
    assert "missing.txt" in out.value


@pytest.mark.slow
def test_explore_notebook_runs_headless_under_papermill_with_its_defaults(tmp_path: Path):
    """00_explore with its default parameters, in a folder holding only a params.yaml: the notebook
    makes its small world there (data/explore) and records the widget, the tables and the images."""
    import json
    import shutil

    import papermill as pm

    repo = Path(__file__).resolve().parents[1]
    shutil.copy(repo / "params.yaml", tmp_path / "params.yaml")
    out = tmp_path / "00_explore.ipynb"
    pm.execute_notebook(
        str(repo / "notebooks" / "00_explore.ipynb"), str(out), cwd=str(tmp_path), progress_bar=False
    )
    assert (tmp_path / "data" / "explore" / "world.json").exists()
    outputs = [
        o for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code" for o in c["outputs"]
    ]
    kinds = [k for o in outputs for k in o.get("data", {})]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert "application/vnd.jupyter.widget-view+json" in kinds and kinds.count("image/png") >= 2
