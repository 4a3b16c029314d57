#include "client/get_to_device.h"

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/half.h"
#include "kernels/codec.h"

namespace adaptcache::client {
namespace {

absl::Status CudaError(const char* what, cudaError_t e) {
  return absl::InternalError(absl::StrCat("CUDA ", what, ": ", cudaGetErrorString(e)));
}

// Pins the whole mapping that contains `p` (found in /proc/self/maps) once per process,
// so copies from the pool are DMAs. Returns false when the OS or driver refuses (e.g.
// RLIMIT_MEMLOCK); callers then stage through pinned memory.
bool EnsureRegistered(const void* p) {
  static std::mutex mu;
  static std::vector<std::pair<uintptr_t, uintptr_t>> registered, refused;
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& [lo, hi] : registered) {
    if (a >= lo && a < hi) return true;
  }
  for (const auto& [lo, hi] : refused) {
    if (a >= lo && a < hi) return false;
  }
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return false;
  uintptr_t lo = 0, hi = 0;
  bool found = false;
  char line[512];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    unsigned long s, e;
    if (std::sscanf(line, "%lx-%lx", &s, &e) == 2 && a >= s && a < e) {
      lo = s, hi = e, found = true;
      break;
    }
  }
  std::fclose(f);
  if (!found) return false;
  const cudaError_t err = cudaHostRegister(reinterpret_cast<void*>(lo), hi - lo,
                                           cudaHostRegisterDefault | cudaHostRegisterReadOnly);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state of this thread
    refused.emplace_back(lo, hi);
    return false;
  }
  registered.emplace_back(lo, hi);
  return true;
}

// A per-thread pinned staging buffer (grown as needed, kept for reuse).
std::byte* Staging(size_t n) {
  struct Buf {
    void* p = nullptr;
    size_t n = 0;
    ~Buf() {
      if (p != nullptr) cudaFreeHost(p);
    }
  };
  thread_local Buf buf;
  if (buf.n < n) {
    if (buf.p != nullptr) cudaFreeHost(buf.p);
    buf.p = nullptr;
    buf.n = 0;
    if (cudaMallocHost(&buf.p, n) != cudaSuccess) return nullptr;
    buf.n = n;
  }
  return static_cast<std::byte*>(buf.p);
}

