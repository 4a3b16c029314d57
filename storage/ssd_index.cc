#include "storage/ssd_index.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"
#include "spdlog/spdlog.h"

namespace adaptcache {
namespace {

constexpr char kVersionKey[] = "m:version";
constexpr char kLayoutKey[] = "m:layout";
constexpr char kTailKey[] = "m:tail";
constexpr char kFailedPrefix[] = "m:failed:";
constexpr uint8_t kLocationVersion = 1;
constexpr size_t kLocationBytes = 38;

void PutBe64(std::string& s, uint64_t v) {
  for (int i = 7; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
uint64_t GetBe64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
template <typename T>
void PutLe(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}
template <typename T>
T GetLe(const char*& p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  p += sizeof(T);
  return v;
}

absl::Status ToStatus(const rocksdb::Status& s, const char* what) {
  if (s.ok()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("ssd index ", what, ": ", s.ToString()));
}

rocksdb::Options IndexOptions() {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_open_files = 256;
  o.keep_log_file_num = 2;
  o.max_log_file_size = 1 << 20;
  o.info_log_level = rocksdb::WARN_LEVEL;
  return o;
}

}  // namespace

std::string SsdIndex::EncodeKey(const EntryKey& k) {
  std::string s = "e";
  PutBe64(s, k.ns);
  PutBe64(s, k.key.hi);
  PutBe64(s, k.key.lo);
  return s;
}

std::string SsdIndex::EncodeLocation(const SsdLocation& l) {
  std::string s;
  s.reserve(kLocationBytes);
  PutLe<uint8_t>(s, kLocationVersion);
  PutLe<uint8_t>(s, l.codec);
  PutLe<uint32_t>(s, l.slot);
  PutLe<uint64_t>(s, l.segment_id);
  PutLe<uint64_t>(s, l.offset);
  PutLe<uint32_t>(s, l.payload_bytes);
  PutLe<uint32_t>(s, l.payload_crc32c);
  PutLe<uint64_t>(s, l.seq);
  return s;
}

bool SsdIndex::DecodeLocation(const std::string& v, SsdLocation* l) {
  if (v.size() != kLocationBytes || static_cast<uint8_t>(v[0]) != kLocationVersion) return false;
  const char* p = v.data() + 1;
  l->codec = GetLe<uint8_t>(p);
  l->slot = GetLe<uint32_t>(p);
  l->segment_id = GetLe<uint64_t>(p);
  l->offset = GetLe<uint64_t>(p);
  l->payload_bytes = GetLe<uint32_t>(p);
  l->payload_crc32c = GetLe<uint32_t>(p);
  l->seq = GetLe<uint64_t>(p);
  return true;
}

absl::StatusOr<std::unique_ptr<SsdIndex>> SsdIndex::Open(const std::string& path, bool sync, bool* fresh) {
  rocksdb::Options o = IndexOptions();
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, path, &db);
  if (!s.ok()) {
    // The log is the source of truth: an unreadable index is rebuilt, not fatal.
    spdlog::warn("ssd index at {} unreadable ({}); recreating it from the log", path, s.ToString());
    rocksdb::DestroyDB(path, o);
    s = rocksdb::DB::Open(o, path, &db);
    if (!s.ok()) return ToStatus(s, "open");
  }
  std::unique_ptr<SsdIndex> idx(new SsdIndex(db, sync));
  std::string v;
  s = db->Get(rocksdb::ReadOptions(), kVersionKey, &v);
  if (s.IsNotFound()) {
    *fresh = true;
  } else if (!s.ok()) {
    return ToStatus(s, "read version");
  } else {
    uint32_t ver = 0;
    if (v.size() == 4) std::memcpy(&ver, v.data(), 4);
    *fresh = ver != kSsdIndexVersion;
    if (*fresh) spdlog::warn("ssd index version {} != {}; rebuilding from the log", ver, kSsdIndexVersion);
  }
  return idx;
}

SsdIndex::~SsdIndex() {
  if (db_) {
    db_->Close();
    delete db_;
  }
}

absl::Status SsdIndex::Commit(const std::vector<std::pair<EntryKey, SsdLocation>>& puts,
                              const std::vector<EntryKey>& deletes, const std::optional<IndexTail>& tail) {
  rocksdb::WriteBatch b;
  for (const auto& [k, l] : puts) b.Put(EncodeKey(k), EncodeLocation(l));
  for (const auto& k : deletes) b.Delete(EncodeKey(k));
  if (tail) {
    std::string t;
    PutLe<uint64_t>(t, tail->hw_seq);
    PutLe<uint32_t>(t, tail->slot);
    PutLe<uint64_t>(t, tail->segment_id);
    PutLe<uint64_t>(t, tail->end_offset);
    b.Put(kTailKey, t);
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return ToStatus(db_->Write(wo, &b), "commit");
}

absl::Status SsdIndex::ForEach(const std::function<void(const EntryKey&, const SsdLocation&)>& fn,
                               uint64_t* corrupt) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("e"); it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key();
    if (k.size() == 0 || k[0] != 'e') break;
    SsdLocation l;
    if (k.size() != 25 || !DecodeLocation(it->value().ToString(), &l)) {
      if (corrupt) ++*corrupt;
      continue;
    }
    EntryKey ek;
    ek.ns = GetBe64(k.data() + 1);
    ek.key.hi = GetBe64(k.data() + 9);
    ek.key.lo = GetBe64(k.data() + 17);
    fn(ek, l);
  }
  return ToStatus(it->status(), "iterate");
}

absl::StatusOr<std::optional<IndexTail>> SsdIndex::ReadTail() {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), kTailKey, &v);
  if (s.IsNotFound()) return std::optional<IndexTail>();
  if (!s.ok()) return ToStatus(s, "read tail");
  if (v.size() != 28) return absl::DataLossError("ssd index: malformed tail");
  const char* p = v.data();
  IndexTail t;
  t.hw_seq = GetLe<uint64_t>(p);
  t.slot = GetLe<uint32_t>(p);
  t.segment_id = GetLe<uint64_t>(p);
  t.end_offset = GetLe<uint64_t>(p);
  return std::optional<IndexTail>(t);
}

