"""The study pipeline: ``clipf study --profile P`` plans the profile into params.yaml and runs ``dvc repro``.

Subcommands (the stages of ``dvc.yaml`` call some of them):

- ``clipf study [--profile P] [--set KEY=VALUE ...] [--exp] [--dry-run] [--here]`` — select and plan the
  profile (:func:`clipf.profiles.plan`), check its data, run ``dvc repro`` (``--exp``: ``dvc exp run``),
  then print its main tables. The committed profile (params.yaml's ``profile:``) runs at the repository
  root; any other in ``build/profiles/<P>/``, a DVC project of its own (``--here``: at the root).
  ``make demo`` is ``python -m clipf.study --profile demo``.
- ``clipf study plan [--profile P]`` — only write the live sections of params.yaml.
- ``clipf study check`` — the ``plan`` stage: the live sections are a current plan, every notebook
  has a ``parameters`` cell, real-data shards exist.
- ``clipf study data --out DIR`` / ``clipf study freq --out FILE`` — the data and frequency stages:
  the embedded world (``clipf data synth``) or a pointer to your shards; a frequency table built with
  ``clipf freq build`` from the training captions (or your published ``{word: P}`` file).

The helpers below are what the notebooks call, so the notebooks stay a few lines per cell.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clipf import profiles
from clipf.files import FULL_CONTEXT, write_json
from clipf.freq import DEFAULT_RULE
from clipf.metrics import read_metrics  # noqa: F401  (re-exported: the notebooks read metrics.json)
from clipf.submit import NotebookError, launch_argv, notebook_parameters, options_argv

NOTEBOOKS = ("01_frequency", "02_pretrain", "03_finetune", "04_benchmark", "05_report")
OUTPUTS = ("figures/", "results/results.csv", "results/report/")


class StageError(RuntimeError):
    """A stage step that failed; the message names it and what to look at."""


# ---------------------------------------------------------------- where things are


def repo_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``params.yaml``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").exists():
            return folder
    raise StageError(f"no params.yaml at or above {here}: run from inside the clipf repository")


class _KernelShutdownNoise(logging.Filter):
    """Drops ipykernel's "KeyboardInterrupt caught in kernel" (issue 15): jupyter_client interrupts every
    kernel it shuts down, and when that SIGINT lands while the kernel answers papermill's last
    kernel_info request, ipykernel logs it as an error to the stage's stderr. A race, not a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("KeyboardInterrupt caught in kernel")


def goto_root() -> Path:
    """chdir to the repository root (a notebook opened in notebooks/ runs like a DVC stage)."""
    root = repo_root()
    os.chdir(root)
    kernel_log = logging.getLogger("IPKernelApp")  # the kernel's own log (each notebook calls goto_root)
    if not any(isinstance(f, _KernelShutdownNoise) for f in kernel_log.filters):
        kernel_log.addFilter(_KernelShutdownNoise())
    return root


def config(
    profile: str | None = None, params_file: str | Path = "params.yaml", world: str | None = None
) -> dict:
    """The stage configuration: the live sections of params.yaml (what ``dvc repro`` runs), or
    profile ``profile`` resolved afresh (e.g. ``cc12m`` from a notebook submitted to SLURM); ``world``:
    as one world of the plan sees it (:func:`world_config`)."""
    params = profiles.load(params_file)
    if profile:
        cfg = profiles.resolve(params, profile)
    else:
        missing = [k for k in profiles.LIVE_KEYS if k not in params]
        if missing:
            raise profiles.ProfileError(
                f"{params_file}: no live {', '.join(missing)}; run `clipf study plan`"
            )
        cfg = {k: params[k] for k in profiles.LIVE_KEYS}
    return world_config(cfg, world) if world else cfg


def world_config(cfg: Mapping, world: str) -> dict:
    """``cfg`` as the stages of one world see it: ``data.dir`` its data (``data/<world>``),
    ``data.preset`` its world preset, ``freq.table`` its frequency table, ``report.dataset`` its
    main-table set, ``cells`` its cells only."""
    worlds = cfg.get("worlds") or {}
    if world not in worlds:
        raise profiles.ProfileError(
            f"world {world!r} is not in the plan (worlds: {', '.join(worlds) or 'none'})"
        )
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in cfg.items()}
    folder, table = profiles.world_paths(world)
    out["data"] = {**out["data"], "dir": folder, "preset": worlds[world].get("preset")}
    out["freq"] = {**out["freq"], "table": table}
    out["report"] = {**out["report"], "dataset": worlds[world]["dataset"]}
    out["cells"] = {k: c for k, c in (cfg.get("cells") or {}).items() if c.get("world") == world}
    out["world"] = world
    return out


