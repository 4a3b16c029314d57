// SSD tier benchmark (run by bench/scripts/30_ssd.sh, which adds fio on the same
// directory and writes bench/results/ssd.md).
//
//   ssd_bench tier    --dir D --entry-bytes E --total-bytes T --qd Q
//   ssd_bench blobdb  --dir D --entry-bytes E --total-bytes T --qd Q
//   ssd_bench restart --dir D --entries N --entry-bytes E
//
// Each prints one line of key=value pairs. Throughput counts container bytes stored (or
// read back), from the first request to the last acknowledgment (writes include the
// final fdatasync / WAL sync). disk_per_byte is /proc/self/io write_bytes (what this
// process sent to the block layer, including RocksDB's background threads) divided by
// the bytes stored.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kernels/container.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "storage/ssd_format.h"
#include "storage/ssd_tier.h"
#include "tests/storage/ssd_test_util.h"

namespace ac = adaptcache;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string mode, dir;
  uint64_t entry_bytes = 1 << 20;
  uint64_t total_bytes = 1ull << 30;
  uint64_t entries = 0;
  uint32_t qd = 16;
};

bool ParseArgs(int argc, char** argv, Args* a) {
  if (argc < 2) return false;
  a->mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir") a->dir = v;
    else if (k == "--entry-bytes") a->entry_bytes = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--total-bytes") a->total_bytes = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--entries") a->entries = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--qd") a->qd = static_cast<uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
    else return false;
  }
  return !a->dir.empty() && a->entry_bytes >= 256 && a->qd > 0;
}

uint64_t ProcWriteBytes() {
  std::ifstream f("/proc/self/io");
  std::string k;
  uint64_t v;
  while (f >> k >> v)
    if (k == "write_bytes:") return v;
  return 0;
}

double Secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

int Fail(const std::string& what) {
  std::fprintf(stderr, "ssd_bench: FAILED: %s\n", what.c_str());
  return 1;
}

// A container of exactly `total` bytes (raw codec, one section), content from `seed`.
std::vector<std::byte> Container(uint64_t seed, uint64_t total) {
  return ac::testing::MakeContainer(seed, total - sizeof(ac::ContainerHeader) - sizeof(ac::SectionEntry));
}

ac::EntryKey KeyOf(uint64_t i) { return ac::EntryKey{1, ac::Key128{i * 0x9e3779b97f4a7c15ull, i}}; }

// Counts outstanding async operations and lets the issuer wait for a free slot.
class Window {
 public:
  explicit Window(uint32_t n) : max_(n) {}
  void Acquire() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return n_ < max_; });
    ++n_;
  }
  void Release() {
    {
      std::lock_guard<std::mutex> l(mu_);
      --n_;
    }
    cv_.notify_all();
  }
  void Drain() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return n_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint32_t n_ = 0, max_;
};

ac::SsdTierOptions TierOptions(const Args& a) {
  ac::SsdTierOptions o;
  o.dir = a.dir;
  o.segment_bytes = 256ull << 20;
  o.io_bytes = ac::RecordBytes(a.entry_bytes);  // one I/O per record, like fio's bs
  o.write_buffers = a.qd;
  o.read_buffers = 4;
  o.read_queue_depth = 4 * a.qd + 8;
  o.max_batch_bytes = std::max<uint64_t>(64ull << 20, 4 * a.entry_bytes);
  o.max_pending_puts = 8 * a.qd;
  o.max_pending_put_bytes = 1ull << 40;
  const uint64_t need = a.total_bytes / a.entry_bytes * ac::RecordBytes(a.entry_bytes);
  o.segment_count = static_cast<uint32_t>(need / o.segment_bytes + 3);  // no reclaim in the run
  return o;
}

