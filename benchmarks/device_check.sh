#!/usr/bin/env bash
# GPU check, run from the repository root on a CUDA machine that has PyTorch but no network:
# installs the carried wheels, runs the bench on the GPU (with bfloat16 autocast), a short training,
# a one-GPU DDP start and an evaluation with sampling on the GPU. About 3-5 minutes on one H100.
#
# Beforehand, where pip reaches PyPI (wheels for the GPU machine's Python, 3.12 here):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d wheels \
#     pyro-ppl==1.9.2 pyro-api==0.1.2 opt_einsum==3.4.0 SimpleITK==2.5.7
# then carry wheels/ along. Results go to $OUT (default: runs/device_check).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-wheels}
OUT=${OUT:-runs/device_check}
SITE=${SITE:-/tmp/proseg-site}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

step() { echo "== $(date +%T) $*"; }

step "install: carried wheels, then this checkout (no network, no dependencies resolved)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$SITE" .
export PYTHONPATH="$SITE"
proseg() { python3 -c 'from proseg_pyro.cli.main import main; main()' "$@"; }
python3 - <<'EOF'
import torch, pyro
assert torch.cuda.is_available(), "no CUDA device"
print("torch", torch.__version__, "pyro", pyro.__version__, torch.cuda.get_device_name(0))
EOF

step "bench at paper size on the GPU"
proseg bench --device cuda --repeats 5 --amp --json "$OUT/bench_cuda.json" 2>&1 | tee "$OUT/bench_cuda.txt"

step "training on the GPU (built-in set, 3 epochs at 128 x 128)"
proseg train --device cuda --epochs 3 --image-size 128 --out "$OUT/run" 2>&1 | tee "$OUT/train.txt"

step "data-parallel training on the GPU (DDP over one NCCL rank)"
proseg train --device cuda --ddp --nproc 1 --epochs 1 --image-size 64 --out "$OUT/run_ddp" 2>&1 | tee "$OUT/train_ddp.txt"

step "evaluation with sampling on the GPU"
proseg evaluate "$OUT/run/best.pt" --device cuda --samples 16 --json "$OUT/evaluate.json" 2>&1 | tee "$OUT/evaluate.txt"

step "done"
