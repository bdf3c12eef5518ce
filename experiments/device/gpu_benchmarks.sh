#!/bin/bash
# The GPU checks still open (issues 12, 13, 15) in one bounded script, for a session that is lent a GPU (`run` of
# the device tool, from the repository root, with `carry: [".whl"]`):
#
#   bash experiments/device/gpu_benchmarks.sh          # on the GPU: at most $BUDGET s (480), everything under $OUT
#   QUICK=1 WHEELS= PYTHON=.venv/bin/python bash experiments/device/gpu_benchmarks.sh  # on the CPU first: tiny sizes
#
# Session 17 ran the first version on an H200 (experiments/README.md, "Session 17"). In order, most open first:
# 1. preflight: the packages' versions, the devices, a gam-tiny built and initialised;
# 2. issue 12: GAM at 2K after the id mapping moved onto the device: one frame's stages (frame_stages.py), a
#    64-frame video through segment_video's pipelined chunks (a file's throughput) and the end-to-end frames per
#    second of live streaming (bench memory, 60 frames; goal 60 FPS), STCN beside it;
# 3. issue 13: the sparse executor where a GPU might pay: 256-channel layers and 4K layer1, the largest tiles;
#    then full-size SpVOS's whole step against STCN's at 480p (float32, untrained gates thresholded to a fraction
#    of the MACs: experiments/stage_times.py, session 20);
# 4. issue 15: training throughput of full-size STCN (384x384 crops of generated videos, batch 16, remat,
#    bfloat16), the paper-scale recipe's step (its compilation took over 115 s in session 17);
# 5. as time allows, GAM's Figure 1 by resolution again (480p, 1080p; session 17 has every size).
# Everything printed goes to $OUT/log.txt; the figures' JSON beside it (the device tool brings back at most 8
# files). The device image has JAX with CUDA, Flax, optax and orbax but not every package jaxvos imports:
# wheels in .whl/ (carried; ../.library/device/README.md says how to download them: grain, array-record,
# portpicker, ml-collections, av, tensorboardX for Python 3.12) are installed first, and if the image's Flax /
# optax / orbax fail the preflight, those of requirements.txt from .whl/fallback/ are tried.
set -uo pipefail
out=${OUT:-/tmp/gpu-benchmarks}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
budget=${BUDGET:-480}
wheels=${WHEELS-.whl}  # WHEELS= (empty) installs none: the CPU run in the project's own environment
if [ "${QUICK:-0}" = 1 ]; then
  large=96x160; large_hw=96x160; sizes=64x96; frames=4; dtype=float32; repeats=2; video=12
  sparse=("1,16,32,16 16" "1,32,64,16 16"); tile=8,24; spvos=(spvos-tiny,stcn-tiny 64)
  train=(--config.data.batch_size=2)
else
  large=2K; large_hw=1088x2048; sizes=480p,1080p; frames=60; dtype=bfloat16; repeats=20; video=64
  sparse=("1,120,216,256 256" "1,540,960,64 64" "8,120,216,64 64"); tile=32,64; spvos=(spvos,stcn 480)
  train=(--config.model=stcn --config.data.batch_size=16 '--config.data.crop_hw=(384,384)'
         '--config.data.synthetic_hw=(384,512)' --config.data.synthetic_videos=16 --config.data.threads=8
         --config.data.prefetch=16 --config.train.remat=True --config.train.compute_dtype=bfloat16)
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

step frame-stages 200 $python experiments/device/frame_stages.py --models gam,stcn --sizes $large_hw \
    --dtype $dtype --frames $repeats --video-frames $video
step memory-large 150 $python -m jaxvos bench memory --models gam,stcn --sizes $large --lengths '' \
    --frames $frames --timeout 70 --dtype $dtype --out "$out/figure1-large.json" --plot ''
for shape_features in "${sparse[@]}"; do
  read -r shape features <<<"$shape_features"
  step "sparse-$shape" 45 $python -m jaxvos bench sparse --shape "$shape" --features "$features" --tile $tile \
      --repeats $repeats --masks random,blob
done
step spvos-whole-step 120 $python experiments/stage_times.py --model "${spvos[0]}" --size "${spvos[1]}" \
    --stages "whole step" --repeats $repeats --variants force=compute,compute_threshold=0.788,compute_threshold=0.79
step train-throughput 240 $python -m jaxvos bench train --config experiments/stcn/smoke.py --steps 20 "${train[@]}"
step memory-resolution 200 $python -m jaxvos bench memory --models gam,stcn,swiftnet --sizes $sizes --lengths '' \
    --frames 30 --timeout 70 --dtype $dtype --out "$out/figure1-resolution.json" --plot ''
echo "== done in $SECONDS s"
