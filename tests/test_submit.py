"""clipf submit: the generated sbatch script, and torchrun launch lines locally and inside SLURM."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from clipf import submit

REPO = Path(__file__).resolve().parents[1]


def make_notebook(path: Path, tagged: bool = True) -> Path:
    cell = new_code_cell('masker = "frequency"\ntext_tokens = 8\nnnodes = None\nnproc_per_node = None')
    if tagged:
        cell.metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=[cell, new_code_cell("print(masker)")]), path)
    return path


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return make_notebook(tmp_path / "02_pretrain.ipynb")


def test_sbatch_script_runs_papermill_with_the_parameters(notebook: Path, tmp_path: Path):
    script = submit.sbatch_script(
        notebook,
        [("masker", "block"), ("text_tokens", "4")],
        slurm="--partition gpu --time=24:00:00 -A proj --exclusive",
        nodes=2,
        gpus_per_node=4,
        workdir=tmp_path,
    )
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    sbatch = [line for line in lines if line.startswith("#SBATCH")]
    assert "#SBATCH --nodes=2" in sbatch
    assert "#SBATCH --gpus-per-node=4" in sbatch
    assert "#SBATCH --ntasks-per-node=1" in sbatch
    assert "#SBATCH --job-name=clipf-02_pretrain" in sbatch
    assert [
        "#SBATCH --partition=gpu",
        "#SBATCH --time=24:00:00",
        "#SBATCH -A proj",
        "#SBATCH --exclusive",
    ] == sbatch[-4:]
    assert "set -euo pipefail" in lines
    assert f"cd {tmp_path.resolve()}" in lines
    assert any(line.startswith("export MASTER_ADDR=") and "SLURM_JOB_NODELIST" in line for line in lines)
    assert 'export MASTER_PORT="${MASTER_PORT:-29500}"' in lines
    (pm,) = [line for line in lines if line.startswith("setsid papermill ")]
    argv = shlex.split(pm.removeprefix("setsid ").removesuffix(" &"))
    assert argv[1] == str(notebook)
    assert argv[2] == "runs/slurm/02_pretrain-${SLURM_JOB_ID}.ipynb"
    pairs = [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == "-p"]
    assert pairs == [("masker", "block"), ("text_tokens", "4"), ("nnodes", "2"), ("nproc_per_node", "4")]
    assert lines.index(pm) > max(i for i, line in enumerate(lines) if line.startswith("export MASTER"))


def test_parameter_values_are_quoted(notebook: Path, tmp_path: Path):
    script = submit.sbatch_script(notebook, [("options", "{'epochs': 2, 'lr': 1e-4}")], workdir=tmp_path)
    (pm,) = [line for line in script.splitlines() if line.startswith("setsid papermill ")]
    argv = shlex.split(pm.removeprefix("setsid ").removesuffix(" &"))
    assert argv[argv.index("options") + 1] == "{'epochs': 2, 'lr': 1e-4}"


def test_cli_dry_run_prints_the_script(notebook: Path, capsys):
    rc = submit.cli(
        [
            str(notebook),
            "-p",
            "masker",
            "syntax",
            "--nodes",
            "1",
            "--gpus-per-node",
            "8",
            "--slurm=-p gpu",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "#SBATCH --gpus-per-node=8" in out and "#SBATCH -p gpu" in out
    assert "-p masker syntax" in out and "-p nproc_per_node 8" in out


def test_cli_names_bad_input(tmp_path: Path, notebook: Path, capsys):
    assert submit.cli([str(notebook), "-p", "maskr", "block", "--dry-run"]) == 2
    assert "has no parameter 'maskr'" in capsys.readouterr().err
    untagged = make_notebook(tmp_path / "untagged.ipynb", tagged=False)
    assert submit.cli([str(untagged), "--dry-run"]) == 2
    assert "untagged.ipynb: no code cell tagged 'parameters'" in capsys.readouterr().err
    assert submit.cli([str(tmp_path / "nope.ipynb"), "--dry-run"]) == 2
    assert "no such notebook" in capsys.readouterr().err
    assert submit.cli([str(notebook), "--slurm", "gpu", "--dry-run"]) == 2
    assert "expected an sbatch option" in capsys.readouterr().err


def test_repo_training_notebooks_are_submittable():
    for name in ("02_pretrain", "03_finetune"):
        declared = submit.notebook_parameters(REPO / "notebooks" / f"{name}.ipynb")
        assert {"nnodes", "nproc_per_node", "profile", "options"} <= set(declared)


def test_launch_argv_local_and_slurm():
    local = submit.launch_argv(["--epochs", "1"], nproc_per_node=2, nnodes=1, env={})
    assert Path(local[0]).name in ("torchrun", "python", Path(sys.executable).name)
    assert "--standalone" in local and "--nproc_per_node=2" in local
    assert local[-4:] == ["-m", "clipf.train", "--epochs", "1"]
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "gpu[01-02]",
        "MASTER_ADDR": "gpu01",
        "MASTER_PORT": "29600",
    }
    multi = submit.launch_argv(["--epochs", "1"], nproc_per_node=4, nnodes=2, env=env)
    assert multi[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--nnodes=2" in multi and "--nproc_per_node=4" in multi
    assert "--rdzv_id=4242" in multi and "--rdzv_backend=c10d" in multi
    assert "--rdzv_endpoint=gpu01:29600" in multi
    with pytest.raises(RuntimeError, match="needs a SLURM allocation"):
        submit.launch_argv([], nproc_per_node=4, nnodes=2, env={})


def test_options_argv():
    argv = submit.options_argv(
        {
            "batch_size": 64,
            "lr": 1e-3,
            "grad_checkpointing": True,
            "local_loss": False,
            "x": None,
            "aug_cfg": ["scale=(0.5,1.0)"],
        }
    )
    assert argv == [
        "--batch-size",
        "64",
        "--lr",
        "0.001",
        "--grad-checkpointing",
        "--aug-cfg",
        "scale=(0.5,1.0)",
    ]


def test_cpu_job_has_no_gres_and_requeues(tmp_path: Path):
    """--gpus-per-node 0: no GRES line (a CPU partition rejects it), N processes, cores per task;
    --requeue and --signal=B:USR1@grace by default; a training job resumes with --resume latest."""
    shape = submit.Shape(gpus_per_node=0, nproc_per_node=2, cpus_per_task=2, grace=45)
    script = submit.sbatch_script(train_args=["--epochs", "1"], shape=shape, workdir=tmp_path)
    sbatch = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert not any(line.startswith(("#SBATCH --gpus", "#SBATCH --gres")) for line in sbatch)
    assert {"#SBATCH --cpus-per-task=2", "#SBATCH --requeue", "#SBATCH --signal=B:USR1@45"} <= set(sbatch)
    assert "#SBATCH --open-mode=append" in sbatch
    (cmd,) = [line for line in script.splitlines() if line.startswith("setsid ")]
    argv = shlex.split(cmd.removeprefix("setsid ").removesuffix(" &"))
    assert "--nproc_per_node=2" in argv and argv[-5:] == [
        "clipf.train",
        "--epochs",
        "1",
        "--resume",
        "latest",
    ]
    assert 'scontrol requeue "$SLURM_JOB_ID"' in script and "trap 'forward USR1' USR1" in script
    off = submit.sbatch_script(train_args=[], shape=submit.Shape(requeue=False), workdir=tmp_path)
    assert "--requeue" not in off and "--signal" not in off and "scontrol requeue" not in off


def test_submit_names_bad_shapes(notebook: Path, capsys):
    assert submit.cli(["--gpus-per-node", "-1", "--dry-run", "--train"]) == 2
    assert "--gpus-per-node: expected an integer >= 0" in capsys.readouterr().err
    assert submit.cli(["--signal", "KILL", "--dry-run", "--train"]) == 2
    assert "--signal: expected USR1" in capsys.readouterr().err
    assert submit.cli(["--dry-run"]) == 2
    assert "give a notebook or --train" in capsys.readouterr().err
    assert submit.cli([str(notebook), "--dry-run", "--train", "--epochs", "1"]) == 2
    assert submit.cli(["-p", "a", "b", "--dry-run", "--train"]) == 2
    assert "-p is for notebooks" in capsys.readouterr().err


def test_multi_node_training_job_uses_srun_and_the_allocation(tmp_path: Path):
    shape = submit.Shape(nodes=2, gpus_per_node=4)
    script = submit.sbatch_script(train_args=["--epochs", "1"], shape=shape, workdir=tmp_path)
    (cmd,) = [line for line in script.splitlines() if line.startswith("setsid ")]
    assert cmd.startswith("setsid srun --nodes=2") and '"--rdzv_id=${SLURM_JOB_ID}"' in cmd
    assert '"--rdzv_endpoint=${MASTER_ADDR}:${MASTER_PORT}"' in cmd and "#SBATCH --gpus-per-node=4" in script
