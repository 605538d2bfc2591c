#!/usr/bin/env bash
# The prepared GPU check (docs/scaling.md, "The GPU check"): two commands of at most 5 and 4
# minutes on one H100/H200 without network, back to back (the machine is released 30 s after a
# command; ../shared/docs/GPU.md):
#
#   command 1, carrying .gpu/w1 .gpu/tokenizer .gpu/ml-100k .gpu/wheels:
#     mkdir -p $HOME/w && cp .gpu/w1/* $HOME/w/ && bash examples/benchmarks/gpu_check.sh tests throughput
#   command 2, carrying .gpu/w2 .gpu/ml-100k:
#     bash .gpu/w2/join.sh && bash examples/benchmarks/gpu_check.sh train
#
# Part P writes $OUT/gpu-check-P.json, rewritten after every step it finishes (a timeout keeps
# what finished), and appends to $OUT/log. .gpu/ is filled by examples/benchmarks/gpu_prepare.py
# (tokenizer, data) and ../shared/tools/gpu-weights.sh (the GGUF in two halves). A dry run of
# the script itself on a CPU (each step one small case, time limits x10):
#   GPU_CHECK_QUICK=1 OUT=/tmp/gc bash examples/benchmarks/gpu_check.sh tests throughput
#   GPU_CHECK_QUICK=1 OUT=/tmp/gc GGUF=FILE bash examples/benchmarks/gpu_check.sh train
set -uo pipefail
[ $# -gt 0 ] || { echo "name the parts: tests, throughput, train"; exit 2; }
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log") 2>&1
PY=${PYTHON:-python3}
# a cache of this machine's own (nothing carried in .gpu/ is taken for a result of it), shared
# by the two commands: the encoder pre-trained in the first is the one the second trains with
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 LLARA_KIT_HOME=${LLARA_KIT_HOME:-$HOME/.llara-kit-gpu-check}
QUICK=${GPU_CHECK_QUICK:-0}
SLOW=$([ "$QUICK" = 1 ] && echo 10 || echo 1)  # a CPU dry run gets 10x every time limit
DATA=(--dataset recbole --data-dir .gpu/ml-100k)
GGUF=${GGUF:-$HOME/w/SmolLM2-135M-Instruct.Q4_1.gguf}
started=$(date +%s)
elapsed() { echo "[$PART, $(($(date +%s) - started)) s] $*"; }
# record KEY JSON-FILE-OR-VALUE: merge one figure into this part's JSON, atomically
record() { $PY examples/benchmarks/gpu_figures.py "$OUT/gpu-check-$PART.json" "$1" "$2"; }
# limit SECONDS COMMAND...: run it under its share of the command's time
limit() { local s=$1; shift; timeout "$((s * SLOW))" "$@"; }

versions() {
  record versions "$($PY - <<'EOF'
import json, torch, transformers, peft, accelerate
print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                  "peft": peft.__version__, "accelerate": accelerate.__version__,
                  "gpus": torch.cuda.device_count(),
                  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))
EOF
)"
}

# tests (at most 170 s): the gpu-marked tests on CUDA (models and batches on the device:
# training with every encoder, projector and schedule, resume, evaluation in every mode,
# bf16 scoring against fp32, the second stage, the bert4rec plugin, FSDP2 and DeepSpeed
# ZeRO-3 interrupted and resumed through `train`); the tiny Llama's tokenizer from
# .gpu/tokenizer, DeepSpeed from the wheels in .gpu/wheels
part_tests() {
  $PY -m pip install --quiet --no-deps --no-build-isolation -e plugins/llara-kit-bert4rec
  [ -d .gpu/wheels ] && { $PY -m pip install --quiet --no-index --find-links .gpu/wheels deepspeed \
    || echo "DeepSpeed did not install: its test is skipped"; }
  local only=() device=cuda
  [ "$QUICK" = 1 ] && only=(-k "bf16_scoring or score_mode_metrics") device=cpu
  elapsed "pytest -m 'gpu and not slow' on $device (at most 170 s)"
  local t0=$(date +%s)
  LLARA_KIT_TEST_DEVICE=$device LLARA_KIT_TEST_TOKENIZER=$PWD/.gpu/tokenizer \
    limit 170 $PY -m pytest -q -p no:cacheprovider -m "gpu and not slow" "${only[@]}" \
    --junitxml "$OUT/pytest.xml" | tail -25
  record pytest "{\"exit\": ${PIPESTATUS[0]}, \"seconds\": $(($(date +%s) - t0))}"
  [ -f "$OUT/pytest.xml" ] && record pytest_tally "$($PY - "$OUT/pytest.xml" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
suite = next(ET.parse(sys.argv[1]).getroot().iter("testsuite"))
print(json.dumps({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}))
EOF
)"
}

