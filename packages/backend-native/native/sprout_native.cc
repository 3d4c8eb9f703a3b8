// Node-API addon: BLAS-backed matrix products for the `native` TensorFlow.js backend.
#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "common.h"

namespace sprout {

int g_threads = 1;

void Export(napi_env env, napi_value exports, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn);
  napi_set_named_property(env, exports, name, fn);
}

namespace {

// c = op(a)·op(b) + beta·c for row-major, unstrided operands (leading dimensions follow from the shape).
void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, const float* b, float beta, float* c) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0f, a, ta ? static_cast<int>(m) : static_cast<int>(k), b,
              tb ? static_cast<int>(k) : static_cast<int>(n), beta, c, static_cast<int>(n));
}

// sgemmBatched(a, b, out, batch, m, n, k, transA, transB, strideA, strideB):
// out[i] = op(a[i]) · op(b[i]) for i < batch, row-major; a stride of 0 broadcasts that operand.
napi_value SgemmBatched(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value args[11];
  napi_get_cb_info(env, info, &argc, args, nullptr, nullptr);
  if (argc != 11) return Fail(env, "sgemmBatched expects 11 arguments");
  float *a, *b, *c;
  size_t la, lb, lc;
  if (!Float32(env, args[0], &a, &la) || !Float32(env, args[1], &b, &lb) || !Float32(env, args[2], &c, &lc))
    return Fail(env, "sgemmBatched: a, b and out must be Float32Arrays");
  const int64_t batch = Int(env, args[3]), m = Int(env, args[4]), n = Int(env, args[5]), k = Int(env, args[6]);
  const bool ta = Int(env, args[7]) != 0, tb = Int(env, args[8]) != 0;
  const int64_t sa = Int(env, args[9]), sb = Int(env, args[10]);
  if (batch < 0 || m < 0 || n < 0 || k < 0) return Fail(env, "sgemmBatched: negative size");
  if (static_cast<int64_t>(lc) < batch * m * n || (batch > 0 && (static_cast<int64_t>(la) < (batch - 1) * sa + m * k ||
                                                                  static_cast<int64_t>(lb) < (batch - 1) * sb + k * n)))
    return Fail(env, "sgemmBatched: array too small for the given sizes");
  auto product = [=](int64_t i) {
    float* out = c + i * m * n;
    if (k == 0) {
      for (int64_t j = 0; j < m * n; j++) out[j] = 0.0f;
      return;
    }
    if (m == 0 || n == 0) return;
    Gemm(ta, tb, m, n, k, a + i * sa, b + i * sb, 0.0f, out);
  };
  // Many small products (attention heads): one single-threaded BLAS call per item, items spread
  // over our threads; OpenBLAS's own threading only pays on large matrices.
  if (batch > 1 && g_threads > 1 && m * n * k <= (int64_t{1} << 21)) {
    openblas_set_num_threads(1);
    ParallelFor(batch, 1, [&](int64_t b0, int64_t e0) {
      for (int64_t i = b0; i < e0; i++) product(i);
    });
    openblas_set_num_threads(g_threads);
  } else {
    for (int64_t i = 0; i < batch; i++) product(i);
  }
  return nullptr;
}

