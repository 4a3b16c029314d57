#include "kernels/container.h"

#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"

namespace adaptcache {
namespace {

constexpr size_t kHeaderCrcSpan = offsetof(ContainerHeader, header_crc32c);

uint64_t AlignUp(uint64_t v) { return (v + kSectionAlign - 1) & ~uint64_t{kSectionAlign - 1}; }

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("corrupt container: ", what));
}

}  // namespace

std::string_view CodecFamilyName(CodecId id) {
  switch (id) {
    case CodecId::kRaw:
      return "raw";
    case CodecId::kFp8:
      return "fp8";
    case CodecId::kQuant:
      return "quant";
    case CodecId::kDrop:
      return "drop";
    case CodecId::kLowrank:
      return "lowrank";
  }
  return "unknown";
}

namespace {

// `total` is the container's size when the caller holds all of it.
absl::StatusOr<ContainerHeader> CheckHeader(ConstByteSpan blob, std::optional<uint64_t> total) {
  if (blob.size() < sizeof(ContainerHeader)) {
    return Corrupt(absl::StrCat("only ", blob.size(), " bytes, header needs ", sizeof(ContainerHeader)));
  }
  ContainerHeader h;
  std::memcpy(&h, blob.data(), sizeof(h));
  if (h.magic != kContainerMagic) return Corrupt("bad magic");
  if (h.version != kContainerVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("container format version ", h.version, " is not supported (this build reads ",
                     kContainerVersion, ")"));
  }
  if (h.header_bytes != sizeof(ContainerHeader)) return Corrupt("bad header size");
  if (Crc32c(blob.data(), kHeaderCrcSpan) != h.header_crc32c) return Corrupt("header checksum");
  if (total && h.total_bytes != *total) {
    return Corrupt(absl::StrCat("total_bytes ", h.total_bytes, " != blob size ", *total));
  }
  if (h.codec > kMaxCodecId) return Corrupt(absl::StrCat("unknown codec id ", h.codec));
  auto dt = DTypeFromCode(h.dtype);
  if (!dt.ok()) return Corrupt(dt.status().message());
  KvShape s{h.layers, h.tokens, h.kv_heads, h.head_dim, *dt};
  if (auto st = ValidateShape(s); !st.ok()) return Corrupt(st.message());
  if (h.section_count > kMaxSections) return Corrupt("too many sections");
  return h;
}

}  // namespace

absl::StatusOr<ContainerHeader> PeekHeader(ConstByteSpan blob) { return CheckHeader(blob, blob.size()); }

absl::StatusOr<ContainerHeader> CheckContainerHeader(ConstByteSpan head) {
  return CheckHeader(head, std::nullopt);
}

absl::StatusOr<ContainerView> ParseContainer(ConstByteSpan blob, bool verify_payload_crc) {
  auto hdr = PeekHeader(blob);
  if (!hdr.ok()) return hdr.status();
  const ContainerHeader& h = *hdr;
  const uint64_t table_end = sizeof(ContainerHeader) + uint64_t{h.section_count} * sizeof(SectionEntry);
  if (table_end > blob.size()) return Corrupt("section table past end");
  if (verify_payload_crc &&
      Crc32c(blob.data() + sizeof(ContainerHeader), blob.size() - sizeof(ContainerHeader)) !=
          h.payload_crc32c) {
    return Corrupt("payload checksum");
  }
  ContainerView v;
  v.codec = static_cast<CodecId>(h.codec);
  v.shape = KvShape{h.layers, h.tokens, h.kv_heads, h.head_dim, static_cast<DType>(h.dtype)};
  std::memcpy(v.params.data(), h.params, kContainerParamBytes);
  v.payload_crc32c = h.payload_crc32c;
  uint64_t prev_end = table_end;
  v.sections.reserve(h.section_count);
  for (uint32_t i = 0; i < h.section_count; ++i) {
    SectionEntry e;
    std::memcpy(&e, blob.data() + sizeof(ContainerHeader) + i * sizeof(SectionEntry), sizeof(e));
    if (e.flags != 0) return Corrupt("section flags set");
    if (e.offset % kSectionAlign != 0) return Corrupt("unaligned section");
    if (e.offset < prev_end) return Corrupt("sections overlap or out of order");
    if (e.offset > blob.size() || e.length > blob.size() - e.offset) {
      return Corrupt("section past end");
    }
    for (const auto& s : v.sections) {
      if (s.id == e.id) return Corrupt("duplicate section id");
    }
    v.sections.push_back({e.id, blob.subspan(e.offset, e.length)});
    prev_end = e.offset + e.length;
  }
  return v;
}

