#include "client/kv_files.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "client/npy.h"
#include "client/safetensors.h"
#include "common/half.h"

namespace adaptcache::client {
namespace {

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

double LoadElem(const HostTensor& t, uint64_t i) {
  const std::byte* p = t.data.data() + i * ElemSize(t.type);
  switch (t.type) {
    case ElemType::kF16: return LoadAsFloat(p, DType::kFP16, 0);
    case ElemType::kBF16: return LoadAsFloat(p, DType::kBF16, 0);
    case ElemType::kF32: return LoadAsFloat(p, DType::kFP32, 0);
    case ElemType::kF64: {
      double d;
      std::memcpy(&d, p, 8);
      return d;
    }
    default: return 0;
  }
}

void StoreElem(HostTensor* t, uint64_t i, double v) {
  std::byte* p = t->data.data() + i * ElemSize(t->type);
  switch (t->type) {
    case ElemType::kF16: StoreFromFloat(p, DType::kFP16, 0, static_cast<float>(v)); break;
    case ElemType::kBF16: StoreFromFloat(p, DType::kBF16, 0, static_cast<float>(v)); break;
    case ElemType::kF32: StoreFromFloat(p, DType::kFP32, 0, static_cast<float>(v)); break;
    case ElemType::kF64: std::memcpy(p, &v, 8); break;
    default: break;
  }
}

}  // namespace

absl::StatusOr<std::vector<uint64_t>> ParseDims(std::string_view text) {
  std::vector<uint64_t> dims;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '[' || text[i] == ']')) ++i;
    if (i >= text.size()) break;
    if (text[i] < '0' || text[i] > '9') {
      return absl::InvalidArgumentError(absl::StrCat("shape '", std::string(text), "': expected a number"));
    }
    uint64_t v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (v > (1ull << 40)) return absl::InvalidArgumentError("shape dimension too large");
      v = v * 10 + static_cast<uint64_t>(text[i++] - '0');
    }
    if (v == 0) return absl::InvalidArgumentError(absl::StrCat("shape '", std::string(text), "' has a zero dimension"));
    dims.push_back(v);
    if (dims.size() > kMaxRank) return absl::InvalidArgumentError("shape has too many dimensions");
    while (i < text.size() && (text[i] == ' ' || text[i] == ']')) ++i;
    if (i < text.size()) {
      if (text[i] != ',' && text[i] != 'x') {
        return absl::InvalidArgumentError(absl::StrCat("shape '", std::string(text), "': bad separator"));
      }
      ++i;
    }
  }
  if (dims.empty()) return absl::InvalidArgumentError("empty shape");
  return dims;
}

absl::StatusOr<KvShape> KvShapeFromDims(std::span<const uint64_t> dims, ElemType type) {
  auto dt = ToKvDType(type);
  if (!dt.ok()) return dt.status();
  if (dims.size() != 5 || dims[0] != 2) {
    std::string s;
    for (auto d : dims) absl::StrAppend(&s, s.empty() ? "" : ",", d);
    return absl::InvalidArgumentError(absl::StrCat(
        "KV tensor shape [", s, "] is not [2, layers, tokens, kv_heads, head_dim]; give --shape to reshape"));
  }
  for (size_t i = 1; i < 5; ++i) {
    if (dims[i] > UINT32_MAX) return absl::InvalidArgumentError("KV dimension too large");
  }
  KvShape s{static_cast<uint32_t>(dims[1]), static_cast<uint32_t>(dims[2]), static_cast<uint32_t>(dims[3]),
            static_cast<uint32_t>(dims[4]), *dt};
  // Tokens are checked per chunk by the caller; everything else must be valid now.
  KvShape one = s;
  one.tokens = 1;
  if (auto st = ValidateShape(one); !st.ok()) return st;
  return s;
}

