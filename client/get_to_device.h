// GetToDevice: fetch a request's chunks from adaptcached and decode them on the GPU into
// the engine's KV layout (DESIGN.md §1 data plane, docs/cuda.md "GetToDevice").
//
// Per call:
//   1. one LeasePrefix RPC: Lookup's answer plus leases of the leading hits in the pool;
//   2. on the host, per leased container, only its 64-byte header: header CRC, size and
//      shape against the daemon's EntryInfo, and that the header's payload CRC combines
//      with the header into the entry's whole-container CRC (it is this entry's header);
//   3. the chunks are copied to the GPU in groups on an internal copy stream (DMAs straight
//      from the pool mapping once it is registered with CUDA, else through a pinned buffer);
//      each group's CRC32C is checked on the GPU against the daemon's value
//      (kernels/cuda/verify.h) and then decoded on the caller's stream, so copies of later
//      groups overlap the checks and decodes of earlier ones;
//   4. the call waits for the copies and checks (not for the decodes), releases the leases
//      (in the background) and returns. Outputs are ready when `stream` reaches the
//      enqueued decodes. StartGetToDevice returns before that wait (DeviceFetch below).
// An entry whose header or device CRC check fails is never decoded (a gate in device
// memory stops its kernels) and ends the usable prefix: `decoded` counts the leading
// entries written, `corrupt` says whether the prefix ended on bad bytes. A lease that
// expired before its copy finished makes the call fail with Unavailable (the outputs of
// that call must then be ignored); nothing wrong is reported as data.
//
// Pool registration (cudaHostRegister of the whole mapping, ~60 ms per GiB on an H100
// host) runs on a background thread once per client and pool mapping; PrepareDevice()
// starts it early. Until it completes, calls stage through pinned memory.
//
// Output layouts:
//   - contiguous: one [2][layers][tokens][kv_heads][head_dim] buffer per chunk, or
//   - paged: the engine's per-layer K/V caches through a per-chunk slot mapping
//     (kernels/cuda/decode.h; dropped tokens of drop entries are not written).
//
// Without a usable GPU (or with force_cpu) the CPU decoder serves, after a host CRC check
// of each container in the pool: the outputs are then HOST memory (contiguous buffers, or
// host-resident paged caches and slot mappings), and the result is the same bytes.
// Thread safety: calls may run concurrently on one Client; each call owns its buffers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
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
  // Optional, one per key: the slots slot_mappings[i] holds; a fetch of an entry with more
  // tokens is refused before any write.
  std::vector<uint64_t> slot_counts;
};

struct GetToDeviceOptions {
  uint32_t lease_ms = 0;   // 0: the daemon's default lease
  bool force_cpu = false;  // use the CPU decoder even when a GPU is present
};

struct GetToDeviceResult {
  uint32_t decoded = 0;             // leading keys decoded (the usable prefix)
  std::vector<EntryInfo> entries;   // Lookup's answer, one per key
  uint32_t leased = 0;              // leading keys the daemon leased
  bool corrupt = false;             // the prefix ended on an entry that failed its checks
  bool used_gpu = false;
  bool mapping_registered = false;  // the H2D copies were DMAs from the pool mapping
};

absl::StatusOr<GetToDeviceResult> GetToDevice(Client& client, const std::string& ns,
                                              std::span<const Key128> keys,
                                              const DeviceOutput& out, cudaStream_t stream,
                                              const GetToDeviceOptions& opts = {});

// GetToDevice without the host wait: StartGetToDevice returns once the copies, checks and
// decodes are enqueued, so the caller can enqueue work that reads the outputs (a forward
// waiting per layer) while the DMAs run. pending().decoded is the number of leading entries
// whose decodes were enqueued: the prefix the caller may assume. Wait() blocks until the
// copies and checks are done, releases the leases and gives the final result, whose
// decoded may be smaller (an entry failed its device CRC check: its decode did not run and
// its output holds whatever was there) or an Unavailable error (a lease expired before its
// copy finished). In both cases whatever the caller computed from outputs past the final
// decoded is wrong and must be discarded. The outputs must stay allocated until the decodes
// ran on `stream`. Destroying an unwaited fetch waits for its copies (the DMAs read the
// pool mapping under the leases). Without a GPU, or staging through pinned memory, the
// fetch is complete on return.
class DeviceFetch {
 public:
  virtual ~DeviceFetch() = default;
  virtual const GetToDeviceResult& pending() const = 0;
  // Idempotent: later calls return the first call's result.
  virtual absl::StatusOr<GetToDeviceResult> Wait() = 0;
};

absl::StatusOr<std::unique_ptr<DeviceFetch>> StartGetToDevice(Client& client, const std::string& ns,
                                                              std::span<const Key128> keys,
                                                              const DeviceOutput& out, cudaStream_t stream,
                                                              const GetToDeviceOptions& opts = {});

// The state of this client's pool registration with CUDA.
struct DeviceRegistration {
  bool done = false;        // finished (registered or refused)
  bool registered = false;  // copies are DMAs from the mapping
  double seconds = 0;       // how long cudaHostRegister took (when done)
  uint64_t bytes = 0;       // mapping size
};

// Maps the pool and starts registering it with CUDA on a background thread (once per
// mapping; later calls report the state). wait = true blocks until it is done.
// FailedPrecondition without a usable GPU.
absl::StatusOr<DeviceRegistration> PrepareDevice(Client& client, bool wait = false);

}  // namespace adaptcache::client
