// Node-API addon: BLAS-backed matrix products for the `native` TensorFlow.js backend.
#include <cblas.h>
#include <node_api.h>

#include <cstdint>

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
