"""The UTA report (the ``uta_report`` stage, ``notebooks/06_uta.ipynb``): the CLIP teacher, CLIP from scratch
and the UTA students side by side (``results/uta.csv``, ``results/uta.md``), the per-location masking
probability of the patch maskers (Figure 3) and the students' loss curves (Figure 4) under ``figures/uta/``.

Reads what the pipeline wrote (the tidy results table, each phase's ``metrics.json`` / ``clipf.json`` /
TensorBoard events); nothing here trains or evaluates. Training compute and the patch maskers come from
the UTA objective (:mod:`clipf.objectives.uta`), imported where used.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clipf import profiles
from clipf.files import write_text
from clipf.report.figures import pyplot, save_figure
from clipf.report.tables import fmt_mean_std, markdown, only_protocol

DEFAULT_RATIO = profiles.UTA_KEYS["mask_ratio"]


def loss_curves(phase_dir: str | os.PathLike):
    """Training and validation losses of a UTA run, long format (``step``, ``epoch``, ``split``, ``term``,
    ``value``): per-step training terms from TensorBoard (``train/token_loss``, ...), per-epoch means and
    the validation UTA loss from ``metrics.json``."""
    import pandas as pd

    phase_dir = Path(phase_dir)
    rows: list[dict[str, Any]] = []
    records = json.loads((phase_dir / "metrics.json").read_text())
    for rec in records:
        step = sum(int(r.get("steps") or 0) for r in records if r["epoch"] <= rec["epoch"])
        for term in ("loss", "token_loss", "global_loss"):
            if rec.get(term) is not None:
                rows.append(
                    dict(
                        step=step, epoch=rec["epoch"], split="train (epoch mean)", term=term, value=rec[term]
                    )
                )
        for term in ("loss", "token_loss", "global_loss"):
            key = "val/uta_loss" if term == "loss" else f"val/uta_{term}"
            if rec.get(key) is not None:
                rows.append(dict(step=step, epoch=rec["epoch"], split="val", term=term, value=rec[key]))
    events = sorted((phase_dir / "tensorboard").glob("**/events.*"))
    if events:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(events[-1].parent), size_guidance={"scalars": 0})
        acc.Reload()
        for term in ("loss", "token_loss", "global_loss"):
            if f"train/{term}" in acc.Tags().get("scalars", []):
                for ev in acc.Scalars(f"train/{term}"):
                    rows.append(
                        dict(step=ev.step + 1, epoch=None, split="train (step)", term=term, value=ev.value)
                    )
    return pd.DataFrame(rows, columns=["step", "epoch", "split", "term", "value"])


SYSTEMS = {"teacher": "CLIP teacher", "clip": "CLIP from scratch", "uta": "UTA student"}
REPORT_COLUMNS = [
    "system",
    "label",
    "phase",
    "dataset",
    "task",
    "metric",
    "mean",
    "std",
    "n",
    "runs",
    "epochs",
    "samples_seen",
    "train_gflops",
    "compute_vs_clip",
    "train_seconds",
]
SAME_LABEL = "CLIP teacher = CLIP from scratch"
CLASSIFICATION_MEAN = "classification (mean)"
RETRIEVAL_MEAN = "retrieval (mean)"


def _roles(uta_cells: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, int]]:
    """(system, run, seed) of every UTA student, its teacher and its CLIP baseline."""
    out = []
    for name, item in uta_cells.items():
        seed = int(item["seed"])
        out += [("teacher", item["teacher"], seed), ("clip", item["baseline"], seed), ("uta", name, seed)]
    return out


def _with_means(rows):
    """Per run and phase, the mean acc1 over classification sets and the mean of image / text recall@k over
    retrieval sets (``recall@k``), as extra pseudo-datasets."""
    import pandas as pd

    keys = ["system", "run", "seed", "phase"]
    cls = rows[(rows.task == "zeroshot_classification") & (rows.metric == "acc1")]
    cls = (
        cls.groupby(keys, as_index=False)
        .value.mean()
        .assign(dataset=CLASSIFICATION_MEAN, task="zeroshot_classification", metric="acc1")
    )
    ret = rows[(rows.task == "zeroshot_retrieval") & rows.metric.str.contains("retrieval_recall@")].copy()
    ret["metric"] = "recall@" + ret.metric.str.split("@").str[-1]
    ret = ret.groupby([*keys, "metric"], as_index=False).value.mean()
    ret = ret.assign(dataset=RETRIEVAL_MEAN, task="zeroshot_retrieval")
    return pd.concat([rows, cls, ret], ignore_index=True)


def report_table(tidy, uta_cells: Mapping[str, Mapping[str, Any]], runs: str | os.PathLike = "runs"):
    """``results/uta.csv``: the CLIP teacher, CLIP from scratch (the CLIP baseline the students' compute is
    matched to; the same runs as the teacher by default) and the UTA students, after pre-training and after
    the fine-tune, zero-shot on every evaluated set (values in %), mean ± std (n - 1) over seeds, with each
    system's pre-training compute (epochs, samples, GFLOPs, FLOPs relative to CLIP from scratch, seconds).
    Mean rows: ``classification (mean)`` (acc1 over the classification sets) and ``retrieval (mean)``."""
    import pandas as pd

    from clipf.engine import UsageError
    from clipf.objectives.uta import phase_compute

    roles = pd.DataFrame(_roles(uta_cells), columns=["system", "run", "seed"]).drop_duplicates()
    if roles.empty or tidy.empty:
        return pd.DataFrame(columns=REPORT_COLUMNS)
    tidy = only_protocol(tidy)  # the full prompts (a UTA student's text tower is its teacher's: no masker)
    rows = tidy[tidy.checkpoint.isin(["pretrain", "finetune"])].rename(columns={"checkpoint": "phase"})
    rows = roles.merge(rows.drop(columns=["seed"]), on="run")
    rows = rows[["system", "run", "seed", "phase", "dataset", "task", "metric", "value"]].copy()
    rows["value"] = rows.value.astype(float) * 100.0
    rows = _with_means(rows)
    compute = {}
    for run in roles.run.unique():
        try:
            compute[run] = phase_compute(Path(runs) / run / "pretrain")
        except (FileNotFoundError, KeyError, ValueError, UsageError):
            compute[run] = recorded_compute(Path(runs) / run)  # e.g. the teacher's export is not here
    comp = roles.assign(
        epochs=roles.run.map(lambda r: compute.get(r, {}).get("epochs")),
        samples_seen=roles.run.map(lambda r: compute.get(r, {}).get("samples")),
        train_gflops=roles.run.map(lambda r: (compute.get(r, {}).get("flops") or float("nan")) / 1e9),
        train_seconds=roles.run.map(lambda r: compute.get(r, {}).get("train_seconds")),
    )
    clip = comp[comp.system == "clip"].set_index("seed").train_gflops
    comp["compute_vs_clip"] = comp.train_gflops / comp.seed.map(clip)
    numbers = ["epochs", "samples_seen", "train_gflops", "compute_vs_clip", "train_seconds"]
    comp = comp.groupby("system")[numbers].agg(lambda v: pd.to_numeric(v, errors="coerce").mean())
    keys = ["system", "phase", "dataset", "task", "metric"]
    agg = rows.groupby(keys, sort=False).agg(
        mean=("value", "mean"),
        std=("value", lambda v: v.std(ddof=1) if len(v) > 1 else float("nan")),
        n=("value", "size"),
        runs=("run", lambda v: ";".join(sorted(set(v)))),
    )
    out = agg.reset_index().join(comp, on="system")
    out["label"] = out.system.map(SYSTEMS)
    order = {**{s: i for i, s in enumerate(SYSTEMS)}, "pretrain": 0, "finetune": 1}
    out = out.sort_values(
        ["system", "phase", "task", "dataset", "metric"],
        key=lambda c: c.map(order) if c.name in ("system", "phase") else c,
    )
    return out[REPORT_COLUMNS].reset_index(drop=True)


def recorded_compute(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A UTA student's pre-training compute as its ``uta`` stage recorded it (``RUN/compute.json``, the
    compute match, and ``RUN/pretrain/metrics.json``), for where :func:`phase_compute` cannot count it again:
    its FLOPs need the teacher's export, a DVC output a fresh clone does not have. ``{}`` without it."""
    run_dir = Path(run_dir)
    path = run_dir / "compute.json"
    if not path.is_file():
        return {}
    u = json.loads(path.read_text()).get("uta") or {}
    metrics = run_dir / "pretrain" / "metrics.json"
    records = json.loads(metrics.read_text()) if metrics.is_file() else []
    last = records[-1] if records else {}
    return {
        "epochs": int(last.get("epoch") or u["epochs"]),
        "samples": int(last.get("samples_seen") or u["samples"]),
        "flops": u["flops_per_sample"] * int(last.get("samples_seen") or u["samples"]),
        "train_seconds": last.get("train_seconds_total"),
    }


