// GetToDevice: fetch a request's chunks from adaptcached and decode them on the GPU into
// the engine's KV layout (DESIGN.md §1 data plane, docs/cuda.md).
//
// Per call: one Lookup of the keys; the leading hits (the usable prefix) are leased in
// the shared-memory pool (Client::GetShm), each container is validated on the host from
// the mapping (VerifyContainer: size and CRC32C against the daemon's metadata, then the
// decoder's structural checks), copied to the GPU with one DMA per chunk (the pool
// mapping is cudaHostRegister'ed once per process when the OS allows it; otherwise the
// chunk is staged through a pinned buffer), and decoded on the caller's stream into
//   - contiguous: one [2][layers][tokens][kv_heads][head_dim] buffer per chunk, or
//   - paged: the engine's per-layer K/V caches through a per-chunk slot mapping
//     (kernels/cuda/decode.h; dropped tokens of drop entries are not written).
// The call waits for the host-to-device copies (so the leases can be released safely)
// but not for the decode: outputs are ready when `stream` reaches the enqueued work.
// A lease that expires before its copy finished makes the call fail with Unavailable
// (the outputs of that call must then be ignored); nothing wrong is reported as data.
//
// Without a usable GPU (or with force_cpu) the CPU decoder serves: the outputs are then
// HOST memory (contiguous buffers, or host-resident paged caches and slot mappings), and
// the result is the same bytes.
// Thread safety: calls may run concurrently on one Client; each call owns its buffers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "common/key.h"
#include "kernels/cuda/decode.h"

namespace adaptcache::client {

struct DeviceOutput {
  // Contiguous mode: outputs[i] for key i (data, dtype). Leave empty for paged mode.
  std::vector<cuda::ContiguousOut> contiguous;
  // Paged mode: the cache and slot_mappings[i] (int64 per token of key i).
  bool paged = false;
  cuda::PagedCache cache;
  std::vector<const int64_t*> slot_mappings;
};

struct GetToDeviceOptions {
  uint32_t lease_ms = 0;   // 0: the daemon's default lease
  bool force_cpu = false;  // use the CPU decoder even when a GPU is present
};

struct GetToDeviceResult {
  uint32_t decoded = 0;             // leading keys decoded (the prefix of hits)
  std::vector<EntryInfo> entries;   // Lookup's answer, one per key
  bool used_gpu = false;
  bool mapping_registered = false;  // the H2D copies were DMAs from the pool mapping
};

absl::StatusOr<GetToDeviceResult> GetToDevice(Client& client, const std::string& ns,
                                              std::span<const Key128> keys,
                                              const DeviceOutput& out, cudaStream_t stream,
                                              const GetToDeviceOptions& opts = {});

}  // namespace adaptcache::client
