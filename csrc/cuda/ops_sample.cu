// ops_sample.cu — confidence_remask on the GPU: one denoising iteration's sampling and
// remasking decision (docs §5.7–5.8). The contract is csrc/cpu/ops/sample.cpp, which follows
// lib/decode/sample.ts, remask.ts and rng.ts bit for bit; this file follows the same steps.
//
// Legend: n rows (still-masked positions), V vocabulary; logits f32 [n, V] → ids i32 [n],
// confidence f32 [n], reveal i32 [n]. Attrs as the CPU op (temperature, topK, topP, seed,
// counters[n], k, mode, threshold, confidence).
//
// One block of 1024 threads per row. Everything whose result does not depend on order runs
// over the whole block: the NaN/+Inf check (lowest failing index), max / first argmax, the
// float64 exps (into a scratch row), the top-k threshold (an exact radix select on the
// ordered bits of the doubles: 64 counting passes) and each top-p step (the next index in
// "z descending, lower index first" order is a block arg-max over the indices after the
// previous one). Every float64 SUM of the contract (Σexp for greedy and for π, the top-p
// cumulative mass, the CDF walk) is done by ONE thread in index order, so it reproduces the
// CPU op's / reference's sum bit for bit given the same exps. Cost: one dependent double add
// per vocabulary entry per pass (≈ V · 4–8 cycles: about 0.5 ms per pass at V = 152k on an
// H100; rows run in parallel, so a block of 32 masked positions costs the same as one).
// CUDA's double exp is within 1 ulp of glibc's (both nearly always correctly rounded): as on
// the CPU-vs-TS side, the f32 rounding of the confidence hides that (sample.ts header).
// Top-p costs one block reduction per kept token (fast for peaked distributions, the usual
// case; a flat distribution with topP near 1 is O(V) reductions).
// Errors (NaN / +Inf logit, all −Inf row, temperature overflow) come back per row through a
// status array; the host reads it (one sync per call: the decoder reads the outputs anyway),
// reports the lowest failing row with the CPU op's message, and then picks the rows to reveal
// (select_reveal, on n values) and uploads them.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../core/remask.h"
#include "plugin.h"

namespace dvl_cuda {

using dvl::Tensor;

static const int kThreads = 1024;

struct RowStatus {
  int64_t code;  // 0 ok, 1 NaN, 2 +Inf, 3 all −Inf, 4 temperature overflow
  int64_t index;
};

struct SampleParams {
  const float* logits;
  int64_t V;
  double temperature, topP;
  int64_t topK;
  uint64_t seed;
  const uint64_t* counters;  // [n] (sampling only)
  bool raw;
  double* z;  // [n, V] scratch (sampling only)
  double* e;  // [n, V] scratch
  int32_t* ids;
  float* conf;
  RowStatus* status;
};

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Block-wide reductions over (key, index) pairs: the winner has the larger key, ties → the lower
// index; index −1 means "none". Every thread gets the winner.
template <class K>
__device__ void block_best(K& key, int64_t& idx) {
  __shared__ K ks[32];
  __shared__ int64_t is[32];
  for (int o = 16; o > 0; o >>= 1) {
    const K k2 = __shfl_xor_sync(0xffffffffu, key, o);
    const int64_t i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    if (i2 >= 0 && (idx < 0 || k2 > key || (k2 == key && i2 < idx))) key = k2, idx = i2;
  }
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) ks[w] = key, is[w] = idx;
  __syncthreads();
  key = ks[0], idx = is[0];
  for (int i = 1; i < int(blockDim.x >> 5); ++i)
    if (is[i] >= 0 && (idx < 0 || ks[i] > key || (ks[i] == key && is[i] < idx))) key = ks[i], idx = is[i];
  __syncthreads();
}

__device__ int64_t block_min_i64(int64_t v) {
  __shared__ int64_t s[32];
  for (int o = 16; o > 0; o >>= 1) v = min(v, (int64_t)__shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) s[threadIdx.x >> 5] = v;
  __syncthreads();
  v = s[0];
  for (int i = 1; i < int(blockDim.x >> 5); ++i) v = min(v, s[i]);
  __syncthreads();
  return v;
}

__device__ int64_t block_count(int64_t v) {
  __shared__ int64_t s[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) s[threadIdx.x >> 5] = v;
  __syncthreads();
  v = 0;
  for (int i = 0; i < int(blockDim.x >> 5); ++i) v += s[i];
  __syncthreads();
  return v;
}

