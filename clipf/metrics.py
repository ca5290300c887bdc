"""A training phase's per-epoch records (``RUN/<phase>/metrics.json``, written by clipf.train) as a table:
read by the study's notebooks and by the report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path


def read_metrics(phase_dir: str | Path):
    """The per-epoch records of ``phase_dir/metrics.json`` as a DataFrame."""
    import pandas as pd

    path = Path(phase_dir) / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (did training finish?)")
    data = json.loads(path.read_text())
    if isinstance(data, Mapping):
        data = next((v for v in data.values() if isinstance(v, list)), [data])
    return pd.DataFrame(data)
