// Host half of the GPU encoders: input check, layout, launches, copy back, CRCs.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/encode.h"
#include "kernels/bitpack.h"
#include "kernels/cuda/encode_desc.h"
#include "kernels/dtype_rows.h"
#include "kernels/fp8.h"
#include "kernels/quant.h"

namespace adaptcache::cuda {
namespace {

absl::Status CudaError(const char* what, int err) {
  return absl::InternalError(absl::StrCat(
      "CUDA ", what, ": ", cudaGetErrorString(static_cast<cudaError_t>(err))));
}

// Stream-ordered device allocation freed on scope exit.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t n, cudaStream_t s) : stream_(s) {
    err_ = cudaMallocAsync(&p_, std::max<size_t>(n, 1), s);
  }
  ~DeviceBuffer() {
    if (p_ != nullptr) cudaFreeAsync(p_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  uint8_t* get() const { return static_cast<uint8_t*>(p_); }
  cudaError_t error() const { return err_; }

 private:
  void* p_ = nullptr;
  cudaStream_t stream_;
  cudaError_t err_;
};

}  // namespace

absl::StatusOr<uint64_t> EncodeOnDevice(const CodecConfig& cfg, const KvShape& shape,
                                        const void* d_raw, ByteSpan out, cudaStream_t stream) {
  if (auto st = CheckApplicable(cfg, shape); !st.ok()) return st;
  if (cfg.family != CodecId::kFp8 && cfg.family != CodecId::kQuant) {
    return absl::UnimplementedError(
        absl::StrCat("GPU encode supports fp8 and quant, not ", cfg.Name(), "; use Encode()"));
  }
  if (d_raw == nullptr) return absl::InvalidArgumentError("null device tensor");
  const auto* raw = static_cast<const uint8_t*>(d_raw);
  const uint8_t dt = static_cast<uint8_t>(shape.dtype);
  const uint32_t W = shape.kv_heads * shape.head_dim;
  const bool fp8 = cfg.family == CodecId::kFp8;
  QuantParams p;
  p.k_bits = cfg.k_bits;
  p.v_bits = cfg.v_bits;
  p.group = cfg.group;
  p.sinks = cfg.sink_tokens;
  p.hadamard = cfg.hadamard;
  const uint32_t sinks = fp8 ? 0 : std::min<uint32_t>(p.sinks, shape.tokens);

  internal::QuantEncodeArgs qa{};
  qa.raw = raw;
  qa.layers = shape.layers;
  qa.tokens = shape.tokens;
  qa.heads = shape.kv_heads;
  qa.dim = shape.head_dim;
  qa.width = W;
  qa.sinks = sinks;
  qa.qtokens = shape.tokens - sinks;
  qa.group = p.group;
  qa.blocks = p.group ? (qa.qtokens + p.group - 1) / p.group : 0;
  qa.vgroup = std::min<uint32_t>(p.group, shape.head_dim);
  qa.vgroups = qa.vgroup ? (shape.head_dim + qa.vgroup - 1) / qa.vgroup : 0;
  qa.krow = static_cast<uint32_t>(PackedBytes(W, p.k_bits));
  qa.vrow = static_cast<uint32_t>(PackedBytes(W, p.v_bits));
  qa.dtype = dt;
  qa.k_bits = p.k_bits;
  qa.v_bits = p.v_bits;
  qa.hadamard = p.hadamard;
  if (!fp8) {
    int dev = 0, optin = 0;
    if (int e = cudaGetDevice(&dev); e != 0) return CudaError("get device", e);
    if (int e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev); e != 0) {
      return CudaError("device attribute", e);
    }
    if (internal::QuantVSharedBytes(qa) > static_cast<size_t>(optin)) {
      return absl::UnimplementedError(absl::StrCat(
          "GPU quant encode needs ", internal::QuantVSharedBytes(qa),
          " bytes of shared memory per row; the device allows ", optin, "; use Encode()"));
    }
  }

