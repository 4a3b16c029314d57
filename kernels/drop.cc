#include "kernels/drop.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "kernels/dtype_rows.h"
#include "kernels/simd.h"

namespace adaptcache {
namespace {

// Params bytes: [0..1] keep_permille LE, [2] sinks, [3] window, [4] inner codec id
// (0 raw, 2 quant), [5] score source (0 key-norm proxy, 1 engine importance),
// [6..11] quant params when inner is quant; the rest zero.
constexpr size_t kQuantParamOffset = 6;

absl::Status Corrupt(const std::string& what) {
  return absl::DataLossError(absl::StrCat("corrupt drop container: ", what));
}

AC_ALWAYS_INLINE void HeadSquaredNormsBody(const float* x, size_t heads, size_t dim,
                                           double* out) {
  for (size_t h = 0; h < heads; ++h) {
    const float* v = x + h * dim;
    double acc[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= dim; i += 4) {
      for (int j = 0; j < 4; ++j) acc[j] += double{v[i + j]} * v[i + j];
    }
    for (; i < dim; ++i) acc[0] += double{v[i]} * v[i];
    out[h] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
}

AC_DISPATCH(void, HeadSquaredNorms, (const float* x, size_t heads, size_t dim, double* out),
            HeadSquaredNormsBody, (x, heads, dim, out))

struct Forced {
  uint32_t sinks, window;
};
Forced ForcedOf(uint32_t tokens, uint32_t sinks, uint32_t window) {
  const uint32_t s = std::min(sinks, tokens);
  return {s, std::min(window, tokens - s)};
}

KvShape CompactShape(const KvShape& s, uint32_t kept) {
  KvShape c = s;
  c.tokens = kept;
  return c;
}

// Copies rows of the kept tokens from `src` (full layout) into `dst` (compact layout)
// or back (scatter). Row = kv_heads * head_dim elements.
void MoveRows(const KvShape& full, const std::vector<uint32_t>& kept, const std::byte* src,
              std::byte* dst, bool gather) {
  const uint64_t row = uint64_t{full.kv_heads} * full.head_dim * DTypeSize(full.dtype);
  const uint64_t n = kept.size();
  for (uint64_t slab = 0; slab < 2ull * full.layers; ++slab) {
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t f = (slab * full.tokens + kept[i]) * row;
      const uint64_t c = (slab * n + i) * row;
      if (gather) {
        std::memcpy(dst + c, src + f, row);
      } else {
        std::memcpy(dst + f, src + c, row);
      }
    }
  }
}

void AddInnerSections(const DropParams& p, const KvShape& compact, ContainerWriter& w) {
  if (p.quantized) {
    const auto sizes = QuantSectionBytes(p.quant, compact);
    for (size_t i = 0; i < kQuantSections; ++i) w.AddSection(i + 1, sizes[i]);
  } else {
    w.AddSection(kDropSectionRaw, compact.Bytes());
  }
}

}  // namespace

uint32_t DropKeepCount(uint32_t tokens, uint32_t keep_permille, uint32_t sinks,
                       uint32_t window) {
  const Forced f = ForcedOf(tokens, sinks, window);
  const uint64_t want = (uint64_t{tokens} * keep_permille + 999) / 1000;
  const uint64_t n = std::max<uint64_t>({want, uint64_t{f.sinks} + f.window, 1});
  return static_cast<uint32_t>(std::min<uint64_t>(n, tokens));
}

std::vector<float> KeyNormScores(const KvShape& shape, ConstByteSpan raw) {
  const uint32_t T = shape.tokens, H = shape.kv_heads, D = shape.head_dim;
  const size_t w = size_t{H} * D, esize = DTypeSize(shape.dtype);
  std::vector<double> score(T, 0.0), norms(size_t{T} * H);
  std::vector<float> buf(w);
  for (uint32_t l = 0; l < shape.layers; ++l) {
    for (uint32_t t = 0; t < T; ++t) {
      LoadRow(raw.data() + (uint64_t{l} * T + t) * w * esize, shape.dtype, w, buf.data());
      HeadSquaredNorms(buf.data(), H, D, norms.data() + size_t{t} * H);
    }
    for (uint32_t h = 0; h < H; ++h) {
      double mean = 0;
      for (uint32_t t = 0; t < T; ++t) {
        norms[size_t{t} * H + h] = std::sqrt(norms[size_t{t} * H + h]);
        mean += norms[size_t{t} * H + h];
      }
      mean /= T;
      if (!(mean > 0) || !std::isfinite(mean)) continue;  // all-zero head: no signal
      for (uint32_t t = 0; t < T; ++t) score[t] -= norms[size_t{t} * H + h] / mean;
    }
  }
  std::vector<float> out(T);
  for (uint32_t t = 0; t < T; ++t) out[t] = static_cast<float>(score[t]);
  return out;
}

absl::StatusOr<std::vector<uint32_t>> SelectKeptTokens(const KvShape& shape, ConstByteSpan raw,
                                                       uint32_t keep_permille,
                                                       std::span<const float> importance) {
  const uint32_t T = shape.tokens;
  std::vector<float> scores;
  if (!importance.empty()) {
    if (importance.size() != T) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token_importance has ", importance.size(), " values, the entry has ", T, " tokens"));
    }
    for (float v : importance) {
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError("token_importance contains inf or NaN");
      }
    }
    scores.assign(importance.begin(), importance.end());
  } else {
    scores = KeyNormScores(shape, raw);
  }
  const uint32_t n = DropKeepCount(T, keep_permille, kDropSinks, kDropWindow);
  const Forced f = ForcedOf(T, kDropSinks, kDropWindow);
  std::vector<uint32_t> kept, rest;
  for (uint32_t t = 0; t < T; ++t) {
    if (t < f.sinks || t >= T - f.window) {
      kept.push_back(t);
    } else {
      rest.push_back(t);
    }
  }
  const size_t extra = n - kept.size();
  std::partial_sort(rest.begin(), rest.begin() + extra, rest.end(), [&](uint32_t a, uint32_t b) {
    return scores[a] != scores[b] ? scores[a] > scores[b] : a < b;
  });
  kept.insert(kept.end(), rest.begin(), rest.begin() + extra);
  std::sort(kept.begin(), kept.end());
  return kept;
}

