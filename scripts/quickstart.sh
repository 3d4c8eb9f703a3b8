#!/usr/bin/env bash
# The README's main command: install everything, then run the smoke comparison: scratch and
# every installed growth method on a tiny GPT on Moby Dick, with report.md and plots.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
sprout() { node packages/cli/dist/bin.js "$@"; }
sprout bench compare --suite smoke --out runs/quickstart --resume
echo "report: runs/quickstart/report.md (plots: runs/quickstart/*.svg and *.png)"
