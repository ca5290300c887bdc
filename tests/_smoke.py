"""One smoke study per test process: profile `smoke`'s whole DAG (`clipf study --profile smoke`) in a
temporary copy of the repository (tracked and untracked-but-not-ignored files, git + DVC initialised)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def env_for(repo: Path) -> dict:
    """This interpreter's scripts (clipf, papermill, dvc) first on PATH; the copy's code imported."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "PYTHONPATH": str(repo)}


@contextlib.contextmanager
def tool_env(repo: Path):
    saved = dict(os.environ)
    os.environ.update(env_for(repo))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.email=smoke@clipf", "-c", "user.name=smoke", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout


def copy_repo(dest: Path) -> Path:
    listed = git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    # the committed study outputs (runs/, results/, figures/, dvc.lock) belong to another profile
    study_outputs = ("runs/", "results/", "figures/", "dvc.lock")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file() and not rel.startswith(study_outputs):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / ".dvc").mkdir(exist_ok=True)
    for name in ("config", ".gitignore"):
        if (REPO / ".dvc" / name).exists():
            shutil.copy2(REPO / ".dvc" / name, dest / ".dvc" / name)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "smoke copy")
    return dest


def run(repo: Path, *argv: str, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), cwd=repo, env=env_for(repo), capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(
            f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@functools.cache
def smoke_study() -> Path:
    """The repository copy after `clipf study --profile smoke` (its log in ``smoke.log`` beside it)."""
    tmp = Path(tempfile.mkdtemp(prefix="clipf-smoke-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    repo = copy_repo(tmp / "repo")
    start = time.monotonic()
    proc = run(repo, sys.executable, "-m", "clipf.study", "--profile", "smoke", "--here")
    seconds = time.monotonic() - start
    (tmp / "smoke.log").write_text(f"{seconds:.1f} s\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode:
        raise AssertionError(
            f"smoke study failed ({proc.returncode}) after {seconds:.0f} s:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        )
    return repo
