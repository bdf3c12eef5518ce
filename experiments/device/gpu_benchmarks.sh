#!/bin/bash
# The GPU checks of issues 12 and 13 in one bounded script, for a session that is lent a GPU (`run` of the device
# tool, from the repository root):
#
#   bash experiments/device/gpu_benchmarks.sh          # on the GPU: at most $BUDGET s (420), everything under $OUT
#   QUICK=1 WHEELS= PYTHON=.venv/bin/python bash experiments/device/gpu_benchmarks.sh  # on the CPU first: tiny sizes
#
# 1. preflight: the packages' versions, the devices, a gam-tiny built and initialised;
# 2. issue 13: the sparse executor against the dense convolution at fixed active fractions, at 480p (ResNet
#    layer1), for three tile sizes (the executor's tile tuned for the GPU);
# 3. issue 12: GAM's Figure 1 by resolution in bfloat16 (480p, 1080p, 2K; per-frame latency and device peak
#    memory, gam beside stcn and swiftnet), then 4K for gam and stcn;
# 4. as time allows, training throughput of full-size STCN (384x384 crops of generated videos, batch 16, remat,
#    bfloat16), the paper-scale recipe's step.
# Everything printed goes to $OUT/log.txt; the figures' JSON and PNG beside it (the device tool brings back at
# most 8 files). The device image has JAX with CUDA, Flax, optax and orbax but not every package jaxvos imports:
# wheels in .whl/ (carried; ../.library/device/README.md says how to download them) are installed first, and if
# the image's Flax / optax / orbax fail the preflight, those of requirements.txt from .whl/fallback/ are tried.
set -uo pipefail
out=${OUT:-/tmp/gpu-benchmarks}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
budget=${BUDGET:-420}
wheels=${WHEELS-.whl}  # WHEELS= (empty) installs none: the CPU run in the project's own environment
if [ "${QUICK:-0}" = 1 ]; then
  sizes=96x160; big=128x224; frames=4; dtype=float32; shape=1,16,32,16; repeats=2; tiles="8,24 4,8"
  train=(--config.data.batch_size=2)
else
  sizes=480p,1080p,2K; big=4K; frames=30; dtype=bfloat16; shape=1,120,216,64; repeats=20; tiles="8,24 16,32 32,64"
  train=(--config.model=stcn --config.data.batch_size=16 '--config.data.crop_hw=(384,384)'
         '--config.data.synthetic_hw=(384,512)' --config.data.synthetic_videos=16 --config.data.threads=8
         --config.train.remat=True --config.train.compute_dtype=bfloat16)
fi

step() {  # step NAME SECONDS COMMAND...: COMMAND within SECONDS and within what is left of the budget
  local name=$1 limit=$2 left=$((budget - SECONDS))
  shift 2
  if ((left < 20)); then echo "== $name: skipped, the budget is spent"; return 1; fi
  ((limit > left)) && limit=$left
  echo "== $name (at most $limit s; $SECONDS s so far)"
  timeout "$limit" "$@"
  local status=$?
  echo "== $name: exit $status ($SECONDS s so far)"
  return $status
}

install() {  # install DIR: its wheels into /tmp/site-DIR, first on the path
  local target=/tmp/site-${1//\//-}
  $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$target" "$1"/*.whl \
    && export PYTHONPATH=$target${PYTHONPATH:+:$PYTHONPATH}
}

read -r -d '' preflight <<'EOF'
import importlib
import jax
for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "numpy", "grain", "ml_collections", "av"):
  print(f"{name:18} {getattr(importlib.import_module(name), '__version__', '?')}")
print("devices:", jax.devices())
from jaxvos.models import registry
family = registry.build("gam-tiny")
variables = family.init(jax.random.key(0), (64, 64))
print("gam-tiny initialised:", sum(x.size for x in jax.tree.leaves(variables)), "numbers")
EOF

nvidia-smi -L 2>/dev/null
ls "$wheels"/*.whl >/dev/null 2>&1 && install "$wheels"
if ! step preflight 120 $python -c "$preflight" && ls "$wheels"/fallback/*.whl >/dev/null 2>&1; then
  install "$wheels"/fallback && step preflight-fallback 120 $python -c "$preflight"
fi

for tile in $tiles; do
  step "sparse-tile-$tile" 60 $python -m jaxvos bench sparse --shape $shape --tile "$tile" --repeats $repeats \
      --masks random,blob
done

step memory-resolution 300 $python -m jaxvos bench memory --models gam,stcn,swiftnet --sizes $sizes --lengths '' \
    --frames $frames --timeout 90 --dtype $dtype --out "$out/figure1-resolution.json" \
    --plot "$out/figure1-resolution.png"
step memory-4k 150 $python -m jaxvos bench memory --models gam,stcn --sizes $big --lengths '' --frames 10 \
    --timeout 70 --dtype $dtype --out "$out/figure1-4k.json" --plot ''
step train-throughput 120 $python -m jaxvos bench train --config experiments/stcn/smoke.py --steps 20 "${train[@]}"
echo "== done in $SECONDS s"
