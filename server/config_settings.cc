// The settings table (AllSettings()): every setting's section, key, flag, help, default
// and checked setter; value syntax (sizes, host:port); and Validate().
#include "server/config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/key.h"
#include "kernels/codec.h"
#include "server/config_internal.h"

namespace adaptcache::server {
namespace {

constexpr uint64_t kMinPoolBytes = 4 * kMiB;
constexpr uint32_t kDayMs = 24u * 3600u * 1000u;

absl::Status SettingError(const Setting& s, const std::string& value, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("[", s.section, "] ", s.key, " (--", s.flag,
                                                 ") = '", value, "': ", std::string(why)));
}

absl::StatusOr<uint64_t> ParseUint(const std::string& text) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size()) {
    return absl::InvalidArgumentError("not a non-negative integer");
  }
  return v;
}

// Builders for the settings table. Each setter checks syntax and range.
template <typename T>
Setting UintSetting(std::string section, std::string key, std::string flag, std::string help,
                    T ServerConfig::*member, uint64_t lo, uint64_t hi) {
  Setting s{section, key, flag, SettingKind::kUint, help, nullptr, nullptr};
  s.set = [s, member, lo, hi](ServerConfig& c, const std::string& v) -> absl::Status {
    auto n = ParseUint(v);
    if (!n.ok()) return SettingError(s, v, std::string(n.status().message()));
    if (*n < lo || *n > hi) {
      return SettingError(s, v, absl::StrCat("must be in [", lo, ", ", hi, "]"));
    }
    c.*member = static_cast<T>(*n);
    return absl::OkStatus();
  };
  s.get = [member](const ServerConfig& c) { return std::to_string(c.*member); };
  return s;
}

Setting BytesSetting(std::string section, std::string key, std::string flag, std::string help,
                     uint64_t ServerConfig::*member, uint64_t lo, uint64_t hi,
                     bool allow_auto = false) {
  Setting s{section, key, flag, SettingKind::kBytes, help, nullptr, nullptr};
  s.set = [s, member, lo, hi, allow_auto](ServerConfig& c, const std::string& v) -> absl::Status {
    if (allow_auto && v == "auto") {
      c.*member = 0;
      return absl::OkStatus();
    }
    auto n = ParseByteSize(v);
    if (!n.ok()) return SettingError(s, v, std::string(n.status().message()));
    if (*n < lo || *n > hi) {
      return SettingError(s, v, absl::StrCat("must be in [", FormatByteSize(lo), ", ",
                                             FormatByteSize(hi), "]",
                                             allow_auto ? " or \"auto\"" : ""));
    }
    c.*member = *n;
    return absl::OkStatus();
  };
  s.get = [member, allow_auto](const ServerConfig& c) {
    if (allow_auto && c.*member == 0) return std::string("auto");
    return FormatByteSize(c.*member);
  };
  return s;
}

Setting BoolSetting(std::string section, std::string key, std::string flag, std::string help,
                    bool ServerConfig::*member) {
  Setting s{section, key, flag, SettingKind::kBool, help, nullptr, nullptr};
  s.set = [s, member](ServerConfig& c, const std::string& v) -> absl::Status {
    if (v == "true" || v == "1" || v == "yes" || v == "on") {
      c.*member = true;
    } else if (v == "false" || v == "0" || v == "no" || v == "off") {
      c.*member = false;
    } else {
      return SettingError(s, v, "must be true or false");
    }
    return absl::OkStatus();
  };
  s.get = [member](const ServerConfig& c) { return std::string(c.*member ? "true" : "false"); };
  return s;
}

Setting StringSetting(std::string section, std::string key, std::string flag, std::string help,
                      std::string ServerConfig::*member,
                      std::function<absl::Status(const std::string&)> check) {
  Setting s{section, key, flag, SettingKind::kString, help, nullptr, nullptr};
  s.set = [s, member, check](ServerConfig& c, const std::string& v) -> absl::Status {
    if (auto st = check(v); !st.ok()) return SettingError(s, v, std::string(st.message()));
    c.*member = v;
    return absl::OkStatus();
  };
  s.get = [member](const ServerConfig& c) { return c.*member; };
  return s;
}

absl::Status CheckListen(const std::string& v) {
  if (v.empty()) return absl::OkStatus();
  std::string host;
  int port = 0;
  return ParseHostPort(v, &host, &port);
}

