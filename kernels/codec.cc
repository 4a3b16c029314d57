#include "kernels/codec.h"

#include <charconv>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "kernels/drop.h"
#include "kernels/fp8.h"
#include "kernels/lowrank.h"
#include "kernels/quant.h"

namespace adaptcache {
namespace {

constexpr uint32_t kRawSectionData = 1;

absl::Status BadName(std::string_view name, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("bad codec config '", std::string(name),
                                                 "': ", std::string(why)));
}

QuantParams QuantOf(const CodecConfig& c) {
  QuantParams q;
  q.k_bits = c.k_bits;
  q.v_bits = c.v_bits;
  q.group = c.group;
  q.sinks = c.sink_tokens;
  q.hadamard = c.hadamard;
  return q;
}

void SetQuant(const QuantParams& q, CodecConfig& c) {
  c.k_bits = q.k_bits;
  c.v_bits = q.v_bits;
  c.group = q.group;
  c.sink_tokens = q.sinks;
  c.hadamard = q.hadamard;
}

DropParams DropOf(const CodecConfig& c) {
  DropParams d;
  d.keep_permille = c.keep_permille;
  d.quantized = c.k_bits != 0;
  if (d.quantized) d.quant = QuantOf(c);
  return d;
}

std::string QuantSuffix(const CodecConfig& c) {
  std::string s = absl::StrCat("quant-k", c.k_bits, "v", c.v_bits, "-g", c.group);
  if (c.sink_tokens != 0) absl::StrAppend(&s, "-s", c.sink_tokens);
  if (c.hadamard) absl::StrAppend(&s, "-h");
  return s;
}

// Reads a decimal number at the front of `s` and advances past it.
bool TakeNumber(std::string_view& s, uint32_t* v) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  if (ec != std::errc() || ptr == s.data()) return false;
  s.remove_prefix(ptr - s.data());
  return true;
}

bool TakePrefix(std::string_view& s, std::string_view p) {
  if (s.substr(0, p.size()) != p) return false;
  s.remove_prefix(p.size());
  return true;
}

// Parses "quant-k<K>v<V>-g<G>[-s<S>][-h]" into c (grid checked later).
bool ParseQuantPart(std::string_view s, CodecConfig& c) {
  uint32_t k, v, g, sinks = 0;
  if (!TakePrefix(s, "quant-k") || !TakeNumber(s, &k) || !TakePrefix(s, "v") ||
      !TakeNumber(s, &v) || !TakePrefix(s, "-g") || !TakeNumber(s, &g)) {
    return false;
  }
  if (TakePrefix(s, "-s") && !TakeNumber(s, &sinks)) return false;
  const bool h = TakePrefix(s, "-h");
  if (!s.empty() || k > 255 || v > 255 || g > 65535 || sinks > 255) return false;
  c.k_bits = static_cast<uint8_t>(k);
  c.v_bits = static_cast<uint8_t>(v);
  c.group = static_cast<uint16_t>(g);
  c.sink_tokens = static_cast<uint8_t>(sinks);
  c.hadamard = h;
  return true;
}

absl::Status ValidateQuantFields(const CodecConfig& c) { return ValidateQuantParams(QuantOf(c)); }

bool QuantFieldsZero(const CodecConfig& c) {
  return c.k_bits == 0 && c.v_bits == 0 && c.group == 0 && c.sink_tokens == 0 && !c.hadamard;
}

uint32_t DropPercent(uint16_t permille) { return permille / 10; }

}  // namespace

std::string CodecConfig::Name() const {
  switch (family) {
    case CodecId::kRaw:
      return "raw";
    case CodecId::kFp8:
      return "fp8";
    case CodecId::kQuant:
      return QuantSuffix(*this);
    case CodecId::kDrop: {
      std::string s = absl::StrCat("drop-", DropPercent(keep_permille));
      if (k_bits != 0) absl::StrAppend(&s, "+", QuantSuffix(*this));
      return s;
    }
    case CodecId::kLowrank:
      return absl::StrCat("lowrank-r", lowrank_ratio);
  }
  return "invalid";
}

