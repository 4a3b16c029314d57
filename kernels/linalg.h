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

#include "absl/status/status.h"

namespace adaptcache {

// Largest n SymmetricEigen accepts (the feature dimension of one PCA).
inline constexpr int kMaxEigenDim = 4096;

// Decomposes the symmetric n x n matrix `a` (row-major; only its lower triangle is read,
// the whole span is used as scratch and destroyed) as a = V^T diag(w) V.
// On success `eigenvalues` (n) holds w in descending order and `eigenvectors` (n*n,
// row-major) holds eigenvector i in row i. Errors: bad sizes, non-finite input, or no
// convergence (not expected for finite input).
absl::Status SymmetricEigen(int n, std::span<double> a, std::span<double> eigenvalues,
                            std::span<double> eigenvectors);

}  // namespace adaptcache
