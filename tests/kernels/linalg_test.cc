#include "kernels/linalg.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace adaptcache {
namespace {

// Checks A v_i = w_i v_i, orthonormality and descending order.
void CheckDecomposition(int n, const std::vector<double>& a, double tol) {
  std::vector<double> scratch = a, w(n), v(size_t(n) * n);
  ASSERT_TRUE(SymmetricEigen(n, scratch, w, v).ok());
  double scale = 0;
  for (double x : a) scale = std::max(scale, std::fabs(x));
  scale = std::max(scale, 1e-300);
  for (int i = 0; i + 1 < n; ++i) EXPECT_GE(w[i], w[i + 1]);
  for (int i = 0; i < n; ++i) {
    for (int r = 0; r < n; ++r) {
      double av = 0;
      for (int c = 0; c < n; ++c) av += a[size_t(r) * n + c] * v[size_t(i) * n + c];
      EXPECT_NEAR(av, w[i] * v[size_t(i) * n + r], tol * scale * n) << "pair " << i;
    }
    for (int j = 0; j <= i; ++j) {
      double dot = 0;
      for (int c = 0; c < n; ++c) dot += v[size_t(i) * n + c] * v[size_t(j) * n + c];
      EXPECT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-10);
    }
  }
}

std::vector<double> RandomSymmetric(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> g;
  std::vector<double> a(size_t(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j <= i; ++j) a[size_t(i) * n + j] = a[size_t(j) * n + i] = g(rng);
  return a;
}

TEST(SymmetricEigen, SmallKnownMatrix) {
  std::vector<double> a = {2, 1, 1, 2};
  std::vector<double> w(2), v(4);
  ASSERT_TRUE(SymmetricEigen(2, a, w, v).ok());
  EXPECT_NEAR(w[0], 3.0, 1e-12);
  EXPECT_NEAR(w[1], 1.0, 1e-12);
  EXPECT_NEAR(v[0], std::sqrt(0.5), 1e-12);
  EXPECT_NEAR(v[1], std::sqrt(0.5), 1e-12);
}

TEST(SymmetricEigen, OneByOne) {
  std::vector<double> a = {-4}, w(1), v(1);
  ASSERT_TRUE(SymmetricEigen(1, a, w, v).ok());
  EXPECT_EQ(w[0], -4);
  EXPECT_EQ(v[0], 1);
}

TEST(SymmetricEigen, RandomMatrices) {
  for (int n : {2, 3, 5, 17, 64, 128}) CheckDecomposition(n, RandomSymmetric(n, 7 + n), 1e-11);
}

TEST(SymmetricEigen, DegenerateAndRankDeficient) {
  const int n = 40;
  // Covariance of 5 samples: rank <= 5, 35 zero eigenvalues; plus the zero and identity.
  std::mt19937 rng(3);
  std::normal_distribution<double> g;
  std::vector<double> x(5 * n), c(size_t(n) * n, 0.0);
  for (double& v : x) v = g(rng);
  for (int s = 0; s < 5; ++s)
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) c[size_t(i) * n + j] += x[s * n + i] * x[s * n + j];
  CheckDecomposition(n, c, 1e-11);
  CheckDecomposition(n, std::vector<double>(size_t(n) * n, 0.0), 1e-12);
  std::vector<double> id(size_t(n) * n, 0.0);
  for (int i = 0; i < n; ++i) id[size_t(i) * n + i] = 1;
  CheckDecomposition(n, id, 1e-12);
  // Widely spread scales (outlier channels).
  std::vector<double> spread = RandomSymmetric(n, 11);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) spread[size_t(i) * n + j] *= std::pow(10.0, (i % 7) + (j % 7) - 6);
  CheckDecomposition(n, spread, 1e-11);
}

TEST(SymmetricEigen, ClusteredEigenvalues) {
  // A = Q diag(lambda) Q^T with near-equal and equal pairs (as RoPE key channels give).
  const int n = 48;
  auto r = RandomSymmetric(n, 21);
  std::vector<double> w(n), q(size_t(n) * n);
  ASSERT_TRUE(SymmetricEigen(n, r, w, q).ok());
  std::vector<double> lambda(n);
  for (int i = 0; i < n; ++i) lambda[i] = 10.0 / (1 + i / 2);  // exact pairs
  lambda[5] = lambda[4] * (1 - 1e-9);
  lambda[7] = lambda[6] * (1 - 1e-5);
  std::vector<double> a(size_t(n) * n, 0.0);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      for (int k = 0; k < n; ++k) a[size_t(i) * n + j] += q[size_t(k) * n + i] * lambda[k] * q[size_t(k) * n + j];
  CheckDecomposition(n, a, 1e-11);
}

TEST(SymmetricEigenSolver, LeadingVectorsMatchFullDecomposition) {
  const int n = 64;
  auto a = RandomSymmetric(n, 8), b = a;
  std::vector<double> w(n), v(size_t(n) * n);
  ASSERT_TRUE(SymmetricEigen(n, a, w, v).ok());
  SymmetricEigenSolver solver;
  ASSERT_TRUE(solver.Compute(n, b).ok());
  std::vector<double> lead(size_t(5) * n);
  solver.Eigenvectors(5, lead);
  for (size_t i = 0; i < lead.size(); ++i) EXPECT_NEAR(lead[i], v[i], 1e-9);
  for (int i = 0; i < n; ++i) EXPECT_EQ(solver.eigenvalues()[i], w[i]);
}

TEST(SymmetricEigen, Deterministic) {
  auto a = RandomSymmetric(50, 5), b = a;
  std::vector<double> w1(50), w2(50), v1(2500), v2(2500);
  ASSERT_TRUE(SymmetricEigen(50, a, w1, v1).ok());
  ASSERT_TRUE(SymmetricEigen(50, b, w2, v2).ok());
  EXPECT_EQ(w1, w2);
  EXPECT_EQ(v1, v2);
}

TEST(SymmetricEigen, RejectsBadInput) {
  std::vector<double> a(4), w(2), v(4);
  EXPECT_FALSE(SymmetricEigen(0, a, w, v).ok());
  EXPECT_FALSE(SymmetricEigen(3, a, w, v).ok());
  a = {1, NAN, NAN, 1};
  EXPECT_FALSE(SymmetricEigen(2, a, w, v).ok());
}

}  // namespace
}  // namespace adaptcache
