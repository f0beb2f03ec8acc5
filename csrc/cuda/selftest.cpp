// selftest.cpp — dvl_cuda_selftest: the CUDA path checked from C++, with no Node.js.
//
// GPU machines lent to this project carry nvcc, CMake and a C++ compiler but not Node, so
// this program is the check that runs there without the npm toolchain:
//   cmake -S . -B build-gpu -DDIFFUSIONVL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90-real
//   cmake --build build-gpu --target dvl_cuda_selftest && build-gpu/csrc/cuda/dvl_cuda_selftest
// It goes through the engine's own loader (csrc/cuda/host/cuda_loader.cpp: driver, plugin, API
// version, devices, arch), then device memory, copies and the plugin's `add` compared with
// the CPU op and a plain reference, an unsupported op, an allocator round trip of twice the
// card's memory, and the achieved bandwidth of a large add; then EVERY op of the plugin
// (selftest_ops.inc, and the shared case table test/gpu/op-cases.json through
// selftest_cases.inc) against the CPU op on random inputs of odd sizes, every dtype, NaN first,
// and the float64 scalar references for matmul (both kernel paths: tensor cores and, with
// DIFFUSIONVL_CUDA_MATMUL=simt, CUDA cores), attention, softmax, rms_norm and greedy
// confidence_remask.
// Output: one JSON line per op check ({"op":..,"case":..,"ok":..,"maxErr":..,"detail":..}),
// then one JSON object (the summary) as the LAST line. Exit: 0 all passed, 1 a check failed,
// 2 CUDA unavailable (the reason is in the JSON; CPU-only machines and CI get 2 with
// "no-driver").
// Arguments: [plugin file] [--bench] [--host]. The plugin defaults to the one this build made;
// --bench skips the checks and prints one JSON object {"probe", "bench"} with the kernel
// micro-bench of selftest_bench.inc (bench/gpu.ts runs it); --host runs only the checks that
// need no GPU (the tensor-core fragment-layout emulation) and exits 0 / 1 without probing CUDA.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "host/cuda_loader.h"
#include "../core/thread_pool.h"
#include "../cpu/kernels.h"
#include "../cpu/ops/ops.h"
#include "mma_tf32.cuh"

using namespace dvl;

namespace {

std::string json_str(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\', r += c;
    else if (c == '\n') r += "\\n";
    else if (uint8_t(c) < 0x20) r += ' ';
    else r += c;
  }
  return r + "\"";
}

struct Check {
  std::string name;
  bool ok;
  std::string detail;
};
std::vector<Check> g_checks;
void check(const std::string& name, bool ok, const std::string& detail = "") { g_checks.push_back({name, ok, detail}); }

// Deterministic values in [-4, 4) (xorshift), with NaN / ±inf / -0 planted when n > 4.
void fill(float* x, int64_t n, uint64_t seed) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int64_t i = 0; i < n; ++i) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x[i] = float(int64_t(s >> 40) - (int64_t(1) << 23)) / float(1 << 21);
  }
}

// f32 add is one correctly rounded operation everywhere: exact equality, NaN matching NaN.
std::string compare_exact(const float* got, const float* ref, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    bool same = std::isnan(ref[i]) ? std::isnan(got[i]) : got[i] == ref[i];
    if (!same) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "element %lld: got %.9g, expected %.9g", (long long)i, got[i], ref[i]);
      return buf;
    }
  }
  return "";
}

void check_add(const std::vector<int64_t>& sa, const std::vector<int64_t>& sb, ThreadPool& pool) {
  std::string name = "add " + shape_str(sa) + " + " + shape_str(sb);
  try {
    TensorP a = Tensor::alloc(DType::F32, sa), b = Tensor::alloc(DType::F32, sb);
    int64_t na = a->numel(), nb = b->numel();
    fill(a->data<float>(), na, uint64_t(na));
    fill(b->data<float>(), nb, uint64_t(nb) + 7);
    if (na > 4) {
      a->data<float>()[1] = NAN;
      a->data<float>()[2] = INFINITY;
      b->data<float>()[2 % nb] = -INFINITY;  // inf + -inf = NaN
      b->data<float>()[3 % nb] = -0.0f;
    }
    // CPU op (plan validates and sizes the output, as on the JS path).
    const OpDef* def = op_find("add");
    const OpAttrs attrs = def->parse({a, b}, Attrs{});
    Tensors cpu_out = def->plan({a, b}, attrs);
    OpContext ctx{pool, cpu_kernels()};
    def->run(ctx, {a, b}, cpu_out, attrs);
    // GPU: upload, run, download.
    TensorP da = cuda_upload(*a), db = cuda_upload(*b);
    TensorP dy = cuda_tensor(DType::F32, sa);
    cuda_run(OpId::Add, {da, db}, {dy}, attrs);
    TensorP y = Tensor::alloc(DType::F32, sa);
    cuda_download(*dy, *y);
    std::vector<float> ref(static_cast<size_t>(na));
    for (int64_t i = 0; i < na; ++i) ref[size_t(i)] = a->data<float>()[i] + b->data<float>()[nb == na ? i : i % nb];
    std::string e = compare_exact(y->data<float>(), ref.data(), na);
    if (e.empty()) e = compare_exact(cpu_out[0]->data<float>(), y->data<float>(), na);
    check(name, e.empty(), e);
  } catch (const Error& e) {
    check(name, false, e.code() + ": " + e.what());
  } catch (const std::exception& e) {
    check(name, false, e.what());
  }
}

}  // namespace

#include "selftest_ops.inc"
#include "selftest_cases.inc"
#include "selftest_bench.inc"

