#!/usr/bin/env bash
# Installs everything Sprout needs on a fresh Debian machine with Node 20 and npm:
# the system BLAS for @sprout/backend-native (optional: Sprout falls back to the cpu backend),
# the npm workspace, and the build of every package.
set -euo pipefail
cd "$(dirname "$0")/.."

# grep reads all of ldconfig's output (not -q): under pipefail, an early exit would SIGPIPE
# ldconfig and make the check fail at random.
have_blas() { ldconfig -p 2>/dev/null | grep 'libopenblas\.so' >/dev/null && [ -e /usr/include/x86_64-linux-gnu/cblas.h -o -e /usr/include/cblas.h -o -e /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ]; }
if ! have_blas; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing OpenBLAS (libopenblas-dev) with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev >/dev/null
  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then
    echo "setup: installing OpenBLAS (libopenblas-dev) with sudo apt-get"
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev >/dev/null
  else
    echo "setup: warning: OpenBLAS not found and apt-get unavailable; Sprout will use the slower cpu backend"
  fi
fi

# `npm install` rather than `npm ci`: npm 11 writes lock files without other platforms' optional
# binaries (biome, rollup) and then `npm ci` rejects its own lock file as out of sync.
# The native addon is built below, once, rather than by @sprout/backend-native's install step.
SPROUT_SKIP_ADDON_BUILD=1 npm install --no-audit --no-fund
NX_DAEMON=false npx nx run-many -t build --output-style=static

# The native backend's Node-API addon (OpenBLAS matrix products), with the same script a user's
# `npm install` runs: this Node's own headers, never a download. Optional: without it Sprout runs
# on the cpu backend and says how to get the fast path (`npx sprout doctor`).
if node packages/backend-native/scripts/build-addon.cjs build >/tmp/sprout-addon-build.log 2>&1; then
  echo "setup: built @sprout/backend-native (OpenBLAS)"
else
  echo "setup: warning: $(tail -1 /tmp/sprout-addon-build.log) (log: /tmp/sprout-addon-build.log); Sprout will use the slower cpu backend"
fi