// sgemmBias(a, b, bias, out, m, n, k, transA, transB): out = op(a)·op(b) + bias, bias [n] added
// to every row. The bias is written into out first and the product accumulated onto it (beta 1),
// which saves the separate broadcast-add pass over out that a product then an add would make.
napi_value SgemmBias(napi_env env, napi_callback_info info) {
  napi_value args[9];
  if (!Args(env, info, 9, args, "sgemmBias expects 9 arguments")) return nullptr;
  float *a, *b, *bias, *c;
  size_t la, lb, lbias, lc;
  if (!Float32(env, args[0], &a, &la) || !Float32(env, args[1], &b, &lb) || !Float32(env, args[2], &bias, &lbias) ||
      !Float32(env, args[3], &c, &lc))
    return Fail(env, "sgemmBias: a, b, bias and out must be Float32Arrays");
  const int64_t m = Int(env, args[4]), n = Int(env, args[5]), k = Int(env, args[6]);
  const bool ta = Int(env, args[7]) != 0, tb = Int(env, args[8]) != 0;
  if (m < 0 || n < 0 || k < 0) return Fail(env, "sgemmBias: negative size");
  if (static_cast<int64_t>(la) < m * k || static_cast<int64_t>(lb) < k * n || static_cast<int64_t>(lbias) < n ||
      static_cast<int64_t>(lc) < m * n)
    return Fail(env, "sgemmBias: array too small for the given sizes");
  if (m == 0 || n == 0) return nullptr;
  ParallelFor(m, 1 + kGrain / n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) std::copy(bias, bias + n, c + r * n);
  });
  if (k == 0) return nullptr;
  Gemm(ta, tb, m, n, k, a, b, 1.0f, c);
  return nullptr;
}

template <int Op>
inline float Apply(float x, float y) {
  if (Op == 0) return x + y;
  if (Op == 1) return x - y;
  if (Op == 2) return x * y;
  if (Op == 3) return x / y;
  if (Op == 4) return y == 2.0f ? x * x : y == 3.0f ? x * x * x : std::pow(x, y);
  if (Op == 5) return (x > y || x != x) ? x : y;
  if (Op == 6) return (x < y || x != x) ? x : y;
  return (x - y) * (x - y);
}

// Broadcast elementwise loop over output rows [begin, end): strides are 0 on broadcast axes;
// the last axis runs as a tight loop.
template <int Op>
void Broadcast(const float* a, const float* b, float* out, const std::vector<int64_t>& shape,
               const std::vector<int64_t>& sa, const std::vector<int64_t>& sb, int64_t begin, int64_t end) {
  const size_t rank = shape.size();
  const int64_t inner = shape[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1];
  std::vector<int64_t> idx(rank, 0);
  int64_t offA = 0, offB = 0, rem = begin;
  for (size_t d = rank - 1; d-- > 0;) {
    idx[d] = rem % shape[d];
    rem /= shape[d];
    offA += idx[d] * sa[d];
    offB += idx[d] * sb[d];
  }
  for (int64_t o = begin; o < end; o++) {
    const float* pa = a + offA;
    const float* pb = b + offB;
    float* po = out + o * inner;
    if (ia == 1 && ib == 1)
      for (int64_t i = 0; i < inner; i++) po[i] = Apply<Op>(pa[i], pb[i]);
    else if (ia == 1)
      for (int64_t i = 0; i < inner; i++) po[i] = Apply<Op>(pa[i], pb[0]);
    else if (ib == 1)
      for (int64_t i = 0; i < inner; i++) po[i] = Apply<Op>(pa[0], pb[i]);
    else
      for (int64_t i = 0; i < inner; i++) po[i] = Apply<Op>(pa[0], pb[0]);
    for (size_t d = rank - 1; d-- > 0;) {
      idx[d]++;
      offA += sa[d];
      offB += sb[d];
      if (idx[d] < shape[d]) break;
      offA -= sa[d] * shape[d];
      offB -= sb[d] * shape[d];
      idx[d] = 0;
    }
  }
}

template <int Op>
void BroadcastParallel(const float* a, const float* b, float* out, const std::vector<int64_t>& shape,
                       const std::vector<int64_t>& sa, const std::vector<int64_t>& sb, int64_t size) {
  const int64_t inner = shape.back();
  ParallelFor(size / inner, 1 + kGrain / inner,
              [&](int64_t b0, int64_t e0) { Broadcast<Op>(a, b, out, shape, sa, sb, b0, e0); });
}

