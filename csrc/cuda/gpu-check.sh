#!/usr/bin/env bash
# gpu-check.sh — the one command a GPU machine WITHOUT Node runs to check the CUDA plugin:
#   bash csrc/cuda/gpu-check.sh [out-dir]
# Configures a plain CMake build of the engine + plugin for the GPUs present (nvidia-smi's
# compute capability, e.g. 90-real on H100/H200; DIFFUSIONVL_CUDA_ARCHS overrides), builds
# dvl_cuda_selftest, runs it (loader, copies, add, then every op vs the CPU op and float64
# references: one JSON line per case, the summary last) and its kernel micro-bench (--bench).
# Writes <out-dir>/selftest.jsonl, bench.json, build.log (out-dir: $OUT, else bench/out/gpu-check).
# With Node, `npm run test:gpu` does all of this plus the vitest suites in test/gpu.
# Exit: the self-test's (0 passed, 1 a check failed, 2 CUDA unavailable), or 3 if the build failed.
set -u
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-${OUT:-$root/bench/out/gpu-check}}"
build="${DIFFUSIONVL_GPU_BUILD_DIR:-$root/build-gpu-check}"
mkdir -p "$out"
archs="${DIFFUSIONVL_CUDA_ARCHS:-}"
if [ -z "$archs" ] && command -v nvidia-smi >/dev/null 2>&1; then
  archs="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' .' | sort -u | sed 's/$/-real/' | paste -sd';')"
fi
archs="${archs:-90-real}"
PATH="/usr/local/cuda/bin:$PATH"
echo "gpu-check: archs $archs, build $build, out $out" >&2
{
  cmake -S "$root" -B "$build" -DDIFFUSIONVL_CUDA=ON -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=$archs" &&
    cmake --build "$build" --target dvl_cuda_selftest -j "$(nproc)"
} >"$out/build.log" 2>&1 || { echo "gpu-check: build failed, see $out/build.log" >&2; tail -20 "$out/build.log" >&2; exit 3; }
exe="$build/csrc/cuda/dvl_cuda_selftest"
"$exe" >"$out/selftest.jsonl"
rc=$?
failed="$(grep -c '"ok":false' "$out/selftest.jsonl")"
echo "gpu-check: selftest exit $rc, $(wc -l <"$out/selftest.jsonl") lines, $failed with \"ok\":false" >&2
grep '"ok":false' "$out/selftest.jsonl" | head -20 >&2
tail -1 "$out/selftest.jsonl" | cut -c1-600 >&2
if [ "$rc" -ne 2 ]; then
  "$exe" --bench >"$out/bench.json"
  echo "gpu-check: bench exit $?: $(cut -c1-1500 "$out/bench.json")" >&2
fi
exit "$rc"
