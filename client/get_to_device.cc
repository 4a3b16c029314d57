#include "client/get_to_device.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/half.h"
#include "kernels/codec.h"
#include "kernels/cuda/verify.h"

namespace adaptcache::client {
namespace {

absl::Status CudaError(const char* what, cudaError_t e) {
  return absl::InternalError(absl::StrCat("CUDA ", what, ": ", cudaGetErrorString(e)));
}

// cudaHostRegister of one pool mapping, done on a background thread; unregistered when
// the mapping goes away (Client::AttachToPool destroys it before munmap).
class Registration {
 public:
  Registration(const PoolView& v, int device) : base_(v.base), bytes_(v.size) {
    thread_ = std::thread([this, device] {
      cudaSetDevice(device);
      const auto t0 = std::chrono::steady_clock::now();
      const cudaError_t err =
          cudaHostRegister(const_cast<std::byte*>(base_), bytes_,
                           cudaHostRegisterPortable | cudaHostRegisterReadOnly);
      seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (err != cudaSuccess) cudaGetLastError();  // refused (e.g. RLIMIT_MEMLOCK): stage instead
      state_.store(err == cudaSuccess ? kRegistered : kRefused, std::memory_order_release);
    });
  }
  ~Registration() {
    if (thread_.joinable()) thread_.join();
    if (state_.load() == kRegistered) cudaHostUnregister(const_cast<std::byte*>(base_));
  }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;

  DeviceRegistration Info() const {
    const int s = state_.load(std::memory_order_acquire);
    DeviceRegistration r;
    r.done = s != kPending;
    r.registered = s == kRegistered;
    r.seconds = r.done ? seconds_ : 0;
    r.bytes = bytes_;
    return r;
  }
  bool Covers(std::span<const std::byte> b) const {
    return state_.load(std::memory_order_acquire) == kRegistered && b.data() >= base_ &&
           b.data() + b.size() <= base_ + bytes_;
  }

 private:
  static constexpr int kPending = 0, kRegistered = 1, kRefused = 2;
  const std::byte* const base_;
  const uint64_t bytes_;
  std::atomic<int> state_{kPending};
  double seconds_ = 0;  // written before state_ leaves kPending
  std::thread thread_;
};

absl::StatusOr<std::shared_ptr<Registration>> RegistrationOf(Client& client, int device) {
  auto a = client.AttachToPool(absl::StrCat("cuda-register-", device), [device](const PoolView& v) {
    return std::static_pointer_cast<void>(std::make_shared<Registration>(v, device));
  });
  if (!a.ok()) return a.status();
  return std::static_pointer_cast<Registration>(a->second);
}

// Stream-ordered device memory that stays with the process between calls (the default
// release threshold would hand it back to the driver at every synchronisation).
absl::StatusOr<cudaMemPool_t> DevicePool(int device) {
  static std::mutex mu;
  static std::map<int, cudaMemPool_t> pools;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = pools.find(device); it != pools.end()) return it->second;
  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device;
  cudaMemPool_t pool;
  if (cudaError_t e = cudaMemPoolCreate(&pool, &props); e != cudaSuccess) return CudaError("memory pool", e);
  uint64_t keep = UINT64_MAX;
  cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
  pools[device] = pool;
  return pool;
}

// Per thread and device: the internal streams, events, pinned staging and status buffers.
struct ThreadGpu {
  cudaStream_t copy = nullptr, verify = nullptr;
  std::vector<cudaEvent_t> events;
  void* staging = nullptr;
  size_t staging_bytes = 0;
  ~ThreadGpu() {
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    if (copy != nullptr) cudaStreamDestroy(copy);
    if (verify != nullptr) cudaStreamDestroy(verify);
    if (staging != nullptr) cudaFreeHost(staging);
  }
  absl::Status Init() {
    if (copy != nullptr) return absl::OkStatus();
    if (cudaError_t e = cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking); e != cudaSuccess) {
      return CudaError("stream", e);
    }
    if (cudaError_t e = cudaStreamCreateWithFlags(&verify, cudaStreamNonBlocking); e != cudaSuccess) {
      return CudaError("stream", e);
    }
    return absl::OkStatus();
  }
  absl::StatusOr<cudaEvent_t> Event(size_t i) {
    while (events.size() <= i) {
      cudaEvent_t e;
      if (cudaError_t err = cudaEventCreateWithFlags(&e, cudaEventDisableTiming); err != cudaSuccess) {
        return CudaError("event", err);
      }
      events.push_back(e);
    }
    return events[i];
  }
  absl::StatusOr<std::byte*> Staging(size_t n) {
    if (staging_bytes < n) {
      if (staging != nullptr) cudaFreeHost(staging);
      staging = nullptr;
      staging_bytes = 0;
      if (cudaError_t e = cudaMallocHost(&staging, n); e != cudaSuccess) return CudaError("pinned staging", e);
      staging_bytes = n;
    }
    return static_cast<std::byte*>(staging);
  }
};

