// Elementwise unary float32 kernels, split across threads for large tensors.
#include <cmath>

#include "common.h"

namespace sprout {
namespace {

template <int Op>
inline float Apply(float x) {
  switch (Op) {
    case 0: return std::exp(x);
    case 1: return std::log(x);
    case 2: return std::tanh(x);
    case 3: return std::sqrt(x);
    case 4: return 1.0f / std::sqrt(x);
    case 5: return x * x;
    case 6: return -x;
    case 7: return 1.0f / (1.0f + std::exp(-x));
    case 8: return x > 0.0f ? x : 0.0f;
    case 9: return std::erf(x);
    case 10: return std::fabs(x);
    default: return 1.0f / x;
  }
}

template <int Op>
void Run(const float* x, float* out, int64_t n) {
  // exp, log, tanh, sigmoid and erf cost several times a multiply.
  constexpr bool heavy = Op == 0 || Op == 1 || Op == 2 || Op == 7 || Op == 9;
  ParallelFor(n, heavy ? kGrain / 8 : kGrain, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) out[i] = Apply<Op>(x[i]);
  });
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
