"""World generation throughput: training pairs/s on one core, and the default world's caption stats.

One shard job at a time in this process (sample the scene, render it, encode the image, write the
caption and its JSON, pack and fsync the tar) -- exactly what ``clipf data synth --workers 1`` does per
shard -- at 32, 64 (the targets: >= 2000 pairs/s per core at 64 px), 128 and 224 px, default
``world:`` config. Each (size) is timed once per round over ``--pairs`` pairs, rounds interleave the
sizes, the median round is reported, as CPU seconds of this process (time on one core, what a shared
machine does not inflate much) and wall seconds. A per-stage split (scene sampling, rendering, image
encoding, caption) comes from separate loops over the same scenes. Then a whole ``synthesize`` (train,
val, six eval sets) with 1 and 2 workers, wall clock, and ``clipf data stats`` of its training split.

    python bench/world.py [--pairs 2000] [--rounds 5]

Writes bench/results/world.json and the ``## World generation`` section of bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import PIL
import readme_section  # noqa: E402  (bench/readme_section.py, beside this script)

from clipf.world import captions as C
from clipf.world import generate as G
from clipf.world import scene as S
from clipf.world import shards as W
from clipf.world.config import fingerprint, load_config

HERE = Path(__file__).parent
SECTION = "## World generation"
SIZES = (32, 64, 128, 224)


def _job(cfg, size: int, folder: str, count: int, shard: int) -> dict:
    return {
        "cfg": cfg,
        "image_size": size,
        "seed": 0,
        "kind": "pairs",
        "group": "train",
        "split": "train",
        "dir": folder,
        "shard": shard,
        "name": f"{shard:05d}.tar",
        "start": 0,
        "count": count,
    }


def time_shards(cfg, pairs: int, rounds: int) -> dict:
    """Median pairs/s (CPU and wall) of one shard job of ``pairs`` pairs, per image size."""
    folder = tempfile.mkdtemp(prefix="clipf-bench-world-")
    try:
        for size in SIZES:  # warm caches (background / noise banks, vocabulary)
            G._pair_shard(_job(cfg, size, folder, 50, 999))
        cpu: dict[int, list[float]] = {s: [] for s in SIZES}
        wall: dict[int, list[float]] = {s: [] for s in SIZES}
        bytes_per_pair: dict[int, float] = {}
        for r in range(rounds):
            for size in SIZES:
                t0, c0 = time.perf_counter(), time.process_time()
                G._pair_shard(_job(cfg, size, folder, pairs, r))
                wall[size].append(pairs / (time.perf_counter() - t0))
                cpu[size].append(pairs / (time.process_time() - c0))
                bytes_per_pair[size] = os.path.getsize(Path(folder) / f"{r:05d}.tar") / pairs
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        str(s): {
            "cpu_pairs_per_s": round(statistics.median(cpu[s])),
            "cpu_pairs_per_s_best": round(max(cpu[s])),
            "wall_pairs_per_s": round(statistics.median(wall[s])),
            "cpu_rounds": [round(v) for v in cpu[s]],
            "bytes_per_pair": round(bytes_per_pair[s]),
        }
        for s in SIZES
    }


def time_stages(cfg, n: int, size: int) -> dict:
    """CPU microseconds per pair of each stage, over the same ``n`` scenes."""
    d = S.Draws(1)
    c0 = time.process_time()
    scenes = [S.sample_scene(d, cfg["scene"]) for _ in range(n)]
    c1 = time.process_time()
    images = [S.render_image(s, size, cfg["scene"], d) for s in scenes]
    c2 = time.process_time()
    for img in images:
        W.encode_image(img, cfg["image_format"], cfg["jpeg_quality"])
    c3 = time.process_time()
    for s in scenes:
        C.web_caption(s, d, cfg)
    c4 = time.process_time()
    us = 1e6 / n
    return {
        "size": size,
        "scene_us": round((c1 - c0) * us, 1),
        "render_us": round((c2 - c1) * us, 1),
        "encode_us": round((c3 - c2) * us, 1),
        "caption_us": round((c4 - c3) * us, 1),
    }


def masker_retention(folder: Path, n: int = 1500, ks=(4, 8, 16), thresholds=(1e-4, 1e-3, 1e-2)) -> dict:
    """What each masker keeps of the main object, by caption statistics alone: the mean number of
    main-object shape / colour words (said right) left in a caption masked to K tokens, and the share of
    captions keeping both, over the first ``n`` captions; the frequency masker's table is counted over
    the whole split, as the study's freq stage does."""
    from collections import Counter

    from open_clip.tokenizer import _tokenizer

    from clipf import masking, text
    from clipf.freq import FreqTable
    from clipf.world.stats import read_pairs

    pairs = list(read_pairs(folder))
    counts = Counter(w for caption, _ in pairs for w in text.split_words(caption))
    table = FreqTable(counts=dict(counts), total=sum(counts.values()), min_count=1)
    test = pairs[:n]
    captions = [c for c, _ in test]
    special = {0, 49406, 49407}
    runs = [(m, {}) for m in ("truncate", "block", "random", "syntax")]
    runs += [(f"frequency t={t:g}", {"table": table, "threshold": t}) for t in thresholds]
    out: dict = {"captions": len(test), "said": round(float(np.mean([_said(m) for _, m in test])), 3)}
    for name, opts in runs:
        masker = masking.get_masker(name.split(" ")[0])
        for k in ks:
            rows = masker(captions, k, np.random.default_rng(0), **opts)
            kept, both = [], []
            for row, (_, meta) in zip(rows.tolist(), test, strict=True):
                left = Counter(C.words_of(_tokenizer.decode([i for i in row if i not in special])))
                got = set()
                n_kept = 0
                for (w, _), g in zip(meta["words"], meta["grounded"], strict=True):
                    if left[w] > 0:
                        left[w] -= 1
                        if g in ("shape", "color") and g not in meta["wrong"]:
                            n_kept += 1
                            got.add(g)
                kept.append(n_kept)
                both.append(len(got) == 2)
            out.setdefault(name, {})[str(k)] = {
                "kept": round(float(np.mean(kept)), 3),
                "both": round(float(np.mean(both)), 3),
            }
    return out


