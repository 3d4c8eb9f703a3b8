// Reductions (sum, max, min, mean over any axes) and row softmax, float32.
#include <cmath>
#include <limits>

#include "common.h"

namespace sprout {
namespace {

enum Op { kSum = 0, kMax = 1, kMin = 2, kMean = 3 };

inline double Init(int op) {
  if (op == kMax) return -std::numeric_limits<double>::infinity();
  if (op == kMin) return std::numeric_limits<double>::infinity();
  return 0.0;
}

// NaN wins, like the cpu backend's comparisons.
inline double Combine(int op, double acc, float v) {
  if (op == kMax) return (v > acc || v != v) ? v : acc;
  if (op == kMin) return (v < acc || v != v) ? v : acc;
  return acc + v;
}

}  // namespace

// reduce(op, x, out, shape, reduced): op 0 sum, 1 max, 2 min, 3 mean over the axes flagged in
// `reduced` (Int32 0/1 per axis of `shape`); out holds the kept axes in order. Sums accumulate in
// double, like the cpu backend's JavaScript numbers.
napi_value Reduce(napi_env env, napi_callback_info info) {
  napi_value args[5];
  if (!Args(env, info, 5, args, "reduce expects 5 arguments")) return nullptr;
  const int op = static_cast<int>(Int(env, args[0]));
  float *x, *out;
  int32_t *shape, *flags;
  size_t lx, lo, ls, lf;
  if (!Float32(env, args[1], &x, &lx) || !Float32(env, args[2], &out, &lo) || !Int32(env, args[3], &shape, &ls) ||
      !Int32(env, args[4], &flags, &lf) || ls != lf || op < 0 || op > 3)
    return Fail(env, "reduce: bad arguments");
  // Collapse neighbouring axes that are both kept or both reduced.
  std::vector<int64_t> dims;
  std::vector<bool> red;
  int64_t total = 1, kept = 1;
  for (size_t d = 0; d < ls; d++) {
    total *= shape[d];
    if (!flags[d]) kept *= shape[d];
    if (shape[d] == 1) continue;
    if (!red.empty() && red.back() == (flags[d] != 0))
      dims.back() *= shape[d];
    else {
      dims.push_back(shape[d]);
      red.push_back(flags[d] != 0);
    }
  }
  if (static_cast<int64_t>(lx) < total || static_cast<int64_t>(lo) < kept) return Fail(env, "reduce: array too small");
  const int64_t count = kept > 0 ? total / kept : 0;
  std::vector<double> acc(kept, Init(op));
  if (total > 0) {
    if (dims.empty() || (dims.size() == 1 && !red[0])) {
      for (int64_t i = 0; i < kept; i++) acc[i] = Combine(op, acc[i], x[i]);
    } else if (dims.size() == 1 || (dims.size() == 2 && !red[0])) {
      // [kept, reduced]: one independent row per output.
      const int64_t rows = kept, cols = total / (kept > 0 ? kept : 1);
      ParallelFor(rows, 1 + kGrain / (cols + 1), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; r++) {
          double a = Init(op);
          const float* p = x + r * cols;
          if (op == kSum || op == kMean)
            for (int64_t c = 0; c < cols; c++) a += p[c];
          else
            for (int64_t c = 0; c < cols; c++) a = Combine(op, a, p[c]);
          acc[r] = a;
        }
      });
    } else if (dims.size() == 2) {
      // [reduced, kept]: accumulate rows into the output; threads own column ranges.
      const int64_t rows = dims[0], cols = dims[1];
      double* a = acc.data();
      ParallelFor(cols, 1 + kGrain / (rows + 1), [&](int64_t b, int64_t e) {
        if (op == kSum || op == kMean) {
          // Column sums (a bias's gradient): a branch-free loop the compiler vectorises.
          for (int64_t r = 0; r < rows; r++) {
            const float* p = x + r * cols;
            for (int64_t c = b; c < e; c++) a[c] += p[c];
          }
          return;
        }
        for (int64_t r = 0; r < rows; r++) {
          const float* p = x + r * cols;
          for (int64_t c = b; c < e; c++) a[c] = Combine(op, a[c], p[c]);
        }
      });
    } else {
      // General pattern: walk the input in order with an odometer over the collapsed axes.
      const size_t rank = dims.size();
      std::vector<int64_t> ostride(rank, 0);
      int64_t s = 1;
      for (size_t d = rank; d-- > 0;)
        if (!red[d]) {
          ostride[d] = s;
          s *= dims[d];
        }
      std::vector<int64_t> idx(rank, 0);
      const int64_t inner = dims[rank - 1], is = ostride[rank - 1];
      int64_t off = 0;
      for (int64_t i = 0; i < total; i += inner) {
        const float* p = x + i;
        for (int64_t j = 0; j < inner; j++) acc[off + j * is] = Combine(op, acc[off + j * is], p[j]);
        for (size_t d = rank - 1; d-- > 0;) {
          idx[d]++;
          off += ostride[d];
          if (idx[d] < dims[d]) break;
          off -= ostride[d] * dims[d];
          idx[d] = 0;
        }
      }
    }
  }
  for (int64_t i = 0; i < kept; i++)
    out[i] = static_cast<float>(op == kMean ? acc[i] / static_cast<double>(count) : acc[i]);
  return nullptr;
}

// softmax(x, out, rows, cols): row-wise exp(x - max) / sum, through the attention kernel's SoftmaxRow.
napi_value Softmax(napi_env env, napi_callback_info info) {
  napi_value args[4];
  if (!Args(env, info, 4, args, "softmax expects 4 arguments")) return nullptr;
  float *x, *out;
  size_t lx, lo;
  const int64_t rows = Int(env, args[2]), cols = Int(env, args[3]);
  if (!Float32(env, args[0], &x, &lx) || !Float32(env, args[1], &out, &lo) || rows < 0 || cols < 0 ||
      static_cast<int64_t>(lx) < rows * cols || static_cast<int64_t>(lo) < rows * cols)
    return Fail(env, "softmax: bad arguments");
  ParallelFor(rows, 1 + kGrain / 8 / (cols + 1), [=](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) SoftmaxRow(x + r * cols, out + r * cols, cols, cols, 1.0f);
  });
  return nullptr;
}

}  // namespace sprout
