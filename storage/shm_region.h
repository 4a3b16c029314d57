// One shared-memory file mapped MAP_SHARED: the backing of the DRAM pool, which local
// clients map too (by path, or by the fd passed over a Unix socket).
//
// Create() makes <dir>/<file_name> with O_EXCL and mode 0600 (never reuses a file left
// by someone else), reserves its full size with posix_fallocate (so a full tmpfs fails
// here with a clear error instead of SIGBUS on first touch), maps it, then tries the
// best-effort steps: madvise(MADV_HUGEPAGE) and mlock. A refused mlock (RLIMIT_MEMLOCK,
// missing CAP_IPC_LOCK) logs one warning and is reported in status(); it is not an
// error. The region holds flock(LOCK_EX) on its file while it lives, so a later
// daemon can tell a dead instance's file from a live one (RemoveDeadShmFiles). The
// destructor unmaps, unlinks and closes the file (clients that still map it
// keep their mapping until they unmap).
//
// Thread safety: immutable after Create(); all accessors may be called concurrently.
#pragma once

#include <cstddef>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

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

// What RemoveDeadShmFiles did.
struct ShmCleanup {
  uint64_t removed = 0;        // files unlinked
  uint64_t removed_bytes = 0;  // their sizes
  uint64_t live = 0;           // matching files left alone: their owner is alive
};

// Unlinks the regular files in `dir` that are ours and whose creator is dead: the name is
// recognised by `owner_pid` (which returns the pid the name carries, or 0 for a name that
// is not ours), the owner is our effective uid, no process of that pid exists (unless it is
// our own pid), and flock(LOCK_EX|LOCK_NB) succeeds, i.e. no live ShmRegion holds it.
// Best effort: unreadable entries are skipped.
ShmCleanup RemoveDeadShmFiles(const std::string& dir,
                              const std::function<pid_t(std::string_view)>& owner_pid);

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
