"""Run study cells as parallel chains in one repository: ``python -m clipf.chains --jobs 2 CELL ...``.

``dvc repro`` locks a repository for its whole run, so two cells cannot train side by side in one
checkout. This runs each cell's ``pretrain@``, ``finetune@`` and ``eval@`` stages by their own commands
(resolved by DVC from ``dvc.yaml`` and the live plan, exactly what ``dvc repro`` would run), ``--jobs``
cells at a time, and when all three of a cell's stages succeed records them with ``dvc commit`` (one at
a time, retried while another DVC command holds the lock) and, with ``--git-commit``, commits the cell's
small results (``runs/<cell>``, ``dvc.lock``) by path, so nothing else staged is swept in. A cell whose
stages are already current (``dvc status``) is skipped; a failed cell is reported and the others go on.
The stage commands of every unit not seen yet are resolved in one batch (one DVC index load, ~20 s on a
2-core machine); ``dvc status`` runs per unit when it is picked (it costs ~7 s a stage, so a batch would
only make the first unit wait for all the others), and only when ``dvc.lock`` records all its stages.

On a fresh clone the recorded units' checkpoints and exports are absent (DVC outputs; without a DVC remote
nothing restores them), so ``dvc status`` calls every recorded unit changed and the chains would retrain it, as
``dvc repro`` would. ``--skip-recorded`` skips a unit whose stages ``dvc.lock`` records, with no status: the way
to finish a study on a new machine (the world is rebuilt first: ``dvc repro -s data@W freq@W``).

It is orchestration only: no stage imports it, so it is no stage's code dependency. Do not edit a
stage's code while chains run: ``dvc commit`` records the code as it is at commit time.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

PHASES = ("pretrain", "finetune", "eval")
UTA_PHASES = ("uta", "uta_eval", "uta_finetune", "uta_finetune_eval")  # a UTA student (uta-s<seed>)


def phases_of(unit: str) -> tuple[str, ...]:
    """The stages of a unit of work: a UTA student's four, a grid cell's three."""
    return UTA_PHASES if unit.startswith("uta-s") else PHASES


def _env() -> dict:
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}


def stage_commands(root: Path, units: list[str]) -> dict[str, list[str]]:
    """``{unit: [cmd of each of its stages]}`` as DVC resolves them (a cell: pretrain@, finetune@, eval@;
    a UTA student: :data:`UTA_PHASES`); a unit without its stages raises, naming the stage."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = {s.addressing: s for s in repo.index.stages}
    out = {}
    for unit in units:
        missing = [f"{p}@{unit}" for p in phases_of(unit) if f"{p}@{unit}" not in stages]
        if missing:
            raise ValueError(f"no stage {missing[0]} in dvc.yaml (is {unit!r} a unit of the plan?)")
        out[unit] = [stages[f"{p}@{unit}"].cmd for p in phases_of(unit)]
    return out


def _dvc(root: Path, *args: str, tries: int = 120) -> subprocess.CompletedProcess:
    for _ in range(tries):
        proc = subprocess.run(["dvc", *args], cwd=root, env=_env(), capture_output=True, text=True)
        if proc.returncode == 0 or "lock" not in (proc.stderr + proc.stdout).lower():
            return proc
        time.sleep(5)
    return proc


def current_units(root: Path, units: list[str]) -> set[str]:
    """The units whose every stage is recorded and unchanged: a unit with a stage missing from dvc.lock is
    not; one ``dvc status --json`` for the rest (it names each stage that is not current); a failed status
    raises with DVC's message."""
    locked = locked_stages(root)  # a stage not in dvc.lock is not current: no status needed for its unit
    units = [u for u in units if recorded(locked, u)]
    if not units:
        return set()
    proc = _dvc(root, "status", "--json", *[f"{p}@{u}" for u in units for p in phases_of(u)])
    if proc.returncode:
        raise RuntimeError(f"dvc status failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    changed = set(json.loads(proc.stdout or "{}"))
    return {u for u in units if not any(f"{p}@{u}" in changed for p in phases_of(u))}


def locked_stages(root: Path) -> set[str]:
    """The stages recorded in ``root/dvc.lock`` (none without one)."""
    import yaml

    path = root / "dvc.lock"
    if not path.exists():
        return set()
    return set(
        (yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}).get(
            "stages", {}
        )
    )


def recorded(locked: set[str], unit: str) -> bool:
    """``locked`` (:func:`locked_stages`) has every stage of ``unit`` (whether or not its outputs are here)."""
    return all(f"{p}@{unit}" in locked for p in phases_of(unit))


def current(root: Path, unit: str) -> bool:
    """Every stage of ``unit`` is recorded and unchanged (``dvc status`` says nothing of them)."""
    return unit in current_units(root, [unit])


