// GPU decode benchmark (docs/cuda.md, bench/results/cuda_decode.md).
//
// Request: 16 chunks of a Llama-3.1-8B-shaped KV (32 layers, 256 tokens, 8 KV heads,
// head_dim 128, bf16; 32 MiB each, 512 MiB in all), random data with outlier channels.
// For every config:
//   decode   GB/s = (compressed bytes read + decoded bytes written) / kernel time, the
//            DecodeContiguous launches captured in a CUDA graph and replayed (events,
//            3 warm-ups, median of --reps), next to the device-to-device copy GB/s
//            (read + write) measured in the same run; drop writes zeros at dropped
//            tokens in contiguous mode, so all output bytes count there;
//   paged    the same into a vLLM-style paged cache (block 16) through a random slot map;
//            drop writes only the kept tokens there, so only their bytes count;
//   h2d+paged  compressed bytes in pinned host memory -> decoded KV in the paged cache
//            (per-chunk H2D copy on one stream, decode on another, overlapped), next to
//            one H2D copy of the uncompressed bf16 request. Kernels and copies only: no
//            validation, RPC or lease (bench/gpu_fetch_bench.cc measures GetToDevice);
//   host     the host-side validation of the 16 containers per request (parse, checks,
//            payload CRC), which a decode without device gates pays per call.
// Before any time is taken for a config, the GPU output (contiguous, paged, and paged
// again after the h2d+paged pipeline) is compared with the CPU Decode() of the same
// containers: bit for bit, or within 1 ulp where docs/cuda.md allows it (Hadamard,
// lowrank); a mismatch stops the benchmark.
// fp8 and quant containers are made by the GPU encoder (checked byte-identical to the
// CPU encoder on one chunk per config here), the others by the CPU encoder.
// Output: a table on stdout and CSV lines (prefix "csv,") for bench/scripts/60_cuda.sh.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/cuda_timing.h"
#include "common/half.h"
#include "kernels/codec.h"
#include "kernels/cuda/decode.h"
#include "kernels/cuda/encode.h"

namespace ac = adaptcache;