# throughput (at most 100 s): SASRec pre-training on the GPU (which `train` then uses); LLaRA
# training throughput with random weights of SmolLM2-135M's shape (fp32 and bf16) and
# Llama-3.2-1B's (bf16)
part_throughput() {
  elapsed "pre-training SASRec on the GPU, default settings (at most 50 s)"
  local epochs=()
  [ "$QUICK" = 1 ] && epochs=(--epochs 1)
  limit 50 $PY -m llara_kit pretrain --encoder sasrec "${DATA[@]}" "${epochs[@]}" --json \
    > "$OUT/pretrain.json" && record pretrain "$OUT/pretrain.json" || echo "pre-training failed or timed out"
  local runs=("smollm2-135m 32 8 fp32,bf16" "llama-3.2-1b 16 6 bf16")
  [ "$QUICK" = 1 ] && runs=("smollm2-135m 2 1 fp32")
  local i=0 run shape batch steps precisions
  for run in "${runs[@]}"; do
    read -r shape batch steps precisions <<<"$run"
    elapsed "throughput: $shape, batch $batch, $precisions (at most 25 s)"
    limit 25 $PY examples/benchmarks/train_throughput.py --shape "$shape" --tokenizer .gpu/tokenizer \
      --batch-size "$batch" --steps "$steps" --precision "$precisions" --compile no "${DATA[@]}" \
      --json "$OUT/train-$i.json" && record "throughput_$i" "$OUT/train-$i.json" \
      || echo "throughput run failed or timed out: $run"
    i=$((i + 1))
  done
}

# train (at most 210 s): the real SmolLM2 (GGUF at $GGUF) trained on 4,096 ML-100K train
# samples (one epoch, batch 32) and evaluated on every test user; with several GPUs, the
# same under DDP
part_train() {
  [ -f "$GGUF" ] || { echo "no SmolLM2 GGUF at $GGUF: nothing to train"; return 1; }
  local samples=4096 batch=32 users=()
  [ "$QUICK" = 1 ] && samples=8 batch=2 users=(--limit 4)
  elapsed "LLaRA with the real SmolLM2 on $samples train samples (at most 150 s), evaluated (60 s)"
  limit 150 $PY -m llara_kit train --llm "$GGUF" "${DATA[@]}" --max-train-samples "$samples" \
    --epochs 1 --batch-size "$batch" --grad-accum 1 --out "$OUT/full" \
    && record train "$OUT/full/summary.json" \
    && limit 60 $PY -m llara_kit evaluate "$OUT/full" --batch-size 64 "${users[@]}" --json \
       > "$OUT/full-metrics.json" && record evaluate "$OUT/full-metrics.json" \
    || echo "the real-weights run failed or timed out"
  local gpus
  gpus=$($PY -c "import torch; print(torch.cuda.device_count())")
  if [ "$gpus" -gt 1 ]; then  # one GPU cannot host two NCCL ranks: DDP needs two
    elapsed "data parallel: $gpus processes (at most 100 s)"
    limit 100 $PY -m torch.distributed.run --nproc-per-node "$gpus" -m llara_kit train \
      --llm "$GGUF" "${DATA[@]}" --max-train-samples "$samples" --batch-size 64 --grad-accum 1 \
      --out "$OUT/ddp" && record ddp "$OUT/ddp/summary.json" \
      || echo "data-parallel run failed or timed out"
  fi
}

for PART in "$@"; do
  case "$PART" in tests | throughput | train) ;; *)
    echo "unknown part '$PART': name tests, throughput or train"; exit 2 ;;
  esac
done
PART=setup
$PY -m pip install --quiet --no-deps --no-build-isolation -e . || exit 1
for PART in "$@"; do
  versions
  "part_$PART"
  elapsed "done; figures in $OUT/gpu-check-$PART.json"
done
