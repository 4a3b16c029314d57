// Helpers for the tiering integration tests: an SSD data directory on a real
// filesystem (O_DIRECT does not work on the fixture's /dev/shm directory), daemon
// options with a small DRAM pool and small SSD segments, and a verified read.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/crc32c.h"
#include "daemon_fixture.h"
#include "kernels/codec.h"
#include "server_test_util.h"

namespace adaptcache::testing {

class SsdDir {
 public:
  SsdDir() {
    std::string t = "/var/tmp/adaptcache-tier-it-XXXXXX";
    if (::mkdtemp(t.data()) != nullptr) path_ = t;
  }
  ~SsdDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// 4 MiB DRAM pool (~200 SmallShape entries), SSD of 16 x 8 MiB segments.
inline DaemonOptions TieredOptions(const std::string& ssd_dir,
                                   std::vector<std::string> more = {}) {
  DaemonOptions o;
  o.pool_bytes = 4ull << 20;
  o.extra_args = {"--ssd-dir", ssd_dir, "--ssd-segment-bytes", "8MiB", "--ssd-segment-count",
                  "16"};
  for (auto& a : more) o.extra_args.push_back(std::move(a));
  return o;
}

// Streams the entry and decodes it: OK with `raw` = the tensor bytes, NOT_FOUND on a
// miss, or the error. A container whose CRC or decode fails is reported as DATA_LOSS
// so a test can tell "wrong bytes" apart from a miss.
inline grpc::Status GetRaw(v1::AdaptCache::Stub* stub, const std::string& ns, const std::string& key,
                           std::string* raw, v1::EntryInfo* info = nullptr) {
  std::string container;
  v1::EntryInfo local;
  auto st = GetStream(stub, ns, key, &container, &local);
  if (info) *info = local;
  if (!st.ok()) return st;
  if (Crc32c(container.data(), container.size()) != local.payload_crc32c()) {
    return grpc::Status(grpc::StatusCode::DATA_LOSS, "container CRC mismatch");
  }
  raw->assign(local.raw_bytes(), '\0');
  auto dst = std::span<std::byte>(reinterpret_cast<std::byte*>(raw->data()), raw->size());
  auto src = std::span<const std::byte>(reinterpret_cast<const std::byte*>(container.data()),
                                        container.size());
  if (auto d = Decode(src, dst); !d.ok()) {
    return grpc::Status(grpc::StatusCode::DATA_LOSS, std::string(d.message()));
  }
  return grpc::Status::OK;
}

}  // namespace adaptcache::testing