namespace {

using ac::bench::Median;

constexpr int kChunks = 16;
constexpr int kUnique = 4;  // distinct chunk contents (encoded once, stored 4 times each)

// Times `body` (enqueues work on `s`) with events: 3 warm-ups, median of reps (ms).
template <class F>
double TimeMs(cudaStream_t s, int reps, F&& body) {
  return ac::bench::EventMedianMs(s, 3, reps, body);
}

// Compares a GPU output with the CPU reference element by element (2-byte dtypes): exact,
// else counts 1-ulp and worse differences. Returns false on a difference not allowed.
struct Diff {
  uint64_t ulp1 = 0, worse = 0;
  uint64_t first = ~0ull;  // element index of the first difference
};
int32_t Ordered16(uint16_t v) { return (v & 0x8000) ? -int32_t(v & 0x7fff) : int32_t(v); }
void Compare16(const std::byte* got, const std::byte* want, uint64_t elems, uint64_t base, Diff& d) {
  if (std::memcmp(got, want, elems * 2) == 0) return;
  for (uint64_t i = 0; i < elems; ++i) {
    uint16_t g, w;
    std::memcpy(&g, got + 2 * i, 2);
    std::memcpy(&w, want + 2 * i, 2);
    if (g == w) continue;
    const bool nan = (g & 0x7fff) > 0x7f80 || (w & 0x7fff) > 0x7f80;  // bf16 NaN
    const int32_t dist = std::abs(Ordered16(g) - Ordered16(w));
    (dist == 1 && !nan ? d.ulp1 : d.worse)++;
    d.first = std::min(d.first, base + i);
  }
}
bool Report(const std::string& name, const char* what, const Diff& d, bool ulp1_ok) {
  if (d.worse == 0 && (d.ulp1 == 0 || ulp1_ok)) {
    if (d.ulp1 > 0) std::printf("note: %s %s: %llu elements 1 ulp off the CPU decoder (allowed)\n", name.c_str(), what,
                                static_cast<unsigned long long>(d.ulp1));
    return true;
  }
  std::fprintf(stderr, "%s: %s output differs from the CPU decoder: %llu elements off by > 1 ulp, %llu by 1 ulp "
               "(first at element %llu)\n", name.c_str(), what, static_cast<unsigned long long>(d.worse),
               static_cast<unsigned long long>(d.ulp1), static_cast<unsigned long long>(d.first));
  return false;
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
  std::vector<int64_t> slots(uint64_t{kChunks} * shape.tokens);
  for (uint64_t t = 0; t < slots.size(); ++t) slots[t] = blocks[t / block] * block + t % block;
  CK(cudaMemcpy(dslots, slots.data(), slots.size() * 8, cudaMemcpyHostToDevice));
  for (int c = 0; c < kChunks; ++c) slot_ptrs[c] = dslots + static_cast<uint64_t>(c) * shape.tokens;
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

  // Readback of the outputs for the checks against the CPU decoder (pinned: fast D2H).
  const uint64_t cache_bytes = 2ull * shape.layers * layer_bytes;
  std::byte* readback;
  CK(cudaMallocHost(&readback, std::max(req_bytes, cache_bytes)));
  constexpr int kPoison = 0xA5;  // written before each checked decode: stale output cannot pass
  auto poison_cache = [&] {
    for (uint32_t l = 0; l < shape.layers; ++l) {
      CK(cudaMemsetAsync(kl[l], kPoison, layer_bytes, s0));
      CK(cudaMemsetAsync(vl[l], kPoison, layer_bytes, s0));
    }
  };

  // Columns: the "h2d+paged" pair is kernels and copies only (see the top comment).
  std::printf("\n%-26s %7s %9s %9s %7s %9s %7s %10s %10s %8s %9s\n", "config", "ratio", "dec ms", "dec GB/s",
              "%copy", "paged GB/s", "%copy", "h2d+pg ms", "x raw H2D", "host ms", "enc GB/s");
  std::printf("csv,config,ratio,decode_ms,decode_gbs,decode_pct_copy,paged_ms,paged_gbs,paged_pct_copy,"
              "h2d_paged_ms,raw_h2d_over_h2d_paged,host_validate_ms,gpu_encode_gbs\n");
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
    // CPU reference of each distinct chunk, and the tokens a decode writes.
    std::vector<std::vector<std::byte>> ref(kUnique, std::vector<std::byte>(chunk_bytes));
    std::vector<std::vector<uint32_t>> kept(kUnique);
    {
      std::vector<absl::Status> st(kUnique);
      std::vector<std::thread> th;
      for (int u = 0; u < kUnique; ++u) {
        th.emplace_back([&, u] {
          st[u].Update(ac::Decode(uniq[u], ref[u]));
          auto k = ac::DecodeKeptTokens(uniq[u]);
          if (k.ok()) {
            kept[u] = std::move(*k);
          } else {
            st[u].Update(k.status());
          }
        });
      }
      for (auto& t : th) t.join();
      for (const auto& e : st) {
        if (!e.ok()) {
          std::fprintf(stderr, "%s: CPU decode: %s\n", name.c_str(), std::string(e.message()).c_str());
          return 1;
        }
      }
    }
    // Decoded bytes written: contiguous mode writes every token (zeros at dropped ones),
    // paged mode only the kept tokens.
    uint64_t paged_written = 0;
    for (int c = 0; c < kChunks; ++c) paged_written += kept[c % kUnique].size() * (chunk_bytes / shape.tokens);
    const bool ulp1_ok = cfg.family == ac::CodecId::kLowrank || cfg.hadamard;
    const uint64_t W2 = uint64_t{W} * 2;  // bytes of one token's row of one layer (bf16)
    auto check_contiguous = [&]() -> bool {
      CK(cudaMemcpyAsync(readback, dout, req_bytes, cudaMemcpyDeviceToHost, s0));
      CK(cudaStreamSynchronize(s0));
      Diff d;
      for (int c = 0; c < kChunks; ++c) {
        Compare16(readback + c * chunk_bytes, ref[c % kUnique].data(), chunk_bytes / 2, c * (chunk_bytes / 2), d);
      }
      return Report(name, "contiguous", d, ulp1_ok);
    };
    // Kept rows of every chunk at their slots; the other slots must still hold the poison.
    auto check_paged = [&](const char* what) -> bool {
      for (uint32_t l = 0; l < shape.layers; ++l) {
        CK(cudaMemcpyAsync(readback + (2ull * l) * layer_bytes, kl[l], layer_bytes, cudaMemcpyDeviceToHost, s0));
        CK(cudaMemcpyAsync(readback + (2ull * l + 1) * layer_bytes, vl[l], layer_bytes, cudaMemcpyDeviceToHost, s0));
      }
      CK(cudaStreamSynchronize(s0));
      Diff d;
      uint64_t written_rows = 0;
      for (int c = 0; c < kChunks; ++c) {
        const std::vector<std::byte>& want = ref[c % kUnique];
        for (uint32_t t : kept[c % kUnique]) {
          const uint64_t slot = slots[uint64_t(c) * shape.tokens + t];
          for (uint32_t kv = 0; kv < 2; ++kv) {
            for (uint32_t l = 0; l < shape.layers; ++l) {
              const uint64_t at = ((uint64_t(kv) * shape.layers + l) * shape.tokens + t) * W2;
              Compare16(readback + (2ull * l + kv) * layer_bytes + slot * W2, want.data() + at, W, at / 2, d);
              ++written_rows;
            }
          }
        }
      }
      // Slots of dropped tokens are untouched: count the poisoned rows left.
      uint64_t untouched = 0;
      std::vector<std::byte> poison_row(W2, std::byte{kPoison});
      for (uint64_t r = 0; r < cache_bytes / W2; ++r) untouched += !std::memcmp(readback + r * W2, poison_row.data(), W2);
      if (untouched != cache_bytes / W2 - written_rows) {
        std::fprintf(stderr, "%s: %s: %llu cache rows written outside the kept tokens' slots\n", name.c_str(), what,
                     static_cast<unsigned long long>(cache_bytes / W2 - written_rows - untouched));
        return false;
      }
      return Report(name, what, d, ulp1_ok);
    };
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
    // The last validated decode above wrote dout: check it, then a paged decode.
    CK(cudaMemsetAsync(dout, kPoison, req_bytes, s0));
    if (!ac::cuda::DecodeContiguous(in, outs, s0).ok() || !check_contiguous()) return 1;
    poison_cache();
    if (!ac::cuda::DecodePaged(in, slot_ptrs, cache, s0).ok() || !check_paged("paged")) return 1;
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
    // h2d+paged: per-chunk H2D on s0, decode of chunk c on s1 after its copy.
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
    const double pipe_ms = TimeMs(s0, std::max(5, reps / 2), [&] { CK(cudaGraphLaunch(ge, s0)); });
    // The pipeline's own output (copies included), checked before anything is reported.
    CK(cudaMemsetAsync(dall, kPoison, rq.bytes, s0));
    poison_cache();
    CK(cudaGraphLaunch(ge, s0));
    if (!check_paged("h2d+paged")) return 1;
    const double dec_gbs = (double(comp) + double(req_bytes)) / (dec_ms * 1e6);
    const double paged_gbs = (double(comp) + double(paged_written)) / (paged_ms * 1e6);
    std::printf("%-26s %6.2fx %9.3f %9.1f %6.1f%% %9.1f %6.1f%% %10.2f %9.2fx %8.2f %9.2f\n", name.c_str(), ratio,
                dec_ms, dec_gbs, 100 * dec_gbs / copy_gbs, paged_gbs, 100 * paged_gbs / copy_gbs, pipe_ms,
                base_ms / pipe_ms, host_ms, enc_gbs);
    std::printf("csv,%s,%.3f,%.4f,%.1f,%.1f,%.4f,%.1f,%.1f,%.3f,%.2f,%.3f,%.2f\n", name.c_str(), ratio, dec_ms,
                dec_gbs, 100 * dec_gbs / copy_gbs, paged_ms, paged_gbs, 100 * paged_gbs / copy_gbs, pipe_ms,
                base_ms / pipe_ms, host_ms, enc_gbs);
    std::fflush(stdout);
    for (auto& e : ev) CK(cudaEventDestroy(e));
    CK(cudaGraphExecDestroy(gc));
    CK(cudaGraphExecDestroy(gp));
    CK(cudaGraphExecDestroy(ge));
    CK(cudaFree(dall));
    CK(cudaFreeHost(pinned));
  }
  CK(cudaFreeHost(readback));
  return 0;
}
