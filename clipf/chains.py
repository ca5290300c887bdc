"""Run study cells as parallel chains in one repository: ``python -m clipf.chains --jobs 2 CELL ...``.

``dvc repro`` locks a repository for its whole run, so two cells cannot train side by side in one
checkout. This runs each cell's ``pretrain@``, ``finetune@`` and ``eval@`` stages by their own commands
(resolved by DVC from ``dvc.yaml`` and the live plan, exactly what ``dvc repro`` would run), ``--jobs``
cells at a time, and when all three of a cell's stages succeed records them with ``dvc commit`` (one at
a time, retried while another DVC command holds the lock) and, with ``--git-commit``, commits the cell's
small results (``runs/<cell>``, ``dvc.lock``) by path, so nothing else staged is swept in. A cell whose
stages are already current (``dvc status``) is skipped; a failed cell is reported and the others go on.

It is orchestration only: no stage imports it, so it is no stage's code dependency. Do not edit a
stage's code while chains run: ``dvc commit`` records the code as it is at commit time.
"""

from __future__ import annotations

import argparse
import queue
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

PHASES = ("pretrain", "finetune", "eval")


def _env() -> dict:
    import os

    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}


def stage_commands(root: Path, cells: list[str]) -> dict[str, list[str]]:
    """``{cell: [cmd of pretrain@cell, finetune@cell, eval@cell]}`` as DVC resolves them."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = {s.addressing: s for s in repo.index.stages}
    out = {}
    for cell in cells:
        missing = [f"{p}@{cell}" for p in PHASES if f"{p}@{cell}" not in stages]
        if missing:
            raise SystemExit(
                f"clipf.chains: no stage {missing[0]} in dvc.yaml (is {cell!r} a cell of the plan?)"
            )
        out[cell] = [stages[f"{p}@{cell}"].cmd for p in PHASES]
    return out


def _dvc(root: Path, *args: str, tries: int = 60) -> subprocess.CompletedProcess:
    for _ in range(tries):
        proc = subprocess.run(["dvc", *args], cwd=root, env=_env(), capture_output=True, text=True)
        if proc.returncode == 0 or "lock" not in (proc.stderr + proc.stdout).lower():
            return proc
        time.sleep(5)
    return proc


def current(root: Path, cell: str) -> bool:
    """All three stages of ``cell`` are recorded and unchanged (``dvc status`` says nothing of them)."""
    proc = _dvc(root, "status", *[f"{p}@{cell}" for p in PHASES])
    return proc.returncode == 0 and not proc.stdout.strip() or "up to date" in proc.stdout


def run_cell(root: Path, cell: str, cmds: list[str], logs: Path) -> float:
    """The cell's three stage commands in order, output to ``logs/<cell>.log``; seconds taken."""
    logs.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(logs / f"{cell}.log", "w") as log:
        for phase, cmd in zip(PHASES, cmds, strict=True):
            log.write(f"$ {cmd}\n")
            log.flush()
            rc = subprocess.run(
                cmd, shell=True, cwd=root, env=_env(), stdout=log, stderr=subprocess.STDOUT
            ).returncode
            if rc:
                raise RuntimeError(f"{phase}@{cell} failed (exit {rc}); see {logs / (cell + '.log')}")
    return time.monotonic() - start


def record(root: Path, cell: str, seconds: float, git_commit: bool, lock: threading.Lock) -> None:
    with lock:
        proc = _dvc(root, "commit", "-f", *[f"{p}@{cell}" for p in PHASES])
        if proc.returncode:
            raise RuntimeError(f"dvc commit of {cell} failed: {proc.stderr[-2000:]}")
        if git_commit:
            subprocess.run(["git", "add", "-A", "--", f"runs/{cell}"], cwd=root, check=True)
            msg = f"study: cell {cell} (pretrain, finetune, eval; {seconds / 60:.1f} min of job time)"
            subprocess.run(
                ["git", "commit", "-q", "-m", msg, "--", f"runs/{cell}", "dvc.lock"], cwd=root, check=True
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipf.chains", description=__doc__.split("\n")[0])
    parser.add_argument("cells", nargs="+", help="cells of the live plan, in the order to run them")
    parser.add_argument("--jobs", type=int, default=2, help="cells trained at once (default 2)")
    parser.add_argument("--git-commit", action="store_true", help="git commit each recorded cell by path")
    parser.add_argument("--logs", default="build/chains", help="one log per cell (default build/chains)")
    args = parser.parse_args(argv)
    root = Path.cwd()
    cmds = stage_commands(root, args.cells)
    todo: queue.Queue[str] = queue.Queue()
    for cell in args.cells:
        todo.put(cell)
    lock, failed = threading.Lock(), []

    def worker() -> None:
        while True:
            try:
                cell = todo.get_nowait()
            except queue.Empty:
                return
            try:
                with lock:
                    done = current(root, cell)
                if done:
                    print(f"{cell}: current, skipped", flush=True)
                    continue
                print(f"{cell}: started {time.strftime('%H:%M:%S')}", flush=True)
                seconds = run_cell(root, cell, cmds[cell], Path(args.logs))
                record(root, cell, seconds, args.git_commit, lock)
                print(
                    f"{cell}: recorded after {seconds / 60:.1f} min ({time.strftime('%H:%M:%S')})", flush=True
                )
            except Exception as err:  # one failed cell does not stop the others
                failed.append(cell)
                print(f"{cell}: FAILED: {err}", flush=True)

    threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        print("failed:", shlex.join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
