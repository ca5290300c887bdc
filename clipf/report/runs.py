"""The report's inputs read from run folders: accuracy over pre-training epochs (the tidy table), the
trainer's own held-out evaluation per epoch and the training compute (``RUN/pretrain/metrics.json``)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from clipf.metrics import read_metrics
from clipf.report.tables import epoch_curves, main_threshold, only_protocol, zero_shot

_EPOCH = re.compile(r"epoch[_ -]?(\d+)")


def epoch_accuracy(
    tidy,
    dataset: str | None = None,
    metric: str = "acc1",
    threshold: float | None = None,
    protocol: str = "full",
    rule: str | None = None,
):
    """Zero-shot accuracy (%) of every pre-training epoch checkpoint under one zero-shot ``protocol``: run,
    masker, text_tokens, image_mask, seed, epoch, value (from the tidy rows of pre-training checkpoints).
    Frequency cells of the threshold sweep other than ``threshold`` (and of another rule than ``rule``;
    default: the most common) are left out, as in the main table."""
    rows = only_protocol(zero_shot(tidy, dataset, metric), protocol)
    rows = main_threshold(rows, threshold, rule)
    rows = rows[~rows["checkpoint"].astype(str).str.contains("finetune")]
    label = rows["checkpoint"].astype(str).str.extract(_EPOCH)[0]
    rows = rows.assign(epoch=label.astype(float).fillna(rows["epochs"].astype(float)).astype(int))
    rows = rows.drop_duplicates(["run", "epoch"], keep="last")
    cols = ["run", "masker", "text_tokens", "image_mask", "seed", "epoch", "value"]
    return epoch_curves(rows[cols].to_dict("records"))


_CELL_KEYS = ("masker", "text_tokens", "image_mask", "seed")


def _pretrain_metrics(cells: Mapping, runs: str | Path) -> Iterator[tuple[dict, object]]:
    """(run's identifying row, its pre-training metrics.json as a frame) for each cell that has one."""
    for name, cell in cells.items():
        path = Path(runs, name, "pretrain")
        if (path / "metrics.json").exists():
            yield {"run": name, **{k: cell[k] for k in _CELL_KEYS}}, read_metrics(path)


def val_curves(cells: Mapping, runs: str | Path = "runs", metric: str = "val/image_to_text_R@1"):
    """The trainer's own per-epoch evaluation on the held-out pairs (metrics.json ``val/...``), in %:
    run, masker, text_tokens, image_mask, seed, epoch, value — accuracy over training at no extra cost."""
    recs = []
    for row, metrics in _pretrain_metrics(cells, runs):
        if metric not in metrics:
            continue
        for epoch, value in metrics[["epoch", metric]].dropna().itertuples(index=False):
            recs.append({**row, "epoch": int(epoch), "value": 100 * float(value)})
    return epoch_curves(recs)


COMPUTE_KEYS = (
    "samples_per_second",
    "samples_per_second_steady",
    "train_seconds_total",
    "samples_seen",
    "text_tokens_seen",
    "text_tokens_nonpad_seen",
    "image_tokens_seen",
    "image_tokens",
    "world_size",
)


def run_compute(cells: Mapping, runs: str | Path = "runs"):
    """Per pre-training run: throughput (mean samples/s over epochs), training time and tokens seen
    (totals of the last metrics.json record)."""
    import pandas as pd

    rows = []
    for row, metrics in _pretrain_metrics(cells, runs):
        for key in COMPUTE_KEYS:
            if key in metrics:
                row[key] = float(
                    metrics[key].mean() if key.startswith("samples_per") else metrics[key].iloc[-1]
                )
        rows.append(row)
    return pd.DataFrame(rows)
