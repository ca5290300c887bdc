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
from pathlib import Path

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


def sbatch_script(
    notebook: str | Path,
    parameters: Sequence[tuple[str, str]] = (),
    slurm: str = "",
    nodes: int = 1,
    gpus_per_node: int = 1,
    job_name: str | None = None,
    output_notebook: str | None = None,
    workdir: str | Path | None = None,
    log_dir: str = "runs/slurm",
    setup: str | None = None,
) -> str:
    """The sbatch script: ``#SBATCH`` lines (ours, then the user's ``slurm`` options), rendezvous
    variables, then one papermill run with ``-p`` for each parameter and the launch shape."""
    notebook = Path(notebook)
    stem = notebook.stem
    job_name = job_name or f"clipf-{stem}"
    workdir = Path(workdir or Path.cwd()).resolve()
    output_notebook = output_notebook or f"{log_dir}/{stem}-${{SLURM_JOB_ID}}.ipynb"
    if setup is None:
        venv = workdir / ".venv" / "bin" / "activate"
        setup = f"source {shlex.quote(str(venv))}" if venv.exists() else "# (activate your environment here)"
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={int(nodes)}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={int(gpus_per_node)}",
        f"#SBATCH --chdir={workdir}",
        f"#SBATCH --output={workdir / log_dir}/%x-%j.out",
    ]
    lines += [f"#SBATCH {opt}" for opt in _sbatch_options(slurm)]
    params = [*parameters, ("nnodes", str(int(nodes))), ("nproc_per_node", str(int(gpus_per_node)))]
    pm = ["papermill", str(notebook), output_notebook]
    for key, value in params:
        pm += ["-p", key, value]
    papermill_cmd = " ".join(shlex.quote(a) if "${" not in a else f'"{a}"' for a in pm)
    lines += [
        "",
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir))}",
        setup,
        f"mkdir -p {shlex.quote(log_dir)}",
        "",
        "# rendezvous for torchrun across the allocation (read by clipf.submit.launch_argv in the notebook)",
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f'export MASTER_PORT="${{MASTER_PORT:-{DEFAULT_PORT}}}"',
        'echo "job $SLURM_JOB_ID: $SLURM_NNODES node(s), rendezvous $MASTER_ADDR:$MASTER_PORT"',
        "",
        papermill_cmd,
        "",
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
    parser = argparse.ArgumentParser(
        prog="clipf submit",
        description="Run a notebook with papermill as a SLURM batch job (torchrun across the allocation).",
    )
    parser.add_argument("notebook", help="e.g. notebooks/02_pretrain.ipynb")
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
    parser.add_argument("--gpus-per-node", type=int, default=1)
    parser.add_argument("--job-name", default=None)
    parser.add_argument(
        "--output-notebook", default=None, help="executed notebook (default runs/slurm/<nb>-<jobid>.ipynb)"
    )
    parser.add_argument("--log-dir", default="runs/slurm")
    parser.add_argument("--dry-run", action="store_true", help="print the script, submit nothing")
    args = parser.parse_args(argv)

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
    for shape in ("nnodes", "nproc_per_node"):
        if shape not in declared:
            print(
                f"clipf submit: {args.notebook} declares no {shape!r} parameter; it cannot use the allocation",
                file=sys.stderr,
            )
            return 2
    try:
        script = sbatch_script(
            args.notebook,
            [tuple(p) for p in args.parameter],
            slurm=args.slurm,
            nodes=args.nodes,
            gpus_per_node=args.gpus_per_node,
            job_name=args.job_name,
            output_notebook=args.output_notebook,
            log_dir=args.log_dir,
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
    path = Path(args.log_dir) / f"{Path(args.notebook).stem}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    print(f"wrote {path}")
    return subprocess.run(["sbatch", str(path)]).returncode
