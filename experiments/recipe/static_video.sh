#!/usr/bin/env bash
# The static -> video recipe for one family on the 2-core CPU (`cpu` variants), resumable: rerun the same
# command and each stage continues from its last checkpoint; a finished stage is not rerun.
#   bash experiments/recipe/static_video.sh stcn /tmp/jaxvos-runs
set -euo pipefail
family=$1; runs=${2:-/tmp/jaxvos-runs}
python=${PYTHON:-python}
static=$runs/$family-static-cpu; video=$runs/$family-static-video-cpu
[[ -d $static/export/final ]] || $python -m jaxvos train --config experiments/$family/static.py --workdir "$static"
[[ -d $video/export/final ]] || $python -m jaxvos train --config experiments/$family/video.py --workdir "$video" \
    --config.train.init_from="$static/export/final"