absl::StatusOr<CodecConfig> ParseCodecConfig(std::string_view name) {
  CodecConfig c;
  std::string_view s = name;
  if (s == "raw") {
    c.family = CodecId::kRaw;
  } else if (s == "fp8") {
    c.family = CodecId::kFp8;
  } else if (s.substr(0, 6) == "quant-") {
    c.family = CodecId::kQuant;
    if (!ParseQuantPart(s, c)) {
      return BadName(name, "expected quant-k<bits>v<bits>-g<group>[-s<sinks>][-h]");
    }
  } else if (TakePrefix(s, "drop-")) {
    c.family = CodecId::kDrop;
    uint32_t pct;
    if (!TakeNumber(s, &pct) || pct > 100) return BadName(name, "expected drop-<percent kept>");
    c.keep_permille = static_cast<uint16_t>(pct * 10);
    if (!s.empty()) {
      if (!TakePrefix(s, "+") || !ParseQuantPart(s, c)) {
        return BadName(name, "expected drop-<percent>[+quant-...]");
      }
    }
  } else if (TakePrefix(s, "lowrank-r")) {
    c.family = CodecId::kLowrank;
    uint32_t r;
    if (!TakeNumber(s, &r) || !s.empty() || r > 255) {
      return BadName(name, "expected lowrank-r<ratio>");
    }
    c.lowrank_ratio = static_cast<uint8_t>(r);
  } else {
    return BadName(name, "unknown family (raw, fp8, quant-..., drop-..., lowrank-r...)");
  }
  if (auto st = ValidateConfig(c); !st.ok()) return BadName(name, std::string(st.message()));
  if (c.Name() != name) {
    return BadName(name, absl::StrCat("not in canonical form; write '", c.Name(), "'"));
  }
  return c;
}

std::vector<CodecConfig> DefaultConfigSpace() {
  static const char* const kNames[] = {
      "raw",
      "fp8",
      "quant-k8v8-g128",
      "quant-k4v4-g32",
      "quant-k4v4-g64",
      "quant-k4v4-g128",
      "quant-k4v2-g32",
      "quant-k4v2-g64",
      "quant-k4v2-g128",
      "quant-k4v2-g64-h",
      "quant-k3v3-g64-h",
      "quant-k2v2-g32",
      "quant-k2v2-g64",
      "quant-k2v2-g128",
      "quant-k2v2-g32-h",
      "quant-k2v2-g64-h",
      "quant-k2v2-g32-s4-h",
      "drop-75",
      "drop-50",
      "drop-33",
      "drop-25",
      "drop-10",
      "drop-75+quant-k4v4-g64",
      "drop-50+quant-k4v4-g64",
      "drop-50+quant-k4v2-g64",
      "drop-33+quant-k4v2-g64",
      "drop-25+quant-k2v2-g32-h",
      "lowrank-r8",
      "lowrank-r12",
      "lowrank-r16",
      "lowrank-r20",
  };
  std::vector<CodecConfig> out;
  for (const char* n : kNames) out.push_back(*ParseCodecConfig(n));
  return out;
}

absl::Status ValidateConfig(const CodecConfig& c) {
  switch (c.family) {
    case CodecId::kRaw:
    case CodecId::kFp8:
      if (QuantFieldsZero(c) && c.keep_permille == 0 && c.lowrank_ratio == 0) {
        return absl::OkStatus();
      }
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(CodecFamilyName(c.family)), " takes no parameters"));
    case CodecId::kQuant:
      if (c.keep_permille != 0 || c.lowrank_ratio != 0) {
        return absl::InvalidArgumentError("quant config with drop/lowrank fields set");
      }
      return ValidateQuantFields(c);
    case CodecId::kDrop:
      if (auto st = ValidateDropPermille(c.keep_permille); !st.ok()) return st;
      if (c.lowrank_ratio != 0) return absl::InvalidArgumentError("drop with lowrank ratio");
      if (c.k_bits == 0) {
        if (QuantFieldsZero(c)) return absl::OkStatus();
        return absl::InvalidArgumentError("drop without quant has quant fields set");
      }
      return ValidateQuantFields(c);
    case CodecId::kLowrank:
      if (!QuantFieldsZero(c) || c.keep_permille != 0) {
        return absl::InvalidArgumentError("lowrank config with quant/drop fields set");
      }
      if (c.lowrank_ratio < kLowrankMinRatio || c.lowrank_ratio > kLowrankMaxRatio) {
        return absl::InvalidArgumentError(absl::StrCat("lowrank ratio ", c.lowrank_ratio,
                                                       " not in [8, 20]"));
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("unknown codec family");
}

