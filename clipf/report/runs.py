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


def main_cells(cells: Mapping, threshold: float | None = None, rule: str | None = None) -> dict:
    """The plan's ``cells`` without the threshold sweep's other frequency cells: those of another
    threshold than ``threshold`` or another rule than ``rule`` (default: the most common), as the main
    table leaves them out (:func:`~clipf.report.tables.main_threshold`)."""
    import pandas as pd

    if not cells:
        return {}
    frame = pd.DataFrame(
        [
            {
                "run": name,
                "masker": cell["masker"],
                "threshold": float("nan") if cell.get("threshold") is None else float(cell["threshold"]),
                "freq_rule": cell.get("rule"),
            }
            for name, cell in cells.items()
        ]
    )
    keep = set(main_threshold(frame, threshold, rule)["run"])
    return {name: cell for name, cell in cells.items() if name in keep}


def _pretrain_metrics(
    cells: Mapping, runs: str | Path, threshold: float | None, rule: str | None
) -> Iterator[tuple[dict, object]]:
    """(run's identifying row, its pre-training metrics.json as a frame) for each cell of the main
    threshold and rule (:func:`main_cells`) that has one."""
    for name, cell in main_cells(cells, threshold, rule).items():
        path = Path(runs, name, "pretrain")
        if (path / "metrics.json").exists():
            yield {"run": name, **{k: cell[k] for k in _CELL_KEYS}}, read_metrics(path)


def val_curves(
    cells: Mapping,
    runs: str | Path = "runs",
    metric: str = "val/image_to_text_R@1",
    threshold: float | None = None,
    rule: str | None = None,
):
    """The trainer's own per-epoch evaluation on the held-out pairs (metrics.json ``val/...``), in %:
    run, masker, text_tokens, image_mask, seed, epoch, value — accuracy over training at no extra cost.
    The threshold sweep's other frequency cells are left out (:func:`main_cells`)."""
    recs = []
    for row, metrics in _pretrain_metrics(cells, runs, threshold, rule):
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


def run_compute(
    cells: Mapping, runs: str | Path = "runs", threshold: float | None = None, rule: str | None = None
):
    """Per pre-training run: throughput (mean samples/s over epochs), training time and tokens seen
    (totals of the last metrics.json record). The threshold sweep's other frequency cells are left out
    (:func:`main_cells`): :func:`~clipf.report.tables.compute_table` averages a cell's runs over seeds."""
    import pandas as pd

    rows = []
    for row, metrics in _pretrain_metrics(cells, runs, threshold, rule):
        for key in COMPUTE_KEYS:
            if key in metrics:
                row[key] = float(
                    metrics[key].mean() if key.startswith("samples_per") else metrics[key].iloc[-1]
                )
        rows.append(row)
    return pd.DataFrame(rows)
