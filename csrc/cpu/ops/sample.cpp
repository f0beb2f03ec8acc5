// sample.cpp — confidence_remask: one denoising iteration's sampling and remasking decision
// (docs §5.7–5.8). The contract is written out in lib/decode/sample.ts, remask.ts and rng.ts;
// this op must agree with them bit for bit (test/ops/sample.test.ts checks it).
//
// Legend: n rows = the still-masked positions of the block (increasing position order), V the
// vocabulary; logits f32 [n, V] → ids i32 [n], confidence f32 [n], reveal i32 [n] (1 = reveal).
// Attrs: temperature (0 = greedy), topK, topP, seed, counters[n] (RNG counter per row, needed
// when temperature > 0), k (schedule entry), mode 'static'|'dynamic', threshold, confidence
// 'modified'|'raw' — parsed once into RemaskAttrs (csrc/core/op_attrs.h).
//
// Every sum is float64 in index order j = 0..V−1, exactly as the TS reference adds: sampled rows
// run in parallel, and a greedy row over a large vocabulary has its check/max and exp passes
// split over the pool while its Σ stays one serial loop (greedy_row_split). exp is glibc's double exp,
// except the greedy rows' V numerators: the level's vector exp (kernels.h exp_shift_f64, within
// about an ulp; 0.74 → ≈ 0.3 ms for a 151 936-token row). The TS side uses V8's exp; the last
// bit of a double may differ either way, which the f32 rounding of the confidence hides — see
// lib/decode/sample.ts.
// Data errors (NaN or +Inf logit, an all −Inf row, a temperature so small that l/T overflows)
// fail with DVL_RANGE naming the lowest failing row, whatever thread found it.
#include <algorithm>
#include <cstring>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../../core/remask.h"
#include "ops.h"