def _said(meta: dict) -> int:
    return sum(1 for g in meta["grounded"] if g in ("shape", "color") and g not in meta["wrong"])


def time_synthesize(cfg, n_train: int, n_val: int, n_eval: int, size: int) -> dict:
    out = {}
    root = Path(tempfile.mkdtemp(prefix="clipf-bench-world-"))
    try:
        for workers in (1, 2):
            t0 = time.perf_counter()
            G.synthesize(
                root / f"w{workers}",
                n_train,
                n_val,
                size,
                0,
                cfg,
                n_eval=n_eval,
                workers=workers,
                progress=False,
            )
            wall = time.perf_counter() - t0
            total = n_train + n_val + 6 * n_eval
            out[f"workers_{workers}"] = {"wall_s": round(wall, 2), "images_per_s": round(total / wall)}
        from clipf.world.stats import stats

        s = stats(root / "w1", write=False)
        s.pop("split")
        retention = masker_retention(root / "w1" / "train")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out.update(n_train=n_train, n_val=n_val, n_eval=n_eval, image_size=size)
    return {"synthesize": out, "stats": s, "retention": retention}


def run(pairs: int, rounds: int) -> dict:
    cfg = load_config()
    res = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_avg_start": list(os.getloadavg()),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "config_fingerprint": fingerprint(cfg),
        "image_format": cfg["image_format"],
        "pairs_per_round": pairs,
        "rounds": rounds,
        "shard": time_shards(cfg, pairs, rounds),
        "stages": [time_stages(cfg, pairs, s) for s in (32, 64)],
    }
    res.update(time_synthesize(cfg, 4096, 512, 500, 32))
    res["load_avg_end"] = list(os.getloadavg())
    return res


