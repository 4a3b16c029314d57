// GPU decoding of codec containers straight into an engine's KV layout (docs/cuda.md).
//
// Every container is parsed and fully validated on the HOST, from a host copy of its
// bytes (ParseContainer plus the family's checks, the same checks as the CPU Decode()),
// before any kernel runs; the kernels then read the SAME bytes from device memory. The
// caller guarantees that `device` holds exactly the bytes of `host` (GetToDevice copies
// them). One call decodes a whole batch with a few kernel launches (rows kernel for
// raw/fp8/quant/drop, lowrank kernel, and a shared-memory kernel for quant V rotation
// with head_dim > 256), enqueued on `stream` with no host synchronisation: the call
// returns once the work is enqueued; results are ready when the stream reaches it.
//
// Output is bit-identical to the CPU Decode() for every family when the output dtype is
// the container's dtype (fp32 multiply and add each rounded, no FMA, the same Hadamard
// and lowrank accumulation order). With another output dtype the fp32 value is rounded
// (RNE) into it, or widened exactly; raw rows and quant sink rows are converted.
//
// Two output layouts:
//   contiguous: one [2][layers][tokens][kv_heads][head_dim] tensor per entry; drop entries
//               write +0.0 at dropped tokens (as the CPU decoder);
//   paged:      vLLM-style per-layer K and V caches [num_blocks][block_size][kv_heads]
//               [head_dim] (block_stride elements apart), token t of an entry going to
//               slot slot_mapping[t] = block * block_size + offset; slot -1 is skipped;
//               slots >= num_blocks * block_size are skipped and counted in bad_slots.
//               Drop entries write only the kept tokens (dropped slots are untouched).
//
// Errors (before anything is enqueued, nothing written): DataLoss for corrupt containers,
// InvalidArgument for mismatched outputs or shapes, Internal for CUDA launch failures
// (those may leave earlier batches of the same call enqueued).
// Thread safety: the functions are thread safe; concurrent calls writing the same
// output race as any two kernels would.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "common/kv_shape.h"
#include "kernels/container.h"

namespace adaptcache::cuda {

// One container: its bytes on the host (validated there) and the same bytes on the device.
struct DeviceContainer {
  ConstByteSpan host;
  const void* device = nullptr;
};

struct DecodeOptions {
  // Verify the payload CRC32C on the host (skip only when the caller just verified it).
  bool verify_payload_crc = true;
  // Device gate words, one per entry (VerifyOnDevice, verify.h). When given, entry i is
  // decoded only if its gate reads kGateOpen when its kernels run, and the host skips its
  // passes over the payload (CRC, fp8 NaN codes, scale values): the gate proves the device
  // bytes are the container whose CRC the daemon recorded, which only its encoder wrote.
  // The header, section table, sizes, parameters, kept-token index and lowrank slab
  // structure are still checked on the host, from `host`.
  std::span<const uint32_t* const> device_gates;
};

// Output of one entry in contiguous mode: shape.Elements() values of `dtype` at `data`
// (device memory, any alignment the dtype allows; 16-byte alignment is fastest).
struct ContiguousOut {
  void* data = nullptr;
  DType dtype = DType::kBF16;
  uint64_t capacity_bytes = 0;  // > 0: a fetch that needs more is refused before any write
};

// The engine's paged KV cache. k_layers/v_layers are DEVICE arrays of `layers` device
// pointers, each to a cache of num_blocks blocks; a block holds block_size slots of
// kv_heads * head_dim values of `dtype`; blocks are block_stride elements apart
// (0 means block_size * kv_heads * head_dim, the dense layout).
struct PagedCache {
  void* const* k_layers = nullptr;
  void* const* v_layers = nullptr;
  uint32_t layers = 0, kv_heads = 0, head_dim = 0;
  uint32_t block_size = 0;
  uint64_t num_blocks = 0;
  uint64_t block_stride = 0;
  DType dtype = DType::kBF16;
  uint32_t* bad_slots = nullptr;  // optional device counter of out-of-range slots
};

// Decodes in[i] into out[i] (in.size() == out.size()).
absl::Status DecodeContiguous(std::span<const DeviceContainer> in,
                              std::span<const ContiguousOut> out, cudaStream_t stream,
                              const DecodeOptions& opts = {});

// Decodes in[i] into the paged cache through slot_mappings[i], a DEVICE array of
// in[i]'s token count int64 slots. Every entry must match the cache's layers, kv_heads
// and head_dim.
absl::Status DecodePaged(std::span<const DeviceContainer> in,
                         std::span<const int64_t* const> slot_mappings, const PagedCache& cache,
                         cudaStream_t stream, const DecodeOptions& opts = {});

// True when a CUDA device is usable by this process.
bool CudaDeviceAvailable();

}  // namespace adaptcache::cuda
