#include "policy/quality_model.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "policy/json.h"

namespace adaptcache::policy {

absl::StatusOr<CalibrationCurve> CalibrationCurve::Create(std::vector<std::pair<double, double>> pts) {
  if (pts.empty()) return absl::InvalidArgumentError("calibration curve has no points");
  for (size_t i = 0; i < pts.size(); ++i) {
    const auto [x, y] = pts[i];
    if (!std::isfinite(x) || !std::isfinite(y) || x < 0 || y < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("point ", i, " must have finite x >= 0 and y >= 0"));
    }
    if (i > 0 && !(x > pts[i - 1].first)) {
      return absl::InvalidArgumentError(absl::StrCat("point ", i, ": x must increase strictly"));
    }
    if (i > 0 && y < pts[i - 1].second) {
      return absl::InvalidArgumentError(
          absl::StrCat("point ", i, ": y decreases (the curve must be monotone)"));
    }
  }
  CalibrationCurve c;
  c.points_ = std::move(pts);
  return c;
}

double CalibrationCurve::operator()(double x) const {
  if (std::isnan(x)) return HUGE_VAL;
  if (x < 0) x = 0;
  const auto& p = points_;
  if (x <= p[0].first) return p[0].first == 0 ? p[0].second : p[0].second * (x / p[0].first);
  for (size_t i = 1; i < p.size(); ++i) {
    if (x <= p[i].first) {
      const double t = (x - p[i - 1].first) / (p[i].first - p[i - 1].first);
      return p[i - 1].second + t * (p[i].second - p[i - 1].second);
    }
  }
  if (p.size() == 1) return p[0].second;
  const auto& a = p[p.size() - 2];
  const auto& b = p.back();
  return b.second + (x - b.first) * (b.second - a.second) / (b.first - a.first);
}

absl::StatusOr<QualityModel> QualityModel::FromJson(std::string_view text) {
  auto doc = ParseJson(text);
  if (!doc.ok()) return absl::InvalidArgumentError(absl::StrCat("calibration: ", std::string(doc.status().message())));
  auto err = [](std::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("calibration: ", std::string(what)));
  };
  if (doc->type != JsonValue::Type::kObject) return err("top level must be an object");
  for (const std::string& k : doc->keys) {
    if (k != "format" && k != "version" && k != "curves" && k != "comment") {
      return err(absl::StrCat("unknown key \"", k, "\""));
    }
  }
  if (const JsonValue* f = doc->Find("format");
      f && (f->type != JsonValue::Type::kString || f->string != "adaptcache-calibration")) {
    return err("\"format\" must be \"adaptcache-calibration\"");
  }
  const JsonValue* version = doc->Find("version");
  if (!version || version->type != JsonValue::Type::kNumber || version->number != 1) {
    return err("\"version\" must be 1");
  }
  const JsonValue* curves = doc->Find("curves");
  if (!curves || curves->type != JsonValue::Type::kArray) return err("\"curves\" must be an array");
  QualityModel m;
  for (size_t i = 0; i < curves->items.size(); ++i) {
    const JsonValue& c = curves->items[i];
    const std::string where = absl::StrCat("curves[", i, "]");
    if (c.type != JsonValue::Type::kObject) return err(absl::StrCat(where, " must be an object"));
    for (const std::string& k : c.keys) {
      if (k != "family" && k != "config" && k != "points" && k != "comment") {
        return err(absl::StrCat(where, ": unknown key \"", k, "\""));
      }
    }
    const JsonValue* fam = c.Find("family");
    const JsonValue* cfg = c.Find("config");
    if ((fam == nullptr) == (cfg == nullptr)) {
      return err(absl::StrCat(where, " needs exactly one of \"family\" or \"config\""));
    }
    const JsonValue* name = fam ? fam : cfg;
    if (name->type != JsonValue::Type::kString || name->string.empty()) {
      return err(absl::StrCat(where, ": the name must be a non-empty string"));
    }
    const JsonValue* pts = c.Find("points");
    if (!pts || pts->type != JsonValue::Type::kArray) {
      return err(absl::StrCat(where, ": \"points\" must be an array of [proxy, loss] pairs"));
    }
    std::vector<std::pair<double, double>> points;
    for (size_t j = 0; j < pts->items.size(); ++j) {
      const JsonValue& p = pts->items[j];
      if (p.type != JsonValue::Type::kArray || p.items.size() != 2 ||
          p.items[0].type != JsonValue::Type::kNumber || p.items[1].type != JsonValue::Type::kNumber) {
        return err(absl::StrCat(where, ".points[", j, "] must be [proxy, loss]"));
      }
      points.emplace_back(p.items[0].number, p.items[1].number);
    }
    auto curve = CalibrationCurve::Create(std::move(points));
    if (!curve.ok()) return err(absl::StrCat(where, ": ", std::string(curve.status().message())));
    if (fam) {
      CodecId id = CodecId::kRaw;
      bool found = false;
      for (uint8_t f = 0; f <= kMaxCodecId; ++f) {
        if (CodecFamilyName(static_cast<CodecId>(f)) == fam->string) {
          id = static_cast<CodecId>(f);
          found = true;
        }
      }
      if (!found) return err(absl::StrCat(where, ": unknown codec family \"", fam->string, "\""));
      for (const auto& [f, _] : m.by_family_) {
        if (f == id) return err(absl::StrCat(where, ": second curve for family \"", fam->string, "\""));
      }
      m.by_family_.emplace_back(id, std::move(*curve));
    } else {
      for (const auto& [n, _] : m.by_config_) {
        if (n == cfg->string) return err(absl::StrCat(where, ": second curve for config \"", n, "\""));
      }
      m.by_config_.emplace_back(cfg->string, std::move(*curve));
    }
  }
  return m;
}

absl::StatusOr<QualityModel> QualityModel::FromFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("calibration file ", path, " cannot be opened"));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return absl::DataLossError(absl::StrCat("reading calibration file ", path, " failed"));
  auto m = FromJson(ss.str());
  if (!m.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", std::string(m.status().message())));
  return m;
}

double QualityModel::ExpectedLoss(std::string_view config_name, CodecId family, double proxy) const {
  if (family == CodecId::kRaw) return 0;
  for (const auto& [name, curve] : by_config_) {
    if (name == config_name) return curve(proxy);
  }
  for (const auto& [f, curve] : by_family_) {
    if (f == family) return curve(proxy);
  }
  if (std::isnan(proxy)) return HUGE_VAL;
  return proxy < 0 ? 0 : proxy;
}

}  // namespace adaptcache::policy
