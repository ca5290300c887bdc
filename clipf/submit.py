"""Launching: ``torchrun`` here or across a SLURM allocation, and ``clipf submit`` (papermill as a job).

``clipf submit NOTEBOOK -p key value ... --slurm '--partition gpu --time 24:00:00' --nodes 2
--gpus-per-node 4 [--dry-run]`` writes an ``sbatch`` script that runs papermill on the notebook with
the parameters (plus ``nnodes`` / ``nproc_per_node``). papermill runs once, on the batch host; the
notebook's training cell calls :func:`launch_argv`, which inside a multi-node allocation starts one
``torchrun`` per node with ``srun`` and a c10d rendezvous at ``$MASTER_ADDR:$MASTER_PORT`` (set by the
script from ``$SLURM_JOB_NODELIST``), keyed by ``$SLURM_JOB_ID``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from clipf.files import EXIT_REQUEUE, PREEMPT_ENV

DEFAULT_PORT = 29500


class NotebookError(ValueError):
    """A notebook that cannot be run as a parameterised stage; the message names it."""


def notebook_parameters(path: str | Path) -> dict[str, str]:
    """The parameters a notebook declares in its ``parameters``-tagged cell (name -> default, as source)."""
    path = Path(path)
    if not path.exists():
        raise NotebookError(f"{path}: no such notebook")
    cells = json.loads(path.read_text()).get("cells", [])
    tagged = [
        c
        for c in cells
        if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if not tagged:
        raise NotebookError(f"{path}: no code cell tagged 'parameters' (papermill would inject blindly)")
    source = "".join(tagged[0]["source"]) if isinstance(tagged[0]["source"], list) else tagged[0]["source"]
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise NotebookError(f"{path}: parameters cell does not parse: {err}") from err
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    out[target.id] = ast.get_source_segment(source, node.value) or ""
    return out


def launch_argv(
    module_args: Sequence[str],
    nproc_per_node: int = 1,
    nnodes: int = 1,
    module: str = "clipf.train",
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """The command that runs ``python -m module module_args`` under torchrun.

    One node: ``torchrun --standalone``. Several nodes: must be inside a SLURM allocation; ``srun``
    starts one torchrun per node, which meet at ``MASTER_ADDR:MASTER_PORT`` (c10d rendezvous).
    """
    env = os.environ if env is None else env
    torchrun = _torchrun()
    if int(nnodes) <= 1:
        return [
            *torchrun,
            "--standalone",
            f"--nproc_per_node={int(nproc_per_node)}",
            "-m",
            module,
            *module_args,
        ]
    if "SLURM_JOB_ID" not in env:
        raise RuntimeError(
            f"nnodes={nnodes} needs a SLURM allocation (run it with `clipf submit ... --nodes {nnodes}`)"
        )
    master = env.get("MASTER_ADDR") or _first_host(env["SLURM_JOB_NODELIST"])
    port = env.get("MASTER_PORT", str(DEFAULT_PORT))
    return [
        "srun",
        f"--nodes={int(nnodes)}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        *torchrun,
        f"--nnodes={int(nnodes)}",
        f"--nproc_per_node={int(nproc_per_node)}",
        f"--rdzv_id={env['SLURM_JOB_ID']}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={master}:{port}",
        "-m",
        module,
        *module_args,
    ]


def _torchrun() -> list[str]:
    """This interpreter's ``torchrun`` script (same environment), else ``python -m torch.distributed.run``."""
    script = Path(sys.executable).parent / "torchrun"
    return [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]


