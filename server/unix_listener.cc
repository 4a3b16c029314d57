#include "server/unix_listener.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include <grpcpp/server_posix.h>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace adaptcache::server {

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Listen(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) return absl::InvalidArgumentError("socket path too long");
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket(AF_UNIX): ", std::strerror(errno)));
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  const mode_t old = ::umask(0177);  // the socket is 0600 from its first moment
  const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int err = errno;
  ::umask(old);
  if (rc != 0 || ::listen(fd, 1024) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("cannot listen on unix:", path, ": ", std::strerror(rc != 0 ? err : errno)));
  }
  ::chmod(path.c_str(), 0600);
  return std::unique_ptr<UnixListener>(new UnixListener(fd));
}

UnixListener::~UnixListener() {
  Stop();
  if (fd_ >= 0) ::close(fd_);
}

void UnixListener::Start(grpc::Server* server, Auth* auth) {
  thread_ = std::thread([this, server, auth] { Loop(server, auth); });
}

void UnixListener::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void UnixListener::Loop(grpc::Server* server, Auth* auth) {
  while (!stop_.load()) {
    pollfd p{fd_, POLLIN, 0};
    const int n = ::poll(&p, 1, 100);  // wakes up to see stop_
    if (n <= 0) continue;
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
        spdlog::warn("unix socket: accept failed: {}", std::strerror(errno));
        ::usleep(10'000);  // EMFILE and the like: do not spin
      }
      continue;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      ::close(c);
      continue;
    }
    // Recorded before gRPC can read a byte of the connection.
    if (auth != nullptr) auth->NoteUnixPeer(c, cred.uid, cred.gid);
    grpc::AddInsecureChannelFromFd(server, c);
  }
}

}  // namespace adaptcache::server
