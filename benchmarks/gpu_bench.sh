#!/usr/bin/env bash
# GPU figures for issue 6: (a) released algorithm, (b) pipeline, (c) model, in fp32/bf16/fp16;
# and window reuse on vs off (issue 19: model and pipeline frames/s, ratio, parity).
#
# Needs: torch with CUDA (already on the machine), the repo, and two wheels in .whl/
# (nothing else is fetched; Ray is never imported). Once, where pip can reach PyPI:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2010_x86_64 \
#       -d .whl decord==0.6.0 av==18.1.0          # about 50 MB, .whl/ is git-ignored
#
# Then, from the repo root on the GPU machine (writes $OUT/gpu_bench.json, or ./gpu_bench.json):
#
#   bash benchmarks/gpu_bench.sh [extra gpu_bench.py options, e.g. --compile --frames 300]
#
# The decode feed (d) runs first (about 2-3 min; --feed only: nothing else, --feed off: skip it).
# GPU decoding in (d) needs a torchcodec wheel built for the machine's torch in .whl/ too
# (optional; without it (d) says "GPU decoding skipped" and measures the CPU decoders).
set -euo pipefail
cd "$(dirname "$0")/.."
ls .whl/decord-*.whl .whl/av-*.whl > /dev/null || { echo "put the decord and av wheels in .whl/ (see above)"; exit 2; }
if ls .whl/torchcodec-*.whl > /dev/null 2>&1 && ! command -v ffmpeg > /dev/null; then
    echo "torchcodec needs FFmpeg's libraries: apt-get install -y ffmpeg (GPU decoding will be skipped)"
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-bench-site .whl/*.whl
export PYTHONPATH="/tmp/gpu-bench-site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TASED_BATCH_CACHE="${TASED_BATCH_CACHE:-/tmp/tased-batch-cache}"
python3 - <<'EOF'
import importlib
for name in ("torch", "decord", "av", "cv2", "scipy", "pyarrow", "fsspec", "PIL", "psutil"):
    importlib.import_module(name)  # fail here, in one line, rather than half-way through
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 540 python3 benchmarks/gpu_bench.py --out "${OUT:-.}/gpu_bench.json" "$@"
