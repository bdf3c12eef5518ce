#!/usr/bin/env bash
# GAM's ablations on the video-only recipe of the claims' table (issue 12), each a run of its own beside
# RUNS/gam-davis3-cpu (the main run: gam-tiny, 3-frame clips, 4000 steps; held-out validation at 96 every 500
# steps), resumable: rerun the same command and each run continues from its last checkpoint; a finished run is
# not rerun. In order: without MEM, without CAM (the paper: -3.6 and -1.6 J&F), then the context normalisations
# other than the default `efficient`: raw products, raw divided by the positions, softmax of both keys over
# channels (LiVOS).
#   bash experiments/gam/ablations.sh /tmp/jaxvos-runs
# Their validation beside the main run's, a curve each:
#   python experiments/compare_runs.py --out experiments/gam/ablations-cpu.png main=RUNS/gam-davis3-cpu \
#       no-MEM=RUNS/gam-no-mem-cpu no-CAM=RUNS/gam-no-cam-cpu raw=RUNS/gam-norm-raw-cpu ...
set -euo pipefail
runs=${1:-/tmp/jaxvos-runs}
python=${PYTHON:-python}
clips=(--config.data.num_frames=3 '--config.data.gaps=(3,5,8,10,3)')
run() {  # run NAME OVERRIDE
  [[ -d $runs/gam-$1-cpu/export/final ]] || $python -m jaxvos train --config experiments/gam/video.py \
      --workdir "$runs/gam-$1-cpu" "${clips[@]}" "--config.model_overrides.$2"
}
run no-mem use_mem=False
run no-cam use_cam=False
for normalization in raw mean livos; do
  run "norm-$normalization" memory.normalization=$normalization
done
