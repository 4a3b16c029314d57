// GetToDevice against the real adaptcached: every codec family, contiguous and paged
// output, batches beyond one kernel launch, partial prefixes, and bytes corrupted in the
// pool after Put (a miss, never wrong KV). The CPU-fallback cases run everywhere; the GPU
// cases skip cleanly without a usable CUDA device and compare the GPU's bytes with the
// CPU fallback's.
#include <cuda_runtime_api.h>

#include <cstring>
#include <numeric>
#include <random>

#include <gtest/gtest.h>

#include "client/client.h"
#include "client/get_to_device.h"
#include "client/kv_files.h"
#include "kernels/codec.h"
#include "tests/integration/daemon_fixture.h"

namespace adaptcache::client {
namespace {

using ::adaptcache::testing::DaemonOptions;
using ::adaptcache::testing::DaemonTest;

constexpr char kNs[] = "it/gpu-fetch/bf16";
constexpr std::byte kPoison{0xAB};

const char* const kCodecs[] = {"raw",     "fp8",         "quant-k4v4-g64", "quant-k2v2-g64-h",
                               "drop-50", "drop-50+quant-k4v2-g64",        "lowrank-r8"};

bool HaveGpu() { return cuda::CudaDeviceAvailable(); }

// Device memory freed on scope exit.
struct DeviceBuf {
  void* p = nullptr;
  size_t n = 0;
  explicit DeviceBuf(size_t bytes) : n(bytes) { EXPECT_EQ(cudaMalloc(&p, bytes), cudaSuccess); }
  ~DeviceBuf() {
    if (p != nullptr) cudaFree(p);
  }
  void Fill(std::byte b) { EXPECT_EQ(cudaMemset(p, static_cast<int>(b), n), cudaSuccess); }
  std::vector<std::byte> Read() const {
    std::vector<std::byte> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, n, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};

class GpuFetchTest : public DaemonTest {
 protected:
  DaemonOptions Options() override {
    DaemonOptions o;
    o.pool_bytes = 768ull << 20;
    o.extra_args = {"--max-entry-bytes", "40MiB"};
    return o;
  }
  void SetUp() override {
    DaemonTest::SetUp();
    if (HasFatalFailure()) return;
    auto c = Client::Connect(daemon_->target());
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }
  void TearDown() override {
    client_.reset();
    DaemonTest::TearDown();
  }

  static Key128 KeyOf(const std::string& codec, uint64_t i) {
    return Key128{std::hash<std::string>{}(codec), 0x5eed0000 + i};
  }

  // Puts `n` chunks of `shape` in `codec`; returns their keys.
  std::vector<Key128> PutChunks(const std::string& codec, const KvShape& shape, size_t n) {
    std::vector<Key128> keys;
    for (size_t i = 0; i < n; ++i) {
      PutSpec spec;
      spec.ns = kNs;
      spec.key = KeyOf(codec, i);
      spec.shape = shape;
      spec.codec = codec;
      auto r = client_->PutShm(spec, RandomKvBytes(shape, 1000 * keys.size() + shape.tokens + i));
      EXPECT_TRUE(r.ok()) << codec << " chunk " << i << ": " << r.status();
      keys.push_back(spec.key);
    }
    return keys;
  }

  // The CPU decoder's output of key i (through a streamed Get, an independent path).
  std::vector<std::byte> Reference(const Key128& key, const KvShape& shape) {
    auto c = client_->Get(kNs, key);
    EXPECT_TRUE(c.ok()) << c.status();
    std::vector<std::byte> out(shape.Bytes());
    if (c.ok()) {
      EXPECT_TRUE(Decode(*c, out).ok());
    }
    return out;
  }

  // GetToDevice into contiguous host (force_cpu) or device buffers, poisoned first; each
  // output declares `capacity` bytes (0: unchecked).
  absl::StatusOr<GetToDeviceResult> FetchContiguous(std::span<const Key128> keys, const KvShape& shape,
                                                    bool gpu, std::vector<std::vector<std::byte>>& outs,
                                                    uint64_t capacity = 0) {
    DeviceOutput out;
    std::vector<std::unique_ptr<DeviceBuf>> dev;
    outs.assign(keys.size(), std::vector<std::byte>(shape.Bytes(), kPoison));
    for (size_t i = 0; i < keys.size(); ++i) {
      void* p = outs[i].data();
      if (gpu) {
        dev.push_back(std::make_unique<DeviceBuf>(shape.Bytes()));
        dev.back()->Fill(kPoison);
        p = dev.back()->p;
      }
      out.contiguous.push_back({p, shape.dtype, capacity});
    }
    GetToDeviceOptions opts;
    opts.force_cpu = !gpu;
    auto r = GetToDevice(*client_, kNs, keys, out, nullptr, opts);
    if (gpu) {
      EXPECT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
      for (size_t i = 0; i < keys.size(); ++i) outs[i] = dev[i]->Read();
    }
    return r;
  }

