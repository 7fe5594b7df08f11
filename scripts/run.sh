#!/usr/bin/env bash
# The main job: the galaxymorph web app with the built-in default model (no data to fetch).
# Pass other galaxymorph arguments to run something else, e.g. `scripts/run.sh data info ../shared/data/gz1`.
set -euo pipefail
cd "$(dirname "$0")/.."
GALAXYMORPH_BROWSER=0 bash scripts/setup.sh
if [ $# -eq 0 ]; then set -- app; fi
exec .venv/bin/galaxymorph "$@"
