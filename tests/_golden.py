"""Golden weights: fixed tiny runs whose final weights must not change when code is refactored.

``python tests/_golden.py --write tests/data/golden_weights.json`` records, for two masked CLIP cells
and one UTA student (argv and seed fixed, one thread, fp32), the sha256 of every tensor of the last
checkpoint's ``state_dict``. ``tests/test_golden.py`` re-runs them and compares. The file records the
commit that wrote it; a deliberate behaviour change re-writes it (say so in the commit message).

Bit-exact fp32 results depend on the CPU as well as the code: MKL and oneDNN pick their kernels by CPU
(forcing torch's AVX2 kernels on an AVX-512 machine does not bring back another CPU's bits). The top-level
``runs`` are the first machine's; ``machines`` holds the digests of other CPUs (:func:`machine`), added with
``--write FILE --machine`` by running the *writing commit's* code on that CPU, so they guard the same behaviour.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from test_train import WORDS, FreqTable, base_args, write_shards  # noqa: E402
from test_uta import make_export, uta_args, write_pairs  # noqa: E402

CELLS = {
    "random-k6-m75": ["--reduction-mask", "random", "--text-tokens", "6", "--force-patch-dropout", "0.75"],
    "frequency-k6-t1e-2-clamped": [
        "--reduction-mask",
        "frequency",
        "--text-tokens",
        "6",
        "--freq-threshold",
        "1e-2",
    ],
}


def machine() -> str:
    """What bit-exact CPU results depend on here: the CPU vendor and family and torch's kernel capability
    (e.g. ``AuthenticAMD family 25 AVX512``)."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    vendor = info.get("vendor_id") or platform.machine()
    return f"{vendor} family {info.get('cpu family', '?')} {torch.backends.cpu.get_cpu_capability()}"


def expected(golden: dict) -> tuple[dict, str]:
    """The digests to compare with on this machine (its own under ``machines``, else the first machine's),
    and a phrase naming where they come from."""
    mine = (golden.get("machines") or {}).get(machine())
    if mine:
        return mine["runs"], f"{mine['commit'][:8]} on this CPU ({machine()})"
    return golden["runs"], f"{golden['commit'][:8]} on another CPU (none recorded for {machine()})"


def digest(ckpt: Path) -> dict[str, str]:
    """sha256 of each tensor (name -> hex) of a checkpoint's state_dict."""
    sd = torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]
    return {k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest() for k, v in sorted(sd.items())}


def run_all(root: Path, extra_frequency: list[str] | None = None) -> dict[str, dict[str, str]]:
    """Run the golden cells under ``root``; ``extra_frequency``: flags that select the old rule."""
    from clipf import models, train

    torch.set_num_threads(1)
    models.register()
    world = {"train": write_shards(root / "w" / "train", 4, 32), "root": root}
    table = root / "w" / "freq.json"
    FreqTable(counts={w: 50 * (i + 1) for i, w in enumerate(WORDS)}, total=60000).save(table)
    out = {}
    for name, extra in CELLS.items():
        extra = list(extra)
        if name.startswith("frequency"):
            extra += ["--mask-probability-file", str(table), *(extra_frequency or [])]
        argv = base_args(world, root / "runs", name, *extra, samples=64)
        assert train.main(argv) == 0, name
        out[name] = digest(root / "runs" / name / "checkpoints" / "epoch_1.pt")
    uw = {"train": write_pairs(root / "u" / "train", 4, 16), "teacher": make_export(root / "u" / "teacher")}
    assert train.main(uta_args(uw, root / "runs", "uta-student")) == 0
    out["uta-student"] = digest(root / "runs" / "uta-student" / "checkpoints" / "epoch_1.pt")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", required=True, help="JSON file to write")
    ap.add_argument("--frequency-flag", action="append", default=[], help="extra flag for the frequency cell")
    ap.add_argument(
        "--machine",
        action="store_true",
        help="add this CPU's digests to the existing --write file (under machines), keeping the rest",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        digests = run_all(Path(tmp), args.frequency_flag)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    out = Path(args.write)
    if args.machine:
        golden = json.loads(out.read_text())
        if golden["torch"] != torch.__version__:
            raise SystemExit(f"{out} was written with torch {golden['torch']}, this is {torch.__version__}")
        golden.setdefault("machines", {})[machine()] = {"commit": commit, "runs": digests}
    else:
        golden = {"commit": commit, "torch": torch.__version__, "runs": digests}
    out.write_text(json.dumps(golden, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