absl::Status ValidateDropPermille(uint32_t keep_permille) {
  for (uint32_t v : {750u, 500u, 330u, 250u, 100u}) {
    if (v == keep_permille) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "drop keep ratio ", keep_permille, "/1000 not in {750,500,330,250,100}"));
}

uint64_t DropContainerMaxBytes(const DropParams& p, const KvShape& shape) {
  const uint32_t n = DropKeepCount(shape.tokens, p.keep_permille, kDropSinks, kDropWindow);
  DropParams q = p;
  q.quant.fp32_scales = true;
  ContainerWriter w(CodecId::kDrop, shape);
  w.AddSection(kDropSectionIndex, 2ull * n);
  AddInnerSections(q, CompactShape(shape, n), w);
  return w.TotalBytes();
}

absl::StatusOr<uint64_t> EncodeDrop(const DropParams& p_in, const KvShape& shape,
                                    ConstByteSpan raw, std::span<const float> importance,
                                    ByteSpan out) {
  DropParams p = p_in;
  if (auto st = CheckEncodeInput(shape, raw); !st.ok()) return st;
  if (auto st = ValidateDropPermille(p.keep_permille); !st.ok()) return st;
  if (p.quantized) {
    if (auto st = ValidateQuantParams(p.quant); !st.ok()) return st;
    if (auto st = CheckQuantShape(p.quant, shape); !st.ok()) return st;
  }
  if (MaxAbsBits(raw.data(), shape.dtype, shape.Elements()) >= NonFiniteAbsBits(shape.dtype)) {
    return absl::InvalidArgumentError("drop cannot encode a tensor containing inf or NaN");
  }
  auto kept = SelectKeptTokens(shape, raw, p.keep_permille, importance);
  if (!kept.ok()) return kept.status();
  const KvShape compact = CompactShape(shape, static_cast<uint32_t>(kept->size()));
  std::vector<std::byte> gathered(compact.Bytes());
  MoveRows(shape, *kept, raw.data(), gathered.data(), /*gather=*/true);
  if (p.quantized) {
    auto fp32 = QuantNeedsFp32Scales(p.quant, compact, gathered);
    if (!fp32.ok()) return fp32.status();
    p.quant.fp32_scales = *fp32;
  }
  uint8_t params[kContainerParamBytes] = {};
  params[0] = static_cast<uint8_t>(p.keep_permille & 0xff);
  params[1] = static_cast<uint8_t>(p.keep_permille >> 8);
  params[2] = kDropSinks;
  params[3] = kDropWindow;
  params[4] = p.quantized ? static_cast<uint8_t>(CodecId::kQuant) : 0;
  params[5] = importance.empty() ? 0 : 1;
  if (p.quantized) WriteQuantParams(p.quant, params + kQuantParamOffset);
  ContainerWriter w(CodecId::kDrop, shape);
  w.SetParams(params);
  w.AddSection(kDropSectionIndex, 2 * kept->size());
  AddInnerSections(p, compact, w);
  if (auto st = w.Layout(out); !st.ok()) return st;
  std::byte* idx = w.SectionData(0).data();
  for (size_t i = 0; i < kept->size(); ++i) {
    const uint16_t v = static_cast<uint16_t>((*kept)[i]);
    std::memcpy(idx + 2 * i, &v, 2);
  }
  if (p.quantized) {
    std::array<ByteSpan, kQuantSections> sec;
    for (size_t i = 0; i < kQuantSections; ++i) sec[i] = w.SectionData(i + 1);
    QuantEncodeSections(p.quant, compact, gathered, sec);
  } else {
    std::memcpy(w.SectionData(1).data(), gathered.data(), gathered.size());
  }
  w.Seal();
  return w.TotalBytes();
}

