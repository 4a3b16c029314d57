// The SSD tier's persistent index: RocksDB mapping (namespace, key) -> record location
// and metadata, plus a few meta keys (layout, tail/high-water mark, failed slots).
//
//   "e" ns:be64 key.hi:be64 key.lo:be64  -> SsdLocation (38 bytes, see docs/ssd_format.md)
//   "m:version"                          -> u32 index format version
//   "m:layout"                           -> segment_bytes:u64 slot_count:u32
//   "m:tail"                             -> IndexTail (hw_seq, slot, segment_id, end_offset)
//   "m:failed:" slot:be32                -> "" (slot out of service)
//
// Every Commit is one WriteBatch through the WAL. With sync=false a process crash loses
// nothing (the WAL is in the OS); a power loss can lose the newest batches, which the
// tier recovers by scanning the log past the tail. Thread safety: all methods may be
// called concurrently (RocksDB is internally synchronized).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/key.h"

namespace rocksdb {
class DB;
}

namespace adaptcache {

inline constexpr uint32_t kSsdIndexVersion = 1;

struct SsdLocation {
  uint32_t slot = 0;
  uint64_t segment_id = 0;
  uint64_t offset = 0;  // record start within the slot file (4 KiB aligned)
  uint32_t payload_bytes = 0;
  uint32_t payload_crc32c = 0;
  uint8_t codec = 0;
  uint64_t seq = 0;
};

// Where the log ended at the last index commit.
struct IndexTail {
  uint64_t hw_seq = 0;  // highest sequence number committed to the index
  uint32_t slot = 0;
  uint64_t segment_id = 0;
  uint64_t end_offset = 0;  // first byte after the last committed record
};

struct IndexLayout {
  uint64_t segment_bytes = 0;
  uint32_t slot_count = 0;
};

class SsdIndex {
 public:
  // Opens (creating if needed) the index at `path`. A database RocksDB cannot open is
  // destroyed and recreated empty (the log is the source of truth). `*fresh` is set when
  // the index holds no version key, i.e. it must be rebuilt from the log.
  static absl::StatusOr<std::unique_ptr<SsdIndex>> Open(const std::string& path, bool sync, bool* fresh);
  ~SsdIndex();

  // One atomic batch: puts, deletes, optional tail update.
  absl::Status Commit(const std::vector<std::pair<EntryKey, SsdLocation>>& puts,
                      const std::vector<EntryKey>& deletes, const std::optional<IndexTail>& tail);
  // Visits every entry; undecodable values are skipped and counted in *corrupt.
  absl::Status ForEach(const std::function<void(const EntryKey&, const SsdLocation&)>& fn, uint64_t* corrupt);
  absl::StatusOr<std::optional<IndexTail>> ReadTail();
  absl::StatusOr<std::optional<IndexLayout>> ReadLayout();
  // Writes layout and version (marks the index as initialized).
  absl::Status Initialize(const IndexLayout& layout);
  absl::StatusOr<std::set<uint32_t>> FailedSlots();
  absl::Status MarkSlotFailed(uint32_t slot);
  // Removes all entries and the tail (before a rebuild); keeps layout and failed slots.
  absl::Status ClearEntries();

  static std::string EncodeKey(const EntryKey& k);
  static std::string EncodeLocation(const SsdLocation& l);
  static bool DecodeLocation(const std::string& v, SsdLocation* l);

 private:
  SsdIndex(rocksdb::DB* db, bool sync) : db_(db), sync_(sync) {}
  rocksdb::DB* db_;
  bool sync_;
};

}  // namespace adaptcache
