#include "server/mover.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/status_kinds.h"
#include "kernels/codec.h"

namespace adaptcache::server {
namespace {

using policy::MoveKind;

constexpr size_t kMaxErrors = 8;

}  // namespace

const char* MoveResultName(MoveResult r) {
  switch (r) {
    case MoveResult::kDone: return "done";
    case MoveResult::kStale: return "stale";
    case MoveResult::kLeased: return "leased";
    case MoveResult::kNoSpace: return "no_space";
    case MoveResult::kBudget: return "budget";
    case MoveResult::kFailed: return "failed";
  }
  return "unknown";
}

ByteBudget::ByteBudget(uint64_t bytes_per_s, double burst_s)
    : rate_(bytes_per_s),
      cap_(static_cast<double>(bytes_per_s) * burst_s),
      tokens_(cap_),
      last_(std::chrono::steady_clock::now()) {}

void ByteBudget::Refill(std::chrono::steady_clock::time_point now) {
  if (rate_ == 0) return;
  const double dt = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  if (dt > 0) tokens_ = std::min(cap_, tokens_ + dt * static_cast<double>(rate_));
}

Mover::Mover(TierManager* tm, MoverOptions opts)
    : tm_(tm), opts_(opts), cpu_(opts.cpu_bytes_per_s), ssd_(opts.ssd_bytes_per_s) {}

MoverReport Mover::Execute(const policy::PolicyInput& in, const policy::PlacementPlan& plan,
                           const std::vector<MoveSubject>& subjects,
                           const std::atomic<bool>& stop) {
  MoverReport report;
  const auto now = std::chrono::steady_clock::now();
  cpu_.Refill(now);
  ssd_.Refill(now);
  for (const policy::Move& m : plan.moves) {
    if (stop.load(std::memory_order_relaxed)) break;
    if (m.entry >= subjects.size()) continue;  // cannot happen with a checked plan
    const MoveResult r = RunOne(in, m, subjects[m.entry], &report);
    ++report.counts[static_cast<int>(m.kind)][static_cast<int>(r)];
  }
  return report;
}

MoveResult Mover::RunOne(const policy::PolicyInput& in, const policy::Move& m,
                         const MoveSubject& subj, MoverReport* report) {
  // Budgets first: a deferred move costs nothing.
  const bool writes_ssd =
      m.kind == MoveKind::kDemote ||
      (m.kind == MoveKind::kTranscode && (m.to.tier == Tier::kSsd || opts_.keep_master));
  if (m.kind == MoveKind::kTranscode && !cpu_.Available()) return MoveResult::kBudget;
  if (writes_ssd && tm_->HasSsd() && !ssd_.Available()) return MoveResult::kBudget;

  // The entry must be as the plan saw it, and unleased.
  const Location loc = tm_->Locate(subj.key);
  if (loc.tier != m.from.tier || loc.meta.crc32c != subj.crc32c) {
    return MoveResult::kStale;
  }
  if (tm_->DramLeases(subj.key) > 0) return MoveResult::kLeased;
  if (m.dram_delta > 0) {
    const DramTierStats ds = tm_->DramStats();
    if (ds.used_bytes + static_cast<uint64_t>(m.dram_delta) > ds.capacity_bytes) {
      return MoveResult::kNoSpace;
    }
  }

  absl::Status st;
  switch (m.kind) {
    case MoveKind::kEvict:
      st = tm_->Evict(subj.key);
      break;
    case MoveKind::kDemote:
      st = tm_->Demote(subj.key, /*bypass_admission=*/true);
      if (st.ok() && !loc.on_ssd) {
        ssd_.Charge(loc.meta.stored_bytes);
        report->ssd_write_bytes += loc.meta.stored_bytes;
      }
      break;
    case MoveKind::kPromote:
      st = tm_->Promote(subj.key);
      break;
    case MoveKind::kTranscode: {
      const float est = in.QLoss(m.entry, m.to.config);
      uint32_t crc = 0;
      st = Transcode(subj.key, in.configs[m.to.config].name, m.to.tier, est,
                     std::nullopt, report, &crc);
      if (st.ok()) report->installed.emplace_back(m.entry, crc);
      break;
    }
  }
  if (st.ok()) return MoveResult::kDone;
  if (IsLeased(st)) return MoveResult::kLeased;
  if (absl::IsAborted(st) || absl::IsNotFound(st)) return MoveResult::kStale;
  if (report->errors.size() < kMaxErrors) {
    report->errors.push_back(absl::StrCat(policy::MoveKindName(m.kind), " ", subj.key.key.ToHex(),
                                          ": ", std::string(st.message())));
  }
  return MoveResult::kFailed;
}

absl::Status Mover::Transcode(const EntryKey& key, const std::string& config, Tier tier,
                              float est_quality_loss, std::optional<uint32_t> expected_crc,
                              MoverReport* report, uint32_t* new_crc, bool allow_master) {
  auto cfg = ParseCodecConfig(config);
  if (!cfg.ok()) return cfg.status();
  auto best = tm_->ReadBest(key);
  if (!best.ok()) return best.status();
  const uint32_t best_crc = Crc32c(best->container.data(), best->container.size());
  if (expected_crc && *expected_crc != best_crc) {
    return absl::AbortedError("entry changed since it was planned");
  }
  const KvShape shape = best->meta.shape;
  if (auto st = CheckApplicable(*cfg, shape); !st.ok()) return st;
  // A lossless label promises the exact bytes that were put: never derive one from a
  // lossy copy (the plan may have counted on a master copy that the SSD has since lost).
  const bool best_lossless = best->master || best->meta.codec_family == CodecId::kRaw;
  if (cfg->family == CodecId::kRaw && !best_lossless) {
    return absl::AbortedError("only a lossy copy is left; it cannot become raw again");
  }

  std::vector<std::byte> encoded;
  const bool same = best->meta.codec == config;
  if (same) {
    encoded = std::move(best->container);  // e.g. back to the master's own config
  } else {
    std::vector<std::byte> raw(shape.Bytes());
    if (auto st = Decode(best->container, raw); !st.ok()) {
      return absl::DataLossError(
          absl::StrCat("best copy does not decode: ", std::string(st.message())));
    }
    auto enc = EncodeToVector(*cfg, shape, raw);
    if (!enc.ok()) return enc.status();
    encoded = std::move(*enc);
    cpu_.Charge(shape.Bytes());
    report->transcode_raw_bytes += shape.Bytes();
  }
  EntryMeta meta;
  meta.shape = shape;
  meta.codec_family = cfg->family;
  meta.codec = config;
  meta.raw_bytes = shape.Bytes();
  meta.est_quality_loss = est_quality_loss;

  ReplaceOptions ro;
  ro.target = tier;
  ro.if_crc32c = best_crc;
  ro.bypass_admission = true;
  // Compressing a lossless copy in DRAM: keep the lossless one on SSD to come back to,
  // always when it is already there (a durable Put's copy costs nothing to keep, and
  // erasing it would leave the entry lossy and in DRAM only), else when asked.
  const bool on_ssd = tm_->Locate(key).on_ssd;
  ro.keep_master = tier == Tier::kDram && tm_->HasSsd() && !same && best_lossless &&
                   (on_ssd || (opts_.keep_master && allow_master));
  if (ro.keep_master && best->tier != Tier::kSsd && !on_ssd) {
    // Replace writes the current copy to SSD first.
    ssd_.Charge(best->meta.stored_bytes);
    report->ssd_write_bytes += best->meta.stored_bytes;
  }
  if (tier == Tier::kSsd) {
    ssd_.Charge(encoded.size());
    report->ssd_write_bytes += encoded.size();
  }
  if (new_crc != nullptr) *new_crc = Crc32c(encoded.data(), encoded.size());
  return tm_->Replace(key, encoded, meta, ro);
}

}  // namespace adaptcache::server