def write_cell(run: str | Path, cell: Mapping) -> Path:
    """``RUN/cell.json``: the plan's cell (world, masker, K, ...), read by ``clipf eval collect``."""
    from clipf.evaluate.base import CELL_NAME

    return write_json(Path(run) / CELL_NAME, dict(cell), sort_keys=True)


def expand(pattern: str) -> list[str]:
    from braceexpand import braceexpand

    return list(braceexpand(pattern))


def check_shards(pattern: str, what: str = "data.train_data") -> int:
    """Raise naming the first missing shard of a ``{a..b}`` pattern (and how many are missing)."""
    names = [n for part in pattern.split("::") for n in expand(part)]
    missing = [n for n in names if "://" not in n and not Path(n).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more of {len(names)})" if len(missing) > 1 else ""
        raise StageError(f"{what}: shard not found: {missing[0]}{more}; point it at your webdataset shards")
    return len(names)


def shard_pattern(folder: str | Path) -> tuple[str, int]:
    """``folder/{00000..000NN}.tar`` and the sample count of a ``clipf data synth`` split."""
    from clipf.world.generate import WorldError, shard_spec

    try:
        return shard_spec(folder)
    except WorldError as err:
        raise StageError(str(err)) from None


def data_source(cfg: Mapping) -> dict:
    """Where training / validation pairs and benchmark sets are: train_data, train_num_samples,
    val_data, val_num_samples, dataset_root."""
    data = cfg["data"]
    if data.get("source", "embedded") == "shards":
        out = {
            "train_data": data["train_data"],
            "train_num_samples": data.get("train_num_samples"),
            "val_data": data.get("val_data"),
            "val_num_samples": data.get("val_num_samples"),
            "dataset_root": data.get("dataset_root"),
        }
        return out
    root = Path(data.get("dir", "data/world"))
    train, n_train = shard_pattern(root / "train")
    out = {"train_data": train, "train_num_samples": n_train, "dataset_root": str(root / "eval")}
    if (root / "val" / "sizes.json").exists():
        out["val_data"], out["val_num_samples"] = shard_pattern(root / "val")
    return out


# ---------------------------------------------------------------- training commands


def run_dir(cell: str, runs: str | Path = "runs") -> Path:
    return Path(runs) / cell


def data_argv(cfg: Mapping, options: Mapping) -> list[str]:
    """``clipf.train`` data arguments of the profile's data (:func:`data_source`): the training shards,
    their sample count and the validation set, each unless ``options`` sets it."""
    src = data_source(cfg)
    argv = ["--train-data", src["train_data"], "--dataset-type", "webdataset"]
    if src.get("train_num_samples") and "train_num_samples" not in options:
        argv += ["--train-num-samples", str(src["train_num_samples"])]
    if src.get("val_data") and "val_data" not in options:
        argv += ["--val-data", src["val_data"]]
        if src.get("val_num_samples"):
            argv += ["--val-num-samples", str(src["val_num_samples"])]
    return argv


