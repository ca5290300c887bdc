"""Refactoring must not change results: the golden runs (tests/_golden.py) end with the recorded weights.

The digests were written by the commit named in tests/data/golden_weights.json; same torch, one thread,
fp32 on CPU. The frequency cell uses the clamped rule. History: recorded at 4ad21fd (before the issue-13
refactor) and unchanged through it; re-written once for issue 17, whose per-sample augmentation seeds
(clipf.engine.resume.WorkerSeeds, what exact mid-epoch resume needs) change every run's crops — with
that one change undone, the three runs still match 4ad21fd bit for bit. The digests are per CPU (see
tests/_golden.py): an AMD family-25 AVX-512 machine gives other bits than the first machine, for the writing
commit's code and for HEAD alike, so its own digests are recorded under ``machines``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _golden import expected, run_all

GOLDEN = Path(__file__).parent / "data" / "golden_weights.json"


@pytest.mark.slow
def test_golden_runs_are_bit_identical(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    import torch

    if torch.__version__ != golden["torch"]:
        pytest.skip(f"golden digests were written with torch {golden['torch']}, this is {torch.__version__}")
    runs, source = expected(golden)
    got = run_all(tmp_path, ["--freq-rule", "clamped"])
    for name, want in runs.items():
        changed = sorted(k for k in want if got[name].get(k) != want[k])
        assert not changed, f"{name}: {len(changed)} tensors differ from {source}: {changed[:5]}"
