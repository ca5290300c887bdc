"""The tidy results table (``clipf eval collect``): every ``RUN/eval/<checkpoint>/<dataset>.json`` (prompt
protocol ``full``) and ``RUN/eval/<checkpoint>/<protocol>/<dataset>.json`` (``masked``) as one row per number,
with the run's settings from its ``clipf.json``; ``RUN/eval/summary.json``."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

from clipf import files as files_
from clipf.evaluate.base import CELL_NAME, COLUMNS, EXTRA_COLUMNS, PHASES, SUMMARY_NAME, EvalError, is_finite
from clipf.evaluate.protocols import DEFAULT_PROTOCOL, PROTOCOLS, trained_rule
from clipf.files import write_json


def run_metadata(run: str | os.PathLike) -> dict:
    """The cell's settings (world, objective, masker, text_tokens, image_mask, seed, epochs, model,
    freq_threshold, freq_rule, finetune_epochs) from ``RUN/pretrain/clipf.json`` (+
    ``RUN/finetune/clipf.json``; ``world`` from the study's ``RUN/cell.json``); NaN if absent. ``objective`` is the pre-training's (a clipf.json without
    one is a contrastive run: clip); ``freq_rule`` that of a frequency run (one trained before the rule
    was recorded: ``clamped``, :func:`clipf.evaluate.protocols.trained_rule`)."""
    run = Path(run)
    nan = float("nan")
    meta = dict.fromkeys(["objective", "masker", "text_tokens", "image_mask", "seed", "epochs", "model"], nan)
    meta.update(world=nan, freq_threshold=nan, freq_rule=nan, finetune_epochs=nan)

    def read(path: Path) -> dict:
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            warnings.warn(f"{path}: unreadable JSON, run settings left empty", stacklevel=3)
            return {}

    pre = read(run / "pretrain" / "clipf.json") or read(run / "clipf.json")
    for key in ("masker", "text_tokens", "image_mask", "seed", "epochs", "model"):
        if pre.get(key) is not None:
            meta[key] = pre[key]
    if pre:
        meta["objective"] = pre.get("objective") or "clip"
    if pre.get("freq_threshold") is not None and meta["masker"] == "frequency":
        meta["freq_threshold"] = pre["freq_threshold"]
    if pre and trained_rule(pre) is not None:
        meta["freq_rule"] = trained_rule(pre)
    world = read(run / CELL_NAME).get("world")
    if world is not None:
        meta["world"] = world
    fin = read(run / "finetune" / "clipf.json")
    if fin.get("epochs") is not None:
        meta["finetune_epochs"] = fin["epochs"]
    if fin and isinstance(meta["model"], float):
        meta["model"] = fin.get("model", nan)
    return meta


def tidy_rows(
    run: str, meta: Mapping, checkpoint: str, dump: Mapping, protocol: str | None = None
) -> list[dict]:
    """One tidy row per finite metric of a CLIP_benchmark JSON; ``protocol``: the prompt protocol (None:
    the JSON's own, else ``full`` — what every result written before protocols existed is)."""
    rows = []
    block = dump.get("clipf") or {}
    sha = block.get("checkpoint_sha256", "")
    protocol = protocol or block.get("protocol") or DEFAULT_PROTOCOL
    for metric, value in (dump.get("metrics") or {}).items():
        if is_finite(value):
            rows.append(
                {
                    "run": run,
                    "world": meta.get("world"),
                    **{
                        k: meta.get(k)
                        for k in ("objective", "masker", "text_tokens", "image_mask", "seed", "epochs")
                    },
                    "checkpoint": checkpoint,
                    "protocol": protocol,
                    "dataset": dump.get("dataset"),
                    "task": dump.get("task"),
                    "metric": metric,
                    "value": float(value),
                    **{k: meta.get(k) for k in EXTRA_COLUMNS if k != "weights_sha256"},
                    "weights_sha256": sha,
                }
            )
    return rows


def tidy_frame(rows: list[dict]):
    """Tidy rows as a DataFrame with the table's columns (:data:`COLUMNS` + :data:`EXTRA_COLUMNS`)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=COLUMNS + EXTRA_COLUMNS)


def result_files(run: str | os.PathLike) -> list[tuple[str, str, Path]]:
    """(checkpoint, protocol, path) of every result JSON of a run: ``RUN/eval/<checkpoint>/*.json`` are
    ``full``, ``RUN/eval/<checkpoint>/<protocol>/*.json`` the other protocols'."""
    ev = Path(run) / "eval"
    out = [(p.parent.name, DEFAULT_PROTOCOL, p) for p in ev.glob("*/*.json")]
    for protocol in PROTOCOLS:
        if protocol != DEFAULT_PROTOCOL:
            out += [(p.parent.parent.name, protocol, p) for p in ev.glob(f"*/{protocol}/*.json")]
    return sorted(out, key=lambda item: (item[0], PROTOCOLS.index(item[1]), item[2].name))


def read_results(run: str | os.PathLike, name: str | None = None) -> list[dict]:
    """Tidy rows of every result of a run (:func:`result_files`), with its prompt protocol."""
    run = Path(run)
    meta = run_metadata(run)
    rows = []
    for checkpoint, protocol, path in result_files(run):
        try:
            dump = json.loads(path.read_text())
        except ValueError:
            warnings.warn(f"{path}: unreadable JSON, skipped", stacklevel=2)
            continue
        if not isinstance(dump, dict) or "metrics" not in dump or "task" not in dump:
            continue
        rows += tidy_rows(name or run.name, meta, checkpoint, dump, protocol)
    return rows


def write_summary(run: str | os.PathLike) -> Path:
    """``RUN/eval/summary.json``: {checkpoint: {dataset: {metric: value}}} of pretrain and finetune under
    the full protocol, and ``{"masked": {checkpoint: ...}}`` beside it when masked results exist."""
    run = Path(run)
    out: dict[str, dict] = {}
    for row in read_results(run):
        if row["checkpoint"] in PHASES:
            node = out if row["protocol"] == DEFAULT_PROTOCOL else out.setdefault(row["protocol"], {})
            node.setdefault(row["checkpoint"], {}).setdefault(row["dataset"], {})[row["metric"]] = row[
                "value"
            ]
    return write_json(run / "eval" / SUMMARY_NAME, out)


def find_runs(runs: str | os.PathLike) -> list[Path]:
    """Run folders (those with an ``eval/``) at or below ``runs``, sorted."""
    runs = Path(runs)
    if (runs / "eval").is_dir():
        return [runs]
    if not runs.is_dir():
        raise EvalError(f"{runs}: no such folder")
    return sorted(p.parent for p in runs.rglob("eval") if p.is_dir() and result_files(p.parent))


def collect(runs: str | os.PathLike = "runs", out: str | os.PathLike | None = None, parquet: bool = True):
    """The tidy table of every run under ``runs`` (a DataFrame); with ``out``, written as CSV (and
    Parquet beside it) through temporary files — never half-written."""
    runs = Path(runs)
    rows: list[dict] = []
    base = runs if not (runs / "eval").is_dir() else runs.parent
    for run in find_runs(runs):
        rows += read_results(run, run.relative_to(base).as_posix())
    if not rows:
        raise EvalError(
            f"{runs}: no CLIP_benchmark results (RUN/eval/<checkpoint>/[<protocol>/]<dataset>.json); run "
            "`clipf eval RUN`"
        )
    df = tidy_frame(rows).sort_values(["run", "checkpoint", "protocol", "dataset", "metric"], kind="stable")
    df = df.reset_index(drop=True)
    if out is not None:  # both serialised before either file is replaced
        out = Path(out)
        files = {out: df.to_csv(index=False).encode()}
        if parquet:
            import io

            buf = io.BytesIO()
            df.to_parquet(buf, index=False)
            files[out.with_suffix(".parquet")] = buf.getvalue()
        for path, data in files.items():
            files_.write_text(path, data) if isinstance(data, str) else files_.atomic_write(
                path, lambda fh, d=data: fh.write(d)
            )
    return df
