// The `adaptcache` command line: options, parsing (CLI11) and cross-field checks.
// Separate from the commands so argument handling is unit-tested without a daemon.
// Thread safety: plain values and functions; CliOptions is not synchronised.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace adaptcache::client {

inline constexpr char kDefaultTarget[] = "/tmp/adaptcache/adaptcached.sock";

struct CliOptions {
  std::string command;  // put, get, lookup, delete, stats, health, codecs, decode
  std::string target;   // --target, else $ADAPTCACHE_TARGET, else kDefaultTarget
  uint32_t timeout_ms = 60'000;
  // A daemon with tenants, or TLS (defaults from $ADAPTCACHE_TOKEN, $ADAPTCACHE_TLS_*).
  std::string auth_token_file;  // file holding the bearer token
  std::string tls_ca, tls_cert, tls_key;

  // Which keys: a token file hashed with namespace and chunk size, or explicit keys.
  std::string ns;
  std::string tokens_file;
  std::vector<std::string> keys_hex;
  uint32_t chunk_tokens = 256;

  // put
  std::string tensor_file;
  std::string tensor_name;
  bool random = false;
  uint64_t seed = 1;
  std::string shape;  // "2,L,T,H,D"
  std::string dtype;  // bf16 | fp16 | fp32 (conversion target for a file; default bf16 for --random)
  std::string codec;
  bool shm = false;   // put/get through the shared-memory pool
  bool durable = false;  // put: write through to SSD, answered once durable

  // get / decode
  std::string out;
  bool decode = false;
  std::string in;

  // codecs
  uint32_t layers = 32;
  uint32_t kv_heads = 8;
  uint32_t head_dim = 128;
  uint32_t tokens = 256;
  std::string codecs_dtype = "bf16";
};

struct ParseOutcome {
  bool exit_now = false;  // --help, or a parse error: print `text`, exit with exit_code
  int exit_code = 0;
  std::string text;
};

// Parses argv (argv[0] is the program name). On success `exit_now` is false and *o is
// filled; cross-field rules (ValidateOptions) are applied too.
ParseOutcome ParseCli(int argc, const char* const* argv, CliOptions* o);

// Rules CLI11 cannot express: put needs exactly one of --tensor/--random, key-based
// commands need exactly one of --tokens/--key, --random needs --shape, and so on.
absl::Status ValidateOptions(const CliOptions& o);

}  // namespace adaptcache::client
