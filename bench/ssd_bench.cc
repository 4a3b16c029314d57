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
  auto r0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    int b;
    {
      std::unique_lock<std::mutex> l(fm);
      fcv.wait(l, [&] { return !free_bufs.empty(); });
      b = free_bufs.back();
      free_bufs.pop_back();
    }
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
  const double bytes = static_cast<double>(n * a.entry_bytes);
  std::printf(
      "mode=tier entry_bytes=%lu entries=%lu write_MBps=%.1f read_MBps=%.1f disk_per_byte=%.4f "
      "write_amp=%.4f write_p50_us=%lu write_p99_us=%lu read_p50_us=%lu read_p99_us=%lu failed=%lu read_bad=%lu "
      "registered=%d open_s=%.3f\n",
      (unsigned long)a.entry_bytes, (unsigned long)n, bytes / write_s / 1e6, bytes / read_s / 1e6,
      static_cast<double>(wb1 - wb0) / bytes, s.write_amplification, (unsigned long)s.write_p50_us,
      (unsigned long)s.write_p99_us, (unsigned long)s.read_p50_us, (unsigned long)s.read_p99_us,
      (unsigned long)failed.load(), (unsigned long)read_bad.load(), s.registered_buffers ? 1 : 0, open_s);
  return failed.load() || read_bad.load() ? 1 : 0;
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
  db->SyncWAL();
  db->Flush(rocksdb::FlushOptions());
  const double write_s = Secs(w0, Clock::now());
  const uint64_t wb1 = ProcWriteBytes();
  next = 0;
  std::atomic<uint64_t> bad{0};
  auto worker_read = [&] {
    rocksdb::PinnableSlice v;
    for (uint64_t i; (i = next.fetch_add(1)) < n;) {
      v.Reset();
      auto st = db->Get(rocksdb::ReadOptions(), db->DefaultColumnFamily(), ac::SsdIndex::EncodeKey(KeyOf(i)), &v);
      if (!st.ok() || v.size() != a.entry_bytes) bad.fetch_add(1);
    }
  };
  auto r0 = Clock::now();
  {
    std::vector<std::thread> th;
    for (uint32_t i = 0; i < a.qd; ++i) th.emplace_back(worker_read);
    for (auto& t : th) t.join();
  }
  const double read_s = Secs(r0, Clock::now());
  const double bytes = static_cast<double>(n * a.entry_bytes);
  std::printf("mode=blobdb entry_bytes=%lu entries=%lu write_MBps=%.1f put_phase_s=%.3f sync_flush_s=%.3f read_MBps=%.1f "
              "disk_per_byte=%.4f failed=%lu read_bad=%lu\n",
              (unsigned long)a.entry_bytes, (unsigned long)n, bytes / write_s / 1e6, put_s, write_s - put_s, bytes / read_s / 1e6,
              static_cast<double>(wb1 - wb0) / bytes, (unsigned long)failed.load(), (unsigned long)bad.load());
  db->Close();
  return failed.load() || bad.load() ? 1 : 0;
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
  auto reopen = [&](double* secs, uint64_t* entries, bool* rebuilt) {
    auto t0 = Clock::now();
    auto tier = ac::SsdTier::Open(o);
    *secs = Secs(t0, Clock::now());
    if (!tier.ok()) return false;
    auto s = (*tier)->Stats();
    *entries = s.entries;
    *rebuilt = s.rebuilt_index;
    return true;
  };
  double warm_s = 0, rebuild_s = 0, warm2_s = 0;
  uint64_t warm_n = 0, rebuild_n = 0, warm2_n = 0;
  bool r1 = false, r2 = false, r3 = false;
  if (!reopen(&warm_s, &warm_n, &r1)) return 1;
  std::filesystem::remove_all(a.dir + "/index");
  if (!reopen(&rebuild_s, &rebuild_n, &r2)) return 1;
  if (!reopen(&warm2_s, &warm2_n, &r3)) return 1;
  std::printf("mode=restart entries=%lu entry_bytes=%lu warm_open_s=%.3f warm_entries=%lu rebuild_open_s=%.3f "
              "rebuild_entries=%lu rebuilt=%d warm_after_rebuild_s=%.3f\n",
              (unsigned long)n, (unsigned long)a.entry_bytes, warm_s, (unsigned long)warm_n, rebuild_s,
              (unsigned long)rebuild_n, r2 ? 1 : 0, warm2_s);
  return warm_n == n && rebuild_n == n && !r1 && r2 ? 0 : 1;
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
