// GPU encoders for the fp8 and quant families (docs/cuda.md). The output container is
// byte-identical to the CPU Encode() of the same tensor and config: the host computes
// the header and section table (ContainerWriter), the kernels fill the sections in
// device memory, the payload is copied back into `out` and the host computes both CRCs.
//
// The call is synchronous: it enqueues a max-|x| pass on `stream`, waits for it (the
// fp32/fp16 scale choice and the inf/NaN check decide the layout), enqueues the section
// kernels, and waits for the copy back. Errors: InvalidArgument for a config or shape the
// CPU encoder rejects, inf/NaN inputs (same rule as the CPU encoder) or a short `out`;
// Unimplemented for other families (use Encode()) and for quant rows wider than the
// device's shared memory allows (kv_heads * head_dim up to about 18K); Internal for CUDA
// errors. Thread safe.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/kv_shape.h"
#include "kernels/codec.h"
#include "kernels/container.h"

namespace adaptcache::cuda {

// Encodes the device tensor `d_raw` (shape.Bytes() bytes) into host `out` (at least
// MaxEncodedBytes(cfg, shape) long); returns the container size.
absl::StatusOr<uint64_t> EncodeOnDevice(const CodecConfig& cfg, const KvShape& shape,
                                        const void* d_raw, ByteSpan out, cudaStream_t stream);

}  // namespace adaptcache::cuda
