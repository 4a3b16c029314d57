// PolicyRunnerOptionsFrom: the runner's options from the daemon config, validated.
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/policy_runner.h"

namespace adaptcache::server {
namespace {

absl::StatusOr<double> ParseNumber(const std::string& what, const std::string& v) {
  if (v == "inf") return std::numeric_limits<double>::infinity();
  double d = 0;
  if (!absl::SimpleAtod(v, &d) || std::isnan(d)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", v, "' is not a number"));
  }
  return d;
}

}  // namespace

namespace {
// Used until (or when nothing) measures the remote link.
const std::string kDefaultRemoteLatencyUs = "500";
const std::string kDefaultRemoteGbps = "1";
}  // namespace

absl::StatusOr<PolicyRunnerOptions> PolicyRunnerOptionsFrom(const ServerConfig& cfg) {
  PolicyRunnerOptions o;
  o.policy = cfg.policy;
  if (o.policy != "adaptive" && o.policy != "lru-raw" && o.policy != "greedy-downgrade" &&
      o.policy.rfind("static:", 0) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("unknown policy '", o.policy, "'"));
  }
  for (absl::string_view part : absl::StrSplit(cfg.policy_configs, ',', absl::SkipWhitespace())) {
    std::string name(absl::StripAsciiWhitespace(part));
    if (auto c = ParseCodecConfig(name); !c.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("policy configs: '", name, "': ",
                                                     std::string(c.status().message())));
    }
    o.configs.push_back(name);
  }
  auto alpha = ParseNumber("policy alpha", cfg.policy_alpha);
  if (!alpha.ok()) return alpha.status();
  auto max_loss = ParseNumber("policy max_loss", cfg.policy_max_loss);
  if (!max_loss.ok()) return max_loss.status();
  auto avg_loss = ParseNumber("policy avg_loss", cfg.policy_avg_loss);
  if (!avg_loss.ok()) return avg_loss.status();
  if (!(*alpha >= 0) || std::isinf(*alpha)) {
    return absl::InvalidArgumentError("policy alpha must be finite and >= 0");
  }
  if (!(*max_loss >= 0)) return absl::InvalidArgumentError("policy max_loss must be >= 0");
  o.budget.alpha = *alpha;
  o.budget.max_loss = *max_loss;
  o.budget.avg_loss = std::isinf(*avg_loss) ? -1.0 : *avg_loss;
  // Per-namespace budgets: [namespaces."NS"] alpha / max_loss / avg_loss over [policy].
  for (const auto& [name, ns] : cfg.namespaces) {
    if (ns.alpha.empty() && ns.max_loss.empty() && ns.avg_loss.empty()) continue;
    policy::QualityBudget b = o.budget;
    const std::string what = absl::StrCat("namespaces.\"", name, "\".");
    if (!ns.alpha.empty()) {
      auto v = ParseNumber(what + "alpha", ns.alpha);
      if (!v.ok()) return v.status();
      if (!(*v >= 0) || std::isinf(*v)) return absl::InvalidArgumentError(what + "alpha must be finite and >= 0");
      b.alpha = *v;
    }
    if (!ns.max_loss.empty()) {
      auto v = ParseNumber(what + "max_loss", ns.max_loss);
      if (!v.ok()) return v.status();
      if (!(*v >= 0)) return absl::InvalidArgumentError(what + "max_loss must be >= 0");
      b.max_loss = *v;
    }
    if (!ns.avg_loss.empty()) {
      auto v = ParseNumber(what + "avg_loss", ns.avg_loss);
      if (!v.ok()) return v.status();
      b.avg_loss = std::isinf(*v) ? -1.0 : *v;
    }
    o.ns_budgets[NamespaceId(name)] = b;
  }
  o.calibration_file = cfg.policy_calibration;
  o.interval = std::chrono::milliseconds(cfg.policy_interval_ms);
  o.mover.cpu_bytes_per_s = cfg.mover_cpu_budget;
  o.mover.ssd_bytes_per_s = cfg.mover_ssd_write_budget;
  o.mover.keep_master = cfg.mover_keep_master;
  o.transcode_puts = cfg.policy_admission;
  // "auto": the remote link measured at start-up fills them in (PolicyRunner::Start).
  o.remote_latency_auto = cfg.policy_remote_latency_us == "auto";
  o.remote_bandwidth_auto = cfg.policy_remote_gbps == "auto";
  o.delay.remote_backs_misses = cfg.RemoteOn() && cfg.remote_write_mode == "write-through";
  // The delay model: every figure finite and > 0 (latencies >= 0).
  struct {
    const char* what;
    const std::string& v;
    double scale;
    double* out;
    bool allow_zero;
  } delay[] = {
      {"policy dram_latency_us", cfg.policy_dram_latency_us, 1e-6, &o.delay.dram.latency_s, true},
      {"policy dram_gbps", cfg.policy_dram_gbps, 1e9, &o.delay.dram.bandwidth_Bps, false},
      {"policy ssd_latency_us", cfg.policy_ssd_latency_us, 1e-6, &o.delay.ssd.latency_s, true},
      {"policy ssd_gbps", cfg.policy_ssd_gbps, 1e9, &o.delay.ssd.bandwidth_Bps, false},
      {"policy recompute_us_per_token", cfg.policy_recompute_us_per_token, 1e-6,
       &o.delay.recompute_s_per_token, true},
      {"policy remote_latency_us", o.remote_latency_auto ? kDefaultRemoteLatencyUs : cfg.policy_remote_latency_us,
       1e-6, &o.delay.remote.latency_s, true},
      {"policy remote_gbps", o.remote_bandwidth_auto ? kDefaultRemoteGbps : cfg.policy_remote_gbps, 1e9,
       &o.delay.remote.bandwidth_Bps, false},
  };
  for (const auto& d : delay) {
    auto v = ParseNumber(d.what, d.v);
    if (!v.ok()) return v.status();
    if (!std::isfinite(*v) || *v < 0 || (!d.allow_zero && *v == 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(d.what, " must be finite and ", d.allow_zero ? ">= 0" : "> 0"));
    }
    *d.out = *v * d.scale;
  }
  if (!cfg.policy_decode_csv.empty()) {
    auto gbs = policy::ReadDecodeCsv(cfg.policy_decode_csv);
    if (!gbs.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("policy decode_csv: ", std::string(gbs.status().message())));
    }
    const auto fam = policy::FamilyDecodeBps(*gbs, o.configs);  // all when none configured
    for (size_t f = 1; f < fam.size(); ++f) {
      if (fam[f] > 0) o.delay.decode_Bps[f] = fam[f];
    }
  }
  return o;
}

}  // namespace adaptcache::server
