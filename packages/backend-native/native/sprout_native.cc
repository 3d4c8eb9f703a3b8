// Node-API addon: BLAS-backed matrix products for the `native` TensorFlow.js backend.
#include <cblas.h>
#include <node_api.h>

#include <cstdint>
#include <vector>

namespace {

bool Float32(napi_env env, napi_value v, float** data, size_t* len) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, len, reinterpret_cast<void**>(data), &buffer, &offset) != napi_ok)
    return false;
  return type == napi_float32_array;
}

int64_t Int(napi_env env, napi_value v) {
  int64_t out = 0;
  napi_get_value_int64(env, v, &out);
  return out;
}

napi_value Fail(napi_env env, const char* message) {
  napi_throw_type_error(env, nullptr, message);
  return nullptr;
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
  for (int64_t i = 0; i < batch; i++) {
    float* out = c + i * m * n;
    if (k == 0) {
      for (int64_t j = 0; j < m * n; j++) out[j] = 0.0f;
      continue;
    }
    if (m == 0 || n == 0) continue;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
                static_cast<int>(n), static_cast<int>(k), 1.0f, a + i * sa, ta ? static_cast<int>(m) : static_cast<int>(k),
                b + i * sb, tb ? static_cast<int>(k) : static_cast<int>(n), 0.0f, out, static_cast<int>(n));
  }
  return nullptr;
}

bool Int32(napi_env env, napi_value v, int32_t** data, size_t* len) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, len, reinterpret_cast<void**>(data), &buffer, &offset) != napi_ok)
    return false;
  return type == napi_int32_array;
}

template <int Op>
inline float Apply(float x, float y) {
  if (Op == 0) return x + y;
  if (Op == 1) return x - y;
  if (Op == 2) return x * y;
  return x / y;
}

// Broadcast elementwise loop: strides are 0 on broadcast axes; the last axis runs as a tight loop.
template <int Op>
void Broadcast(const float* a, const float* b, float* out, const std::vector<int64_t>& shape,
               const std::vector<int64_t>& sa, const std::vector<int64_t>& sb) {
  const size_t rank = shape.size();
  const int64_t inner = shape[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1];
  int64_t outer = 1;
  for (size_t d = 0; d + 1 < rank; d++) outer *= shape[d];
  std::vector<int64_t> idx(rank, 0);
  int64_t offA = 0, offB = 0;
  for (int64_t o = 0; o < outer; o++) {
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
    for (int64_t d = static_cast<int64_t>(rank) - 2; d >= 0; d--) {
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

// binary(op, a, b, out, outShape, stridesA, stridesB): op 0 add, 1 sub, 2 mul, 3 div.
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
    case 0: Broadcast<0>(a, b, c, sh, va, vb); break;
    case 1: Broadcast<1>(a, b, c, sh, va, vb); break;
    case 2: Broadcast<2>(a, b, c, sh, va, vb); break;
    case 3: Broadcast<3>(a, b, c, sh, va, vb); break;
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
  return nullptr;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_value threads;
  napi_create_function(env, "setThreads", NAPI_AUTO_LENGTH, SetThreads, nullptr, &threads);
  napi_set_named_property(env, exports, "setThreads", threads);
  napi_value binary;
  napi_create_function(env, "binary", NAPI_AUTO_LENGTH, Binary, nullptr, &binary);
  napi_set_named_property(env, exports, "binary", binary);
  napi_value fn;
  napi_create_function(env, "sgemmBatched", NAPI_AUTO_LENGTH, SgemmBatched, nullptr, &fn);
  napi_set_named_property(env, exports, "sgemmBatched", fn);
  napi_value config;
  napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &config);
  napi_set_named_property(env, exports, "blas", config);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