absl::StatusOr<ConstByteSpan> ContainerView::Find(uint32_t id) const {
  for (const auto& s : sections) {
    if (s.id == id) return s.bytes;
  }
  return Corrupt(absl::StrCat("missing section ", id));
}

ContainerWriter::ContainerWriter(CodecId codec, const KvShape& shape) {
  header_.magic = kContainerMagic;
  header_.version = kContainerVersion;
  header_.header_bytes = sizeof(ContainerHeader);
  header_.codec = static_cast<uint8_t>(codec);
  header_.dtype = static_cast<uint8_t>(shape.dtype);
  header_.layers = shape.layers;
  header_.tokens = shape.tokens;
  header_.kv_heads = shape.kv_heads;
  header_.head_dim = shape.head_dim;
}

void ContainerWriter::SetParams(std::span<const uint8_t> params) {
  std::memset(header_.params, 0, sizeof(header_.params));
  std::memcpy(header_.params, params.data(), std::min(params.size(), sizeof(header_.params)));
}

size_t ContainerWriter::AddSection(uint32_t id, uint64_t length) {
  sections_.push_back(SectionEntry{id, 0, 0, length});
  return sections_.size() - 1;
}

uint64_t ContainerWriter::TotalBytes() const {
  uint64_t off = sizeof(ContainerHeader) + sections_.size() * sizeof(SectionEntry);
  for (const auto& s : sections_) off = AlignUp(off) + s.length;
  return off;
}

absl::Status ContainerWriter::Layout(ByteSpan dst) {
  const uint64_t total = TotalBytes();
  if (dst.size() < total) {
    return absl::InvalidArgumentError(
        absl::StrCat("container needs ", total, " bytes, buffer has ", dst.size()));
  }
  if (sections_.size() > kMaxSections) return absl::InvalidArgumentError("too many sections");
  dst_ = dst.first(total);
  header_.section_count = static_cast<uint16_t>(sections_.size());
  header_.total_bytes = total;
  uint64_t off = sizeof(ContainerHeader) + sections_.size() * sizeof(SectionEntry);
  for (auto& s : sections_) {
    const uint64_t aligned = AlignUp(off);
    std::memset(dst_.data() + off, 0, aligned - off);  // deterministic padding
    s.offset = aligned;
    off = aligned + s.length;
  }
  std::memcpy(dst_.data() + sizeof(ContainerHeader), sections_.data(),
              sections_.size() * sizeof(SectionEntry));
  return absl::OkStatus();
}

ByteSpan ContainerWriter::SectionData(size_t index) {
  const auto& s = sections_.at(index);
  return dst_.subspan(s.offset, s.length);
}

void ContainerWriter::Seal() {
  (void)Seal(Crc32c(dst_.data() + sizeof(ContainerHeader), dst_.size() - sizeof(ContainerHeader)));
}

uint32_t ContainerWriter::Seal(uint32_t payload_crc32c) {
  header_.payload_crc32c = payload_crc32c;
  std::memcpy(dst_.data(), &header_, sizeof(header_));
  header_.header_crc32c = Crc32c(dst_.data(), kHeaderCrcSpan);
  std::memcpy(dst_.data(), &header_, sizeof(header_));
  return Crc32cCombine(Crc32c(dst_.data(), sizeof(header_)), payload_crc32c,
                       dst_.size() - sizeof(header_));
}

}  // namespace adaptcache
