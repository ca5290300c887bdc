"""clipf.chains: the queue file and the units' stages (the runner itself ran the study: docs/study_queue.txt)."""

from __future__ import annotations

from pathlib import Path

from clipf import chains

REPO = Path(__file__).resolve().parents[1]


def test_queue_file_skips_comments_and_blank_lines(tmp_path: Path):
    path = tmp_path / "q.txt"
    path.write_text("# header\n\nconcepts-truncate-k4-m75-s0  # the first\n  uta-s0\n#shapes-x\n")
    assert chains.read_queue(path) == ["concepts-truncate-k4-m75-s0", "uta-s0"]


def test_units_and_their_stages():
    assert chains.phases_of("concepts-frequency-k8-m75-t6e-6-s0") == ("pretrain", "finetune", "eval")
    assert chains.phases_of("uta-s1") == ("uta", "uta_eval", "uta_finetune", "uta_finetune_eval")


def test_the_committed_queue_is_the_study_plan():
    """Every unit of docs/study_queue.txt is a cell or UTA student of the study plan, each once, all of them."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    units = chains.read_queue(REPO / "docs" / "study_queue.txt")
    assert len(units) == len(set(units))
    assert set(units) == set(params["cells"]) | set(params["uta_cells"])