// binary(op, a, b, out, outShape, stridesA, stridesB): op 0 add, 1 sub, 2 mul, 3 div, 4 pow,
// 5 maximum, 6 minimum, 7 squared difference.
napi_value Binary(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value args[7];
  napi_get_cb_info(env, info, &argc, args, nullptr, nullptr);
  if (argc != 7) return Fail(env, "binary expects 7 arguments");
  const int64_t op = Int(env, args[0]);
  float *a, *b, *c;
  int32_t *shape, *sa, *sb;
  size_t la, lb, lc, ls, lsa, lsb;
  if (!Float32(env, args[1], &a, &la) || !Float32(env, args[2], &b, &lb) || !Float32(env, args[3], &c, &lc))
    return Fail(env, "binary: a, b and out must be Float32Arrays");
  if (!Int32(env, args[4], &shape, &ls) || !Int32(env, args[5], &sa, &lsa) || !Int32(env, args[6], &sb, &lsb) ||
      ls != lsa || ls != lsb || ls == 0)
    return Fail(env, "binary: shape and strides must be Int32Arrays of the same non-zero length");
  std::vector<int64_t> sh(shape, shape + ls), va(sa, sa + ls), vb(sb, sb + ls);
  int64_t size = 1, maxA = 0, maxB = 0;
  for (size_t d = 0; d < ls; d++) {
    size *= sh[d];
    if (sh[d] > 0) {
      maxA += va[d] * (sh[d] - 1);
      maxB += vb[d] * (sh[d] - 1);
    }
  }
  if (size == 0) return nullptr;
  if (static_cast<int64_t>(lc) < size || static_cast<int64_t>(la) <= maxA || static_cast<int64_t>(lb) <= maxB)
    return Fail(env, "binary: array too small for the given shape and strides");
  switch (op) {
    case 0: BroadcastParallel<0>(a, b, c, sh, va, vb, size); break;
    case 1: BroadcastParallel<1>(a, b, c, sh, va, vb, size); break;
    case 2: BroadcastParallel<2>(a, b, c, sh, va, vb, size); break;
    case 3: BroadcastParallel<3>(a, b, c, sh, va, vb, size); break;
    case 4: BroadcastParallel<4>(a, b, c, sh, va, vb, size); break;
    case 5: BroadcastParallel<5>(a, b, c, sh, va, vb, size); break;
    case 6: BroadcastParallel<6>(a, b, c, sh, va, vb, size); break;
    case 7: BroadcastParallel<7>(a, b, c, sh, va, vb, size); break;
    default: return Fail(env, "binary: unknown op");
  }
  return nullptr;
}

// setThreads(n): OpenBLAS worker threads (more than the cores only adds contention).
napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  napi_get_cb_info(env, info, &argc, args, nullptr, nullptr);
  if (argc != 1) return Fail(env, "setThreads expects 1 argument");
  const int64_t n = Int(env, args[0]);
  if (n < 1) return Fail(env, "setThreads: n must be >= 1");
  openblas_set_num_threads(static_cast<int>(n));
  g_threads = static_cast<int>(n);
  return nullptr;
}

}  // namespace

napi_value Init(napi_env env, napi_value exports) {
  Export(env, exports, "setThreads", SetThreads);
  Export(env, exports, "sgemmBatched", SgemmBatched);
  Export(env, exports, "sgemmBias", SgemmBias);
  Export(env, exports, "binary", Binary);
  Export(env, exports, "unary", Unary);
  Export(env, exports, "reduce", Reduce);
  Export(env, exports, "softmax", Softmax);
  Export(env, exports, "transpose", Transpose);
  Export(env, exports, "gather", Gather);
  Export(env, exports, "segmentSum", SegmentSum);
  ExportFused(env, exports);
  napi_value config;
  napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &config);
  napi_set_named_property(env, exports, "blas", config);
  return exports;
}

}  // namespace sprout

NAPI_MODULE(NODE_GYP_MODULE_NAME, sprout::Init)