// CPU fallback: decode one container into host memory (contiguous or paged).
absl::Status CpuDecode(std::span<const std::byte> container, const EntryInfo& info,
                       const DeviceOutput& out, size_t i) {
  const KvShape& s = info.shape;
  std::vector<std::byte> tmp(s.Bytes());
  if (auto st = Decode(container, tmp); !st.ok()) return st;
  const uint64_t n = s.Elements();
  const uint64_t W = uint64_t{s.kv_heads} * s.head_dim;
  auto convert = [&](uint64_t src_elem, void* dst, DType dt, uint64_t count) {
    if (dt == s.dtype) {
      std::memcpy(dst, tmp.data() + src_elem * DTypeSize(dt), count * DTypeSize(dt));
      return;
    }
    for (uint64_t j = 0; j < count; ++j) StoreFromFloat(dst, dt, j, LoadAsFloat(tmp.data(), s.dtype, src_elem + j));
  };
  if (!out.paged) {
    convert(0, out.contiguous[i].data, out.contiguous[i].dtype, n);
    return absl::OkStatus();
  }
  const cuda::PagedCache& c = out.cache;
  auto kept = DecodeKeptTokens(container);
  if (!kept.ok()) return kept.status();
  const uint64_t stride = c.block_stride != 0 ? c.block_stride : c.block_size * W;
  const int64_t* slots = out.slot_mappings[i];
  for (uint32_t kv = 0; kv < 2; ++kv) {
    for (uint32_t l = 0; l < s.layers; ++l) {
      auto* base = static_cast<std::byte*>((kv == 0 ? c.k_layers : c.v_layers)[l]);
      for (uint32_t t : *kept) {
        const int64_t slot = slots[t];
        if (slot < 0) continue;
        if (static_cast<uint64_t>(slot) >= c.num_blocks * c.block_size) continue;  // as the GPU
        const uint64_t elem = (slot / c.block_size) * stride + (slot % c.block_size) * W;
        convert(((uint64_t{kv} * s.layers + l) * s.tokens + t) * W, base + elem * DTypeSize(c.dtype), c.dtype, W);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GetToDeviceResult> GetToDevice(Client& client, const std::string& ns,
                                              std::span<const Key128> keys,
                                              const DeviceOutput& out, cudaStream_t stream,
                                              const GetToDeviceOptions& opts) {
  if (out.paged ? out.slot_mappings.size() != keys.size() : out.contiguous.size() != keys.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        keys.size(), " keys but ", out.paged ? out.slot_mappings.size() : out.contiguous.size(),
        out.paged ? " slot mappings" : " outputs"));
  }
  GetToDeviceResult res;
  auto look = client.Lookup(ns, keys);
  if (!look.ok()) return look.status();
  res.entries = look->entries;
  // Lease the prefix of hits; an entry evicted since the Lookup or failing verification
  // ends the prefix (a cache miss, never data).
  std::vector<LeasedEntry> leases;
  for (uint32_t i = 0; i < look->prefix_hits; ++i) {
    auto le = client.GetShm(ns, keys[i], opts.lease_ms);
    if (!le.ok()) {
      if (absl::IsNotFound(le.status())) break;
      return le.status();
    }
    if (!VerifyContainer(le->bytes(), le->info()).ok()) break;
    leases.push_back(std::move(*le));
  }
  const size_t n = leases.size();
  res.decoded = static_cast<uint32_t>(n);
  if (n == 0) return res;

  if (opts.force_cpu || !cuda::CudaDeviceAvailable()) {
    for (size_t i = 0; i < n; ++i) {
      if (auto st = CpuDecode(leases[i].bytes(), leases[i].info(), out, i); !st.ok()) return st;
    }
    return res;
  }

  res.used_gpu = true;
  std::vector<uint64_t> off(n);
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    off[i] = total;
    total += (leases[i].bytes().size() + 255) / 256 * 256;
  }
  void* dbuf = nullptr;
  if (cudaError_t e = cudaMallocAsync(&dbuf, total, stream); e != cudaSuccess) return CudaError("alloc", e);
  auto fail = [&](absl::Status st) {
    cudaFreeAsync(dbuf, stream);
    return st;
  };
  bool all_registered = true;
  for (size_t i = 0; i < n; ++i) all_registered = all_registered && EnsureRegistered(leases[i].bytes().data());
  res.mapping_registered = all_registered;
  std::byte* staging = all_registered ? nullptr : Staging(total);
  if (!all_registered && staging == nullptr) return fail(absl::ResourceExhaustedError("no pinned staging memory"));
  std::vector<cuda::DeviceContainer> in(n);
  for (size_t i = 0; i < n; ++i) {
    const auto bytes = leases[i].bytes();
    const void* src = bytes.data();
    if (!all_registered) {
      std::memcpy(staging + off[i], bytes.data(), bytes.size());
      src = staging + off[i];
    }
    void* dst = static_cast<char*>(dbuf) + off[i];
    if (cudaError_t e = cudaMemcpyAsync(dst, src, bytes.size(), cudaMemcpyHostToDevice, stream); e != cudaSuccess) {
      return fail(CudaError("copy", e));
    }
    in[i] = {bytes, dst};
  }
  cudaEvent_t copied;
  if (cudaError_t e = cudaEventCreateWithFlags(&copied, cudaEventDisableTiming); e != cudaSuccess) {
    return fail(CudaError("event", e));
  }
  cudaEventRecord(copied, stream);
  cuda::DecodeOptions dopts;
  dopts.verify_payload_crc = false;  // VerifyContainer checked the CRC of these bytes
  absl::Status st;
  if (out.paged) {
    st = cuda::DecodePaged(in, std::span(out.slot_mappings).first(n), out.cache, stream, dopts);
  } else {
    st = cuda::DecodeContiguous(in, std::span(out.contiguous).first(n), stream, dopts);
  }
  const cudaError_t sync = cudaEventSynchronize(copied);
  cudaEventDestroy(copied);
  cudaFreeAsync(dbuf, stream);  // stream-ordered: after the decode kernels
  if (!st.ok()) return st;
  if (sync != cudaSuccess) return CudaError("copy", sync);
  // The daemon frees or moves nothing under a live lease: bytes copied before every
  // lease's expiry are the bytes validated above.
  const auto now = std::chrono::system_clock::now();
  for (const auto& le : leases) {
    if (now >= le.expires()) {
      return absl::UnavailableError("a lease expired before its copy to the GPU finished; retry");
    }
  }
  return res;
}

}  // namespace adaptcache::client
