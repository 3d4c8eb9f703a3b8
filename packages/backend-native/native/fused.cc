// Fused transformer kernels: each replaces a chain of small tfjs ops (and their gradients) with
// one pass over memory. Semantics are fixed by @sprout/core's FUSED_KERNELS contract; the
// composite tfjs ops in core are the reference they are tested against.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common.h"
#include "fastmath.h"

namespace sprout {
namespace {

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/π)
constexpr float kGeluA = 0.044715f;
constexpr int64_t kBlock = 256;

// e[i] = exp(2u) for GELU's tanh argument u = c·(x + a·x³), in its own loop: merged into the
// GELU loop it vectorises only while GCC does not thread the exp clamps into branches
// (-fno-thread-jumps); kept apart, it does either way.
SPROUT_CLONES void GeluExp(const float* x, float* e, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) e[i] = FastExp(2.0f * kGeluC * (x[i] + kGeluA * x[i] * x[i] * x[i]));
}

// tanh(u) = 1 − 2 / (e^{2u} + 1): absolute error ~1e-7, exact ±1 in the tails.
SPROUT_CLONES void GeluRange(const float* x, float* y, int64_t n) {
  float e[kBlock];
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = n - b < kBlock ? n - b : kBlock;
    GeluExp(x + b, e, m);
#pragma omp simd
    for (int64_t i = 0; i < m; i++) y[b + i] = 0.5f * x[b + i] * (2.0f - 2.0f / (e[i] + 1.0f));
  }
}

SPROUT_CLONES void GeluGradRange(const float* x, const float* dy, float* dx, int64_t n) {
  float e[kBlock];
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = n - b < kBlock ? n - b : kBlock;
    GeluExp(x + b, e, m);
#pragma omp simd
    for (int64_t i = 0; i < m; i++) {
      const float v = x[b + i];
      const float t = 1.0f - 2.0f / (e[i] + 1.0f);
      const float du = kGeluC * (1.0f + 3.0f * kGeluA * v * v);
      dx[b + i] = dy[b + i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
    }
  }
}

// out = exp(scale·x − shift) over n values; returns their sum.
SPROUT_CLONES float ExpShifted(const float* x, float* out, int64_t n, float scale, float shift) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) {
    out[i] = FastExp(scale * x[i] - shift);
    s += out[i];
  }
  return s;
}

SPROUT_CLONES float RowMax(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; i++) m = (x[i] > m || x[i] != x[i]) ? x[i] : m;
  return m;
}

SPROUT_CLONES float Dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}


// Splits [0, n) into one chunk per thread and runs f(chunk, begin, end); chunk < g_threads.
template <class F>
int64_t Chunked(int64_t n, int64_t grain, F f) {
  int64_t chunks = g_threads;
  if (chunks > n / (grain > 0 ? grain : 1)) chunks = n / (grain > 0 ? grain : 1);
  if (chunks < 1) chunks = 1;
  const int64_t size = (n + chunks - 1) / chunks;
  ParallelFor(chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; c++) f(c, c * size, c * size + size < n ? c * size + size : n);
  });
  return chunks;
}

// Reads typed arrays and numbers from a call's arguments, remembering the first problem.
struct Reader {
  napi_env env;
  napi_value* args;
  const char* error = nullptr;
  float* F(int i, int64_t atLeast, bool optional = false) {
    float* p = nullptr;
    size_t len = 0;
    if (!Float32(env, args[i], &p, &len)) error = "expected a Float32Array";
    else if (optional && len == 0) return nullptr;
    else if (static_cast<int64_t>(len) < atLeast) error = "array too small for the given sizes";
    return p;
  }
  int32_t* I(int i, int64_t atLeast) {
    int32_t* p = nullptr;
    size_t len = 0;
    if (!Int32(env, args[i], &p, &len)) error = "expected an Int32Array";
    else if (static_cast<int64_t>(len) < atLeast) error = "array too small for the given sizes";
    return p;
  }
  int64_t N(int i) {
    const int64_t v = Int(env, args[i]);
    if (v < 0) error = "negative size";
    return v;
  }
  double D(int i) {
    double v = 0;
    napi_get_value_double(env, args[i], &v);
    return v;
  }
};

