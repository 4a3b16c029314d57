// Internal: launch interface between the GPU encoder's host half (encode_plan.cc) and its
// kernels (encode_kernels.cu). Not a public API. Functions return a CUDA error code.
#pragma once

#include <cstddef>
#include <cstdint>

namespace adaptcache::cuda::internal {

struct QuantEncodeArgs {
  const uint8_t* raw;     // device tensor [2][layers][tokens][W] in dtype
  uint8_t* sec[6];        // device sections 1..6 of the container being written
  uint32_t layers, tokens, heads, dim, width;
  uint32_t sinks, qtokens, group, blocks, vgroup, vgroups;
  uint32_t krow, vrow;
  uint8_t dtype, k_bits, v_bits, hadamard, fp32_scales;
};

// atomicMax into *result of |x| bit patterns (sign cleared, in the dtype) over elements
// [first, first + count) of each of `slabs` slabs of slab_elems elements.
int LaunchMaxAbs(const uint8_t* raw, uint8_t dtype, uint32_t slabs, uint64_t slab_elems,
                 uint64_t first, uint64_t count, uint32_t* result, void* stream);
int LaunchFp8Encode(const uint8_t* raw, uint8_t dtype, uint64_t rows, uint32_t width,
                    uint8_t* codes, uint8_t* scales, void* stream);
// Shared memory the V kernel needs (one row of fp32 plus per-group min and 1/scale).
size_t QuantVSharedBytes(const QuantEncodeArgs& a);
int LaunchQuantEncode(const QuantEncodeArgs& a, void* stream);

}  // namespace adaptcache::cuda::internal
