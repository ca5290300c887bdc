"""On a real SLURM (Debian's slurm-wlm + munge, one node on localhost, started and stopped here):
`clipf submit --train` runs a 2-process CPU training job; preempted mid-epoch (`scancel --signal=USR1
--batch`: what `--signal=B:USR1@grace` sends before the time limit), the job checkpoints, requeues
itself, resumes with the same command line and ends with weights identical to an uninterrupted run.

Run with ``make test-slurm`` (root: installs the packages if absent; `.ci/run` runs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from _slurm import LocalSlurm
from test_train import ENV, PY, base_args, write_shards

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the SLURM test needs root (it installs and starts slurmctld, slurmd and munged)")
    # munged wants every directory above its socket searchable by all: not pytest's 0700 tmp folders
    root = Path(tempfile.mkdtemp(prefix="clipf-slurm-", dir="/tmp"))
    try:
        with LocalSlurm(root) as c:
            yield c
            c.run("scancel", "--user=root", check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def wait(cond, timeout: float, what: str, every: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def submit(cluster: LocalSlurm, work: Path, train: list[str], name: str) -> str:
    cmd = [sys.executable, "-m", "clipf", "submit", "--gpus-per-node", "0", "--nproc-per-node", "2",
           "--cpus-per-task", "2", "--signal-grace", "30", "--job-name", name, "--log-dir", str(work / "slurm"),
           "--train", *train]  # fmt: skip
    out = subprocess.run(cmd, env={**cluster.env(), **ENV, "SLURM_CONF": str(cluster.conf)}, cwd=REPO,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split()[-1]  # "Submitted batch job N"


def test_preempted_job_requeues_and_matches_the_uninterrupted_run(cluster, tmp_path):
    data = {"train": write_shards(tmp_path / "train", 4, 64)}
    common = ["--reduction-mask", "random", "--text-tokens", "6",
              "--force-patch-dropout", "0.5", "--epochs", "2", "--workers", "1", "--log-every-n-steps", "1",
              "--save-every-steps", "4", "--dist-backend", "gloo"]  # fmt: skip

    def argv(name: str) -> list[str]:  # torchrun 2.15 reads --logs after the module as --logs-specs
        a = base_args(data, tmp_path / "runs", name, *common, samples=512)
        return ["--logs-dir" if x == "--logs" else x for x in a]

    whole = subprocess.run(
        [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "clipf.train", *argv("whole")],
        env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]

    job = submit(cluster, tmp_path, argv("cut"), "clipf-resume-test")
    log = tmp_path / "runs" / "cut" / "out.log"
    wait(lambda: log.is_file() and "Train Epoch: 1 [" in log.read_text(), 300, "epoch 2 to start")
    cluster.run("scancel", "--signal=USR1", "--batch", job)  # what --signal=B:USR1@30 does at the limit
    info = wait(lambda: (j := cluster.job(job)).get("Restarts", "0") != "0" and j, 120, "the requeue")
    assert info["Requeue"] == "1"
    if info.get("JobState") == "PENDING":
        cluster.run("scontrol", "update", f"jobid={job}", "StartTime=now")  # skip the requeue delay
    final = wait(lambda: cluster.job(job).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED")
                 and cluster.job(job), 600, "the requeued job to end", every=1.0)  # fmt: skip
    out = "".join(p.read_text() for p in (tmp_path / "slurm").glob("*.out"))
    assert final["JobState"] == "COMPLETED", out[-5000:]
    assert "SIGUSR1 received" in out and "requeueing job" in out and "restart 1" in out, out[-5000:]
    assert "resuming from step checkpoint" in log.read_text()
    a = torch.load(tmp_path / "runs" / "whole" / "checkpoints" / "epoch_2.pt", weights_only=True)[
        "state_dict"
    ]
    b = torch.load(tmp_path / "runs" / "cut" / "checkpoints" / "epoch_2.pt", weights_only=True)["state_dict"]
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
