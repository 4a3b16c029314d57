// The daemon's configuration: embedded defaults, then an optional TOML file, then
// command-line flags (each layer overrides the previous one).
//
// Every setting is described once in a table (AllSettings()) that drives the TOML
// parser (unknown keys are errors), the CLI flags (--help shows each default), and
// --print-config (which prints TOML that loads back to the same config). Values are
// checked when set (type, range, syntax) and again as a whole by Validate().
//
// Thread safety: ServerConfig is a plain value; the functions here are thread safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adaptcache::server {

inline constexpr char kVersion[] = "0.1.0";

struct NamespaceSettings {
  std::string codec;  // codec config name (kernels/codec.h); "" = [codec] default
  // The placement policy's quality budget for this namespace; "" = the [policy] value.
  std::string alpha, max_loss, avg_loss;
};

struct ServerConfig {
  // [server]
  std::string socket = "/tmp/adaptcache/adaptcached.sock";  // "" = no UDS listener
  std::string tcp_listen;                      // host:port; "" = off; needs TLS or insecure_tcp
  std::string tls_cert;                        // PEM server certificate chain (TCP)
  std::string tls_key;                         // PEM private key of tls_cert
  std::string tls_client_ca;                   // PEM CA: clients must present a cert it signed
  bool insecure_tcp = false;                   // plain TCP without TLS (logged loudly)
  std::string metrics_listen = "127.0.0.1:9464";  // host:port; port 0 = ephemeral; "" = off
  uint32_t threads = 0;                        // threads of unary RPCs; 0 = from the machine
  uint32_t keepalive_ms = 30'000;              // HTTP/2 ping interval; 0 = no keepalive
  uint32_t keepalive_timeout_ms = 10'000;      // a ping unanswered this long drops the connection
  uint32_t max_connection_idle_ms = 0;         // close connections idle this long; 0 = never
  uint32_t max_connection_age_ms = 0;          // ask clients to reconnect after; 0 = never
  uint32_t max_streams_per_connection = 64;    // concurrent calls on one client connection
  std::string log_level = "info";
  std::string ready_file;                      // written once serving; "" = none
  // [auth] (docs/operations.md "Tenants and authentication")
  std::string tenants_file;                    // TOML tenants; "" = single tenant
  std::string tokens_file;                     // "<tenant> <token>" lines; reloaded on SIGHUP
  // [pool]
  uint64_t pool_bytes = 0;  // 0 = auto: 25% of MemTotal, capped by free shm space, >= 64 MiB
  std::string shm_dir = "/dev/shm";
  std::string pool_name = "adaptcache";
  bool huge_pages = true;
  bool mlock = true;
  // [leases]
  uint32_t lease_default_ms = 30'000;
  uint32_t lease_max_ms = 300'000;
  uint64_t max_leases = 1 << 20;
  uint32_t reservation_ms = 60'000;
  uint32_t reap_interval_ms = 1'000;
  // [limits]
  uint64_t max_entry_bytes = 256ull << 20;  // raw tensor bytes of one Put
  uint64_t max_frame_bytes = 4ull << 20;    // one gRPC message
  uint32_t max_inflight_puts = 64;
  uint32_t max_streams = 1024;              // concurrent Put/Get streams
  uint32_t stream_idle_timeout_ms = 10'000;  // cancel a stream without progress; 0 = never
  uint32_t max_stream_ms = 600'000;         // cancel a stream running longer; 0 = never
  uint32_t stream_preempt_idle_ms = 1'000;  // a full daemon cancels a stream idle this long
  uint64_t max_staging_bytes = 1ull << 30;  // raw bytes of all streamed Puts in flight
  uint32_t retry_after_ms = 50;             // hint sent with overload refusals
  uint32_t max_batch_keys = 4096;           // keys per Lookup/Delete, ids per Release
  uint64_t stream_chunk_bytes = 1ull << 20;  // Get data frame size
  // [ssd] (docs/operations.md "SSD tier")
  bool ssd_enabled = true;                  // false keeps DRAM only
  std::string ssd_dir = "auto";             // "auto" = DefaultSsdDir(); "" = no SSD tier
  uint64_t ssd_segment_bytes = 256ull << 20;
  uint32_t ssd_segment_count = 0;           // 0 = auto (AutoSsdSegmentCount); else >= 3
  uint64_t ssd_write_budget = 0;            // bytes/s written to SSD; 0 = unlimited
  uint32_t ssd_admit_after_accesses = 1;    // 2 = write to SSD only on the second access
  uint32_t ssd_promote_after_hits = 2;      // SSD hits before an entry returns to DRAM
  bool ssd_demote_on_evict = true;          // DRAM LRU victims go to SSD, else are lost
  bool ssd_index_sync = false;              // fsync the index WAL per commit (power loss)
  bool ssd_flush_on_shutdown = true;        // write DRAM-only entries to SSD on SIGTERM
  uint32_t ssd_flush_timeout_ms = 10'000;   // bound of that flush
  bool SsdOn() const { return ssd_enabled && !ssd_dir.empty(); }
  // [remote] (docs/operations.md "Remote tier")
  std::string remote_nodes;                 // "host:port,host:port" seeds; "" = no remote tier
  std::string remote_password_file;         // file holding the Redis password; "" = none
  std::string remote_write_mode = "write-through";  // off | write-through | on-eviction
  uint32_t remote_timeout_ms = 100;         // bound of each Redis socket operation
  uint64_t remote_max_value_bytes = 64ull << 20;
  uint64_t remote_queue_bytes = 256ull << 20;
  std::string remote_key_prefix = "adaptcache:v1:";
  bool RemoteOn() const { return !remote_nodes.empty(); }
  // Resolved worker-thread count of the unary RPCs.
  uint32_t ThreadCount() const;
  // [codec] and [namespaces."name"]
  std::string default_codec = "raw";
  std::map<std::string, NamespaceSettings> namespaces;
  // [policy] placement policy and mover (server/policy_runner.h, docs/optimizer.md)
  std::string policy = "none";        // none|adaptive|lru-raw|greedy-downgrade|static:<config>
  std::string policy_configs;         // comma-separated config space; "" = the default space
  std::string policy_alpha = "1";     // seconds of delay worth one unit of expected loss
  std::string policy_max_loss = "inf";  // per-entry loss ceiling
  std::string policy_avg_loss = "-1";   // access-weighted mean loss budget; < 0 = none
  std::string policy_calibration;     // calibration JSON; "" = loss is the proxy
  uint32_t policy_interval_ms = 5000;
  uint64_t mover_cpu_budget = 0;      // raw bytes/s transcoded or estimated; 0 = unlimited
  uint64_t mover_ssd_write_budget = 0;  // bytes/s the mover writes to SSD; 0 = unlimited
  bool mover_keep_master = false;     // keep the lossless copy on SSD when compressing
  bool policy_admission = true;       // transcode raw puts into the plan's put config
  // Delay model (policy/delay_model.h) of the host the clients load into GPUs on.
  std::string policy_dram_latency_us = "20";
  std::string policy_dram_gbps = "25";
  std::string policy_ssd_latency_us = "100";
  std::string policy_ssd_gbps = "5";
  // "auto" = the remote tier's round trip and bandwidth measured at start-up.
  std::string policy_remote_latency_us = "auto";
  std::string policy_remote_gbps = "auto";
  std::string policy_recompute_us_per_token = "50";
  std::string policy_decode_csv;      // CUDA benchmark CSV with decode GB/s per config

