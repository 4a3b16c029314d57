#include "kernels/linalg.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"

namespace adaptcache {
namespace {

// Reduces the symmetric matrix in `a` (full storage, n x n) to tridiagonal form
// T = Q^T A Q with Householder reflections. Writes diag(T) to d, the subdiagonal to
// e[0..n-2], and Q^T (row i = column i of Q) to qt.
void Tridiagonalize(int n, double* a, double* d, double* e, double* qt) {
  std::vector<double> beta(n, 0.0), p(n), w(n);
  for (int k = 0; k + 2 < n; ++k) {
    double* x = a + size_t(k) * n + k + 1;  // row k right of the diagonal == column k below
    const int m = n - k - 1;
    double sigma = 0;
    for (int i = 1; i < m; ++i) sigma += x[i] * x[i];
    if (sigma == 0) {
      e[k] = x[0];
      beta[k] = 0;
      continue;
    }
    const double norm = std::sqrt(x[0] * x[0] + sigma);
    const double alpha = x[0] >= 0 ? -norm : norm;
    beta[k] = 1.0 / (norm * (norm + std::fabs(x[0])));
    x[0] -= alpha;  // x is now the Householder vector v; H = I - beta v v^T maps x to alpha e1
    e[k] = alpha;
    // Two-sided update of the trailing block A22 (rows/cols k+1..n-1): A22 -= v w^T + w v^T
    // with p = beta A22 v and w = p - (beta/2)(p.v) v.
    double* a22 = a + size_t(k + 1) * n + k + 1;
    double pv = 0;
    for (int i = 0; i < m; ++i) {
      const double* row = a22 + size_t(i) * n;
      double s = 0;
      for (int j = 0; j < m; ++j) s += row[j] * x[j];
      p[i] = beta[k] * s;
      pv += p[i] * x[i];
    }
    const double kk = 0.5 * beta[k] * pv;
    for (int i = 0; i < m; ++i) w[i] = p[i] - kk * x[i];
    for (int i = 0; i < m; ++i) {
      double* row = a22 + size_t(i) * n;
      const double vi = x[i], wi = w[i];
      for (int j = 0; j < m; ++j) row[j] -= vi * w[j] + wi * x[j];
    }
  }
  for (int i = 0; i < n; ++i) d[i] = a[size_t(i) * n + i];
  if (n >= 2) e[n - 2] = a[size_t(n - 2) * n + n - 1];
  // Q = H_0 H_1 ... H_{n-3}, accumulated from the right end so that each reflection only
  // touches the trailing block where the partial product is not yet the identity.
  std::vector<double> q(size_t(n) * n, 0.0);
  for (int i = 0; i < n; ++i) q[size_t(i) * n + i] = 1.0;
  for (int k = n - 3; k >= 0; --k) {
    if (beta[k] == 0) continue;
    const double* v = a + size_t(k) * n + k + 1;
    const int m = n - k - 1;
    double* q22 = q.data() + size_t(k + 1) * n + k + 1;
    std::fill(w.begin(), w.begin() + m, 0.0);
    for (int i = 0; i < m; ++i) {
      const double* row = q22 + size_t(i) * n;
      const double vi = v[i];
      for (int j = 0; j < m; ++j) w[j] += vi * row[j];
    }
    for (int i = 0; i < m; ++i) {
      double* row = q22 + size_t(i) * n;
      const double f = beta[k] * v[i];
      for (int j = 0; j < m; ++j) row[j] -= f * w[j];
    }
  }
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) qt[size_t(i) * n + j] = q[size_t(j) * n + i];
  }
}

// Applies rows (r0, r1) <- (c r0 + s r1, -s r0 + c r1).
inline void RotateRows(int n, double* r0, double* r1, double c, double s) {
  for (int j = 0; j < n; ++j) {
    const double x = r0[j], y = r1[j];
    r0[j] = c * x + s * y;
    r1[j] = c * y - s * x;
  }
}

// Implicit symmetric QR with Wilkinson shifts on the tridiagonal (d, e), applying every
// rotation to the rows of qt. On return d holds the (unsorted) eigenvalues and row i of qt
// the eigenvector of d[i].
absl::Status TridiagonalQr(int n, double* d, double* e, double* qt) {
  constexpr double kEps = std::numeric_limits<double>::epsilon();
  double anorm = 0;
  for (int i = 0; i < n; ++i) {
    anorm = std::max(anorm, std::fabs(d[i]) + (i + 1 < n ? std::fabs(e[i]) : 0.0) +
                                (i > 0 ? std::fabs(e[i - 1]) : 0.0));
  }
  auto negligible = [&](int i) {
    return std::fabs(e[i]) <= kEps * (std::fabs(d[i]) + std::fabs(d[i + 1])) ||
           std::fabs(e[i]) <= kEps * kEps * anorm;
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
    for (int k = l; k < m; ++k) {
      const double r = std::sqrt(x * x + z * z);  // no overflow risk at covariance scales
      const double c = r == 0 ? 1.0 : x / r;
      const double s = r == 0 ? 0.0 : z / r;
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
      RotateRows(n, qt + size_t(k) * n, qt + size_t(k + 1) * n, c, s);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SymmetricEigen(int n, std::span<double> a, std::span<double> eigenvalues,
                            std::span<double> eigenvectors) {
  if (n <= 0 || n > kMaxEigenDim) {
    return absl::InvalidArgumentError(absl::StrCat("eigen dimension ", n, " out of range"));
  }
  const size_t nn = size_t(n) * n;
  if (a.size() != nn || eigenvalues.size() != size_t(n) || eigenvectors.size() != nn) {
    return absl::InvalidArgumentError("SymmetricEigen: span sizes do not match n");
  }
  // Mirror the lower triangle so the algorithm can use full storage.
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < i; ++j) {
      const double v = a[size_t(i) * n + j];
      if (!std::isfinite(v)) return absl::InvalidArgumentError("SymmetricEigen: non-finite input");
      a[size_t(j) * n + i] = v;
    }
    if (!std::isfinite(a[size_t(i) * n + i])) {
      return absl::InvalidArgumentError("SymmetricEigen: non-finite input");
    }
  }
  std::vector<double> d(n), e(n, 0.0), qt(nn);
  Tridiagonalize(n, a.data(), d.data(), e.data(), qt.data());
  if (auto st = TridiagonalQr(n, d.data(), e.data(), qt.data()); !st.ok()) return st;

  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return d[x] > d[y]; });
  for (int r = 0; r < n; ++r) {
    const double* src = qt.data() + size_t(order[r]) * n;
    double* dst = eigenvectors.data() + size_t(r) * n;
    double norm2 = 0;
    int big = 0;
    for (int j = 0; j < n; ++j) {
      norm2 += src[j] * src[j];
      if (std::fabs(src[j]) > std::fabs(src[big])) big = j;
    }
    // Re-normalise (rounding drift) and fix the sign so the result is canonical.
    const double scale = (src[big] < 0 ? -1.0 : 1.0) / std::sqrt(norm2);
    for (int j = 0; j < n; ++j) dst[j] = src[j] * scale;
    eigenvalues[r] = d[order[r]];
  }
  return absl::OkStatus();
}

}  // namespace adaptcache
