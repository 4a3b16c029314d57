#include "common/key.h"

#include <xxhash.h>

#include <cctype>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace adaptcache {
namespace {

constexpr char kNamespaceDomain[] = "adaptcache/ns/v1";  // hashed with its NUL.

void PutLe64(uint64_t v, unsigned char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint64_t GetLe64(const unsigned char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(in[i]) << (8 * i);
  return v;
}
Key128 FromXxh(XXH128_hash_t h) { return Key128{h.low64, h.high64}; }

}  // namespace

std::string Key128::ToBytes() const {
  std::string out(kKeyBytes, '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  PutLe64(lo, p);
  PutLe64(hi, p + 8);
  return out;
}

absl::StatusOr<Key128> Key128::FromBytes(std::string_view bytes) {
  if (bytes.size() != kKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("key must be exactly 16 bytes, got ", bytes.size()));
  }
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  return Key128{GetLe64(p), GetLe64(p + 8)};
}

std::string Key128::ToHex() const { return absl::BytesToHexString(ToBytes()); }

absl::StatusOr<Key128> Key128::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kKeyBytes) {
    return absl::InvalidArgumentError("hex key must be 32 hex digits");
  }
  for (char c : hex) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("hex key has a non-hex character");
    }
  }
  return FromBytes(absl::HexStringToBytes(absl::string_view(hex.data(), hex.size())));
}

Key128 NamespaceSeed(std::string_view ns) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_128bits_reset(st);
  XXH3_128bits_update(st, kNamespaceDomain, sizeof(kNamespaceDomain));
  XXH3_128bits_update(st, ns.data(), ns.size());
  Key128 k = FromXxh(XXH3_128bits_digest(st));
  XXH3_freeState(st);
  return k;
}

Key128 ChainKey(const Key128& prev, std::span<const uint32_t> tokens) {
  // Small stack buffer for the usual chunk (256 tokens); hashed in one call.
  constexpr size_t kStackTokens = 1024;
  unsigned char stack_buf[kKeyBytes + 4 * kStackTokens];
  std::vector<unsigned char> heap_buf;
  unsigned char* buf = stack_buf;
  const size_t len = kKeyBytes + 4 * tokens.size();
  if (tokens.size() > kStackTokens) {
    heap_buf.resize(len);
    buf = heap_buf.data();
  }
  PutLe64(prev.lo, buf);
  PutLe64(prev.hi, buf + 8);
  unsigned char* p = buf + kKeyBytes;
  for (uint32_t t : tokens) {
    p[0] = static_cast<unsigned char>(t);
    p[1] = static_cast<unsigned char>(t >> 8);
    p[2] = static_cast<unsigned char>(t >> 16);
    p[3] = static_cast<unsigned char>(t >> 24);
    p += 4;
  }
  return FromXxh(XXH3_128bits(buf, len));
}

std::vector<Key128> HashTokenChunks(std::string_view ns,
                                    std::span<const uint32_t> tokens,
                                    uint32_t chunk_tokens) {
  std::vector<Key128> keys;
  if (chunk_tokens == 0) return keys;
  keys.reserve((tokens.size() + chunk_tokens - 1) / chunk_tokens);
  Key128 prev = NamespaceSeed(ns);
  for (size_t off = 0; off < tokens.size(); off += chunk_tokens) {
    size_t n = std::min<size_t>(chunk_tokens, tokens.size() - off);
    prev = ChainKey(prev, tokens.subspan(off, n));
    keys.push_back(prev);
  }
  return keys;
}

uint64_t NamespaceId(std::string_view ns) { return NamespaceSeed(ns).lo; }

absl::Status ValidateNamespace(std::string_view ns) {
  if (ns.empty()) return absl::InvalidArgumentError("namespace is empty");
  if (ns.size() > kMaxNamespaceBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace is ", ns.size(), " bytes; the limit is ", kMaxNamespaceBytes));
  }
  for (char c : ns) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError("namespace must be printable ASCII");
    }
  }
  return absl::OkStatus();
}

}  // namespace adaptcache