absl::Status CheckApplicable(const CodecConfig& cfg, const KvShape& shape) {
  if (auto st = ValidateShape(shape); !st.ok()) return st;
  if (auto st = ValidateConfig(cfg); !st.ok()) return st;
  if (cfg.family == CodecId::kQuant || (cfg.family == CodecId::kDrop && cfg.k_bits != 0)) {
    return CheckQuantShape(QuantOf(cfg), shape);
  }
  return absl::OkStatus();
}

uint64_t MaxEncodedBytes(const CodecConfig& cfg, const KvShape& shape) {
  if (!CheckApplicable(cfg, shape).ok()) return 0;
  switch (cfg.family) {
    case CodecId::kRaw: {
      ContainerWriter w(CodecId::kRaw, shape);
      w.AddSection(kRawSectionData, shape.Bytes());
      return w.TotalBytes();
    }
    case CodecId::kFp8:
      return Fp8ContainerBytes(shape);
    case CodecId::kQuant:
      return QuantContainerMaxBytes(QuantOf(cfg), shape);
    case CodecId::kDrop:
      return DropContainerMaxBytes(DropOf(cfg), shape);
    case CodecId::kLowrank:
      return LowrankMaxBytes(cfg, shape);
  }
  return 0;
}

absl::StatusOr<RawContainerBuilder> RawContainerBuilder::Start(const KvShape& shape, ByteSpan out) {
  if (auto st = ValidateShape(shape); !st.ok()) return st;
  RawContainerBuilder b(shape);
  b.writer_.AddSection(kRawSectionData, shape.Bytes());
  if (auto st = b.writer_.Layout(out); !st.ok()) return st;
  b.data_ = b.writer_.SectionData(0);
  // The payload CRC starts with the section table and padding in front of the tensor.
  const auto* payload = out.data() + sizeof(ContainerHeader);
  b.payload_crc_ = Crc32c(payload, static_cast<size_t>(b.data_.data() - payload));
  return b;
}

absl::Status RawContainerBuilder::Append(const void* data, uint64_t n) {
  if (n > data_.size() - written_) {
    return absl::InvalidArgumentError(
        absl::StrCat("stream carries more than the shape's ", data_.size(), " bytes"));
  }
  std::memcpy(data_.data() + written_, data, n);
  payload_crc_ = Crc32cExtend(payload_crc_, data_.data() + written_, n);
  written_ += n;
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> RawContainerBuilder::Seal() {
  if (written_ != data_.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat("raw container has ", written_, " of ", data_.size(), " tensor bytes"));
  }
  return writer_.Seal(payload_crc_);
}

absl::StatusOr<uint64_t> EncodeRaw(const KvShape& shape, ConstByteSpan raw, ByteSpan out,
                                   uint32_t* container_crc32c) {
  auto b = RawContainerBuilder::Start(shape, out);
  if (!b.ok()) return b.status();
  if (auto st = b->Append(raw.data(), raw.size()); !st.ok()) return st;
  auto crc = b->Seal();
  if (!crc.ok()) return crc.status();
  if (container_crc32c != nullptr) *container_crc32c = *crc;
  return b->total_bytes();
}

uint64_t RawContainerBytes(const KvShape& shape) {
  ContainerWriter w(CodecId::kRaw, shape);
  w.AddSection(kRawSectionData, shape.Bytes());
  return w.TotalBytes();
}

