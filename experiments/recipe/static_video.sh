#!/usr/bin/env bash
# The static -> video recipe for one family on the 2-core CPU (`cpu` variants), resumable (see stages.sh):
#   bash experiments/recipe/static_video.sh stcn /tmp/jaxvos-runs
set -euo pipefail
exec bash "$(dirname "$0")/stages.sh" "$1" "${2:-/tmp/jaxvos-runs}" static video
