#!/usr/bin/env bash
# The prepared GPU check (docs/scaling.md): about 5 minutes on one H100/H200, no network.
# Writes $OUT/gpu_check.json (every figure) and $OUT/log.
#
#   bash examples/benchmarks/gpu_check.sh            # on the GPU machine, from the repo root
#   GPU_CHECK_QUICK=1 OUT=/tmp/gc GGUF=FILE bash examples/benchmarks/gpu_check.sh  # CPU dry run
#
# Carried in .gpu/ (see docs/scaling.md, "The GPU check"): tokenizer/ (SmolLM2's tokenizer
# files) and ml-100k/ (RecBole's ml-100k.inter and ml-100k.item). With the real SmolLM2 GGUF at
# $HOME/w/SmolLM2-135M-Instruct.Q4_1.gguf it also trains LLaRA on 16,384 ML-100K samples and
# evaluates it.
set -uo pipefail
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log") 2>&1
PY=${PYTHON:-python3}
# a fresh cache: nothing carried in .gpu/ is taken for a result of this machine
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 LLARA_KIT_HOME=${LLARA_KIT_HOME:-$(mktemp -d)}
QUICK=${GPU_CHECK_QUICK:-0}
DATA=(--dataset recbole --data-dir .gpu/ml-100k)
GGUF=${GGUF:-$HOME/w/SmolLM2-135M-Instruct.Q4_1.gguf}
# train samples of the real-weights run: a fixed subset that fits the time (5 epochs of all
# 76,192 take 5 x 76,192 / samples_per_s; the summary gives samples_per_s)
FULL=$([ "$QUICK" = 1 ] && echo 8 || echo 16384)
LIMIT=$([ "$QUICK" = 1 ] && echo "--limit 4")  # the dry run scores 4 users
started=$(date +%s)
elapsed() { echo "[$(($(date +%s) - started)) s] $*"; }

$PY -m pip install --quiet --no-deps --no-build-isolation -e . || exit 1
$PY - <<'EOF'
import torch, transformers, peft, accelerate
print("torch", torch.__version__, "transformers", transformers.__version__, "peft",
      peft.__version__, "accelerate", accelerate.__version__, "GPUs", torch.cuda.device_count(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
EOF

elapsed "pre-training SASRec on the GPU (--device auto)"
timeout 240 $PY -m llara_kit pretrain --encoder sasrec "${DATA[@]}" \
  $([ "$QUICK" = 1 ] && echo --epochs 1) --json > "$OUT/pretrain.json" \
  || echo "pre-training failed or timed out"

if [ "$QUICK" = 1 ]; then
  runs=("smollm2-135m 2 1 fp32 no")
else  # shape, batch, steps, precisions, compile settings
  runs=("smollm2-135m 32 8 fp32,bf16 no" "smollm2-135m 32 8 bf16 yes"
        "smollm2-135m 128 4 bf16 no" "llama-3.2-1b 16 6 fp32,bf16 no"
        "llama-3.2-1b 16 6 bf16 yes")
fi
i=0
for run in "${runs[@]}"; do
  read -r shape batch steps precisions compiled <<<"$run"
  elapsed "throughput: $shape, batch $batch, $precisions, compile $compiled"
  timeout 150 $PY examples/benchmarks/train_throughput.py --shape "$shape" \
    --tokenizer .gpu/tokenizer --batch-size "$batch" --steps "$steps" \
    --precision "$precisions" --compile "$compiled" "${DATA[@]}" --json "$OUT/train-$i.json" \
    || echo "throughput run failed or timed out: $run"
  i=$((i + 1))
done

gpus=$($PY -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -gt 1 ] && [ -f "$GGUF" ]; then
  elapsed "data parallel: $gpus processes"
  timeout 120 $PY -m torch.distributed.run --nproc-per-node "$gpus" -m llara_kit train \
    --llm "$GGUF" "${DATA[@]}" --max-train-samples 4096 --batch-size 64 --grad-accum 1 \
    --out "$OUT/ddp" \
    || echo "data-parallel run failed or timed out"
fi

if [ -f "$GGUF" ]; then
  elapsed "LLaRA with the real SmolLM2 on $FULL ML-100K train samples, then evaluation"
  timeout 240 $PY -m llara_kit train --llm "$GGUF" "${DATA[@]}" --max-train-samples "$FULL" \
    --epochs 1 --batch-size 32 --grad-accum 1 --out "$OUT/full" \
    && timeout 90 $PY -m llara_kit evaluate "$OUT/full" --batch-size 64 $LIMIT --json \
       > "$OUT/full-metrics.json" \
    || echo "full-data run failed or timed out"
fi

elapsed "collecting figures"
$PY - "$OUT" <<'EOF'
import glob, json, sys
from pathlib import Path
out = Path(sys.argv[1])
figures = {"throughput": [row for f in sorted(glob.glob(str(out / "train-*.json")))
                          for row in json.loads(Path(f).read_text())]}
pretrain = out / "pretrain.json"
if pretrain.is_file() and pretrain.stat().st_size:
    report = json.loads(pretrain.read_text())
    figures["pretrain"] = {k: report[k] for k in ("seconds", "epochs_run", "test")}
for name in ("ddp", "full"):
    summary = out / name / "summary.json"
    if summary.is_file():
        figures[name] = json.loads(summary.read_text())
metrics = out / "full-metrics.json"
if metrics.is_file() and metrics.stat().st_size:
    figures["full_metrics"] = json.loads(metrics.read_text())
(out / "gpu_check.json").write_text(json.dumps(figures, indent=2))
print(json.dumps(figures, indent=1)[:4000])
EOF
elapsed "done"