def markdown(res: dict) -> str:
    sh, st, sy = res["shard"], res["stats"], res["synthesize"]
    lines = [
        SECTION,
        "",
        f"`python bench/world.py` — training pairs/s of one `clipf data synth` shard job on one core (scene, "
        f"render, {res['image_format'].upper()} encode, caption + JSON, tar packed and fsynced), default "
        f"`world:` config, {res['pairs_per_round']} pairs per round, median of {res['rounds']} interleaved "
        "rounds; 'CPU' divides by this process's CPU time (one core's work, what other jobs on a shared "
        "machine inflate least; the best round is the least disturbed one), 'wall' by elapsed time. "
        f"{res['date']}, {res['platform']}, {res['cpu_count']} cores shared with other jobs (load average "
        f"{res['load_avg_start'][0]:.1f} at start, {res['load_avg_end'][0]:.1f} at the end), "
        f"numpy {res['numpy']}, Pillow {res['pillow']}. "
        "Raw numbers: `bench/results/world.json`.",
        "",
        "| image size | pairs/s (CPU, median) | pairs/s (CPU, best round) | pairs/s (wall, median) | bytes/pair |",
        "|---|---|---|---|---|",
    ]
    for size, r in sh.items():
        lines.append(
            f"| {size}×{size} | {r['cpu_pairs_per_s']:,} | {r['cpu_pairs_per_s_best']:,} | "
            f"{r['wall_pairs_per_s']:,} | {r['bytes_per_pair']:,} |"
        )
    lines += [
        "",
        "Per stage (CPU µs per pair): "
        + "; ".join(
            f"{s['size']} px: scene {s['scene_us']:.0f}, render {s['render_us']:.0f}, "
            f"encode {s['encode_us']:.0f}, caption {s['caption_us']:.0f}"
            for s in res["stages"]
        )
        + ". The rest is JSON metadata and the tar.",
        "",
        f"Whole world (`synthesize`: {sy['n_train']} train + {sy['n_val']} val pairs + 6 eval sets of "
        f"{sy['n_eval']}, {sy['image_size']} px): {sy['workers_1']['wall_s']} s with 1 worker, "
        f"{sy['workers_2']['wall_s']} s with 2 (same bytes).",
        "",
        f"Caption statistics of that world's training split (`clipf data stats`, {st['pairs']} captions):",
        "",
        "| statistic | value |",
        "|---|---|",
        f"| words / caption | mean {st['words']['mean']:.1f}, median {st['words']['p50']:.0f}, "
        f"5–95 % {st['words']['p5']:.0f}–{st['words']['p95']:.0f}, range {st['words']['min']:.0f}–{st['words']['max']:.0f} |",
        f"| BPE tokens / caption | mean {st['bpe_tokens']['mean']:.1f}, median {st['bpe_tokens']['p50']:.0f}, "
        f"5–95 % {st['bpe_tokens']['p5']:.0f}–{st['bpe_tokens']['p95']:.0f}, max {st['bpe_tokens']['max']:.0f} |",
        "| captions longer than 8 / 16 / 32 tokens | "
        + " / ".join(f"{v:.0%}" for v in st["bpe_longer_than"].values())
        + " |",
        f"| vocabulary | {st['vocabulary']:,} words ({st['word_tokens']:,} word tokens) |",
        f"| rank–frequency slope (log–log) | {st['zipf']['slope']:.2f} (R² {st['zipf']['r2']:.3f}) |",
        f"| function words | {st['function_share']:.1%} |",
        f"| grounded words | {st['grounded_share']:.1%} |",
        "| grounded words starting past token 8 / 16 | "
        + " / ".join(f"{st['grounded_past_token'][k]:.0%}" for k in ("8", "16"))
        + " |",
        "| captions whose first grounded word is past token 8 / 16 | "
        + " / ".join(f"{st['first_grounded_past_token'][k]:.0%}" for k in ("8", "16"))
        + " |",
        f"| caption opens with a grounded word | {st['first_word_grounded']:.0%} |",
        f"| no grounded word / a wrong attribute | {st['no_grounding']:.1%} / {st['wrong_attribute']:.1%} |",
        "| median corpus frequency: function / ungrounded content / grounded words | "
        + " / ".join(f"{v:.2g}" for v in st["median_frequency"].values())
        + " |",
        "",
    ]
    ret = res["retention"]
    ks = list(next(v for k, v in ret.items() if isinstance(v, dict)))
    lines += [
        "What each masker keeps of the main object, from the captions alone (no training): main-object "
        f"shape/colour words left per caption masked to K tokens (of {ret['said']:.2f} said right per "
        f"caption), and the share of captions keeping both; first {ret['captions']} captions of that "
        "split, the frequency table counted over all of it (`clipf.masking` maskers, seed 0).",
        "",
        "| masker | " + " | ".join(f"K={k}: words / both" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for name, by_k in ret.items():
        if isinstance(by_k, dict):
            lines.append(
                f"| {name} | "
                + " | ".join(f"{by_k[k]['kept']:.2f} / {by_k[k]['both']:.0%}" for k in ks)
                + " |"
            )
    lines.append("")
    return "\n".join(lines)


def write_readme_section(text: str, path: Path = HERE / "README.md") -> None:
    """Replace (or append) the ``## World generation`` section of bench/README.md."""
    readme_section.write_section(SECTION, text, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--readme-only", action="store_true", help="re-render the README from the JSON")
    args = ap.parse_args()
    if args.readme_only:
        res = json.loads((HERE / "results" / "world.json").read_text(encoding="utf-8"))
        write_readme_section(markdown(res))
        return
    res = run(args.pairs, args.rounds)
    text = markdown(res)
    print(text)
    if not args.no_write:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "world.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        write_readme_section(text)


if __name__ == "__main__":
    main()