// Order-preserving map of a double to uint64 (−Inf smallest, +Inf largest; no NaN occurs).
// −0 is mapped as +0 (d + 0.0), because the contract compares values: −0 == +0.
__device__ __forceinline__ uint64_t okey(double d) {
  const uint64_t u = uint64_t(__double_as_longlong(d + 0.0));
  return (u >> 63) ? ~u : (u | 0x8000000000000000ull);
}

__global__ void __launch_bounds__(kThreads) remask_kernel(const SampleParams P) {
  const int64_t r = blockIdx.x, V = P.V, tid = threadIdx.x, nt = blockDim.x;
  const float* l = P.logits + r * V;
  double* e = P.e + r * V;
  const float kInf = __int_as_float(0x7f800000);
  __shared__ double sh_d;
  __shared__ int64_t sh_i;

  // 1. check: lowest NaN / +Inf index; max and its first index.
  int64_t bad = INT64_MAX;
  float mx = -kInf;
  int64_t arg = -1;
  for (int64_t j = tid; j < V; j += nt) {
    const float v = l[j];
    if ((v != v || v == kInf) && j < bad) bad = j;
    if (v > mx) mx = v, arg = j;  // strict: the first index of this thread's max
  }
  bad = block_min_i64(bad);
  if (bad != INT64_MAX) {
    if (tid == 0) P.status[r] = {l[bad] != l[bad] ? 1 : 2, bad};
    return;
  }
  block_best(mx, arg);  // −Inf entries never win: arg stays −1 for an all −Inf row
  if (arg < 0) {
    if (tid == 0) P.status[r] = {3, 0};
    return;
  }
  const double lmax = double(mx);

  if (P.temperature == 0) {  // greedy: token = first argmax, confidence = 1 / Σ exp(l − max)
    for (int64_t j = tid; j < V; j += nt) e[j] = exp(double(l[j]) - lmax);
    __syncthreads();
    if (tid == 0) {
      double Z = 0;
#pragma unroll 16
      for (int64_t j = 0; j < V; ++j) Z += e[j];  // index order, one thread: the reference's sum
      P.ids[r] = int32_t(arg);
      P.conf[r] = float(1.0 / Z);
      P.status[r] = {0, 0};
    }
    return;
  }

  // 2. z = l / T, with the overflow check (lowest failing index).
  double* z = P.z + r * V;
  const double kNegInf = -__longlong_as_double(0x7ff0000000000000ll);
  bad = INT64_MAX;
  for (int64_t j = tid; j < V; j += nt) {
    const double zj = double(l[j]) / P.temperature;
    z[j] = zj;
    if ((zj == -kNegInf || (zj == kNegInf && l[j] != -kInf)) && j < bad) bad = j;
  }
  bad = block_min_i64(bad);
  if (bad != INT64_MAX) {
    if (tid == 0) P.status[r] = {4, bad};
    return;
  }

  // 3. top-k: thr = the topK-th largest z (duplicates counted) = the largest t with
  //    #{z ≥ t} ≥ topK, found bit by bit on the order-preserving keys.
  if (P.topK > 0 && P.topK < V) {
    uint64_t t = 0;
    for (int bit = 63; bit >= 0; --bit) {
      const uint64_t cand = t | (uint64_t(1) << bit);
      int64_t cnt = 0;
      for (int64_t j = tid; j < V; j += nt) cnt += okey(z[j]) >= cand;
      if (block_count(cnt) >= P.topK) t = cand;
    }
    for (int64_t j = tid; j < V; j += nt)
      if (okey(z[j]) < t) z[j] = kNegInf;
    __syncthreads();
  }

  // 4. m = max z; e = exp(z − m); S = Σ e (one thread, index order).
  double m = kNegInf;
  int64_t am = -1;
  for (int64_t j = tid; j < V; j += nt)
    if (am < 0 || z[j] > m) m = z[j], am = j;
  block_best(m, am);
  for (int64_t j = tid; j < V; j += nt) e[j] = exp(z[j] - m);
  __syncthreads();

  // 5. top-p: visit by z descending (ties: lower index); a token goes once the ones before it
  //    hold more than topP of the mass. Survivors are the visit order's prefix up to (zc, ic).
  if (P.topP < 1) {
    if (tid == 0) {
      double S = 0;
      for (int64_t j = 0; j < V; ++j) S += e[j];
      sh_d = S;
    }
    __syncthreads();
    const double S = sh_d;
    double cum = 0;  // identical in every thread (same operands, same order)
    double zc = 0;
    int64_t ic = -1;  // the last kept index; −1 before the first
    bool cut = false;
    for (int64_t i = 0;; ++i) {
      // next = the best index strictly after (zc, ic) in the visit order, among z ≠ −Inf
      double key = kNegInf;
      int64_t nx = -1;
      for (int64_t j = tid; j < V; j += nt) {
        const double zj = z[j];
        if (zj == kNegInf) continue;
        if (ic >= 0 && !(zj < zc || (zj == zc && j > ic))) continue;
        // Among candidates the best has the larger z, ties → lower j: negate j into the key order.
        if (nx < 0 || zj > key || (zj == key && j < nx)) key = zj, nx = j;
      }
      block_best(key, nx);
      if (nx < 0) break;  // every finite entry kept
      if (i > 0 && cum > P.topP) {
        cut = true;
        break;
      }
      cum += e[nx] / S;
      zc = key, ic = nx;
    }
    if (cut)
      for (int64_t j = tid; j < V; j += nt) {
        const double zj = z[j];
        if (zj != kNegInf && (zj < zc || (zj == zc && j > ic))) z[j] = kNegInf, e[j] = 0;
      }
    __syncthreads();
  }

  // 6. π = e / S', inverse CDF with the counter-based uniform; 7. the confidence.
  if (tid == 0) {
    double S2 = 0;
    for (int64_t j = 0; j < V; ++j) S2 += e[j];
    const double u = double(mix64(P.seed ^ mix64(P.counters[r])) >> 11) * 0x1.0p-53;
    int64_t tok = -1;
    double cdf = 0;
    for (int64_t j = 0; j < V; ++j) {
      cdf += e[j] / S2;
      if (cdf > u) {
        tok = j;
        break;
      }
    }
    if (tok < 0)
      for (int64_t j = V - 1; j >= 0; --j)
        if (e[j] / S2 > 0) {
          tok = j;
          break;
        }
    sh_i = tok;
    sh_d = e[tok] / S2;
  }
  __syncthreads();
  const int64_t tok = sh_i;
  if (!P.raw) {
    if (tid == 0) {
      P.ids[r] = int32_t(tok);
      P.conf[r] = float(sh_d);
      P.status[r] = {0, 0};
    }
    return;
  }
  // raw: softmax(l)[tok] = exp(l[tok] − max l) / Σ exp(l − max l); e is free to reuse.
  __syncthreads();
  for (int64_t j = tid; j < V; j += nt) e[j] = exp(double(l[j]) - lmax);
  __syncthreads();
  if (tid == 0) {
    double Z = 0;
    for (int64_t j = 0; j < V; ++j) Z += e[j];
    P.ids[r] = int32_t(tok);
    P.conf[r] = float(exp(double(l[tok]) - lmax) / Z);
    P.status[r] = {0, 0};
  }
}

