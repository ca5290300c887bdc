"""Exact resume: a run killed with SIGKILL (or stopped by SIGTERM/SIGUSR1) and resumed with the same command
line and ``--resume latest`` ends with weights bit-identical to the uninterrupted run — one process and
2-process gloo DDP, in-process and worker data loading, with and without --dataset-resampled, CLIP and UTA.
Plus the faults: damaged step checkpoints, another argv, a full disk while saving."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from test_train import ENV, PY, base_args, write_shards
from test_uta import make_export, uta_args, write_pairs

from clipf.engine import resume as R

pytestmark = pytest.mark.slow
EPOCHS = ["--epochs", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("resume-world")
    uta_root = root / "uta"
    return {
        "train": write_shards(root / "train", 4, 32),
        "root": root,
        "uta": {
            "train": write_pairs(uta_root / "train", 4, 16),
            "teacher": make_export(uta_root / "teacher"),
        },
    }


def weights(run: Path, epoch: int = 2) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / f"epoch_{epoch}.pt", weights_only=True)["state_dict"]


def same(a: dict, b: dict) -> list[str]:
    """Names of the tensors that differ."""
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def launch(argv: list[str], nproc: int = 1) -> subprocess.Popen:
    argv = ["--logs-dir" if a == "--logs" else a for a in argv]  # torchrun 2.15 reads --logs as --logs-specs
    cmd = [PY, "-m", "clipf.train", *argv]
    if nproc > 1:
        cmd = [
            PY,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "clipf.train",
            *argv,
        ]
    return subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL the run and all its processes at once, as a node failure or SLURM's kill does."""
    for pid in descendants(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def wait_for_step_checkpoint(run: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        steps = [f for f in (run / "checkpoints").glob("step_*.pt")] if (run / "checkpoints").is_dir() else []
        if steps:
            return steps[0]
        if proc.poll() is not None:
            raise AssertionError(
                f"run ended (rc {proc.returncode}) before a step checkpoint:\n{proc.stdout.read()}"
            )
        time.sleep(0.05)
    raise AssertionError("no step checkpoint in time")


def interrupted(argv: list[str], run: Path, nproc: int, how: str, seed: int) -> str:
    """Start, wait for the first step checkpoint, interrupt (SIGKILL the group after a random delay, or
    SIGTERM/SIGUSR1), resume with the same argv until it finishes; the resumed run's output."""
    proc = launch(argv, nproc)
    wait_for_step_checkpoint(run, proc)
    time.sleep(random.Random(seed).uniform(0, 0.1))
    if how == "kill":
        kill_all(proc)
    else:
        os.killpg(proc.pid, getattr(signal, how))
        rc, out = finish(proc)
        assert rc == 75 or nproc > 1, out[-3000:]  # EXIT_REQUEUE (torchrun reports any worker failure as 1)
        assert "stopped after a step checkpoint" in out, out[-3000:]
    newest = R.checkpoints(run / "checkpoints")[0][1]
    rc, out = finish(launch(argv, nproc))
    assert rc == 0, out[-4000:]
    if newest.name.startswith("step_"):  # killed inside an epoch: resumed there
        said = [line for line in out.splitlines() if "resum" in line.lower() or "checkpoint" in line.lower()]
        assert f"resuming from step checkpoint {newest}" in out, "\n".join(said[-20:])
    return out


CASES = {
    "one-process": dict(nproc=1, extra=["--workers", "0"], how="kill"),
    "workers": dict(nproc=1, extra=["--workers", "2"], how="kill"),
    "resampled": dict(nproc=1, extra=["--workers", "1", "--dataset-resampled"], how="SIGUSR1"),
    "ddp-gloo": dict(nproc=2, extra=["--workers", "1"], how="kill"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_killed_and_resumed_clip_run_is_bit_identical(data, tmp_path, case):
    c = CASES[case]
    masking = ["--reduction-mask", "random", "--text-tokens", "6", "--force-patch-dropout", "0.5"]
    common = [*masking, *EPOCHS, "--save-every-steps", "2", "--resume", "latest", *c["extra"]]

    def argv(name: str) -> list[str]:
        return base_args(data, tmp_path, name, *common, samples=256)

    rc, out = finish(launch(argv("whole"), c["nproc"]))
    assert rc == 0, out[-4000:]
    interrupted(argv("cut"), tmp_path / "cut", c["nproc"], c["how"], seed=len(case))
    assert same(weights(tmp_path / "whole"), weights(tmp_path / "cut")) == []


def test_killed_and_resumed_uta_run_is_bit_identical(data, tmp_path):
    extra = [*EPOCHS, "--save-every-steps", "2", "--resume", "latest"]
    whole = uta_args(data["uta"], tmp_path, "whole", *extra)
    whole[whole.index("--epochs") + 1] = "2"
    rc, out = finish(launch(whole))
    assert rc == 0, out[-4000:]
    cut = [a if a != "whole" else "cut" for a in whole]
    interrupted(cut, tmp_path / "cut", 1, "kill", seed=7)
    assert same(weights(tmp_path / "whole"), weights(tmp_path / "cut")) == []


# --------------------------------------------------------------------------- faults
def test_damaged_newest_step_checkpoint_falls_back_and_says_so(data, tmp_path):
    argv = base_args(
        data, tmp_path, "run", *EPOCHS, "--save-every-steps", "2", "--keep-step-checkpoints", "3",
        "--resume", "latest", samples=128,
    )  # fmt: skip
    proc = launch(argv)
    wait_for_step_checkpoint(tmp_path / "run", proc)
    time.sleep(0.5)
    kill_all(proc)
    found = R.checkpoints(tmp_path / "run" / "checkpoints")
    assert found, "no checkpoint written"
    newest = found[0][1]
    newest.write_bytes(newest.read_bytes()[:1000])  # as if killed while writing
    rc, out = finish(launch(argv))
    assert rc == 0 and f"skipping damaged checkpoint {newest}" in out, out[-3000:]


def test_checkpoint_of_another_argv_is_refused_with_the_options_named(data, tmp_path):
    argv = base_args(data, tmp_path, "run", "--save-every-steps", "2", "--epochs", "1", samples=64)
    proc = launch(argv)
    wait_for_step_checkpoint(tmp_path / "run", proc)
    kill_all(proc)
    other = list(argv)
    other[other.index("--batch-size") + 1] = "8"
    rc, out = finish(launch([*other, "--resume", "latest"]))
    assert rc == 2 and "batch_size = 16 there, 8 now" in out, out[-2000:]


def test_full_disk_while_saving_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    from clipf import files

    argv = base_args(
        data,
        tmp_path,
        "run",
        "--save-every-steps",
        "1",
        "--keep-step-checkpoints",
        "1",
        "--epochs",
        "1",
        samples=64,
    )
    real = files.atomic_write
    calls = {"n": 0}

    def flaky(path, write):
        if Path(path).name.startswith("step_"):
            calls["n"] += 1
            if calls["n"] >= 2:
                raise OSError(28, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(files, "atomic_write", flaky)
    from clipf import train

    assert train.main(argv) == 0  # a failed periodic save is logged; training goes on
    steps = sorted(f.name for f in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert steps == ["step_0_1.pt"]  # the first one survives: nothing pruned after a failed save
    assert R.damage(tmp_path / "run" / "checkpoints" / "step_0_1.pt") is None
    assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp"))
