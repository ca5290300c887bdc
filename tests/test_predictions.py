"""clipf.report.predictions: docs/PREDICTIONS.md's rule (Δ > 2 SE holds, Δ < −2 SE falsified) on tidy tables
with known numbers, the file's validation, and the committed checks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from clipf.report import predictions as P

REPO = Path(__file__).resolve().parents[1]
SETS = {"concepts": "wds/concepts", "shapes": "wds/world_objects"}


def rows(
    world,
    masker,
    k,
    values,
    image_mask=0.75,
    threshold=None,
    checkpoint="pretrain",
    protocol="full",
    dataset=None,
):
    """Tidy rows of one cell, one per seed (values in fractions, as the collector writes them)."""
    name = f"{world}-{masker}-k{k}-m{int(image_mask * 100)}" + (f"-t{threshold:g}" if threshold else "")
    return [
        {
            "run": f"{name}-s{seed}",
            "world": world,
            "masker": masker,
            "text_tokens": k,
            "image_mask": image_mask,
            "seed": seed,
            "checkpoint": checkpoint,
            "protocol": protocol,
            "dataset": dataset or SETS[world],
            "task": "zeroshot_classification",
            "metric": "acc1",
            "value": v / 100,
            "freq_threshold": threshold if masker == "frequency" else np.nan,
            "freq_rule": "authors" if masker == "frequency" else None,
        }
        for seed, v in enumerate(values)
    ]


# a check's defaults: frequency > truncation at K = 8 on concepts
BASE = {
    "id": "C1",
    "world": "concepts",
    "claim": "c",
    "a": {"masker": "frequency"},
    "b": {"masker": "truncate"},
    "relation": ">",
    "k": [8],
}


def check(**kw):
    merged = {**BASE, **kw}
    return P._validated({key: v for key, v in merged.items() if v is not None}, "test")


def pair(a: dict, b: dict | None, relation: str, **kw) -> dict:
    """A check's sides and relation (the other keys as :func:`check`'s defaults)."""
    return {"a": a, "b": b, "relation": relation, **kw}


def judged(tidy_rows, *checks):
    results = P.Results(pd.DataFrame(tidy_rows), SETS, threshold=6e-6, rule="authors")
    return P.judge(results, [check(**c) for c in checks])


def test_greater_holds_falsified_or_unresolved_by_two_standard_errors():
    # frequency 30 ± 1 vs truncation 20 ± 1 (3 seeds each): Δ = 10, SE = 0.82 -> holds
    tidy = rows("concepts", "frequency", 8, [29, 30, 31], threshold=6e-6) + rows(
        "concepts", "truncate", 8, [19, 20, 21]
    )
    part = judged(tidy, {}).iloc[0]
    assert part["diff"] == pytest.approx(10.0) and part["se"] == pytest.approx(0.82, abs=0.01)
    assert part["verdict"] == P.HOLDS
    assert judged(tidy, {"relation": "<"}).iloc[0]["verdict"] == P.FALSIFIED
    # a 1-point gap with spreads of 3 points: within 2 SE
    noisy = rows("concepts", "frequency", 8, [18, 21, 24], threshold=6e-6) + rows(
        "concepts", "truncate", 8, [17, 20, 23]
    )
    assert judged(noisy, {}).iloc[0]["verdict"] == P.UNRESOLVED
    assert judged(noisy, {"relation": "≈"}).iloc[0]["verdict"] == P.HOLDS
    assert judged(tidy, {"relation": "≈"}).iloc[0]["verdict"] == P.FALSIFIED
    # ≥ holds unless the other side is ahead beyond 2 SE
    assert judged(noisy, {"relation": ">="}).iloc[0]["verdict"] == P.HOLDS
    assert judged(tidy, {"relation": "<="}).iloc[0]["verdict"] == P.FALSIFIED


def test_one_seed_reports_the_sign_only_and_a_missing_cell_is_not_run():
    tidy = rows("concepts", "frequency", 8, [30], threshold=6e-6) + rows(
        "concepts", "truncate", 8, [20, 21, 22]
    )
    parts = judged(tidy, {"k": [8, 4]})
    assert list(parts["verdict"]) == ["holds in sign (one seed)", P.NOT_RUN]
    assert judged(tidy, {"relation": "<"}).iloc[0]["verdict"] == "against in sign (one seed)"
    assert judged(tidy, {"relation": "≈"}).iloc[0]["verdict"] == "unresolved (one seed)"
    assert parts.iloc[0]["seeds"] == 1


def test_main_threshold_by_default_and_a_named_sweep_cell():
    tidy = (
        rows("concepts", "frequency", 8, [30, 31, 32], threshold=6e-6)
        + rows("concepts", "frequency", 8, [10, 11, 12], threshold=1e-6)
        + rows("concepts", "truncate", 8, [20, 21, 22])
    )
    assert judged(tidy, {}).iloc[0]["a_value"] == pytest.approx(31.0)  # the plan's t, not the sweep's
    results = P.Results(
        pd.DataFrame(tidy), SETS
    )  # no plan threshold: the most common (here a tie: the first)
    assert results.values("concepts", {"masker": "frequency"}, 8, "pretrain", None).mean() == pytest.approx(
        11.0
    )
    sweep = judged(tidy, {"a": {"masker": "frequency", "threshold": 1e-6}, "relation": "<"}).iloc[0]
    assert sweep["a_value"] == pytest.approx(11.0) and sweep["verdict"] == P.HOLDS
    many = judged(
        tidy, {"a": {"masker": "frequency", "threshold": [1e-6, 6e-6]}, "b": {"masker": "truncate"}}
    )
    assert list(many["a"]) == ["frequency K=8 t=1e-06", "frequency K=8 t=6e-06"]
    assert list(many["verdict"]) == [P.FALSIFIED, P.HOLDS]


def test_bands_columns_baselines_and_value_checks():
    tidy = []
    for band, (f, t) in {"head": (20, 22), "tail": (30, 18)}.items():
        tidy += rows(
            "concepts", "frequency", 8, [f - 1, f, f + 1], threshold=6e-6, dataset=f"wds/concepts_{band}"
        )
        tidy += rows("concepts", "truncate", 8, [t - 1, t, t + 1], dataset=f"wds/concepts_{band}")
    tidy += rows("concepts", "truncate", 8, [20, 21, 22]) + rows(
        "concepts", "frequency", 8, [20, 21, 22], threshold=6e-6
    )
    tidy += rows("concepts", "truncate", 8, [0.3, 0.4, 0.5], protocol="masked")
    tidy += rows("concepts", "truncate", 32, [60, 61, 62], image_mask=0.0) + rows(
        "concepts", "truncate", 32, [40, 41, 42]
    )
    did = judged(tidy, {"bands": ["tail", "head"]}).iloc[0]
    assert (
        did["band"] == "tail − head" and did["diff"] == pytest.approx(12 - (-2)) and did["verdict"] == P.HOLDS
    )
    head = judged(
        tidy, pair({"masker": "frequency", "band": "head"}, {"masker": "truncate", "band": "head"}, "<")
    )
    head = head.iloc[0]
    assert head["band"] == "head" and head["verdict"] == P.HOLDS
    chance = judged(
        tidy, pair({"masker": "truncate", "column": "pretrain_masked"}, None, "at", value=0.39, tol=1.0)
    )
    assert chance.iloc[0]["verdict"] == P.HOLDS and chance.iloc[0]["column"] == "pretrain_masked"
    masked, full = (
        {"masker": "truncate", "column": "pretrain_masked"},
        {"masker": "truncate", "column": "pretrain"},
    )
    cross = judged(tidy, pair(masked, full, "<")).iloc[0]
    assert cross["column"] == "pretrain_masked vs pretrain" and cross["verdict"] == P.HOLDS
    clip_, flip = ({"masker": "truncate", "k": 32, "image_mask": m} for m in (0.0, 0.75))
    clip = judged(tidy, pair(clip_, flip, ">", k=[32])).iloc[0]
    assert (clip["a"], clip["b"], clip["verdict"]) == ("CLIP", "FLIP", P.HOLDS)


def test_flips_across_worlds_and_the_rollup():
    tidy = (
        rows("concepts", "frequency", 8, [29, 30, 31], threshold=6e-6)
        + rows("concepts", "truncate", 8, [19, 20, 21])
        + rows("shapes", "frequency", 8, [9, 10, 11], threshold=6e-6)
        + rows("shapes", "truncate", 8, [19, 20, 21])
        + rows("shapes", "frequency", 4, [29, 30, 31], threshold=6e-6)
        + rows("shapes", "truncate", 4, [19, 20, 21])
        + rows("concepts", "frequency", 4, [29, 30, 31], threshold=6e-6)
        + rows("concepts", "truncate", 4, [19, 20, 21])
    )
    flips = {"world": ["concepts", "shapes"], "relation": "flips", "k": [8, 4, 6]}
    parts = judged(tidy, flips)
    assert list(parts["verdict"]) == [P.HOLDS, P.FALSIFIED, P.NOT_RUN]  # K = 4: + on both worlds
    checks = [check(**flips, min_falsified=2)]
    assert P.rollup(parts, checks).iloc[0]["verdict"] == "unresolved (partly run)"  # one falsified K of 2
    assert P.rollup(parts, [check(**flips)]).iloc[0]["verdict"] == P.FALSIFIED
    held = judged(tidy, {"k": [8, 4]})
    assert P.rollup(held, [check(k=[8, 4])]).iloc[0]["verdict"] == P.HOLDS
    assert P.rollup(judged(tidy, {"k": [16]}), [check(k=[16])]).iloc[0]["verdict"] == P.NOT_RUN


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"relation": "beats"}, "relation 'beats'"),
        ({"colour": 1}, "unknown keys"),
        ({"a": {"masker": "frequncy"}}, "unknown masker 'frequncy'"),
        ({"columns": ["pretrain_full"]}, "unknown column"),
        ({"relation": "flips"}, "two worlds"),
        ({"relation": "at"}, "compares `a` with `value`"),
        ({"k": ["eight"]}, "positive integers"),
        ({"bands": ["tail"]}, "two bands"),
    ],
)
def test_bad_checks_are_named(tmp_path: Path, bad, message):
    entry = {**BASE, **bad}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump([entry], allow_unicode=True))
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        P.load_checks(path)
    assert str(path) in str(err.value) and "check 0 (C1)" in str(err.value)


def test_a_world_without_a_main_set_or_band_rows_is_named():
    tidy = pd.DataFrame(rows("concepts", "truncate", 8, [20, 21, 22]))
    with pytest.raises(ValueError, match="world 'mars' has no main set"):
        P.Results(tidy, SETS).rows("mars", None)
    with pytest.raises(ValueError, match="no 'wds/concepts_tail' rows"):
        P.Results(tidy, SETS).rows("concepts", "tail")
    assert P.Results(tidy, SETS).rows("shapes", None).empty  # a world not run yet: not run, no error


def test_the_committed_checks_encode_predictions_md():
    checks = P.load_checks(REPO / "docs" / "predictions.yaml")
    text = (REPO / "docs" / "PREDICTIONS.md").read_text()
    written = set(re.findall(r"^([CSW]\d+)\. ", text, flags=re.M))
    assert {c["id"] for c in checks} == written  # every numbered prediction, and nothing else
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    worlds = set(params["report"]["dataset"])
    assert all(set(P._list(c["world"])) <= worlds for c in checks)


def test_the_cli_writes_parts_and_summary(tmp_path: Path):
    tidy = rows("concepts", "frequency", 8, [29, 30, 31], threshold=6e-6) + rows(
        "concepts", "truncate", 8, [19, 20, 21]
    )
    for band in ("head", "torso", "tail"):  # the concepts world's band sets
        tidy += rows("concepts", "truncate", 8, [19, 20, 21], dataset=f"wds/concepts_{band}")
    pd.DataFrame(tidy).to_csv(tmp_path / "results.csv", index=False)
    params = {"report": {"dataset": SETS}, "freq": {"threshold": 6e-6, "rule": "authors"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert (
        P.main(
            [
                str(tmp_path / "results.csv"),
                "--params",
                str(tmp_path / "params.yaml"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    summary = pd.read_csv(tmp_path / "out" / "predictions_summary.csv").set_index("id")
    assert summary.loc["C1", "verdict"] == "unresolved (partly run)"  # K = 8 holds, K = 4, 6 not run
    assert summary.loc["C3", "verdict"] == P.NOT_RUN
    parts = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert len(parts[parts["verdict"] == P.HOLDS]) == 1
