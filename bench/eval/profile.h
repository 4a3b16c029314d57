// Per-config figures the evaluation needs, measured with the real codec library on
// synthetic KV tensors (docs/evaluation.md): stored size ratio, the quality proxy per
// template tensor (kernels/quality_proxy.h) mapped through the quality model, and the
// CPU decode throughput.
//
// Templates: `templates` KV tensors of a scaled shape (default [2][2][256][8][128] bf16,
// 2 MiB) with the traits codecs react to (per-channel key outliers, low-rank structure,
// attention sinks and heavy-hitter tokens), their difficulty (rank, noise, outliers)
// varying across templates. Each trace chunk is assigned a template by hashing its id,
// so per-entry quality differs the way real chunks do. The synthetic data stands in
// for real KV until the quality helper's calibration file exists; say so in results.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/kv_shape.h"
#include "kernels/codec.h"
#include "policy/quality_model.h"

namespace adaptcache::eval {

struct ConfigProfile {
  std::string name;
  CodecConfig config;
  double ratio = 1;                  // stored bytes / raw bytes (mean over templates)
  double cpu_decode_GBps = 0;        // decoded bytes per second, one thread, median
  std::vector<double> proxy;         // per template
  std::vector<double> qloss;         // per template, through the quality model
};

struct ProfileSet {
  KvShape shape;
  uint32_t templates = 0;
  std::vector<ConfigProfile> configs;  // raw first
};

struct ProfileOptions {
  KvShape shape{2, 256, 8, 128, DType::kBF16};
  uint32_t templates = 8;
  uint32_t decode_reps = 3;
  uint64_t seed = 7;
  std::vector<CodecConfig> configs;  // empty = DefaultConfigSpace()
};

// Fills one synthetic KV tensor (shape.Bytes() bytes) for template `index`.
std::vector<std::byte> SyntheticKv(const KvShape& shape, uint32_t index, uint64_t seed);

absl::StatusOr<ProfileSet> BuildProfiles(const ProfileOptions& options,
                                         const policy::QualityModel& quality);

}  // namespace adaptcache::eval