def _first_host(nodelist: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[0]


def options_argv(options: Mapping) -> list[str]:
    """open_clip_train-style flags from a mapping: ``batch_size: 64`` -> ``--batch-size 64``;
    True -> bare flag; False / None -> left out; a list -> several values."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + str(key).replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


@dataclass
class Shape:
    """What one job asks SLURM for, and how it reacts to preemption.

    ``gpus_per_node=0`` is a CPU job: no GRES line (a CPU partition rejects ``--gpus-per-node``),
    ``nproc_per_node`` processes per node (default: one per GPU, or 1), ``cpus_per_task`` cores for them.
    ``requeue``: ``#SBATCH --requeue`` and ``--signal=B:<signal>@<grace>``: ``grace`` seconds before the
    time limit SLURM signals the batch shell, which forwards SIGTERM to the run; the run finishes its
    step, writes a step checkpoint and stops; the shell then runs ``scontrol requeue`` and the requeued
    job resumes with the same command line (``--resume latest``).
    """

    nodes: int = 1
    gpus_per_node: int = 1
    nproc_per_node: int | None = None
    cpus_per_task: int | None = None
    requeue: bool = True
    signal: str = "USR1"
    grace: int = 120

    def __post_init__(self) -> None:
        for name in ("nodes", "gpus_per_node", "nproc_per_node", "cpus_per_task", "grace"):
            value = getattr(self, name)
            low = 1 if name in ("nodes", "nproc_per_node", "cpus_per_task") else 0
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= {low}, got {value!r}")
        if self.signal.upper().removeprefix("SIG") not in ("USR1", "USR2", "TERM", "INT"):
            raise ValueError(f"--signal: expected USR1, USR2, TERM or INT, got {self.signal!r}")

    @property
    def procs(self) -> int:
        """Processes per node."""
        return self.nproc_per_node or max(1, self.gpus_per_node)

    def sbatch_lines(self) -> list[str]:
        """The ``#SBATCH`` lines of the shape."""
        lines = [f"#SBATCH --nodes={self.nodes}", "#SBATCH --ntasks-per-node=1"]
        if self.gpus_per_node:
            lines.append(f"#SBATCH --gpus-per-node={self.gpus_per_node}")
        if self.cpus_per_task:
            lines.append(f"#SBATCH --cpus-per-task={self.cpus_per_task}")
        if self.requeue:
            sig = self.signal.upper().removeprefix("SIG")
            lines += ["#SBATCH --requeue", f"#SBATCH --signal=B:{sig}@{self.grace}"]
        return lines


def _shell_join(argv: Sequence[str]) -> str:
    """Quote for bash, leaving ``${VAR}`` references to the shell (double quotes)."""
    return " ".join(f'"{a}"' if "${" in a else shlex.quote(a) for a in argv)


def train_command(module_args: Sequence[str], shape: Shape, module: str = "clipf.train") -> list[str]:
    """The training command of a job: torchrun on one node, ``srun`` + torchrun (c10d rendezvous on
    ``$MASTER_ADDR:$MASTER_PORT``, id ``$SLURM_JOB_ID``) across several; resolved by the job's shell."""
    env = {
        "SLURM_JOB_ID": "${SLURM_JOB_ID}",
        "SLURM_JOB_NODELIST": "${SLURM_JOB_NODELIST}",
        "MASTER_ADDR": "${MASTER_ADDR}",
        "MASTER_PORT": "${MASTER_PORT}",
    }
    return launch_argv(module_args, shape.procs, shape.nodes, module=module, env=env)


# The job's body: the command runs in its own process group; a signal to the batch shell (SLURM's
# --signal=B:..., scancel --signal, the time limit's SIGTERM) is forwarded as SIGTERM to that group;
# every rank finishes its step, rank 0 writes a step checkpoint and touches $CLIPF_PREEMPT_FILE; once the
# whole group has exited the shell requeues the job. A run that stops by itself with EXIT_REQUEUE (it got
# the signal directly) is requeued too.
_BODY = """\
export {preempt_env}="$PWD/{log_dir}/preempted-${{SLURM_JOB_ID}}"
rm -f "${preempt_env}"
echo "job $SLURM_JOB_ID (restart ${{SLURM_RESTART_COUNT:-0}}): $SLURM_NNODES node(s), rendezvous $MASTER_ADDR:$MASTER_PORT"

child=""
preempted=0
forward() {{
  preempted=1
  echo "clipf: SIG$1 received: the run checkpoints and stops"
  [ -n "$child" ] && kill -TERM -- "-$child" 2>/dev/null || true
}}
trap 'forward USR1' USR1
trap 'forward USR2' USR2
trap 'forward TERM' TERM
trap 'forward INT' INT

setsid {command} &
child=$!
status=0
while :; do
  wait "$child" && status=0 || status=$?
  kill -0 "$child" 2>/dev/null || break  # a trapped signal interrupts wait; the run goes on
done
while pgrep -g "$child" >/dev/null; do sleep 1; done  # every rank has written and exited
if [ "$preempted" = 1 ] || [ -e "${preempt_env}" ] || [ "$status" = {requeue_code} ]; then
  {requeue}
fi
exit "$status"
"""


def sbatch_script(
    notebook: str | Path | None = None,
    parameters: Sequence[tuple[str, str]] = (),
    slurm: str = "",
    nodes: int = 1,
    gpus_per_node: int = 1,
    job_name: str | None = None,
    output_notebook: str | None = None,
    workdir: str | Path | None = None,
    log_dir: str = "runs/slurm",
    setup: str | None = None,
    *,
    shape: Shape | None = None,
    train_args: Sequence[str] | None = None,
) -> str:
    """The sbatch script: ``#SBATCH`` lines (the shape's, then the user's ``slurm`` options), rendezvous
    variables, then the job: papermill on ``notebook`` with ``-p`` for each parameter and the launch
    shape, or (``train_args``) torchrun of ``clipf.train`` directly; with the preemption handling of
    :class:`Shape` (signal forwarding, requeue)."""
    shape = shape or Shape(nodes=nodes, gpus_per_node=gpus_per_node)
    if (notebook is None) == (train_args is None):
        raise ValueError("give a notebook or training arguments (--train ...), not both")
    stem = Path(notebook).stem if notebook is not None else "train"
    job_name = job_name or f"clipf-{stem}"
    workdir = Path(workdir or Path.cwd()).resolve()
    if setup is None:
        venv = workdir / ".venv" / "bin" / "activate"
        setup = f"source {shlex.quote(str(venv))}" if venv.exists() else "# (activate your environment here)"
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        *shape.sbatch_lines(),
        f"#SBATCH --chdir={workdir}",
        f"#SBATCH --output={workdir / log_dir}/%x-%j.out",
        "#SBATCH --open-mode=append",  # a requeued job appends to its log
    ]
    lines += [f"#SBATCH {opt}" for opt in _sbatch_options(slurm)]
    if notebook is not None:
        output_notebook = output_notebook or f"{log_dir}/{stem}-${{SLURM_JOB_ID}}.ipynb"
        params = [*parameters, ("nnodes", str(shape.nodes)), ("nproc_per_node", str(shape.procs))]
        command = ["papermill", str(notebook), output_notebook]
        for key, value in params:
            command += ["-p", key, value]
    else:
        train_args = list(train_args or [])
        if shape.requeue and "--resume" not in train_args:
            train_args += ["--resume", "latest"]  # the requeued job runs the same line and resumes
        command = train_command(train_args, shape)
    requeue = (
        'echo "clipf: requeueing job $SLURM_JOB_ID"; scontrol requeue "$SLURM_JOB_ID"; exit 0'
        if shape.requeue
        else 'echo "clipf: preempted; not requeued (--no-requeue)"'
    )
    lines += [
        "",
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir))}",
        setup,
        f"mkdir -p {shlex.quote(log_dir)}",
        "",
        "# rendezvous for torchrun across the allocation (read by clipf.submit.launch_argv)",
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f'export MASTER_PORT="${{MASTER_PORT:-{DEFAULT_PORT}}}"',
        _BODY.format(
            preempt_env=PREEMPT_ENV,
            log_dir=log_dir,
            command=_shell_join(command),
            requeue_code=EXIT_REQUEUE,
            requeue=requeue,
        ),
    ]
    return "\n".join(lines)