absl::StatusOr<DropParams> DropParamsOf(const ContainerView& view) {
  const auto& b = view.params;
  DropParams p;
  p.keep_permille = static_cast<uint16_t>(b[0] | (b[1] << 8));
  if (auto st = ValidateDropPermille(p.keep_permille); !st.ok()) {
    return Corrupt(std::string(st.message()));
  }
  if (b[4] != 0 && b[4] != static_cast<uint8_t>(CodecId::kQuant)) {
    return Corrupt(absl::StrCat("unknown inner codec ", b[4]));
  }
  if (b[5] > 1) return Corrupt("unknown score source");
  p.quantized = b[4] != 0;
  if (p.quantized) {
    auto q = ReadQuantParams(b.data() + kQuantParamOffset);
    if (!q.ok()) return q.status();
    p.quant = *q;
  }
  for (size_t i = p.quantized ? kQuantParamOffset + kQuantParamBytes : kQuantParamOffset;
       i < kContainerParamBytes; ++i) {
    if (b[i] != 0) return Corrupt("non-zero reserved parameter byte");
  }
  return p;
}

absl::StatusOr<std::vector<uint32_t>> DecodeDropKeptTokens(const ContainerView& view) {
  if (view.codec != CodecId::kDrop) return absl::InvalidArgumentError("not a drop container");
  auto p = DropParamsOf(view);
  if (!p.ok()) return p.status();
  const uint32_t T = view.shape.tokens;
  const uint32_t sinks = view.params[2], window = view.params[3];
  const uint32_t n = DropKeepCount(T, p->keep_permille, sinks, window);
  auto idx = view.Find(kDropSectionIndex);
  if (!idx.ok()) return idx.status();
  if (idx->size() != 2ull * n) {
    return Corrupt(absl::StrCat("index section is ", idx->size(), " bytes, expected ", 2ull * n));
  }
  std::vector<uint32_t> kept(n);
  for (uint32_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, idx->data() + 2 * i, 2);
    kept[i] = v;
    if (kept[i] >= T) return Corrupt(absl::StrCat("kept index ", v, " >= tokens ", T));
    if (i > 0 && kept[i] <= kept[i - 1]) return Corrupt("kept indices not strictly increasing");
  }
  const Forced f = ForcedOf(T, sinks, window);
  // Sorted and unique, so sinks are a prefix and the window a suffix of the list.
  if (f.sinks > 0 && kept[f.sinks - 1] != f.sinks - 1) return Corrupt("a sink token is missing");
  if (f.window > 0 && kept[n - f.window] != T - f.window) {
    return Corrupt("a recent-window token is missing");
  }
  return kept;
}

absl::Status DecodeDrop(const ContainerView& view, ByteSpan out) {
  auto p = DropParamsOf(view);
  if (!p.ok()) return p.status();
  auto kept = DecodeDropKeptTokens(view);
  if (!kept.ok()) return kept.status();
  const KvShape& shape = view.shape;
  if (out.size() != shape.Bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("output buffer is ", out.size(),
                                                   " bytes; tensor needs ", shape.Bytes()));
  }
  const KvShape compact = CompactShape(shape, static_cast<uint32_t>(kept->size()));
  if (view.sections.size() != (p->quantized ? 1 + kQuantSections : 2)) {
    return Corrupt("unexpected section count");
  }
  if (p->quantized) {
    auto sec = FindQuantSections(view);
    if (!sec.ok()) return sec.status();
    std::vector<std::byte> tmp(compact.Bytes());
    if (auto st = QuantDecodeSections(p->quant, compact, *sec, tmp); !st.ok()) return st;
    std::memset(out.data(), 0, out.size());
    MoveRows(shape, *kept, tmp.data(), out.data(), /*gather=*/false);
  } else {
    auto data = view.Find(kDropSectionRaw);
    if (!data.ok()) return data.status();
    if (data->size() != compact.Bytes()) return Corrupt("raw section size does not match");
    std::memset(out.data(), 0, out.size());
    MoveRows(shape, *kept, data->data(), out.data(), /*gather=*/false);
  }
  return absl::OkStatus();
}

}  // namespace adaptcache
