// GPU decode benchmark (docs/cuda.md, bench/results/cuda_decode.md).
//
// Request: 16 chunks of a Llama-3.1-8B-shaped KV (32 layers, 256 tokens, 8 KV heads,
// head_dim 128, bf16; 32 MiB each, 512 MiB in all), random data with outlier channels.
// For every config:
//   decode   GB/s = (compressed bytes read + decoded bytes written) / kernel time, the
//            DecodeContiguous launches captured in a CUDA graph and replayed (events,
//            3 warm-ups, median of --reps), next to the device-to-device copy GB/s
//            (read + write) measured in the same run;
//   paged    the same into a vLLM-style paged cache (block 16) through a random slot map;
//   e2e      compressed bytes in pinned host memory -> decoded KV in the paged cache
//            (per-chunk H2D copy on one stream, decode on another, overlapped), against
//            one H2D copy of the uncompressed bf16 request;
//   host     the host-side validation of the 16 containers per request (parse, checks,
//            payload CRC), which GetToDevice pays once per Get.
// fp8 and quant containers are made by the GPU encoder (checked byte-identical to the
// CPU encoder on one chunk per config here), the others by the CPU encoder.
// Output: a table on stdout and CSV lines (prefix "csv,") for bench/scripts/60_cuda.sh.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/half.h"
#include "kernels/codec.h"
#include "kernels/cuda/decode.h"
#include "kernels/cuda/encode.h"

namespace ac = adaptcache;

namespace {

#define CK(x)                                                                           \
  do {                                                                                  \
    cudaError_t e_ = (x);                                                               \
    if (e_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

constexpr int kChunks = 16;
constexpr int kUnique = 4;  // distinct chunk contents (encoded once, stored 4 times each)

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times `body` (enqueues work on `s`) with events: 3 warm-ups, median of reps (ms).
template <class F>
double TimeMs(cudaStream_t s, int reps, F&& body) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) body();
  CK(cudaStreamSynchronize(s));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a, s));
    body();
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return Median(t);
}

// Random KV with per-channel offsets/scales and ~3% outlier channels (10-50x) in K.
std::vector<std::byte> MakeChunk(const ac::KvShape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01;
  std::uniform_real_distribution<float> u01;
  const uint32_t w = s.kv_heads * s.head_dim;
  std::vector<float> cs(w), co(w);
  for (uint32_t c = 0; c < w; ++c) {
    cs[c] = (0.5f + u01(rng)) * (u01(rng) < 0.03f ? 10.f + 40.f * u01(rng) : 1.f);
    co[c] = 0.3f * n01(rng);
  }
  std::vector<std::byte> out(s.Bytes());
  uint64_t i = 0;
  for (int kv = 0; kv < 2; ++kv) {
    for (uint32_t l = 0; l < s.layers; ++l) {
      for (uint32_t t = 0; t < s.tokens; ++t) {
        const float ts = 0.5f + u01(rng);
        for (uint32_t c = 0; c < w; ++c, ++i) {
          const float v = kv == 0 ? co[c] + cs[c] * (0.8f * std::sin(0.05f * t + c) + 0.3f * n01(rng))
                                  : ts * n01(rng);
          ac::StoreFromFloat(out.data(), s.dtype, i, v);
        }
      }
    }
  }
  return out;
}