absl::StatusOr<std::vector<uint32_t>> ParseTokenText(std::string_view text) {
  std::vector<uint32_t> out;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',') {
      ++i;
      continue;
    }
    if (c < '0' || c > '9') {
      return absl::InvalidArgumentError(
          absl::StrCat("token file: unexpected character '", std::string(1, c), "' at byte ", i));
    }
    uint64_t v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      v = v * 10 + static_cast<uint64_t>(text[i++] - '0');
      if (v > UINT32_MAX) return absl::InvalidArgumentError("token id does not fit in 32 bits");
    }
    if (out.size() >= kMaxTokenIds) return absl::InvalidArgumentError("too many token ids");
    out.push_back(static_cast<uint32_t>(v));
  }
  return out;
}

absl::StatusOr<std::vector<uint32_t>> TokensFromTensor(const HostTensor& t) {
  if (IsFloat(t.type)) return absl::InvalidArgumentError("token ids must be integers, file holds floats");
  const uint64_t n = t.Elements();
  if (n > kMaxTokenIds) return absl::InvalidArgumentError("too many token ids");
  std::vector<uint32_t> out(n);
  const size_t es = ElemSize(t.type);
  const bool is_signed = t.type == ElemType::kI8 || t.type == ElemType::kI16 || t.type == ElemType::kI32 ||
                         t.type == ElemType::kI64;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t raw = 0;
    std::memcpy(&raw, t.data.data() + i * es, es);  // little-endian host
    int64_t sv = 0;
    if (is_signed) {
      const int shift = static_cast<int>(64 - 8 * es);
      sv = static_cast<int64_t>(raw << shift) >> shift;
      if (sv < 0) return absl::InvalidArgumentError(absl::StrCat("negative token id at index ", i));
      raw = static_cast<uint64_t>(sv);
    }
    if (raw > UINT32_MAX) return absl::InvalidArgumentError(absl::StrCat("token id at index ", i, " exceeds 32 bits"));
    out[i] = static_cast<uint32_t>(raw);
  }
  return out;
}

absl::StatusOr<std::vector<uint32_t>> ReadTokenFile(const std::string& path) {
  auto bytes = ReadFileBytes(path);
  if (!bytes.ok()) return bytes.status();
  std::vector<uint32_t> ids;
  if (bytes->size() >= 6 && std::memcmp(bytes->data(), "\x93NUMPY", 6) == 0) {
    auto t = ParseNpy(*bytes);
    if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", t.status().message()));
    auto r = TokensFromTensor(*t);
    if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", r.status().message()));
    ids = std::move(*r);
  } else {
    auto r = ParseTokenText(std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
    if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", r.status().message()));
    ids = std::move(*r);
  }
  if (ids.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no token ids"));
  return ids;
}

absl::StatusOr<std::vector<Key128>> ParseHexKeys(std::span<const std::string> hex) {
  std::vector<Key128> out;
  for (const auto& h : hex) {
    auto k = Key128::FromHex(h);
    if (!k.ok()) return absl::InvalidArgumentError(absl::StrCat("key '", h, "': ", k.status().message()));
    out.push_back(*k);
  }
  return out;
}

absl::StatusOr<HostTensor> ReadTensorFile(const std::string& path, const std::string& name) {
  auto bytes = ReadFileBytes(path);
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() >= 6 && std::memcmp(bytes->data(), "\x93NUMPY", 6) == 0) {
    if (!name.empty()) return absl::InvalidArgumentError("--tensor-name applies to .safetensors files only");
    auto t = ParseNpy(*bytes);
    if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", t.status().message()));
    return t;
  }
  auto f = ParseSafetensors(*bytes);
  if (!f.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": neither .npy nor valid .safetensors (", f.status().message(), ")"));
  }
  auto t = f->Find(name);
  if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(path, ": ", t.status().message()));
  for (auto& nt : f->tensors) {
    if (&nt.tensor == *t) return std::move(nt.tensor);
  }
  return absl::InternalError("tensor vanished");
}

