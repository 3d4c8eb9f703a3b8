// Shared helpers for the Node-API entry points: argument unpacking and a tiny parallel-for.
#pragma once
#include <node_api.h>

#include <cstdint>
#include <thread>
#include <vector>

namespace sprout {

// Worker threads for the C++ loops (set with BLAS's by setThreads).
extern int g_threads;

inline napi_value Fail(napi_env env, const char* message) {
  napi_throw_type_error(env, nullptr, message);
  return nullptr;
}

// Reads exactly n arguments; false (with a JS TypeError thrown) otherwise.
inline bool Args(napi_env env, napi_callback_info info, size_t n, napi_value* args, const char* name) {
  size_t argc = n;
  napi_get_cb_info(env, info, &argc, args, nullptr, nullptr);
  if (argc != n) {
    Fail(env, name);
    return false;
  }
  return true;
}

template <class T>
bool Typed(napi_env env, napi_value v, napi_typedarray_type want, T** data, size_t* len) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, len, reinterpret_cast<void**>(data), &buffer, &offset) != napi_ok)
    return false;
  return type == want;
}

inline bool Float32(napi_env env, napi_value v, float** data, size_t* len) {
  return Typed(env, v, napi_float32_array, data, len);
}
inline bool Int32(napi_env env, napi_value v, int32_t** data, size_t* len) {
  return Typed(env, v, napi_int32_array, data, len);
}
// float32 or int32 data moved as raw 32-bit words (transpose, gather).
inline bool Word32(napi_env env, napi_value v, uint32_t** data, size_t* len) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, len, reinterpret_cast<void**>(data), &buffer, &offset) != napi_ok)
    return false;
  return type == napi_float32_array || type == napi_int32_array || type == napi_uint32_array;
}

inline int64_t Int(napi_env env, napi_value v) {
  int64_t out = 0;
  napi_get_value_int64(env, v, &out);
  return out;
}

// Elements of simple arithmetic worth a thread of their own: waking a parked pool worker and
// waiting for it costs a few microseconds (more on a busy machine), about a pass over 100k floats
// split in two. Measured choices are in the README.
constexpr int64_t kGrain = int64_t{1} << 17;

// Runs fn(ctx, begin, end) over `threads` chunks of [0, n) on the persistent pool (pool.cc);
// false if the pool is busy (another JS thread, or a call from inside a task).
bool RunOnPool(int64_t threads, int64_t n, void (*fn)(void*, int64_t, int64_t), void* ctx);

// Runs f(begin, end) over [0, n) split across g_threads threads when there are at least
// `grain` items per thread; below that, waking a thread costs more than it saves.
template <class F>
void ParallelFor(int64_t n, int64_t grain, F f) {
  int64_t threads = g_threads;
  if (threads > n / (grain > 0 ? grain : 1)) threads = n / (grain > 0 ? grain : 1);
  if (threads > 1 &&
      RunOnPool(threads, n, [](void* ctx, int64_t b, int64_t e) { (*static_cast<F*>(ctx))(b, e); }, &f))
    return;
  if (n > 0) f(int64_t{0}, n);
}

void Export(napi_env env, napi_value exports, const char* name, napi_callback cb);

// Entry points defined in the other translation units.
napi_value Unary(napi_env env, napi_callback_info info);
napi_value Reduce(napi_env env, napi_callback_info info);
napi_value Softmax(napi_env env, napi_callback_info info);
napi_value Transpose(napi_env env, napi_callback_info info);
napi_value Gather(napi_env env, napi_callback_info info);
napi_value SegmentSum(napi_env env, napi_callback_info info);
// Row softmax of scale·x over the first `valid` of `cols` entries, the rest set to 0 (fused.cc;
// vectorised exp). x and out may be the same row.
void SoftmaxRow(const float* x, float* out, int64_t valid, int64_t cols, float scale);
// Registers the fused transformer kernels (fused.cc).
void ExportFused(napi_env env, napi_value exports);

}  // namespace sprout