#define READ_ARGS(count, name)                                                   \
  napi_value args[count];                                                        \
  if (!Args(env, info, count, args, name " expects " #count " arguments")) return nullptr; \
  Reader r{env, args}

#define CHECK_ARGS(name) \
  if (r.error) return Fail(env, name)

// Runs f over items [0, n) on our threads with single-threaded BLAS inside each item.
template <class F>
void PerItemBlas(int64_t n, F f) {
  if (n > 1 && g_threads > 1) {
    openblas_set_num_threads(1);
    ParallelFor(n, 1, f);
    openblas_set_num_threads(g_threads);
  } else {
    f(int64_t{0}, n);
  }
}

// gelu(x, y, n): tanh-approximated GELU.
napi_value Gelu(napi_env env, napi_callback_info info) {
  READ_ARGS(3, "gelu");
  const int64_t n = r.N(2);
  const float* x = r.F(0, n);
  float* y = r.F(1, n);
  CHECK_ARGS("gelu: x, y must be Float32Arrays of n values");
  ParallelFor(n, kGrain / 8, [=](int64_t b, int64_t e) { GeluRange(x + b, y + b, e - b); });
  return nullptr;
}

// geluGrad(x, dy, dx, n).
napi_value GeluGrad(napi_env env, napi_callback_info info) {
  READ_ARGS(4, "geluGrad");
  const int64_t n = r.N(3);
  const float* x = r.F(0, n);
  const float* dy = r.F(1, n);
  float* dx = r.F(2, n);
  CHECK_ARGS("geluGrad: x, dy, dx must be Float32Arrays of n values");
  ParallelFor(n, kGrain / 8, [=](int64_t b, int64_t e) { GeluGradRange(x + b, dy + b, dx + b, e - b); });
  return nullptr;
}

// layerNorm(x, gamma, beta, y, mean, rstd, rows, cols, eps, rms): y = (x − μ)·rstd·γ + β per
// row (μ = 0 for RMSNorm, whose "variance" is the mean square); beta may be empty.
napi_value LayerNorm(napi_env env, napi_callback_info info) {
  READ_ARGS(10, "layerNorm");
  const int64_t rows = r.N(6), cols = r.N(7);
  const float eps = static_cast<float>(r.D(8));
  const bool rms = r.D(9) != 0;
  const float* x = r.F(0, rows * cols);
  const float* gamma = r.F(1, cols);
  const float* beta = r.F(2, cols, true);
  float* y = r.F(3, rows * cols);
  float* mean = r.F(4, rows);
  float* rstd = r.F(5, rows);
  CHECK_ARGS("layerNorm: bad arguments");
  ParallelFor(rows, 1 + kGrain / 4 / (cols + 1), [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const float* xr = x + i * cols;
      float* yr = y + i * cols;
      float mu = 0.0f;
      if (!rms) {
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < cols; c++) s += xr[c];
        mu = s / static_cast<float>(cols);
      }
      float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
      for (int64_t c = 0; c < cols; c++) ss += (xr[c] - mu) * (xr[c] - mu);
      const float rs = 1.0f / std::sqrt(ss / static_cast<float>(cols) + eps);
      mean[i] = mu;
      rstd[i] = rs;
      if (beta)
        for (int64_t c = 0; c < cols; c++) yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
      else
        for (int64_t c = 0; c < cols; c++) yr[c] = (xr[c] - mu) * rs * gamma[c];
    }
  });
  return nullptr;
}