def _sbatch_options(slurm: str) -> list[str]:
    """``'--partition gpu --time=1:00:00 -A proj'`` -> ``['--partition=gpu', '--time=1:00:00', '-A proj']``."""
    tokens, out = shlex.split(slurm or ""), []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("-"):
            raise ValueError(f"--slurm: expected an sbatch option, got {tok!r} in {slurm!r}")
        has_value = i + 1 < len(tokens) and not tokens[i + 1].startswith("-") and "=" not in tok
        if has_value:
            value = tokens[i + 1]
            out.append(f"{tok}={value}" if tok.startswith("--") else f"{tok} {value}")
            i += 2
        else:
            out.append(tok)
            i += 1
    return out


def cli(argv: list[str] | None = None) -> int:
    """``clipf submit NOTEBOOK -p k v ... | --train ARGS...``: write and submit an sbatch script."""
    parser = argparse.ArgumentParser(
        prog="clipf submit",
        description="Run a notebook with papermill, or clipf.train directly (--train ...), as a SLURM batch "
        "job: torchrun across the allocation, requeued after preemption (SIGUSR1/SIGTERM -> step "
        "checkpoint -> scontrol requeue -> --resume latest).",
    )
    parser.add_argument("notebook", nargs="?", help="e.g. notebooks/02_pretrain.ipynb (or use --train)")
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="notebook parameter",
    )
    parser.add_argument(
        "--slurm", default="", help="extra sbatch options, e.g. '--partition gpu --time 24:00:00'"
    )
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=1, help="0: a CPU job (no GRES request)")
    parser.add_argument(
        "--nproc-per-node", type=int, default=None, help="processes per node (default: GPUs, or 1)"
    )
    parser.add_argument("--cpus-per-task", type=int, default=None, help="#SBATCH --cpus-per-task")
    parser.add_argument("--no-requeue", dest="requeue", action="store_false", help="no --requeue/--signal")
    parser.add_argument("--signal", default="USR1", help="signal SLURM sends before the time limit (USR1)")
    parser.add_argument("--signal-grace", type=int, default=120, help="seconds before the time limit (120)")
    parser.add_argument("--job-name", default=None)
    parser.add_argument(
        "--output-notebook", default=None, help="executed notebook (default runs/slurm/<nb>-<jobid>.ipynb)"
    )
    parser.add_argument("--log-dir", default="runs/slurm")
    parser.add_argument("--dry-run", action="store_true", help="print the script, submit nothing")
    parser.add_argument(
        "--train",
        nargs=argparse.REMAINDER,
        default=None,
        metavar="ARGS",
        help="instead of a notebook: clipf.train arguments (everything after --train)",
    )
    args = parser.parse_args(argv)
    try:
        shape = Shape(
            nodes=args.nodes,
            gpus_per_node=args.gpus_per_node,
            nproc_per_node=args.nproc_per_node,
            cpus_per_task=args.cpus_per_task,
            requeue=args.requeue,
            signal=args.signal,
            grace=args.signal_grace,
        )
    except ValueError as err:
        print(f"clipf submit: {err}", file=sys.stderr)
        return 2
    if (args.notebook is None) == (args.train is None):
        print("clipf submit: give a notebook or --train ARGS (one of them)", file=sys.stderr)
        return 2
    if args.notebook is not None:
        try:
            declared = notebook_parameters(args.notebook)
        except NotebookError as err:
            print(f"clipf submit: {err}", file=sys.stderr)
            return 2
        unknown = [k for k, _ in args.parameter if k not in declared]
        if unknown:
            print(
                f"clipf submit: {args.notebook} has no parameter {unknown[0]!r} (its parameters: {', '.join(declared)})",
                file=sys.stderr,
            )
            return 2
        for key in ("nnodes", "nproc_per_node"):
            if key not in declared:
                print(
                    f"clipf submit: {args.notebook} declares no {key!r} parameter; it cannot use the allocation",
                    file=sys.stderr,
                )
                return 2
    elif args.parameter:
        print("clipf submit: -p is for notebooks; --train takes clipf.train options", file=sys.stderr)
        return 2
    try:
        script = sbatch_script(
            args.notebook,
            [tuple(p) for p in args.parameter],
            slurm=args.slurm,
            job_name=args.job_name,
            output_notebook=args.output_notebook,
            log_dir=args.log_dir,
            shape=shape,
            train_args=args.train,
        )
    except ValueError as err:
        print(f"clipf submit: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(script, end="")
        return 0
    if shutil.which("sbatch") is None:
        print("clipf submit: sbatch not found on PATH (use --dry-run to print the script)", file=sys.stderr)
        return 2
    stem = Path(args.notebook).stem if args.notebook else "train"
    path = Path(args.log_dir) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.sbatch"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    print(f"wrote {path}")
    return subprocess.run(["sbatch", str(path)]).returncode