def train_argv(
    cfg: Mapping,
    phase: str,
    cell_name: str,
    cell: Mapping | None = None,
    runs: str | Path = "runs",
    options: Mapping | None = None,
    pretrained: str | Path | None = None,
) -> list[str]:
    """``clipf.train`` arguments for one phase of one cell.

    ``pretrain``: the cell's masking (masker, K, image mask; frequency table, threshold and rule — the
    rule always passed, so it is visible in the stage's command) and ``cfg['pretrain']`` options. ``finetune``: no masking, ``cfg['finetune']`` options (the model
    defaults to the pre-training one), from ``pretrained``. ``options`` overrides either.
    """
    if phase not in ("pretrain", "finetune"):
        raise ValueError(f"phase must be pretrain or finetune, got {phase!r}")
    opts = dict(cfg[phase])
    if phase == "finetune":
        opts.setdefault("model", cfg["pretrain"].get("model"))
    opts.update(options or {})
    argv = data_argv(cfg, opts) + ["--logs-dir", str(runs), "--name", f"{cell_name}/{phase}"]
    if phase == "pretrain":
        if cell is None:
            raise ValueError("pretrain needs the cell (masker, text_tokens, image_mask, seed)")
        argv += ["--reduction-mask", cell["masker"], "--text-tokens", str(cell["text_tokens"])]
        if cell.get("image_mask"):
            argv += ["--force-patch-dropout", str(cell["image_mask"])]
        if cell["masker"] == "frequency":
            rule = cell.get("rule") or cfg["freq"].get("rule") or DEFAULT_RULE
            argv += ["--freq-table", cfg["freq"]["table"], "--freq-threshold", str(cell["threshold"])]
            argv += ["--freq-rule", str(rule)]
        argv += ["--seed", str(cell["seed"])]
    else:
        if pretrained is None:
            raise ValueError("finetune needs the pre-trained checkpoint")
        argv += ["--pretrained", str(pretrained)]
        if cell is not None:
            argv += ["--seed", str(cell["seed"])]
    return argv + options_argv(opts)


