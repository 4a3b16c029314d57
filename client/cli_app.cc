#include "client/cli_app.h"

#include <cstdlib>
#include <sstream>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"

namespace adaptcache::client {
namespace {

void AddKeyOptions(CLI::App* sub, CliOptions* o, bool namespace_required) {
  auto* ns = sub->add_option("-n,--namespace", o->ns, "namespace the keys live in (model, dtype, TP layout)");
  if (namespace_required) ns->required();
  sub->add_option("--tokens", o->tokens_file,
                  "token-id file (text: integers separated by spaces/commas/newlines, or .npy of ints)");
  sub->add_option("-k,--key", o->keys_hex, "chunk key as 32 hex digits (repeatable)");
  sub->add_option("--chunk-tokens", o->chunk_tokens, "tokens per chunk when hashing --tokens")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 16));
}

}  // namespace

ParseOutcome ParseCli(int argc, const char* const* argv, CliOptions* o) {
  CLI::App app{"adaptcache: client of the adaptcached KV-cache daemon"};
  app.require_subcommand(1);
  const char* env = std::getenv("ADAPTCACHE_TARGET");
  o->target = env != nullptr && *env != '\0' ? env : kDefaultTarget;
  app.add_option("-t,--target", o->target,
                 "daemon address: socket path, unix:///path, or host:port (default $ADAPTCACHE_TARGET or " +
                     std::string(kDefaultTarget) + ")");
  app.add_option("--timeout-ms", o->timeout_ms, "deadline of each RPC in ms (0 = none)")->capture_default_str();
  app.add_option("--token-file", o->auth_token_file,
                 "file holding the bearer token of a daemon with tenants (default $ADAPTCACHE_TOKEN)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-ca", o->tls_ca, "PEM CA bundle of a daemon's TLS port (default $ADAPTCACHE_TLS_CA)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-cert", o->tls_cert, "PEM client certificate for mutual TLS (default $ADAPTCACHE_TLS_CERT)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", o->tls_key, "PEM key of --tls-cert (default $ADAPTCACHE_TLS_KEY)")
      ->check(CLI::ExistingFile);

  auto* put = app.add_subcommand("put", "store a KV tensor, one entry per chunk of tokens");
  AddKeyOptions(put, o, true);
  put->add_option("--tensor", o->tensor_file, ".npy or .safetensors file, [2, layers, tokens, kv_heads, head_dim]")
      ->check(CLI::ExistingFile);
  put->add_option("--tensor-name", o->tensor_name, "tensor to use from a .safetensors file with several");
  put->add_flag("--random", o->random, "store a pseudo-random tensor of --shape instead of a file");
  put->add_option("--seed", o->seed, "seed of --random")->capture_default_str();
  put->add_option("--shape", o->shape, "2,layers,tokens,kv_heads,head_dim (required with --random; reshapes a file)");
  put->add_option("--dtype", o->dtype, "bf16, fp16 or fp32 (--random: default bf16; file: convert to it)")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  put->add_option("--codec", o->codec, "requested codec config (see `adaptcache codecs`); default: the namespace's");
  put->add_flag("--shm", o->shm, "write through the shared-memory pool instead of gRPC bytes");
  put->add_flag("--durable", o->durable,
                "write each entry through to the daemon's SSD tier and wait until it is durable "
                "(survives kill -9); exit 1 if the daemon could not make it durable");

  auto* get = app.add_subcommand("get", "fetch entries (the leading hits) into a file");
  AddKeyOptions(get, o, true);
  get->add_option("-o,--out", o->out, "output file: containers back to back, or with --decode .npy/.safetensors")
      ->required();
  get->add_flag("--decode", o->decode, "decode on the CPU and write the KV tensor (tokens concatenated)");
  get->add_flag("--shm", o->shm, "read through the shared-memory pool (lease + verified copy)");

  auto* lookup = app.add_subcommand("lookup", "longest prefix of stored chunks, and per-key info");
  AddKeyOptions(lookup, o, true);

  auto* del = app.add_subcommand("delete", "delete entries");
  AddKeyOptions(del, o, true);

  app.add_subcommand("stats", "daemon statistics");
  app.add_subcommand("health", "is the daemon serving");

  auto* codecs = app.add_subcommand("codecs", "list the default codec configs and their size ratio for a shape");
  codecs->add_option("--layers", o->layers, "layers")->capture_default_str()->check(CLI::Range(1u, 1024u));
  codecs->add_option("--kv-heads", o->kv_heads, "KV heads")->capture_default_str()->check(CLI::Range(1u, 1024u));
  codecs->add_option("--head-dim", o->head_dim, "head dimension")->capture_default_str()->check(CLI::Range(1u, 4096u));
  codecs->add_option("--tokens", o->tokens, "tokens per chunk")->capture_default_str()->check(CLI::Range(1u, 65536u));
  codecs->add_option("--dtype", o->codecs_dtype, "bf16, fp16 or fp32")
      ->capture_default_str()
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}));

  auto* decode = app.add_subcommand("decode", "decode a container file (from `get`) offline");
  decode->add_option("-i,--in", o->in, "container file")->required()->check(CLI::ExistingFile);
  decode->add_option("-o,--out", o->out, "output .npy or .safetensors")->required();

  ParseOutcome out;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream so, se;
    out.exit_now = true;
    // CLI11's own codes (105, 106, ...) are not ours: any parse failure is a usage error.
    out.exit_code = app.exit(e, so, se) == 0 ? 0 : 1;
    out.text = so.str() + se.str();
    return out;
  }
  for (auto* sub : app.get_subcommands()) o->command = sub->get_name();
  if (auto st = ValidateOptions(*o); !st.ok()) {
    out.exit_now = true;
    out.exit_code = 1;
    out.text = absl::StrCat("adaptcache ", o->command, ": ", std::string(st.message()),
                            "\nRun with --help for more information.\n");
  }
  return out;
}

absl::Status ValidateOptions(const CliOptions& o) {
  const bool keyed = o.command == "put" || o.command == "get" || o.command == "lookup" || o.command == "delete";
  if (keyed) {
    const bool tokens = !o.tokens_file.empty();
    const bool keys = !o.keys_hex.empty();
    if (tokens == keys) return absl::InvalidArgumentError("give exactly one of --tokens or --key");
  }
  if (o.command == "put") {
    if (o.random == !o.tensor_file.empty()) return absl::InvalidArgumentError("give exactly one of --tensor or --random");
    if (o.random && o.shape.empty()) return absl::InvalidArgumentError("--random needs --shape 2,layers,tokens,kv_heads,head_dim");
    if (o.random && !o.tensor_name.empty()) return absl::InvalidArgumentError("--tensor-name needs --tensor");
    if (!o.keys_hex.empty() && o.keys_hex.size() != 1) {
      return absl::InvalidArgumentError("put takes one --key (one chunk); use --tokens for several");
    }
  }
  if ((o.command == "get" && o.decode) || o.command == "decode") {
    const auto& p = o.out;
    const bool ok = (p.size() > 4 && p.compare(p.size() - 4, 4, ".npy") == 0) ||
                    (p.size() > 12 && p.compare(p.size() - 12, 12, ".safetensors") == 0);
    if (!ok) return absl::InvalidArgumentError("decoding writes .npy or .safetensors: name --out accordingly");
  }
  return absl::OkStatus();
}

}  // namespace adaptcache::client
