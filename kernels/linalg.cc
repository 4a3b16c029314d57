#include "kernels/linalg.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/simd.h"

namespace adaptcache {
namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();

// Householder reduction of the full symmetric matrix `a` to tridiagonal form
// T = Q^T A Q, Q = H_0 H_1 ... H_{n-3}, H_k = I - beta_k v_k v_k^T acting on indices k+1...
// Leaves v_k in row k of `a` (columns k+1..n-1). Loops are written as row-wise axpys so
// that they vectorise without reassociating any sum.
// A column whose part below the subdiagonal is at rounding level of the matrix is left
// as is (a backward-stable perturbation): reflecting it would divide by an underflowed
// norm, as near-zero blocks of a rank-deficient covariance do.
AC_ALWAYS_INLINE void TridiagonalizeBody(int n, double* a, double* d, double* e, double* beta,
                                         double* p) {
  double anorm = 0;
  for (int i = 0; i < n; ++i) {
    double row = 0;
    for (int j = 0; j < n; ++j) row += std::fabs(a[size_t(i) * n + j]);
    anorm = std::max(anorm, row);
  }
  const double tol = kEps * anorm;
  const double tol2 = std::max(tol * tol, std::numeric_limits<double>::min());
  for (int k = 0; k + 2 < n; ++k) {
    double* x = a + size_t(k) * n + k + 1;  // row k right of the diagonal == column k below
    const int m = n - k - 1;
    double sigma = 0;
    for (int i = 1; i < m; ++i) sigma += x[i] * x[i];
    beta[k] = 0;
    if (sigma <= tol2) {
      e[k] = x[0];
      continue;
    }
    const double norm = std::sqrt(x[0] * x[0] + sigma);
    const double alpha = x[0] >= 0 ? -norm : norm;
    beta[k] = 1.0 / (norm * (norm + std::fabs(x[0])));
    x[0] -= alpha;  // x is now v: H x_old = alpha e1
    e[k] = alpha;
    // A22 -= v w^T + w v^T with p = beta A22 v, w = p - (beta/2)(p.v) v.
    double* a22 = a + size_t(k + 1) * n + k + 1;
    std::fill(p, p + m, 0.0);
    for (int i = 0; i < m; ++i) {  // p = sum_i v_i * row_i (A22 symmetric)
      const double* row = a22 + size_t(i) * n;
      const double vi = beta[k] * x[i];
      for (int j = 0; j < m; ++j) p[j] += vi * row[j];
    }
    double pv = 0;
    for (int i = 0; i < m; ++i) pv += p[i] * x[i];
    const double kk = 0.5 * beta[k] * pv;
    for (int i = 0; i < m; ++i) p[i] -= kk * x[i];  // p is now w
    for (int i = 0; i < m; ++i) {
      double* row = a22 + size_t(i) * n;
      const double vi = x[i], wi = p[i];
      for (int j = 0; j < m; ++j) row[j] -= vi * p[j] + wi * x[j];
    }
  }
  for (int i = 0; i < n; ++i) d[i] = a[size_t(i) * n + i];
  if (n >= 2) e[n - 2] = a[size_t(n - 2) * n + n - 1];
}

AC_DISPATCH(void, Tridiagonalize, (int n, double* a, double* d, double* e, double* beta, double* p),
            TridiagonalizeBody, (n, a, d, e, beta, p))

// Eigenvalues of the symmetric tridiagonal (d, e) by implicit QR with Wilkinson shifts.
// Destroys e; d holds the (unsorted) eigenvalues on return.
absl::Status TridiagonalEigenvalues(int n, double* d, double* e) {
  double anorm = 0;
  for (int i = 0; i < n; ++i) {
    anorm = std::max(anorm, std::fabs(d[i]) + (i + 1 < n ? std::fabs(e[i]) : 0.0) +
                                (i > 0 ? std::fabs(e[i - 1]) : 0.0));
  }
  // Relative to the neighbours, or absolutely at rounding level of the matrix: eigenvalues
  // are only determined to eps * ||T|| anyway, and near-zero blocks of a rank-deficient
  // covariance never meet a purely relative test.
  auto negligible = [&](int i) {
    return std::fabs(e[i]) <= kEps * (std::fabs(d[i]) + std::fabs(d[i + 1])) ||
           std::fabs(e[i]) <= kEps * anorm;
  };
  int m = n - 1;
  int iterations = 0;
  const int max_iterations = 64 * n + 64;
  while (m > 0) {
    if (negligible(m - 1)) {
      e[m - 1] = 0;
      --m;
      continue;
    }
    int l = m - 1;
    while (l > 0 && !negligible(l - 1)) --l;
    if (l > 0) e[l - 1] = 0;
    if (++iterations > max_iterations) {
      return absl::InternalError("symmetric eigen-solver did not converge");
    }
    // Wilkinson shift from the trailing 2x2 block of the unreduced part [l, m].
    const double dd = 0.5 * (d[m - 1] - d[m]);
    const double em = e[m - 1];
    const double den = dd + std::copysign(std::hypot(dd, em), dd == 0 ? 1.0 : dd);
    const double mu = d[m] - em * em / den;
    double x = d[l] - mu;
    double z = e[l];
    for (int k = l; k < m; ++k) {  // chase the bulge with Givens rotations
      const double r = std::sqrt(x * x + z * z);  // no overflow at covariance scales
      const double inv = r == 0 ? 0.0 : 1.0 / r;
      const double c = r == 0 ? 1.0 : x * inv;
      const double s = z * inv;
      if (k > l) e[k - 1] = r;
      const double a = d[k], b = d[k + 1], f = e[k];
      d[k] = c * c * a + 2 * c * s * f + s * s * b;
      d[k + 1] = s * s * a - 2 * c * s * f + c * c * b;
      e[k] = c * s * (b - a) + (c * c - s * s) * f;
      if (k + 1 < m) {
        const double g = e[k + 1];
        z = s * g;  // bulge at (k, k+2)
        e[k + 1] = c * g;
        x = e[k];
      }
    }
  }
  return absl::OkStatus();
}

// Solves (T - lambda I) y = x in place (x -> y) by Gaussian elimination with partial
// pivoting; zero pivots are replaced by `tiny` (inverse iteration wants the near-singular
// solve). u0/u1/u2/mult/swap are scratch of n.
void ShiftedTridiagonalSolve(int n, const double* d, const double* e, double lambda, double tiny,
                             double* x, double* u0, double* u1, double* u2, double* mult,
                             bool* swap) {
  double p = d[0] - lambda, q = n > 1 ? e[0] : 0.0, r = 0;  // current row at cols i, i+1, i+2
  for (int i = 0; i + 1 < n; ++i) {
    const double b = e[i], a = d[i + 1] - lambda, c = i + 2 < n ? e[i + 1] : 0.0;
    if (std::fabs(b) > std::fabs(p)) {
      swap[i] = true;
      u0[i] = b, u1[i] = a, u2[i] = c;
      mult[i] = p / b;
      const double np = q - mult[i] * a, nq = r - mult[i] * c;
      p = np, q = nq, r = 0;
    } else {
      swap[i] = false;
      if (p == 0) p = tiny;
      u0[i] = p, u1[i] = q, u2[i] = r;
      mult[i] = b / p;
      const double np = a - mult[i] * q, nq = c - mult[i] * r;
      p = np, q = nq, r = 0;
    }
  }
  u0[n - 1] = p == 0 ? tiny : p;
  // Forward: apply the row operations to x.
  double rc = x[0];
  for (int i = 0; i + 1 < n; ++i) {
    if (swap[i]) {
      const double piv = x[i + 1];
      x[i] = piv;
      rc -= mult[i] * piv;
    } else {
      x[i] = rc;
      rc = x[i + 1] - mult[i] * rc;
    }
  }
  x[n - 1] = rc;
  // Back substitution with U (two superdiagonals).
  for (int i = n - 1; i >= 0; --i) {
    double v = x[i];
    if (i + 1 < n) v -= u1[i] * x[i + 1];
    if (i + 2 < n) v -= u2[i] * x[i + 2];
    double piv = u0[i];
    if (std::fabs(piv) < tiny) piv = std::copysign(tiny, piv);
    x[i] = v / piv;
  }
}

// zt (n x count, vectors as columns) <- H_0 ... H_{n-3} zt; reflection k's vector is in
// row k of `h` at columns k+1..n-1.
AC_ALWAYS_INLINE void BackTransformBody(int n, int count, const double* h, const double* beta,
                                        double* zt, double* dots) {
  for (int k = n - 3; k >= 0; --k) {
    if (beta[k] == 0) continue;
    const double* hk = h + size_t(k) * n + k + 1;
    std::fill(dots, dots + count, 0.0);
    for (int i = 0; i < n - k - 1; ++i) {
      const double hi = hk[i];
      const double* row = zt + size_t(k + 1 + i) * count;
      for (int v = 0; v < count; ++v) dots[v] += hi * row[v];
    }
    for (int v = 0; v < count; ++v) dots[v] *= beta[k];
    for (int i = 0; i < n - k - 1; ++i) {
      const double hi = hk[i];
      double* row = zt + size_t(k + 1 + i) * count;
      for (int v = 0; v < count; ++v) row[v] -= hi * dots[v];
    }
  }
}
AC_DISPATCH(void, BackTransform,
            (int n, int count, const double* h, const double* beta, double* zt, double* dots),
            BackTransformBody, (n, count, h, beta, zt, dots))

}  // namespace