absl::Status WriteTensorFile(const std::string& path, const HostTensor& t, const std::string& name) {
  if (EndsWith(path, ".npy")) {
    if (t.type == ElemType::kBF16) {
      auto wide = ConvertFloat(t, ElemType::kF32);
      if (!wide.ok()) return wide.status();
      return WriteNpy(path, *wide);
    }
    return WriteNpy(path, t);
  }
  if (EndsWith(path, ".safetensors")) {
    SafetensorsFile f;
    f.tensors.push_back({name, t});
    return WriteSafetensors(path, f);
  }
  return absl::InvalidArgumentError(absl::StrCat("output '", path, "' must end in .npy or .safetensors"));
}

absl::StatusOr<HostTensor> ConvertFloat(const HostTensor& t, ElemType to) {
  if (!IsFloat(t.type) || !IsFloat(to)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot convert ", std::string(ElemTypeName(t.type)), " to ",
                                                   std::string(ElemTypeName(to))));
  }
  if (t.type == to) return t;
  HostTensor out;
  out.type = to;
  out.shape = t.shape;
  const uint64_t n = t.Elements();
  out.data.resize(n * ElemSize(to));
  for (uint64_t i = 0; i < n; ++i) StoreElem(&out, i, LoadElem(t, i));
  return out;
}

std::vector<std::byte> SliceTokens(const KvShape& full, std::span<const std::byte> data, uint32_t t0, uint32_t t1) {
  const uint64_t row = uint64_t{full.kv_heads} * full.head_dim * DTypeSize(full.dtype);
  const uint64_t slab = row * full.tokens;
  const uint64_t out_slab = row * (t1 - t0);
  std::vector<std::byte> out(out_slab * 2 * full.layers);
  for (uint64_t s = 0; s < 2ull * full.layers; ++s) {
    std::memcpy(out.data() + s * out_slab, data.data() + s * slab + t0 * row, out_slab);
  }
  return out;
}

absl::StatusOr<HostTensor> ConcatTokens(std::span<const KvShape> shapes, std::span<const std::vector<std::byte>> parts) {
  if (shapes.empty() || shapes.size() != parts.size()) return absl::InvalidArgumentError("nothing to concatenate");
  const KvShape& a = shapes[0];
  uint64_t tokens = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const KvShape& s = shapes[i];
    if (s.layers != a.layers || s.kv_heads != a.kv_heads || s.head_dim != a.head_dim || s.dtype != a.dtype) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk ", i, " has shape ", s.DebugString(), ", chunk 0 has ", a.DebugString()));
    }
    if (parts[i].size() != s.Bytes()) return absl::InvalidArgumentError("chunk size does not match its shape");
    tokens += s.tokens;
  }
  const uint64_t row = uint64_t{a.kv_heads} * a.head_dim * DTypeSize(a.dtype);
  HostTensor out;
  out.type = FromKvDType(a.dtype);
  out.shape = {2, a.layers, tokens, a.kv_heads, a.head_dim};
  out.data.resize(2ull * a.layers * tokens * row);
  uint64_t t0 = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const uint64_t part_slab = row * shapes[i].tokens;
    for (uint64_t s = 0; s < 2ull * a.layers; ++s) {
      std::memcpy(out.data.data() + (s * tokens + t0) * row, parts[i].data() + s * part_slab, part_slab);
    }
    t0 += shapes[i].tokens;
  }
  return out;
}

std::vector<std::byte> RandomKvBytes(const KvShape& shape, uint64_t seed) {
  std::vector<std::byte> out(shape.Bytes());
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  if (x == 0) x = 1;  // xorshift's one fixed point
  const uint64_t n = shape.Elements();
  for (uint64_t i = 0; i < n; ++i) {
    x ^= x << 13;  // xorshift64
    x ^= x >> 7;
    x ^= x << 17;
    const float v = static_cast<float>(x >> 40) * (4.0f / 16777216.0f) - 2.0f;
    StoreFromFloat(out.data(), shape.dtype, i, v);
  }
  return out;
}

}  // namespace adaptcache::client
