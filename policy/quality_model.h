// Expected quality drop of an entry stored in a config (DESIGN.md §5):
//
//   qloss = calibration(proxy)
//
// where proxy is the codec's cheap per-entry distortion estimate and the calibration is
// a monotone piecewise-linear curve per config name or per codec family, produced
// offline by the quality-profiling tool and loaded from JSON (format in
// docs/optimizer.md). Without a curve for a config, the proxy is used as is. raw is
// lossless: its loss is always 0.
//
// Thread safety: immutable after creation; const methods may be called concurrently.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/container.h"

namespace adaptcache::policy {

// A monotone non-decreasing piecewise-linear map on [0, inf): linear from (0, 0) to the
// first point (constant y0 when x0 == 0), through the points, then continued with the
// last segment's slope (flat with a single point).
class CalibrationCurve {
 public:
  // Points sorted by strictly increasing x >= 0, y >= 0 non-decreasing, all finite, at
  // least one point.
  static absl::StatusOr<CalibrationCurve> Create(std::vector<std::pair<double, double>> points);
  double operator()(double proxy) const;
  const std::vector<std::pair<double, double>>& points() const { return points_; }

 private:
  std::vector<std::pair<double, double>> points_;
};

class QualityModel {
 public:
  // No calibration: loss = proxy.
  QualityModel() = default;
  // Parses the calibration JSON (docs/optimizer.md). Errors name the offending curve.
  static absl::StatusOr<QualityModel> FromJson(std::string_view json);
  // Reads and parses a calibration file (a small read; no other I/O in this library).
  static absl::StatusOr<QualityModel> FromFile(const std::string& path);

  // Expected quality drop for `proxy` in config `config_name` of `family`. The curve of
  // the config name wins over the family's. A negative proxy counts as 0; a NaN proxy
  // gives +inf (unknown quality is never preferred).
  double ExpectedLoss(std::string_view config_name, CodecId family, double proxy) const;

  size_t curve_count() const { return by_config_.size() + by_family_.size(); }

 private:
  std::vector<std::pair<std::string, CalibrationCurve>> by_config_;
  std::vector<std::pair<CodecId, CalibrationCurve>> by_family_;
};

}  // namespace adaptcache::policy
