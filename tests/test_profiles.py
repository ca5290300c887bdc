"""Profiles in params.yaml: resolution into a grid of named cells, the live plan, and its checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from clipf import profiles as P

REPO = Path(__file__).resolve().parents[1]
PAPER_TOKENS = {4, 6, 8, 16}


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    return path


def test_cell_names_spell_out_the_cell():
    assert P.cell_name("frequency", 8, 0.75, 0, 1e-4) == "frequency-k8-m75-t1e-4-s0"
    assert P.cell_name("block", 16, 0.5, 2) == "block-k16-m50-s2"
    assert P.cell_name("frequency", 8, 0.125, 1, 2.5e-4) == "frequency-k8-m12p5-t2p5e-4-s1"
    assert "." not in P.cell_name("random", 4, 0.333, 0)
    # the released rule is the default and unnamed; the clamped reading is named, never sharing a run
    assert P.cell_name("frequency", 8, 0.75, 0, 6e-6, "authors") == "frequency-k8-m75-t6e-6-s0"
    assert P.cell_name("frequency", 8, 0.75, 0, 6e-6, "clamped") == "frequency-k8-m75-t6e-6-clamped-s0"
    # a study cell's world comes first; no world (a run outside a study plan): no world part
    assert P.cell_name("frequency", 8, 0.75, 0, 6e-6, world="shapes") == "shapes-frequency-k8-m75-t6e-6-s0"
    assert P.cell_name("truncate", 32, 0.0, 1, world="concepts") == "concepts-truncate-k32-m0-s1"
    assert P.cell_name("block", 16, 0.5, 2, world=None) == "block-k16-m50-s2"
    assert list(P.make_cell("block", 8, 0.75, 0, None, world="shapes")) == [
        "world",
        "masker",
        "text_tokens",
        "image_mask",
        "seed",
        "threshold",
        "rule",
    ]
    assert "world" not in P.make_cell("block", 8, 0.75, 0, None)


def test_every_profile_resolves():
    params = P.load(REPO / "params.yaml")
    names = P.profile_names(params)
    assert {"smoke", "demo", "study", "cc3m", "cc12m", "laion400m"} <= set(names)
    for name in names:
        live = P.resolve(params, name)
        assert set(live) == set(P.LIVE_KEYS)
        assert live["plan"]["profile"] == name
        worlds = list(live["worlds"])
        assert worlds, name  # every profile's cells belong to a world
        for key, cell in live["cells"].items():
            assert key == P.cell_name(**cell)
            assert cell["world"] in worlds and key.startswith(cell["world"] + "-")


def test_study_profile_is_the_full_grid():
    live = P.resolve(P.load(REPO / "params.yaml"), "study")
    cells = list(live["cells"].values())
    seeds = {c["seed"] for c in cells}
    assert len(seeds) >= 3
    for masker in P.MASKER_NAMES:
        if masker == "shuffle":
            continue
        assert {
            c["text_tokens"] for c in cells if c["masker"] == masker and c["image_mask"] > 0
        } >= PAPER_TOKENS
    assert any(c["text_tokens"] >= 32 and c["image_mask"] == 0 for c in cells)  # CLIP
    assert any(c["text_tokens"] >= 32 and c["image_mask"] > 0 for c in cells)  # FLIP
    sweep = {c["threshold"] for c in cells if c["masker"] == "frequency" and c["text_tokens"] == 8}
    assert len(sweep) >= 3
    for seed in seeds:  # every cell in every seed
        assert sum(c["seed"] == seed for c in cells) == len(cells) // len(seeds)
    # the same grid in both worlds: the world is the only difference of two worlds' cells
    assert list(live["worlds"]) == ["shapes", "concepts"]
    per_world = {
        w: [k.removeprefix(w + "-") for k, c in live["cells"].items() if c["world"] == w]
        for w in live["worlds"]
    }
    assert per_world["shapes"] == per_world["concepts"] and len(per_world["shapes"]) == len(cells) // 2
    assert live["worlds"]["concepts"] == {"preset": "concepts", "dataset": "wds/concepts"}
    assert live["worlds"]["shapes"] == {"preset": "shapes", "dataset": "wds/world_objects"}


def test_smoke_is_tiny_and_paper_recipes_use_shards():
    params = P.load(REPO / "params.yaml")
    smoke = P.resolve(params, "smoke")
    assert 1 <= len(smoke["cells"]) <= 2 and smoke["pretrain"]["epochs"] == 1
    assert list(smoke["worlds"]) == ["shapes"]  # the default world: grid.worlds [shapes]
    assert params["defaults"]["grid"]["worlds"] == ["shapes"]
    cc12m = P.resolve(params, "cc12m")
    assert cc12m["data"]["source"] == "shards" and cc12m["pretrain"]["model"] == "ViT-B-16"
    assert cc12m["pretrain"]["batch_size"] == 896 and cc12m["pretrain"]["epochs"] == 30
    assert cc12m["finetune"]["lr"] == 1e-5 and cc12m["launch"]["nproc_per_node"] == 4
    laion = P.resolve(params, "laion400m")
    assert [(c["text_tokens"], c["image_mask"]) for c in laion["cells"].values()] == [(16, 0.5)]
    # shards: a world is a name of the data (no preset); report.dataset one name for every world
    assert cc12m["worlds"] == {"cc12m": {"preset": None, "dataset": "imagenet1k"}}
    assert all(k.startswith("cc12m-") for k in cc12m["cells"])


def test_thresholds_only_name_frequency_cells():
    cells = P.expand_grid({"maskers": ["block", "frequency"], "text_tokens": [8], "thresholds": [1e-3]}, 1e-3)
    assert cells == {
        "block-k8-m75-s0": {
            "masker": "block",
            "text_tokens": 8,
            "image_mask": 0.75,
            "seed": 0,
            "threshold": None,
            "rule": None,
        },
        "frequency-k8-m75-t1e-3-s0": {
            "masker": "frequency",
            "text_tokens": 8,
            "image_mask": 0.75,
            "seed": 0,
            "threshold": 1e-3,
            "rule": "authors",
        },
    }


def test_frequency_rule_of_the_cells():
    """Frequency cells carry the profile's freq.rule (an extra cell may name its own); the study passes it
    to every frequency pre-training explicitly; a clamped cell and an authors cell are two runs."""
    grid = {
        "maskers": ["frequency", "block"],
        "text_tokens": [8],
        "extra": [{"masker": "frequency", "text_tokens": 8, "rule": "authors"}],
    }
    cells = P.expand_grid(grid, 6e-6, rule="clamped")
    assert list(cells) == [
        "frequency-k8-m75-t6e-6-clamped-s0",
        "block-k8-m75-s0",
        "frequency-k8-m75-t6e-6-s0",
    ]
    assert [c["rule"] for c in cells.values()] == ["clamped", None, "authors"]
    params = P.load(REPO / "params.yaml")
    assert params["defaults"]["freq"]["rule"] == "authors"
    assert params["defaults"]["eval"]["protocols"] == ["full", "masked"]
    clamped = P.deep_merge(params, {"profiles": {"smoke": {"freq": {"rule": "clamped"}}}})
    live = P.resolve(clamped, "smoke")
    assert [k for k in live["cells"] if "-frequency-" in k] == ["shapes-frequency-k6-m75-t6e-6-clamped-s0"]
    from clipf import study

    cfg = study.world_config(live, "shapes")  # the stages' view: the world's frequency table
    cfg = {**cfg, "data": {"source": "shards", "train_data": "x/{0..1}.tar"}}
    name, cell = next((k, c) for k, c in live["cells"].items() if c["masker"] == "frequency")
    argv = study.train_argv(cfg, "pretrain", name, cell)
    assert argv[argv.index("--freq-rule") + 1] == "clamped"
    assert argv[argv.index("--freq-table") + 1] == "data/shapes-freq.json"
    block = study.train_argv(cfg, "pretrain", "b", P.make_cell("block", 8, 0.75, 0, None))
    assert "--freq-rule" not in block
    for bad, message in (
        ({"freq": {"rule": "clampd"}}, "freq.rule must be one of authors, clamped"),
        ({"eval": {"protocols": ["full", "maskd"]}}, "eval.protocols: a list of zero-shot protocols"),
        ({"eval": {"protocols": []}}, "eval.protocols"),
    ):
        with pytest.raises(P.ProfileError, match=message):
            P.resolve(P.deep_merge(params, {"profiles": {"smoke": bad}}), "smoke")
    with pytest.raises(P.ProfileError, match="rule must be one of"):
        P.expand_grid({"maskers": ["frequency"], "text_tokens": [8]}, 1e-3, rule="none")


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"maskers": ["freq"], "text_tokens": [8]}, "unknown masker 'freq'"),
        ({"maskers": ["block"], "text_tokens": [2]}, "text_tokens"),
        ({"maskers": ["block"], "text_tokens": [8], "image_mask": 1.0}, "image_mask"),
        ({"maskers": ["block"], "text_tokens": [8], "baselines": ["clipa"]}, "unknown baseline 'clipa'"),
        ({"maskers": ["block"], "text_tokens": [8], "thresholds": [-1]}, "thresholds"),
        ({"maskers": ["block"], "text_token": [8]}, "unknown key(s) text_token"),
        ({"maskers": [], "text_tokens": [8]}, "no cells"),
        ({"worlds": "shapes", "maskers": ["block"], "text_tokens": [8]}, "grid.worlds: expected a list"),
        ({"worlds": ["shapes-2"], "maskers": ["block"], "text_tokens": [8]}, "got 'shapes-2'"),
        ({"worlds": ["Shapes"], "maskers": ["block"], "text_tokens": [8]}, "got 'Shapes'"),
        ({"worlds": [""], "maskers": ["block"], "text_tokens": [8]}, "got ''"),
        ({"worlds": [7], "maskers": ["block"], "text_tokens": [8]}, "got 7"),
    ],
)
def test_bad_grid_values_are_named(grid, message):
    with pytest.raises(P.ProfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        P.expand_grid(grid, 1e-3)


def test_grid_over_two_worlds_names_and_tags_cells_per_world():
    """``grid.worlds`` repeats the whole grid per world: each cell is tagged with its world and named by
    it first; an extra cell with a ``world`` is only there (and one with a seed only in that seed)."""
    grid = {
        "worlds": ["shapes", "concepts"],
        "maskers": ["block", "frequency"],
        "text_tokens": [8],
        "seeds": [0, 1],
        "baselines": ["clip"],
        "extra": [
            {"masker": "truncate", "text_tokens": 4, "world": "concepts"},
            {"masker": "random", "text_tokens": 6, "world": "shapes", "seed": 1},
            {"masker": "syntax", "text_tokens": 8},  # no world: in every world
        ],
    }
    cells = P.expand_grid(grid, 6e-6)
    shapes = [k for k, c in cells.items() if c["world"] == "shapes"]
    concepts = [k for k, c in cells.items() if c["world"] == "concepts"]
    assert len(shapes) + len(concepts) == len(cells)
    assert shapes == [
        "shapes-block-k8-m75-s0",
        "shapes-frequency-k8-m75-t6e-6-s0",
        "shapes-truncate-k32-m0-s0",
        "shapes-syntax-k8-m75-s0",
        "shapes-block-k8-m75-s1",
        "shapes-frequency-k8-m75-t6e-6-s1",
        "shapes-truncate-k32-m0-s1",
        "shapes-random-k6-m75-s1",
        "shapes-syntax-k8-m75-s1",
    ]
    assert concepts == [
        "concepts-block-k8-m75-s0",
        "concepts-frequency-k8-m75-t6e-6-s0",
        "concepts-truncate-k32-m0-s0",
        "concepts-truncate-k4-m75-s0",
        "concepts-syntax-k8-m75-s0",
        "concepts-block-k8-m75-s1",
        "concepts-frequency-k8-m75-t6e-6-s1",
        "concepts-truncate-k32-m0-s1",
        "concepts-truncate-k4-m75-s1",
        "concepts-syntax-k8-m75-s1",
    ]
    assert cells["concepts-frequency-k8-m75-t6e-6-s1"] == {
        "world": "concepts",
        "masker": "frequency",
        "text_tokens": 8,
        "image_mask": 0.75,
        "seed": 1,
        "threshold": 6e-6,
        "rule": "authors",
    }
    assert all(k == P.cell_name(**c) for k, c in cells.items())
    # the world-free grid is the same grid without the world part (runs outside a study plan)
    plain = P.expand_grid({**grid, "worlds": [], "extra": grid["extra"][2:]}, 6e-6)
    assert [f"shapes-{k}" for k in plain] == [k for k in shapes if "-random-" not in k]
    assert all("world" not in c for c in plain.values())
    # one world: as two, less the other's cells; an extra cell left naming the other world is an error
    with pytest.raises(P.ProfileError, match=r"extra\[1\]: world 'shapes' is not in the grid's worlds"):
        P.expand_grid({**grid, "worlds": ["concepts"]}, 6e-6)
    mine = [ex for ex in grid["extra"] if ex.get("world") != "shapes"]
    one = P.expand_grid({**grid, "worlds": ["concepts"], "extra": mine}, 6e-6)
    assert list(one) == concepts


def test_an_extra_cell_of_an_unknown_world_is_named():
    grid = {
        "worlds": ["shapes", "concepts"],
        "maskers": ["block"],
        "text_tokens": [8],
        "extra": [{"masker": "truncate", "text_tokens": 4, "world": "concept"}],
    }
    with pytest.raises(P.ProfileError, match=r"extra\[0\]: world 'concept' is not in the grid's worlds"):
        P.expand_grid(grid, 6e-6)
    with pytest.raises(P.ProfileError, match="world 'shapes' is not in the grid's worlds \\(none\\)"):
        P.expand_grid({**grid, "worlds": [], "extra": [{**grid["extra"][0], "world": "shapes"}]}, 6e-6)
    # an extra cell without a world is one cell in every world; one with a world of the grid, one cell
    ok = {
        **grid,
        "extra": [
            {"masker": "truncate", "text_tokens": 4},
            {"masker": "random", "text_tokens": 4, "world": "shapes"},
        ],
    }
    names = list(P.expand_grid(ok, 6e-6))
    assert sorted(n for n in names if "truncate-k4" in n) == [
        "concepts-truncate-k4-m75-s0",
        "shapes-truncate-k4-m75-s0",
    ]
    assert [n for n in names if "random-k4" in n] == ["shapes-random-k4-m75-s0"]


def test_live_worlds_section_and_report_dataset_per_world():
    """``worlds``: per world of the grid its preset (embedded data: the preset of that name) and its main
    table's set (``report.dataset``: a mapping world -> set, or one set for all); a world without a set, or
    embedded data of a world no preset builds, is a ProfileError naming the world."""
    params = P.load(REPO / "params.yaml")
    two = {"profiles": {"smoke": {"grid": {"worlds": ["shapes", "concepts"]}}}}
    live = P.resolve(P.deep_merge(params, two), "smoke")
    assert live["worlds"] == {
        "shapes": {"preset": "shapes", "dataset": "wds/world_objects"},
        "concepts": {"preset": "concepts", "dataset": "wds/concepts"},
    }
    assert {c["world"] for c in live["cells"].values()} == {"shapes", "concepts"}
    assert P.world_paths("concepts") == ("data/concepts", "data/concepts-freq.json")
    assert P.WORLD_DIR.format(world="shapes") == "data/shapes"
    merged = {
        "grid": {"worlds": ["shapes", "concepts"]},
        "data": {"source": "embedded"},
        "report": {"dataset": "wds/colors"},  # one name: every world's
    }
    assert P.expand_worlds(merged) == {
        "shapes": {"preset": "shapes", "dataset": "wds/colors"},
        "concepts": {"preset": "concepts", "dataset": "wds/colors"},
    }
    shards = {
        "grid": {"worlds": ["laion"]},
        "data": {"source": "shards"},
        "report": {"dataset": "imagenet1k"},
    }
    assert P.expand_worlds(shards) == {"laion": {"preset": None, "dataset": "imagenet1k"}}
    assert P.expand_worlds({"grid": {}, "report": {"dataset": "x"}}) == {}
    missing = {**merged, "report": {"dataset": {"shapes": "wds/world_objects"}}}
    with pytest.raises(P.ProfileError, match="no main-table dataset for world 'concepts'"):
        P.expand_worlds(missing)
    with pytest.raises(P.ProfileError, match="no main-table dataset for world 'shapes'"):
        P.expand_worlds({**merged, "report": {}})
    with pytest.raises(P.ProfileError, match="no main-table dataset for world 'shapes'"):
        P.expand_worlds({**merged, "report": {"dataset": {"shapes": ""}}})
    # through resolve: the profile is named, and its plan never written
    no_set = {"profiles": {"smoke": {"grid": {"worlds": ["shapes", "concepts"]}}}}
    no_set = P.deep_merge(params, no_set)
    del no_set["defaults"]["report"]["dataset"]["concepts"]
    with pytest.raises(P.ProfileError, match="profile 'smoke': report.dataset: .*world 'concepts'"):
        P.resolve(no_set, "smoke")
    unknown = P.deep_merge(params, {"profiles": {"smoke": {"grid": {"worlds": ["shapes", "circles"]}}}})
    with pytest.raises(P.ProfileError, match="'circles' is not a world preset \\(known: shapes, concepts\\)"):
        P.resolve(unknown, "smoke")
    bad = P.deep_merge(params, {"profiles": {"smoke": {"grid": {"worlds": ["sha-pes"]}}}})
    with pytest.raises(P.ProfileError, match="grid.worlds: .*got 'sha-pes'"):
        P.resolve(bad, "smoke")


def test_unknown_profile_is_named():
    with pytest.raises(P.ProfileError, match="unknown profile 'nope'.*smoke"):
        P.resolve(P.load(REPO / "params.yaml"), "nope")


def test_plan_writes_live_sections_and_keeps_the_rest(params_file: Path):
    before = params_file.read_text()
    P.plan(params_file, "smoke")
    after = params_file.read_text()
    params = yaml.safe_load(after)
    assert params["profile"] == "smoke" and params["plan"]["profile"] == "smoke"
    assert params["world"] == yaml.safe_load(before)["world"]
    assert params["profiles"] == yaml.safe_load(before)["profiles"]
    assert P.check(params)["profile"] == "smoke"
    P.plan(params_file, "demo")
    P.plan(params_file, "demo")
    again = params_file.read_text()
    assert again.count(P.LIVE_MARKER) == 1
    assert len(yaml.safe_load(again)["cells"]) == len(P.resolve(params, "demo")["cells"])


def test_check_refuses_a_stale_plan(params_file: Path):
    P.plan(params_file, "smoke")
    params = P.load(params_file)
    params["pretrain"]["epochs"] = 7  # a one-off override of a live section is fine
    P.check(params)
    with pytest.raises(P.ProfileError, match="planned for 'smoke'"):
        P.check({**params, "profile": "demo"})
    changed = P.deep_merge(params, {"profiles": {"smoke": {"grid": {"text_tokens": [4]}}}})
    with pytest.raises(P.ProfileError, match="changed since it was planned"):
        P.check(changed)
    cell = next(iter(params["cells"]))
    renamed = P.deep_merge(params, {"cells": {cell: {"text_tokens": 5}}})
    with pytest.raises(P.ProfileError, match="name a different cell"):
        P.check(renamed)
