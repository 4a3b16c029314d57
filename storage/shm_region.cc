#include "storage/shm_region.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace adaptcache {
namespace {

std::string ErrnoText(int err) { return absl::StrCat(std::strerror(err), " (errno ", err, ")"); }

// The bracketed choice in the sysfs THP shmem setting, e.g. "always [never] deny" -> "never".
std::string ReadThpShmemMode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  std::string line;
  if (!in || !std::getline(in, line)) return "";
  const auto open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return "";
  return line.substr(open + 1, close - open - 1);
}

absl::Status ValidateFileName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm file name must be one path component, got '", name, "'"));
  }
  return absl::OkStatus();
}

// Creates `path` (O_EXCL, 0600) and holds LOCK_EX on it for the region's lifetime: the
// lock is what RemoveDeadShmFiles takes as proof that the owner is alive.
absl::StatusOr<int> CreateLocked(const std::string& path) {
  for (int attempt = 0;; ++attempt) {
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      const int err = errno;
      if (err == EEXIST) {
        return absl::AlreadyExistsError(absl::StrCat("shm file '", path, "' already exists"));
      }
      return absl::ErrnoToStatus(err, absl::StrCat("cannot create shm file '", path, "'"));
    }
    if (flock(fd, LOCK_EX) != 0) {
      const int err = errno;
      close(fd);
      unlink(path.c_str());
      return absl::ErrnoToStatus(err, absl::StrCat("flock '", path, "'"));
    }
    // A cleaner that probed the file between open and flock may have unlinked it.
    struct stat fst, pst;
    if (fstat(fd, &fst) == 0 && stat(path.c_str(), &pst) == 0 && fst.st_dev == pst.st_dev &&
        fst.st_ino == pst.st_ino) {
      return fd;
    }
    close(fd);
    if (attempt == 2) {
      return absl::UnavailableError(absl::StrCat("shm file '", path, "' vanished while created"));
    }
  }
}

// A process that exists (EPERM: it exists but is someone else's).
bool ProcessExists(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

}  // namespace

ShmCleanup RemoveDeadShmFiles(const std::string& dir,
                              const std::function<pid_t(std::string_view)>& owner_pid) {
  ShmCleanup out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  const int dfd = dirfd(d);
  const uid_t uid = geteuid();
  const pid_t self = getpid();
  while (const dirent* e = readdir(d)) {
    const std::string_view name = e->d_name;
    const pid_t pid = owner_pid(name);
    if (pid <= 0) continue;
    struct stat st;
    if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
        st.st_uid != uid) {
      continue;
    }
    // Our own pid is a file of an earlier instance in a reused pid (a container's pid 1):
    // only the lock decides then.
    if (pid != self && ProcessExists(pid)) {
      ++out.live;
      continue;
    }
    const int fd = openat(dfd, e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat fst, again;
    const bool same = fstat(fd, &fst) == 0 && fst.st_dev == st.st_dev && fst.st_ino == st.st_ino;
    if (!same || flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (same) ++out.live;
      close(fd);
      continue;
    }
    // Holding the lock: the name still being this inode means no one else removed it.
    if (fstatat(dfd, e->d_name, &again, AT_SYMLINK_NOFOLLOW) == 0 && again.st_ino == fst.st_ino &&
        again.st_dev == fst.st_dev && unlinkat(dfd, e->d_name, 0) == 0) {
      ++out.removed;
      out.removed_bytes += static_cast<uint64_t>(fst.st_size);
      spdlog::debug("removed dead pool file '{}/{}' ({} bytes, pid {})", dir, name, fst.st_size, pid);
    }
    close(fd);
  }
  closedir(d);
  return out;
}

ShmRegion::ShmRegion(std::string path, int fd, std::byte* base, uint64_t size, ShmRegionStatus st)
    : path_(std::move(path)), fd_(fd), base_(base), size_(size), status_(std::move(st)) {}

