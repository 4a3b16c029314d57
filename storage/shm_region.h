// One shared-memory file mapped MAP_SHARED: the backing of the DRAM pool, which local
// clients map too (by path, or by the fd passed over a Unix socket).
//
// Create() makes <dir>/<file_name> with O_EXCL and mode 0600 (never reuses a file left
// by someone else), reserves its full size with posix_fallocate (so a full tmpfs fails
// here with a clear error instead of SIGBUS on first touch), maps it, then tries the
// best-effort steps: madvise(MADV_HUGEPAGE) and mlock. A refused mlock (RLIMIT_MEMLOCK,
// missing CAP_IPC_LOCK) logs one warning and is reported in status(); it is not an
// error. The destructor unmaps, closes and unlinks the file (clients that still map it
// keep their mapping until they unmap).
//
// Thread safety: immutable after Create(); all accessors may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace adaptcache {

struct ShmRegionOptions {
  std::string dir = "/dev/shm";  // must exist; tmpfs for a memory-backed pool
  std::string file_name;         // one path component: no '/', not "." or ".."
  uint64_t size = 0;             // > 0; rounded up to the system page size
  bool huge_pages = true;        // madvise(MADV_HUGEPAGE), best effort
  bool mlock = true;             // mlock the mapping, best effort
};

// What the best-effort steps achieved, for logs and /metrics.
struct ShmRegionStatus {
  bool huge_pages_advised = false;  // madvise(MADV_HUGEPAGE) returned 0
  // The host's /sys/kernel/mm/transparent_hugepage/shmem_enabled choice ("never",
  // "advise", ...; empty if unreadable). With "never" or "deny" the advice has no effect.
  std::string thp_shmem_mode;
  bool huge_pages_effective = false;  // advised and the host mode honours it
  bool mlocked = false;               // the whole mapping is locked in memory
  std::string mlock_error;            // why not, when mlock was requested and refused
};

class ShmRegion {
 public:
  static absl::StatusOr<std::unique_ptr<ShmRegion>> Create(const ShmRegionOptions& opts);
  ~ShmRegion();
  ShmRegion(const ShmRegion&) = delete;
  ShmRegion& operator=(const ShmRegion&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  std::byte* base() const { return base_; }
  int fd() const { return fd_; }  // O_RDWR, close-on-exec; owned by the region
  const ShmRegionStatus& status() const { return status_; }

 private:
  ShmRegion(std::string path, int fd, std::byte* base, uint64_t size, ShmRegionStatus st);

  std::string path_;
  int fd_;
  std::byte* base_;
  uint64_t size_;
  ShmRegionStatus status_;
};

}  // namespace adaptcache
