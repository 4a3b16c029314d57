// GPU fetch benchmark: GetToDevice (client/get_to_device.h) against a running adaptcached,
// end to end, next to the limit the hardware sets (docs/cuda.md "GetToDevice").
//
// Per codec (default raw, fp8, quant-k4v4-g64, quant-k2v2-g64) it Puts 64 chunks of the
// Llama-3.1-8B shape (32 layers x 256 tokens x 8 KV heads x 128, bf16: 32 MiB raw a chunk;
// random normal values, different per chunk) with PutShm, then for a request of the first
// N chunks (N in --chunks, default 1,4,16,64):
//   fetch  wall time of GetToDevice into preallocated device buffers (contiguous, bf16)
//          up to cudaStreamSynchronize: RPC, leases, checks, copies and decode included;
//          median and p90 of --reps after 2 warm-up calls (the first is reported too);
//   limit  a pinned cudaMemcpyAsync H2D of the same stored bytes (one copy) plus the
//          decode kernels alone (cuda::DecodeContiguous over device copies, replayed from
//          a CUDA graph), CUDA events, medians; limit = copy + decode.
// Before any time is reported, GetToDevice's output of every chunk is compared byte for
// byte with the CPU Decode() of the same container (fetched with GetShmInto); a mismatch
// stops the benchmark with exit status 1. The very first GetToDevice of the process
// (cold: pool mapping, registration start, device memory pool) is timed on its own.
//
// Writes <results-dir>/gpu_fetch.csv (rows of source "cpp" replaced, other sources' rows
// kept) and the gpu_fetch_bench section of <results-dir>/gpu_fetch.md.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "bench/cuda_timing.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "client/get_to_device.h"
#include "common/half.h"
#include "kernels/codec.h"
#include "kernels/cuda/decode.h"

namespace ac = adaptcache;
namespace acc = adaptcache::client;

namespace {

using adaptcache::bench::Median;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "gpu_fetch_bench: %s\n", msg.c_str());
  std::exit(1);
}

constexpr char kUsage[] = R"(Usage: gpu_fetch_bench --target SOCKET [options]
GetToDevice end to end against a running adaptcached, next to the H2D copy + decode limit.

  --target ADDR       daemon: socket path, unix:///path or host:port (default $ADAPTCACHE_TARGET)
  --codecs A,B,...    codec configs (default raw,fp8,quant-k4v4-g64,quant-k2v2-g64)
  --chunks N,M,...    request sizes in chunks of 32 MiB raw (default 1,4,16,64)
  --reps N            timed calls per point, after 2 warm-ups (default 10)
  --lease-ms N        lease length asked for (default 0: the daemon's)
  --results-dir DIR   where gpu_fetch.csv / gpu_fetch.md go (default bench/results)
  --commit TEXT       git commit recorded in gpu_fetch.md (default: unknown)
  --commit-file FILE  read the commit from FILE (e.g. .devcarry/COMMIT)
  --no-write          print only, leave the results files alone
The daemon needs a DRAM pool of ~2.5x the largest request (64 chunks: 2 GiB raw; 6 GiB
is plenty) and --max-entry-bytes >= 32MiB. Entries are deleted after each codec.
Every point's output is checked byte for byte against the CPU decoder before it is
reported; a mismatch exits with status 1.
)";

struct Args {
  std::string target;
  std::vector<std::string> codecs = {"raw", "fp8", "quant-k4v4-g64", "quant-k2v2-g64"};
  std::vector<uint32_t> chunks = {1, 4, 16, 64};
  int reps = 10;
  uint32_t lease_ms = 0;
  std::string results_dir = "bench/results";
  std::string commit = "unknown";
  bool write = true;
  std::string command;
};