def report_summary(table):
    """The headline of :func:`report_table`, one row per system and phase: ``mean ± std`` of acc1 on each
    classification set and their mean, retrieval recall@1 / @5 (mean of image and text retrieval), and the
    pre-training compute. A teacher that is the CLIP baseline itself is one row (:data:`SAME_LABEL`)."""
    import pandas as pd

    if table.empty:
        return pd.DataFrame(columns=["system", "phase"])
    runs = {s: sorted(table[table.system == s].runs.unique()) for s in ("teacher", "clip")}
    if runs["teacher"] == runs["clip"]:  # the default: the students are taught by the CLIP baseline itself
        table = table[table.system != "clip"].replace({"label": {SYSTEMS["teacher"]: SAME_LABEL}})
    picked = table[
        ((table.task == "zeroshot_classification") & (table.metric == "acc1"))
        | ((table.dataset == RETRIEVAL_MEAN) & table.metric.isin(["recall@1", "recall@5"]))
    ].copy()
    picked["column"] = picked.dataset.str.replace("wds/", "", regex=False)
    picked.loc[picked.dataset == RETRIEVAL_MEAN, "column"] = "retrieval " + picked.metric
    picked["text"] = [
        fmt_mean_std(m, s, n) for m, s, n in zip(picked["mean"], picked["std"], picked["n"], strict=True)
    ]
    wide = picked.pivot_table(
        index=["label", "phase"], columns="column", values="text", aggfunc="first", sort=False
    )
    first = [c for c in wide.columns if not c.startswith(("classification", "retrieval"))]
    wide = wide[first + [c for c in wide.columns if c not in first]]
    comp = table.groupby(["label", "phase"], sort=False)[
        ["epochs", "train_gflops", "compute_vs_clip", "n"]
    ].first()
    wide["seeds"] = comp["n"].astype(int).astype(str)
    wide["pre-training epochs"] = comp["epochs"].map(lambda v: "–" if pd.isna(v) else f"{v:g}")
    wide["pre-training GFLOPs"] = comp["train_gflops"].map(lambda v: "–" if pd.isna(v) else f"{v:.3g}")
    wide["compute vs CLIP"] = comp["compute_vs_clip"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}x")
    return wide.reset_index().rename(columns={"label": "system"})