static dvl_status remask_run(const OpCall& c) {
  if (!check_io(c, 1, 1, 3)) return 1;
  const Tensor &lg = *c.in[0], &ids = *c.out[0], &cf = *c.out[1], &rv = *c.out[2];
  if (!need_dtype(c, lg, kF32, "logits") || !need_dtype(c, ids, kI32, "ids") || !need_dtype(c, cf, kF32, "confidence") ||
      !need_dtype(c, rv, kI32, "reveal"))
    return 1;
  if (lg.shape.size() != 2 || lg.shape[1] < 1) return fail(c.err, "DVL_SHAPE", "cuda confidence_remask: logits [n, V], V >= 1");
  const int64_t n = lg.shape[0], V = lg.shape[1];
  if (ids.shape != std::vector<int64_t>{n} || cf.shape != ids.shape || rv.shape != ids.shape)
    return fail(c.err, "DVL_SHAPE", "cuda confidence_remask: outputs must be [n]");
  if (n == 0) return 0;
  if (n > 0x7fffffff) return fail(c.err, "DVL_SHAPE", "cuda confidence_remask: too many rows");
  SampleParams P{};
  P.logits = dptr<const float>(lg);
  P.V = V;
  const dvl::RemaskAttrs& a = c.attrs.remask;  // parsed by the CPU op
  P.temperature = a.temperature;
  P.topK = a.topK;
  P.topP = a.topP;
  P.seed = uint64_t(a.seed);
  P.raw = a.raw;
  const bool sampling = P.temperature > 0;
  std::vector<uint64_t> counters;
  if (sampling) {
    if (int64_t(a.counters.size()) != n) return fail(c.err, "DVL_ARG", "cuda confidence_remask: counters must have one entry per row");
    for (double d : a.counters) counters.push_back(uint64_t(d));
  }
  // Scratch: status [n], counters [n], e [n, V] (+ z [n, V] when sampling), one allocation.
  const size_t st_b = size_t(n) * sizeof(RowStatus), ct_b = size_t(n) * 8, row_b = size_t(n) * size_t(V) * 8;
  const size_t total = st_b + ct_b + row_b * (sampling ? 2 : 1);
  char* scratch = nullptr;
  cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&scratch), total, c.stream);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return fail(c.err, "DVL_ALLOC", "cuda confidence_remask: out of device memory for %zu bytes of scratch", total);
  }
  if (e != cudaSuccess) return fail_cuda(c.err, e, "cuda confidence_remask: scratch");
  P.status = reinterpret_cast<RowStatus*>(scratch);
  P.counters = reinterpret_cast<const uint64_t*>(scratch + st_b);
  P.e = reinterpret_cast<double*>(scratch + st_b + ct_b);
  P.z = sampling ? P.e + size_t(n) * size_t(V) : nullptr;
  P.ids = dptr<int32_t>(ids);
  P.conf = dptr<float>(cf);
  std::vector<RowStatus> status(static_cast<size_t>(n));
  std::vector<float> conf(static_cast<size_t>(n));
  std::vector<int32_t> reveal(static_cast<size_t>(n));
  dvl_status rc = 0;
  if (sampling) e = cudaMemcpyAsync(scratch + st_b, counters.data(), ct_b, cudaMemcpyHostToDevice, c.stream);
  if (e == cudaSuccess) {
    remask_kernel<<<unsigned(n), kThreads, 0, c.stream>>>(P);
    rc = check_launch(c, "remask_kernel");
  }
  if (!rc && e == cudaSuccess) e = cudaMemcpyAsync(status.data(), P.status, st_b, cudaMemcpyDeviceToHost, c.stream);
  if (!rc && e == cudaSuccess) e = cudaMemcpyAsync(conf.data(), P.conf, size_t(n) * 4, cudaMemcpyDeviceToHost, c.stream);
  if (!rc && e == cudaSuccess) e = cudaStreamSynchronize(c.stream);
  cudaFreeAsync(scratch, c.stream);
  if (rc) return rc;
  if (e != cudaSuccess) return fail_cuda(c.err, e, "cuda confidence_remask");
  for (int64_t r = 0; r < n; ++r) {
    const RowStatus& s = status[size_t(r)];
    const long long R = r, J = s.index;
    switch (s.code) {
      case 0: continue;
      case 1: return fail(c.err, "DVL_RANGE", "confidence_remask: logits row %lld contains NaN at index %lld", R, J);
      case 2: return fail(c.err, "DVL_RANGE", "confidence_remask: logits row %lld contains +Inf at index %lld", R, J);
      case 3: return fail(c.err, "DVL_RANGE", "confidence_remask: logits row %lld is all -Inf", R);
      default:
        return fail(c.err, "DVL_RANGE", "confidence_remask: temperature %s is too small: logits row %lld index %lld overflows when scaled",
                    std::to_string(P.temperature).c_str(), R, J);
    }
  }
  dvl::remask_select_reveal(conf.data(), n, a.k, a.dynamic, a.threshold, reveal.data());
  e = cudaMemcpyAsync(dptr<int32_t>(rv), reveal.data(), size_t(n) * 4, cudaMemcpyHostToDevice, c.stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c.stream);  // reveal (host) dies on return
  return e == cudaSuccess ? 0 : fail_cuda(c.err, e, "cuda confidence_remask: reveal");
}

void register_sample(std::vector<OpEntry>& t) { t.push_back({dvl::OpId::ConfidenceRemask, kF32, remask_run}); }

}  // namespace dvl_cuda