int RunTier(const Args& a) {
  const uint64_t n = a.total_bytes / a.entry_bytes;
  std::vector<std::vector<std::byte>> src;
  for (int i = 0; i < 4; ++i) src.push_back(Container(i, a.entry_bytes));
  auto t0 = Clock::now();
  auto tier = ac::SsdTier::Open(TierOptions(a));
  if (!tier.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(tier.status().message()).c_str());
    return 1;
  }
  const double open_s = Secs(t0, Clock::now());
  const uint64_t wb0 = ProcWriteBytes();
  Window win(4 * a.qd);  // client concurrency: acks wait for fdatasync, so keep more queued
  std::atomic<uint64_t> failed{0};
  auto w0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    win.Acquire();
    auto st = (*tier)->Put(KeyOf(i), src[i % src.size()], [&](absl::Status s) {
      if (!s.ok()) failed.fetch_add(1);
      win.Release();
    }, ac::SsdPutOptions{.borrow = true, .bypass_admission = true});
    if (!st.ok()) {
      failed.fetch_add(1);
      win.Release();
    }
  }
  win.Drain();
  const double write_s = Secs(w0, Clock::now());
  const uint64_t wb1 = ProcWriteBytes();
  // Reads: aligned destinations (DMA straight into them), qd in flight.
  std::vector<ac::AlignedBuffer> dst;
  for (uint32_t i = 0; i < a.qd; ++i) dst.emplace_back(a.entry_bytes);
  std::vector<int> free_bufs;
  for (uint32_t i = 0; i < a.qd; ++i) free_bufs.push_back(static_cast<int>(i));
  std::mutex fm;
  std::condition_variable fcv;
  std::atomic<uint64_t> read_bad{0};
  std::vector<uint64_t> last_key(a.qd, UINT64_MAX);  // the last entry read into each buffer
  auto r0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    int b;
    {
      std::unique_lock<std::mutex> l(fm);
      fcv.wait(l, [&] { return !free_bufs.empty(); });
      b = free_bufs.back();
      free_bufs.pop_back();
    }
    last_key[b] = i;
    auto release = [&, b] {
      {
        std::lock_guard<std::mutex> l(fm);
        free_bufs.push_back(b);
      }
      fcv.notify_all();
    };
    auto st = (*tier)->GetAsync(KeyOf(i), ac::ByteSpan(dst[b].data(), dst[b].size()),
                                [&, release](absl::StatusOr<uint64_t> r) {
                                  if (!r.ok() || *r != a.entry_bytes) read_bad.fetch_add(1);
                                  release();
                                });
    if (!st.ok()) {
      read_bad.fetch_add(1);
      release();
    }
  }
  {
    std::unique_lock<std::mutex> l(fm);
    fcv.wait(l, [&] { return free_bufs.size() == a.qd; });
  }
  const double read_s = Secs(r0, Clock::now());
  auto s = (*tier)->Stats();
  // Before reporting: every write acknowledged and indexed, every read of the right
  // size (CRC-checked by the tier), and the last read into each buffer byte-equal to
  // what was written.
  if (failed.load() || read_bad.load() || s.entries != n) {
    return Fail("tier: " + std::to_string(failed.load()) + " failed writes, " + std::to_string(read_bad.load()) +
                " bad reads, " + std::to_string(s.entries) + " of " + std::to_string(n) + " entries indexed");
  }
  for (uint32_t b = 0; b < a.qd; ++b) {
    if (last_key[b] == UINT64_MAX) continue;
    if (std::memcmp(dst[b].data(), src[last_key[b] % src.size()].data(), a.entry_bytes) != 0) {
      return Fail("tier: entry " + std::to_string(last_key[b]) + " read back differs from what was written");
    }
  }
  const double bytes = static_cast<double>(n * a.entry_bytes);
  std::printf(
      "mode=tier entry_bytes=%lu entries=%lu write_MBps=%.1f read_MBps=%.1f disk_per_byte=%.4f "
      "write_amp=%.4f write_p50_us=%lu write_p99_us=%lu read_p50_us=%lu read_p99_us=%lu failed=%lu read_bad=%lu "
      "registered=%d open_s=%.3f\n",
      (unsigned long)a.entry_bytes, (unsigned long)n, bytes / write_s / 1e6, bytes / read_s / 1e6,
      static_cast<double>(wb1 - wb0) / bytes, s.write_amplification, (unsigned long)s.write_p50_us,
      (unsigned long)s.write_p99_us, (unsigned long)s.read_p50_us, (unsigned long)s.read_p99_us,
      (unsigned long)failed.load(), (unsigned long)read_bad.load(), s.registered_buffers ? 1 : 0, open_s);
  return 0;
}

