// Host half of the GPU decoders: validates each container exactly as the CPU Decode()
// does (without decoding), turns it into an EntryDesc and batches descriptors into
// kernel launches (decode_desc.h).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/decode.h"
#include "kernels/cuda/decode_desc.h"
#include "kernels/drop.h"
#include "kernels/lowrank.h"
#include "kernels/quant.h"

namespace adaptcache::cuda {
namespace {

using internal::EntryDesc;
using internal::Kind;
using internal::KernelKind;
using internal::LaunchArgs;

absl::Status Corrupt(const std::string& family, const std::string& what) {
  return absl::DataLossError(absl::StrCat("corrupt ", family, " container: ", what));
}

// Rows kernel: about 16K elements per block.
uint32_t TileRows(uint32_t width) { return std::clamp<uint32_t>(16384 / width, 1, 64); }

uint32_t Ceil(uint64_t a, uint64_t b) { return static_cast<uint32_t>((a + b - 1) / b); }

uint64_t Align16(uint64_t n) { return (n + 15) & ~uint64_t{15}; }

// Benchmark knobs (docs/cuda.md): AC_CUDA_ROWS_STAGE=0 keeps every entry on the
// unstaged path, AC_CUDA_ROWS_TILE=N sets the rows per staged tile.
bool StageEnabled() {
  static const bool on = [] {
    const char* v = std::getenv("AC_CUDA_ROWS_STAGE");
    return v == nullptr || v[0] != '0';
  }();
  return on;
}
uint32_t StagedTileRows(uint32_t width) {
  static const uint32_t forced = [] {
    const char* v = std::getenv("AC_CUDA_ROWS_TILE");
    return v == nullptr ? 0u : static_cast<uint32_t>(std::clamp(std::atoi(v), 0, 64));
  }();
  return forced != 0 ? forced : std::clamp<uint32_t>(32768 / width, 1, 64);
}
constexpr uint64_t kMaxStagedSmem = 96 * 1024;

// Decides whether a rows entry decodes through shared-memory staging (fp8, or quant with
// head_dim % 16 == 0 and the rotation in registers) and returns the dynamic shared memory
// its tiles need (0 when not staged). The layout is the kernel's (decode_kernels.cu,
// StagedTile): [tile_rows row pointers][codes][scales][mins], each 16-byte aligned.
uint32_t PlanStaging(EntryDesc& d) {
  d.staged = 0;
  if (!StageEnabled() || d.width % 16 != 0) return 0;
  uint64_t rowb = 0, scale_bytes = 0;
  const uint32_t T = StagedTileRows(d.width);
  if (d.kind == Kind::kFp8) {
    rowb = d.width;
    scale_bytes = Align16(4ull * T);
  } else if (d.kind == Kind::kQuant && d.dim % 16 == 0 && !d.big_hadamard) {
    const uint64_t ss = d.fp32_scales ? 4 : 2;
    rowb = std::max(d.krow, d.vrow);
    const uint64_t kvals = std::min<uint64_t>(d.blocks, (T - 1) / d.group + 2) * d.width;
    // K: scales and mins as staged, plus fp32 copies when they are fp16.
    const uint64_t k = 2 * Align16(kvals * ss) + (ss == 2 ? 2 * Align16(kvals * 4) : 0);
    const uint64_t v = 2 * Align16(uint64_t{T} * d.heads * d.vgroups * ss);
    scale_bytes = std::max(k, v);
  } else {
    return 0;
  }
  const uint64_t smem = Align16(8ull * T) + Align16(rowb * T) + scale_bytes;
  if (smem > kMaxStagedSmem) return 0;
  d.staged = 1;
  d.tile_rows = T;
  return static_cast<uint32_t>(smem);
}

// What one container turns into: a descriptor per kernel it needs.
struct Planned {
  EntryDesc desc{};
  bool rows = false, lowrank = false, big_hadamard = false;
  uint32_t lowrank_smem = 0;
};

uint32_t Le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint16_t Le16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// CountBadScales of kernels/quant.cc: negative or non-finite scales, non-finite mins.
bool BadScales(ConstByteSpan s, ConstByteSpan m, bool fp32) {
  const auto* a = reinterpret_cast<const uint8_t*>(s.data());
  const auto* b = reinterpret_cast<const uint8_t*>(m.data());
  uint64_t bad = 0;
  if (fp32) {
    for (size_t i = 0; i < s.size() / 4; ++i) {
      bad += (Le32(a + 4 * i) >= 0x7f800000u) + ((Le32(b + 4 * i) & 0x7fffffffu) >= 0x7f800000u);
    }
  } else {
    for (size_t i = 0; i < s.size() / 2; ++i) {
      bad += (Le16(a + 2 * i) >= 0x7c00u) + ((Le16(b + 2 * i) & 0x7fffu) >= 0x7c00u);
    }
  }
  return bad != 0;
}

const uint8_t* Dev(const DeviceContainer& c, ConstByteSpan section) {
  return static_cast<const uint8_t*>(c.device) + (section.data() - c.host.data());
}

// Quant payload over `shape` (the compact shape for drop): the checks of
// QuantDecodeSections, then the descriptor fields.
absl::Status PlanQuant(const DeviceContainer& c, const ContainerView& v, const QuantParams& p,
                       const KvShape& shape, bool scan_values, Planned& out) {
  if (auto st = ValidateQuantParams(p); !st.ok()) return Corrupt("quant", std::string(st.message()));
  if (auto st = CheckQuantShape(p, shape); !st.ok()) return Corrupt("quant", std::string(st.message()));
  auto sec = FindQuantSections(v);
  if (!sec.ok()) return sec.status();
  const auto want = QuantSectionBytes(p, shape);
  for (size_t i = 0; i < kQuantSections; ++i) {
    if ((*sec)[i].size() != want[i]) {
      return Corrupt("quant", absl::StrCat("section ", i + 1, " is ", (*sec)[i].size(),
                                           " bytes, params and shape need ", want[i]));
    }
  }
  if (scan_values && (BadScales((*sec)[2], (*sec)[3], p.fp32_scales) ||
                      BadScales((*sec)[4], (*sec)[5], p.fp32_scales))) {
    return Corrupt("quant", "a scale is negative or non-finite, or a min is non-finite");
  }
  EntryDesc& d = out.desc;
  d.kind = Kind::kQuant;
  for (size_t i = 0; i < kQuantSections; ++i) d.sec[i] = Dev(c, (*sec)[i]);
  d.rows = shape.tokens;
  d.sinks = std::min<uint32_t>(p.sinks, shape.tokens);
  d.qtokens = shape.tokens - d.sinks;
  d.group = p.group;
  d.blocks = Ceil(d.qtokens, p.group);
  d.vgroup = std::min<uint32_t>(p.group, shape.head_dim);
  d.vgroups = Ceil(shape.head_dim, d.vgroup);
  d.krow = Ceil(uint64_t{d.width} * p.k_bits, 8);
  d.vrow = Ceil(uint64_t{d.width} * p.v_bits, 8);
  d.k_bits = p.k_bits;
  d.v_bits = p.v_bits;
  d.hadamard = p.hadamard;
  d.fp32_scales = p.fp32_scales;
  d.big_hadamard = p.hadamard && shape.head_dim > 256;
  out.rows = true;
  out.big_hadamard = d.big_hadamard && d.qtokens > 0;
  return absl::OkStatus();
}

// The checks of DecodeLowrank/ParseSlab (kernels/lowrank.cc, docs/lowrank.md); returns the
// largest group rank.
absl::StatusOr<uint32_t> CheckLowrankSlab(const KvShape& s, const uint8_t* rec, uint64_t len) {
  const uint32_t T = s.tokens, H = s.kv_heads, D = s.head_dim;
  auto bad = [](const std::string& w) { return Corrupt("lowrank", w); };
  if (len < 4) return bad("slab header truncated");
  const uint32_t G = Le16(rec);
  if (Le16(rec + 2) != 0) return bad("slab reserved field");
  if (G == 0 || G > H || H % G != 0) return bad(absl::StrCat("heads_per_group ", G));
  uint64_t pos = 4;
  auto half_ok = [](uint16_t h) { return (h & 0x7c00u) != 0x7c00u; };
  if (len - pos < 2ull * H * D) return bad("means truncated");
  for (uint64_t i = 0; i < uint64_t{H} * D; ++i) {
    if (!half_ok(Le16(rec + pos + 2 * i))) return bad("non-finite mean");
  }
  pos += 2ull * H * D;
  const uint64_t rows = uint64_t{T} * G;
  uint32_t kmax = 0;
  for (uint32_t g = 0; g < H / G; ++g) {
    if (len - pos < 4) return bad("group header truncated");
    const uint32_t k = Le16(rec + pos);
    if (Le16(rec + pos + 2) != 0) return bad("group reserved field");
    pos += 4;
    if (k > D) return bad(absl::StrCat("rank ", k, " > head_dim ", D));
    if (len - pos < k * (5 + 2ull * D)) return bad("components truncated");
    uint64_t row_bits = 0;
    for (uint32_t i = 0; i < k; ++i) {
      const uint32_t b = rec[pos + i];
      if (b < 1 || b > 12) return bad(absl::StrCat("bit width ", b));
      row_bits += b;
      float st;
      std::memcpy(&st, rec + pos + k + 4 * i, 4);
      if (!std::isfinite(st) || !(st > 0)) return bad("bad quantizer step");
    }
    pos += 5ull * k;
    for (uint64_t i = 0; i < uint64_t{k} * D; ++i) {
      if (!half_ok(Le16(rec + pos + 2 * i))) return bad("non-finite basis");
    }
    pos += 2ull * k * D;
    const uint64_t code_bytes = (rows * row_bits + 7) / 8;
    if (len - pos < code_bytes) return bad("codes truncated");
    pos += code_bytes;
    kmax = std::max(kmax, k);
  }
  if (pos != len) return bad("trailing bytes in slab record");
  return kmax;
}

absl::Status PlanLowrank(const DeviceContainer& c, const ContainerView& v, Planned& out) {
  const KvShape& s = v.shape;
  if (auto st = ValidateShape(s); !st.ok()) return Corrupt("lowrank", std::string(st.message()));
  if (v.params[0] < kLowrankMinRatio || v.params[0] > kLowrankMaxRatio) {
    return Corrupt("lowrank", "ratio parameter");
  }
  if (v.params[1] != 1) return Corrupt("lowrank", "layout revision");
  for (size_t i = 2; i < kContainerParamBytes; ++i) {
    if (v.params[i] != 0) return Corrupt("lowrank", "reserved parameter bytes");
  }
  if (v.sections.size() != 2) return Corrupt("lowrank", "expected 2 sections");
  auto index = v.Find(1);
  if (!index.ok()) return index.status();
  auto data = v.Find(2);
  if (!data.ok()) return data.status();
  const uint64_t slabs = 2ull * s.layers;
  if (index->size() != slabs * 8) return Corrupt("lowrank", "index size");
  const auto* idx = reinterpret_cast<const uint8_t*>(index->data());
  const auto* dat = reinterpret_cast<const uint8_t*>(data->data());
  uint64_t expect = 0;
  uint32_t kmax = 0;
  for (uint64_t i = 0; i < slabs; ++i) {
    const uint32_t off = Le32(idx + 8 * i), len = Le32(idx + 8 * i + 4);
    if (off != expect || len > data->size() - off) return Corrupt("lowrank", "slab index");
    expect = uint64_t{off} + len;
    auto k = CheckLowrankSlab(s, dat + off, len);
    if (!k.ok()) {
      return absl::DataLossError(absl::StrCat(std::string(k.status().message()), " (slab ", i, ")"));
    }
    kmax = std::max(kmax, *k);
  }
  if (expect != data->size()) return Corrupt("lowrank", "slab index does not cover the data");
  EntryDesc& d = out.desc;
  d.kind = Kind::kLowrank;
  d.sec[0] = Dev(c, *index);
  d.sec[1] = Dev(c, *data);
  d.rows = s.tokens;
  d.lr_max_rank = kmax;
  d.tile_rows = std::clamp<uint32_t>(4096 / std::max<uint32_t>(kmax, 1), 1, 32);
  d.tiles = Ceil(s.tokens, d.tile_rows);
  const uint64_t base = 4ull * (3ull * kmax + s.head_dim + uint64_t{d.tile_rows} * kmax);
  const uint64_t basis = 4ull * kmax * s.head_dim;
  d.lr_stage_basis = base + basis <= 160 * 1024;
  out.lowrank_smem = static_cast<uint32_t>(base + (d.lr_stage_basis ? basis : 0));
  out.lowrank = true;
  return absl::OkStatus();
}

absl::Status PlanEntry(const DeviceContainer& c, const DecodeOptions& opts, const uint32_t* gate,
                       Planned& out) {
  if (c.device == nullptr) return absl::InvalidArgumentError("container has no device copy");
  const bool scan_values = gate == nullptr;
  auto view = ParseContainer(c.host, opts.verify_payload_crc && scan_values);
  if (!view.ok()) return view.status();
  const ContainerView& v = *view;
  const KvShape& s = v.shape;
  EntryDesc& d = out.desc;
  d.gate = gate;
  d.layers = s.layers;
  d.tokens = s.tokens;
  d.rows = s.tokens;
  d.heads = s.kv_heads;
  d.dim = s.head_dim;
  d.width = s.kv_heads * s.head_dim;
  d.in_dtype = static_cast<uint8_t>(s.dtype);
  d.tile_rows = TileRows(d.width);
  auto params_zero = [&](size_t from) {
    for (size_t i = from; i < kContainerParamBytes; ++i) {
      if (v.params[i] != 0) return false;
    }
    return true;
  };
  switch (v.codec) {
    case CodecId::kRaw: {
      if (!params_zero(0)) return Corrupt("raw", "params not zero");
      if (v.sections.size() != 1) return Corrupt("raw", "raw has one section");
      auto data = v.Find(1);
      if (!data.ok()) return data.status();
      if (data->size() != s.Bytes()) return Corrupt("raw", "raw size");
      d.kind = Kind::kRaw;
      d.sec[0] = Dev(c, *data);
      out.rows = true;
      break;
    }
    case CodecId::kFp8: {
      if (!params_zero(0)) return Corrupt("fp8", "non-zero parameter byte");
      if (v.sections.size() != 2) return Corrupt("fp8", "expected 2 sections");
      auto codes = v.Find(1);
      if (!codes.ok()) return codes.status();
      auto scales = v.Find(2);
      if (!scales.ok()) return scales.status();
      const uint64_t rows = 2ull * s.layers * s.tokens;
      if (codes->size() != rows * d.width) return Corrupt("fp8", "codes section size");
      if (scales->size() != rows * 4) return Corrupt("fp8", "scales section size does not match shape");
      d.kind = Kind::kFp8;
      d.sec[0] = Dev(c, *codes);
      d.sec[1] = Dev(c, *scales);
      out.rows = true;
      if (!scan_values) break;
      const auto* sp = reinterpret_cast<const uint8_t*>(scales->data());
      for (uint64_t r = 0; r < rows; ++r) {
        float f;
        std::memcpy(&f, sp + 4 * r, 4);
        if (!(f >= 0.f && std::isfinite(f))) {
          return Corrupt("fp8", absl::StrCat("scale of row ", r, " is not a finite non-negative value"));
        }
      }
      // No NaN code: a byte b with (b & 0x7f) == 0x7f, eight bytes at a time.
      const auto* cp = reinterpret_cast<const uint8_t*>(codes->data());
      const uint64_t n = codes->size();
      uint64_t hits = 0, i = 0;
      constexpr uint64_t k7f = 0x7f7f7f7f7f7f7f7full, k01 = 0x0101010101010101ull,
                         k80 = 0x8080808080808080ull;
      for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, cp + i, 8);
        const uint64_t x = (w & k7f) ^ k7f;  // zero byte <=> code & 0x7f == 0x7f
        hits |= (x - k01) & ~x & k80;
      }
      for (; i < n; ++i) hits |= (cp[i] & 0x7f) == 0x7f;
      if (hits != 0) return Corrupt("fp8", "NaN code (0x7f/0xff)");
      break;
    }
    case CodecId::kQuant: {
      if (!params_zero(kQuantParamBytes)) return Corrupt("quant", "non-zero reserved parameter byte");
      auto p = ReadQuantParams(v.params.data());
      if (!p.ok()) return p.status();
      if (v.sections.size() != kQuantSections) return Corrupt("quant", "expected 7 sections");
      if (auto st = PlanQuant(c, v, *p, s, scan_values, out); !st.ok()) return st;
      break;
    }
    case CodecId::kDrop: {
      auto p = DropParamsOf(v);
      if (!p.ok()) return p.status();
      auto kept = DecodeDropKeptTokens(v);
      if (!kept.ok()) return kept.status();
      KvShape compact = s;
      compact.tokens = static_cast<uint32_t>(kept->size());
      if (v.sections.size() != (p->quantized ? 1 + kQuantSections : 2)) {
        return Corrupt("drop", "unexpected section count");
      }
      auto index = v.Find(kDropSectionIndex);
      if (!index.ok()) return index.status();
      if (p->quantized) {
        if (auto st = PlanQuant(c, v, p->quant, compact, scan_values, out); !st.ok()) return st;
      } else {
        auto data = v.Find(kDropSectionRaw);
        if (!data.ok()) return data.status();
        if (data->size() != compact.Bytes()) return Corrupt("drop", "raw section size does not match");
        d.kind = Kind::kRaw;
        d.sec[0] = Dev(c, *data);
        out.rows = true;
      }
      d.rows = compact.tokens;
      d.kept = reinterpret_cast<const uint16_t*>(Dev(c, *index));
      break;
    }
    case CodecId::kLowrank:
      return PlanLowrank(c, v, out);
  }
  return absl::OkStatus();
}