Args ParseArgs(int argc, char** argv) {
  Args a;
  if (const char* t = std::getenv("ADAPTCACHE_TARGET")) a.target = t;
  a.command = argv[0];
  for (int i = 1; i < argc; ++i) a.command += std::string(" ") + argv[i];
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) Die(absl::StrCat(argv[i], " needs a value\n", kUsage));
    return argv[++i];
  };
  auto uint_of = [](const std::string& flag, const std::string& v) {
    uint32_t n;
    if (!absl::SimpleAtoi(v, &n)) Die(absl::StrCat(flag, ": not a number: '", v, "'"));
    return n;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (f == "--target") {
      a.target = value(i);
    } else if (f == "--codecs") {
      a.codecs = absl::StrSplit(value(i), ',', absl::SkipEmpty());
    } else if (f == "--chunks") {
      a.chunks.clear();
      for (const auto& s : absl::StrSplit(value(i), ',', absl::SkipEmpty())) {
        const uint32_t n = uint_of(f, std::string(s));
        if (n == 0 || n > 1024) Die("--chunks: each size must be in 1..1024");
        a.chunks.push_back(n);
      }
      std::sort(a.chunks.begin(), a.chunks.end());
      a.chunks.erase(std::unique(a.chunks.begin(), a.chunks.end()), a.chunks.end());
    } else if (f == "--reps") {
      a.reps = static_cast<int>(uint_of(f, value(i)));
    } else if (f == "--lease-ms") {
      a.lease_ms = uint_of(f, value(i));
    } else if (f == "--results-dir") {
      a.results_dir = value(i);
    } else if (f == "--commit") {
      a.commit = value(i);
    } else if (f == "--commit-file") {
      const std::string path = value(i);
      std::ifstream in(path);
      if (!in || !std::getline(in, a.commit)) Die("cannot read a commit from " + path);
    } else if (f == "--no-write") {
      a.write = false;
    } else {
      Die(absl::StrCat("unknown argument '", f, "'\n", kUsage));
    }
  }
  if (a.target.empty()) Die(absl::StrCat("--target is required\n", kUsage));
  if (a.codecs.empty() || a.chunks.empty()) Die("--codecs and --chunks need at least one value");
  if (a.reps < 1) Die("--reps must be >= 1");
  for (auto& c : a.codecs) {  // canonical names: the daemon reports them so
    auto cfg = ac::ParseCodecConfig(c);
    if (!cfg.ok()) Die(absl::StrCat("--codecs: ", c, ": ", cfg.status().message()));
    c = cfg->Name();
  }
  return a;
}

double P90(std::vector<double> v) {  // nearest rank
  std::sort(v.begin(), v.end());
  return v[std::max<size_t>(1, static_cast<size_t>(std::ceil(0.9 * v.size()))) - 1];
}

double NowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Fills `out` with bf16 standard normal values (Box-Muller over splitmix64): a chunk's
// values depend only on `seed`.
void FillNormalBf16(std::span<std::byte> out, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&s] {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  const uint64_t n = out.size() / 2;
  for (uint64_t i = 0; i < n; i += 2) {
    const uint64_t r = next();
    const float u1 = (static_cast<float>(r >> 40) + 1.0f) * (1.0f / 16777217.0f);  // (0, 1]
    const float u2 = static_cast<float>((r >> 16) & 0xffffff) * (1.0f / 16777216.0f);
    const float rad = std::sqrt(-2.0f * std::log(u1));
    ac::StoreFromFloat(out.data(), ac::DType::kBF16, i, rad * std::cos(6.2831853f * u2));
    if (i + 1 < n) ac::StoreFromFloat(out.data(), ac::DType::kBF16, i + 1, rad * std::sin(6.2831853f * u2));
  }
}

// Runs body(i) for i in [0, n) on up to `threads` threads; returns the first error.
absl::Status ParallelFor(size_t n, unsigned threads, const std::function<absl::Status(size_t)>& body) {
  std::vector<absl::Status> st(n);
  std::atomic<size_t> next{0};
  std::vector<std::thread> th;
  for (unsigned t = 0; t < std::max(1u, threads); ++t) {
    th.emplace_back([&] {
      for (size_t i; (i = next++) < n;) st[i] = body(i);
    });
  }
  for (auto& t : th) t.join();
  for (auto& s : st) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Times `body` (enqueues work on `s`) with CUDA events: 2 warm-ups, median of reps (ms).
template <class F>
double EventMs(cudaStream_t s, int reps, F&& body) {
  return adaptcache::bench::EventMedianMs(s, 2, std::max(reps, 5), body);
}

struct Row {
  std::string codec;
  double ratio = 0;
  uint32_t chunks = 0;
  double first_ms = 0, fetch_ms = 0, p90_ms = 0;
  double copy_ms = 0, decode_ms = 0, limit_ms = 0;
  double target_ms = 0;  // the issue's target for this point
  bool dma = false;      // GetToDevice's copies were DMAs from the registered mapping
};

std::string FirstLineOf(const std::string& path, const std::string& prefix) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return line;
  }
  return "";
}