def mask_map_figure(
    maps: Mapping[str, np.ndarray], ratio: float = DEFAULT_RATIO, n_samples: int | None = None
):
    """The paper's Figure 3: P(masked) per grid location, one panel per masker, one colour scale."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(maps), figsize=(3.6 * len(maps) + 0.8, 3.4), squeeze=False)
    im = None
    for ax, (name, prob) in zip(axes.flat, maps.items(), strict=True):
        im = ax.imshow(prob, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"{name.replace('_', ' ')}", fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
    grid = next(iter(maps.values())).shape
    more = f", {n_samples} masks" if n_samples else ""
    fig.suptitle(f"P(masked) per location: {grid[0]}x{grid[1]} patches, ratio {ratio}{more}", fontsize=10)
    fig.colorbar(im, ax=list(axes.flat), label="P(masked)", shrink=0.85)
    return fig


def loss_frame(uta_cells: Mapping[str, Mapping[str, Any]], runs: str | os.PathLike = "runs"):
    """:func:`loss_curves` of every UTA student's pre-training (``run`` and ``seed`` columns added)."""
    import pandas as pd

    frames = []
    for name, item in uta_cells.items():
        phase = Path(runs) / name / "pretrain"
        if (phase / "metrics.json").is_file():
            frames.append(loss_curves(phase).assign(run=name, seed=int(item["seed"])))
    cols = ["run", "seed", "step", "epoch", "split", "term", "value"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def loss_figure(curves):
    """The paper's Figure 4: training (per step, light; epoch means) and validation loss over UTA
    pre-training, one colour per seed; a panel per term (total, token, global)."""
    plt = pyplot()
    terms = ["loss", "token_loss", "global_loss"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharex=True)
    if curves.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no UTA runs in this plan", ha="center", va="center", transform=ax.transAxes)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {"train (step)": dict(lw=0.8, alpha=0.35), "train (epoch mean)": dict(marker="o", ms=3, lw=1.2),
              "val": dict(marker="s", ms=3, ls="--", lw=1.2)}  # fmt: skip
    for ax, term in zip(axes, terms, strict=True):
        for i, (seed, by_seed) in enumerate(curves[curves.term == term].groupby("seed")):
            for split, df in by_seed.groupby("split"):
                df = df.sort_values("step")
                label = f"seed {seed}: {split}"
                ax.plot(
                    df.step, df.value, color=colors[i % len(colors)], label=label, **styles.get(split, {})
                )
        ax.set_title({"loss": "total loss", "token_loss": "token loss", "global_loss": "global loss"}[term])
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("1 - cosine")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=7, frameon=False)
        fig.tight_layout(rect=(0, 0.12, 1, 1))
    else:
        fig.tight_layout()
    return fig


