#include "bench/eval/metrics.h"

#include <algorithm>
#include <cmath>

namespace adaptcache::eval {

std::vector<QD> LowerHull(std::vector<QD> pts) {
  std::sort(pts.begin(), pts.end(), [](const QD& a, const QD& b) { return a.q != b.q ? a.q < b.q : a.d < b.d; });
  std::vector<QD> h;
  for (const QD& p : pts) {
    if (!h.empty() && p.d >= h.back().d) continue;  // not on the non-increasing part
    // Pop while the last point lies on or above the segment from h[-2] to p.
    while (h.size() >= 2) {
      const QD& a = h[h.size() - 2];
      const QD& b = h.back();
      const double cross = (b.q - a.q) * (p.d - a.d) - (b.d - a.d) * (p.q - a.q);
      if (cross <= 0) h.pop_back();
      else break;
    }
    h.push_back(p);
  }
  return h;
}

std::optional<double> HullDelayAt(const std::vector<QD>& h, double q) {
  if (h.empty() || q < h.front().q - 1e-12) return std::nullopt;
  if (q >= h.back().q) return h.back().d;
  for (size_t i = 0; i + 1 < h.size(); ++i) {
    if (q <= h[i + 1].q) {
      const double t = (q - h[i].q) / (h[i + 1].q - h[i].q);
      return h[i].d + t * (h[i + 1].d - h[i].d);
    }
  }
  return h.back().d;
}

std::optional<double> HullLossAt(const std::vector<QD>& h, double d) {
  if (h.empty() || d < h.back().d - 1e-15) return std::nullopt;
  if (d >= h.front().d) return h.front().q;
  for (size_t i = 0; i + 1 < h.size(); ++i) {
    if (d >= h[i + 1].d) {
      const double t = (h[i].d - d) / (h[i].d - h[i + 1].d);
      return h[i].q + t * (h[i + 1].q - h[i].q);
    }
  }
  return h.back().q;
}

std::optional<QD> CheapestAtLeastAsGood(const std::vector<QD>& pts, double q) {
  std::optional<QD> best;
  for (const QD& p : pts) {
    if (p.q <= q + 1e-12 && (!best || p.d < best->d)) best = p;
  }
  return best;
}

std::optional<QD> BestWithinDelay(const std::vector<QD>& pts, double d) {
  std::optional<QD> best;
  for (const QD& p : pts) {
    if (p.d <= d + 1e-15 && (!best || p.q < best->q || (p.q == best->q && p.d < best->d))) best = p;
  }
  return best;
}

double StudentT975(int df) {
  static const double t[] = {0,      12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                             2.201,  2.179,  2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                             2.080,  2.074,  2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  if (df <= 0) return NAN;
  if (df <= 30) return t[df];
  return 1.960 + 2.4 / df;  // within 0.003 of the exact quantile above 30
}

Interval TInterval95(const std::vector<double>& x) {
  Interval r;
  r.n = static_cast<int>(x.size());
  if (x.empty()) {
    r.mean = r.lo = r.hi = NAN;
    return r;
  }
  double s = 0;
  for (double v : x) s += v;
  r.mean = s / x.size();
  if (x.size() == 1) {
    r.lo = r.hi = r.mean;
    return r;
  }
  double ss = 0;
  for (double v : x) ss += (v - r.mean) * (v - r.mean);
  const double sd = std::sqrt(ss / (x.size() - 1));
  const double half = StudentT975(r.n - 1) * sd / std::sqrt(static_cast<double>(x.size()));
  r.lo = r.mean - half;
  r.hi = r.mean + half;
  return r;
}

}  // namespace adaptcache::eval
