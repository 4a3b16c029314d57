// Expected delay of serving one entry from a tier in a config (DESIGN.md §7):
//
//   delay(tier, config) = tier.latency + stored_bytes / tier.bandwidth
//                         + decode_launch + raw_bytes / decode_throughput(family)
//   miss cost           = recompute_per_token * tokens
//
// raw decodes for free (no kernel). Defaults are plausible figures for an H100 host with
// PCIe Gen5 and a Gen4 NVMe SSD, to be replaced by measured ones (docs/optimizer.md
// lists them and where each comes from). Thread safety: immutable after Create; all
// const methods may be called concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tier.h"
#include "kernels/container.h"

namespace adaptcache::policy {

struct TierParams {
  double latency_s = 0;      // fixed cost per load (RPC, lease, DMA setup, I/O submit)
  double bandwidth_Bps = 0;  // end-to-end bytes/s into GPU memory
};

struct DelayModelOptions {
  // Pinned shared memory -> GPU over PCIe Gen5 x16 (~25 GB/s effective).
  TierParams dram{20e-6, 25e9};
  // NVMe Gen4 read with O_DIRECT, then the same PCIe hop (~5 GB/s end to end).
  TierParams ssd{100e-6, 5e9};
  // The remote tier (Redis over the network, then the same PCIe hop). With
  // remote_backs_misses, an entry the local tiers drop is still a remote hit (the daemon
  // writes its Puts through), so a miss costs min(recompute, a remote load of the raw
  // bytes) instead of the recompute.
  TierParams remote{500e-6, 1e9};
  bool remote_backs_misses = false;
  // Prefill of an 8B model on one H100 at long context: ~20k tokens/s.
  double recompute_s_per_token = 50e-6;
  // GPU decode throughput per codec family in decoded (raw) bytes/s, indexed by CodecId.
  // raw: 0 means "no decode step". Memory-bound kernels on HBM3: fp8 and quant run near
  // copy speed, drop adds a scatter, lowrank a small GEMM per head.
  std::array<double, kMaxCodecId + 1> decode_Bps{0, 1.0e12, 6.0e11, 8.0e11, 1.5e11};
  double decode_launch_s = 10e-6;  // per entry, families other than raw
};

// GPU decode speeds measured by the CUDA benchmark (bench/results/cuda_decode.csv, the
// "config,ratio,decode_ms,decode_gbs,..." table): decoded GB/s per config name. NotFound
// when the file cannot be read, InvalidArgument when it has no such table.
absl::StatusOr<std::map<std::string, double>> ReadDecodeCsv(const std::string& path);

// Per codec family (index = CodecId) the median speed in bytes/s over the measured configs
// of that family, restricted to `configs` when it is not empty; 0 where none was measured.
std::array<double, kMaxCodecId + 1> FamilyDecodeBps(const std::map<std::string, double>& gbs,
                                                    const std::vector<std::string>& configs = {});

class DelayModel {
 public:
  // Default options; always valid.
  DelayModel();
  // Every latency >= 0, every bandwidth > 0, all finite; decode_Bps[raw] ignored.
  static absl::StatusOr<DelayModel> Create(const DelayModelOptions& options);

  // Seconds to bring stored_bytes from `tier` into GPU memory. tier must not be kNone.
  double LoadDelay(Tier tier, uint64_t stored_bytes) const;
  // Seconds to decode an entry of raw_bytes from `family`.
  double DecodeDelay(CodecId family, uint64_t raw_bytes) const;
  double Delay(Tier tier, CodecId family, uint64_t stored_bytes, uint64_t raw_bytes) const {
    return LoadDelay(tier, stored_bytes) + DecodeDelay(family, raw_bytes);
  }
  // Cost of an entry no local tier holds: recompute, or a remote load (see above).
  double MissCost(uint32_t tokens, uint64_t raw_bytes) const;
  const DelayModelOptions& options() const { return options_; }

 private:
  explicit DelayModel(const DelayModelOptions& o) : options_(o) {}
  DelayModelOptions options_;
};

}  // namespace adaptcache::policy