  // 1. max |x| over the values the CPU encoder checks (fp8: all; quant: non-sink tokens).
  uint32_t amax = 0;
  {
    DeviceBuffer stat(4, stream);
    if (stat.error() != cudaSuccess) return CudaError("alloc", stat.error());
    if (int e = cudaMemsetAsync(stat.get(), 0, 4, stream); e != 0) return CudaError("memset", e);
    const uint64_t slab = shape.SlabElements();
    if (int e = internal::LaunchMaxAbs(raw, dt, 2 * shape.layers, slab, uint64_t{sinks} * W,
                                       slab - uint64_t{sinks} * W,
                                       reinterpret_cast<uint32_t*>(stat.get()), stream);
        e != 0) {
      return CudaError("max-abs launch", e);
    }
    if (int e = cudaMemcpyAsync(&amax, stat.get(), 4, cudaMemcpyDeviceToHost, stream); e != 0) {
      return CudaError("copy", e);
    }
    if (int e = cudaStreamSynchronize(stream); e != 0) return CudaError("max-abs pass", e);
  }
  if (amax >= NonFiniteAbsBits(shape.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        fp8 ? "fp8" : "quant", " cannot encode a tensor containing inf or NaN"));
  }
  p.fp32_scales = !fp8 && amax > AbsBitsOf(16384.0f, shape.dtype);
  qa.fp32_scales = p.fp32_scales;

  // 2. Header and section table on the host.
  ContainerWriter w(cfg.family, shape);
  if (fp8) {
    w.AddSection(kFp8SectionCodes, 2ull * shape.layers * shape.tokens * W);
    w.AddSection(kFp8SectionScales, 8ull * shape.layers * shape.tokens);
  } else {
    uint8_t params[kQuantParamBytes];
    WriteQuantParams(p, params);
    w.SetParams(params);
    const auto sizes = QuantSectionBytes(p, shape);
    for (size_t i = 0; i < kQuantSections; ++i) w.AddSection(i + 1, sizes[i]);
  }
  if (auto st = w.Layout(out); !st.ok()) return st;
  const uint64_t total = w.TotalBytes();
  const size_t nsec = fp8 ? 2 : kQuantSections;
  const uint64_t table_end = sizeof(ContainerHeader) + nsec * sizeof(SectionEntry);

  // 3. Sections on the device (padding zero), copied back behind the table.
  DeviceBuffer buf(total, stream);
  if (buf.error() != cudaSuccess) return CudaError("alloc", buf.error());
  if (int e = cudaMemsetAsync(buf.get(), 0, total, stream); e != 0) return CudaError("memset", e);
  auto dsec = [&](size_t i) { return buf.get() + (w.SectionData(i).data() - out.data()); };
  if (fp8) {
    if (int e = internal::LaunchFp8Encode(raw, dt, 2ull * shape.layers * shape.tokens, W, dsec(0),
                                          dsec(1), stream);
        e != 0) {
      return CudaError("fp8 encode launch", e);
    }
  } else {
    for (size_t i = 0; i < 6; ++i) qa.sec[i] = dsec(i);
    const size_t es = DTypeSize(shape.dtype);
    if (sinks > 0) {
      const size_t width = size_t{sinks} * W * es;
      if (int e = cudaMemcpy2DAsync(dsec(6), width, raw, shape.SlabElements() * es, width,
                                    2 * shape.layers, cudaMemcpyDeviceToDevice, stream);
          e != 0) {
        return CudaError("sink copy", e);
      }
    }
    if (int e = internal::LaunchQuantEncode(qa, stream); e != 0) return CudaError("quant encode launch", e);
  }
  if (int e = cudaMemcpyAsync(out.data() + table_end, buf.get() + table_end, total - table_end,
                              cudaMemcpyDeviceToHost, stream);
      e != 0) {
    return CudaError("copy back", e);
  }
  if (int e = cudaStreamSynchronize(stream); e != 0) return CudaError("encode", e);
  w.Seal();
  return total;
}

}  // namespace adaptcache::cuda
