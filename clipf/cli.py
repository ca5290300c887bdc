"""`clipf` console script: a thin dispatcher to each module's own ``cli(argv)``.

Each subcommand lives beside the code it drives (one concept, one place); this file only maps names.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "freq": ("clipf.freq", "build / show word-frequency tables"),
    "mask": ("clipf.masking", "apply a text masker to captions (JSON lines out)"),
    "data": ("clipf.world.cli", "generate / inspect the embedded image-caption world"),
    "train": ("clipf.train", "masked pre-training / fine-tuning (open_clip_train options + clipf's)"),
    "export": ("clipf.export", "export a checkpoint as an open_clip local-dir model"),
    "uta": (
        "clipf.objectives.uta.cli",
        "UTA: export a student, masking maps, the study's UTA eval / report stages",
    ),
    "eval": ("clipf.evaluate", "CLIP_benchmark on a run; `eval collect` builds the tidy table"),
    "report": ("clipf.report", "tables and figures from the tidy results"),
    "submit": ("clipf.submit", "run a notebook with papermill as a SLURM job"),
    "study": ("clipf.study", "run the study pipeline for a profile"),
    "deps": ("clipf.deps", "dvc.yaml's code deps: the import closure of each stage (--check / --write)"),
}


def _usage() -> str:
    lines = ["usage: clipf <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`clipf <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clipf`` script and ``python -m clipf``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"clipf: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.cli(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
