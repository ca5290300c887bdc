"""docs/PREDICTIONS.md judged on the study's results, by the rule written there before any cell ran:
"a > b" holds if Δ > 2 SE, is falsified if Δ < −2 SE and is unresolved otherwise (Δ: the mean over seeds
of a − b; SE = √(s_a² / n_a + s_b² / n_b)); "a ≈ b" holds if |Δ| ≤ 2 SE and is falsified otherwise; with
one seed on a side only the sign is reported.

The comparisons are data (``docs/predictions.yaml``): one check per comparison of a prediction, each
expanded over its K, zero-shot columns, bands and cells into *parts*, each part judged on its own.
:func:`judge` gives the parts, :func:`rollup` one verdict per prediction (falsified when at least
``min_falsified`` parts are, holds when every part is measured and holds, else unresolved or not run).

A check::

    - id: C1                      # the prediction it encodes (PREDICTIONS.md)
      world: concepts             # or [concepts, shapes] with relation `flips`
      claim: frequency > truncation
      a: {masker: frequency}      # a cell: masker [, k, image_mask, threshold, column, band]
      b: {masker: truncate}       # a list of maskers expands into one part each
      relation: ">"               # >  <  >=  <=  ≈  flips  at (a = value ± tol)  below (a <= value)
      k: [4, 6, 8]
      columns: [pretrain, pretrain_masked]   # default [pretrain]: pre-train, full prompts
      bands: [tail, head]         # optional: Δ is (a − b) on the first band minus on the second

``python -m clipf.report.predictions results/results.csv --checks docs/predictions.yaml --out DIR``
writes ``predictions.{csv,md}`` (the parts) and ``predictions_summary.{csv,md}`` (one row a prediction).
Checks of a world the plan has no main set for (``report.dataset``) are skipped, counted and named.
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from clipf.report.tables import FULL, MASKED, MASKER_ORDER, main_threshold, mean_std, write_table, zero_shot

RELATIONS = (">", "<", ">=", "<=", "≈", "flips", "at", "below")
COLUMNS = {
    "pretrain": ("pretrain", FULL),
    "pretrain_masked": ("pretrain", MASKED),
    "finetune": ("finetune", FULL),
}
CELL_KEYS = ("masker", "k", "image_mask", "threshold", "column", "band")
CHECK_KEYS = {
    "id",
    "world",
    "claim",
    "a",
    "b",
    "relation",
    "k",
    "columns",
    "bands",
    "value",
    "tol",
    "min_falsified",
}
MASKERS = (*MASKER_ORDER, "none")
HOLDS, FALSIFIED, UNRESOLVED, NOT_RUN = "holds", "falsified", "unresolved", "not run"
Z = 2.0


def load_checks(path: str | Path) -> list[dict]:
    """The checks of a predictions file, validated: a bad entry is named by file, index and id."""
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of checks, got {type(data).__name__}")
    return [
        _validated(check, f"{path}: check {i} ({check.get('id', '?') if isinstance(check, dict) else '?'})")
        for i, check in enumerate(data)
    ]


def _validated(check: object, where: str) -> dict:
    if not isinstance(check, dict):
        raise ValueError(f"{where}: expected a mapping")
    unknown = set(check) - CHECK_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(CHECK_KEYS)})")
    for key in ("id", "world", "claim", "a", "relation", "k"):
        if key not in check:
            raise ValueError(f"{where}: missing {key!r}")
    if check["relation"] not in RELATIONS:
        raise ValueError(f"{where}: relation {check['relation']!r} is not one of {', '.join(RELATIONS)}")
    worlds = _list(check["world"])
    if (check["relation"] == "flips") != (len(worlds) == 2):
        raise ValueError(f"{where}: relation `flips` takes two worlds, every other relation one")
    if check["relation"] in ("at", "below"):
        if "value" not in check or "b" in check:
            raise ValueError(f"{where}: relation {check['relation']!r} compares `a` with `value` (no `b`)")
    elif "b" not in check:
        raise ValueError(f"{where}: missing 'b'")
    for side in ("a", "b"):
        cell = check.get(side)
        if cell is None:
            continue
        if not isinstance(cell, dict) or "masker" not in cell:
            raise ValueError(f"{where}: {side!r} must be a mapping with a masker")
        bad = set(cell) - set(CELL_KEYS)
        if bad:
            raise ValueError(f"{where}: {side!r} has unknown keys {sorted(bad)} (known: {list(CELL_KEYS)})")
        for masker in _list(cell["masker"]):
            if masker not in MASKERS:
                raise ValueError(f"{where}: unknown masker {masker!r} in {side!r}")
        for col in _list(cell.get("column", [])):
            if col not in COLUMNS:
                raise ValueError(f"{where}: unknown column {col!r} (known: {', '.join(COLUMNS)})")
    for col in _list(check.get("columns", ["pretrain"])):
        if col not in COLUMNS:
            raise ValueError(f"{where}: unknown column {col!r} (known: {', '.join(COLUMNS)})")
    if "bands" in check and len(_list(check["bands"])) != 2:
        raise ValueError(f"{where}: `bands` takes two bands (Δ on the first minus Δ on the second)")
    for k in _list(check["k"]):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"{where}: K must be positive integers, got {k!r}")
    return check


def _list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _expand(cell: Mapping) -> list[dict]:
    """One concrete cell per combination of the list-valued ``masker`` and ``threshold`` of ``cell``."""
    keys = [key for key in ("masker", "threshold") if key in cell]
    return [
        {**cell, **dict(zip(keys, combo, strict=True))}
        for combo in itertools.product(*(_list(cell[key]) for key in keys))
    ]


# ---------------------------------------------------------------- measuring one cell


class Results:
    """Per-seed zero-shot top-1 (%) of the cells of a tidy results table, by world, dataset and column."""

    def __init__(
        self,
        tidy: pd.DataFrame,
        datasets: Mapping[str, str],
        threshold: float | None = None,
        rule: str | None = None,
        metric: str = "acc1",
    ):
        """``datasets``: each world's main set; ``threshold`` / ``rule``: the main frequency cells (the
        plan's ``freq.threshold`` / ``freq.rule``; default: the most common in the table)."""
        self.tidy, self.datasets, self.metric = tidy, dict(datasets), metric
        self.threshold, self.rule = threshold, rule
        self._rows: dict[tuple[str, str], pd.DataFrame] = {}

    def rows(self, world: str, band: str | None) -> pd.DataFrame:
        """The zero-shot rows of ``world``'s main set (or its ``band`` set); empty if the world has none."""
        if world not in self.datasets:
            raise ValueError(
                f"world {world!r} has no main set (report.dataset has: {', '.join(self.datasets)})"
            )
        dataset = self.datasets[world] + (f"_{band}" if band and band != "all" else "")
        key = (world, dataset)
        if key not in self._rows:
            tidy = self.tidy[self.tidy["world"] == world] if "world" in self.tidy else self.tidy
            tidy = tidy[(tidy["task"] == "zeroshot_classification") & (tidy["metric"] == self.metric)]
            if tidy.empty:
                self._rows[key] = tidy
            elif dataset not in set(tidy["dataset"]):
                raise ValueError(f"world {world!r} has results but no {dataset!r} rows")
            else:
                self._rows[key] = zero_shot(tidy, dataset, self.metric)
        return self._rows[key]

    def values(self, world: str, cell: Mapping, k: int, column: str, band: str | None) -> pd.Series:
        """The per-seed values of one cell (``masker``, K, image mask, threshold) in one column."""
        rows = self.rows(world, band)
        if rows.empty:
            return pd.Series(dtype=float)
        checkpoint, protocol = COLUMNS[column]
        k = int(cell.get("k", k))
        image_mask = float(cell.get("image_mask", 0.0 if k >= 32 else 0.75))
        masker = cell["masker"]
        if "threshold" in cell:
            freq = rows[rows["masker"] == "frequency"]
            rows = main_threshold(freq, float(cell["threshold"]), self.rule)  # a cell of the sweep
        else:
            rows = main_threshold(rows, self.threshold, self.rule)
        sel = rows[
            (rows["masker"] == masker)
            & (rows["text_tokens"].astype(int) == k)
            & np.isclose(rows["image_mask"].astype(float), image_mask)
            & (rows["checkpoint"] == checkpoint)
            & (rows["protocol"] == protocol)
        ]
        return sel.groupby("seed")["value"].mean()


