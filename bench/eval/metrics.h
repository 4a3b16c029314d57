// Headline metrics of the ground-truth evaluation (docs/evaluation.md, "Headline metrics"):
// comparisons of a policy point (loss q, delay d) against the static configs' points,
// and Student-t confidence intervals over seeds. Thread safety: pure functions.
#pragma once

#include <optional>
#include <vector>

namespace adaptcache::eval {

struct QD {
  double q = 0;  // mean ground-truth loss
  double d = 0;  // mean delay, seconds
};

// Lower convex hull of `pts` in the (q, d) plane restricted to its non-increasing part:
// the delay any time-sharing of the points reaches at a given loss budget. Sorted by q
// ascending, d strictly descending, from the least-loss point (the cheapest among ties)
// to the least-delay point.
std::vector<QD> LowerHull(std::vector<QD> pts);
// The hull's delay at loss q: linear between hull points; the least delay at q beyond the
// last point (a loss budget above it is met by that point); nullopt below the first point.
std::optional<double> HullDelayAt(const std::vector<QD>& hull, double q);
// The hull's loss at delay d (time-sharing at equal delay); nullopt below the least delay,
// the first point's loss above its delay.
std::optional<double> HullLossAt(const std::vector<QD>& hull, double d);

// The single point with the least delay among those with loss <= q (+1e-12): the best
// single static config at equal-or-better quality. nullopt if none.
std::optional<QD> CheapestAtLeastAsGood(const std::vector<QD>& pts, double q);
// The single point with the least loss among those with delay <= d (+1e-15 s).
std::optional<QD> BestWithinDelay(const std::vector<QD>& pts, double d);

// Two-sided 95% Student-t interval of the mean: mean -+ t(0.975, n-1) * sd / sqrt(n).
// n = 1: lo = hi = mean. n = 0: all NaN.
struct Interval {
  double mean = 0, lo = 0, hi = 0;
  int n = 0;
};
Interval TInterval95(const std::vector<double>& x);
double StudentT975(int df);

}  // namespace adaptcache::eval