absl::Status SymmetricEigenSolver::Compute(int n, std::span<double> a) {
  n_ = 0;
  if (n <= 0 || n > kMaxEigenDim) {
    return absl::InvalidArgumentError(absl::StrCat("eigen dimension ", n, " out of range"));
  }
  const size_t nn = size_t(n) * n;
  if (a.size() != nn) return absl::InvalidArgumentError("SymmetricEigenSolver: span size != n*n");
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j <= i; ++j) {
      const double v = a[size_t(i) * n + j];
      if (!std::isfinite(v)) return absl::InvalidArgumentError("SymmetricEigen: non-finite input");
      a[size_t(j) * n + i] = v;  // mirror the lower triangle into full storage
    }
  }
  diag_.assign(n, 0.0);
  offdiag_.assign(n, 0.0);
  beta_.assign(n, 0.0);
  std::vector<double> scratch(n);
  Tridiagonalize(n, a.data(), diag_.data(), offdiag_.data(), beta_.data(), scratch.data());
  householder_.assign(a.begin(), a.end());
  values_ = diag_;
  std::vector<double> e = offdiag_;
  if (auto st = TridiagonalEigenvalues(n, values_.data(), e.data()); !st.ok()) return st;
  std::sort(values_.begin(), values_.end(), std::greater<double>());
  n_ = n;
  return absl::OkStatus();
}