def run_unit(root: Path, unit: str, cmds: list[str], logs: Path) -> float:
    """The unit's stage commands in order, output to ``logs/<unit>.log``; seconds taken."""
    logs.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(logs / f"{unit}.log", "w") as log:
        for phase, cmd in zip(phases_of(unit), cmds, strict=True):
            log.write(f"$ {cmd}\n")
            log.flush()
            rc = subprocess.run(
                cmd, shell=True, cwd=root, env=_env(), stdout=log, stderr=subprocess.STDOUT
            ).returncode
            if rc:
                raise RuntimeError(f"{phase}@{unit} failed (exit {rc}); see {logs / (unit + '.log')}")
    return time.monotonic() - start


@contextlib.contextmanager
def repo_lock(root: Path):
    """An exclusive lock on ``root/.dvc/tmp/clipf-chains.lock``, held while a unit is recorded, so that the
    chains of two processes never commit a ``dvc.lock`` that the other is writing."""
    path = root / ".dvc" / "tmp" / "clipf-chains.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record(root: Path, unit: str, seconds: float, git_commit: bool, lock: threading.Lock) -> None:
    """``dvc commit`` the unit's stages; with ``git_commit``, commit ``runs/<unit>`` and dvc.lock by path."""
    with lock, repo_lock(root):
        proc = _dvc(root, "commit", "-f", *[f"{p}@{unit}" for p in phases_of(unit)])
        if proc.returncode:
            raise RuntimeError(f"dvc commit of {unit} failed: {proc.stderr[-2000:]}")
        if git_commit:
            run_git(root, "add", "-A", "--", f"runs/{unit}")
            msg = f"study: {unit} ({', '.join(phases_of(unit))}; {seconds / 60:.1f} min of job time)"
            run_git(root, "commit", "-q", "-m", msg, "--", f"runs/{unit}", "dvc.lock")


def run_git(root: Path, *args: str, tries: int = 60) -> None:
    """``git ARGS``, waiting out another git process's ``index.lock`` (a commit made beside the chains)."""
    for _ in range(tries):
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        if proc.returncode == 0:
            return
        if "index.lock" not in proc.stderr:
            break
        time.sleep(2)
    raise RuntimeError(f"git {' '.join(args[:2])} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")


def read_queue(path: Path) -> list[str]:
    """The units of a queue file: one a line; blank lines and ``#`` comments skipped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipf.chains", description=__doc__.split("\n")[0])
    parser.add_argument(
        "units", nargs="*", help="cells (or UTA students, uta-s<seed>) of the live plan, in order"
    )
    parser.add_argument(
        "--queue", default=None, help="a file of more units, one a line, re-read before each pick"
    )
    parser.add_argument("--jobs", type=int, default=2, help="units run at once (default 2)")
    parser.add_argument("--git-commit", action="store_true", help="git commit each recorded unit by path")
    parser.add_argument("--logs", default="build/chains", help="one log per unit (default build/chains)")
    parser.add_argument(
        "--skip-recorded",
        action="store_true",
        help="skip a unit that dvc.lock records, with no dvc status (a fresh clone, whose recorded units' "
        "outputs are absent: without it they are retrained)",
    )
    args = parser.parse_args(argv)
    root = Path.cwd()
    lock, failed, taken = threading.Lock(), [], set()
    commands: dict[str, list[str]] = {}  # resolved units: their stage commands
    locked = locked_stages(root) if args.skip_recorded else set()  # read once: a 2 MB lock takes ~1.5 s

    def queued() -> list[str]:
        return list(args.units) + (read_queue(Path(args.queue)) if args.queue else [])

    def pick() -> str | None:
        with lock:
            for unit in queued():
                if unit not in taken:
                    taken.add(unit)
                    return unit
        return None

    def resolve(unit: str) -> tuple[list[str], str]:
        """``unit``'s commands (resolved with every other unit not seen yet) and why it is skipped: "current",
        "recorded" (``--skip-recorded``), or "" (it runs)."""
        with lock:
            if unit not in commands:
                batch = [unit] + [u for u in dict.fromkeys(queued()) if u not in taken and u not in commands]
                try:
                    commands.update(stage_commands(root, batch))
                except ValueError:  # a bad unit in the queue: resolve this one alone, and fail only it
                    commands.update(stage_commands(root, [unit]))
            if args.skip_recorded and recorded(locked, unit):
                return commands[unit], "recorded"
            return commands[unit], "current" if current(root, unit) else ""

    def say(line: str) -> None:  # one whole line at a time: two chains print side by side
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def worker() -> None:
        while (unit := pick()) is not None:
            try:
                cmds, skip = resolve(unit)
                if skip:
                    say(f"{unit}: {skip}, skipped")
                    continue
                say(f"{unit}: started {time.strftime('%H:%M:%S')}")
                seconds = run_unit(root, unit, cmds, Path(args.logs))
                record(root, unit, seconds, args.git_commit, lock)
                say(f"{unit}: recorded after {seconds / 60:.1f} min ({time.strftime('%H:%M:%S')})")
            except Exception as err:  # one failed unit does not stop the others
                failed.append(unit)
                say(f"{unit}: FAILED: {err}")

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