absl::Status CheckSocket(const std::string& v) {
  if (v.empty()) return absl::OkStatus();
  if (v.front() != '/') return absl::InvalidArgumentError("must be an absolute path");
  if (v.size() >= 108) return absl::InvalidArgumentError("longer than a UDS path may be (107)");
  return absl::OkStatus();
}

absl::Status CheckAbsPathOrEmpty(const std::string& v) {
  if (!v.empty() && v.front() != '/') return absl::InvalidArgumentError("must be an absolute path");
  return absl::OkStatus();
}

absl::Status CheckAbsPath(const std::string& v) {
  if (v.empty() || v.front() != '/') return absl::InvalidArgumentError("must be an absolute path");
  return absl::OkStatus();
}

absl::Status CheckSsdDir(const std::string& v) {
  if (v == "auto") return absl::OkStatus();
  if (!v.empty() && v.front() != '/') {
    return absl::InvalidArgumentError("must be an absolute path, \"auto\" or \"\"");
  }
  return absl::OkStatus();
}

absl::Status CheckPoolName(const std::string& v) {
  if (v.empty() || v.size() > 64) return absl::InvalidArgumentError("must be 1..64 characters");
  for (char ch : v) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.') {
      return absl::InvalidArgumentError("only letters, digits, '-', '_' and '.' are allowed");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLogLevel(const std::string& v) {
  static const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  for (const char* l : kLevels) {
    if (v == l) return absl::OkStatus();
  }
  return absl::InvalidArgumentError("must be one of trace, debug, info, warn, error, critical, off");
}

std::vector<Setting> BuildSettings() {
  std::vector<Setting> s;
  s.push_back(StringSetting("server", "socket", "socket",
                            "Unix domain socket path (its directory is created 0700); \"\" = none",
                            &ServerConfig::socket, CheckSocket));
  s.push_back(StringSetting("server", "tcp_listen", "tcp-listen",
                            "TCP listen address host:port (TLS with tls_cert/tls_key, or "
                            "--insecure-tcp); \"\" = off",
                            &ServerConfig::tcp_listen, CheckListen));
  s.push_back(StringSetting("server", "tls_cert", "tls-cert",
                            "PEM certificate chain the TCP listener presents (TLS)",
                            &ServerConfig::tls_cert, CheckAbsPathOrEmpty));
  s.push_back(StringSetting("server", "tls_key", "tls-key", "PEM private key of tls_cert",
                            &ServerConfig::tls_key, CheckAbsPathOrEmpty));
  s.push_back(StringSetting("server", "tls_client_ca", "tls-client-ca",
                            "PEM CA bundle: TCP clients must present a certificate it signed "
                            "(mutual TLS); \"\" = no client certificates",
                            &ServerConfig::tls_client_ca, CheckAbsPathOrEmpty));
  s.push_back(BoolSetting("server", "insecure_tcp", "insecure-tcp",
                          "Serve tcp_listen without TLS: anyone who reaches the port can read "
                          "and delete entries (tokens travel in clear)",
                          &ServerConfig::insecure_tcp));
  s.push_back(StringSetting("server", "metrics_listen", "metrics-listen",
                            "Prometheus /metrics HTTP address host:port; port 0 = ephemeral; "
                            "\"\" = off",
                            &ServerConfig::metrics_listen, CheckListen));
  s.push_back(UintSetting("server", "threads", "threads",
                          "gRPC threads of the unary RPCs (Put and Get streams need none); "
                          "0 = max(32, 4 x cores)", &ServerConfig::threads, 0,
                          4096));
  s.push_back(UintSetting("server", "keepalive_ms", "keepalive-ms",
                          "HTTP/2 keepalive ping interval; 0 = no pings",
                          &ServerConfig::keepalive_ms, 0, kDayMs));
  s.push_back(UintSetting("server", "keepalive_timeout_ms", "keepalive-timeout-ms",
                          "Drop a connection whose keepalive ping is unanswered this long",
                          &ServerConfig::keepalive_timeout_ms, 1, kDayMs));
  s.push_back(UintSetting("server", "max_connection_idle_ms", "max-connection-idle-ms",
                          "Close client connections idle this long; 0 = never",
                          &ServerConfig::max_connection_idle_ms, 0, kDayMs));
  s.push_back(UintSetting("server", "max_connection_age_ms", "max-connection-age-ms",
                          "Ask clients to reconnect after this long (calls in flight get "
                          "max_stream_ms to finish); 0 = never",
                          &ServerConfig::max_connection_age_ms, 0, kDayMs));
  s.push_back(UintSetting("server", "max_streams_per_connection", "max-streams-per-connection",
                          "Concurrent calls one client connection may have open (more wait in "
                          "the client)",
                          &ServerConfig::max_streams_per_connection, 1, 1u << 20));
  s.push_back(StringSetting("server", "log_level", "log-level",
                            "trace, debug, info, warn, error, critical or off",
                            &ServerConfig::log_level, CheckLogLevel));
  s.push_back(StringSetting("server", "ready_file", "ready-file",
                            "File written (key=value lines) once the daemon serves; \"\" = none",
                            &ServerConfig::ready_file, CheckAbsPathOrEmpty));
  s.push_back(StringSetting("auth", "tenants_file", "tenants-file",
                            "TOML file of tenants (namespaces, uids/gids, shm, quotas); every "
                            "call must then identify a tenant; \"\" = single tenant",
                            &ServerConfig::tenants_file, CheckAbsPathOrEmpty));
  s.push_back(StringSetting("auth", "tokens_file", "tokens-file",
                            "Bearer tokens, one '<tenant> <token>' per line; reloaded on SIGHUP",
                            &ServerConfig::tokens_file, CheckAbsPathOrEmpty));
  s.push_back(BytesSetting("pool", "size", "pool-size",
                           "DRAM pool size (e.g. 8GiB); auto = 25% of RAM, capped by free space "
                           "in shm_dir, at least 64MiB",
                           &ServerConfig::pool_bytes, kMinPoolBytes, 1ull << 50, true));
  s.push_back(StringSetting("pool", "shm_dir", "shm-dir", "Directory of the shared-memory pool file",
                            &ServerConfig::shm_dir, CheckAbsPath));
  s.push_back(StringSetting("pool", "name", "pool-name",
                            "Pool file name prefix (<shm_dir>/<name>-<pid>-<pool_id>.pool)",
                            &ServerConfig::pool_name, CheckPoolName));
  s.push_back(BoolSetting("pool", "huge_pages", "huge-pages",
                          "Ask for transparent huge pages on the pool (best effort)",
                          &ServerConfig::huge_pages));
  s.push_back(BoolSetting("pool", "mlock", "mlock", "Lock the pool in memory (best effort)",
                          &ServerConfig::mlock));
  s.push_back(UintSetting("leases", "default_ms", "lease-default-ms",
                          "Lease length when a Get asks for 0", &ServerConfig::lease_default_ms, 1,
                          kDayMs));
  s.push_back(UintSetting("leases", "max_ms", "lease-max-ms", "Longest lease a Get may ask for",
                          &ServerConfig::lease_max_ms, 1, kDayMs));
  s.push_back(UintSetting("leases", "max_outstanding", "max-leases",
                          "Outstanding leases; beyond, Get answers RESOURCE_EXHAUSTED",
                          &ServerConfig::max_leases, 1, 1ull << 32));
  s.push_back(UintSetting("leases", "reservation_ms", "reservation-ms",
                          "Lifetime of an uncommitted ReservePut reservation",
                          &ServerConfig::reservation_ms, 1, kDayMs));
  s.push_back(UintSetting("leases", "reap_interval_ms", "reap-interval-ms",
                          "How often expired leases and reservations are reaped",
                          &ServerConfig::reap_interval_ms, 10, 60'000));
  s.push_back(BytesSetting("limits", "max_entry_bytes", "max-entry-bytes",
                           "Largest raw tensor one Put may store", &ServerConfig::max_entry_bytes,
                           1, kMaxEntryBytes));
  s.push_back(BytesSetting("limits", "max_frame_bytes", "max-frame-bytes",
                           "Largest gRPC message the daemon accepts",
                           &ServerConfig::max_frame_bytes, 64 * kKiB, 1 * kGiB));
  s.push_back(UintSetting("limits", "max_inflight_puts", "max-inflight-puts",
                          "Concurrent Put/CommitPut; beyond, RESOURCE_EXHAUSTED",
                          &ServerConfig::max_inflight_puts, 1, 65536));
  s.push_back(UintSetting("limits", "max_streams", "max-streams",
                          "Concurrent Put/Get streams; beyond, RESOURCE_EXHAUSTED with a retry "
                          "hint",
                          &ServerConfig::max_streams, 1, 1u << 20));
  s.push_back(UintSetting("limits", "stream_idle_timeout_ms", "stream-idle-timeout-ms",
                          "Cancel a Put/Get stream that sends or reads nothing this long; "
                          "0 = never",
                          &ServerConfig::stream_idle_timeout_ms, 0, kDayMs));
  s.push_back(UintSetting("limits", "max_stream_ms", "max-stream-ms",
                          "Cancel a Put/Get stream running longer than this; 0 = never",
                          &ServerConfig::max_stream_ms, 0, kDayMs));
  s.push_back(UintSetting("limits", "stream_preempt_idle_ms", "stream-preempt-idle-ms",
                          "When max_streams are taken, a new stream cancels the one idle longest "
                          "if it has been idle this long; 0 = never",
                          &ServerConfig::stream_preempt_idle_ms, 0, kDayMs));
  s.push_back(BytesSetting("limits", "max_staging_bytes", "max-staging-bytes",
                           "Memory for the raw bytes of streamed Puts in flight (taken as data "
                           "arrives); beyond, RESOURCE_EXHAUSTED",
                           &ServerConfig::max_staging_bytes, 1 * kMiB, 1ull << 50));
  s.push_back(UintSetting("limits", "retry_after_ms", "retry-after-ms",
                          "Back-off hint sent with overload refusals",
                          &ServerConfig::retry_after_ms, 1, 60'000));
  s.push_back(UintSetting("limits", "max_batch_keys", "max-batch-keys",
                          "Keys per Lookup/Delete and lease ids per Release",
                          &ServerConfig::max_batch_keys, 1, 1u << 20));
  s.push_back(BytesSetting("limits", "stream_chunk_bytes", "stream-chunk-bytes",
                           "Data frame size of streamed Gets (clients accept 4MiB by default)",
                           &ServerConfig::stream_chunk_bytes, 4 * kKiB, 4 * kMiB - 64 * kKiB));
  s.push_back(BoolSetting("ssd", "enabled", "ssd-enabled",
                          "Use the SSD tier (false = DRAM only)", &ServerConfig::ssd_enabled));
  s.push_back(StringSetting("ssd", "dir", "ssd-dir",
                            "SSD tier data directory (absolute; created if missing; a real "
                            "filesystem with O_DIRECT, not tmpfs); auto = $XDG_STATE_HOME/"
                            "adaptcache or ~/.local/state/adaptcache (root: /var/lib/adaptcache)"
                            "; \"\" = no SSD tier",
                            &ServerConfig::ssd_dir, CheckSsdDir));
  s.push_back(BytesSetting("ssd", "segment_bytes", "ssd-segment-bytes",
                           "Size of each preallocated segment file (multiple of 4KiB); bounds "
                           "the largest entry on SSD",
                           &ServerConfig::ssd_segment_bytes, 1 * kMiB, 64 * kGiB));
  s.push_back(UintSetting("ssd", "segment_count", "ssd-segment-count",
                          "Number of segment files (>= 3); SSD capacity = segment_bytes x "
                          "count; 0 = auto: min(4GiB, 10% of the free disk space) / "
                          "segment_bytes, at most 16 (an existing directory keeps its count)",
                          &ServerConfig::ssd_segment_count, 0, 1u << 20));
  s.push_back(BytesSetting("ssd", "write_budget", "ssd-write-budget",
                           "SSD write budget in bytes per second (demotions over it are "
                           "evictions); 0 = unlimited",
                           &ServerConfig::ssd_write_budget, 0, 1ull << 50));
  s.push_back(UintSetting("ssd", "admit_after_accesses", "ssd-admit-after-accesses",
                          "Demote to SSD only entries accessed at least this often (1 = all; "
                          "2 = on the second access)",
                          &ServerConfig::ssd_admit_after_accesses, 1, 255));
  s.push_back(UintSetting("ssd", "promote_after_hits", "ssd-promote-after-hits",
                          "Copy an SSD entry back into DRAM on its N-th SSD hit; 0 = never "
                          "(SSD hits are served from a temporary DRAM extent)",
                          &ServerConfig::ssd_promote_after_hits, 0, 1'000'000));
  s.push_back(BoolSetting("ssd", "demote_on_evict", "ssd-demote-on-evict",
                          "Write DRAM LRU victims to SSD instead of dropping them",
                          &ServerConfig::ssd_demote_on_evict));
  s.push_back(BoolSetting("ssd", "index_sync", "ssd-index-sync",
                          "fsync the SSD index log on every commit (survives power loss, "
                          "slower); a process crash loses nothing either way",
                          &ServerConfig::ssd_index_sync));
  s.push_back(BoolSetting("ssd", "flush_on_shutdown", "ssd-flush-on-shutdown",
                          "On SIGTERM/SIGINT write DRAM entries that have no SSD copy to SSD "
                          "(bounded by flush_timeout_ms) so a restart is warm for them too",
                          &ServerConfig::ssd_flush_on_shutdown));
  s.push_back(UintSetting("ssd", "flush_timeout_ms", "ssd-flush-timeout-ms",
                          "Time limit of the shutdown flush; entries not written by then are "
                          "lost",
                          &ServerConfig::ssd_flush_timeout_ms, 0, kDayMs));
  s.push_back(StringSetting("codec", "default", "default-codec",
                            "Codec config for namespaces without their own", &ServerConfig::default_codec,
                            CheckCodec));
  // [policy] (server/policy_runner.h)
  s.push_back(StringSetting("remote", "nodes", "remote-nodes",
                            "Redis Cluster (or standalone Redis) seed nodes of the shared remote "
                            "tier, comma-separated host:port; \"\" = no remote tier",
                            &ServerConfig::remote_nodes, [](const std::string& v) -> absl::Status {
                              for (absl::string_view n : absl::StrSplit(v, ',', absl::SkipWhitespace())) {
                                std::string host;
                                int port = 0;
                                if (auto st = ParseHostPort(std::string(absl::StripAsciiWhitespace(n)), &host, &port);
                                    !st.ok()) {
                                  return st;
                                }
                                if (port == 0) return absl::InvalidArgumentError("port 0 is not a Redis node");
                              }
                              return absl::OkStatus();
                            }));
  s.push_back(StringSetting("remote", "password_file", "remote-password-file",
                            "File holding the Redis password (AUTH; e.g. a mounted Secret); "
                            "\"\" = no AUTH",
                            &ServerConfig::remote_password_file, CheckAbsPathOrEmpty));
  s.push_back(StringSetting("remote", "write_mode", "remote-write-mode",
                            "What the daemon writes to the remote tier: off (read only), "
                            "write-through (every Put, asynchronously) or on-eviction (DRAM "
                            "victims)",
                            &ServerConfig::remote_write_mode, [](const std::string& v) -> absl::Status {
                              if (v == "off" || v == "write-through" || v == "on-eviction") {
                                return absl::OkStatus();
                              }
                              return absl::InvalidArgumentError(
                                  "must be off, write-through or on-eviction");
                            }));
  s.push_back(UintSetting("remote", "timeout_ms", "remote-timeout-ms",
                          "Bound of every Redis connect, read and write; a node that fails is "
                          "skipped for a back-off (250 ms doubling to 5 s)",
                          &ServerConfig::remote_timeout_ms, 1, 60'000));
  s.push_back(BytesSetting("remote", "max_value_bytes", "remote-max-value-bytes",
                           "Containers larger than this are never sent to the remote tier",
                           &ServerConfig::remote_max_value_bytes, 4 * kKiB, 512 * kMiB));
  s.push_back(BytesSetting("remote", "queue_bytes", "remote-queue-bytes",
                           "Bytes of queued remote writes; writes over it are dropped",
                           &ServerConfig::remote_queue_bytes, 1 * kMiB, 64 * kGiB));
  s.push_back(StringSetting("remote", "key_prefix", "remote-key-prefix",
                            "Prefix of every Redis key the daemon writes (daemons sharing "
                            "entries must use the same one)",
                            &ServerConfig::remote_key_prefix, [](const std::string& v) -> absl::Status {
                              if (v.empty() || v.size() > 64) {
                                return absl::InvalidArgumentError("must be 1..64 bytes");
                              }
                              if (v.find_first_of("{} \t\r\n") != std::string::npos) {
                                return absl::InvalidArgumentError("must not hold braces or whitespace");
                              }
                              return absl::OkStatus();
                            }));
  s.push_back(StringSetting(
      "policy", "name", "policy",
      "Placement policy run by the mover: none, adaptive, lru-raw, greedy-downgrade or "
      "static:<config>",
      &ServerConfig::policy, [](const std::string& v) -> absl::Status {
        if (v == "none" || v == "adaptive" || v == "lru-raw" || v == "greedy-downgrade") {
          return absl::OkStatus();
        }
        if (v.rfind("static:", 0) == 0) return ParseCodecConfig(v.substr(7)).status();
        return absl::InvalidArgumentError(
            "must be none, adaptive, lru-raw, greedy-downgrade or static:<config>");
      }));
  s.push_back(StringSetting("policy", "configs", "policy-configs",
                            "Comma-separated codec configs the policy may choose (raw always); "
                            "\"\" = the default config space",
                            &ServerConfig::policy_configs, [](const std::string& v) {
                              for (absl::string_view n : absl::StrSplit(v, ',', absl::SkipWhitespace())) {
                                auto c = ParseCodecConfig(std::string(absl::StripAsciiWhitespace(n)));
                                if (!c.ok()) return c.status();
                              }
                              return absl::OkStatus();
                            }));
  auto number = [](bool allow_inf) {
    return [allow_inf](const std::string& v) -> absl::Status {
      double d = 0;
      if ((allow_inf && v == "inf") || (absl::SimpleAtod(v, &d) && std::isfinite(d))) {
        return absl::OkStatus();
      }
      return absl::InvalidArgumentError(allow_inf ? "must be a number or \"inf\""
                                                  : "must be a finite number");
    };
  };
  auto auto_or_number = [](const std::string& v) -> absl::Status {
    double d = 0;
    if (v == "auto" || (absl::SimpleAtod(v, &d) && std::isfinite(d) && d >= 0)) return absl::OkStatus();
    return absl::InvalidArgumentError("must be \"auto\" or a number >= 0");
  };
  s.push_back(StringSetting("policy", "alpha", "policy-alpha",
                            "Delay seconds one unit of expected quality loss is worth (>= 0)",
                            &ServerConfig::policy_alpha, number(false)));
  s.push_back(StringSetting("policy", "max_loss", "policy-max-loss",
                            "Largest expected quality loss any entry may be stored at",
                            &ServerConfig::policy_max_loss, number(true)));
  s.push_back(StringSetting("policy", "avg_loss", "policy-avg-loss",
                            "Access-weighted average loss budget (alpha is searched); < 0 = none",
                            &ServerConfig::policy_avg_loss, number(false)));
  s.push_back(StringSetting("policy", "calibration", "policy-calibration",
                            "Calibration JSON mapping quality proxies to expected loss "
                            "(docs/optimizer.md); \"\" = the proxy itself",
                            &ServerConfig::policy_calibration, CheckAbsPathOrEmpty));
  s.push_back(UintSetting("policy", "interval_ms", "policy-interval-ms",
                          "Re-plan and move every this many milliseconds",
                          &ServerConfig::policy_interval_ms, 10, 86'400'000));
  s.push_back(BytesSetting("policy", "cpu_budget", "mover-cpu-budget",
                           "Raw bytes per second the mover may transcode or estimate; 0 = "
                           "unlimited",
                           &ServerConfig::mover_cpu_budget, 0, 1ull << 50));
  s.push_back(BytesSetting("policy", "ssd_write_budget", "mover-ssd-write-budget",
                           "Bytes per second the mover may write to SSD; 0 = unlimited",
                           &ServerConfig::mover_ssd_write_budget, 0, 1ull << 50));
  s.push_back(BoolSetting("policy", "keep_master", "mover-keep-master",
                          "Keep an entry's lossless copy on SSD when compressing it in DRAM",
                          &ServerConfig::mover_keep_master));
  s.push_back(BoolSetting("policy", "admission", "policy-admission",
                          "Transcode each raw Put, soon after it lands, into the config the last "
                          "plan would give a new entry of its shape (else it waits for a plan)",
                          &ServerConfig::policy_admission));
  s.push_back(StringSetting("policy", "dram_latency_us", "policy-dram-latency-us",
                            "Delay model: fixed cost of loading one entry from DRAM into the GPU",
                            &ServerConfig::policy_dram_latency_us, number(false)));
  s.push_back(StringSetting("policy", "dram_gbps", "policy-dram-gbps",
                            "Delay model: DRAM -> GPU bandwidth in GB/s (pinned copy over PCIe)",
                            &ServerConfig::policy_dram_gbps, number(false)));
  s.push_back(StringSetting("policy", "ssd_latency_us", "policy-ssd-latency-us",
                            "Delay model: fixed cost of loading one entry from SSD",
                            &ServerConfig::policy_ssd_latency_us, number(false)));
  s.push_back(StringSetting("policy", "ssd_gbps", "policy-ssd-gbps",
                            "Delay model: SSD -> GPU bandwidth in GB/s",
                            &ServerConfig::policy_ssd_gbps, number(false)));
  s.push_back(StringSetting("policy", "remote_latency_us", "policy-remote-latency-us",
                            "Delay model: fixed cost of loading one entry from the remote tier; "
                            "auto = the round trip measured at start-up",
                            &ServerConfig::policy_remote_latency_us, auto_or_number));
  s.push_back(StringSetting("policy", "remote_gbps", "policy-remote-gbps",
                            "Delay model: remote tier -> GPU bandwidth in GB/s; auto = measured "
                            "at start-up (1 MiB values), capped by dram_gbps",
                            &ServerConfig::policy_remote_gbps, auto_or_number));
  s.push_back(StringSetting("policy", "recompute_us_per_token", "policy-recompute-us-per-token",
                            "Delay model: prefill time per token, the cost of a miss",
                            &ServerConfig::policy_recompute_us_per_token, number(false)));
  s.push_back(StringSetting("policy", "decode_csv", "policy-decode-csv",
                            "GPU decode speeds per config from the CUDA benchmark "
                            "(bench/results/cuda_decode.csv); \"\" = built-in defaults",
                            &ServerConfig::policy_decode_csv, CheckAbsPathOrEmpty));
  return s;
}

}  // namespace

absl::Status CheckCodec(const std::string& v) {
  auto cfg = ParseCodecConfig(v);
  if (!cfg.ok()) return cfg.status();
  return ValidateConfig(*cfg);
}

absl::Status CheckNamespaceBudget(std::string_view key, const std::string& v) {
  double d = 0;
  if (key == "max_loss" && v == "inf") return absl::OkStatus();
  if (!absl::SimpleAtod(v, &d) || !std::isfinite(d)) {
    return absl::InvalidArgumentError(key == "max_loss" ? "must be a number >= 0 or \"inf\""
                                                        : "must be a finite number");
  }
  if (key != "avg_loss" && d < 0) return absl::InvalidArgumentError("must be >= 0");
  return absl::OkStatus();
}

const std::string& ServerConfig::CodecFor(std::string_view ns) const {
  auto it = namespaces.find(std::string(ns));
  return it == namespaces.end() || it->second.codec.empty() ? default_codec : it->second.codec;
}

const std::vector<Setting>& AllSettings() {
  static const std::vector<Setting>* settings = new std::vector<Setting>(BuildSettings());
  return *settings;
}

absl::StatusOr<uint64_t> ParseByteSize(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0) return absl::InvalidArgumentError("a size starts with digits, e.g. 64MiB");
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + i, n);
  if (ec != std::errc()) return absl::InvalidArgumentError("size out of range");
  std::string unit(text.substr(i));
  for (auto& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  uint64_t mult = 0;
  if (unit.empty() || unit == "b") {
    mult = 1;
  } else if (unit == "k" || unit == "kb" || unit == "kib") {
    mult = kKiB;
  } else if (unit == "m" || unit == "mb" || unit == "mib") {
    mult = kMiB;
  } else if (unit == "g" || unit == "gb" || unit == "gib") {
    mult = kGiB;
  } else if (unit == "t" || unit == "tb" || unit == "tib") {
    mult = kGiB * 1024;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown size unit '", unit, "' (use B, KiB, MiB, GiB or TiB)"));
  }
  if (n > UINT64_MAX / mult) return absl::InvalidArgumentError("size out of range");
  return n * mult;
}

std::string FormatByteSize(uint64_t bytes) {
  static const std::pair<uint64_t, const char*> kUnits[] = {
      {kGiB * 1024, "TiB"}, {kGiB, "GiB"}, {kMiB, "MiB"}, {kKiB, "KiB"}};
  for (const auto& [mult, name] : kUnits) {
    if (bytes != 0 && bytes % mult == 0) return absl::StrCat(bytes / mult, name);
  }
  return std::to_string(bytes);
}

absl::Status ParseHostPort(std::string_view text, std::string* host, int* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError("expected host:port");
  }
  std::string_view h = text.substr(0, colon);
  if (h.front() == '[') {
    if (h.size() < 3 || h.back() != ']') return absl::InvalidArgumentError("bad [ipv6]:port");
  } else if (h.find(':') != std::string_view::npos) {
    return absl::InvalidArgumentError("write IPv6 addresses as [addr]:port");
  }
  std::string p(text.substr(colon + 1));
  auto n = ParseUint(p);
  if (!n.ok() || *n > 65535) return absl::InvalidArgumentError("port must be 0..65535");
  *host = std::string(h);
  *port = static_cast<int>(*n);
  return absl::OkStatus();
}

absl::Status Validate(const ServerConfig& cfg) {
  // Per-field checks, through the same setters the parsers use.
  for (const auto& s : AllSettings()) {
    ServerConfig scratch;
    if (auto st = s.set(scratch, s.get(cfg)); !st.ok()) return st;
  }
  for (const auto& [ns, settings] : cfg.namespaces) {
    if (auto st = ValidateNamespace(ns); !st.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("namespace '", ns, "': ", std::string(st.message())));
    }
    if (!settings.codec.empty()) {
      if (auto st = CheckCodec(settings.codec); !st.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("namespaces.\"", ns, "\".codec: ", std::string(st.message())));
      }
    }
    for (const auto& [key, v] : {std::pair<const char*, const std::string*>{"alpha", &settings.alpha},
                                 {"max_loss", &settings.max_loss},
                                 {"avg_loss", &settings.avg_loss}}) {
      if (v->empty()) continue;
      if (auto st = CheckNamespaceBudget(key, *v); !st.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("namespaces.\"", ns, "\".", key, ": ", std::string(st.message())));
      }
    }
  }
  if (cfg.socket.empty() && cfg.tcp_listen.empty()) {
    return absl::InvalidArgumentError("no listener: set [server] socket or tcp_listen");
  }
  if (cfg.tls_cert.empty() != cfg.tls_key.empty()) {
    return absl::InvalidArgumentError("[server] tls_cert and tls_key go together");
  }
  if (!cfg.tls_client_ca.empty() && cfg.tls_cert.empty()) {
    return absl::InvalidArgumentError("[server] tls_client_ca needs tls_cert and tls_key");
  }
  if (!cfg.tcp_listen.empty() && cfg.tls_cert.empty() && !cfg.insecure_tcp) {
    return absl::InvalidArgumentError(
        "[server] tcp_listen needs TLS: set tls_cert and tls_key, or --insecure-tcp for plain "
        "TCP (anyone who reaches the port can read and delete entries)");
  }
  if (!cfg.tokens_file.empty() && cfg.tenants_file.empty()) {
    return absl::InvalidArgumentError("[auth] tokens_file maps tokens to tenants: set tenants_file too");
  }
  if (cfg.lease_default_ms > cfg.lease_max_ms) {
    return absl::InvalidArgumentError(absl::StrCat("[leases] default_ms (", cfg.lease_default_ms,
                                                   ") exceeds max_ms (", cfg.lease_max_ms, ")"));
  }
  if (cfg.ssd_segment_bytes % (4 * kKiB) != 0) {
    return absl::InvalidArgumentError("[ssd] segment_bytes must be a multiple of 4KiB");
  }
  if (cfg.ssd_segment_count == 1 || cfg.ssd_segment_count == 2) {
    return absl::InvalidArgumentError("[ssd] segment_count must be 0 (auto) or at least 3");
  }
  if (cfg.stream_chunk_bytes > cfg.max_frame_bytes) {
    return absl::InvalidArgumentError("[limits] stream_chunk_bytes exceeds max_frame_bytes");
  }
  if (cfg.max_staging_bytes < cfg.max_entry_bytes) {
    return absl::InvalidArgumentError(
        "[limits] max_staging_bytes is below max_entry_bytes: the largest Put could never stage");
  }
  return absl::OkStatus();
}

uint32_t ServerConfig::ThreadCount() const {
  if (threads != 0) return threads;
  return std::max(32u, 4 * std::thread::hardware_concurrency());
}

}  // namespace adaptcache::server