int main(int argc, char** argv) {
  CudaProbeOptions o;
  o.plugin_override_set = true;
  o.plugin_override = DVL_SELFTEST_PLUGIN;
  bool bench = false, host = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--bench") == 0) bench = true;
    else if (std::strcmp(argv[i], "--host") == 0) host = true;
    else o.plugin_override = argv[i];
  }
  if (host) {  // the checks that need no GPU (selftest_ops.inc run_host_checks), then a summary line
    const int failed = run_host_checks();
    std::printf("{\"host\":true,\"opChecks\":{\"total\":%d,\"failed\":%d},\"ok\":%s}\n", g_op_total, failed, failed ? "false" : "true");
    return failed ? 1 : 0;
  }
  CudaProbe p = cuda_probe(o);
  std::string out = "{\"probe\":{\"available\":" + std::string(p.available ? "true" : "false");
  if (!p.available) out += ",\"reason\":" + json_str(p.reason) + ",\"detail\":" + json_str(p.detail);
  out += ",\"plugin\":" + json_str(p.plugin_path) + ",\"driverVersion\":" + std::to_string(p.driver_version) +
         ",\"runtimeVersion\":" + std::to_string(p.runtime_version) + ",\"archs\":" + json_str(p.archs);
  if (p.has_props)
    out += ",\"device\":{\"name\":" + json_str(p.props.name) + ",\"computeCapability\":\"" +
           std::to_string(p.props.cc_major) + "." + std::to_string(p.props.cc_minor) +
           "\",\"memoryBytes\":" + std::to_string(p.props.memory_bytes) +
           ",\"multiprocessors\":" + std::to_string(p.props.multiprocessors) + "}";
  out += "}";
  if (!p.available) {
    std::printf("%s,\"ok\":false,\"skipped\":true}\n", out.c_str());
    return 2;
  }

  if (bench) {
    try {
      std::printf("%s,\"bench\":%s,\"ok\":true}\n", out.c_str(), run_bench(p).c_str());
      return 0;
    } catch (const Error& e) {
      std::printf("%s,\"ok\":false,\"error\":%s}\n", out.c_str(), json_str(e.code() + ": " + e.what()).c_str());
      return 1;
    }
  }

  if (p.has_props) g_cc_major = p.props.cc_major;  // which matmul path runs (selftest_ops.inc)
  ThreadPool pool(2);
  check_add({1}, {1}, pool);
  check_add({3}, {3}, pool);
  check_add({7, 33}, {7, 33}, pool);
  check_add({127, 33}, {33}, pool);
  check_add({3, 5, 7}, {7}, pool);
  check_add({0, 4}, {4}, pool);
  check_add({1, (int64_t(1) << 24) + 5}, {(int64_t(1) << 24) + 5}, pool);  // > one grid-stride pass

  try {
    TensorP d = cuda_tensor(DType::F32, {4});
    cuda_run(OpId::StreamRead, {d}, {d}, OpAttrs{});
    check("unsupported op is refused", false, "stream_read ran");
  } catch (const Error& e) {
    check("unsupported op is refused", e.code() == DVL_ERR_BACKEND, e.code() + ": " + e.what());
  }

  // Allocator round trip: twice the card's memory in 256 MiB pieces; a leak runs out.
  try {
    const size_t piece = size_t(256) << 20;
    size_t rounds = size_t(2 * p.props.memory_bytes / piece) + 1;
    for (size_t i = 0; i < rounds; ++i) make_device_storage(piece);
    check("alloc/free 2x device memory", true, std::to_string(rounds) + " x 256 MiB");
  } catch (const Error& e) {
    check("alloc/free 2x device memory", false, e.code() + ": " + e.what());
  }

  // Achieved bandwidth of add on 64 Mi floats (reads a, b, writes y: 768 MiB per call).
  double gbs = 0;
  try {
    const int64_t n = int64_t(64) << 20;
    TensorP a = cuda_tensor(DType::F32, {n}), b = cuda_tensor(DType::F32, {n}), y = cuda_tensor(DType::F32, {n});
    for (int i = 0; i < 3; ++i) cuda_run(OpId::Add, {a, b}, {y}, OpAttrs{});  // warm-up
    cuda_synchronize();
    const int reps = 20;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) cuda_run(OpId::Add, {a, b}, {y}, OpAttrs{});
    cuda_synchronize();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    gbs = 3.0 * 4.0 * double(n) * reps / s / 1e9;
    check("add bandwidth", true, std::to_string(gbs) + " GB/s");
  } catch (const Error& e) {
    check("add bandwidth", false, e.code() + ": " + e.what());
  }

  // Every op against the CPU op and the scalar references (one JSON line each), after the
  // host-only checks.
  run_host_checks();
  int op_fail = run_op_checks(pool);
  check("op checks", op_fail == 0, std::to_string(g_op_total) + " cases, " + std::to_string(op_fail) + " failed");
  out += ",\"opChecks\":{\"total\":" + std::to_string(g_op_total) + ",\"failed\":" + std::to_string(op_fail) + "}";

  bool all = true;
  out += ",\"checks\":[";
  for (size_t i = 0; i < g_checks.size(); ++i) {
    all = all && g_checks[i].ok;
    out += std::string(i ? "," : "") + "{\"name\":" + json_str(g_checks[i].name) +
           ",\"ok\":" + (g_checks[i].ok ? "true" : "false") + ",\"detail\":" + json_str(g_checks[i].detail) + "}";
  }
  out += "],\"addGBps\":" + std::to_string(gbs) + ",\"ok\":" + (all ? "true" : "false") + "}";
  std::printf("%s\n", out.c_str());
  return all ? 0 : 1;
}