def write_report(
    cfg: Mapping[str, Any],
    results: str | os.PathLike = "results/results.csv",
    out: str | os.PathLike = "results/uta.csv",
    figures: str | os.PathLike = "figures/uta",
    runs: str | os.PathLike = "runs",
) -> dict[str, Path]:
    """The ``uta_report`` stage: ``out`` (:func:`report_table`) and ``out``.md (:func:`report_summary`),
    ``<out stem>_loss_curves.csv``, and in ``figures``: ``mask_probability`` (Figure 3, block-wise vs
    reversed block-wise) and ``loss_curves`` (Figure 4), each .png and .svg."""
    import pandas as pd

    from clipf.objectives.uta import mask_probability_maps

    u = {**profiles.UTA_KEYS, **(cfg.get("uta") or {})}
    cells = cfg.get("uta_cells") or {}
    results = Path(results)
    tidy = pd.read_csv(results) if results.is_file() else pd.DataFrame(columns=["run", "checkpoint"])
    table = report_table(tidy, cells, runs)
    out = Path(out)
    write_text(out, table.to_csv(index=False))
    summary = report_summary(table)
    md = out.with_suffix(".md")
    write_text(
        md,
        "UTA students vs their CLIP teacher and CLIP from scratch (zero-shot, %, mean ± std over seeds)\n\n"
        + (markdown(summary) if not summary.empty else "(no UTA students in this plan)")
        + "\n",
    )
    curves = loss_frame(cells, runs)
    curves_csv = out.with_name(f"{out.stem}_loss_curves.csv")
    write_text(curves_csv, curves.to_csv(index=False))
    figures = Path(figures)
    if figures.exists():
        shutil.rmtree(figures)
    maps = mask_probability_maps(
        ("block", "reversed_block"), u["map_grid"], u["mask_ratio"], u["map_samples"]
    )
    save_figure(mask_map_figure(maps, u["mask_ratio"], u["map_samples"]), figures / "mask_probability")
    save_figure(loss_figure(curves), figures / "loss_curves")
    return {"table": out, "summary": md, "loss_curves": curves_csv, "figures": figures}