// Accumulates descriptors of one kernel kind and launches full batches.
class Batcher {
 public:
  Batcher(KernelKind kind, const LaunchArgs& base, cudaStream_t stream)
      : kind_(kind), base_(base), stream_(stream) {
    Reset();
  }

  absl::Status Add(const EntryDesc& d, uint64_t tasks, uint32_t smem) {
    if (tasks == 0) return absl::OkStatus();
    if (tasks > kMaxTasks) {
      return absl::InvalidArgumentError("entry too large for one kernel launch");
    }
    if (args_.entries == internal::kMaxEntriesPerLaunch || args_.total_tasks + tasks > kMaxTasks) {
      if (auto st = Flush(); !st.ok()) return st;
    }
    EntryDesc& e = args_.e[args_.entries++];
    e = d;
    e.task_begin = args_.total_tasks;
    args_.total_tasks += static_cast<uint32_t>(tasks);
    args_.smem = std::max(args_.smem, smem);
    return absl::OkStatus();
  }

  absl::Status Flush() {
    if (args_.entries > 0) {
      const int err = internal::LaunchDecode(kind_, args_, stream_);
      if (err != 0) {
        return absl::InternalError(absl::StrCat(
            "CUDA decode launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err))));
      }
    }
    Reset();
    return absl::OkStatus();
  }

 private:
  static constexpr uint64_t kMaxTasks = (1ull << 31) - 1;
  void Reset() {
    args_ = base_;
    args_.entries = 0;
    args_.total_tasks = 0;
    args_.smem = 0;
  }
  KernelKind kind_;
  LaunchArgs base_;
  LaunchArgs args_;
  cudaStream_t stream_;
};

// Plans every entry (validation first: nothing is enqueued when any entry is bad), then
// enqueues the kernels.
absl::Status PlanAndLaunch(std::span<const DeviceContainer> in, const LaunchArgs& base,
                           const std::function<absl::Status(size_t, const KvShape&, EntryDesc&)>& bind,
                           cudaStream_t stream, const DecodeOptions& opts) {
  if (!opts.device_gates.empty() && opts.device_gates.size() != in.size()) {
    return absl::InvalidArgumentError(absl::StrCat(in.size(), " containers but ",
                                                   opts.device_gates.size(), " device gates"));
  }
  std::vector<Planned> plans(in.size());
  std::vector<absl::Status> status(in.size());
  // Validation reads every byte (CRC, code checks): spread entries over a few threads.
  // Gated entries skip those passes, and threads would cost more than they save.
  const size_t nthreads =
      opts.device_gates.empty()
          ? std::min<size_t>({in.size(), std::max(1u, std::thread::hardware_concurrency()), 8})
          : 1;
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < in.size();) status[i] = PlanEntry(in[i], opts, opts.device_gates.empty() ? nullptr : opts.device_gates[i], plans[i]);
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < nthreads; ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  for (size_t i = 0; i < in.size(); ++i) {
    if (const absl::Status& st = status[i]; !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("entry ", i, ": ", std::string(st.message())));
    }
    const EntryDesc& d = plans[i].desc;
    KvShape shape{d.layers, d.tokens, d.heads, d.dim, static_cast<DType>(d.in_dtype)};
    if (auto st = bind(i, shape, plans[i].desc); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("entry ", i, ": ", std::string(st.message())));
    }
  }
  Batcher rows(KernelKind::kRows, base, stream), lowrank(KernelKind::kLowrank, base, stream),
      big(KernelKind::kBigHadamard, base, stream);
  for (Planned& p : plans) {
    EntryDesc& d = p.desc;
    if (p.rows) {
      const uint32_t smem = PlanStaging(d);
      d.tiles = Ceil(d.rows, d.tile_rows);
      const bool zero = d.kept != nullptr && !base.paged && d.rows < d.tokens;
      d.zero_tiles = zero ? Ceil(d.tokens, d.tile_rows) : 0;
      const uint64_t tasks = 2ull * d.layers * (uint64_t{d.tiles} + d.zero_tiles);
      if (auto st = rows.Add(d, tasks, smem); !st.ok()) return st;
    }
    if (p.big_hadamard) {
      const uint64_t tasks = uint64_t{d.layers} * (d.rows - d.sinks) * d.heads;
      if (auto st = big.Add(d, tasks, 0); !st.ok()) return st;
    }
    if (p.lowrank) {
      const uint64_t tasks = 2ull * d.layers * d.heads * d.tiles;
      if (auto st = lowrank.Add(d, tasks, p.lowrank_smem); !st.ok()) return st;
    }
  }
  if (auto st = rows.Flush(); !st.ok()) return st;
  if (auto st = big.Flush(); !st.ok()) return st;
  return lowrank.Flush();
}

}  // namespace

