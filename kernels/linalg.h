// Small dense linear algebra for the codecs: symmetric eigen-decomposition (PCA bases).
//
// Householder tridiagonalisation followed by the implicit symmetric QR algorithm with
// Wilkinson shifts, O(n^3), in double precision. Results are deterministic (same input,
// same output bits on the same build) and normalised: eigenvalues in descending order,
// each eigenvector with unit norm and its largest-magnitude component positive. Thread
// safe (no shared state).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace adaptcache {

// Largest n SymmetricEigen accepts (the feature dimension of one PCA).
inline constexpr int kMaxEigenDim = 4096;

// Two-phase solver for PCA, where only the leading eigenvectors are needed and how many
// is decided from the eigenvalues: Compute() costs one tridiagonalisation plus O(n^2);
// Eigenvectors() costs O(n^2) per vector (inverse iteration on the tridiagonal matrix,
// re-orthogonalised against the earlier vectors, then the Householder back-transform).
// Not thread safe per object; separate objects are independent.
class SymmetricEigenSolver {
 public:
  // Decomposes the symmetric n x n matrix `a` (row-major; only its lower triangle is
  // read; the span is used as scratch and destroyed). Errors: bad sizes, non-finite input,
  // no convergence (not expected for finite input).
  absl::Status Compute(int n, std::span<double> a);
  int n() const { return n_; }
  // All eigenvalues, descending. Valid after a successful Compute().
  std::span<const double> eigenvalues() const { return values_; }
  // Writes the unit eigenvectors of eigenvalues [0, count) as rows of `out` (count * n).
  void Eigenvectors(int count, std::span<double> out) const;

 private:
  int n_ = 0;
  std::vector<double> householder_;  // row k: reflection vector k (entries k+1..n-1)
  std::vector<double> beta_;
  std::vector<double> diag_, offdiag_;  // the tridiagonal matrix
  std::vector<double> values_;
};

// Decomposes the symmetric n x n matrix `a` (row-major; only its lower triangle is read,
// the whole span is used as scratch and destroyed) as a = V^T diag(w) V.
// On success `eigenvalues` (n) holds w in descending order and `eigenvectors` (n*n,
// row-major) holds eigenvector i in row i. Errors: bad sizes, non-finite input, or no
// convergence (not expected for finite input).
absl::Status SymmetricEigen(int n, std::span<double> a, std::span<double> eigenvalues,
                            std::span<double> eigenvectors);

}  // namespace adaptcache
