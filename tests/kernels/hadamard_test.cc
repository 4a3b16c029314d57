#include "kernels/hadamard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace adaptcache {
namespace {

TEST(HadamardTest, ScaleIsNearestFloatToInverseSqrt) {
  EXPECT_EQ(HadamardScale(1), 1.0f);
  EXPECT_EQ(HadamardScale(4), 0.5f);
  EXPECT_EQ(HadamardScale(64), 0.125f);
  EXPECT_EQ(HadamardScale(2), static_cast<float>(1 / std::sqrt(2.0)));
  EXPECT_EQ(HadamardScale(128), static_cast<float>(1 / std::sqrt(128.0)));
}

TEST(HadamardTest, MatchesMatrixDefinitionAndInvertsItself) {
  for (size_t n : {1u, 2u, 8u, 64u, 128u}) {
    std::mt19937 rng(n);
    std::normal_distribution<float> d;
    std::vector<float> x(2 * n);
    for (auto& v : x) v = d(rng);
    std::vector<float> y = x;
    HadamardInPlace(y.data(), n, 2);
    for (size_t v = 0; v < 2; ++v) {
      for (size_t i = 0; i < n; ++i) {
        double ref = 0;  // H[i][j] = (-1)^popcount(i & j) / sqrt(n)
        for (size_t j = 0; j < n; ++j) {
          ref += (__builtin_popcountll(i & j) % 2 ? -1.0 : 1.0) * x[v * n + j];
        }
        ref /= std::sqrt(double(n));
        EXPECT_NEAR(y[v * n + i], ref, 1e-4 * std::sqrt(double(n)));
      }
    }
    HadamardInPlace(y.data(), n, 2);
    for (size_t i = 0; i < 2 * n; ++i) EXPECT_NEAR(y[i], x[i], 1e-5);
  }
}

}  // namespace
}  // namespace adaptcache
