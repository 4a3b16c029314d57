// Helpers for the shm cleanup tests: a temporary directory under /dev/shm, pids of a dead
// and of a live process, and files with a given size.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/storage/temp_dir.h"

namespace adaptcache::testing {

// A TempDir template for a private directory under /dev/shm.
inline constexpr const char* kShmDirTemplate = "/dev/shm/ac-shm-test-XXXXXX";

// The pid of a child that has exited and been reaped: no process has it (pids are not
// reused this soon).
inline pid_t DeadPid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

// A child that sleeps until the destructor kills it: a live process of another daemon.
class LiveChild {
 public:
  LiveChild() : pid_(::fork()) {
    if (pid_ == 0) {
      for (;;) ::pause();
    }
  }
  ~LiveChild() {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  LiveChild(const LiveChild&) = delete;
  LiveChild& operator=(const LiveChild&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
};

// Creates `path` (0600) holding `bytes` bytes; false on failure.
inline bool WriteFile(const std::string& path, size_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const std::vector<char> data(bytes, 'x');
  const bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  ::close(fd);
  return ok;
}

inline bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

inline unsigned ModeOf(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : ~0u;
}

}  // namespace adaptcache::testing
