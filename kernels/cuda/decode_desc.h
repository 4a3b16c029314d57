// Internal: the plain descriptors the host planner (decode_plan.cc) hands to the decode
// kernels (decode_kernels.cu). Everything a kernel reads about an entry is here; the
// container bytes themselves are read through the device pointers. Descriptors travel
// by value as a __grid_constant__ kernel parameter, so a launch needs no host-to-device
// copy and no synchronisation. Not a public API.
#pragma once

#include <cstdint>

namespace adaptcache::cuda::internal {

// What a descriptor decodes. Drop entries are kRaw/kQuant with `kept` set.
enum class Kind : uint8_t { kRaw = 0, kFp8 = 1, kQuant = 2, kLowrank = 4 };

struct EntryDesc {
  // Device pointers to the sections (raw: [0] data; fp8: [0] codes, [1] scales; quant:
  // the seven sections in id order; lowrank: [0] slab index, [1] slab records).
  const uint8_t* sec[7];
  const uint16_t* kept;   // drop: kept positions [rows] (device), else null
  uint8_t* out;           // contiguous mode: [2][layers][tokens][W] in out_dtype
  const int64_t* slots;   // paged mode: slot of each token [tokens]
  const uint32_t* gate;   // device gate word (verify.h): decode only when it is open; null = always
  uint32_t task_begin;    // first block index of this entry within its launch
  uint32_t tiles;         // row tiles per slab (lowrank: token tiles per (slab, head))
  uint32_t zero_tiles;    // drop, contiguous mode: token tiles per slab to zero
  uint32_t tile_rows;     // rows (lowrank: tokens) per tile
  uint32_t layers, tokens, rows;  // rows: decoded rows per slab (kept count for drop)
  uint32_t heads, dim, width;     // width = heads * dim
  // quant
  uint32_t sinks, qtokens, group, blocks, vgroup, vgroups;
  uint32_t krow, vrow;    // packed row bytes
  Kind kind;
  uint8_t in_dtype, out_dtype;  // DType codes
  uint8_t k_bits, v_bits, hadamard, fp32_scales;
  uint8_t big_hadamard;   // V rotation done by the shared-memory kernel (head_dim > 256)
  // rows kernel: the tile's compressed bytes are staged in shared memory (cp.async) and
  // each thread decodes 16-element chunks (fp8, quant with head_dim % 16 == 0)
  uint8_t staged;
  // lowrank
  uint32_t lr_max_rank;   // largest rank of any group (sizes shared memory)
  uint8_t lr_stage_basis; // basis staged in shared memory
};

inline constexpr int kMaxEntriesPerLaunch = 32;
inline constexpr int kRowsThreads = 256;
inline constexpr int kLowrankThreads = 256;
inline constexpr int kHadamardThreads = 256;

struct LaunchArgs {
  uint32_t entries = 0;
  uint32_t total_tasks = 0;
  // Paged mode (paged != 0): per-layer K and V cache bases (device arrays of pointers).
  uint8_t paged = 0;
  uint8_t* const* k_layers = nullptr;
  uint8_t* const* v_layers = nullptr;
  uint32_t block_size = 0;
  uint64_t block_stride = 0;  // elements between blocks
  uint64_t num_slots = 0;     // num_blocks * block_size
  uint32_t* bad_slots = nullptr;
  uint32_t smem = 0;  // dynamic shared memory of the launch (rows, lowrank kernels)
  EntryDesc e[kMaxEntriesPerLaunch];
};

// Which kernel a batch goes to.
enum class KernelKind : uint8_t { kRows, kLowrank, kBigHadamard };

// Launches one kernel over `args` on `stream` (a cudaStream_t). Returns a CUDA error code
// (0 = success) of the launch.
int LaunchDecode(KernelKind kind, const LaunchArgs& args, void* stream);

}  // namespace adaptcache::cuda::internal