absl::StatusOr<uint64_t> Encode(const CodecConfig& cfg, const KvShape& shape, ConstByteSpan raw,
                                const SideData& side, ByteSpan out) {
  if (auto st = CheckApplicable(cfg, shape); !st.ok()) return st;
  if (raw.size() != shape.Bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor is ", raw.size(), " bytes; shape ", shape.DebugString(), " needs ",
                     shape.Bytes()));
  }
  switch (cfg.family) {
    case CodecId::kRaw:
      return EncodeRaw(shape, raw, out);
    case CodecId::kFp8:
      return EncodeFp8(shape, raw, out);
    case CodecId::kQuant:
      return EncodeQuant(QuantOf(cfg), shape, raw, out);
    case CodecId::kDrop:
      return EncodeDrop(DropOf(cfg), shape, raw, side.token_importance, out);
    case CodecId::kLowrank:
      return EncodeLowrank(cfg, shape, raw, out);
  }
  return absl::InvalidArgumentError("unknown codec family");
}

absl::StatusOr<std::vector<std::byte>> EncodeToVector(const CodecConfig& cfg, const KvShape& shape,
                                                      ConstByteSpan raw, const SideData& side) {
  if (auto st = CheckApplicable(cfg, shape); !st.ok()) return st;
  std::vector<std::byte> out(MaxEncodedBytes(cfg, shape));
  auto n = Encode(cfg, shape, raw, side, out);
  if (!n.ok()) return n.status();
  out.resize(*n);
  return out;
}

absl::Status Decode(ConstByteSpan container, ByteSpan out) {
  auto view = ParseContainer(container);
  if (!view.ok()) return view.status();
  if (out.size() != view->shape.Bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("output buffer is ", out.size(),
                                                   " bytes; tensor needs ", view->shape.Bytes()));
  }
  switch (view->codec) {
    case CodecId::kRaw: {
      for (uint8_t p : view->params) {
        if (p != 0) return absl::DataLossError("corrupt container: raw params not zero");
      }
      if (view->sections.size() != 1) {
        return absl::DataLossError("corrupt container: raw has one section");
      }
      auto data = view->Find(kRawSectionData);
      if (!data.ok()) return data.status();
      if (data->size() != out.size()) return absl::DataLossError("corrupt container: raw size");
      std::memcpy(out.data(), data->data(), out.size());
      return absl::OkStatus();
    }
    case CodecId::kFp8:
      return DecodeFp8(*view, out);
    case CodecId::kQuant:
      return DecodeQuant(*view, out);
    case CodecId::kDrop:
      return DecodeDrop(*view, out);
    case CodecId::kLowrank:
      return DecodeLowrank(*view, out);
  }
  return absl::DataLossError("corrupt container: unknown codec");
}

absl::StatusOr<CodecConfig> ConfigOf(const ContainerView& view) {
  CodecConfig c;
  c.family = view.codec;
  switch (view.codec) {
    case CodecId::kRaw:
    case CodecId::kFp8:
      return c;
    case CodecId::kQuant: {
      auto q = ReadQuantParams(view.params.data());
      if (!q.ok()) return q.status();
      SetQuant(*q, c);
      return c;
    }
    case CodecId::kDrop: {
      auto d = DropParamsOf(view);
      if (!d.ok()) return d.status();
      c.keep_permille = d->keep_permille;
      if (d->quantized) SetQuant(d->quant, c);
      return c;
    }
    case CodecId::kLowrank:
      // Lowrank params byte 0 is the configured ratio (docs/format.md, "lowrank").
      c.lowrank_ratio = view.params[0];
      if (auto st = ValidateConfig(c); !st.ok()) {
        return absl::DataLossError(absl::StrCat("corrupt lowrank container: ",
                                                std::string(st.message())));
      }
      return c;
  }
  return absl::DataLossError("corrupt container: unknown codec");
}

absl::StatusOr<std::vector<uint32_t>> DecodeKeptTokens(ConstByteSpan container) {
  auto view = ParseContainer(container);
  if (!view.ok()) return view.status();
  if (view->codec == CodecId::kDrop) return DecodeDropKeptTokens(*view);
  std::vector<uint32_t> all(view->shape.tokens);
  for (uint32_t t = 0; t < all.size(); ++t) all[t] = t;
  return all;
}

}  // namespace adaptcache