def last_checkpoint(phase_dir: str | Path) -> Path:
    """The highest ``epoch_N.pt`` under ``phase_dir/checkpoints``."""
    ckpts = sorted(Path(phase_dir, "checkpoints").glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    if not ckpts:
        raise StageError(f"{phase_dir}/checkpoints: no epoch_N.pt (did pre-training finish?)")
    return ckpts[-1]


def launch(
    module_args: Sequence[str], cfg: Mapping, nproc_per_node: int | None = None, nnodes: int | None = None
) -> list[str]:
    """``torchrun ... -m clipf.train module_args`` with the profile's launch shape (overridable);
    ``launch.threads`` sets OMP_NUM_THREADS (``env`` prefix: visible in the logged command)."""
    launch_cfg = cfg.get("launch") or {}
    argv = launch_argv(
        module_args,
        nproc_per_node=nproc_per_node or launch_cfg.get("nproc_per_node", 1),
        nnodes=nnodes or launch_cfg.get("nnodes", 1),
    )
    threads = launch_cfg.get("threads")
    return ["env", f"OMP_NUM_THREADS={int(threads)}", *argv] if threads else argv


# torch's exit-time INFO dump ("TorchDynamo compilation metrics", "FakeTensor cache stats", issue 15):
# open_clip_train's setup_logging sets every logger, torch's included, to INFO, so each training process
# prints these glog-style lines when it exits. run_live does not echo them.
_TORCH_EXIT_INFO = re.compile(r"I\d{4} [\d:.]+ +\d+ torch/(_dynamo|_subclasses)/")


def run_live(argv: Sequence[str], what: str | None = None, tail: int = 30) -> None:
    """Run a command, echoing its output line by line (live in Jupyter and in papermill logs);
    raise :class:`StageError` with its last lines if it fails."""
    what = what or Path(argv[0]).name
    print("$", shlex.join(map(str, argv)), flush=True)
    last: collections.deque[str] = collections.deque(maxlen=tail)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        list(map(str, argv)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if _TORCH_EXIT_INFO.match(line):
                continue
            print(line, end="", flush=True)
            last.append(line)
    if proc.returncode:
        raise StageError(f"{what} failed (exit {proc.returncode}); last lines:\n{''.join(last)}")


def fresh(path: str | Path) -> Path:
    """Remove what an earlier (possibly interrupted) run left at ``path``: a stage starts clean."""
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    return path


# ---------------------------------------------------------------- evaluation and the report's inputs


def epoch_checkpoints(phase_dir: str | Path) -> list[Path]:
    """Every ``epoch_N.pt`` of a phase, by epoch."""
    return sorted(Path(phase_dir, "checkpoints").glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))


def evaluate(
    run: str | Path, checkpoint: str | Path, dataset_root: str, datasets: Sequence[str], eval_cfg: Mapping
) -> None:
    """``clipf eval RUN --checkpoint CKPT --dataset-root DIR [--datasets ...] [--prompts ...]`` in this
    process (``eval_cfg['protocols']``: the zero-shot protocols, e.g. ``[full, masked]``)."""
    argv = ["eval", str(run), "--checkpoint", str(checkpoint), "--dataset-root", str(dataset_root)]
    if datasets:
        argv += ["--datasets", *datasets]
    if eval_cfg.get("protocols"):
        argv += ["--prompts", *eval_cfg["protocols"]]
    for key in ("batch_size", "num_workers", "threads", "device"):
        if eval_cfg.get(key) is not None:
            argv += ["--" + key.replace("_", "-"), str(eval_cfg[key])]
    from clipf.evaluate.cli import cli as eval_cli

    print("$ clipf", shlex.join(argv), flush=True)
    rc = eval_cli(argv[1:])
    if rc:
        raise StageError(f"clipf eval failed on {run} ({checkpoint}) (exit {rc})")


def planned_rows(tidy, cells: Mapping):
    """Rows of the tidy table that belong to the cells of the plan (stale runs left out)."""
    return tidy[tidy["run"].isin(list(cells))].copy()


# ---------------------------------------------------------------- the UTA stages (06_uta, uta_eval)


def uta_teacher(cfg: Mapping, runs: str | Path = "runs", seed: int = 0, world: str | None = None) -> Path:
    """The study's unmasked CLIP baseline run (``clip`` baseline cell: 32 text tokens, no image mask) of
    ``world`` (``concepts-truncate-k32-m0-s0``; no world: a run outside a study plan)."""
    k = int(cfg.get("grid", {}).get("full_text_tokens", FULL_CONTEXT))
    return Path(runs) / profiles.cell_name("truncate", k, 0.0, seed, world=world)


def uta_argv(
    cfg: Mapping,
    cell: str,
    teacher: str | os.PathLike,
    ratio: float = profiles.UTA_KEYS["mask_ratio"],
    masker: str = profiles.UTA_KEYS["masker"],
    seed: int = 0,
    runs: str | Path = "runs",
    options: Mapping | None = None,
) -> list[str]:
    """``clipf.train`` arguments of a UTA pre-training on the study's data with its ``pretrain:`` options
    (``options`` override them), into ``runs/<cell>/pretrain``."""
    opts = {**cfg["pretrain"], **(options or {})}
    argv = [
        "--objective",
        "uta",
        "--teacher",
        str(teacher),
        "--uta-mask-ratio",
        str(ratio),
        "--uta-masker",
        masker,
    ]
    argv += data_argv(cfg, opts) + ["--seed", str(seed)]
    argv += ["--logs-dir", str(runs), "--name", f"{cell}/pretrain"]
    return argv + options_argv(opts)


@dataclass
class UTAStudyRun:
    """What the ``uta`` stage (06_uta) runs for one seed."""

    cell: str
    run: Path
    seed: int
    teacher: str  # the teacher's export folder
    baseline: Path  # the CLIP baseline's pre-training phase (compute is matched to it)
    settings: dict[str, Any]  # the plan's uta: settings with the overrides (mask_ratio, masker, model, ...)
    compute: dict[str, Any]  # match_compute's record
    argv: list[str]  # clipf.train arguments


def uta_run(
    cfg: Mapping,
    seed: int = 0,
    *,
    cell: str | None = None,
    teacher: str | os.PathLike | None = None,
    baseline: str | os.PathLike | None = None,
    runs: str | Path = "runs",
    **overrides: Any,
) -> UTAStudyRun:
    """The UTA student of ``seed`` in a study plan ``cfg`` (:func:`config`): the plan's ``uta``
    settings (``mask_ratio``, ``masker``, ``model``, ``epochs``, ``options``; any of them in ``overrides``,
    None = the plan's), its teacher (default: the plan's teacher cell of that seed, else the seed's CLIP
    baseline; its ``pretrain/export``) and the CLIP baseline the compute is matched to (``RUN/pretrain``)."""
    from clipf.objectives.uta import match_compute

    u = {**profiles.UTA_KEYS, **(cfg.get("uta") or {})}
    u.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(overrides) - set(profiles.UTA_KEYS))
    if unknown:
        raise ValueError(
            f"unknown UTA setting(s) {', '.join(unknown)} (known: {', '.join(profiles.UTA_KEYS)})"
        )
    name = profiles.uta_cell_name(seed)
    item = (cfg.get("uta_cells") or {}).get(name) or {}
    world = item.get("world") or u.get("world")
    clip_run = Path(runs) / item["baseline"] if item.get("baseline") else uta_teacher(cfg, runs, seed, world)
    teacher_run = Path(runs) / item["teacher"] if item.get("teacher") else clip_run
    teacher = str(teacher or teacher_run / "pretrain" / "export")
    baseline = Path(baseline or clip_run / "pretrain")
    model = u.get("model") or cfg["pretrain"]["model"]
    options = dict(u.get("options") or {})
    epochs = options.pop("epochs", u.get("epochs", "matched"))
    src = data_source(cfg)
    per_epoch = options.get("train_num_samples") or cfg["pretrain"].get("train_num_samples")
    compute = match_compute(
        baseline,
        teacher,
        model,
        int(per_epoch or src["train_num_samples"]),
        u["mask_ratio"],
        u["masker"],
        options.get("uta_head", "linear"),
        epochs,
    )
    cell = cell or name
    opts = {**options, "model": model, "epochs": compute["epochs"]}
    argv = uta_argv(cfg, cell, teacher, u["mask_ratio"], u["masker"], seed, runs, opts)
    settings = {k: v for k, v in u.items() if k not in ("seeds", "teacher")} | {"model": model}
    return UTAStudyRun(cell, Path(runs) / cell, int(seed), teacher, baseline, settings, compute, argv)