// Pinned words the verify gates are read back into; one per fetch in flight, recycled.
class PinnedWords {
 public:
  static absl::StatusOr<PinnedWords> Take(size_t words) {
    {
      std::lock_guard<std::mutex> lock(Mu());
      auto& free = Free();
      for (size_t i = 0; i < free.size(); ++i) {
        if (free[i].second >= words) {
          PinnedWords w(free[i].first, free[i].second);
          free.erase(free.begin() + static_cast<std::ptrdiff_t>(i));
          return w;
        }
      }
    }
    const size_t cap = std::max<size_t>(words, 1024);
    uint32_t* p = nullptr;
    if (cudaError_t e = cudaMallocHost(reinterpret_cast<void**>(&p), cap * 4); e != cudaSuccess) {
      return CudaError("pinned status", e);
    }
    return PinnedWords(p, cap);
  }
  PinnedWords(PinnedWords&& o) noexcept : p_(std::exchange(o.p_, nullptr)), cap_(o.cap_) {}
  PinnedWords(const PinnedWords&) = delete;
  PinnedWords& operator=(const PinnedWords&) = delete;
  PinnedWords& operator=(PinnedWords&&) = delete;
  ~PinnedWords() {
    if (p_ == nullptr) return;
    std::lock_guard<std::mutex> lock(Mu());
    if (Free().size() < 64) {
      Free().emplace_back(p_, cap_);
    } else {
      cudaFreeHost(p_);
    }
  }
  uint32_t* get() const { return p_; }

 private:
  PinnedWords(uint32_t* p, size_t cap) : p_(p), cap_(cap) {}
  static std::mutex& Mu() {
    static std::mutex mu;
    return mu;
  }
  static std::vector<std::pair<uint32_t*, size_t>>& Free() {
    static auto* free = new std::vector<std::pair<uint32_t*, size_t>>();  // outlives static teardown
    return *free;
  }
  uint32_t* p_;
  size_t cap_;
};

ThreadGpu& ThreadGpuFor(int device) {
  thread_local std::map<int, ThreadGpu> per_device;
  return per_device[device];
}

// The host's part of the check, from the 64-byte header only: it is intact, describes the
// entry, and its payload CRC combined with it gives the entry's whole-container CRC (so it
// is this entry's header, not a stale one). The GPU then checks every byte's CRC.
absl::Status CheckHeader(std::span<const std::byte> c, const EntryInfo& info) {
  if (c.size() != info.stored_bytes || c.size() <= sizeof(ContainerHeader)) {
    return absl::DataLossError("container size differs from the entry's");
  }
  auto h = PeekHeader(c);
  if (!h.ok()) return h.status();
  if (h->total_bytes != c.size()) return absl::DataLossError("container header's size differs from the entry's");
  if (KvShape{h->layers, h->tokens, h->kv_heads, h->head_dim, static_cast<DType>(h->dtype)} != info.shape) {
    return absl::DataLossError("container shape differs from the entry's");
  }
  const uint32_t head = Crc32c(c.data(), sizeof(ContainerHeader));
  if (Crc32cCombine(head, h->payload_crc32c, c.size() - sizeof(ContainerHeader)) != info.payload_crc32c) {
    return absl::DataLossError("container header does not belong to the entry (stale or reused slot)");
  }
  return absl::OkStatus();
}

