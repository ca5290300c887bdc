"""The paper's claims checked on our main table (:func:`clipf.report.tables.main_table`): frequency
masking against truncation and the best other masker, at every K, under each zero-shot protocol, with a
verdict against seed noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from clipf.report.tables import MAIN_COLUMNS, column, measured_columns


def verdict(diff: float, se: float, z: float = 2.0) -> str:
    """``better`` / ``worse`` when ``|diff| > z * se``, else ``within noise`` (one seed: the sign only)."""
    if pd.isna(diff):
        return "not measured"
    if pd.isna(se) or se == 0:
        return "better (one seed)" if diff > 0 else "worse (one seed)" if diff < 0 else "equal"
    if diff > z * se:
        return "better"
    if diff < -z * se:
        return "worse"
    return "within noise"


def claims(
    table: pd.DataFrame, columns: Sequence[tuple[str, str]] = MAIN_COLUMNS, z: float = 2.0
) -> pd.DataFrame:
    """The paper's masking claims checked on :func:`main_table`: for each measured (checkpoint, protocol)
    column (pre-train under masked prompts — the paper's pre-train protocol —, pre-train and fine-tune
    under full prompts) and at every K (and image mask), frequency masking against truncation and
    against the best other masker. ``diff`` is frequency minus the other (points), ``se`` the standard
    error of that difference over seeds; the verdict is ``better`` / ``worse`` when ``|diff| > z * se``
    and ``within noise`` otherwise."""
    masked = table[table["masking"] != "none"]
    measured = measured_columns(table)
    out = []
    for ckpt, protocol in columns:
        col = column(ckpt, protocol)
        if col not in measured:
            continue
        for (k, r), group in masked.groupby(["text_tokens", "image_mask"]):
            by = group.set_index("masker")
            if "frequency" not in by.index:
                continue
            f = by.loc["frequency"]
            others = by.drop(index="frequency").dropna(subset=[f"{col}_mean"])
            if others.empty:
                continue
            best = others[f"{col}_mean"].idxmax()
            for label, other in (("truncation", "truncate"), ("best other masker", best)):
                if other not in by.index:
                    continue
                o = by.loc[other]
                diff = f[f"{col}_mean"] - o[f"{col}_mean"]
                se = np.sqrt(
                    (f[f"{col}_std"] ** 2) / max(f[f"{col}_n"], 1)
                    + (o[f"{col}_std"] ** 2) / max(o[f"{col}_n"], 1)
                )
                out.append(
                    {
                        "checkpoint": ckpt,
                        "protocol": protocol,
                        "text_tokens": int(k),
                        "image_mask": float(r),
                        "claim": f"frequency beats {label}",
                        "other": other,
                        "frequency": round(float(f[f"{col}_mean"]), 2),
                        "other_value": round(float(o[f"{col}_mean"]), 2),
                        "diff": round(float(diff), 2),
                        "se": round(float(se), 2) if not pd.isna(se) else np.nan,
                        "seeds": int(min(f[f"{col}_n"], o[f"{col}_n"])),
                        "verdict": verdict(diff, se, z),
                    }
                )
    return pd.DataFrame(out)