def uta_eval(cfg: Mapping, cell: str, phase: str, runs: str | Path = "runs") -> None:
    """The ``uta_eval`` / ``uta_finetune_eval`` stages: CLIP_benchmark (``clipf eval``) on ``RUN/<phase>/export``
    into ``RUN/eval/<phase>`` (every evaluation set of the plan)."""
    run = run_dir(cell, runs)
    fresh(run / "eval" / phase)
    datasets = cfg["eval"].get("datasets") or []
    evaluate(run, phase, data_source(cfg)["dataset_root"], datasets, cfg["eval"])


# ---------------------------------------------------------------- the data and frequency stages


def data_stage(cfg: Mapping, out: str | Path, world_file: str | Path = "params.yaml") -> None:
    """Embedded: ``clipf data synth`` (``data.preset``: the world) into ``out``. Shards: check they
    exist, write ``out/source.json``."""
    data, out = cfg["data"], Path(out)
    fresh(out)
    if data.get("source", "embedded") == "shards":
        n = check_shards(data["train_data"])
        if data.get("dataset_root") and not Path(data["dataset_root"]).exists():
            raise StageError(
                f"data.dataset_root: not found: {data['dataset_root']} (CLIP_benchmark datasets)"
            )
        out.mkdir(parents=True)
        pointer = {k: data.get(k) for k in ("train_data", "train_num_samples", "val_data", "dataset_root")}
        write_json(out / "source.json", {**pointer, "train_shards": n})
        print(f"data: {n} training shards at {data['train_data']}")
        return
    argv = ["synth", "--out", str(out), "--train", str(data["train"]), "--val", str(data["val"])]
    argv += ["--image-size", str(data["image_size"]), "--seed", str(data["seed"])]
    argv += ["--config", str(world_file), "--no-progress"]
    if data.get("preset"):
        argv += ["--preset", str(data["preset"])]
    if data.get("eval") is not None:
        argv += ["--eval", str(data["eval"])]
    from clipf.world.cli import cli as data_cli

    _run_clipf("data", data_cli, argv)