// layerNormGrad(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, cols, rms): with x̂ = (x − μ)·rstd
// and g = dy·γ, dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) (no mean(g) term for RMSNorm);
// dγ = Σ_rows dy·x̂, dβ = Σ_rows dy (dbeta may be empty).
napi_value LayerNormGrad(napi_env env, napi_callback_info info) {
  READ_ARGS(11, "layerNormGrad");
  const int64_t rows = r.N(8), cols = r.N(9);
  const bool rms = r.D(10) != 0;
  const float* dy = r.F(0, rows * cols);
  const float* x = r.F(1, rows * cols);
  const float* gamma = r.F(2, cols);
  const float* mean = r.F(3, rows);
  const float* rstd = r.F(4, rows);
  float* dx = r.F(5, rows * cols);
  float* dgamma = r.F(6, cols);
  float* dbeta = r.F(7, cols, true);
  CHECK_ARGS("layerNormGrad: bad arguments");
  // Per-thread partial sums of dγ and dβ, added up at the end (no shared writes).
  std::vector<float> partial(static_cast<size_t>(g_threads) * 2 * cols, 0.0f);
  const int64_t chunks = Chunked(rows, 1 + kGrain / 4 / (cols + 1), [&](int64_t chunk, int64_t b, int64_t e) {
    float* pg = partial.data() + chunk * 2 * cols;
    float* pb = pg + cols;
    std::vector<float> g(cols);
    for (int64_t i = b; i < e; i++) {
      const float* dyr = dy + i * cols;
      const float* xr = x + i * cols;
      float* dxr = dx + i * cols;
      const float mu = mean[i], rs = rstd[i];
      float sg = 0.0f, sgx = 0.0f;
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t c = 0; c < cols; c++) {
        const float xh = (xr[c] - mu) * rs;
        g[c] = dyr[c] * gamma[c];
        sg += g[c];
        sgx += g[c] * xh;
        pg[c] += dyr[c] * xh;
        pb[c] += dyr[c];
      }
      const float mg = rms ? 0.0f : sg / static_cast<float>(cols);
      const float mgx = sgx / static_cast<float>(cols);
      for (int64_t c = 0; c < cols; c++) dxr[c] = rs * (g[c] - mg - (xr[c] - mu) * rs * mgx);
    }
  });
  for (int64_t c = 0; c < cols; c++) {
    float sg = 0.0f, sb = 0.0f;
    for (int64_t t = 0; t < chunks; t++) {
      sg += partial[t * 2 * cols + c];
      sb += partial[t * 2 * cols + cols + c];
    }
    dgamma[c] = sg;
    if (dbeta) dbeta[c] = sb;
  }
  return nullptr;
}

// Causal attention takes query rows in blocks of kCausalBlock; block [i0, i1) only meets keys
// [0, i1), which skips about (n − 1)/2n of the products over n blocks (3/8 at T = 256).
constexpr int64_t kCausalBlock = 64;

// attention(q, k, v, ctx, probs, B, T, H, KV, hd, scale, causal): q and ctx are [B, T, H·hd],
// k and v [B, T, KV·hd] (head h in columns h·hd..; query head h reads key/value head h / (H/KV),
// grouped-query attention when KV < H). probs [B, H, T, T] = softmax(scale·q·kᵀ) (causal: row i
// sees columns ≤ i), ctx = probs·v. Heads run in parallel, each on single-threaded BLAS with
// strided operands, so no head split or transpose is ever materialised.
napi_value Attention(napi_env env, napi_callback_info info) {
  READ_ARGS(12, "attention");
  const int64_t B = r.N(5), T = r.N(6), H = r.N(7), KV = r.N(8), hd = r.N(9);
  const float scale = static_cast<float>(r.D(10));
  const bool causal = r.D(11) != 0;
  if (KV < 1 || H % KV != 0) return Fail(env, "attention: heads must be a multiple of kvHeads");
  const int64_t D = H * hd, DK = KV * hd, g = H / KV;
  const float* q = r.F(0, B * T * D);
  const float* k = r.F(1, B * T * DK);
  const float* v = r.F(2, B * T * DK);
  float* ctx = r.F(3, B * T * D);
  float* probs = r.F(4, B * H * T * T);
  CHECK_ARGS("attention: bad arguments");
  if (B * T * D == 0) return nullptr;
  const int t = static_cast<int>(T), d = static_cast<int>(D), dk = static_cast<int>(DK), h = static_cast<int>(hd);
  const int64_t block = causal ? kCausalBlock : T;
  PerItemBlas(B * H, [=](int64_t b0, int64_t e0) {
    for (int64_t bh = b0; bh < e0; bh++) {
      const int64_t b = bh / H, head = bh % H;
      const int64_t qBase = b * T * D + head * hd, kBase = b * T * DK + (head / g) * hd;
      float* p = probs + bh * T * T;
      for (int64_t i0 = 0; i0 < T; i0 += block) {
        const int64_t i1 = std::min(T, i0 + block);
        const int rows = static_cast<int>(i1 - i0), cols = static_cast<int>(causal ? i1 : T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, h, 1.0f, q + qBase + i0 * D, d, k + kBase, dk,
                    0.0f, p + i0 * T, t);
        for (int64_t i = i0; i < i1; i++) SoftmaxRow(p + i * T, p + i * T, causal ? i + 1 : T, T, scale);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, h, cols, 1.0f, p + i0 * T, t, v + kBase, dk, 0.0f,
                    ctx + qBase + i0 * D, d);
      }
    }
  });
  return nullptr;
}

