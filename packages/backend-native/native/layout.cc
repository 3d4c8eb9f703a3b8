// Data movement: transpose, gather along an axis, and unsorted segment sum (gather's gradient).
#include <cstring>

#include "common.h"

namespace sprout {

// transpose(x, out, shape, perm): out axis i is x axis perm[i]; 32-bit elements of any dtype.
napi_value Transpose(napi_env env, napi_callback_info info) {
  napi_value args[4];
  if (!Args(env, info, 4, args, "transpose expects 4 arguments")) return nullptr;
  uint32_t *x, *out;
  int32_t *shape, *perm;
  size_t lx, lo, ls, lp;
  if (!Word32(env, args[0], &x, &lx) || !Word32(env, args[1], &out, &lo) || !Int32(env, args[2], &shape, &ls) ||
      !Int32(env, args[3], &perm, &lp) || ls != lp || ls == 0)
    return Fail(env, "transpose: bad arguments");
  const size_t rank = ls;
  std::vector<int64_t> instride(rank), odims(rank), ostride(rank);
  int64_t total = 1;
  for (size_t d = rank; d-- > 0;) {
    instride[d] = total;
    total *= shape[d];
  }
  for (size_t d = 0; d < rank; d++) {
    if (perm[d] < 0 || perm[d] >= static_cast<int32_t>(rank)) return Fail(env, "transpose: bad perm");
    odims[d] = shape[perm[d]];
    ostride[d] = instride[perm[d]];  // input stride when stepping along output axis d
  }
  if (static_cast<int64_t>(lx) < total || static_cast<int64_t>(lo) < total) return Fail(env, "transpose: array too small");
  if (total == 0) return nullptr;
  const int64_t inner = odims[rank - 1], is = ostride[rank - 1];
  const int64_t rowsOut = total / inner;
  ParallelFor(rowsOut, 1 + kGrain / inner, [&](int64_t b, int64_t e) {
    // Odometer over the output's leading axes, started at row b.
    std::vector<int64_t> idx(rank, 0);
    int64_t rem = b, off = 0;
    for (size_t d = rank - 1; d-- > 0;) {
      idx[d] = rem % odims[d];
      rem /= odims[d];
      off += idx[d] * ostride[d];
    }
    for (int64_t r = b; r < e; r++) {
      uint32_t* q = out + r * inner;
      const uint32_t* p = x + off;
      if (is == 1)
        std::memcpy(q, p, inner * sizeof(uint32_t));
      else
        for (int64_t j = 0; j < inner; j++) q[j] = p[j * is];
      for (size_t d = rank - 1; d-- > 0;) {
        idx[d]++;
        off += ostride[d];
        if (idx[d] < odims[d]) break;
        off -= ostride[d] * odims[d];
        idx[d] = 0;
      }
    }
  });
  return nullptr;
}

// gather(x, indices, out, outer, axisSize, inner): out[o, j, :] = x[o, indices[j], :].
// Returns -1, or the position of the first index outside [0, axisSize) (nothing written then).
napi_value Gather(napi_env env, napi_callback_info info) {
  napi_value args[6];
  if (!Args(env, info, 6, args, "gather expects 6 arguments")) return nullptr;
  uint32_t *x, *out;
  int32_t* ids;
  size_t lx, li, lo;
  const int64_t outer = Int(env, args[3]), axis = Int(env, args[4]), inner = Int(env, args[5]);
  if (!Word32(env, args[0], &x, &lx) || !Int32(env, args[1], &ids, &li) || !Word32(env, args[2], &out, &lo) ||
      outer < 0 || axis < 0 || inner < 0 || static_cast<int64_t>(lx) < outer * axis * inner ||
      static_cast<int64_t>(lo) < outer * static_cast<int64_t>(li) * inner)
    return Fail(env, "gather: bad arguments");
  const int64_t n = static_cast<int64_t>(li);
  napi_value result;
  for (int64_t j = 0; j < n; j++)
    if (ids[j] < 0 || ids[j] >= axis) {
      napi_create_int64(env, j, &result);
      return result;
    }
  ParallelFor(outer * n, 1 + kGrain / (inner + 1), [=](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const int64_t o = r / n, j = r % n;
      std::memcpy(out + r * inner, x + (o * axis + ids[j]) * inner, inner * sizeof(uint32_t));
    }
  });
  napi_create_int64(env, -1, &result);
  return result;
}

// segmentSum(x, ids, out, numSegments, inner): out[s, :] = sum of x[i, :] over ids[i] == s;
// ids outside [0, numSegments) are dropped, as in TensorFlow. Threads own column ranges.
napi_value SegmentSum(napi_env env, napi_callback_info info) {
  napi_value args[5];
  if (!Args(env, info, 5, args, "segmentSum expects 5 arguments")) return nullptr;
  float *x, *out;
  int32_t* ids;
  size_t lx, li, lo;
  const int64_t segs = Int(env, args[3]), inner = Int(env, args[4]);
  if (!Float32(env, args[0], &x, &lx) || !Int32(env, args[1], &ids, &li) || !Float32(env, args[2], &out, &lo) ||
      segs < 0 || inner < 0 || static_cast<int64_t>(lx) < static_cast<int64_t>(li) * inner ||
      static_cast<int64_t>(lo) < segs * inner)
    return Fail(env, "segmentSum: bad arguments");
  const int64_t n = static_cast<int64_t>(li);
  std::memset(out, 0, segs * inner * sizeof(float));
  const int64_t grain = 1 + kGrain / (n + 1);
  ParallelFor(inner, grain, [=](int64_t b, int64_t e) {
    for (int64_t i = 0; i < n; i++) {
      const int64_t s = ids[i];
      if (s < 0 || s >= segs) continue;
      float* q = out + s * inner;
      const float* p = x + i * inner;
      for (int64_t c = b; c < e; c++) q[c] += p[c];
    }
  });
  return nullptr;
}

}  // namespace sprout
