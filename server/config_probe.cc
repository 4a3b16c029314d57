// Defaults taken from the machine: the pool size from memory and /dev/shm, the SSD
// directory from the user, the segment count from free disk space.
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/config.h"
#include "server/config_internal.h"
#include "storage/ssd_format.h"

namespace adaptcache::server {
namespace {

constexpr uint64_t kAutoMinPoolBytes = 64 * kMiB;

}  // namespace

absl::StatusOr<uint64_t> AutoPoolBytes(const std::string& shm_dir) {
  std::ifstream meminfo("/proc/meminfo");
  uint64_t mem_total_kib = 0;
  std::string name;
  uint64_t value = 0;
  std::string unit;
  while (meminfo >> name >> value >> unit) {
    if (name == "MemTotal:") {
      mem_total_kib = value;
      break;
    }
  }
  if (mem_total_kib == 0) return absl::InternalError("cannot read MemTotal from /proc/meminfo");
  struct statvfs vfs {};
  if (::statvfs(shm_dir.c_str(), &vfs) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("shm_dir ", shm_dir, ": ", std::strerror(errno)));
  }
  uint64_t bytes = mem_total_kib * kKiB / 4;
  bytes = std::min<uint64_t>(bytes, uint64_t{vfs.f_bavail} * vfs.f_frsize);
  bytes = std::max(bytes, kAutoMinPoolBytes);
  return bytes / (2 * kMiB) * (2 * kMiB);
}

absl::StatusOr<std::string> DefaultSsdDir() {
  if (::geteuid() == 0) return std::string("/var/lib/adaptcache");
  const char* xdg = std::getenv("XDG_STATE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return absl::StrCat(xdg, "/adaptcache");
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] == '/') return absl::StrCat(home, "/.local/state/adaptcache");
  return absl::FailedPreconditionError(
      "cannot choose the SSD directory: neither XDG_STATE_HOME nor HOME is an absolute path; "
      "set --ssd-dir PATH (or --ssd-dir \"\" for no SSD tier)");
}

absl::StatusOr<uint32_t> AutoSsdSegmentCount(const std::string& dir, uint64_t segment_bytes,
                                             uint32_t configured) {
  namespace fs = std::filesystem;
  constexpr uint32_t kAutoMaxSegments = 16;
  constexpr uint64_t kAutoMaxBytes = 4 * kGiB;
  if (segment_bytes == 0) return absl::InvalidArgumentError("segment_bytes is 0");
  std::error_code ec;
  // Segment files already there: their space is in use by us, not lost.
  uint32_t existing = 0;
  uint64_t existing_bytes = 0;
  if (fs::is_directory(dir, ec)) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (IsSegmentFileName(e.path().filename().string())) {
        ++existing;
        existing_bytes += e.file_size(ec);
      }
    }
  }
  if (configured == 0 && existing >= 3) return existing;
  fs::path probe(dir);
  while (!probe.empty() && !fs::exists(probe, ec)) probe = probe.parent_path();
  if (probe.empty()) probe = "/";
  struct statvfs vfs {};
  if (::statvfs(probe.c_str(), &vfs) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("ssd dir ", dir, ": statvfs(", probe.string(), "): ", std::strerror(errno)));
  }
  const uint64_t free_bytes = uint64_t{vfs.f_bavail} * vfs.f_frsize;
  if (configured != 0) {
    const uint64_t need = configured * segment_bytes;
    if (need > free_bytes + existing_bytes) {
      return absl::FailedPreconditionError(absl::StrCat(
          "[ssd] ", configured, " segments of ", FormatByteSize(segment_bytes), " need ",
          FormatByteSize(need), " but ", probe.string(), " has ", free_bytes,
          " bytes free; lower --ssd-segment-count or --ssd-segment-bytes, or --ssd-dir \"\""));
    }
    return configured;
  }
  const uint64_t budget = std::min(kAutoMaxBytes, (free_bytes + existing_bytes) / 10);
  const uint64_t count = std::min<uint64_t>(kAutoMaxSegments, budget / segment_bytes);
  if (count < 3) {
    return absl::FailedPreconditionError(absl::StrCat(
        "[ssd] auto size: 10% of the free space of ", probe.string(), " (", free_bytes,
        " bytes free) holds fewer than 3 segments of ", FormatByteSize(segment_bytes),
        "; set --ssd-segment-bytes smaller, --ssd-segment-count, another --ssd-dir, or "
        "--ssd-dir \"\" for no SSD tier"));
  }
  return static_cast<uint32_t>(count);
}
}  // namespace adaptcache::server