def freq_stage(cfg: Mapping, out: str | Path) -> None:
    """``clipf freq build`` over the training captions (or copy ``freq.published``: the authors' file)."""
    freq, out = cfg["freq"], Path(out)
    fresh(out)
    if freq.get("published"):
        src = Path(freq["published"])
        if not src.exists():
            raise StageError(f"freq.published: not found: {src}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out)
        return
    inputs = expand(data_source(cfg)["train_data"])
    argv = ["build", "--out", str(out), "--min-count", str(freq.get("min_count", 5)), "--no-progress"]
    if freq.get("clean"):
        argv.append("--clean")
    if freq.get("workers"):
        argv += ["--workers", str(freq["workers"])]
    from clipf.freq import cli as freq_cli

    _run_clipf("freq", freq_cli, argv + inputs)


def _run_clipf(command: str, cli: Callable[[list[str]], int], argv: list[str]) -> None:
    """``clipf <command> argv`` in this process (``cli``: that command's own ``cli``, imported by the
    caller so that the static import graph, and so each stage's code deps, see it)."""
    shown = argv if len(argv) < 12 else [*argv[:10], f"... ({len(argv) - 10} more)"]
    print("$ clipf", command, shlex.join(shown), flush=True)
    rc = cli(argv)
    if rc:
        raise StageError(f"clipf {command} failed (exit {rc})")


# ---------------------------------------------------------------- checks and the driver


def check(params_file: str | Path = "params.yaml", notebooks: str | Path = "notebooks") -> dict:
    """The ``plan`` stage: a current plan, notebooks with parameters cells, real shards present."""
    params = profiles.load(params_file)
    planned = profiles.check(params)
    for name in NOTEBOOKS:
        notebook_parameters(Path(notebooks) / f"{name}.ipynb")
    if params["data"].get("source") == "shards":
        check_shards(params["data"]["train_data"])
    return planned


def _set(params_file: Path, assignments: Sequence[str]) -> None:
    """``--set profiles.demo.grid.seeds=[0,1]``: YAML values at dotted paths, written in place
    (comments and layout kept; lists and mappings of scalars written in flow style)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    doc = rt.load(params_file.read_text())
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep:
            raise profiles.ProfileError(f"--set {item!r}: expected KEY=VALUE")
        *parents, leaf = key.split(".")
        node = doc
        for part in parents:
            if not isinstance(node, Mapping) or part not in node:
                raise profiles.ProfileError(f"--set {key}: no {part!r} in {params_file.name}")
            node = node[part]
        value = yaml.safe_load(raw)
        if isinstance(value, list | dict) and all(not isinstance(v, list | dict) for v in _values(value)):
            value = (CommentedSeq if isinstance(value, list) else CommentedMap)(value)
            value.fa.set_flow_style()
        node[leaf] = value
    with params_file.open("w") as fh:
        rt.dump(doc, fh)


def _values(obj: list | dict) -> list:
    return list(obj.values()) if isinstance(obj, dict) else list(obj)


def tool_env() -> dict:
    """Environment for dvc and its stages: this interpreter's scripts (clipf, papermill) on PATH."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


PROFILE_ROOTS = Path("build/profiles")  # where profiles other than the committed one run
# what a profile root copies: everything dvc.yaml reads that no stage makes (docs: the predictions' checks)
SCAFFOLD = ("dvc.yaml", "params.yaml", ".dvcignore", "notebooks", "clipf", "docs")


def profile_root(root: Path, profile: str | None, here: bool = False) -> Path:
    """Where ``profile`` runs: ``root`` for the committed one (params.yaml's ``profile:``, or ``here``),
    else ``root/build/profiles/<profile>``: a DVC project of its own (plan, dvc.lock, runs/, results/,
    figures/) sharing ``root``'s DVC cache, so no profile overwrites another's outputs."""
    committed = profiles.load(root / "params.yaml").get("profile")
    if here or profile is None or profile == committed:
        return root
    return root / PROFILE_ROOTS / profile


def scaffold(root: Path, dest: Path) -> Path:
    """Make or refresh ``dest`` as a DVC project running ``root``'s pipeline: a fresh copy of ``SCAFFOLD``
    (code, notebooks, docs, dvc.yaml and params.yaml: :func:`run_study` then writes the profile's live plan
    into that params.yaml), ``root``'s DVC cache as its cache; ``dest``'s dvc.lock and outputs are kept."""
    dest.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for name in SCAFFOLD:
        src, out = root / name, dest / name
        if src.is_dir():
            fresh(out)
            shutil.copytree(src, out, ignore=skip)
        elif src.exists():
            shutil.copyfile(src, out)
    (dest / ".dvc").mkdir(exist_ok=True)
    cache = (root / ".dvc" / "cache").resolve()
    text = f"[core]\n    no_scm = True\n    analytics = false\n    autostage = false\n[cache]\n    dir = {cache}\n"
    (dest / ".dvc" / "config").write_text(text)
    return dest


def run_study(
    profile: str | None,
    sets: Sequence[str] = (),
    exp: bool = False,
    dry_run: bool = False,
    force: bool = False,
    here: bool = False,
) -> int:
    """Plan ``profile`` and ``dvc repro`` it in its root (:func:`profile_root`); print its main tables."""
    top = repo_root()
    profiles.resolve(profiles.load(top / "params.yaml"), profile)  # an unknown profile: no folder made
    root = profile_root(top, profile, here)
    if root != top:
        scaffold(top, root)
        print(f"profile {profile}: runs in {root} (its own DVC project; the committed study is untouched)")
    params_file = root / "params.yaml"
    draft = params_file.with_name(".params.draft.yaml")
    shutil.copyfile(params_file, draft)
    try:  # edit and check a draft: a bad --set, profile or shard path leaves params.yaml untouched
        _set(draft, sets)
        live = profiles.resolve(profiles.load(draft), profile)
        if live["data"].get("source") == "shards":
            check_shards(live["data"]["train_data"])
        profiles.plan(draft, profile)
        draft.replace(params_file)
    finally:
        draft.unlink(missing_ok=True)
    name = live["plan"]["profile"]
    print(f"profile {name}: {len(live['cells'])} cell(s): {', '.join(live['cells'])}")
    argv = [tool("dvc"), "exp", "run"] if exp else [tool("dvc"), "repro"]
    if dry_run:
        argv.append("--dry")
    if force:
        argv.append("--force")
    print("$", shlex.join(argv), flush=True)
    rc = subprocess.run(argv, cwd=root, env=tool_env()).returncode
    if rc:
        print(
            f"clipf study: `{shlex.join(argv)}` failed (exit {rc}); the failing stage is named above",
            file=sys.stderr,
        )
        return rc
    if not dry_run:
        for world in live.get("worlds") or {}:
            table = root / "figures" / "report" / world / "main_table.md"
            if table.exists():
                print(f"\n{world}: {table.relative_to(top)}\n{table.read_text()}")
        print("\ntables and figures:")
        for out in OUTPUTS:
            print(f"  {root / out}")
        print(
            f"  (cd {root.relative_to(top) if root != top else '.'}; dvc metrics show; dvc plots show --open)"
        )
    return 0


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    sub = argv[0] if argv and argv[0] in ("plan", "check", "data", "freq") else None
    rest = argv[1:] if sub else argv
    parser = argparse.ArgumentParser(
        prog=f"clipf study{' ' + sub if sub else ''}", description=__doc__.split("\n")[0]
    )
    if sub in (None, "plan"):
        parser.add_argument(
            "--profile", default=None, help="a profile of params.yaml (default: its `profile:`)"
        )
    if sub is None:
        parser.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="edit params.yaml first"
        )
        parser.add_argument("--exp", action="store_true", help="dvc exp run instead of dvc repro")
        parser.add_argument("--dry-run", action="store_true", help="show what dvc would run")
        parser.add_argument("--force", action="store_true", help="re-run every stage")
        parser.add_argument(
            "--here", action="store_true", help="run at the repository root even if not its committed profile"
        )
    if sub in ("data", "freq"):
        parser.add_argument("--out", required=True)
        parser.add_argument("--world", default=None, help="a world of the plan (its data and preset)")
    if sub == "check":
        parser.add_argument("--out", default=None, help="write the checked plan (profile, cells) here")
    args = parser.parse_args(rest)
    try:
        if sub == "plan":
            live = profiles.plan(repo_root() / "params.yaml", args.profile)
            print(f"planned profile {live['plan']['profile']}: {len(live['cells'])} cell(s)")
        elif sub == "check":
            planned = check()
            print(f"plan ok: profile {planned['profile']} ({planned['fingerprint']})")
            if args.out:
                cells = profiles.load("params.yaml")["cells"]
                write_json(args.out, {**planned, "cells": cells}, sort_keys=True)
        elif sub == "data":
            data_stage(config(world=args.world), args.out)
        elif sub == "freq":
            freq_stage(config(world=args.world), args.out)
        else:
            return run_study(args.profile, args.set, args.exp, args.dry_run, args.force, args.here)
    except (profiles.ProfileError, NotebookError, StageError, FileNotFoundError) as err:
        print(f"clipf study: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