void SymmetricEigenSolver::Eigenvectors(int count, std::span<double> out) const {
  const int n = n_;
  count = std::clamp(count, 0, n);
  double anorm = 0;
  for (int i = 0; i < n; ++i) {
    anorm = std::max(anorm, std::fabs(diag_[i]) + std::fabs(offdiag_[i]) +
                                (i > 0 ? std::fabs(offdiag_[i - 1]) : 0.0));
  }
  const double tiny = std::max(kEps * anorm, std::numeric_limits<double>::min() * 1e8);
  std::vector<double> u0(n), u1(n), u2(n), mult(n), z(size_t(count) * n);
  std::unique_ptr<bool[]> swap(new bool[n]);
  const double cluster_gap = 1e-3 * anorm;
  int cluster_start = 0;
  for (int v = 0; v < count; ++v) {
    if (v > 0 && values_[v - 1] - values_[v] > cluster_gap) cluster_start = v;
    double* x = z.data() + size_t(v) * n;
    // Deterministic start vector with components in every direction.
    uint32_t seed = 0x9e3779b9u * uint32_t(v + 1);
    for (int i = 0; i < n; ++i) {
      seed = seed * 1664525u + 1013904223u;
      x[i] = 0.5 + double(seed >> 8) / double(1u << 24);
    }
    for (int it = 0; it < 3; ++it) {
      ShiftedTridiagonalSolve(n, diag_.data(), offdiag_.data(), values_[v], tiny, x, u0.data(),
                              u1.data(), u2.data(), mult.data(), swap.get());
      // Orthogonalise against the earlier vectors of the same cluster (twice: classical
      // Gram-Schmidt is only stable when repeated), then normalise. Vectors of eigenvalues
      // further apart than the cluster gap are already orthogonal to ~eps*|T|/gap.
      for (int pass = 0; pass < 2; ++pass) {
        for (int w = cluster_start; w < v; ++w) {
          const double* y = z.data() + size_t(w) * n;
          double dot = 0;
          for (int i = 0; i < n; ++i) dot += x[i] * y[i];
          for (int i = 0; i < n; ++i) x[i] -= dot * y[i];
        }
      }
      double norm = 0;
      for (int i = 0; i < n; ++i) norm += x[i] * x[i];
      norm = std::sqrt(norm);
      if (!(norm > 0) || !std::isfinite(norm)) {  // lost everything: restart from a unit vector
        std::fill(x, x + n, 0.0);
        x[(v + it) % n] = 1;
        norm = 1;
      }
      for (int i = 0; i < n; ++i) x[i] /= norm;
    }
  }
  // Back-transform v = H_0 H_1 ... H_{n-3} z for all vectors at once, with the vectors
  // as columns of zt (n x count) so both loops are axpys over vectors.
  std::vector<double> zt(size_t(n) * count), dots(count);
  for (int v = 0; v < count; ++v)
    for (int i = 0; i < n; ++i) zt[size_t(i) * count + v] = z[size_t(v) * n + i];
  BackTransform(n, count, householder_.data(), beta_.data(), zt.data(), dots.data());
  for (int v = 0; v < count; ++v) {
    double norm2 = 0;
    int big = 0;
    for (int j = 0; j < n; ++j) {
      const double x = zt[size_t(j) * count + v];
      norm2 += x * x;
      if (std::fabs(x) > std::fabs(zt[size_t(big) * count + v])) big = j;
    }
    // Canonical sign (largest-magnitude component positive) and unit norm.
    const double scale = (zt[size_t(big) * count + v] < 0 ? -1.0 : 1.0) / std::sqrt(norm2);
    double* dst = out.data() + size_t(v) * n;
    for (int j = 0; j < n; ++j) dst[j] = zt[size_t(j) * count + v] * scale;
  }
}

absl::Status SymmetricEigen(int n, std::span<double> a, std::span<double> eigenvalues,
                            std::span<double> eigenvectors) {
  if (n > 0 && n <= kMaxEigenDim &&
      (eigenvalues.size() != size_t(n) || eigenvectors.size() != size_t(n) * n)) {
    return absl::InvalidArgumentError("SymmetricEigen: span sizes do not match n");
  }
  SymmetricEigenSolver solver;
  if (auto st = solver.Compute(n, a); !st.ok()) return st;
  std::copy(solver.eigenvalues().begin(), solver.eigenvalues().end(), eigenvalues.begin());
  solver.Eigenvectors(n, eigenvectors);
  return absl::OkStatus();
}

}  // namespace adaptcache
