// The policy runner's quality estimation: per entry and config, the expected loss of
// re-encoding the entry's best copy (kernels/quality_proxy.h through the calibration,
// policy/quality_model.h), hottest entries first under the CPU budget.
#include <algorithm>
#include <cmath>
#include <limits>

#include "common/crc32c.h"
#include "kernels/quality_proxy.h"
#include "server/policy_runner_internal.h"
#include "spdlog/spdlog.h"

namespace adaptcache::server {

const PolicyRunner::Estimate* PolicyRunner::CurrentEstimate(const Row& r) const {
  auto it = estimates_.find(r.key);
  if (it == estimates_.end() || it->second.qloss.size() != configs_.size()) return nullptr;
  const std::vector<uint32_t>& crcs = it->second.crcs;
  return std::find(crcs.begin(), crcs.end(), r.loc.meta.crc32c) != crcs.end() ? &it->second : nullptr;
}

absl::Status PolicyRunner::EstimateEntry(const EntryKey& key, Estimate* out, uint64_t* cost) {
  auto best = tm_->ReadBest(key);
  if (!best.ok()) return best.status();
  const KvShape shape = best->meta.shape;
  if (auto st = ValidateShape(shape); !st.ok()) return st;
  std::vector<std::byte> raw(shape.Bytes());
  if (auto st = Decode(best->container, raw); !st.ok()) return st;
  *cost += shape.Bytes();
  auto ref = QualityReference::Build(shape, raw, SideData{});
  if (!ref.ok()) return ref.status();
  const bool lossless = best->master || best->meta.codec_family == CodecId::kRaw;
  out->base = lossless ? 0.f : std::max(0.f, best->meta.est_quality_loss);
  out->qloss.assign(configs_.size(), std::numeric_limits<float>::quiet_NaN());
  out->crcs = {Crc32c(best->container.data(), best->container.size())};
  std::vector<uint64_t>& sizes = SizesFor(shape);
  std::vector<std::byte> decoded(shape.Bytes());
  for (size_t c = 0; c < configs_.size(); ++c) {
    const CodecConfig& cfg = configs_[c];
    if (!CheckApplicable(cfg, shape).ok()) {
      sizes[c] = 0;
      continue;
    }
    if (config_names_[c] == best->meta.codec) {
      out->qloss[c] = out->base;
      if (sizes[c] == kUnknownSize) sizes[c] = best->container.size();
      continue;
    }
    if (cfg.family == CodecId::kRaw) {  // never reachable from a lossy copy; always 0
      out->qloss[c] = 0.f;
      if (sizes[c] == kUnknownSize) sizes[c] = MaxEncodedBytes(cfg, shape);
      continue;
    }
    auto enc = EncodeToVector(cfg, shape, raw);
    if (!enc.ok()) return enc.status();
    if (sizes[c] == kUnknownSize) sizes[c] = enc->size();
    if (auto st = Decode(*enc, decoded); !st.ok()) return st;
    std::vector<uint8_t> kept;
    if (cfg.family == CodecId::kDrop) {
      auto tokens = DecodeKeptTokens(*enc);
      if (!tokens.ok()) return tokens.status();
      kept.assign(shape.tokens, 0);
      for (uint32_t t : *tokens) kept[t] = 1;
    }
    auto rep = ref->Evaluate(decoded, kept);
    if (!rep.ok()) return rep.status();
    *cost += shape.Bytes();
    const double loss = quality_.ExpectedLoss(config_names_[c], cfg.family, rep->proxy);
    out->qloss[c] = static_cast<float>(
        std::min<double>(kUnknownLoss, out->base + (std::isfinite(loss) ? loss : kUnknownLoss)));
  }
  return absl::OkStatus();
}

void PolicyRunner::EstimateHottest(const std::vector<Row>& rows, CycleReport* report) {
  std::vector<size_t> need;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (CurrentEstimate(rows[i]) == nullptr) need.push_back(i);
  }
  std::sort(need.begin(), need.end(), [&](size_t a, size_t b) { return rows[a].freq > rows[b].freq; });
  ByteBudget& cpu = mover_->cpu_budget();
  cpu.Refill(std::chrono::steady_clock::now());
  for (size_t i : need) {
    if (report->estimated + report->estimate_errors >= opts_.estimates_per_plan || !cpu.Available()) {
      break;
    }
    Estimate est;
    uint64_t cost = 0;
    auto st = EstimateEntry(rows[i].key, &est, &cost);
    cpu.Charge(cost);
    if (!st.ok()) {
      ++report->estimate_errors;
      spdlog::debug("quality estimate failed: {}", std::string(st.message()));
      continue;
    }
    if (std::find(est.crcs.begin(), est.crcs.end(), rows[i].loc.meta.crc32c) == est.crcs.end()) {
      est.crcs.push_back(rows[i].loc.meta.crc32c);  // a lossy copy served beside a master
    }
    estimates_[rows[i].key] = std::move(est);
    ++report->estimated;
  }
  if (report->estimated > 0) ++quality_epoch_;
}

}  // namespace adaptcache::server
