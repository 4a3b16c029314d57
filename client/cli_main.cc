// `adaptcache`: the command-line client (docs/client.md). Exit codes: 0 success,
// 1 error (usage errors and local file errors included, e.g. a missing --tokens file),
// 2 not found (get: no entry for the first key; lookup: zero prefix hits), 3 the daemon
// cannot be reached, 4 the daemon stayed overloaded through the retries.
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli_app.h"
#include "client/client.h"
#include "client/kv_files.h"
#include "common/status_kinds.h"
#include "kernels/codec.h"

namespace adaptcache::client {
namespace {

constexpr int kExitError = 1;
constexpr int kExitNotFound = 2;
constexpr int kExitUnreachable = 3;
constexpr int kExitOverloaded = 4;

void PrintStatus(const absl::Status& st) {
  // Code and message only: ToString() would also print the payloads.
  std::fprintf(stderr, "adaptcache: %s: %s\n", absl::StatusCodeToString(st.code()).c_str(),
               std::string(st.message()).c_str());
}

// An error. NOT_FOUND here is not a cache miss (a missing local file, an unknown
// reservation): exit 2 is only for the misses the commands themselves detect (Miss).
int Fail(const absl::Status& st) {
  PrintStatus(st);
  if (IsOverloaded(st)) return kExitOverloaded;
  if (st.code() == absl::StatusCode::kUnavailable) return kExitUnreachable;
  return kExitError;
}

// The daemon holds no entry for what was asked.
int Miss(const std::string& what) {
  PrintStatus(absl::NotFoundError(what));
  return kExitNotFound;
}

absl::StatusOr<std::unique_ptr<Client>> Dial(const CliOptions& o) {
  ClientOptions co;
  co.rpc_timeout = std::chrono::milliseconds(o.timeout_ms);
  co.release_batch = 1;
  if (!o.auth_token_file.empty()) {
    std::ifstream in(o.auth_token_file);
    if (!in || !std::getline(in, co.token) || co.token.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--token-file ", o.auth_token_file, ": no token in it"));
    }
    while (!co.token.empty() && (co.token.back() == '\r' || co.token.back() == ' ')) co.token.pop_back();
  }
  co.tls_ca_file = o.tls_ca;
  co.tls_cert_file = o.tls_cert;
  co.tls_key_file = o.tls_key;
  return Client::Connect(o.target, co);
}

// The keys named on the command line: hashed tokens or explicit hex keys. When
// tokens are used, `token_count` receives their number.
absl::StatusOr<std::vector<Key128>> KeysFromOptions(const CliOptions& o, size_t* token_count = nullptr) {
  if (!o.keys_hex.empty()) return ParseHexKeys(o.keys_hex);
  if (auto st = ValidateNamespace(o.ns); !st.ok()) return st;
  auto tokens = ReadTokenFile(o.tokens_file);
  if (!tokens.ok()) return tokens.status();
  if (token_count != nullptr) *token_count = tokens->size();
  return Client::HashTokens(o.ns, *tokens, o.chunk_tokens);
}

// The tensor to put and its KV shape (all tokens; chunks are cut later).
absl::StatusOr<std::pair<KvShape, std::vector<std::byte>>> LoadTensor(const CliOptions& o) {
  if (o.random) {
    auto dims = ParseDims(o.shape);
    if (!dims.ok()) return dims.status();
    auto dt = DTypeFromName(o.dtype.empty() ? "bf16" : o.dtype);
    if (!dt.ok()) return dt.status();
    auto shape = KvShapeFromDims(*dims, FromKvDType(*dt));
    if (!shape.ok()) return shape.status();
    return std::make_pair(*shape, RandomKvBytes(*shape, o.seed));
  }
  auto t = ReadTensorFile(o.tensor_file, o.tensor_name);
  if (!t.ok()) return t.status();
  if (!o.dtype.empty()) {
    auto dt = DTypeFromName(o.dtype);
    if (!dt.ok()) return dt.status();
    auto c = ConvertFloat(*t, FromKvDType(*dt));
    if (!c.ok()) return c.status();
    *t = std::move(*c);
  }
  if (!o.shape.empty()) {
    auto dims = ParseDims(o.shape);
    if (!dims.ok()) return dims.status();
    uint64_t n = 1;
    for (auto d : *dims) n *= d;
    if (n != t->Elements()) {
      return absl::InvalidArgumentError(absl::StrCat("--shape ", o.shape, " has ", n, " elements, ", o.tensor_file,
                                                     " has ", t->Elements(), " (", t->ShapeString(), ")"));
    }
    t->shape = *dims;
  }
  auto shape = KvShapeFromDims(t->shape, t->type);
  if (!shape.ok()) return shape.status();
  return std::make_pair(*shape, std::move(t->data));
}

int CmdPut(const CliOptions& o) {
  auto tensor = LoadTensor(o);
  if (!tensor.ok()) return Fail(tensor.status());
  const KvShape& full = tensor->first;
  size_t token_count = 0;
  auto keys = KeysFromOptions(o, &token_count);
  if (!keys.ok()) return Fail(keys.status());
  const uint32_t chunk = o.keys_hex.empty() ? o.chunk_tokens : full.tokens;
  if (o.keys_hex.empty() && token_count != full.tokens) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(o.tokens_file, " has ", token_count,
                                                        " token ids; the tensor has ", full.tokens, " tokens")));
  }
  auto client = Dial(o);
  if (!client.ok()) return Fail(client.status());
  size_t not_durable = 0;
  for (size_t i = 0; i < keys->size(); ++i) {
    const uint32_t t0 = static_cast<uint32_t>(i * chunk);
    const uint32_t t1 = std::min<uint32_t>(full.tokens, t0 + chunk);
    PutSpec spec;
    spec.ns = o.ns;
    spec.key = (*keys)[i];
    spec.shape = full;
    spec.shape.tokens = t1 - t0;
    spec.codec = o.codec;
    spec.durable = o.durable;
    std::vector<std::byte> part = keys->size() == 1 ? std::vector<std::byte>() : SliceTokens(full, tensor->second, t0, t1);
    std::span<const std::byte> raw = keys->size() == 1 ? std::span<const std::byte>(tensor->second) : part;
    auto info = o.shm ? (*client)->PutShm(spec, raw) : (*client)->Put(spec, raw);
    if (!info.ok()) return Fail(info.status());
    std::printf("chunk %zu  key %s  tokens %u..%u  stored %" PRIu64 " B (raw %" PRIu64 " B)  codec %s  tier %s%s\n", i,
                spec.key.ToHex().c_str(), t0, t1, info->stored_bytes, info->raw_bytes, info->codec.c_str(),
                std::string(TierName(info->tier)).c_str(),
                !o.durable ? "" : info->durable ? "  durable yes" : "  durable NO");
    if (o.durable && !info->durable) ++not_durable;
  }
  if (not_durable > 0) {
    std::fprintf(stderr,
                 "adaptcache: %zu of %zu entries are stored but not durable: the daemon has no SSD tier "
                 "or its SSD write failed (see its log)\n",
                 not_durable, keys->size());
    return kExitError;
  }
  return 0;
}