absl::StatusOr<std::unique_ptr<ShmRegion>> ShmRegion::Create(const ShmRegionOptions& opts) {
  if (auto st = ValidateFileName(opts.file_name); !st.ok()) return st;
  if (opts.dir.empty()) return absl::InvalidArgumentError("shm dir is empty");
  const long page = sysconf(_SC_PAGESIZE);
  const uint64_t page_size = page > 0 ? static_cast<uint64_t>(page) : 4096;
  if (opts.size == 0) return absl::InvalidArgumentError("shm region size is 0");
  if (opts.size > (uint64_t{1} << 50)) {
    return absl::InvalidArgumentError(absl::StrCat("shm region size ", opts.size, " is absurd"));
  }
  const uint64_t size = (opts.size + page_size - 1) / page_size * page_size;

  struct stat dst;
  if (stat(opts.dir.c_str(), &dst) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("shm dir '", opts.dir, "'"));
  }
  if (!S_ISDIR(dst.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("shm dir '", opts.dir, "' is not a directory"));
  }

  std::string path = opts.dir;
  if (path.back() != '/') path += '/';
  path += opts.file_name;

  auto fd_or = CreateLocked(path);
  if (!fd_or.ok()) return fd_or.status();
  const int fd = *fd_or;
  // From here on, every failure removes what was created.
  auto fail = [&](absl::Status st) {
    unlink(path.c_str());
    close(fd);
    return st;
  };
  // umask may only clear bits, but make the mode exact regardless.
  if (fchmod(fd, 0600) != 0) {
    return fail(absl::InternalError(absl::StrCat("fchmod '", path, "': ", ErrnoText(errno))));
  }
  if (const int err = posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) {
    std::string free_note;
    struct statvfs vfs;
    if (fstatvfs(fd, &vfs) == 0) {
      free_note = absl::StrCat(" (", uint64_t{vfs.f_bavail} * vfs.f_frsize, " bytes free in '",
                               opts.dir, "')");
    }
    if (err == ENOSPC) {
      return fail(absl::ResourceExhaustedError(
          absl::StrCat("shm pool of ", size, " bytes does not fit in '", opts.dir, "'", free_note,
                       "; lower the pool size or enlarge the tmpfs")));
    }
    return fail(absl::InternalError(
        absl::StrCat("posix_fallocate(", size, ") on '", path, "': ", ErrnoText(err), free_note)));
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    return fail(absl::ResourceExhaustedError(
        absl::StrCat("mmap of ", size, " bytes of '", path, "': ", ErrnoText(errno))));
  }

  ShmRegionStatus st;
  if (opts.huge_pages) {
    st.huge_pages_advised = madvise(p, size, MADV_HUGEPAGE) == 0;
    st.thp_shmem_mode = ReadThpShmemMode();
    st.huge_pages_effective = st.huge_pages_advised && !st.thp_shmem_mode.empty() &&
                              st.thp_shmem_mode != "never" && st.thp_shmem_mode != "deny";
  }
  if (opts.mlock) {
    if (::mlock(p, size) == 0) {
      st.mlocked = true;
    } else {
      const int err = errno;
      st.mlock_error = ErrnoText(err);
      spdlog::warn(
          "DRAM pool '{}' ({} bytes) is not locked in memory: mlock failed: {}; it may be "
          "swapped out. Raise RLIMIT_MEMLOCK (ulimit -l) or grant CAP_IPC_LOCK.",
          path, size, st.mlock_error);
    }
  }
  return std::unique_ptr<ShmRegion>(
      new ShmRegion(std::move(path), fd, static_cast<std::byte*>(p), size, std::move(st)));
}

ShmRegion::~ShmRegion() {
  // munmap also drops the lock, and unlink frees the tmpfs pages once every client
  // mapping is gone.
  // unlink before close: the name never exists without its lock held.
  munmap(base_, size_);
  unlink(path_.c_str());
  close(fd_);
}

}  // namespace adaptcache
