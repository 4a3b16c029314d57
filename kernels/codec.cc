#include "kernels/codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace adaptcache {
namespace {
constexpr uint32_t kRawSectionData = 1;
}  // namespace

std::string CodecConfig::Name() const {
  switch (family) {
    case CodecId::kRaw:
      return "raw";
    default:
      return absl::StrCat(std::string(CodecFamilyName(family)), "-?");
  }
}

absl::StatusOr<CodecConfig> ParseCodecConfig(std::string_view name) {
  if (name == "raw") return CodecConfig{};
  return absl::InvalidArgumentError(absl::StrCat("unknown codec config '", std::string(name), "'"));
}

std::vector<CodecConfig> DefaultConfigSpace() { return {CodecConfig{}}; }

absl::Status ValidateConfig(const CodecConfig& cfg) {
  if (cfg.family == CodecId::kRaw) return absl::OkStatus();
  return absl::UnimplementedError("only the raw codec is built so far");
}

uint64_t MaxEncodedBytes(const CodecConfig& cfg, const KvShape& shape) {
  ContainerWriter w(cfg.family, shape);
  w.AddSection(kRawSectionData, shape.Bytes());
  return w.TotalBytes();
}

absl::StatusOr<uint64_t> Encode(const CodecConfig& cfg, const KvShape& shape, ConstByteSpan raw,
                                const SideData& side, ByteSpan out) {
  if (auto st = ValidateShape(shape); !st.ok()) return st;
  if (auto st = ValidateConfig(cfg); !st.ok()) return st;
  if (raw.size() != shape.Bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor is ", raw.size(), " bytes; shape ", shape.DebugString(), " needs ",
                     shape.Bytes()));
  }
  ContainerWriter w(CodecId::kRaw, shape);
  w.AddSection(kRawSectionData, raw.size());
  if (auto st = w.Layout(out); !st.ok()) return st;
  std::memcpy(w.SectionData(0).data(), raw.data(), raw.size());
  w.Seal();
  return w.TotalBytes();
}

absl::StatusOr<std::vector<std::byte>> EncodeToVector(const CodecConfig& cfg, const KvShape& shape,
                                                      ConstByteSpan raw, const SideData& side) {
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
  if (view->codec != CodecId::kRaw) return absl::UnimplementedError("codec not built yet");
  auto data = view->Find(kRawSectionData);
  if (!data.ok()) return data.status();
  if (data->size() != out.size()) return absl::DataLossError("corrupt container: raw size");
  std::memcpy(out.data(), data->data(), out.size());
  return absl::OkStatus();
}

absl::StatusOr<CodecConfig> ConfigOf(const ContainerView& view) {
  if (view.codec == CodecId::kRaw) return CodecConfig{};
  return absl::UnimplementedError("codec not built yet");
}

}  // namespace adaptcache
