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


def test_git_waits_out_another_commits_index_lock(tmp_path: Path):
    """A commit made beside the chains holds .git/index.lock for a moment: the chain waits, then commits."""
    import subprocess
    import threading

    import pytest

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for key, value in (("user.email", "t@example.com"), ("user.name", "t")):
        subprocess.run(["git", "-C", str(tmp_path), "config", key, value], check=True)
    (tmp_path / "a.txt").write_text("a\n")
    lock = tmp_path / ".git" / "index.lock"
    lock.write_text("")
    threading.Timer(1.5, lock.unlink).start()
    chains.run_git(tmp_path, "add", "a.txt")  # fails on the lock at first, then succeeds
    chains.run_git(tmp_path, "commit", "-q", "-m", "a", "--", "a.txt")
    log = subprocess.run(["git", "-C", str(tmp_path), "log", "--oneline"], capture_output=True, text=True)
    assert log.stdout.strip().endswith(" a")
    # any other failure: at once, named
    with pytest.raises(RuntimeError, match="git commit -q failed .*missing.txt"):
        chains.run_git(tmp_path, "commit", "-q", "-m", "b", "--", "missing.txt")