bool CudaDeviceAvailable() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

absl::Status DecodeContiguous(std::span<const DeviceContainer> in,
                              std::span<const ContiguousOut> out, cudaStream_t stream,
                              const DecodeOptions& opts) {
  if (in.size() != out.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(in.size(), " containers but ", out.size(), " outputs"));
  }
  LaunchArgs base;
  base.paged = 0;
  return PlanAndLaunch(
      in, base,
      [&](size_t i, const KvShape&, EntryDesc& d) -> absl::Status {
        if (out[i].data == nullptr) return absl::InvalidArgumentError("null output buffer");
        if (!DTypeFromCode(static_cast<uint32_t>(out[i].dtype)).ok()) {
          return absl::InvalidArgumentError("bad output dtype");
        }
        d.out = static_cast<uint8_t*>(out[i].data);
        d.out_dtype = static_cast<uint8_t>(out[i].dtype);
        return absl::OkStatus();
      },
      stream, opts);
}

absl::Status DecodePaged(std::span<const DeviceContainer> in,
                         std::span<const int64_t* const> slot_mappings, const PagedCache& cache,
                         cudaStream_t stream, const DecodeOptions& opts) {
  if (in.size() != slot_mappings.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(in.size(), " containers but ", slot_mappings.size(), " slot mappings"));
  }
  if (cache.k_layers == nullptr || cache.v_layers == nullptr || cache.block_size == 0 ||
      cache.num_blocks == 0 || cache.layers == 0 || cache.kv_heads == 0 || cache.head_dim == 0) {
    return absl::InvalidArgumentError("paged cache is incomplete");
  }
  if (!DTypeFromCode(static_cast<uint32_t>(cache.dtype)).ok()) {
    return absl::InvalidArgumentError("bad cache dtype");
  }
  const uint64_t width = uint64_t{cache.kv_heads} * cache.head_dim;
  const uint64_t stride = cache.block_stride != 0 ? cache.block_stride : cache.block_size * width;
  if (stride < cache.block_size * width) {
    return absl::InvalidArgumentError("block_stride is smaller than a block");
  }
  LaunchArgs base;
  base.paged = 1;
  base.k_layers = reinterpret_cast<uint8_t* const*>(cache.k_layers);
  base.v_layers = reinterpret_cast<uint8_t* const*>(cache.v_layers);
  base.block_size = cache.block_size;
  base.block_stride = stride;
  base.num_slots = cache.num_blocks * cache.block_size;
  base.bad_slots = cache.bad_slots;
  return PlanAndLaunch(
      in, base,
      [&](size_t i, const KvShape& s, EntryDesc& d) -> absl::Status {
        if (s.layers != cache.layers || s.kv_heads != cache.kv_heads ||
            s.head_dim != cache.head_dim) {
          return absl::InvalidArgumentError(
              absl::StrCat("entry shape ", s.DebugString(), " does not match the cache (layers ",
                           cache.layers, ", kv_heads ", cache.kv_heads, ", head_dim ",
                           cache.head_dim, ")"));
        }
        if (slot_mappings[i] == nullptr) return absl::InvalidArgumentError("null slot mapping");
        d.slots = slot_mappings[i];
        d.out_dtype = static_cast<uint8_t>(cache.dtype);
        return absl::OkStatus();
      },
      stream, opts);
}

}  // namespace adaptcache::cuda