int RunBlobDb(const Args& a) {
  const uint64_t n = a.total_bytes / a.entry_bytes;
  std::vector<std::vector<std::byte>> src;
  for (int i = 0; i < 4; ++i) src.push_back(Container(i, a.entry_bytes));
  rocksdb::Options o;
  o.create_if_missing = true;
  o.enable_blob_files = true;
  o.min_blob_size = 0;
  o.blob_file_size = 256ull << 20;
  o.blob_compression_type = rocksdb::kNoCompression;
  o.compression = rocksdb::kNoCompression;
  o.enable_blob_garbage_collection = false;
  o.use_direct_reads = true;  // like the tier: no page cache on the read path
  o.write_buffer_size = 64ull << 20;
  o.max_write_buffer_number = 4;
  o.max_background_jobs = 4;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, a.dir + "/blobdb", &raw);
  if (!s.ok()) {
    std::fprintf(stderr, "blobdb open: %s\n", s.ToString().c_str());
    return 1;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  const uint64_t wb0 = ProcWriteBytes();
  std::atomic<uint64_t> next{0}, failed{0};
  auto worker_write = [&] {
    for (uint64_t i; (i = next.fetch_add(1)) < n;) {
      auto k = ac::SsdIndex::EncodeKey(KeyOf(i));
      const auto& v = src[i % src.size()];
      if (!db->Put(rocksdb::WriteOptions(), k, rocksdb::Slice(reinterpret_cast<const char*>(v.data()), v.size())).ok())
        failed.fetch_add(1);
    }
  };
  auto w0 = Clock::now();
  {
    std::vector<std::thread> th;
    for (uint32_t i = 0; i < a.qd; ++i) th.emplace_back(worker_write);
    for (auto& t : th) t.join();
  }
  const double put_s = Secs(w0, Clock::now());
  // Durable like the tier's acknowledgments: WAL synced, memtable flushed to blob files.
  const auto sync_st = db->SyncWAL();
  const auto flush_st = db->Flush(rocksdb::FlushOptions());
  const double write_s = Secs(w0, Clock::now());
  const uint64_t wb1 = ProcWriteBytes();
  next = 0;
  std::atomic<uint64_t> bad{0};
  // Each reader's last value stays pinned here so that it can be compared afterwards.
  std::vector<rocksdb::PinnableSlice> last(a.qd);
  std::vector<uint64_t> last_i(a.qd, UINT64_MAX);
  auto worker_read = [&](uint32_t w) {
    rocksdb::PinnableSlice& v = last[w];
    for (uint64_t i; (i = next.fetch_add(1)) < n;) {
      v.Reset();
      auto st = db->Get(rocksdb::ReadOptions(), db->DefaultColumnFamily(), ac::SsdIndex::EncodeKey(KeyOf(i)), &v);
      if (!st.ok() || v.size() != a.entry_bytes) bad.fetch_add(1);
      last_i[w] = i;
    }
  };
  auto r0 = Clock::now();
  {
    std::vector<std::thread> th;
    for (uint32_t i = 0; i < a.qd; ++i) th.emplace_back(worker_read, i);
    for (auto& t : th) t.join();
  }
  const double read_s = Secs(r0, Clock::now());
  if (!sync_st.ok() || !flush_st.ok() || failed.load() || bad.load()) {
    return Fail("blobdb: " + std::to_string(failed.load()) + " failed puts, " + std::to_string(bad.load()) +
                " bad reads; SyncWAL " + sync_st.ToString() + ", Flush " + flush_st.ToString());
  }
  for (uint32_t w = 0; w < a.qd; ++w) {
    if (last_i[w] == UINT64_MAX) continue;
    const auto& want = src[last_i[w] % src.size()];
    if (last[w].size() != want.size() || std::memcmp(last[w].data(), want.data(), want.size()) != 0) {
      return Fail("blobdb: entry " + std::to_string(last_i[w]) + " read back differs from what was written");
    }
  }
  for (auto& v : last) v.Reset();  // unpin before Close
  const double bytes = static_cast<double>(n * a.entry_bytes);
  std::printf("mode=blobdb entry_bytes=%lu entries=%lu write_MBps=%.1f put_phase_s=%.3f sync_flush_s=%.3f read_MBps=%.1f "
              "disk_per_byte=%.4f failed=%lu read_bad=%lu\n",
              (unsigned long)a.entry_bytes, (unsigned long)n, bytes / write_s / 1e6, put_s, write_s - put_s, bytes / read_s / 1e6,
              static_cast<double>(wb1 - wb0) / bytes, (unsigned long)failed.load(), (unsigned long)bad.load());
  db->Close();
  return 0;
}