  std::unique_ptr<Client> client_;
};

// The GPU cases: skipped before the daemon starts when there is no GPU.
class GpuOnlyFetchTest : public GpuFetchTest {
 protected:
  void SetUp() override {
    if (!HaveGpu()) GTEST_SKIP() << "no usable CUDA device";
    GpuFetchTest::SetUp();
  }
};

const KvShape kSmall{4, 256, 2, 128, DType::kBF16};   // 1 MiB a chunk
const KvShape kLlama{32, 256, 8, 128, DType::kBF16};  // 32 MiB a chunk (the benchmark's)

TEST_F(GpuFetchTest, CpuFallbackMatchesTheDecoderForEveryFamily) {
  for (const char* codec : kCodecs) {
    SCOPED_TRACE(codec);
    const auto keys = PutChunks(codec, kSmall, 3);
    std::vector<std::vector<std::byte>> outs;
    auto r = FetchContiguous(keys, kSmall, /*gpu=*/false, outs);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->decoded, keys.size());
    EXPECT_FALSE(r->corrupt);
    EXPECT_FALSE(r->used_gpu);
    for (size_t i = 0; i < keys.size(); ++i) EXPECT_TRUE(outs[i] == Reference(keys[i], kSmall)) << "chunk " << i;
  }
}

TEST_F(GpuFetchTest, PrefixEndsAtTheFirstMiss) {
  auto keys = PutChunks("quant-k4v4-g64", kSmall, 4);
  ASSERT_TRUE(client_->Delete(kNs, std::span(keys).subspan(2, 1)).ok());
  for (bool gpu : {false, true}) {
    if (gpu && !HaveGpu()) continue;
    SCOPED_TRACE(gpu ? "gpu" : "cpu");
    std::vector<std::vector<std::byte>> outs;
    auto r = FetchContiguous(keys, kSmall, gpu, outs);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->leased, 2u);
    EXPECT_EQ(r->decoded, 2u);
    EXPECT_FALSE(r->corrupt);
    EXPECT_FALSE(r->entries[2].hit());
    EXPECT_TRUE(r->entries[3].hit());
    EXPECT_TRUE(outs[1] == Reference(keys[1], kSmall));
    EXPECT_TRUE(std::all_of(outs[2].begin(), outs[2].end(), [](std::byte b) { return b == kPoison; }));
  }
  auto s = client_->FlushReleases();
  ASSERT_TRUE(s.ok()) << s.status();
}

TEST_F(GpuFetchTest, OutputTooSmallIsRefusedBeforeAnyWrite) {
  const auto keys = PutChunks("fp8", kSmall, 2);
  for (bool gpu : {false, true}) {
    if (gpu && !HaveGpu()) continue;
    SCOPED_TRACE(gpu ? "gpu" : "cpu");
    std::vector<std::vector<std::byte>> outs;
    auto r = FetchContiguous(keys, kSmall, gpu, outs, kSmall.Bytes() - 1);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    for (const auto& o : outs) {
      EXPECT_TRUE(std::all_of(o.begin(), o.end(), [](std::byte b) { return b == kPoison; }));
    }
    r = FetchContiguous(keys, kSmall, gpu, outs, kSmall.Bytes());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->decoded, 2u);
    EXPECT_TRUE(outs[1] == Reference(keys[1], kSmall));
  }
}

// Flips one byte of key `victim`'s container in the pool (after its Put, as a bad DIMM or a
// stray writer would) at `offset` from the container's start.
void Corrupt(Client& c, const Key128& key, size_t offset) {
  auto le = c.GetShm(kNs, key);
  ASSERT_TRUE(le.ok()) << le.status();
  ASSERT_LT(offset, le->bytes().size());
  auto* p = const_cast<std::byte*>(le->bytes().data()) + offset;
  *p = *p ^ std::byte{0x10};
}

TEST_F(GpuFetchTest, BytesFlippedInThePoolAreAMissNeverData) {
  for (bool gpu : {false, true}) {
    if (gpu && !HaveGpu()) continue;
    for (const char* codec : {"raw", "fp8", "quant-k4v4-g64", "drop-50+quant-k4v2-g64", "lowrank-r8"}) {
      for (bool in_header : {false, true}) {
        SCOPED_TRACE(absl::StrCat(gpu ? "gpu " : "cpu ", codec, in_header ? " header" : " payload"));
        auto keys = PutChunks(codec, kSmall, 5);
        auto info = client_->Lookup(kNs, keys);
        ASSERT_TRUE(info.ok());
        const size_t at = in_header ? 21 : info->entries[2].stored_bytes - 3;
        Corrupt(*client_, keys[2], at);
        std::vector<std::vector<std::byte>> outs;
        auto r = FetchContiguous(keys, kSmall, gpu, outs);
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_EQ(r->leased, 5u);
        EXPECT_EQ(r->decoded, 2u);
        EXPECT_TRUE(r->corrupt);
        EXPECT_TRUE(outs[1] == Reference(keys[1], kSmall));
        EXPECT_TRUE(std::all_of(outs[2].begin(), outs[2].end(), [](std::byte b) { return b == kPoison; }))
            << "the corrupt chunk's output was written";
        ASSERT_TRUE(client_->Delete(kNs, keys).ok());
      }
    }
  }
}

