// What the config files (config_settings.cc, config_toml.cc, config_flags.cc,
// config_probe.cc) share; not for use outside them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "server/config.h"

namespace adaptcache::server {

inline constexpr uint64_t kKiB = 1ull << 10;
inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint64_t kGiB = 1ull << 30;

// A codec config name that parses and validates (kernels/codec.h).
absl::Status CheckCodec(const std::string& v);
// A namespace's quality budget value: alpha finite >= 0, max_loss >= 0 or "inf",
// avg_loss finite (< 0 = none).
absl::Status CheckNamespaceBudget(std::string_view key, const std::string& v);

// A TOML basic string holding `v`.
std::string TomlQuote(std::string_view v);
// The setting's value in `c` as a TOML literal.
std::string TomlLiteral(const Setting& s, const ServerConfig& c);

}  // namespace adaptcache::server
