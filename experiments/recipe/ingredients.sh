#!/usr/bin/env bash
# The recipe table's ingredient rows (experiments/recipe/README.md): the default model's recipe (STCN, pseudo-video
# then video, `cpu` variants) with one pseudo-video ingredient changed, each row resumable: rerun the same command
# and a stage continues from its last checkpoint; a finished stage is not rerun, a benched row not rebenched.
#   bash experiments/recipe/ingredients.sh /tmp/jaxvos-runs late no-distractors one-object no-motion
# Rows: late (annotated late entries), no-distractors, one-object, no-motion. Each row's stages go to
# RUNS/stcn-pseudo<row>-cpu and RUNS/stcn-pseudo<row>-video-cpu (`late`: stcn-pseudolate-..., session 21's names);
# the finished row is benched at the working size on val and held-out sequences into
# experiments/stcn/davis-pseudo<row>-{val,heldout}-160-cpu.json (about 2 hours a row on the idle 2-core CPU).
set -euo pipefail
runs=$1; shift
python=${PYTHON:-python}
davis=${DAVIS:-../shared/data/davis2016-240p}
for row in "$@"; do
  case $row in
    late) flags=(--config.data.pseudo_video.late_entry_probability=0.3
                 --config.data.pseudo_video.annotate_late_entries=True); name=late ;;
    no-distractors) flags=(--config.data.pseudo_video.max_distractors=0); name=-nodistractors ;;
    one-object) flags=(--config.data.max_objects=1); name=-oneobject ;;
    no-motion) flags=(--config.data.pseudo_video.max_speed=0.0 --config.data.pseudo_video.max_spin=0.0
                      --config.data.pseudo_video.max_zoom=0.0 --config.data.pseudo_video.max_acceleration=0.0);
               name=-nomotion ;;
    *) echo "ingredients.sh: unknown row '$row' (late, no-distractors, one-object, no-motion)" >&2; exit 2 ;;
  esac
  pseudo=$runs/stcn-pseudo$name-cpu; video=$runs/stcn-pseudo$name-video-cpu
  [[ -d $pseudo/export/final ]] || $python -m jaxvos train --config experiments/stcn/pseudo.py --workdir "$pseudo" \
      "${flags[@]}"
  [[ -d $video/export/final ]] || $python -m jaxvos train --config experiments/stcn/video.py --workdir "$video" \
      --config.train.init_from="$pseudo/export/final"
  for split in "val blackswan,bmx-trees" "heldout dog-agility,motorbike,soccerball"; do
    read -r part sequences <<< "$split"
    out=experiments/stcn/davis-pseudo$name-$part-160-cpu.json
    [[ -f $out ]] || $python -m jaxvos bench davis --checkpoints "$video/export/final,default" --davis-root "$davis" \
        --sequences "$sequences" --size 160 --out "$out"
  done
done