absl::StatusOr<std::optional<IndexLayout>> SsdIndex::ReadLayout() {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), kLayoutKey, &v);
  if (s.IsNotFound()) return std::optional<IndexLayout>();
  if (!s.ok()) return ToStatus(s, "read layout");
  if (v.size() != 12) return absl::DataLossError("ssd index: malformed layout");
  const char* p = v.data();
  IndexLayout l;
  l.segment_bytes = GetLe<uint64_t>(p);
  l.slot_count = GetLe<uint32_t>(p);
  return std::optional<IndexLayout>(l);
}

absl::Status SsdIndex::Initialize(const IndexLayout& layout) {
  rocksdb::WriteBatch b;
  std::string l, v;
  PutLe<uint64_t>(l, layout.segment_bytes);
  PutLe<uint32_t>(l, layout.slot_count);
  PutLe<uint32_t>(v, kSsdIndexVersion);
  b.Put(kLayoutKey, l);
  b.Put(kVersionKey, v);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return ToStatus(db_->Write(wo, &b), "initialize");
}

absl::StatusOr<std::set<uint32_t>> SsdIndex::FailedSlots() {
  std::set<uint32_t> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  const size_t plen = sizeof(kFailedPrefix) - 1;
  for (it->Seek(kFailedPrefix); it->Valid() && it->key().starts_with(kFailedPrefix); it->Next()) {
    if (it->key().size() != plen + 4) continue;
    const char* p = it->key().data() + plen;
    out.insert(static_cast<uint32_t>(GetBe64(std::string(4, '\0').append(p, 4).data())));
  }
  if (auto st = ToStatus(it->status(), "iterate failed slots"); !st.ok()) return st;
  return out;
}

absl::Status SsdIndex::MarkSlotFailed(uint32_t slot) {
  std::string k = kFailedPrefix;
  for (int i = 3; i >= 0; --i) k.push_back(static_cast<char>((slot >> (8 * i)) & 0xFF));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return ToStatus(db_->Put(wo, k, ""), "mark slot failed");
}

absl::Status SsdIndex::ClearEntries() {
  rocksdb::WriteBatch b;
  b.DeleteRange("e", "f");
  b.Delete(kTailKey);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return ToStatus(db_->Write(wo, &b), "clear");
}

}  // namespace adaptcache