// attentionGrad(dctx, q, k, v, probs, dq, dk, dv, B, T, H, KV, hd, scale, causal): with P = probs and
// dP = dctx·vᵀ, dS = scale·P∘(dP − rowsum(P∘dP)); dq = dS·k, dk = Σ_group dSᵀ·q, dv = Σ_group Pᵀ·dctx.
// Work is split by key/value head so each thread owns the dk/dv columns it accumulates into.
// Causal: P is zero above the diagonal, so row blocks skip those products as the forward does.
napi_value AttentionGrad(napi_env env, napi_callback_info info) {
  READ_ARGS(15, "attentionGrad");
  const int64_t B = r.N(8), T = r.N(9), H = r.N(10), KV = r.N(11), hd = r.N(12);
  const float scale = static_cast<float>(r.D(13));
  const bool causal = r.D(14) != 0;
  if (KV < 1 || H % KV != 0) return Fail(env, "attentionGrad: heads must be a multiple of kvHeads");
  const int64_t D = H * hd, DK = KV * hd, g = H / KV;
  const float* dctx = r.F(0, B * T * D);
  const float* q = r.F(1, B * T * D);
  const float* k = r.F(2, B * T * DK);
  const float* v = r.F(3, B * T * DK);
  const float* probs = r.F(4, B * H * T * T);
  float* dq = r.F(5, B * T * D);
  float* dk = r.F(6, B * T * DK);
  float* dv = r.F(7, B * T * DK);
  CHECK_ARGS("attentionGrad: bad arguments");
  if (B * T * D == 0) return nullptr;
  const int t = static_cast<int>(T), d = static_cast<int>(D), dkw = static_cast<int>(DK), h = static_cast<int>(hd);
  const int64_t block = causal ? kCausalBlock : T;
  PerItemBlas(B * KV, [=](int64_t b0, int64_t e0) {
    std::vector<float> ds(T * T);
    float* s = ds.data();
    for (int64_t bk = b0; bk < e0; bk++) {
      const int64_t b = bk / KV, kvHead = bk % KV;
      const int64_t kBase = b * T * DK + kvHead * hd;
      for (int64_t i = 0; i < T; i++) {  // dk, dv accumulate over row blocks and the group's heads
        std::fill(dk + kBase + i * DK, dk + kBase + i * DK + hd, 0.0f);
        std::fill(dv + kBase + i * DK, dv + kBase + i * DK + hd, 0.0f);
      }
      for (int64_t j = 0; j < g; j++) {
        const int64_t head = kvHead * g + j;
        const int64_t qBase = b * T * D + head * hd;
        const float* p = probs + (b * H + head) * T * T;
        for (int64_t i0 = 0; i0 < T; i0 += block) {
          const int64_t i1 = std::min(T, i0 + block);
          const int rows = static_cast<int>(i1 - i0), cols = static_cast<int>(causal ? i1 : T);
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, h, 1.0f, dctx + qBase + i0 * D, d, v + kBase,
                      dkw, 0.0f, s + i0 * T, t);
          for (int64_t i = i0; i < i1; i++) {
            const float* pr = p + i * T;
            float* sr = s + i * T;
            const float dot = Dot(pr, sr, cols);
            for (int64_t c = 0; c < cols; c++) sr[c] = scale * pr[c] * (sr[c] - dot);
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, h, cols, 1.0f, s + i0 * T, t, k + kBase, dkw,
                      0.0f, dq + qBase + i0 * D, d);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, h, rows, 1.0f, s + i0 * T, t, q + qBase + i0 * D, d,
                      1.0f, dk + kBase, dkw);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, h, rows, 1.0f, p + i0 * T, t,
                      dctx + qBase + i0 * D, d, 1.0f, dv + kBase, dkw);
        }
      }
    }
  });
  return nullptr;
}