int RunRestart(const Args& a) {
  const uint64_t n = a.entries ? a.entries : 100000;
  ac::SsdTierOptions o;
  o.dir = a.dir;
  o.segment_bytes = 64ull << 20;
  o.segment_count = static_cast<uint32_t>(n * ac::RecordBytes(a.entry_bytes) / o.segment_bytes + 3);
  o.io_bytes = 256 << 10;
  o.max_pending_puts = 4096;
  auto src = Container(1, a.entry_bytes);
  {
    auto tier = ac::SsdTier::Open(o);
    if (!tier.ok()) return 1;
    Window win(1024);
    for (uint64_t i = 0; i < n; ++i) {
      win.Acquire();
      auto st = (*tier)->Put(KeyOf(i), src, [&](absl::Status) { win.Release(); },
                             ac::SsdPutOptions{.borrow = true, .bypass_admission = true});
      if (!st.ok()) win.Release();
    }
    win.Drain();
  }
  // With `verify` (not on the rebuild open, whose index the last open loads), after the
  // timed Open: the first, middle and last entry read back equal to what was written.
  auto reopen = [&](double* secs, uint64_t* entries, bool* rebuilt, bool verify) {
    auto t0 = Clock::now();
    auto tier = ac::SsdTier::Open(o);
    *secs = Secs(t0, Clock::now());
    if (!tier.ok()) {
      Fail("restart: open: " + std::string(tier.status().message()));
      return false;
    }
    auto s = (*tier)->Stats();
    *entries = s.entries;
    *rebuilt = s.rebuilt_index;
    for (uint64_t k : {uint64_t{0}, n / 2, n - 1}) {
      if (!verify) break;
      auto got = (*tier)->Get(KeyOf(k));
      if (!got.ok() || *got != src) {
        Fail("restart: entry " + std::to_string(k) + " not read back as written");
        return false;
      }
    }
    return true;
  };
  double warm_s = 0, rebuild_s = 0, warm2_s = 0;
  uint64_t warm_n = 0, rebuild_n = 0, warm2_n = 0;
  bool r1 = false, r2 = false, r3 = false;
  if (!reopen(&warm_s, &warm_n, &r1, true)) return 1;
  std::filesystem::remove_all(a.dir + "/index");
  if (!reopen(&rebuild_s, &rebuild_n, &r2, false)) return 1;
  if (!reopen(&warm2_s, &warm2_n, &r3, true)) return 1;
  if (warm_n != n || rebuild_n != n || warm2_n != n || r1 || !r2 || r3) {
    return Fail("restart: entries warm/rebuilt/warm again " + std::to_string(warm_n) + "/" + std::to_string(rebuild_n) +
                "/" + std::to_string(warm2_n) + " of " + std::to_string(n) + ", rebuilt flags " + std::to_string(r1) +
                std::to_string(r2) + std::to_string(r3) + " (expected 010)");
  }
  std::printf("mode=restart entries=%lu entry_bytes=%lu warm_open_s=%.3f warm_entries=%lu rebuild_open_s=%.3f "
              "rebuild_entries=%lu rebuilt=%d warm_after_rebuild_s=%.3f\n",
              (unsigned long)n, (unsigned long)a.entry_bytes, warm_s, (unsigned long)warm_n, rebuild_s,
              (unsigned long)rebuild_n, r2 ? 1 : 0, warm2_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    std::fprintf(stderr,
                 "usage: %s tier|blobdb|restart --dir D [--entry-bytes E] [--total-bytes T] [--qd Q] [--entries N]\n",
                 argv[0]);
    return 2;
  }
  std::filesystem::create_directories(a.dir);
  if (a.mode == "tier") return RunTier(a);
  if (a.mode == "blobdb") return RunBlobDb(a);
  if (a.mode == "restart") return RunRestart(a);
  std::fprintf(stderr, "unknown mode %s\n", a.mode.c_str());
  return 2;
}
