// Vectorisable float32 math shared by the kernels.
#pragma once
#include <cstdint>
#include <cstring>

// Hot loops get AVX-512 / AVX2 clones picked at load time; the default clone runs anywhere.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SPROUT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SPROUT_CLONES
#endif

namespace sprout {

// exp(x) in float32 (Cephes expf: round to x = n·ln2 + r, degree-6 polynomial in r, scale by
// 2^n), written branch-free so loops vectorize; std::exp does not. Relative error ~2e-7.
// Arguments are clamped to [-86.9, 88.72] (results ~2e-38 … 3.39e38, so x ≤ -86.9 gives ~2e-38
// rather than a denormal or 0; callers that need exact underflow or overflow test for it); NaN
// stays NaN. The scale is applied as 2·2^(n-1) so n = 128 stays a normal float.
inline float FastExp(float x) {
  x = x > 88.72f ? 88.72f : x;
  x = x < -86.9f ? -86.9f : x;
  // floor(z) as truncation corrected for negatives: std::floor is a library call, which stops vectorization.
  const float z = x * 1.44269504088896341f + 0.5f;
  const float tz = static_cast<float>(static_cast<int32_t>(z));
  const float fx = tz > z ? tz - 1.0f : tz;
  x = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * x * x + x + 1.0f;
  const int32_t bits = (static_cast<int32_t>(fx) + 126) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return (2.0f * y) * scale;
}

}  // namespace sprout