// StartGetToDevice returns before the device checks ran: pending() assumes the whole
// header-checked prefix, Wait() cuts it at the entry whose payload check failed (its output
// untouched), and a fetch destroyed unwaited still waits for its copies.
TEST_F(GpuOnlyFetchTest, StartedFetchCutsThePrefixAtTheDeviceCheck) {
  auto reg = PrepareDevice(*client_, /*wait=*/true);
  ASSERT_TRUE(reg.ok()) << reg.status();
  for (const char* codec : {"raw", "quant-k4v4-g64"}) {
    SCOPED_TRACE(codec);
    auto keys = PutChunks(codec, kSmall, 5);
    auto info = client_->Lookup(kNs, keys);
    ASSERT_TRUE(info.ok());
    Corrupt(*client_, keys[2], info->entries[2].stored_bytes - 3);
    DeviceOutput out;
    std::vector<std::unique_ptr<DeviceBuf>> dev;
    for (size_t i = 0; i < keys.size(); ++i) {
      dev.push_back(std::make_unique<DeviceBuf>(kSmall.Bytes()));
      dev.back()->Fill(kPoison);
      out.contiguous.push_back({dev.back()->p, kSmall.dtype, 0});
    }
    auto f = StartGetToDevice(*client_, kNs, keys, out, nullptr);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ((*f)->pending().decoded, reg->registered ? 5u : 2u);
    EXPECT_EQ((*f)->pending().leased, 5u);
    auto r = (*f)->Wait();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->decoded, 2u);
    EXPECT_TRUE(r->corrupt);
    auto again = (*f)->Wait();
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->decoded, 2u);
    ASSERT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
    EXPECT_TRUE(dev[1]->Read() == Reference(keys[1], kSmall));
    const auto bad = dev[2]->Read();
    EXPECT_TRUE(std::all_of(bad.begin(), bad.end(), [](std::byte b) { return b == kPoison; }))
        << "the corrupt chunk's output was written";

    dev[0]->Fill(kPoison);
    DeviceOutput two;
    two.contiguous = {out.contiguous[0], out.contiguous[1]};
    auto unwaited = StartGetToDevice(*client_, kNs, std::span(keys).first(2), two, nullptr);
    ASSERT_TRUE(unwaited.ok()) << unwaited.status();
    unwaited->reset();
    ASSERT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
    EXPECT_TRUE(dev[0]->Read() == Reference(keys[0], kSmall));
    ASSERT_TRUE(client_->Delete(kNs, keys).ok());
  }
}

TEST_F(GpuOnlyFetchTest, GpuMatchesCpuForEveryFamilyBeyondOneLaunch) {
  // 40 chunks: more than one decode launch (32 entries) and several pipeline groups.
  for (const char* codec : kCodecs) {
    SCOPED_TRACE(codec);
    const auto keys = PutChunks(codec, kSmall, 40);
    std::vector<std::vector<std::byte>> cpu, gpu;
    auto rc = FetchContiguous(keys, kSmall, false, cpu);
    auto rg = FetchContiguous(keys, kSmall, true, gpu);
    ASSERT_TRUE(rc.ok()) << rc.status();
    ASSERT_TRUE(rg.ok()) << rg.status();
    EXPECT_TRUE(rg->used_gpu);
    EXPECT_EQ(rg->decoded, 40u);
    EXPECT_FALSE(rg->corrupt);
    for (size_t i = 0; i < keys.size(); ++i) ASSERT_TRUE(gpu[i] == cpu[i]) << "chunk " << i;
    ASSERT_TRUE(client_->Delete(kNs, keys).ok());
  }
}