absl::Status WriteDecoded(const std::string& path, const std::vector<std::vector<std::byte>>& containers) {
  std::vector<KvShape> shapes;
  std::vector<std::vector<std::byte>> tensors;
  for (const auto& c : containers) {
    auto view = ParseContainer(c);
    if (!view.ok()) return view.status();
    std::vector<std::byte> t(view->shape.Bytes());
    if (auto st = Decode(c, t); !st.ok()) return st;
    shapes.push_back(view->shape);
    tensors.push_back(std::move(t));
  }
  auto joined = ConcatTokens(shapes, tensors);
  if (!joined.ok()) return joined.status();
  if (joined->type == ElemType::kBF16 && path.size() > 4 && path.compare(path.size() - 4, 4, ".npy") == 0) {
    std::fprintf(stderr, "note: .npy has no bfloat16; writing float32 (lossless)\n");
  }
  return WriteTensorFile(path, *joined);
}

int CmdGet(const CliOptions& o) {
  auto keys = KeysFromOptions(o);
  if (!keys.ok()) return Fail(keys.status());
  auto client = Dial(o);
  if (!client.ok()) return Fail(client.status());
  std::vector<std::vector<std::byte>> containers;
  for (const auto& key : *keys) {
    absl::StatusOr<std::vector<std::byte>> bytes;
    if (o.shm) {
      auto le = (*client)->GetShm(o.ns, key);
      if (le.ok()) {
        std::vector<std::byte> buf(le->bytes().size());
        auto n = le->CopyOut(buf);
        bytes = n.ok() ? absl::StatusOr<std::vector<std::byte>>(std::move(buf)) : n.status();
      } else {
        bytes = le.status();
      }
    } else {
      bytes = (*client)->Get(o.ns, key);
    }
    if (!bytes.ok()) {
      if (bytes.status().code() == absl::StatusCode::kNotFound) break;  // the prefix ends here
      return Fail(bytes.status());
    }
    containers.push_back(std::move(*bytes));
  }
  if (containers.empty()) return Miss("no entry for the first key");
  absl::Status st;
  if (o.decode) {
    st = WriteDecoded(o.out, containers);
  } else {
    std::vector<std::byte> all;
    for (const auto& c : containers) all.insert(all.end(), c.begin(), c.end());
    st = WriteFileBytes(o.out, all.data(), all.size());
  }
  if (!st.ok()) return Fail(st);
  std::printf("got %zu of %zu chunks -> %s\n", containers.size(), keys->size(), o.out.c_str());
  return 0;
}

