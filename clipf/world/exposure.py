"""Name exposure: how often each text masker keeps the words that name a world's classes.

For every masker and text-token budget K, the share of a split's captions in which every class-naming
word said (right) survives masking whole -- all its BPE tokens, contiguous -- per frequency band for the
``concepts`` world; and the share of zero-shot prompts (class x template of the ImageNet stand-in) whose
class name survives (the ``masked`` protocol). This measures the text side of the paper's mechanism
without training anything (docs/PREDICTIONS.md)::

    python -m clipf.world.exposure WORLD --table data/freq.json [--threshold 6e-6] [--n 4096] [--out F]

Class-naming words: the concept name (``concepts``); the main object's shape and colour (``shapes``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipf.world.stats import NAME_KINDS, read_pairs

MASKERS = ("truncate", "random", "block", "syntax", "frequency")
BUDGETS = (4, 6, 8, 16)
SPECIAL = frozenset({0, 49406, 49407})  # padding, start, end


def _contains(row: Sequence[int], sub: Sequence[int]) -> bool:
    n = len(sub)
    return any(list(row[i : i + n]) == list(sub) for i in range(len(row) - n + 1))


def _mask_fn(masker: str, table: Any, threshold: float):
    from clipf.masking import get_masker

    fn = get_masker(masker)
    opts: dict[str, Any] = {}
    if masker == "frequency":
        opts = {"table": table, "threshold": threshold}
        if "rule" in inspect.signature(fn).parameters:
            opts["rule"] = "authors"  # the released rule (no clamp at 0)
    return lambda texts, k, seed: fn(texts, k, np.random.default_rng(seed), **opts).tolist()


def exposure(
    world: str | Path,
    table: str | Path,
    threshold: float = 6e-6,
    n: int = 4096,
    maskers: Sequence[str] = MASKERS,
    budgets: Sequence[int] = BUDGETS,
) -> dict[str, dict[str, float]]:
    """``{"<masker>-k<K>": {"all": share, <band>: share, ..., "prompts": share}}`` over the first ``n``
    training captions of ``world`` (and its classification set's prompts)."""
    from clipf.freq import load_table
    from clipf.text import encode_words

    world = Path(world)
    cfg = json.loads((world / "world.json").read_text())["config"]
    preset = cfg.get("preset", "shapes")
    kinds = NAME_KINDS[preset]
    ids = {}

    def ids_of(word: str) -> list[int]:
        if word not in ids:
            ids[word] = [t for w in encode_words(word)[1] for t in w]
        return ids[word]

    band_of: dict[str, str] = {}
    if preset == "concepts":
        eval_set = world / "eval" / "concepts"
        band_of = json.loads((eval_set / "bands.json").read_text())["band_of"]
    else:
        eval_set = world / "eval" / "world_objects"
    classes = (eval_set / "classnames.txt").read_text().splitlines()
    templates = (eval_set / "zeroshot_classification_templates.txt").read_text().splitlines()
    prompts = [(t.replace("{c}", c), c) for c in classes for t in templates]

    samples = []
    for caption, meta in read_pairs(world / "train", n):
        said = [w for (w, _), g in zip(meta["words"], meta["grounded"], strict=True) if g in kinds]
        band = band_of.get((meta.get("scene") or {}).get("concept"))
        samples.append((caption, [] if meta.get("wrong") else list(dict.fromkeys(said)), band))
    freq_table = load_table(table)
    out: dict[str, dict[str, float]] = {}
    for masker in maskers:
        fn = _mask_fn(masker, freq_table, threshold)
        for k in budgets:
            rows = fn([s[0] for s in samples], k, 0)
            hit: dict[str, list[bool]] = defaultdict(list)
            for row, (_, said, band) in zip(rows, samples, strict=True):
                if not said:
                    continue
                row = [t for t in row if t not in SPECIAL]
                ok = all(_contains(row, ids_of(w)) for w in said)
                hit["all"].append(ok)
                if band:
                    hit[band].append(ok)
            rows = fn([p for p, _ in prompts], k, 1)
            hit["prompts"] = [
                all(_contains(r, ids_of(w)) for w in c.split())
                for r, (_, c) in zip(rows, prompts, strict=True)
            ]
            out[f"{masker}-k{k}"] = {b: round(float(np.mean(v)), 3) for b, v in hit.items()}
    return out


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clipf.world.exposure", description=__doc__.split("\n")[0])
    ap.add_argument("world")
    ap.add_argument("--table", required=True, help="the world's word-count table (clipf freq build)")
    ap.add_argument("--threshold", type=float, default=6e-6, help="frequency masker t (the transferred t)")
    ap.add_argument("--n", type=int, default=4096, help="training captions")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    res = exposure(args.world, args.table, args.threshold, args.n)
    if args.out:
        from clipf.files import write_json

        write_json(args.out, res)
    bands = [b for b in ("all", "head", "torso", "tail", "prompts") if any(b in v for v in res.values())]
    print("masker-K".ljust(14) + "".join(b.rjust(9) for b in bands))
    for key, v in res.items():
        print(key.ljust(14) + "".join((f"{100 * v[b]:.0f}%" if b in v else "").rjust(9) for b in bands))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