// crossEntropy(logits, targets, weights, lse, rows, cols) → loss: lse[i] = log Σ_j exp(logits[i, j]);
// loss = mean_i (lse[i] − logits[i, t_i]), or Σ w_i(…) / max(Σ w, 1e-9) when weights is non-empty.
// A target outside [0, cols) contributes 0 (and no gradient) but still counts in the mean, as a
// one-hot of it would.
napi_value CrossEntropy(napi_env env, napi_callback_info info) {
  READ_ARGS(6, "crossEntropy");
  const int64_t rows = r.N(4), cols = r.N(5);
  const float* logits = r.F(0, rows * cols);
  const int32_t* targets = r.I(1, rows);
  const float* weights = r.F(2, rows, true);
  float* lse = r.F(3, rows);
  CHECK_ARGS("crossEntropy: bad arguments");
  std::vector<double> partial(static_cast<size_t>(g_threads) * 2, 0.0);
  const int64_t chunks = Chunked(rows, 1 + kGrain / 8 / (cols + 1), [&](int64_t chunk, int64_t b, int64_t e) {
    std::vector<float> scratch(cols);
    double sum = 0, wsum = 0;
    for (int64_t i = b; i < e; i++) {
      const float* x = logits + i * cols;
      const float m = RowMax(x, cols);
      const float l = m + std::log(ExpShifted(x, scratch.data(), cols, 1.0f, m));
      lse[i] = l;
      const int32_t t = targets[i];
      const float term = t >= 0 && t < cols ? l - x[t] : 0.0f;
      const double w = weights ? weights[i] : 1.0;
      sum += w * term;
      wsum += w;
    }
    partial[chunk * 2] = sum;
    partial[chunk * 2 + 1] = wsum;
  });
  double sum = 0, wsum = 0;
  for (int64_t c = 0; c < chunks; c++) {
    sum += partial[c * 2];
    wsum += partial[c * 2 + 1];
  }
  const double loss = rows == 0 ? std::nan("") : weights ? sum / (wsum > 1e-9 ? wsum : 1e-9) : sum / rows;
  napi_value out;
  napi_create_double(env, loss, &out);
  return out;
}

