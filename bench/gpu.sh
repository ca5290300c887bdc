#!/usr/bin/env bash
# clipf.train throughput on GPUs at the paper's ViT-B/16 settings (bf16, synthetic data), per GPU.
#
#   bench/gpu.sh [NPROC]        # default: every visible GPU; run from the repository root
#
# Rows (each a short clipf.train run under torchrun, NCCL):
#   stock-224-32tok     stock open_clip_train, 224 px, no masking, 32 text tokens   (the reference)
#   clip-224-32tok      clipf.train, same                                          (wrapper overhead)
#   clipf-224-m75-8tok  clipf.train, 224 px, 75% image mask (49 of 196 patches), 8 text tokens
#   clipf-112-m50-16tok clipf.train, 112 px, 50% image mask (25 of 49 patches), 16 text tokens
# Throughput = per-GPU batch / mean "Batch (t)" of open_clip_train's per-step log lines, the first
# WARMUP steps dropped. Synthetic data (one PIL image transformed per sample) keeps storage out of it;
# the text masker is `truncate` (the synthetic caption is two words: masking costs nothing here).
# Results: bench/results/train_gpu_<gpu>.json and a table on stdout.
#
# Knobs (environment): BATCH per GPU (256), STEPS measured per row (60), WARMUP (20), WORKERS per GPU
# (8), PRECISION (amp_bf16), MODEL (ViT-B-16), EXTRA (more options for every row, e.g. "--torchcompile"), PY (python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
NPROC=${1:-$("$PY" -c 'import torch; print(max(1, torch.cuda.device_count()))')}
BATCH=${BATCH:-256}
STEPS=${STEPS:-60}
WARMUP=${WARMUP:-20}
WORKERS=${WORKERS:-8}
PRECISION=${PRECISION:-amp_bf16}
EXTRA=${EXTRA:-}
MODEL=${MODEL:-ViT-B-16}
WORK=bench/_work/gpu
GPU=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0).replace(" ", "-") if torch.cuda.is_available() else "cpu")')
OUT=bench/results/train_gpu_${GPU}.json
rm -rf "$WORK" && mkdir -p "$WORK" bench/results
N=$((BATCH * NPROC * (STEPS + WARMUP)))
COMMON=(--dataset-type synthetic --train-num-samples "$N" --model "$MODEL" --batch-size "$BATCH" --epochs 1
        --workers "$WORKERS" --precision "$PRECISION" --lr 1e-3 --wd 0.2 --warmup 10 --log-every-n-steps 1
        --report-to "" --seed 0)
TORCHRUN=("$(dirname "$PY")/torchrun")
[ -x "${TORCHRUN[0]}" ] || TORCHRUN=("$PY" -m torch.distributed.run)

run() {  # run NAME MODULE_OR_STOCK ARGS...
  local name=$1 kind=$2; shift 2
  echo "== $name" >&2
  if [ "$kind" = stock ]; then  # stock open_clip_train; --logs after "--": torchrun rejects "--logs"
    "${TORCHRUN[@]}" --standalone --nproc_per_node "$NPROC" bench/_work/stock_main.py \
      "${COMMON[@]}" --name "$name" $EXTRA "$@" -- --logs "$WORK" > "$WORK/$name.stdout" 2>&1
  else
    "${TORCHRUN[@]}" --standalone --nproc_per_node "$NPROC" -m clipf.train \
      "${COMMON[@]}" --logs-dir "$WORK" --name "$name" --no-export $EXTRA "$@" > "$WORK/$name.stdout" 2>&1
  fi || { echo "$name failed; see $WORK/$name.stdout" >&2; tail -20 "$WORK/$name.stdout" >&2; exit 1; }
}

cat > bench/_work/stock_main.py <<'EOF'
import sys
from clipf import models  # only adds clipf's model configs to open_clip's registry (MODEL=clipf-vit-*)
models.register()
from open_clip_train.main import main
sys.exit(main([a for a in sys.argv[1:] if a != "--"]) or 0)
EOF

run stock-224-32tok stock --force-context-length 32
run clip-224-32tok clipf
run clipf-224-m75-8tok clipf --force-patch-dropout 0.75 --text-tokens 8 --reduction-mask truncate
run clipf-112-m50-16tok clipf --force-image-size 112 --force-patch-dropout 0.5 --text-tokens 16 --reduction-mask truncate

"$PY" - "$WORK" "$OUT" "$BATCH" "$WARMUP" "$NPROC" "$GPU" "$PRECISION" "$EXTRA" "$MODEL" <<'EOF'
import json, re, statistics, sys
work, out, batch, warmup, nproc, gpu, precision, extra, model = sys.argv[1:]
batch, warmup, nproc = int(batch), int(warmup), int(nproc)
step = re.compile(r"Train Epoch: \d+ \[.*?Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+),")
rows = {}
for name in ("stock-224-32tok", "clip-224-32tok", "clipf-224-m75-8tok", "clipf-112-m50-16tok"):
    steps = [(float(d), float(b)) for d, b in step.findall(open(f"{work}/{name}/out.log").read())][warmup:]
    bt = statistics.fmean(b for _, b in steps)
    rows[name] = {"samples_per_second_per_gpu": batch / bt, "step_seconds": bt,
                  "data_seconds": statistics.fmean(d for d, _ in steps), "steps": len(steps)}
base = rows["clip-224-32tok"]["samples_per_second_per_gpu"]
for r in rows.values():
    r["speedup_vs_clip"] = r["samples_per_second_per_gpu"] / base
result = {"gpu": gpu, "nproc": nproc, "batch_per_gpu": batch, "precision": precision, "extra": extra,
          "model": model, "data": "synthetic", "rows": rows,
          "clipf_vs_stock": base / rows["stock-224-32tok"]["samples_per_second_per_gpu"]}
open(out, "w").write(json.dumps(result, indent=2) + "\n")
print(f"{'row':22s} {'samples/s/GPU':>14s} {'step s':>8s} {'data s':>8s} {'x clip':>7s}")
for name, r in rows.items():
    print(f"{name:22s} {r['samples_per_second_per_gpu']:14.1f} {r['step_seconds']:8.3f} {r['data_seconds']:8.3f} {r['speedup_vs_clip']:7.2f}")
print(f"clipf.train / stock open_clip_train: {result['clipf_vs_stock']:.3f}   ({gpu} x{nproc}, {precision}) -> {out}")
EOF