// The leased entries fit the caller's outputs (checked before any byte is written, so a
// wrong-sized output is an error, not an overrun).
absl::Status CheckOutputs(std::span<const LeasedEntry> leases, const DeviceOutput& out) {
  for (size_t i = 0; i < leases.size(); ++i) {
    const KvShape& s = leases[i].info().shape;
    if (!out.paged) {
      const cuda::ContiguousOut& o = out.contiguous[i];
      const uint64_t need = s.Elements() * DTypeSize(o.dtype);
      if (o.capacity_bytes > 0 && o.capacity_bytes < need) {
        return absl::InvalidArgumentError(absl::StrCat("output ", i, " holds ", o.capacity_bytes,
                                                       " bytes; the entry ", s.DebugString(), " needs ", need));
      }
      continue;
    }
    const cuda::PagedCache& c = out.cache;
    if (s.layers != c.layers || s.kv_heads != c.kv_heads || s.head_dim != c.head_dim) {
      return absl::InvalidArgumentError(absl::StrCat("entry ", i, " is ", s.DebugString(), "; the paged cache has layers ",
                                                     c.layers, ", kv_heads ", c.kv_heads, ", head_dim ", c.head_dim));
    }
    if (i < out.slot_counts.size() && out.slot_counts[i] < s.tokens) {
      return absl::InvalidArgumentError(absl::StrCat("slot mapping ", i, " has ", out.slot_counts[i],
                                                     " slots; the entry has ", s.tokens, " tokens"));
    }
  }
  return absl::OkStatus();
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

absl::Status LeasesStillValid(std::span<const LeasedEntry> leases) {
  // The daemon frees or moves nothing under a live lease: bytes read before every lease's
  // expiry are the bytes that were checked.
  const auto now = std::chrono::system_clock::now();
  for (const auto& le : leases) {
    if (now >= le.expires()) {
      return absl::UnavailableError("a lease expired before its copy finished; retry");
    }
  }
  return absl::OkStatus();
}

absl::Status FetchOnCpu(std::span<const LeasedEntry> leases, const DeviceOutput& out,
                        GetToDeviceResult& res) {
  for (size_t i = 0; i < leases.size(); ++i) {
    if (!VerifyContainer(leases[i].bytes(), leases[i].info()).ok()) {
      res.corrupt = true;
      break;
    }
    if (auto st = CpuDecode(leases[i].bytes(), leases[i].info(), out, i); !st.ok()) return st;
    res.decoded = static_cast<uint32_t>(i + 1);
  }
  return LeasesStillValid(leases);
}

// Decodes entries [b, e) on `stream`, gated by their device checks.
absl::Status DecodeGroup(std::span<const cuda::DeviceContainer> in, std::span<const uint32_t* const> gates,
                         const DeviceOutput& out, size_t b, cudaStream_t stream) {
  cuda::DecodeOptions dopts;
  dopts.verify_payload_crc = false;
  dopts.device_gates = gates;
  if (out.paged) return cuda::DecodePaged(in, std::span(out.slot_mappings).subspan(b, in.size()), out.cache, stream, dopts);
  return cuda::DecodeContiguous(in, std::span(out.contiguous).subspan(b, in.size()), stream, dopts);
}

// A fetch complete when it starts (CPU path, nothing leased, no header passed).
class CompletedFetch final : public DeviceFetch {
 public:
  explicit CompletedFetch(GetToDeviceResult r) : result_(std::move(r)) {}
  const GetToDeviceResult& pending() const override { return result_; }
  absl::StatusOr<GetToDeviceResult> Wait() override { return result_; }

 private:
  GetToDeviceResult result_;
};

// Copies and checks enqueued on the thread's internal streams, decodes on the caller's;
// holds the leases and the gate read-back buffer until the copies are done.
class GpuFetch final : public DeviceFetch {
 public:
  GpuFetch(std::vector<LeasedEntry> leases, GetToDeviceResult res, size_t checked, size_t enqueued,
           cudaEvent_t done, PinnedWords status)
      : leases_(std::move(leases)), pending_(std::move(res)), checked_(checked), enqueued_(enqueued),
        done_(done), status_(std::move(status)) {
    pending_.decoded = static_cast<uint32_t>(enqueued_);
  }
  ~GpuFetch() override {
    if (!waited_) (void)Wait();
    cudaEventDestroy(done_);
  }
  const GetToDeviceResult& pending() const override { return pending_; }
  absl::StatusOr<GetToDeviceResult> Wait() override {
    if (waited_) return result_;
    waited_ = true;
    const cudaError_t sync = cudaEventSynchronize(done_);
    absl::Status st = sync == cudaSuccess ? LeasesStillValid(std::span(leases_).first(checked_))
                                          : CudaError("copy", sync);
    leases_.clear();  // released in the background
    if (!st.ok()) {
      result_ = st;
      return result_;
    }
    GetToDeviceResult r = pending_;
    size_t ok = 0;
    while (ok < enqueued_ && status_.get()[ok * cuda::kVerifyWordsPerContainer] == cuda::kGateOpen) ++ok;
    if (ok < enqueued_) r.corrupt = true;
    r.decoded = static_cast<uint32_t>(ok);
    result_ = std::move(r);
    return result_;
  }

 private:
  std::vector<LeasedEntry> leases_;
  GetToDeviceResult pending_;
  size_t checked_, enqueued_;
  cudaEvent_t done_;
  PinnedWords status_;
  bool waited_ = false;
  absl::StatusOr<GetToDeviceResult> result_;
};

absl::StatusOr<std::unique_ptr<DeviceFetch>> StartOnGpu(Client& client, std::vector<LeasedEntry> leases,
                                                        const DeviceOutput& out, cudaStream_t stream,
                                                        GetToDeviceResult res) {
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return CudaError("device", e);
  auto reg = RegistrationOf(client, device);
  if (!reg.ok()) return reg.status();
  ThreadGpu& g = ThreadGpuFor(device);
  if (auto st = g.Init(); !st.ok()) return st;
  auto pool = DevicePool(device);
  if (!pool.ok()) return pool.status();

  // Header checks first: a bad header ends the prefix before anything is enqueued.
  size_t n = 0;
  for (; n < leases.size(); ++n) {
    if (!CheckHeader(leases[n].bytes(), leases[n].info()).ok()) {
      res.corrupt = true;
      break;
    }
  }
  if (n == 0) {
    if (auto st = LeasesStillValid(leases); !st.ok()) return st;
    return std::make_unique<CompletedFetch>(std::move(res));
  }

  // Device buffer: the verify work words, then each container 256-byte aligned.
  const uint64_t work_bytes = (n * cuda::kVerifyWordsPerContainer * 4 + 255) / 256 * 256;
  std::vector<uint64_t> off(n);
  uint64_t total = work_bytes;
  bool direct = true;
  for (size_t i = 0; i < n; ++i) {
    off[i] = total;
    total += (leases[i].bytes().size() + 255) / 256 * 256;
    direct = direct && (*reg)->Covers(leases[i].bytes());
  }
  res.mapping_registered = direct;
  std::byte* staging = nullptr;
  if (!direct) {
    auto s = g.Staging(total);
    if (!s.ok()) return s.status();
    staging = *s;
  }
  auto host_status = PinnedWords::Take(n * cuda::kVerifyWordsPerContainer);
  if (!host_status.ok()) return host_status.status();
  cudaEvent_t done = nullptr;
  if (cudaError_t e = cudaEventCreateWithFlags(&done, cudaEventDisableTiming); e != cudaSuccess) {
    return CudaError("event", e);
  }
  void* dbuf = nullptr;
  if (cudaError_t e = cudaMallocFromPoolAsync(&dbuf, total, *pool, g.copy); e != cudaSuccess) {
    cudaEventDestroy(done);
    return CudaError("device buffer", e);
  }
  auto* work = static_cast<uint32_t*>(dbuf);
  std::vector<cuda::DeviceContainer> in(n);
  std::vector<cuda::DeviceCheck> checks(n);
  std::vector<const uint32_t*> gates(n);
  for (size_t i = 0; i < n; ++i) {
    const auto bytes = leases[i].bytes();
    void* dst = static_cast<char*>(dbuf) + off[i];
    in[i] = {bytes, dst};
    checks[i] = {dst, bytes.size(), leases[i].info().payload_crc32c};
    gates[i] = cuda::GateOf(work, i);
  }

  // Groups of chunks: the copy of group k+1 overlaps the check and decode of group k.
  const size_t groups = std::min<size_t>(n, 8);
  const size_t per = (n + groups - 1) / groups;
  absl::Status st;
  size_t enqueued = 0;  // entries whose decode is enqueued
  for (size_t b = 0; b < n && st.ok(); b += per) {
    const size_t e = std::min(n, b + per);
    const size_t k = b / per;
    for (size_t i = b; i < e && st.ok(); ++i) {
      const auto bytes = leases[i].bytes();
      const void* src = bytes.data();
      if (!direct) {
        std::memcpy(staging + off[i], bytes.data(), bytes.size());
        src = staging + off[i];
      }
      if (cudaError_t err = cudaMemcpyAsync(static_cast<char*>(dbuf) + off[i], src, bytes.size(),
                                            cudaMemcpyHostToDevice, g.copy);
          err != cudaSuccess) {
        st = CudaError("copy", err);
      }
    }
    if (!st.ok()) break;
    auto copied = g.Event(2 * k), checked = g.Event(2 * k + 1);
    if (!copied.ok() || !checked.ok()) {
      st = copied.ok() ? checked.status() : copied.status();
      break;
    }
    cudaEventRecord(*copied, g.copy);
    cudaStreamWaitEvent(g.verify, *copied, 0);
    st = cuda::VerifyOnDevice(std::span(checks).subspan(b, e - b), work + b * cuda::kVerifyWordsPerContainer, g.verify);
    if (!st.ok()) break;
    cudaEventRecord(*checked, g.verify);
    cudaStreamWaitEvent(stream, *checked, 0);
    st = DecodeGroup(std::span(in).subspan(b, e - b), std::span(gates).subspan(b, e - b), out, b, stream);
    if (!st.ok() && absl::IsDataLoss(st)) {
      // A container the daemon's CRC vouches for but the decoder rejects: decode the group
      // one entry at a time, so the prefix ends exactly at the bad one.
      st = absl::OkStatus();
      size_t i = b;
      for (; i < e; ++i) {
        auto one = DecodeGroup(std::span(in).subspan(i, 1), std::span(gates).subspan(i, 1), out, i, stream);
        if (absl::IsDataLoss(one)) break;
        if (!one.ok()) {
          st = one;
          break;
        }
      }
      if (st.ok() && i < e) {
        res.corrupt = true;
        enqueued = i;
        break;
      }
    }
    if (st.ok()) enqueued = e;
  }
  // `done` follows every copy and check and the gates' read-back; the caller's stream
  // waits for it too, so the stream-ordered free comes after the decodes.
  cudaMemcpyAsync(host_status->get(), work, n * cuda::kVerifyWordsPerContainer * 4, cudaMemcpyDeviceToHost, g.verify);
  cudaEventRecord(done, g.verify);
  cudaStreamWaitEvent(g.copy, done, 0);
  cudaEventRecord(done, g.copy);
  cudaStreamWaitEvent(stream, done, 0);
  cudaFreeAsync(dbuf, stream);
  auto fetch = std::make_unique<GpuFetch>(std::move(leases), std::move(res), n, enqueued, done,
                                          std::move(*host_status));
  if (!st.ok()) {
    (void)fetch->Wait();  // the copies enqueued so far read the mapping: wait before the leases go
    return st;
  }
  if (!direct) (void)fetch->Wait();  // the next call on this thread reuses the staging buffer
  return fetch;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceFetch>> StartGetToDevice(Client& client, const std::string& ns,
                                                              std::span<const Key128> keys,
                                                              const DeviceOutput& out, cudaStream_t stream,
                                                              const GetToDeviceOptions& opts) {
  if (out.paged ? out.slot_mappings.size() != keys.size() : out.contiguous.size() != keys.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        keys.size(), " keys but ", out.paged ? out.slot_mappings.size() : out.contiguous.size(),
        out.paged ? " slot mappings" : " outputs"));
  }
  auto lp = client.LeasePrefix(ns, keys, opts.lease_ms);
  if (!lp.ok()) return lp.status();
  GetToDeviceResult res;
  res.entries = std::move(lp->lookup.entries);
  res.leased = static_cast<uint32_t>(lp->leases.size());
  if (lp->leases.empty()) return std::make_unique<CompletedFetch>(std::move(res));
  if (auto c = CheckOutputs(lp->leases, out); !c.ok()) return c;
  if (opts.force_cpu || !cuda::CudaDeviceAvailable()) {
    if (auto st = FetchOnCpu(lp->leases, out, res); !st.ok()) return st;
    return std::make_unique<CompletedFetch>(std::move(res));
  }
  res.used_gpu = true;
  return StartOnGpu(client, std::move(lp->leases), out, stream, std::move(res));
}

absl::StatusOr<GetToDeviceResult> GetToDevice(Client& client, const std::string& ns,
                                              std::span<const Key128> keys,
                                              const DeviceOutput& out, cudaStream_t stream,
                                              const GetToDeviceOptions& opts) {
  auto f = StartGetToDevice(client, ns, keys, out, stream, opts);
  if (!f.ok()) return f.status();
  return (*f)->Wait();
}

absl::StatusOr<DeviceRegistration> PrepareDevice(Client& client, bool wait) {
  if (!cuda::CudaDeviceAvailable()) return absl::FailedPreconditionError("no usable CUDA device");
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return CudaError("device", e);
  auto reg = RegistrationOf(client, device);
  if (!reg.ok()) return reg.status();
  if (wait) {
    while (!(*reg)->Info().done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return (*reg)->Info();
}

}  // namespace adaptcache::client