// crossEntropyGrad(logits, targets, weights, lse, dlogits, rows, cols, dy):
// dlogits[i, j] = dy·c_i·(softmax_ij − [j = t_i]), c_i = 1/rows or w_i / max(Σ w, 1e-9).
napi_value CrossEntropyGrad(napi_env env, napi_callback_info info) {
  READ_ARGS(8, "crossEntropyGrad");
  const int64_t rows = r.N(5), cols = r.N(6);
  const float dy = static_cast<float>(r.D(7));
  const float* logits = r.F(0, rows * cols);
  const int32_t* targets = r.I(1, rows);
  const float* weights = r.F(2, rows, true);
  const float* lse = r.F(3, rows);
  float* dlogits = r.F(4, rows * cols);
  CHECK_ARGS("crossEntropyGrad: bad arguments");
  double wsum = rows;
  if (weights) {
    wsum = 0;
    for (int64_t i = 0; i < rows; i++) wsum += weights[i];
    wsum = wsum > 1e-9 ? wsum : 1e-9;
  }
  ParallelFor(rows, 1 + kGrain / 8 / (cols + 1), [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const int32_t t = targets[i];
      float* g = dlogits + i * cols;
      if (t < 0 || t >= cols) {
        for (int64_t j = 0; j < cols; j++) g[j] = 0.0f;
        continue;
      }
      const float c = static_cast<float>(dy * (weights ? weights[i] : 1.0) / wsum);
      ExpShifted(logits + i * cols, g, cols, 1.0f, lse[i]);
      for (int64_t j = 0; j < cols; j++) g[j] *= c;
      g[t] -= c;
    }
  });
  return nullptr;
}

SPROUT_CLONES void AdamWRange(const float* p, const float* g, const float* m, const float* v, float* po, float* mo,
                              float* vo, int64_t n, float lr, float b1, float b1c, float b2, float b2c, float eps,
                              float c1, float c2, float decay) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const float mi = m[i] * b1 + g[i] * b1c;
    const float vi = v[i] * b2 + g[i] * g[i] * b2c;
    mo[i] = mi;
    vo[i] = vi;
    po[i] = p[i] * decay - (mi / c1) / (std::sqrt(vi / c2) + eps) * lr;
  }
}

// adamw(p, g, m, v, pOut, mOut, vOut, n, lr, β1, 1 − β1, β2, 1 − β2, eps, c1, c2, decay): one AdamW
// step, c1/c2 the bias corrections 1 − βᵗ and decay the decoupled factor 1 − lr·wd (1 when not
// decayed). The complements come from the caller so they round exactly as its float32 scalars do.
napi_value AdamW(napi_env env, napi_callback_info info) {
  READ_ARGS(17, "adamw");
  const int64_t n = r.N(7);
  const float* p = r.F(0, n);
  const float* g = r.F(1, n);
  const float* m = r.F(2, n);
  const float* v = r.F(3, n);
  float* po = r.F(4, n);
  float* mo = r.F(5, n);
  float* vo = r.F(6, n);
  float f[9];
  for (int i = 0; i < 9; i++) f[i] = static_cast<float>(r.D(8 + i));
  CHECK_ARGS("adamw: bad arguments");
  ParallelFor(n, kGrain / 4, [&](int64_t b, int64_t e) {
    AdamWRange(p + b, g + b, m + b, v + b, po + b, mo + b, vo + b, e - b, f[0], f[1], f[2], f[3], f[4], f[5], f[6],
               f[7], f[8]);
  });
  return nullptr;
}

}  // namespace

// Row softmax of scale·x over the first `valid` entries; the rest of the row is set to 0.
void SoftmaxRow(const float* x, float* out, int64_t valid, int64_t cols, float scale) {
  const float m = scale * RowMax(x, valid);
  const float inv = 1.0f / ExpShifted(x, out, valid, scale, m);
  for (int64_t c = 0; c < valid; c++) out[c] *= inv;
  for (int64_t c = valid; c < cols; c++) out[c] = 0.0f;
}

void ExportFused(napi_env env, napi_value exports) {
  Export(env, exports, "gelu", Gelu);
  Export(env, exports, "geluGrad", GeluGrad);
  Export(env, exports, "layerNorm", LayerNorm);
  Export(env, exports, "layerNormGrad", LayerNormGrad);
  Export(env, exports, "attention", Attention);
  Export(env, exports, "attentionGrad", AttentionGrad);
  Export(env, exports, "crossEntropy", CrossEntropy);
  Export(env, exports, "crossEntropyGrad", CrossEntropyGrad);
  Export(env, exports, "adamw", AdamW);
}

}  // namespace sprout