int CmdLookup(const CliOptions& o) {
  auto keys = KeysFromOptions(o);
  if (!keys.ok()) return Fail(keys.status());
  auto client = Dial(o);
  if (!client.ok()) return Fail(client.status());
  auto r = (*client)->Lookup(o.ns, *keys);
  if (!r.ok()) return Fail(r.status());
  std::printf("prefix_hits %u of %zu\n", r->prefix_hits, keys->size());
  std::printf("%-5s %-32s %-5s %-20s %12s %12s %8s\n", "chunk", "key", "tier", "codec", "stored_B", "raw_B", "qloss");
  for (size_t i = 0; i < keys->size(); ++i) {
    const EntryInfo& e = r->entries[i];
    // A lossy entry the daemon has not estimated yet reports 0, which would read as
    // "lossless": show n/a instead (a miss shows -).
    const std::string qloss = !e.hit() ? "-" : e.quality_known() ? absl::StrFormat("%.4f", e.est_quality_loss) : "n/a";
    std::printf("%-5zu %-32s %-5s %-20s %12" PRIu64 " %12" PRIu64 " %8s\n", i, (*keys)[i].ToHex().c_str(),
                std::string(TierName(e.tier)).c_str(), e.hit() ? e.codec.c_str() : "-", e.stored_bytes, e.raw_bytes,
                qloss.c_str());
  }
  if (r->prefix_hits == 0) return Miss("no entry for the first key");
  return 0;
}

int CmdDelete(const CliOptions& o) {
  auto keys = KeysFromOptions(o);
  if (!keys.ok()) return Fail(keys.status());
  auto client = Dial(o);
  if (!client.ok()) return Fail(client.status());
  auto n = (*client)->Delete(o.ns, *keys);
  if (!n.ok()) return Fail(n.status());
  std::printf("deleted %u of %zu\n", *n, keys->size());
  return 0;
}

int CmdStats(const CliOptions& o) {
  auto client = Dial(o);
  if (!client.ok()) return Fail(client.status());
  auto s = (*client)->Stats();
  if (!s.ok()) return Fail(s.status());
  std::printf("version %s  uptime %" PRIu64 " s\n", s->version.c_str(), s->uptime_s);
  std::printf("lookups %" PRIu64 "  misses %" PRIu64 "  puts %" PRIu64 "  evictions %" PRIu64
              "  leases_outstanding %" PRIu64 "\n",
              s->lookups, s->misses, s->puts, s->evictions, s->leases_outstanding);
  for (const auto& t : s->tiers) {
    std::printf("tier %-5s capacity %" PRIu64 " B  used %" PRIu64 " B  entries %" PRIu64 "  hits %" PRIu64 "\n",
                std::string(TierName(t.tier)).c_str(), t.capacity_bytes, t.used_bytes, t.entries, t.hits);
  }
  for (const auto& [codec, n] : s->entries_by_codec) {
    auto it = s->bytes_by_codec.find(codec);
    std::printf("codec %-20s entries %" PRIu64 "  bytes %" PRIu64 "\n", codec.c_str(), n,
                it == s->bytes_by_codec.end() ? 0 : it->second);
  }
  return 0;
}