def _stats(v: pd.Series) -> tuple[float, float, int]:
    s = mean_std(v)  # the main table's mean / std (n − 1) / n over seeds
    return float(s["mean"]), float(s["std"]), int(s["n"])


def _diff(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    (ma, sa, na), (mb, sb, nb) = _stats(a), _stats(b)
    se = math.sqrt(sa**2 / na + sb**2 / nb) if na > 1 and nb > 1 else math.nan
    return ma - mb, se, min(na, nb)


# ---------------------------------------------------------------- verdicts


def verdict(relation: str, diff: float, se: float, n: int, z: float = Z) -> str:
    """The verdict of one part: Δ = a − b against ``z`` standard errors (one seed: the sign only)."""
    if n == 0 or math.isnan(diff):
        return NOT_RUN
    if relation in ("<", "<="):
        relation, diff = relation.replace("<", ">"), -diff
    if math.isnan(se):  # one seed on a side
        if relation == "≈":
            return f"{UNRESOLVED} (one seed)"
        sign = diff > 0 if relation == ">" else diff >= 0
        return f"{HOLDS} in sign (one seed)" if sign else "against in sign (one seed)"
    if relation == ">":
        return HOLDS if diff > z * se else FALSIFIED if diff < -z * se else UNRESOLVED
    if relation == ">=":
        return FALSIFIED if diff < -z * se else HOLDS
    if relation == "≈":
        return HOLDS if abs(diff) <= z * se else FALSIFIED
    raise ValueError(f"relation {relation!r} has no Δ verdict")


def _flips(d1: tuple[float, float, int], d2: tuple[float, float, int], z: float = Z) -> str:
    (x1, s1, n1), (x2, s2, n2) = d1, d2
    if not n1 or not n2 or math.isnan(x1) or math.isnan(x2):
        return NOT_RUN
    if math.isnan(s1) or math.isnan(s2):
        return f"{HOLDS} in sign (one seed)" if x1 > 0 > x2 else "against in sign (one seed)"
    if x1 > z * s1 and x2 < -z * s2:
        return HOLDS
    if (x1 > z * s1 and x2 > z * s2) or (x1 < -z * s1 and x2 < -z * s2):
        return FALSIFIED
    return UNRESOLVED


def _name(cell: Mapping, k: int) -> str:
    k = int(cell.get("k", k))
    if k >= 32:
        return "CLIP" if float(cell.get("image_mask", 0.0)) == 0 else "FLIP"
    return f"{cell['masker']} K={k}" + (f" t={cell['threshold']:g}" if "threshold" in cell else "")


def _sides(a: Mapping, b: Mapping | None, key: str, default: str) -> str:
    """The column (or band) a part reads: one name, or ``a's vs b's`` when the sides differ."""
    va = a.get(key) or default
    vb = (b.get(key) or default) if b is not None else va
    return va if va == vb else f"{va} vs {vb}"


def judge(results: Results, checks: Sequence[Mapping], z: float = Z) -> pd.DataFrame:
    """Every part of every check, judged: id, world, claim, k, column, band, a, b, a_value, b_value, diff,
    se, seeds, verdict (values in points of top-1)."""
    out = []
    for check in checks:
        rel, worlds = check["relation"], _list(check["world"])
        a = check["a"]
        b = check.get("b", {"masker": "none"})
        bands = _list(check.get("bands", [None]))
        for k, column, ca, cb in itertools.product(
            _list(check["k"]), _list(check.get("columns", ["pretrain"])), _expand(a), _expand(b)
        ):

            def measure(world: str, cell: Mapping, band: str | None, k: int = k, column: str = column):
                return results.values(world, cell, k, cell.get("column", column), cell.get("band", band))

            has_b = "b" in check
            row = {
                "id": check["id"],
                "world": " vs ".join(worlds),
                "claim": check["claim"],
                "k": k,
                "column": _sides(ca, cb if has_b else None, "column", column),
                "band": " − ".join(bands)
                if len(bands) == 2
                else _sides(ca, cb if has_b else None, "band", bands[0] or "all"),
                "a": _name(ca, k),
                "b": _name(cb, k) if has_b else f"{check['value']}",
            }
            if rel in ("at", "below"):
                mean, _, n = _stats(measure(worlds[0], ca, bands[0]))
                value, tol = float(check["value"]), float(check.get("tol", 0.0))
                ok = abs(mean - value) <= tol if rel == "at" else mean <= value + tol
                row.update(
                    a_value=mean,
                    b_value=value,
                    diff=mean - value,
                    se=math.nan,
                    seeds=n,
                    verdict=NOT_RUN
                    if not n
                    else (HOLDS if ok else FALSIFIED) + (" (one seed)" if n == 1 else ""),
                )
            elif rel == "flips":
                d = [_diff(measure(w, ca, None), measure(w, cb, None)) for w in worlds]
                row.update(
                    a_value=d[0][0],
                    b_value=d[1][0],
                    diff=d[0][0] - d[1][0],
                    se=math.sqrt(d[0][1] ** 2 + d[1][1] ** 2),
                    seeds=min(d[0][2], d[1][2]),
                    verdict=_flips(d[0], d[1], z),
                )
            elif len(bands) == 2:  # a difference of differences: (a − b) on one band minus on the other
                d1, d2 = (_diff(measure(worlds[0], ca, band), measure(worlds[0], cb, band)) for band in bands)
                diff, se, n = d1[0] - d2[0], math.sqrt(d1[1] ** 2 + d2[1] ** 2), min(d1[2], d2[2])
                row.update(
                    a_value=d1[0],
                    b_value=d2[0],
                    diff=diff,
                    se=se,
                    seeds=n,
                    verdict=verdict(rel, diff, se, n, z),
                )
            else:
                va, vb = measure(worlds[0], ca, bands[0]), measure(worlds[0], cb, bands[0])
                diff, se, n = _diff(va, vb)
                row.update(
                    a_value=_stats(va)[0],
                    b_value=_stats(vb)[0],
                    diff=diff,
                    se=se,
                    seeds=n,
                    verdict=verdict(rel, diff, se, n, z),
                )
            out.append(row)
    parts = pd.DataFrame(out)
    for col in ("a_value", "b_value", "diff", "se"):
        if col in parts:
            parts[col] = parts[col].astype(float).round(2)
    return parts


def rollup(parts: pd.DataFrame, checks: Sequence[Mapping]) -> pd.DataFrame:
    """One verdict per prediction id: ``falsified`` when at least ``min_falsified`` (default 1) of its parts
    are, ``holds`` when every part is measured and holds, ``not run`` when none is measured, else
    ``unresolved``; ``parts`` counts each part verdict."""
    min_falsified: dict[str, int] = {}
    for check in checks:
        min_falsified[check["id"]] = max(
            min_falsified.get(check["id"], 1), int(check.get("min_falsified", 1))
        )
    out = []
    for pid, group in parts.groupby("id", sort=False):
        counts = group["verdict"].value_counts()
        n_false = int(counts.get(FALSIFIED, 0))
        measured = group["verdict"] != NOT_RUN
        if n_false >= min_falsified[pid]:
            overall = FALSIFIED
        elif not measured.any():
            overall = NOT_RUN
        elif (group["verdict"] == HOLDS).all():
            overall = HOLDS
        else:
            overall = UNRESOLVED if measured.all() else f"{UNRESOLVED} (partly run)"
        out.append(
            {
                "id": pid,
                "world": ", ".join(dict.fromkeys(group["world"])),
                "verdict": overall,
                "parts": ", ".join(f"{int(v)} {k}" for k, v in counts.items()),
                "claims": "; ".join(dict.fromkeys(group["claim"])),
            }
        )
    return pd.DataFrame(out)


def results_from_params(tidy: pd.DataFrame, path: str | Path = "params.yaml") -> Results:
    """:class:`Results` of ``tidy`` read as a plan's params file says: ``report.dataset`` (each world's main
    zero-shot set), ``freq.threshold`` and ``freq.rule`` (the main frequency cells)."""
    params = yaml.safe_load(Path(path).read_text()) or {}
    dataset = (params.get("report") or {}).get("dataset")
    if isinstance(dataset, str):  # one main set for every world of the plan (the paper profiles)
        dataset = {world: dataset for world in params.get("worlds") or {}}
    if not isinstance(dataset, dict):
        raise ValueError(f"{path}: report.dataset must map each world to its main set, got {dataset!r}")
    freq = params.get("freq") or {}
    threshold = freq.get("threshold")
    return Results(tidy, dataset, None if threshold is None else float(threshold), freq.get("rule"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clipf.report.predictions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("results", help="tidy results CSV (clipf eval collect)")
    parser.add_argument("--checks", default="docs/predictions.yaml", help="the predictions as checks")
    parser.add_argument(
        "--params",
        default="params.yaml",
        help="report.dataset (each world's main set), freq.threshold, freq.rule",
    )
    parser.add_argument("--out", default="figures/predictions", help="output folder")
    args = parser.parse_args(argv)
    results = results_from_params(pd.read_csv(args.results), args.params)
    checks, skipped = [], []
    for check in load_checks(args.checks):
        (checks if set(_list(check["world"])) <= set(results.datasets) else skipped).append(check)
    if skipped:  # a plan of other worlds (a paper profile): those predictions do not apply
        names = ", ".join(dict.fromkeys(c["id"] for c in skipped))
        print(f"skipped {len(skipped)} checks of worlds without a main set in this plan: {names}")
    parts = judge(results, checks)
    summary = rollup(parts, checks)
    out = Path(args.out)
    caption = "Verdicts by docs/PREDICTIONS.md's rule (Δ > 2 SE holds, Δ < −2 SE falsified)."
    paths = write_table(parts, out / "predictions", caption=caption)
    paths += write_table(summary, out / "predictions_summary", caption=caption)
    print(summary.to_string(index=False))
    print("wrote", ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
