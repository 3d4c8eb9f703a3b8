#!/usr/bin/env bash
# Installs everything Sprout needs on a fresh Debian machine with Node 20 and npm:
# the system BLAS for @sprout/backend-native (optional: Sprout falls back to the cpu backend),
# PyTorch and Fashion-MNIST for the reference tests (optional outside CI), the npm workspace,
# and the build of every package.
set -euo pipefail
cd "$(dirname "$0")/.."

# grep reads all of ldconfig's output (not -q): under pipefail, an early exit would SIGPIPE
# ldconfig and make the check fail at random.
have_blas() { ldconfig -p 2>/dev/null | grep 'libopenblas\.so' >/dev/null && [ -e /usr/include/x86_64-linux-gnu/cblas.h -o -e /usr/include/cblas.h -o -e /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ]; }
# The independent references some tests compare against: PyTorch (Debian's, under /usr/bin/python3)
# and the real Fashion-MNIST test set. Without them those tests are skipped; CI refuses to skip.
have_torch() { /usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1; }
have_fashion_mnist() { [ -d /usr/share/datasets/fashion-mnist ]; }

missing=()
have_blas || missing+=(libopenblas-dev)
have_torch || missing+=(python3-torch python3-numpy)
have_fashion_mnist || missing+=(dataset-fashion-mnist)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_="sudo"
  if command -v apt-get >/dev/null && { [ -z "$sudo_" ] || command -v sudo >/dev/null; }; then
    echo "setup: installing ${missing[*]} with ${sudo_:+sudo }apt-get"
    { $sudo_ apt-get update -qq && $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
      echo "setup: warning: apt-get could not install ${missing[*]}"
  else
    echo "setup: warning: apt-get unavailable; missing ${missing[*]} (without OpenBLAS Sprout uses the slower cpu backend; without PyTorch or Fashion-MNIST their reference tests are skipped)"
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
