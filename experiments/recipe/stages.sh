#!/usr/bin/env bash
# A chain of training stages for one family on the 2-core CPU (`cpu` variants), each stage started from the
# previous one's final checkpoint, resumable: rerun the same command and each stage continues from its last
# checkpoint; a finished stage is not rerun. Stage names are config files, experiments/<family>/<stage>.py;
# a stage's workdir is RUNS/<family>-<stage>-...-<stage>-cpu, the stages so far (stcn-pseudo-cpu, then
# stcn-pseudo-video-cpu).
#   bash experiments/recipe/stages.sh stcn /tmp/jaxvos-runs pseudo video    (the default model's recipe)
#   bash experiments/recipe/stages.sh stcn /tmp/jaxvos-runs static video
set -euo pipefail
family=$1; runs=$2; shift 2
python=${PYTHON:-python}
name=$family; previous=""
for stage in "$@"; do
  name=$name-$stage; workdir=$runs/$name-cpu
  init=(); [[ -z $previous ]] || init=(--config.train.init_from="$previous/export/final")
  [[ -d $workdir/export/final ]] || $python -m jaxvos train --config "experiments/$family/$stage.py" \
      --workdir "$workdir" "${init[@]}"
  previous=$workdir
done
