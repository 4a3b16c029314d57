#include "storage/fault_injection.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace adaptcache {

void FaultInjector::Add(const FaultRule& rule) {
  std::lock_guard<std::mutex> l(mu_);
  rules_.push_back(rule);
  armed_.store(true, std::memory_order_relaxed);
}

void FaultInjector::Clear() {
  std::lock_guard<std::mutex> l(mu_);
  rules_.clear();
  armed_.store(false, std::memory_order_relaxed);
}

FaultDecision FaultInjector::DecideSlow(IoOp op, const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  for (FaultRule& r : rules_) {
    if (r.count == 0 || r.op != op) continue;
    if (!r.path_contains.empty() && path.find(r.path_contains) == std::string::npos) continue;
    if (r.skip > 0) {
      --r.skip;
      continue;
    }
    if (r.count > 0) --r.count;
    fired_.fetch_add(1, std::memory_order_relaxed);
    return FaultDecision{r.kind, true, r.error, r.blocks, r.bit};
  }
  return {};
}

absl::Status FlipBitInFile(const std::string& path, uint64_t offset, int bit) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  unsigned char b = 0;
  absl::Status st;
  if (::pread(fd, &b, 1, static_cast<off_t>(offset)) != 1) {
    st = absl::OutOfRangeError(absl::StrCat("read ", path, " at ", offset));
  } else {
    b ^= static_cast<unsigned char>(1u << (bit & 7));
    if (::pwrite(fd, &b, 1, static_cast<off_t>(offset)) != 1 || ::fsync(fd) != 0)
      st = absl::InternalError(absl::StrCat("write ", path, ": ", std::strerror(errno)));
  }
  ::close(fd);
  return st;
}

}  // namespace adaptcache