namespace dvl {

// ---- RNG (lib/decode/rng.ts) ----------------------------------------------------------------

static inline uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static inline double uniform01(uint64_t seed, uint64_t counter) {
  return double(mix64(seed ^ mix64(counter)) >> 11) * 0x1.0p-53;
}

// ---- one row → (token, confidence) (lib/decode/sample.ts) -----------------------------------

struct SampleCfg {
  double temperature, topP, seed;
  int64_t topK;
  bool raw;  // confidence = softmax(raw logits)[token] instead of π[token]
  const CpuKernels* k = nullptr;  // the queue's level (exp_shift_f64)
};

static const double kNegInf = -std::numeric_limits<double>::infinity();

// What a scan of logits l[b, e) finds: the first index holding NaN or +Inf (−1 if none);
// otherwise the maximum and the first index holding it (−1 when every value is −Inf) — what a
// sequential strict-greater scan gives.
struct RowScan {
  int64_t bad = -1, arg = -1;
  float max = -std::numeric_limits<float>::infinity();
};

// First a branch-free pass over 8 interleaved lanes (the compiler vectorises it): whether any
// value is NaN or ±Inf, and the maximum — of non-NaN floats the same whatever the order it is
// taken in (±0 compare equal). Then the first index holding a value equal to it, which is the
// index a sequential scan keeps (it only moves on a strictly greater value). Only a row holding
// NaN or an infinity is scanned in order, for the first NaN or +Inf. (One dependent compare per
// logit made the greedy remask of an 8-row, 448-token block ≈ 2.9 µs a row.)
static RowScan scan_row(const float* l, int64_t b, int64_t e) {
  constexpr int L = 8;
  const float inf = std::numeric_limits<float>::infinity();
  // lane: running maxima; probe: Σ v·0, which turns NaN at the first NaN or ±Inf (then the
  // ordered scan below decides: −Inf is a fine logit). Float-only, so the lanes vectorise.
  float lane[L], probe[L];
  for (int k = 0; k < L; ++k) lane[k] = -inf, probe[k] = 0.f;
  int64_t j = b;
  for (; j + L <= e; j += L)
    for (int k = 0; k < L; ++k) {
      const float v = l[j + k];
      probe[k] += v * 0.f;
      lane[k] = v > lane[k] ? v : lane[k];
    }
  for (int k = 0; j < e; ++j, ++k) {
    const float v = l[j];
    probe[k] += v * 0.f;
    lane[k] = v > lane[k] ? v : lane[k];
  }
  RowScan s;
  bool any = false;
  for (int k = 0; k < L; ++k) any = any || probe[k] != probe[k];
  if (any) {
    for (j = b; j < e; ++j)
      if (std::isnan(l[j]) || l[j] == inf) {
        s.bad = j;
        return s;
      }
  }
  float m = -inf;
  for (int k = 0; k < L; ++k) m = lane[k] > m ? lane[k] : m;
  if (m == -inf) return s;
  for (j = b; j < e; ++j)
    if (l[j] == m) {
      s.arg = j;
      s.max = l[j];
      break;
    }
  return s;
}

// The error a scan of row r found, or "".
static std::string scan_error(const float* l, int64_t r, const RowScan& s) {
  if (s.bad >= 0)
    return "confidence_remask: logits row " + std::to_string(r) + " contains " + (std::isnan(l[s.bad]) ? "NaN" : "+Inf") +
           " at index " + std::to_string(s.bad);
  if (s.arg < 0) return "confidence_remask: logits row " + std::to_string(r) + " is all -Inf";
  return "";
}

// Checks the row and finds max / first argmax. Returns an error message, or "" when fine.
static std::string check_row(const float* l, int64_t V, int64_t r, float* max, int64_t* arg) {
  const RowScan s = scan_row(l, 0, V);
  std::string err = scan_error(l, r, s);
  if (!err.empty()) return err;
  *max = s.max;
  *arg = s.arg;
  return "";
}

// softmax(l)[tok] in float64, index-order sum.
static double softmax_at(const float* l, int64_t V, float max, int64_t tok) {
  double Z = 0;
  for (int64_t j = 0; j < V; ++j) Z += std::exp(double(l[j]) - double(max));
  return std::exp(double(l[tok]) - double(max)) / Z;
}

// Per-thread scratch for the sampling path (V entries each).
struct SampleScratch {
  std::vector<double> z, e, p;
  std::vector<int32_t> order;
};

// One sampled row (temperature > 0; greedy rows go through greedy_rows or greedy_row_split).
// Returns an error message or "".
static std::string sample_row(const float* l, int64_t V, int64_t r, const SampleCfg& c, double counter, SampleScratch& s,
                              int32_t* id, float* conf) {
  std::vector<double>& z = s.z;
  std::vector<double>& p = s.p;
  float lmax = 0;
  int64_t arg = 0;
  std::string err = check_row(l, V, r, &lmax, &arg);
  if (!err.empty()) return err;
  for (int64_t j = 0; j < V; ++j) {
    z[j] = double(l[j]) / c.temperature;
    if (z[j] == -kNegInf || (z[j] == kNegInf && l[j] != -std::numeric_limits<float>::infinity()))
      return "confidence_remask: temperature " + std::to_string(c.temperature) + " is too small: logits row " + std::to_string(r) +
             " index " + std::to_string(j) + " overflows when scaled";
  }
  // top-k: drop everything strictly below the topK-th largest (duplicates counted).
  if (c.topK > 0 && c.topK < V) {
    p.assign(z.begin(), z.begin() + V);
    std::nth_element(p.begin(), p.begin() + (V - c.topK), p.begin() + V);
    const double thr = p[V - c.topK];
    for (int64_t j = 0; j < V; ++j)
      if (z[j] < thr) z[j] = kNegInf;
  }
  double m = kNegInf;
  for (int64_t j = 0; j < V; ++j)
    if (z[j] > m) m = z[j];
  // e_j = exp(z_j − m) serves both top-p's p_j and π's numerators: a survivor's z is unchanged,
  // so the reference's second exp of it gives this same value (and −Inf gives 0 in both).
  std::vector<double>& e = s.e;
  double S = 0;
  for (int64_t j = 0; j < V; ++j) {
    e[j] = std::exp(z[j] - m);
    S += e[j];
  }
  // top-p: visit by z descending (ties: lower index), drop a token once the ones before it
  // already hold more than topP of the mass. cum only grows, so the survivors are a prefix of
  // the visit order: sort a growing prefix (partial_sort) until the cut is inside it instead
  // of sorting the whole vocabulary. −Inf entries have p = 0 and are dropped anyway.
  if (c.topP < 1) {
    for (int64_t j = 0; j < V; ++j) p[j] = e[j] / S;
    std::vector<int32_t>& order = s.order;
    order.clear();
    for (int64_t j = 0; j < V; ++j)
      if (z[j] != kNegInf) order.push_back(int32_t(j));
    auto before = [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
    size_t k = std::min<size_t>(order.size(), 256), keep = order.size();
    for (;;) {
      std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
      double cum = 0;
      size_t cut = 0;
      for (size_t i = 0; i < k; ++i) {
        if (i > 0 && cum > c.topP) {
          cut = i;
          break;
        }
        cum += p[order[i]];
      }
      if (cut) {
        keep = cut;
        break;
      }
      if (k == order.size()) break;
      k = std::min(order.size(), k * 8);
    }
    for (size_t i = keep; i < order.size(); ++i) {
      z[order[i]] = kNegInf;
      e[order[i]] = 0;
    }
  }
  // π over the survivors, then inverse-CDF with the counter-based uniform.
  double S2 = 0;
  for (int64_t j = 0; j < V; ++j) S2 += e[j];
  for (int64_t j = 0; j < V; ++j) p[j] = e[j] / S2;
  const double u = uniform01(uint64_t(c.seed), uint64_t(counter));
  int64_t tok = -1;
  double cdf = 0;
  for (int64_t j = 0; j < V; ++j) {
    cdf += p[j];
    if (cdf > u) {
      tok = j;
      break;
    }
  }
  if (tok < 0)
    for (int64_t j = V - 1; j >= 0; --j)
      if (p[j] > 0) {
        tok = j;
        break;
      }
  *id = int32_t(tok);
  *conf = c.raw ? float(softmax_at(l, V, lmax, tok)) : float(p[tok]);
  return "";
}

// Greedy row with the vocabulary split over the pool: the check/max pass and the exps run in
// parallel chunks, the Σ stays one serial index-order loop (a two-level sum would not match
// the reference). Same results and error text as sample_row.
static std::string greedy_row_split(ThreadPool& pool, const CpuKernels& k, const float* l, int64_t V, int64_t r, int32_t* id, float* conf) {
  const int nt = pool.size();
  std::vector<RowScan> parts(static_cast<size_t>(nt));
  std::vector<double> e(static_cast<size_t>(V));
  pool.run([&](int t, int) { parts[t] = scan_row(l, V * t / nt, V * (t + 1) / nt); });
  RowScan all;
  for (const RowScan& p : parts) {
    if (p.bad >= 0) {  // the lowest bad index: earlier parts had none
      all = p;
      break;
    }
    if (p.max > all.max) all = p;  // strict: the earliest part holding the maximum wins
  }
  std::string err = scan_error(l, r, all);
  if (!err.empty()) return err;
  pool.run([&](int t, int) {
    const int64_t j0 = V * t / nt, en = V * (t + 1) / nt;
    k.exp_shift_f64(l + j0, en - j0, all.max, e.data() + j0);
  });
  double Z = 0;
  for (int64_t j = 0; j < V; ++j) Z += e[j];
  *id = int32_t(all.arg);
  *conf = float(1.0 / Z);
  return "";
}

// Greedy rows [r0, r1) of a small vocabulary, up to kGreedyGroup at a time: each row's Σ is a
// chain of V dependent double adds (≈ 4 cycles each: 448 logits ≈ 0.4 µs, most of a row's
// time), so a group's chains run side by side, each still in index order — sample_row's bits.
// The numerators come from the level's vector exp a chunk at a time (they are not needed after).
static constexpr int kGreedyGroup = 8;
static void greedy_rows(const CpuKernels& k, const float* logits, int64_t V, int64_t r0, int64_t r1, std::vector<std::string>& errs,
                        int32_t* ids, float* conf) {
  constexpr int64_t kChunk = 256;
  double e[kGreedyGroup][kChunk];
  for (int64_t g0 = r0; g0 < r1; g0 += kGreedyGroup) {
    const int n = int(r1 - g0 < kGreedyGroup ? r1 - g0 : kGreedyGroup);
    float mx[kGreedyGroup];
    int64_t arg[kGreedyGroup];
    bool ok[kGreedyGroup];
    double Z[kGreedyGroup] = {};
    for (int i = 0; i < n; ++i) {
      errs[size_t(g0 + i)] = check_row(logits + (g0 + i) * V, V, g0 + i, &mx[i], &arg[i]);
      ok[i] = errs[size_t(g0 + i)].empty();
    }
    for (int64_t j0 = 0; j0 < V; j0 += kChunk) {
      const int64_t len = V - j0 < kChunk ? V - j0 : kChunk;
      for (int i = 0; i < n; ++i)
        if (ok[i]) k.exp_shift_f64(logits + (g0 + i) * V + j0, len, mx[i], e[i]);
        else std::memset(e[i], 0, sizeof(double) * size_t(len));
      for (int64_t j = 0; j < len; ++j)
        for (int i = 0; i < kGreedyGroup; ++i)
          if (i < n) Z[i] += e[i][j];
    }
    for (int i = 0; i < n; ++i)
      if (ok[i]) {
        ids[g0 + i] = int32_t(arg[i]);
        conf[g0 + i] = float(1.0 / Z[i]);
      }
  }
}

// ---- the op ---------------------------------------------------------------------------------

static const char* kOp = "confidence_remask";

static bool is_word(double v) { return v >= 0 && v < 9007199254740992.0 && v == std::floor(v); }

static void confidence_remask_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs(kOp, in, 1, 1);
  op_need_dtype(kOp, in, 0, {DType::F32});
  op_need_rank(kOp, in, 0, 2);
  const int64_t n = in[0]->dim(0), V = in[0]->dim(1);
  if (V < 1) op_fail(DVL_ERR_SHAPE, kOp, "logits rows are empty (V = 0)", in);
  const double T = a.need(kOp, "temperature");
  if (!(T >= 0) || !std::isfinite(T)) op_fail(DVL_ERR_RANGE, kOp, "temperature must be a finite number >= 0", in);
  if (T > 0) {
    const double topK = a.get("topK", 0), topP = a.get("topP", 1), seed = a.get("seed", 0);
    if (!(topK >= 0) || topK != std::floor(topK)) op_fail(DVL_ERR_RANGE, kOp, "topK must be an integer >= 0", in);
    if (!(topP > 0 && topP <= 1)) op_fail(DVL_ERR_RANGE, kOp, "topP must be in (0, 1]", in);
    if (!is_word(seed)) op_fail(DVL_ERR_RANGE, kOp, "seed must be an integer in [0, 2^53)", in);
    const std::vector<double>* cs = a.geta("counters");
    if (!cs || int64_t(cs->size()) != n)
      op_fail(DVL_ERR_ARG, kOp, "sampling (temperature > 0) needs counters, one per row (" + std::to_string(n) + ")", in);
    for (size_t r = 0; r < cs->size(); ++r)
      if (!is_word((*cs)[r])) op_fail(DVL_ERR_RANGE, kOp, "counters[" + std::to_string(r) + "] must be an integer in [0, 2^53)", in);
  }
  const int64_t k = a.needi(kOp, "k");
  if (k < 0) op_fail(DVL_ERR_RANGE, kOp, "k must be >= 0, got " + std::to_string(k), in);
  const std::string mode = a.gets("mode", "");
  if (mode != "static" && mode != "dynamic") op_fail(DVL_ERR_ARG, kOp, "mode must be 'static' or 'dynamic', got '" + mode + "'", in);
  if (std::isnan(a.get("threshold", 0.85))) op_fail(DVL_ERR_RANGE, kOp, "threshold is NaN", in);
  const std::string cm = a.gets("confidence", "modified");
  if (cm != "modified" && cm != "raw") op_fail(DVL_ERR_ARG, kOp, "confidence must be 'modified' or 'raw', got '" + cm + "'", in);
  RemaskAttrs t;
  t.temperature = T;
  t.topK = a.geti("topK", 0);
  t.topP = a.get("topP", 1);
  t.seed = a.get("seed", 0);
  if (T > 0) t.counters = *a.geta("counters");
  t.raw = cm == "raw";
  t.k = k;
  t.dynamic = mode == "dynamic";
  t.threshold = a.get("threshold", 0.85);
  a.remask = std::move(t);
}

static Tensors confidence_remask_plan(const Tensors& in, const OpAttrs&) {
  const int64_t n = in[0]->dim(0);
  return {Tensor::alloc(DType::I32, {n}), Tensor::alloc(DType::F32, {n}), Tensor::alloc(DType::I32, {n})};
}

static void confidence_remask_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const int64_t n = in[0]->dim(0), V = in[0]->dim(1);
  const float* logits = in[0]->data<float>();
  int32_t* ids = out[0]->data<int32_t>();
  float* conf = out[1]->data<float>();
  int32_t* reveal = out[2]->data<int32_t>();
  const RemaskAttrs& t = a.remask;
  SampleCfg c;
  c.temperature = t.temperature;
  c.topK = t.topK;
  c.topP = t.topP;
  c.seed = t.seed;
  c.raw = t.raw;
  c.k = &ctx.k;
  const std::vector<double>& counters = t.counters;
  std::vector<std::string> errs(static_cast<size_t>(n));
  if (c.temperature == 0 && V >= 16384) {
    // Greedy rows over a real vocabulary: each row's check/max and exp passes split over the
    // pool, rows one after another — faster than rows side by side even with many rows (8 rows
    // of 151 936 on 2 cores: 1.75 ms against 3.6), and the only way to use the pool for one.
    for (int64_t r = 0; r < n; ++r) errs[r] = greedy_row_split(ctx.pool, ctx.k, logits + r * V, V, r, ids + r, conf + r);
  } else ctx.pool.parallel_for(n, c.temperature == 0 ? std::max<int64_t>(1, 16384 / std::max<int64_t>(V, 1)) : 1, [&](int64_t r0, int64_t r1) {
    // (Greedy rows of a small vocabulary take ≈ 1 ns a logit: a few hundred of them per piece
    // would cost less than handing the piece to another thread.)
    if (c.temperature == 0) {
      greedy_rows(ctx.k, logits, V, r0, r1, errs, ids, conf);
      return;
    }
    SampleScratch s;
    s.z.resize(size_t(V));
    s.e.resize(size_t(V));
    s.p.resize(size_t(V));
    s.order.reserve(size_t(V));
    for (int64_t r = r0; r < r1; ++r) errs[r] = sample_row(logits + r * V, V, r, c, counters[size_t(r)], s, ids + r, conf + r);
  });
  for (int64_t r = 0; r < n; ++r)
    if (!errs[r].empty()) throw Error(DVL_ERR_RANGE, errs[r]);
  remask_select_reveal(conf, n, t.k, t.dynamic, t.threshold, reveal);
}

void ops_register_sample(std::vector<OpDef>& t) {
  t.push_back({OpId::ConfidenceRemask, confidence_remask_plan, confidence_remask_run, confidence_remask_parse});
}

}  // namespace dvl
