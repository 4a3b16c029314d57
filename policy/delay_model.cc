#include "policy/delay_model.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kernels/codec.h"

namespace adaptcache::policy {
namespace {

bool FiniteNonNeg(double v) { return std::isfinite(v) && v >= 0; }
bool FinitePos(double v) { return std::isfinite(v) && v > 0; }

absl::Status CheckTier(const char* name, const TierParams& t) {
  if (!FiniteNonNeg(t.latency_s)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".latency_s must be finite and >= 0"));
  }
  if (!FinitePos(t.bandwidth_Bps)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".bandwidth_Bps must be finite and > 0"));
  }
  return absl::OkStatus();
}

}  // namespace

DelayModel::DelayModel() : options_() {}

absl::StatusOr<DelayModel> DelayModel::Create(const DelayModelOptions& o) {
  if (auto st = CheckTier("dram", o.dram); !st.ok()) return st;
  if (auto st = CheckTier("ssd", o.ssd); !st.ok()) return st;
  if (auto st = CheckTier("remote", o.remote); !st.ok()) return st;
  if (!FiniteNonNeg(o.recompute_s_per_token)) {
    return absl::InvalidArgumentError("recompute_s_per_token must be finite and >= 0");
  }
  if (!FiniteNonNeg(o.decode_launch_s)) {
    return absl::InvalidArgumentError("decode_launch_s must be finite and >= 0");
  }
  for (size_t f = 1; f < o.decode_Bps.size(); ++f) {
    if (!FinitePos(o.decode_Bps[f])) {
      return absl::InvalidArgumentError(
          absl::StrCat("decode_Bps[", std::string(CodecFamilyName(static_cast<CodecId>(f))),
                       "] must be finite and > 0"));
    }
  }
  return DelayModel(o);
}

double DelayModel::LoadDelay(Tier tier, uint64_t stored_bytes) const {
  const TierParams& t = tier == Tier::kDram ? options_.dram
                       : tier == Tier::kSsd ? options_.ssd
                                            : options_.remote;
  return t.latency_s + static_cast<double>(stored_bytes) / t.bandwidth_Bps;
}

double DelayModel::MissCost(uint32_t tokens, uint64_t raw_bytes) const {
  const double recompute = options_.recompute_s_per_token * tokens;
  if (!options_.remote_backs_misses) return recompute;
  return std::min(recompute, LoadDelay(Tier::kRemote, raw_bytes));
}

double DelayModel::DecodeDelay(CodecId family, uint64_t raw_bytes) const {
  if (family == CodecId::kRaw) return 0;
  const size_t f = static_cast<size_t>(family);
  if (f >= options_.decode_Bps.size()) return 0;
  return options_.decode_launch_s + static_cast<double>(raw_bytes) / options_.decode_Bps[f];
}

absl::StatusOr<std::map<std::string, double>> ReadDecodeCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::map<std::string, double> out;
  std::string line;
  bool table = false;
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ',');
    if (!table) {
      table = f.size() >= 4 && f[0] == "config" && f[3] == "decode_gbs";
      continue;
    }
    double gbs;
    if (f.size() >= 4 && absl::SimpleAtod(f[3], &gbs) && std::isfinite(gbs) && gbs > 0) out[f[0]] = gbs;
  }
  if (!table) return absl::InvalidArgumentError(absl::StrCat(path, ": no config,...,decode_gbs table"));
  return out;
}

std::array<double, kMaxCodecId + 1> FamilyDecodeBps(const std::map<std::string, double>& gbs,
                                                    const std::vector<std::string>& configs) {
  std::array<std::vector<double>, kMaxCodecId + 1> v;
  for (const auto& [name, speed] : gbs) {
    if (!configs.empty() && std::find(configs.begin(), configs.end(), name) == configs.end()) continue;
    auto c = ParseCodecConfig(name);
    if (c.ok()) v[static_cast<size_t>(c->family)].push_back(speed * 1e9);
  }
  std::array<double, kMaxCodecId + 1> out{};
  for (size_t f = 0; f < v.size(); ++f) {
    if (v[f].empty()) continue;
    std::sort(v[f].begin(), v[f].end());
    out[f] = v[f][v[f].size() / 2];
  }
  return out;
}

}  // namespace adaptcache::policy
