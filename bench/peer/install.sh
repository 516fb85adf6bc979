#!/usr/bin/env bash
# Installs the benchmark's peer engine into bench/peer/node_modules from package-lock.json:
# node-llama-cpp 3.21.1 and its prebuilt CPU binary @node-llama-cpp/linux-x64 3.21.1 (llama.cpp inside),
# from the npm registry only. Nothing is downloaded or built outside npm:
#   --ignore-scripts          node-llama-cpp's postinstall (which may fetch llama.cpp sources or build) never runs
#   NODE_LLAMA_CPP_SKIP_DOWNLOAD=true   the same switch for anything that does run
#   --omit=optional           skips node-llama-cpp's optional CUDA / Vulkan / other-platform binaries; the
#                             CPU binary is a direct dependency of bench/peer/package.json, so it stays
# Usage: bench/peer/install.sh [--force]   (idempotent: does nothing when the pinned versions are present)
set -euo pipefail
cd "$(dirname "$0")"
want=3.21.1
installed() {
  node -e '
    const fs = require("fs");
    const v = (p) => JSON.parse(fs.readFileSync(p, "utf8")).version;
    const ok = v("node_modules/node-llama-cpp/package.json") === process.argv[1]
      && v("node_modules/@node-llama-cpp/linux-x64/package.json") === process.argv[1]
      && fs.existsSync("node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node");
    process.exit(ok ? 0 : 1);
  ' "$want" 2>/dev/null
}
if [[ "${1:-}" != "--force" ]] && installed; then
  echo "bench/peer: node-llama-cpp $want already installed"
  exit 0
fi
if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "bench/peer: the pinned prebuilt llama.cpp binary is for Linux x86_64 only" >&2
  exit 1
fi
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error
installed || { echo "bench/peer: install finished but node-llama-cpp $want / its linux-x64 binary is missing" >&2; exit 1; }
echo "bench/peer: installed node-llama-cpp $want (CPU binary @node-llama-cpp/linux-x64 $want)"