TEST_F(GpuOnlyFetchTest, BenchmarkShapeAfterRegistration) {
  auto reg = PrepareDevice(*client_, /*wait=*/true);
  ASSERT_TRUE(reg.ok()) << reg.status();
  EXPECT_TRUE(reg->done);
  std::printf("pool registration: %s, %.1f ms for %.0f MiB\n", reg->registered ? "registered" : "refused",
              reg->seconds * 1e3, reg->bytes / 1048576.0);
  for (const char* codec : {"raw", "fp8", "quant-k4v4-g64", "quant-k2v2-g64"}) {
    SCOPED_TRACE(codec);
    const auto keys = PutChunks(codec, kLlama, 4);
    std::vector<std::vector<std::byte>> gpu;
    auto r = FetchContiguous(keys, kLlama, true, gpu);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->decoded, keys.size());
    EXPECT_EQ(r->mapping_registered, reg->registered);
    for (size_t i = 0; i < keys.size(); ++i) ASSERT_TRUE(gpu[i] == Reference(keys[i], kLlama)) << "chunk " << i;
    ASSERT_TRUE(client_->Delete(kNs, keys).ok());
  }
}

// Paged output (vLLM layout): per-layer K and V caches of [blocks][16][heads][dim], tokens
// scattered over a random permutation of slots; GPU against the CPU fallback.
TEST_F(GpuOnlyFetchTest, PagedGpuMatchesCpu) {
  const KvShape s = kSmall;
  const uint32_t block = 16, chunks = 6;
  const uint64_t blocks = 2 * chunks * s.tokens / block;  // half the slots stay unused
  const uint64_t W = uint64_t{s.kv_heads} * s.head_dim;
  const size_t layer_bytes = blocks * block * W * 2;
  for (const char* codec : {"raw", "fp8", "quant-k4v4-g64", "drop-50", "drop-50+quant-k4v2-g64", "lowrank-r8"}) {
    SCOPED_TRACE(codec);
    const auto keys = PutChunks(codec, s, chunks);
    std::vector<int64_t> slots(blocks * block);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), std::mt19937_64(7));
    slots.resize(uint64_t{chunks} * s.tokens);
    // CPU: host caches and host slot mappings.
    std::vector<std::vector<std::byte>> hk(s.layers, std::vector<std::byte>(layer_bytes, kPoison)), hv = hk;
    std::vector<void*> hkp, hvp;
    for (uint32_t l = 0; l < s.layers; ++l) hkp.push_back(hk[l].data()), hvp.push_back(hv[l].data());
    DeviceOutput cpu;
    cpu.paged = true;
    cpu.cache = {hkp.data(), hvp.data(), s.layers, s.kv_heads, s.head_dim, block, blocks, 0, s.dtype, nullptr};
    for (uint32_t i = 0; i < chunks; ++i) cpu.slot_mappings.push_back(slots.data() + i * s.tokens);
    GetToDeviceOptions force;
    force.force_cpu = true;
    auto rc = GetToDevice(*client_, kNs, keys, cpu, nullptr, force);
    ASSERT_TRUE(rc.ok()) << rc.status();
    ASSERT_EQ(rc->decoded, chunks);
    // GPU: device caches, device arrays of layer pointers, device slot mappings.
    std::vector<std::unique_ptr<DeviceBuf>> dk, dv;
    std::vector<void*> dkp, dvp;
    for (uint32_t l = 0; l < s.layers; ++l) {
      dk.push_back(std::make_unique<DeviceBuf>(layer_bytes));
      dv.push_back(std::make_unique<DeviceBuf>(layer_bytes));
      dk.back()->Fill(kPoison), dv.back()->Fill(kPoison);
      dkp.push_back(dk.back()->p), dvp.push_back(dv.back()->p);
    }
    DeviceBuf kptrs(s.layers * sizeof(void*)), vptrs(s.layers * sizeof(void*)), dslots(slots.size() * 8);
    ASSERT_EQ(cudaMemcpy(kptrs.p, dkp.data(), kptrs.n, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(vptrs.p, dvp.data(), vptrs.n, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dslots.p, slots.data(), dslots.n, cudaMemcpyHostToDevice), cudaSuccess);
    DeviceOutput gpu;
    gpu.paged = true;
    gpu.cache = {static_cast<void* const*>(kptrs.p), static_cast<void* const*>(vptrs.p), s.layers, s.kv_heads,
                 s.head_dim, block, blocks, 0, s.dtype, nullptr};
    for (uint32_t i = 0; i < chunks; ++i) {
      gpu.slot_mappings.push_back(static_cast<const int64_t*>(dslots.p) + i * s.tokens);
    }
    auto rg = GetToDevice(*client_, kNs, keys, gpu, nullptr);
    ASSERT_TRUE(rg.ok()) << rg.status();
    ASSERT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
    EXPECT_EQ(rg->decoded, chunks);
    for (uint32_t l = 0; l < s.layers; ++l) {
      ASSERT_TRUE(dk[l]->Read() == hk[l]) << "K layer " << l;
      ASSERT_TRUE(dv[l]->Read() == hv[l]) << "V layer " << l;
    }
    ASSERT_TRUE(client_->Delete(kNs, keys).ok());
  }
}

}  // namespace
}  // namespace adaptcache::client
