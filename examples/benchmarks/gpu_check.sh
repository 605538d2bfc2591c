#!/usr/bin/env bash
# The prepared GPU check (docs/scaling.md, "The GPU check"): three parts, each one command of
# at most 8 minutes on one H100/H200 without network, run in this order:
#
#   bash examples/benchmarks/gpu_check.sh tests        # the suite on CUDA, GPU-marked tests first
#   bash examples/benchmarks/gpu_check.sh throughput   # pre-training, training throughput
#   bash examples/benchmarks/gpu_check.sh train        # the real SmolLM2 on ML-100K, evaluated
#
# Part P writes $OUT/gpu-check-P.json, rewritten after every step it finishes (a timeout keeps
# what finished), and appends to $OUT/log. A dry run of the script itself on a CPU:
#   GPU_CHECK_QUICK=1 OUT=/tmp/gc bash examples/benchmarks/gpu_check.sh throughput
#
# Carried in .gpu/: tokenizer/ (SmolLM2's tokenizer files) and ml-100k/ (RecBole's
# ml-100k.inter and ml-100k.item). The train part needs the real SmolLM2 GGUF at
# $HOME/w/SmolLM2-135M-Instruct.Q4_1.gguf (../shared/docs/GPU.md: carried in two halves).
set -uo pipefail
PART=${1:?"name a part: tests, throughput or train"}
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log") 2>&1
PY=${PYTHON:-python3}
# a fresh cache: nothing carried in .gpu/ is taken for a result of this machine
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 LLARA_KIT_HOME=${LLARA_KIT_HOME:-$(mktemp -d)}
QUICK=${GPU_CHECK_QUICK:-0}
SLOW=$([ "$QUICK" = 1 ] && echo 10 || echo 1)  # a CPU dry run gets 10x every time limit
DATA=(--dataset recbole --data-dir .gpu/ml-100k)
GGUF=${GGUF:-$HOME/w/SmolLM2-135M-Instruct.Q4_1.gguf}
FIGURES="$OUT/gpu-check-$PART.json"
started=$(date +%s)
elapsed() { echo "[$PART, $(($(date +%s) - started)) s] $*"; }
# record KEY JSON-FILE-OR-VALUE: merge one figure into this part's JSON, atomically
record() { $PY examples/benchmarks/gpu_figures.py "$FIGURES" "$1" "$2"; }

$PY -m pip install --quiet --no-deps --no-build-isolation -e . || exit 1
record versions "$($PY - <<'EOF'
import json, torch, transformers, peft, accelerate
print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                  "peft": peft.__version__, "accelerate": accelerate.__version__,
                  "gpus": torch.cuda.device_count(),
                  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))
EOF
)"

# pytest_part NAME SECONDS ARGS...: the suite (or a part of it) on CUDA, its tally recorded
pytest_part() {
  local name=$1 seconds=$2
  shift 2
  elapsed "pytest $name (LLARA_KIT_TEST_DEVICE=cuda, at most $seconds s)"
  local t0=$(date +%s)
  LLARA_KIT_TEST_DEVICE=cuda timeout "$((seconds * SLOW))" $PY -m pytest -q -p no:cacheprovider \
    --junitxml "$OUT/pytest-$name.xml" "$@" | tail -25
  local rc=${PIPESTATUS[0]}
  record "pytest_$name" "{\"exit\": $rc, \"seconds\": $(($(date +%s) - t0))}"
  [ -f "$OUT/pytest-$name.xml" ] && record "pytest_${name}_tally" "$($PY - "$OUT/pytest-$name.xml" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot().iter("testsuite").__next__()
print(json.dumps({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}))
EOF
)"
}

case "$PART" in
tests)
  pytest_part gpu 150 -m gpu -x
  pytest_part rest 270 -m "not gpu" --ignore tests/test_distributed.py  # gloo: CPU only
  ;;
throughput)
  elapsed "pre-training SASRec on the GPU (--device auto)"
  timeout $((100 * SLOW)) $PY -m llara_kit pretrain --encoder sasrec "${DATA[@]}" \
    $([ "$QUICK" = 1 ] && echo --epochs 1) --json > "$OUT/pretrain.json" \
    && record pretrain "$OUT/pretrain.json" || echo "pre-training failed or timed out"
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
    timeout $((65 * SLOW)) $PY examples/benchmarks/train_throughput.py --shape "$shape" \
      --tokenizer .gpu/tokenizer --batch-size "$batch" --steps "$steps" \
      --precision "$precisions" --compile "$compiled" "${DATA[@]}" --json "$OUT/train-$i.json" \
      && record "throughput_$i" "$OUT/train-$i.json" || echo "throughput run failed or timed out: $run"
    i=$((i + 1))
  done
  ;;
train)
  [ -f "$GGUF" ] || { echo "no SmolLM2 GGUF at $GGUF: nothing to train"; exit 1; }
  full=$([ "$QUICK" = 1 ] && echo 8 || echo 16384)  # train samples: 1 epoch fits the time
  batch=$([ "$QUICK" = 1 ] && echo 2 || echo 32)
  limit=$([ "$QUICK" = 1 ] && echo "--limit 4")  # the dry run scores 4 users
  elapsed "LLaRA with the real SmolLM2 on $full ML-100K train samples (1 epoch), evaluated"
  timeout $((240 * SLOW)) $PY -m llara_kit train --llm "$GGUF" "${DATA[@]}" \
    --max-train-samples "$full" --epochs 1 --batch-size "$batch" --grad-accum 1 --out "$OUT/full" \
    && record train "$OUT/full/summary.json" \
    && timeout $((90 * SLOW)) $PY -m llara_kit evaluate "$OUT/full" --batch-size 64 $limit --json \
       > "$OUT/full-metrics.json" && record evaluate "$OUT/full-metrics.json" \
    || echo "the real-weights run failed or timed out"
  gpus=$($PY -c "import torch; print(torch.cuda.device_count())")
  if [ "$gpus" -gt 1 ]; then
    elapsed "data parallel: $gpus processes"
    timeout $((100 * SLOW)) $PY -m torch.distributed.run --nproc-per-node "$gpus" -m llara_kit train \
      --llm "$GGUF" "${DATA[@]}" --max-train-samples 4096 --batch-size 64 --grad-accum 1 \
      --out "$OUT/ddp" && record ddp "$OUT/ddp/summary.json" \
      || echo "data-parallel run failed or timed out"
  fi
  ;;
*)
  echo "unknown part '$PART': name tests, throughput or train"; exit 2 ;;
esac
elapsed "done; figures in $FIGURES"
