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


def test_units_are_resolved_in_one_batch_and_current_ones_skipped(tmp_path: Path, monkeypatch, capsys):
    """One DVC index load for every unit of the queue, a status per unit; current units are skipped, a unit
    that is not in the plan fails alone, and a unit added to the queue later is resolved then."""
    queue = tmp_path / "q.txt"
    queue.write_text("a\nb\nc\n")
    calls, ran = [], []

    def fake_commands(root, units):
        calls.append(("commands", list(units)))
        if "bad" in units:
            raise ValueError("no stage pretrain@bad in dvc.yaml")
        return {u: [f"run {u}"] for u in units}

    def fake_current(root, units):
        calls.append(("status", list(units)))
        return {u for u in units if u == "b"}

    def fake_run(root, unit, cmds, logs):
        ran.append((unit, cmds))
        if unit == "c":
            queue.write_text("a\nb\nc\nbad\nd\n")  # edited while the chains run
        return 60.0

    monkeypatch.setattr(chains, "stage_commands", fake_commands)
    monkeypatch.setattr(chains, "current_units", fake_current)
    monkeypatch.setattr(chains, "run_unit", fake_run)
    monkeypatch.setattr(chains, "record", lambda *a: None)
    rc = chains.main(["--jobs", "1", "--queue", str(queue), "--logs", str(tmp_path / "logs")])
    assert rc == 1  # "bad" failed
    assert ran == [("a", ["run a"]), ("c", ["run c"]), ("d", ["run d"])]
    assert calls == [
        ("commands", ["a", "b", "c"]),  # one batch; status per unit, when it is picked
        ("status", ["a"]),
        ("status", ["b"]),
        ("status", ["c"]),
        ("commands", ["bad", "d"]),  # the new units in one batch; "bad" spoils it ...
        ("commands", ["bad"]),  # ... so it is resolved alone and fails alone
        ("commands", ["d"]),
        ("status", ["d"]),
    ]
    out = capsys.readouterr()
    assert "b: current, skipped" in out.out and "bad: FAILED: no stage pretrain@bad" in out.out


def test_skip_recorded_skips_what_dvc_lock_records_without_a_status(tmp_path: Path, monkeypatch, capsys):
    """On a fresh clone a recorded unit's outputs are absent, so dvc status calls it changed and it is retrained;
    ``--skip-recorded`` skips every unit whose stages dvc.lock records (no status asked), and runs the rest."""
    import yaml

    stages = {f"{p}@{u}": {"cmd": "c"} for u in ("a", "uta-s0") for p in chains.phases_of(u)}
    stages["pretrain@b"] = {"cmd": "c"}  # b: one of its three stages recorded, so it is not
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    monkeypatch.chdir(tmp_path)
    asked, ran = [], []
    monkeypatch.setattr(chains, "stage_commands", lambda root, units: {u: [f"run {u}"] for u in units})
    monkeypatch.setattr(chains, "current_units", lambda root, units: asked.extend(units) or set())
    monkeypatch.setattr(chains, "run_unit", lambda root, unit, cmds, logs: ran.append(unit) or 60.0)
    monkeypatch.setattr(chains, "record", lambda *a: None)
    units = ["a", "b", "uta-s0", "c"]
    assert chains.main(["--jobs", "1", "--skip-recorded", "--logs", str(tmp_path / "logs"), *units]) == 0
    assert ran == ["b", "c"] and asked == ["b", "c"]
    out = capsys.readouterr().out
    assert "a: recorded, skipped" in out and "uta-s0: recorded, skipped" in out
    asked.clear(), ran.clear()  # without the flag: DVC's reading, every unit asked and (here) run
    assert chains.main(["--jobs", "1", "--logs", str(tmp_path / "logs"), *units]) == 0
    assert ran == units and asked == units


def test_current_units_reads_dvc_lock_and_dvc_status_json(tmp_path: Path, monkeypatch):
    """A unit is current when dvc.lock records all its stages and dvc status names none of them; a unit
    missing a stage from dvc.lock needs no status; a failing status raises, with its message."""
    import subprocess

    import pytest
    import yaml

    units = ["x", "y", "uta-s0", "uta-s1"]
    stages = {f"{p}@{u}": {"cmd": "c"} for u in units for p in chains.phases_of(u)}
    stages["pretrain@z"] = {"cmd": "c"}  # z has only one of its three stages recorded
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    asked = []

    def fake_dvc(out, rc=0, err=""):
        def run(root, *args):
            asked.append(args)
            return subprocess.CompletedProcess(args, rc, out, err)

        return run

    out = '{"finetune@x": [{"changed deps": {}}], "uta_eval@uta-s1": []}'
    monkeypatch.setattr(chains, "_dvc", fake_dvc(out))
    assert chains.current_units(tmp_path, units + ["z", "w"]) == {"y", "uta-s0"}
    assert not any("@z" in a or "@w" in a for a in asked[0])  # z and w: not in dvc.lock, no status
    assert chains.current(tmp_path, "y") and not chains.current(tmp_path, "x")
    assert not chains.current(tmp_path, "z") and len(asked) == 3  # no status for z
    monkeypatch.setattr(chains, "_dvc", fake_dvc(""))
    assert chains.current_units(tmp_path, ["x"]) == {"x"}  # nothing changed: dvc prints nothing or {}
    monkeypatch.setattr(chains, "_dvc", fake_dvc("", 255, "ERROR: bad stage name 'x'"))
    with pytest.raises(RuntimeError, match="dvc status failed .*bad stage name"):
        chains.current_units(tmp_path, ["x"])
    assert chains.current_units(tmp_path / "nowhere", ["x"]) == set()  # no dvc.lock: nothing is current


def test_record_waits_for_another_process_recording(tmp_path: Path, monkeypatch):
    """Two chains processes: a unit is recorded only while no other process holds the repository lock."""
    import fcntl
    import subprocess
    import threading
    import time

    done = []

    def fake_dvc(root, *args):
        done.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(chains, "_dvc", fake_dvc)
    path = tmp_path / ".dvc" / "tmp" / "clipf-chains.lock"
    path.parent.mkdir(parents=True)
    with open(path, "w") as other:  # another process is recording
        fcntl.flock(other, fcntl.LOCK_EX)
        worker = threading.Thread(target=chains.record, args=(tmp_path, "x", 60.0, False, threading.Lock()))
        worker.start()
        time.sleep(0.5)
        assert done == []  # still waiting
        fcntl.flock(other, fcntl.LOCK_UN)
    worker.join(timeout=10)
    assert done == [("commit", "-f", "pretrain@x", "finetune@x", "eval@x")]