struct Request {
  std::vector<std::vector<std::byte>> host;  // kChunks containers (host copies)
  std::vector<void*> dev;                    // device copies
  uint64_t bytes = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
  }
  if (!ac::cuda::CudaDeviceAvailable()) {
    std::printf("no CUDA device: cuda_decode_bench skipped\n");
    return 0;
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  std::printf("csv,device,%s\n", prop.name);
  cudaStream_t s0, s1;
  CK(cudaStreamCreateWithFlags(&s0, cudaStreamNonBlocking));
  CK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));

  const ac::KvShape shape{32, 256, 8, 128, ac::DType::kBF16};
  const uint64_t chunk_bytes = shape.Bytes();
  const uint64_t req_bytes = chunk_bytes * kChunks;

  // Raw chunks: kUnique distinct contents, on host and device.
  std::vector<std::vector<std::byte>> raw(kUnique);
  {
    std::vector<std::thread> th;
    for (int u = 0; u < kUnique; ++u) th.emplace_back([&, u] { raw[u] = MakeChunk(shape, 1234 + u); });
    for (auto& t : th) t.join();
  }
  std::vector<void*> draw(kUnique);
  for (int u = 0; u < kUnique; ++u) {
    CK(cudaMalloc(&draw[u], chunk_bytes));
    CK(cudaMemcpy(draw[u], raw[u].data(), chunk_bytes, cudaMemcpyHostToDevice));
  }

  // Device-to-device copy bandwidth (read + write), 1 GiB.
  void *ca, *cb;
  const size_t copy_bytes = 1ull << 30;
  CK(cudaMalloc(&ca, copy_bytes));
  CK(cudaMalloc(&cb, copy_bytes));
  CK(cudaMemset(ca, 1, copy_bytes));
  const double copy_ms = TimeMs(s0, reps, [&] { CK(cudaMemcpyAsync(cb, ca, copy_bytes, cudaMemcpyDeviceToDevice, s0)); });
  const double copy_gbs = 2.0 * copy_bytes / (copy_ms * 1e6);
  std::printf("D2D copy: %.1f GB/s (read+write)\n", copy_gbs);
  std::printf("csv,d2d_copy_gbs,%.1f\n", copy_gbs);
  CK(cudaFree(cb));

  // Outputs: contiguous request and paged cache (block 16, 2x the request's slots).
  void* dout;
  CK(cudaMalloc(&dout, req_bytes));
  const uint32_t W = shape.kv_heads * shape.head_dim, block = 16;
  const uint64_t num_blocks = 2ull * kChunks * shape.tokens / block;
  const uint64_t layer_bytes = num_blocks * block * W * 2;
  std::vector<void*> kl(shape.layers), vl(shape.layers);
  for (uint32_t l = 0; l < shape.layers; ++l) {
    CK(cudaMalloc(&kl[l], layer_bytes));
    CK(cudaMalloc(&vl[l], layer_bytes));
  }
  void **dkl, **dvl;
  CK(cudaMalloc(&dkl, 8 * shape.layers));
  CK(cudaMalloc(&dvl, 8 * shape.layers));
  CK(cudaMemcpy(dkl, kl.data(), 8 * shape.layers, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dvl, vl.data(), 8 * shape.layers, cudaMemcpyHostToDevice));
  std::vector<int64_t> blocks(num_blocks);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(7));
  std::vector<const int64_t*> slot_ptrs(kChunks);
  int64_t* dslots;
  CK(cudaMalloc(&dslots, 8ull * kChunks * shape.tokens));
  {
    std::vector<int64_t> slots(uint64_t{kChunks} * shape.tokens);
    for (uint64_t t = 0; t < slots.size(); ++t) slots[t] = blocks[t / block] * block + t % block;
    CK(cudaMemcpy(dslots, slots.data(), slots.size() * 8, cudaMemcpyHostToDevice));
    for (int c = 0; c < kChunks; ++c) slot_ptrs[c] = dslots + static_cast<uint64_t>(c) * shape.tokens;
  }
  ac::cuda::PagedCache cache;
  cache.k_layers = dkl;
  cache.v_layers = dvl;
  cache.layers = shape.layers;
  cache.kv_heads = shape.kv_heads;
  cache.head_dim = shape.head_dim;
  cache.block_size = block;
  cache.num_blocks = num_blocks;
  cache.dtype = shape.dtype;

  // Pinned host copy of the uncompressed request: the end-to-end baseline.
  void* pinned_raw;
  CK(cudaMallocHost(&pinned_raw, req_bytes));
  for (int c = 0; c < kChunks; ++c) std::memcpy(static_cast<char*>(pinned_raw) + c * chunk_bytes, raw[c % kUnique].data(), chunk_bytes);
  const double base_ms = TimeMs(s0, std::max(5, reps / 2), [&] {
    CK(cudaMemcpyAsync(dout, pinned_raw, req_bytes, cudaMemcpyHostToDevice, s0));
  });
  std::printf("H2D of the uncompressed request (%.0f MiB): %.2f ms (%.1f GB/s)\n", req_bytes / 1048576.0, base_ms,
              req_bytes / (base_ms * 1e6));
  std::printf("csv,h2d_raw_ms,%.3f\n", base_ms);

  std::printf("\n%-26s %7s %9s %9s %7s %9s %7s %9s %9s %8s %9s\n", "config", "ratio", "dec ms", "dec GB/s",
              "%copy", "paged GB/s", "%copy", "e2e ms", "speedup", "host ms", "enc GB/s");
  std::printf("csv,config,ratio,decode_ms,decode_gbs,decode_pct_copy,paged_ms,paged_gbs,paged_pct_copy,e2e_ms,"
              "e2e_speedup,host_validate_ms,gpu_encode_gbs\n");
  for (const ac::CodecConfig& cfg : ac::DefaultConfigSpace()) {
    const std::string name = cfg.Name();
    if (!only.empty()) {  // comma-separated exact names
      const std::string list = "," + only + ",";
      if (list.find("," + name + ",") == std::string::npos) continue;
    }
    const bool gpu_enc = cfg.family == ac::CodecId::kFp8 || cfg.family == ac::CodecId::kQuant;
    std::vector<std::vector<std::byte>> uniq(kUnique);
    double enc_gbs = 0;
    if (gpu_enc) {
      std::vector<double> t;
      for (int u = 0; u < kUnique; ++u) {
        uniq[u].resize(ac::MaxEncodedBytes(cfg, shape));
        const auto t0 = std::chrono::steady_clock::now();
        auto n = ac::cuda::EncodeOnDevice(cfg, shape, draw[u], uniq[u], s0);
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        if (!n.ok()) {
          std::fprintf(stderr, "%s: GPU encode: %s\n", name.c_str(), std::string(n.status().message()).c_str());
          return 1;
        }
        uniq[u].resize(*n);
      }
      enc_gbs = chunk_bytes / Median(t) / 1e9;  // includes copy back and host CRC
      auto cpu = ac::EncodeToVector(cfg, shape, raw[0]);
      if (!cpu.ok() || *cpu != uniq[0]) {
        std::fprintf(stderr, "%s: GPU encode differs from the CPU encoder\n", name.c_str());
        return 1;
      }
    } else {
      std::vector<std::thread> th;
      for (int u = 0; u < kUnique; ++u) {
        th.emplace_back([&, u] {
          auto c = ac::EncodeToVector(cfg, shape, raw[u]);
          if (c.ok()) uniq[u] = std::move(*c);
        });
      }
      for (auto& t : th) t.join();
      for (auto& u : uniq) {
        if (u.empty()) {
          std::fprintf(stderr, "%s: CPU encode failed\n", name.c_str());
          return 1;
        }
      }
    }
    // 16 containers, each its own device buffer, and one pinned host copy of all.
    Request rq;
    std::vector<uint64_t> off;
    for (int c = 0; c < kChunks; ++c) {
      rq.host.push_back(uniq[c % kUnique]);
      off.push_back(rq.bytes);
      rq.bytes += (rq.host.back().size() + 255) / 256 * 256;
    }
    char* dall;
    CK(cudaMalloc(&dall, rq.bytes));
    char* pinned;
    CK(cudaMallocHost(&pinned, rq.bytes));
    for (int c = 0; c < kChunks; ++c) {
      std::memcpy(pinned + off[c], rq.host[c].data(), rq.host[c].size());
      rq.dev.push_back(dall + off[c]);
    }
    CK(cudaMemcpy(dall, pinned, rq.bytes, cudaMemcpyHostToDevice));
    uint64_t comp = 0;
    std::vector<ac::cuda::DeviceContainer> in;
    std::vector<ac::cuda::ContiguousOut> outs;
    for (int c = 0; c < kChunks; ++c) {
      comp += rq.host[c].size();
      in.push_back({rq.host[c], rq.dev[c]});
      outs.push_back({static_cast<char*>(dout) + c * chunk_bytes, shape.dtype});
    }
    const double ratio = double(req_bytes) / comp;
    // Host validation per request (what a Get pays before launching).
    std::vector<double> ht;
    for (int i = 0; i < 5; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      auto st = ac::cuda::DecodeContiguous(in, outs, s0);
      ht.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      if (!st.ok()) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), std::string(st.message()).c_str());
        return 1;
      }
      CK(cudaStreamSynchronize(s0));
    }
    const double host_ms = Median(ht);
    // Kernel time: the launches captured once, replayed.
    auto capture = [&](auto&& enqueue) {
      cudaGraph_t g;
      cudaGraphExec_t ge;
      CK(cudaStreamBeginCapture(s0, cudaStreamCaptureModeThreadLocal));
      enqueue();
      CK(cudaStreamEndCapture(s0, &g));
      CK(cudaGraphInstantiate(&ge, g, 0));
      CK(cudaGraphDestroy(g));
      return ge;
    };
    ac::cuda::DecodeOptions no_crc;
    no_crc.verify_payload_crc = false;
    cudaGraphExec_t gc = capture([&] {
      if (!ac::cuda::DecodeContiguous(in, outs, s0, no_crc).ok()) std::exit(1);
    });
    const double dec_ms = TimeMs(s0, reps, [&] { CK(cudaGraphLaunch(gc, s0)); });
    cudaGraphExec_t gp = capture([&] {
      if (!ac::cuda::DecodePaged(in, slot_ptrs, cache, s0, no_crc).ok()) std::exit(1);
    });
    const double paged_ms = TimeMs(s0, reps, [&] { CK(cudaGraphLaunch(gp, s0)); });
    // End to end: per-chunk H2D on s0, decode of chunk c on s1 after its copy.
    std::vector<cudaEvent_t> ev(kChunks + 2);
    for (auto& e : ev) CK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    cudaGraphExec_t ge = capture([&] {
      CK(cudaEventRecord(ev[kChunks], s0));
      CK(cudaStreamWaitEvent(s1, ev[kChunks]));
      for (int c = 0; c < kChunks; ++c) {
        CK(cudaMemcpyAsync(rq.dev[c], pinned + off[c], rq.host[c].size(), cudaMemcpyHostToDevice, s0));
        CK(cudaEventRecord(ev[c], s0));
        CK(cudaStreamWaitEvent(s1, ev[c]));
        if (!ac::cuda::DecodePaged({&in[c], 1}, {&slot_ptrs[c], 1}, cache, s1, no_crc).ok()) std::exit(1);
      }
      CK(cudaEventRecord(ev[kChunks + 1], s1));
      CK(cudaStreamWaitEvent(s0, ev[kChunks + 1]));
    });
    const double e2e_ms = TimeMs(s0, std::max(5, reps / 2), [&] { CK(cudaGraphLaunch(ge, s0)); });
    const double moved = double(comp) + double(req_bytes);
    const double dec_gbs = moved / (dec_ms * 1e6), paged_gbs = moved / (paged_ms * 1e6);
    std::printf("%-26s %6.2fx %9.3f %9.1f %6.1f%% %9.1f %6.1f%% %9.2f %8.2fx %8.2f %9.2f\n", name.c_str(), ratio,
                dec_ms, dec_gbs, 100 * dec_gbs / copy_gbs, paged_gbs, 100 * paged_gbs / copy_gbs, e2e_ms,
                base_ms / e2e_ms, host_ms, enc_gbs);
    std::printf("csv,%s,%.3f,%.4f,%.1f,%.1f,%.4f,%.1f,%.1f,%.3f,%.2f,%.3f,%.2f\n", name.c_str(), ratio, dec_ms,
                dec_gbs, 100 * dec_gbs / copy_gbs, paged_ms, paged_gbs, 100 * paged_gbs / copy_gbs, e2e_ms,
                base_ms / e2e_ms, host_ms, enc_gbs);
    std::fflush(stdout);
    for (auto& e : ev) CK(cudaEventDestroy(e));
    CK(cudaGraphExecDestroy(gc));
    CK(cudaGraphExecDestroy(gp));
    CK(cudaGraphExecDestroy(ge));
    CK(cudaFree(dall));
    CK(cudaFreeHost(pinned));
  }
  return 0;
}