// "NVIDIA H100 80GB HBM3, driver 580.159.04 (CUDA 13.0)", "<CPU model> (N threads)".
std::pair<std::string, std::string> Machine() {
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  int drv = 0;
  cudaDriverGetVersion(&drv);
  std::string gpu = absl::StrCat(prop.name, ", CUDA driver API ", drv / 1000, ".", (drv % 1000) / 10);
  // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  <date>"
  const std::string nvrm = FirstLineOf("/proc/driver/nvidia/version", "NVRM version:");
  if (auto p = nvrm.find("Module"); p != std::string::npos) {
    std::istringstream is(nvrm.substr(p + 6));
    std::string v;
    if (is >> v) gpu = absl::StrCat(prop.name, ", driver ", v, " (CUDA ", drv / 1000, ".", (drv % 1000) / 10, ")");
  }
  std::string cpu = FirstLineOf("/proc/cpuinfo", "model name");
  if (auto p = cpu.find(':'); p != std::string::npos) cpu = cpu.substr(p + 2);
  if (cpu.empty()) cpu = "unknown CPU";
  return {gpu, absl::StrCat(cpu, " (", std::thread::hardware_concurrency(), " threads)")};
}

std::string UtcNow() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

void WriteAtomically(const std::filesystem::path& path, const std::string& text) {
  const auto tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out) Die("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

// gpu_fetch.csv is shared with bench/gpu_fetch.py: replace only the rows of source cpp.
void WriteCsv(const std::filesystem::path& path, const std::vector<Row>& rows) {
  constexpr char kHeader[] = "source,chunks,codec,ratio,fetch_ms,limit_ms";
  std::string text = std::string(kHeader) + "\n";
  if (std::ifstream in(path); in) {
    std::string line;
    bool first = true;
    while (std::getline(in, line)) {
      if (first && line != kHeader) Die(path.string() + ": unexpected header '" + line + "'");
      if (!first && !line.empty() && line.rfind("cpp,", 0) != 0) text += line + "\n";
      first = false;
    }
  }
  for (const Row& r : rows) {
    absl::StrAppend(&text, "cpp,", r.chunks, ",", r.codec, ",", absl::StrFormat("%.3f,%.3f,%.3f", r.ratio, r.fetch_ms, r.limit_ms),
                    "\n");
  }
  WriteAtomically(path, text);
}

// Replaces this benchmark's section of gpu_fetch.md (between its markers), keeping the rest.
void WriteMd(const std::filesystem::path& path, const std::string& section) {
  constexpr char kBegin[] = "<!-- gpu_fetch_bench:begin -->";
  constexpr char kEnd[] = "<!-- gpu_fetch_bench:end -->";
  std::string old;
  if (std::ifstream in(path); in) old.assign(std::istreambuf_iterator<char>(in), {});
  const std::string block = absl::StrCat(kBegin, "\n", section, kEnd, "\n");
  const size_t b = old.find(kBegin), e = old.find(kEnd);
  std::string text;
  if (b != std::string::npos && e != std::string::npos && e > b) {
    text = old.substr(0, b) + block + old.substr(std::min(old.size(), e + std::strlen(kEnd) + 1));
  } else if (!old.empty()) {
    text = old + (old.back() == '\n' ? "\n" : "\n\n") + block;
  } else {
    text = "# GPU fetch benchmark\n\n" + block;
  }
  WriteAtomically(path, text);
}

// Device memory freed on scope exit.
struct DeviceBuf {
  void* p = nullptr;
  explicit DeviceBuf(size_t n) { CK(cudaMalloc(&p, n)); }
  ~DeviceBuf() { cudaFree(p); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;
};
struct PinnedBuf {
  std::byte* p = nullptr;
  explicit PinnedBuf(size_t n) { CK(cudaMallocHost(&p, std::max<size_t>(n, 1))); }
  ~PinnedBuf() { cudaFreeHost(p); }
  PinnedBuf(const PinnedBuf&) = delete;
  PinnedBuf& operator=(const PinnedBuf&) = delete;
};

}  // namespace

int main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  if (!ac::cuda::CudaDeviceAvailable()) {
    std::printf("no CUDA device: gpu_fetch_bench skipped\n");
    return 0;
  }
  const auto [gpu, cpu] = Machine();
  std::printf("gpu: %s\ncpu: %s\ndaemon: %s\n", gpu.c_str(), cpu.c_str(), args.target.c_str());
  auto client_or = acc::Client::Connect(args.target);
  if (!client_or.ok()) Die(absl::StrCat("cannot connect to ", args.target, ": ", client_or.status().ToString()));
  acc::Client& client = **client_or;

  const ac::KvShape shape{32, 256, 8, 128, ac::DType::kBF16};
  const uint64_t chunk_bytes = shape.Bytes();
  const uint32_t max_chunks = args.chunks.back();
  const unsigned threads = std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  // Outputs of the largest request, preallocated once; a staging buffer for the checks.
  std::vector<std::unique_ptr<DeviceBuf>> outs;
  for (uint32_t i = 0; i < max_chunks; ++i) outs.push_back(std::make_unique<DeviceBuf>(chunk_bytes));
  PinnedBuf readback(chunk_bytes);

  std::vector<Row> rows;
  bool cold_done = false;
  double cold_ms = 0;
  std::string cold_what;
  acc::DeviceRegistration reg;
  for (const std::string& codec : args.codecs) {
    const std::string ns = "bench/gpu-fetch/" + codec;
    std::vector<ac::Key128> keys;
    for (uint32_t i = 0; i < max_chunks; ++i) keys.push_back({std::hash<std::string>{}(codec), 0xfe7c0000ull + i});
    (void)client.Delete(ns, keys);  // leftovers of an interrupted run

    // Put: random values written straight into the pool, several chunks at a time.
    std::printf("\n%s: putting %u chunks (%.0f MiB raw)...\n", codec.c_str(), max_chunks,
                max_chunks * chunk_bytes / 1048576.0);
    std::fflush(stdout);
    double t0 = NowMs();
    absl::Status st = ParallelFor(max_chunks, threads, [&](size_t i) -> absl::Status {
      acc::PutSpec spec;
      spec.ns = ns;
      spec.key = keys[i];
      spec.shape = shape;
      spec.codec = codec;
      auto r = client.PutShm(spec, [&](std::span<std::byte> raw) {
        FillNormalBf16(raw, std::hash<std::string>{}(codec) ^ (i * 7919 + 1));
        return absl::OkStatus();
      });
      if (!r.ok()) return absl::Status(r.status().code(), absl::StrCat("Put of chunk ", i, ": ", r.status().message()));
      if (r->codec != codec) return absl::InternalError(absl::StrCat("chunk ", i, " stored as ", r->codec));
      return absl::OkStatus();
    });
    if (!st.ok()) Die(absl::StrCat(codec, ": ", st.ToString()));
    std::printf("  put in %.1f s\n", (NowMs() - t0) / 1000);

    // The stored containers (for the CPU reference and the limit), via the shm path.
    auto lookup = client.Lookup(ns, keys);
    if (!lookup.ok()) Die(absl::StrCat(codec, ": Lookup: ", lookup.status().ToString()));
    if (lookup->prefix_hits != max_chunks) {
      Die(absl::StrCat(codec, ": only ", lookup->prefix_hits, " of ", max_chunks,
                       " chunks are stored (DRAM pool too small? give the daemon --pool-size 6GiB)"));
    }
    std::vector<std::vector<std::byte>> containers(max_chunks);
    std::vector<std::vector<std::byte>> ref(max_chunks);
    t0 = NowMs();
    st = ParallelFor(max_chunks, threads, [&](size_t i) -> absl::Status {
      containers[i].resize(lookup->entries[i].stored_bytes);
      auto info = client.GetShmInto(ns, keys[i], containers[i]);
      if (!info.ok()) return absl::Status(info.status().code(), absl::StrCat("GetShmInto of chunk ", i, ": ", info.status().message()));
      containers[i].resize(info->stored_bytes);
      ref[i].resize(chunk_bytes);
      if (absl::Status d = ac::Decode(containers[i], ref[i]); !d.ok()) {
        return absl::Status(d.code(), absl::StrCat("CPU decode of chunk ", i, ": ", d.message()));
      }
      return absl::OkStatus();
    });
    if (!st.ok()) Die(absl::StrCat(codec, ": ", st.ToString()));
    std::printf("  fetched and CPU-decoded the references in %.1f s\n", (NowMs() - t0) / 1000);

    // Containers packed (256-byte aligned) in pinned memory, and their device copy.
    std::vector<uint64_t> off(max_chunks + 1, 0);
    for (uint32_t i = 0; i < max_chunks; ++i) off[i + 1] = off[i] + (containers[i].size() + 255) / 256 * 256;
    PinnedBuf pinned(off[max_chunks]);
    for (uint32_t i = 0; i < max_chunks; ++i) std::memcpy(pinned.p + off[i], containers[i].data(), containers[i].size());
    DeviceBuf dall(off[max_chunks]);
    CK(cudaMemcpy(dall.p, pinned.p, off[max_chunks], cudaMemcpyHostToDevice));

    for (const uint32_t n : args.chunks) {
      std::printf("  %u chunk%s: ", n, n == 1 ? "" : "s");
      std::fflush(stdout);
      const std::span<const ac::Key128> req(keys.data(), n);
      acc::DeviceOutput out;
      for (uint32_t i = 0; i < n; ++i) out.contiguous.push_back({outs[i]->p, shape.dtype});
      acc::GetToDeviceOptions opts;
      opts.lease_ms = args.lease_ms;
      bool dma = false;
      auto fetch = [&]() -> double {
        const double a = NowMs();
        auto r = acc::GetToDevice(client, ns, req, out, stream, opts);
        CK(cudaStreamSynchronize(stream));
        const double ms = NowMs() - a;
        if (!r.ok()) Die(absl::StrCat(codec, " x", n, ": GetToDevice: ", r.status().ToString()));
        if (r->decoded != n || r->corrupt || !r->used_gpu) {
          Die(absl::StrCat(codec, " x", n, ": GetToDevice decoded ", r->decoded, " of ", n, " chunks (leased ",
                           r->leased, ", corrupt ", r->corrupt, ", used_gpu ", r->used_gpu, ")"));
        }
        dma = r->mapping_registered;
        return ms;
      };
      const double first_ms = fetch();
      if (!cold_done) {
        // The process's first call: mapping, registration start, device memory pool.
        cold_done = true;
        cold_ms = first_ms;
        cold_what = absl::StrCat(codec, ", ", n, " chunk", n == 1 ? "" : "s", dma ? ", DMA from the mapping" : ", staged");
        auto r = acc::PrepareDevice(client, /*wait=*/true);  // timed calls then all see one path
        if (r.ok()) reg = *r;
      }
      (void)fetch();  // second warm-up

      // The output of a fresh call, chunk by chunk, against the CPU decoder.
      for (uint32_t i = 0; i < n; ++i) CK(cudaMemsetAsync(outs[i]->p, 0xA5, chunk_bytes, stream));
      (void)fetch();
      for (uint32_t i = 0; i < n; ++i) {
        CK(cudaMemcpy(readback.p, outs[i]->p, chunk_bytes, cudaMemcpyDeviceToHost));
        if (std::memcmp(readback.p, ref[i].data(), chunk_bytes) != 0) {
          uint64_t bad = 0, first = ~0ull;
          for (uint64_t b = 0; b < chunk_bytes; ++b) {
            if (readback.p[b] != ref[i][b]) first = std::min(first, b), ++bad;
          }
          Die(absl::StrCat("MISMATCH: ", codec, " x", n, ": chunk ", i, " from GetToDevice differs from the CPU decoder in ",
                           bad, " bytes (first at byte ", first, ")"));
        }
      }

      std::vector<double> t;
      for (int r = 0; r < args.reps; ++r) t.push_back(fetch());

      // The limit: one pinned H2D copy of the N containers, then the decode kernels alone.
      const double copy_ms = EventMs(stream, args.reps, [&] {
        CK(cudaMemcpyAsync(dall.p, pinned.p, off[n], cudaMemcpyHostToDevice, stream));
      });
      std::vector<ac::cuda::DeviceContainer> in;
      std::vector<ac::cuda::ContiguousOut> couts;
      for (uint32_t i = 0; i < n; ++i) {
        in.push_back({containers[i], static_cast<std::byte*>(dall.p) + off[i]});
        couts.push_back({outs[i]->p, shape.dtype});
      }
      ac::cuda::DecodeOptions no_crc;
      no_crc.verify_payload_crc = false;  // host work is not in a graph's time anyway
      cudaGraph_t g;
      cudaGraphExec_t ge;
      CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      const absl::Status ds = ac::cuda::DecodeContiguous(in, couts, stream, no_crc);
      CK(cudaStreamEndCapture(stream, &g));
      if (!ds.ok()) Die(absl::StrCat(codec, " x", n, ": DecodeContiguous: ", ds.ToString()));
      CK(cudaGraphInstantiate(&ge, g, 0));
      CK(cudaGraphDestroy(g));
      const double decode_ms = EventMs(stream, args.reps, [&] { CK(cudaGraphLaunch(ge, stream)); });
      CK(cudaGraphExecDestroy(ge));

      Row row;
      row.codec = codec;
      uint64_t stored = 0;
      for (uint32_t i = 0; i < n; ++i) stored += containers[i].size();
      row.ratio = double(n) * chunk_bytes / stored;
      row.chunks = n;
      row.first_ms = first_ms;
      row.fetch_ms = Median(t);
      row.p90_ms = P90(t);
      row.copy_ms = copy_ms;
      row.decode_ms = decode_ms;
      row.limit_ms = copy_ms + decode_ms;
      row.target_ms = codec == "raw" ? 1.15 * copy_ms : 1.3 * (copy_ms + decode_ms);
      row.dma = dma;
      rows.push_back(row);
      std::printf("checked; fetch %.2f ms (p90 %.2f), limit %.2f ms = copy %.2f + decode %.3f\n", row.fetch_ms,
                  row.p90_ms, row.limit_ms, copy_ms, decode_ms);
    }
    if (auto d = client.Delete(ns, keys); !d.ok()) std::printf("  note: Delete: %s\n", d.status().ToString().c_str());
    (void)client.FlushReleases();
  }

  // The table, then the files.
  std::string table =
      "| codec | ratio | chunks | first ms | fetch ms | p90 ms | copy ms | decode ms | limit ms | fetch/limit | "
      "target ms | met | DMA |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n";
  for (const Row& r : rows) {
    absl::StrAppend(&table, absl::StrFormat("| %s | %.2fx | %u | %.2f | %.2f | %.2f | %.2f | %.3f | %.2f | %.2fx | %.2f | %s | %s |\n",
                                            r.codec, r.ratio, r.chunks, r.first_ms, r.fetch_ms, r.p90_ms, r.copy_ms,
                                            r.decode_ms, r.limit_ms, r.fetch_ms / r.limit_ms, r.target_ms,
                                            r.fetch_ms <= r.target_ms ? "yes" : "**no**", r.dma ? "yes" : "no"));
  }
  const std::string reg_text =
      reg.done ? absl::StrFormat("%s, %.0f ms for %.1f GiB", reg.registered ? "registered" : "refused (staged copies)",
                                 reg.seconds * 1e3, reg.bytes / 1073741824.0)
               : "not finished";
  std::printf("\ncold first call: %.2f ms (%s); pool registration: %s\n\n%s", cold_ms, cold_what.c_str(),
              reg_text.c_str(), table.c_str());
  if (!args.write) return 0;

  const std::string section = absl::StrCat(
      "## C++ client (bench/gpu_fetch_bench.cc)\n\n",
      "- date: ", UtcNow(), "\n- gpu: ", gpu, "\n- cpu: ", cpu, "\n- commit: ", args.commit,
      "\n- command: `", args.command, "`\n",
      "- request: N chunks x (32 layers, 256 tokens, 8 KV heads, head_dim 128, bf16) = 32 MiB raw a chunk, "
      "random normal values; contiguous bf16 device outputs\n",
      absl::StrFormat("- cold first call of the process: %.2f ms (%s); pool registration (cudaHostRegister, "
                      "background): %s\n\n",
                      cold_ms, cold_what, reg_text),
      "fetch = GetToDevice from the call to cudaStreamSynchronize (LeasePrefix RPC, header checks, copies, GPU "
      "CRC, decode, lease release queued), median and p90 of ", args.reps,
      " calls after 2 warm-ups; first = the first call of that point. copy = one pinned cudaMemcpyAsync H2D of "
      "the same stored bytes, decode = the decode kernels alone (CUDA graph), CUDA events, medians; limit = copy + "
      "decode. Target (the issue's): raw within 1.15x of the copy, compressed within 1.3x of copy + decode. DMA = "
      "the calls copied straight from the registered pool mapping. Every point's output was checked byte for byte "
      "against the CPU decoder before it was timed.\n\n",
      table);
  std::filesystem::create_directories(args.results_dir);
  WriteCsv(std::filesystem::path(args.results_dir) / "gpu_fetch.csv", rows);
  WriteMd(std::filesystem::path(args.results_dir) / "gpu_fetch.md", section);
  std::printf("\nwrote %s/gpu_fetch.csv (source cpp) and %s/gpu_fetch.md\n", args.results_dir.c_str(),
              args.results_dir.c_str());
  return 0;
}
