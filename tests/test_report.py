"""Report builders on a synthetic tidy table: mean ± std over seeds, the paper's numbers beside, keep rates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipf import report as R

DATASET = "world_objects"


def tidy_rows(cells: list[tuple[str, int, float, str]], values: dict) -> pd.DataFrame:
    """Rows as `clipf eval collect` writes them; values[(run_prefix, checkpoint)] = per-seed accuracies (0-1)
    under full prompts, values[(run_prefix, checkpoint, "masked")] under masked prompts."""
    rows = []
    for masker, k, r, prefix in cells:
        for ckpt, protocol in [(c, p) for c in R.CHECKPOINTS for p in ("full", "masked")]:
            key = (prefix, ckpt) if protocol == "full" else (prefix, ckpt, protocol)
            for seed, v in enumerate(values.get(key, [])):
                run = f"{prefix}-s{seed}"
                common = dict(
                    run=run,
                    masker=masker,
                    text_tokens=k,
                    image_mask=r,
                    seed=seed,
                    epochs=2,
                    checkpoint=ckpt,
                    protocol=protocol,
                )
                rows.append(
                    {
                        **common,
                        "dataset": DATASET,
                        "task": "zeroshot_classification",
                        "metric": "acc1",
                        "value": v,
                    }
                )
                rows.append(
                    {
                        **common,
                        "dataset": DATASET,
                        "task": "zeroshot_classification",
                        "metric": "acc5",
                        "value": 1.0,
                    }
                )
                rows.append(
                    {
                        **common,
                        "dataset": "world_retrieval",
                        "task": "zeroshot_retrieval",
                        "metric": "image_retrieval_recall@1",
                        "value": 0.5,
                    }
                )
    return pd.DataFrame(rows)


CELLS = [
    ("truncate", 32, 0.0, "truncate-k32-m0"),
    ("truncate", 32, 0.75, "truncate-k32-m75"),
    ("block", 8, 0.75, "block-k8-m75"),
    ("frequency", 8, 0.75, "frequency-k8-m75-t1e-3"),
    ("frequency", 8, 0.75, "frequency-k8-m75-t1e-2"),  # threshold sweep: not in the main table
    ("frequency", 8, 0.5, "frequency-k8-m50-t1e-3"),
    ("frequency", 4, 0.75, "frequency-k4-m75-t1e-3"),
]
VALUES = {
    ("truncate-k32-m0", "pretrain"): [0.30, 0.32, 0.34],
    ("truncate-k32-m75", "pretrain"): [0.20, 0.22, 0.24],
    ("truncate-k32-m75", "finetune"): [0.25, 0.25, 0.25],
    ("block-k8-m75", "pretrain"): [0.10, 0.20, 0.30],
    ("block-k8-m75", "finetune"): [0.40, 0.42, 0.44],
    ("frequency-k8-m75-t1e-3", "pretrain"): [0.35, 0.36, 0.37],
    ("frequency-k8-m75-t1e-3", "finetune"): [0.41, 0.43, 0.45],
    ("frequency-k8-m75-t1e-2", "pretrain"): [0.01, 0.01, 0.01],
    ("frequency-k8-m75-t1e-2", "finetune"): [0.01, 0.01, 0.01],
    ("frequency-k8-m50-t1e-3", "pretrain"): [0.5],
    ("frequency-k8-m50-t1e-3", "finetune"): [0.6],
    ("frequency-k4-m75-t1e-3", "pretrain"): [0.15, 0.17],
    # masked prompts (the paper's pre-train protocol): the unmasked baselines as under full prompts
    ("truncate-k32-m0", "pretrain", "masked"): [0.30, 0.32, 0.34],
    ("truncate-k32-m75", "pretrain", "masked"): [0.20, 0.22, 0.24],
    ("block-k8-m75", "pretrain", "masked"): [0.05, 0.06, 0.07],
    ("frequency-k8-m75-t1e-3", "pretrain", "masked"): [0.30, 0.32, 0.34],
    ("frequency-k8-m75-t1e-2", "pretrain", "masked"): [0.02, 0.02, 0.02],
    ("frequency-k8-m75-t1e-3", "finetune", "masked"): [0.41, 0.43, 0.45],  # = full: not a column
}


@pytest.fixture
def tidy() -> pd.DataFrame:
    return tidy_rows(CELLS, VALUES)


def test_paper_results_are_packaged():
    paper = R.paper_results()
    assert len(paper) == 23
    clipf8 = paper[(paper.masking == "frequency") & (paper.text_tokens == 8) & (paper.image_tokens == 49)]
    assert clipf8[["pretrain_top1", "finetune_top1"]].values.tolist() == [[36.6, 39.3]]
    assert set(paper.image_mask) == {0.0, 0.5, 0.75}


def test_describe_names_cells_as_the_paper():
    assert R.describe("truncate", 32, 0.0) == ("CLIP", "none")
    assert R.describe("truncate", 32, 0.75) == ("FLIP", "none")
    assert R.describe("truncate", 8, 0.75) == ("CLIPA", "truncation")
    assert R.describe("frequency", 8, 0.5) == ("CLIPF", "frequency")
    assert [R.image_tokens(r) for r in (0.0, 0.5, 0.75)] == [197, 98, 49]
    assert R.threshold_of("frequency-k8-m75-t2p5e-4-s1") == pytest.approx(2.5e-4)
    assert np.isnan(R.threshold_of("block-k8-m75-s1"))


def test_main_table_mean_std_and_paper_beside(tidy):
    table = R.main_table(tidy)
    # paper's row order: CLIP (197), CLIPF (98), FLIP (49, 32 tokens), then 49-token rows by K desc
    assert list(zip(table.model, table.text_tokens, table.image_tokens, strict=True)) == [
        ("CLIP", 32, 197),
        ("CLIPF", 8, 98),
        ("FLIP", 32, 49),
        ("CLIPA", 8, 49),
        ("CLIPF", 8, 49),
        ("CLIPF", 4, 49),
    ]
    freq8 = table[(table.masker == "frequency") & (table.text_tokens == 8) & (table.image_mask == 0.75)].iloc[
        0
    ]
    assert freq8.pretrain_mean == pytest.approx(36.0)  # the t=1e-2 sweep cell is left out
    assert freq8.pretrain_std == pytest.approx(1.0)
    assert freq8.pretrain_n == 3
    assert (freq8.paper_pretrain, freq8.paper_finetune) == (36.6, 39.3)
    block = table[table.masker == "block"].iloc[0]
    assert block.pretrain_mean == pytest.approx(20.0) and block.pretrain_std == pytest.approx(10.0)
    clip = table[table.model == "CLIP"].iloc[0]
    assert clip.paper_pretrain == 36.6 and np.isnan(clip.paper_finetune) and clip.finetune_n == 0

    assert freq8.pretrain_masked_mean == pytest.approx(32.0) and freq8.pretrain_masked_n == 3
    assert "finetune_masked_mean" not in table  # the fine-tune's masked prompts are its full ones

    shown = R.format_main_table(table)
    assert list(shown.columns) == [
        "Model",
        "Masking",
        "Image tokens",
        "Text tokens",
        "Pre-train (masked prompts)",
        "Pre-train (paper)",  # the paper's pre-train column: open_clip_train's eval, masked prompts
        "Pre-train (full prompts)",
        "Fine-tune (full prompts)",
        "Fine-tune (paper)",  # after the unmasked tuning: full prompts
    ]
    row = shown[
        (shown.Masking == "frequency") & (shown["Image tokens"] == 49) & (shown["Text tokens"] == 8)
    ].iloc[0]
    assert (row["Pre-train (masked prompts)"], row["Pre-train (paper)"]) == ("32.0 ± 2.0", "36.6")
    assert row["Pre-train (full prompts)"] == "36.0 ± 1.0"
    assert (row["Fine-tune (full prompts)"], row["Fine-tune (paper)"]) == ("43.0 ± 2.0", "39.3")
    clip_row = shown[shown.Model == "CLIP"].iloc[0]
    assert (clip_row["Fine-tune (full prompts)"], clip_row["Fine-tune (paper)"]) == ("–", "–")
    one_seed = shown[shown["Image tokens"] == 98].iloc[0]
    assert one_seed["Pre-train (full prompts)"] == "50.0"  # one seed: no ± shown
    assert one_seed["Pre-train (masked prompts)"] == "–"  # not measured
    assert "beside the paper's pre-train column" in R.PROTOCOL_NOTE


def test_a_table_from_before_the_protocols_reads_as_full(tidy):
    """A results table without a protocol column is all full prompts: the masked column is empty, the
    numbers are those of before; a frequency cell of another rule is not averaged in."""
    old = tidy[tidy.protocol == "full"].drop(columns="protocol")
    table = R.main_table(old)
    freq8 = table[(table.masker == "frequency") & (table.text_tokens == 8) & (table.image_mask == 0.75)].iloc[
        0
    ]
    assert freq8.pretrain_mean == pytest.approx(36.0) and freq8.pretrain_masked_n == 0
    assert R.format_main_table(table)["Pre-train (masked prompts)"].eq("–").all()
    assert "pretrain_masked" not in R.summary(table) and R.claims(table).protocol.eq("full").all()
    rules = tidy.assign(freq_rule=np.where(tidy.masker == "frequency", "authors", None))
    clamped = rules[rules.run.str.startswith("frequency-k8-m75-t1e-3")].assign(
        freq_rule="clamped", value=0.9, run=lambda d: d.run + "-clamped"
    )
    both = pd.concat([rules, clamped, clamped.assign(run=lambda d: d.run + "x")], ignore_index=True)
    by_rule = {
        rule: R.main_table(both, rule=rule).set_index(["masker", "text_tokens", "image_mask"])
        for rule in ("authors", "clamped")
    }
    assert by_rule["authors"].loc[("frequency", 8, 0.75), "pretrain_mean"] == pytest.approx(36.0)
    assert by_rule["clamped"].loc[("frequency", 8, 0.75), "pretrain_mean"] == pytest.approx(90.0)
    assert R.main_table(both).set_index(["masker", "text_tokens", "image_mask"]).loc[
        ("frequency", 8, 0.75), "pretrain_mean"
    ] == pytest.approx(90.0)  # the most common rule of the main threshold's cells


def test_threshold_selection_and_sweep_table(tidy):
    table = R.main_table(tidy, threshold=1e-2)
    freq8 = table[(table.masker == "frequency") & (table.text_tokens == 8) & (table.image_mask == 0.75)].iloc[
        0
    ]
    assert freq8.pretrain_mean == pytest.approx(1.0)
    sweep = R.threshold_table(tidy)
    k8 = sweep[(sweep.text_tokens == 8) & (sweep.image_mask == 0.75) & (sweep.checkpoint == "pretrain")]
    full, masked = k8[k8.protocol == "full"], k8[k8.protocol == "masked"]
    assert full.threshold.tolist() == [1e-3, 1e-2] == masked.threshold.tolist()
    assert full["mean"].tolist() == pytest.approx([36.0, 1.0])
    assert masked["mean"].tolist() == pytest.approx([32.0, 2.0])


def test_summary_best_masker(tidy):
    s = R.summary(R.main_table(tidy))
    assert s["pretrain"]["frequency-k8-m75"] == pytest.approx(36.0)
    assert s["pretrain_masked"]["frequency-k8-m75"] == pytest.approx(32.0)
    assert s["best_masker_finetune"]["k8"] == "frequency"
    assert s["best_masker_pretrain_masked"]["k8"] == "frequency"
    json.dumps(s)


def test_unknown_dataset_is_named(tidy):
    with pytest.raises(ValueError, match="dataset 'imagenet1k' not in the results"):
        R.main_table(tidy, dataset="imagenet1k")


def test_writers_and_figures(tidy, tmp_path: Path):
    table = R.main_table(tidy)
    paths = R.write_table(R.format_main_table(table), tmp_path / "main_table")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    assert "36.0 ± 1.0" in paths[1].read_text() and "tabular" in paths[2].read_text()
    assert "32.0 ± 2.0" in paths[1].read_text()  # the masked-prompts column
    assert "| 50.0 " in paths[1].read_text()  # one seed: "50.0", not reformatted to 50
    fig = R.tokens_figure(table, R.paper_results())
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[:3] == [
        "ours: pre-train, masked prompts",
        "ours: pre-train, full prompts",
        "ours: fine-tune, full prompts",
    ]
    assert (
        "paper (ImageNet): pre-train (masked prompts)" in titles
        and "paper (ImageNet): fine-tune (full prompts)" in titles
    )
    figs = R.save_figure(fig, tmp_path / "tokens")
    assert all(p.stat().st_size > 1000 for p in figs)
    svg = figs[1].read_text()
    R.save_figure(R.tokens_figure(table, R.paper_results()), tmp_path / "tokens")
    assert figs[1].read_text() == svg  # deterministic SVG: DVC sees no change on a re-run


def test_datasets_table_every_set_side_by_side(tidy):
    table = R.datasets_table(tidy)
    assert list(zip(table.model, table.text_tokens, table.image_mask, strict=True))[:3] == [
        ("CLIP", 32, 0.0),
        ("CLIPF", 8, 0.5),
        ("FLIP", 32, 0.75),
    ]
    freq8 = table[(table.masker == "frequency") & (table.text_tokens == 8) & (table.image_mask == 0.75)].iloc[
        0
    ]
    assert freq8[f"{DATASET}_mean"] == pytest.approx(36.0) and freq8[f"{DATASET}_std"] == pytest.approx(1.0)
    assert freq8["world_retrieval_mean"] == pytest.approx(50.0) and freq8["world_retrieval_n"] == 3
    ft = R.datasets_table(tidy, checkpoint="finetune")
    assert "truncate-k32-m0" not in set(ft.masker + ft.text_tokens.astype(str))  # CLIP has no fine-tune rows
    shown = R.format_datasets_table(table)
    assert list(shown.columns) == [
        "Model",
        "Masking",
        "Text tokens",
        DATASET,
        "world_retrieval",
    ]  # unknown sets: by name
    assert shown.iloc[0][DATASET] == "32.0 ± 2.0"
    masked = R.datasets_table(tidy, protocol="masked")
    freq8m = masked[(masked.masker == "frequency") & (masked.text_tokens == 8) & (masked.image_mask == 0.75)]
    assert freq8m[f"{DATASET}_mean"].iloc[0] == pytest.approx(32.0)
    with pytest.raises(ValueError, match="no 'final' classification"):
        R.datasets_table(tidy, checkpoint="final")


def test_claims_verdicts_use_the_seed_noise(tidy):
    table = R.main_table(tidy)
    checks = R.claims(table)
    assert checks.groupby(["checkpoint", "protocol"]).size().index.tolist() == [
        ("finetune", "full"),
        ("pretrain", "full"),
        ("pretrain", "masked"),
    ]
    m8 = checks[(checks.protocol == "masked") & (checks.text_tokens == 8) & (checks.image_mask == 0.75)].iloc[
        0
    ]
    assert m8.other == "block" and m8["diff"] == pytest.approx(26.0) and m8.verdict == "better"
    checks = checks[checks.protocol == "full"]
    pre8 = checks[(checks.checkpoint == "pretrain") & (checks.text_tokens == 8) & (checks.image_mask == 0.75)]
    pre8 = pre8.set_index("claim")
    # no truncate cell at K=8 in this grid: only the best other masker (block, 20 ± 10 vs 36 ± 1)
    assert list(pre8.index) == ["frequency beats best other masker"]
    row = pre8.iloc[0]
    assert row.other == "block" and row["diff"] == pytest.approx(16.0)
    assert row.se == pytest.approx(np.sqrt(1 / 3 + 100 / 3), abs=0.01)
    assert row.verdict == "better"  # 16 > 2 x 5.8
    ft8 = checks[
        (checks.checkpoint == "finetune") & (checks.text_tokens == 8) & (checks.image_mask == 0.75)
    ].iloc[0]
    assert checks[checks.image_mask == 0.5].empty  # the 98-token CLIPF row has no CLIPA cell to beat
    assert ft8.verdict == "within noise" and ft8["diff"] == pytest.approx(1.0)
    assert R.verdict(5.0, 1.0) == "better" and R.verdict(-5.0, 1.0) == "worse"
    assert R.verdict(1.0, np.nan) == "better (one seed)" and R.verdict(np.nan, 1.0) == "not measured"


def test_keep_accuracy_figure(tidy, tmp_path: Path):
    table = R.main_table(tidy)
    rates = pd.DataFrame(
        {
            "masker": ["block", "frequency", "frequency"],
            "text_tokens": [8, 8, 4],
            "noun": [0.3, 0.6, 0.4],
            "function": [0.5, 0.1, 0.05],
            "grounded": [0.4, 0.7, 0.5],
        }
    )
    fig = R.keep_accuracy_figure(rates, table)
    assert [ax.get_title() for ax in fig.axes[:3]] == [
        "grounded words kept",
        "noun words kept",
        "function words kept",
    ]
    assert all(p.stat().st_size > 1000 for p in R.save_figure(fig, tmp_path / "keep_acc"))


def test_best_by_epoch_and_epoch_figure(tmp_path: Path):
    recs = []
    for seed in (0, 1):
        for epoch in (1, 2, 3):
            recs.append(
                dict(
                    run=f"b{seed}",
                    masker="block",
                    text_tokens=8,
                    image_mask=0.75,
                    seed=seed,
                    epoch=epoch,
                    value=10 * epoch,
                )
            )
            recs.append(
                dict(
                    run=f"f{seed}",
                    masker="frequency",
                    text_tokens=8,
                    image_mask=0.75,
                    seed=seed,
                    epoch=epoch,
                    value=15 + 2 * epoch,
                )
            )
    for r, v in ((0.0, 50.0), (0.75, 5.0)):  # CLIP and FLIP: both truncate at 32 tokens, never averaged
        recs.append(
            dict(run=f"t{r}", masker="truncate", text_tokens=32, image_mask=r, seed=0, epoch=1, value=v)
        )
    curves = R.epoch_curves(recs)
    k32 = curves[curves.text_tokens == 32].set_index("series")["value"]
    assert k32.to_dict() == {"CLIP": 50.0, "FLIP": 5.0}
    curves = curves[curves.text_tokens == 8]
    best = R.best_by_epoch(curves)
    assert best.best_masker.tolist() == ["frequency", "block", "block"]  # the best masker changes
    R.save_figure(R.epochs_figure(curves), tmp_path / "epochs")
    assert (tmp_path / "epochs.svg").exists()


def test_compute_table_joins_speed_and_accuracy():
    runs = pd.DataFrame(
        [
            dict(
                run="a-s0",
                masker="block",
                text_tokens=8,
                image_mask=0.75,
                seed=0,
                samples_per_second=100.0,
                text_tokens_seen=800,
            ),
            dict(
                run="a-s1",
                masker="block",
                text_tokens=8,
                image_mask=0.75,
                seed=1,
                samples_per_second=120.0,
                text_tokens_seen=800,
            ),
        ]
    )
    acc = pd.DataFrame(
        [
            dict(run="a-s0", checkpoint="pretrain", value=30.0),
            dict(run="a-s1", checkpoint="pretrain", value=32.0),
        ]
    )
    out = R.compute_table(runs, acc)
    assert out.samples_per_second.tolist() == [110.0] and out.pretrain_acc.tolist() == [31.0]


def test_pos_classes_and_words():
    assert [R.pos_class(t) for t in ("NOUN", "NNS", "ADJ", "JJR", "VERB", "VBG", "DET", "IN", "PUNCT")] == [
        "noun",
        "noun",
        "adjective",
        "adjective",
        "verb",
        "verb",
        "function",
        "function",
        "other",
    ]
    assert R.words_of("A red-brick barn, isn't it?") == [
        "a",
        "red",
        "-",
        "brick",
        "barn",
        ",",
        "isn't",
        "it",
        "?",
    ]


def test_keep_table_and_rates():
    samples = [
        [("a", "DET"), ("red", "ADJ"), ("ball", "NOUN"), ("on", "ADP"), ("a", "DET"), ("table", "NOUN")],
        [("the", "DET"), ("dog", "NOUN"), ("runs", "VERB")],
    ]
    kept = [["red", "ball", "a"], ["dog", "runs", "eleph"]]
    words = R.keep_table(samples, kept)
    assert words.kept.tolist() == [True, True, True, False, False, False, False, True, True]
    words["masker"], words["text_tokens"] = "m", 5
    rates = R.keep_rates(words).iloc[0]
    assert rates["noun"] == pytest.approx(2 / 3)
    assert rates["adjective"] == 1.0 and rates["verb"] == 1.0
    assert rates["function"] == pytest.approx(1 / 4)
    assert rates["all"] == pytest.approx(5 / 9)
    shares = R.kept_share(words)
    share = shares.iloc[0]
    assert share[["noun", "adjective", "verb", "function"]].sum() == pytest.approx(1.0)
    assert share["noun"] == pytest.approx(2 / 5)
    assert len(R.kept_share_figure(shares).axes) == 1


def test_word_keep_stats_with_a_fake_masker():
    import open_clip

    tok = open_clip.get_tokenizer("ViT-B-32")
    samples = [[("a", "DET"), ("small", "ADJ"), ("red", "ADJ"), ("ball", "NOUN")]]

    def mask(masker, captions, k):  # truncate: the first k-2 words
        return tok(captions, context_length=k)

    words = R.word_keep_stats(
        samples, mask, ["truncate"], [4, 6], freq={"a": 0.1, "small": 0.01, "red": 0.01, "ball": 0.001}
    )
    rates = R.keep_rates(words).set_index("text_tokens")
    assert rates.loc[4, "all"] == pytest.approx(0.5) and rates.loc[6, "all"] == 1.0
    bins = R.frequency_bins(words, bins=3)
    assert set(bins.masker) == {"truncate", "all words"}
    for _, g in bins.groupby(["masker", "text_tokens"]):
        assert g.share.sum() == pytest.approx(1.0)


def test_grounded_keep_rate_from_world_metadata():
    meta = {
        "words": [["a", "DET"], ["red", "ADJ"], ["star", "NOUN"], ["free", "ADJ"]],
        "grounded": [None, "color", "shape", None],
    }
    sample = R.gold_pos("a red star free", meta)
    assert sample == [
        ("a", "DET", False),
        ("red", "ADJ", True),
        ("star", "NOUN", True),
        ("free", "ADJ", False),
    ]
    words = R.keep_table([sample], [["star", "free"]])
    words["masker"], words["text_tokens"] = "m", 4
    rates = R.keep_rates(words).iloc[0]
    assert rates["grounded"] == pytest.approx(0.5) and rates["adjective"] == pytest.approx(0.5)


def test_p_mask_curves_follow_the_rule():
    """P_mask curves use the rule: the released one (default) goes below 0 for words rarer than t, the
    clamped reading stops at 0; the figure shows the negative part."""
    from clipf import freq

    f = [1e-7, 1e-6, 1e-4, 1e-2]
    authors, clamped = R.p_mask_curves(f, [1e-6]), R.p_mask_curves(f, [1e-6], rule="clamped")
    assert authors.rule.eq("authors").all() and clamped.rule.eq("clamped").all()
    assert authors.p_mask.tolist() == freq.p_values(f, 1e-6, "authors").tolist()
    assert authors.p_mask.iloc[0] == pytest.approx(1 - round(np.sqrt(10), 6)) and clamped.p_mask.iloc[0] == 0
    assert authors.p_mask.iloc[1:].tolist() == pytest.approx(clamped.p_mask.iloc[1:].tolist(), abs=1e-6)
    fig = R.p_mask_figure(pd.concat([authors, clamped]))
    ax = fig.axes[0]
    assert ax.get_ylim()[0] < -2 and {t.get_text() for t in ax.get_legend().get_texts()} == {
        "t = 1e-06 (authors)",
        "t = 1e-06 (clamped)",
    }
    with pytest.raises(ValueError, match="rule='clampd'"):
        R.p_mask_curves(f, [1e-6], rule="clampd")