int CmdHealth(const CliOptions& o) {
  auto client = Dial(o);
  if (!client.ok()) return Fail(client.status());
  auto h = (*client)->Health();
  if (!h.ok()) return Fail(h.status());
  std::printf("%s  version %s\n", h->serving ? "serving" : "NOT serving", h->version.c_str());
  return h->serving ? 0 : kExitError;
}

int CmdCodecs(const CliOptions& o) {
  auto dt = DTypeFromName(o.codecs_dtype);
  if (!dt.ok()) return Fail(dt.status());
  KvShape shape{o.layers, o.tokens, o.kv_heads, o.head_dim, *dt};
  if (auto st = ValidateShape(shape); !st.ok()) return Fail(st);
  std::printf("shape %s  raw %" PRIu64 " B\n", shape.DebugString().c_str(), shape.Bytes());
  std::printf("%-28s %14s %12s %10s\n", "config", "max_encoded_B", "size_ratio", "compress");
  for (const auto& cfg : DefaultConfigSpace()) {
    const uint64_t enc = MaxEncodedBytes(cfg, shape);
    const double ratio = static_cast<double>(enc) / static_cast<double>(shape.Bytes());
    std::printf("%-28s %14" PRIu64 " %12.6f %9.2fx\n", cfg.Name().c_str(), enc, ratio, 1.0 / ratio);
  }
  return 0;
}

int CmdDecode(const CliOptions& o) {
  auto bytes = ReadFileBytes(o.in);
  if (!bytes.ok()) return Fail(bytes.status());
  // The file may hold several containers back to back (as `get` writes them).
  std::vector<std::vector<std::byte>> containers;
  std::span<const std::byte> rest(*bytes);
  while (!rest.empty()) {
    if (rest.size() < sizeof(ContainerHeader)) return Fail(absl::DataLossError("trailing bytes after the last container"));
    ContainerHeader h;
    std::memcpy(&h, rest.data(), sizeof(h));
    if (h.total_bytes < sizeof(ContainerHeader) || h.total_bytes > rest.size()) {
      return Fail(absl::DataLossError(absl::StrCat("container ", containers.size(), " has a bad total size")));
    }
    auto c = rest.first(h.total_bytes);
    if (auto v = ParseContainer(c); !v.ok()) return Fail(v.status());
    containers.emplace_back(c.begin(), c.end());
    rest = rest.subspan(h.total_bytes);
  }
  if (containers.empty()) return Fail(absl::InvalidArgumentError("empty input"));
  if (auto st = WriteDecoded(o.out, containers); !st.ok()) return Fail(st);
  std::printf("decoded %zu containers -> %s\n", containers.size(), o.out.c_str());
  return 0;
}

}  // namespace
}  // namespace adaptcache::client

int main(int argc, char** argv) {
  using namespace adaptcache::client;
  CliOptions o;
  ParseOutcome p = ParseCli(argc, argv, &o);
  if (p.exit_now) {
    std::fputs(p.text.c_str(), p.exit_code == 0 ? stdout : stderr);
    return p.exit_code;
  }
  if (o.command == "put") return CmdPut(o);
  if (o.command == "get") return CmdGet(o);
  if (o.command == "lookup") return CmdLookup(o);
  if (o.command == "delete") return CmdDelete(o);
  if (o.command == "stats") return CmdStats(o);
  if (o.command == "health") return CmdHealth(o);
  if (o.command == "codecs") return CmdCodecs(o);
  if (o.command == "decode") return CmdDecode(o);
  std::fprintf(stderr, "adaptcache: unknown command\n");
  return 1;
}