  // The codec name for a namespace: its own setting, else the default.
  const std::string& CodecFor(std::string_view ns) const;
};

enum class SettingKind { kString, kBool, kUint, kBytes };

// One configurable value: TOML `[section] key`, and CLI `--flag`.
struct Setting {
  std::string section;
  std::string key;
  std::string flag;  // without the leading "--"
  SettingKind kind;
  std::string help;
  // Parses `value` (flag text or the TOML value rendered as text) into the config.
  std::function<absl::Status(ServerConfig&, const std::string&)> set;
  // Renders the current value as a TOML literal.
  std::function<std::string(const ServerConfig&)> get;
};
const std::vector<Setting>& AllSettings();

// "4GiB", "64MiB", "512KiB", "1G", "100M", "4096" -> bytes (binary units).
absl::StatusOr<uint64_t> ParseByteSize(std::string_view text);
std::string FormatByteSize(uint64_t bytes);  // exact: "64MiB", else plain bytes

// Applies a TOML document on top of `cfg`. `origin` names the source in errors.
absl::Status ApplyToml(std::string_view toml_text, std::string_view origin, ServerConfig& cfg);
absl::Status ApplyTomlFile(const std::string& path, ServerConfig& cfg);

// Cross-field checks (listeners, lease bounds, codecs, namespaces, sizes).
absl::Status Validate(const ServerConfig& cfg);

// 25% of MemTotal, capped by the free space of shm_dir, at least 64 MiB, rounded down
// to 2 MiB. Reads /proc/meminfo and statvfs(shm_dir).
absl::StatusOr<uint64_t> AutoPoolBytes(const std::string& shm_dir);

// The SSD directory used for ssd_dir = "auto": $XDG_STATE_HOME/adaptcache, else
// $HOME/.local/state/adaptcache, for root /var/lib/adaptcache. Error if neither
// XDG_STATE_HOME nor HOME is an absolute path (non-root).
absl::StatusOr<std::string> DefaultSsdDir();

// Segment count for segment_count = 0 (auto). If `dir` already holds segment files
// (segment-NNNNN.log) from an earlier run, their count (so a restart reopens the same
// layout). Otherwise min(4GiB, 10% of the free space of dir's filesystem) /
// segment_bytes, capped at 16. With `configured` != 0, checks that the segments still
// missing fit in the free space. FailedPrecondition (saying what to change) when fewer
// than 3 segments fit. `dir` need not exist yet (its nearest existing parent is used).
absl::StatusOr<uint32_t> AutoSsdSegmentCount(const std::string& dir, uint64_t segment_bytes,
                                             uint32_t configured);

// The effective config as a TOML document (loads back with ApplyToml).
std::string ToToml(const ServerConfig& cfg);

// Splits "host:port" (IPv6 as "[::1]:port"); port must be 0..65535.
absl::Status ParseHostPort(std::string_view text, std::string* host, int* port);

// Result of parsing the command line.
struct CommandLine {
  ServerConfig config;
  bool print_config = false;
  bool exit_now = false;  // --help / --version printed; exit with exit_code
  int exit_code = 0;
};
// Parses argv (CLI11): defaults <- --config file <- flags; validates. Help and
// --version text go to stdout.
absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv);

}  // namespace adaptcache::server
