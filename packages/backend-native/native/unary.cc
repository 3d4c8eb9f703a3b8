// Elementwise unary float32 kernels, split across threads for large tensors.
#include <cmath>

#include "common.h"
#include "fastmath.h"

namespace sprout {
namespace {

// The ops without a vectorised range below (exp, tanh and sigmoid have one).
template <int Op>
inline float Apply(float x) {
  switch (Op) {
    case 1: return std::log(x);
    case 3: return std::sqrt(x);
    case 4: return 1.0f / std::sqrt(x);
    case 5: return x * x;
    case 6: return -x;
    case 8: return x < 0.0f ? 0.0f : x;  // NaN stays NaN (the cpu kernel's xi < 0 ? 0 : xi)
    case 9: return std::erf(x);
    case 10: return std::fabs(x);
    default: return 1.0f / x;
  }
}

// exp, tanh and sigmoid through FastExp so the loops vectorize (std::exp and std::tanh do not:
// tanh alone took 22 ms over 2 M floats). Overflow and underflow stay those of std::exp.
SPROUT_CLONES void ExpRange(const float* x, float* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++)
    out[i] = x[i] > 88.7228f ? __builtin_inff() : x[i] < -103.98f ? 0.0f : FastExp(x[i]);
}

// tanh(x) = 1 − 2 / (e^{2x} + 1) away from 0; a 5-term series below |x| = 0.25 keeps relative accuracy.
SPROUT_CLONES void TanhRange(const float* x, float* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i], v2 = v * v;
    const float series = v * (1.0f + v2 * (-1.0f / 3 + v2 * (2.0f / 15 + v2 * (-17.0f / 315 + v2 * (62.0f / 2835)))));
    const float viaExp = 1.0f - 2.0f / (FastExp(2.0f * v) + 1.0f);
    out[i] = (v < 0.25f && v > -0.25f) ? series : viaExp;
  }
}

SPROUT_CLONES void SigmoidRange(const float* x, float* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) out[i] = 1.0f / (1.0f + FastExp(-x[i]));
}

template <int Op>
void Run(const float* x, float* out, int64_t n) {
  if constexpr (Op == 0 || Op == 2 || Op == 7) {
    ParallelFor(n, kGrain / 4, [=](int64_t b, int64_t e) {
      if constexpr (Op == 0) ExpRange(x + b, out + b, e - b);
      if constexpr (Op == 2) TanhRange(x + b, out + b, e - b);
      if constexpr (Op == 7) SigmoidRange(x + b, out + b, e - b);
    });
  } else {
    // log and erf cost several times a multiply.
    constexpr bool heavy = Op == 1 || Op == 9;
    ParallelFor(n, heavy ? kGrain / 8 : kGrain, [=](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i++) out[i] = Apply<Op>(x[i]);
    });
  }
}

}  // namespace

// unary(op, x, out): 0 exp, 1 log, 2 tanh, 3 sqrt, 4 rsqrt, 5 square, 6 neg, 7 sigmoid,
// 8 relu, 9 erf, 10 abs, 11 reciprocal.
napi_value Unary(napi_env env, napi_callback_info info) {
  napi_value args[3];
  if (!Args(env, info, 3, args, "unary expects 3 arguments")) return nullptr;
  float *x, *out;
  size_t lx, lo;
  if (!Float32(env, args[1], &x, &lx) || !Float32(env, args[2], &out, &lo) || lo < lx)
    return Fail(env, "unary: x and out must be Float32Arrays, out at least as long as x");
  const int64_t n = static_cast<int64_t>(lx);
  switch (Int(env, args[0])) {
    case 0: Run<0>(x, out, n); break;
    case 1: Run<1>(x, out, n); break;
    case 2: Run<2>(x, out, n); break;
    case 3: Run<3>(x, out, n); break;
    case 4: Run<4>(x, out, n); break;
    case 5: Run<5>(x, out, n); break;
    case 6: Run<6>(x, out, n); break;
    case 7: Run<7>(x, out, n); break;
    case 8: Run<8>(x, out, n); break;
    case 9: Run<9>(x, out, n); break;
    case 10: Run<10>(x, out, n); break;
    case 11: Run<11>(x, out, n); break;
    default: return Fail(env, "unary: unknown op");
  }
  return nullptr;
}

}  // namespace sprout
