"""A real one-node SLURM cluster on localhost for tests: Debian's slurm-wlm + munge.

``LocalSlurm(root).start()`` writes a munge key and a slurm.conf under ``root`` (a CPU partition ``cpu``
with this machine's cores), starts ``munged``, ``slurmctld`` and ``slurmd`` (as root, pid files under
``root``), and waits for the node to be idle; ``stop()`` kills exactly the daemons it started, by pid.
Client commands see the cluster through :meth:`env` (``SLURM_CONF``). ``ensure_installed()`` installs
the Debian packages with apt-get when they are missing (needs root and the Debian mirror).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")


def ensure_installed() -> None:
    """apt-get install slurm-wlm and munge if their daemons are not on this machine."""
    if all(shutil.which(d) or Path(f"/usr/sbin/{d}").exists() for d in DAEMONS):
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            f"SLURM is not installed and this is not root: apt-get install {' '.join(PACKAGES)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env, capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    """munged + slurmctld + slurmd for one node on localhost, everything under ``root``."""

    def __init__(self, root: str | os.PathLike, cpus: int | None = None, memory_mb: int = 8000):
        self.root = Path(root).resolve()
        self.cpus = cpus or os.cpu_count() or 1
        self.memory_mb = memory_mb
        self.node = socket.gethostname().split(".")[0]
        self.pids: dict[str, int] = {}

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self) -> dict[str, str]:
        """The environment for client commands (sbatch, squeue, scontrol, scancel)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write(self) -> None:
        r = self.root
        for sub in ("state", "spool", "log", "munge"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(r, 0o755)  # munged insists that every directory on the socket's path is searchable
        os.chmod(r / "munge", 0o755)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        os.chmod(key, 0o600)
        shutil.chown(r / "munge", "munge", "munge")
        shutil.chown(key, "munge", "munge")
        ctld, slurmd = _free_port(), _free_port()
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=clipftest",
                    f"SlurmctldHost={self.node}(127.0.0.1)",
                    f"SlurmctldPort={ctld}",
                    f"SlurmdPort={slurmd}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={r}/munge/munge.socket",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={r}/state",
                    f"SlurmdSpoolDir={r}/spool",
                    f"SlurmctldPidFile={r}/slurmctld.pid",
                    f"SlurmdPidFile={r}/slurmd.pid",
                    f"SlurmctldLogFile={r}/log/slurmctld.log",
                    f"SlurmdLogFile={r}/log/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "SchedulerType=sched/backfill",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "JobCompType=jobcomp/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "KillWait=60",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN",
                    f"PartitionName=cpu Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def _pid(self, name: str, path: Path, timeout: float = 20.0) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if path.is_file() and path.read_text().strip():
                return int(path.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not start (no {path}); see {self.root / 'log'}")

    def start(self) -> LocalSlurm:
        """Write the configuration, start the three daemons, wait until the node accepts jobs."""
        ensure_installed()
        if os.geteuid() != 0:
            raise RuntimeError("LocalSlurm needs root (slurmd runs jobs as their user)")
        self._write()
        r = self.root
        try:
            out = subprocess.run(
                ["runuser", "-u", "munge", "--", "/usr/sbin/munged", f"--socket={r}/munge/munge.socket",
                 f"--key-file={r}/munge/munge.key", f"--pid-file={r}/munge/munged.pid",
                 f"--log-file={r}/munge/munged.log", f"--seed-file={r}/munge/seed"],
                capture_output=True, text=True,
            )  # fmt: skip
            if out.returncode:
                raise RuntimeError(f"munged did not start: {out.stderr.strip() or out.stdout.strip()}")
            self.pids["munged"] = self._pid("munged", r / "munge" / "munged.pid")
            subprocess.run(["/usr/sbin/slurmctld", "-f", str(self.conf)], check=True, env=self.env())
            self.pids["slurmctld"] = self._pid("slurmctld", r / "slurmctld.pid")
            subprocess.run(["/usr/sbin/slurmd", "-f", str(self.conf)], check=True, env=self.env())
            self.pids["slurmd"] = self._pid("slurmd", r / "slurmd.pid")
            self.wait_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def run(self, *argv: str, check: bool = True) -> str:
        """A client command against this cluster; its stdout."""
        out = subprocess.run(argv, env=self.env(), capture_output=True, text=True)
        if check and out.returncode:
            raise RuntimeError(f"{' '.join(argv)}: rc {out.returncode}: {out.stderr.strip()}")
        return out.stdout

    def wait_idle(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        state = ""
        while time.monotonic() < end:
            state = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip()
            if state in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"node not idle after {timeout:.0f} s (state {state!r}); see {self.root / 'log'}")

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, Restarts, ExitCode, ...)."""
        text = self.run("scontrol", "show", "job", job_id, "-o", check=False)
        return dict(f.split("=", 1) for f in text.split() if "=" in f)

    def stop(self) -> None:
        """Kill the daemons this object started (slurmd, slurmctld, munged), by pid."""
        for name in reversed(DAEMONS):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            end = time.monotonic() + 10
            while time.monotonic() < end:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
