#!/usr/bin/env bash
# The README's main command: install everything, then grow a small GPT losslessly with LEMON
# and print the growth report (replaced by the benchmark's smoke comparison once it lands).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
sprout() { node packages/cli/dist/bin.js "$@"; }
sprout init --spec examples/specs/gpt-2x128.json --out runs/quickstart/source --seed 1 --force
sprout grow --method lemon --from runs/quickstart/source --target examples/specs/gpt-4x256.json \
  --out runs/quickstart/grown --verify --force
