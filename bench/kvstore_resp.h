// A minimal RESP2 client for the kvstore benchmark: SET and GET of binary values over
// TCP or a Unix socket, GET reading the bulk reply straight into a caller buffer (so
// Redis is measured the way the AdaptCache client is: bytes into caller memory).
// Not thread safe: one connection per thread.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace adaptcache::bench {

class RespClient {
 public:
  ~RespClient() {
    if (fd_ >= 0) ::close(fd_);
  }

  static absl::StatusOr<std::unique_ptr<RespClient>> ConnectTcp(const std::string& host, int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError("socket() failed");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
      ::close(fd);
      return absl::InvalidArgumentError("bad IPv4 address");
    }
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      ::close(fd);
      return absl::UnavailableError(absl::StrCat("connect to redis ", host, ":", port, ": ", std::strerror(errno)));
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return std::unique_ptr<RespClient>(new RespClient(fd));
  }

  static absl::StatusOr<std::unique_ptr<RespClient>> ConnectUnix(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError("socket() failed");
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof(a.sun_path)) {
      ::close(fd);
      return absl::InvalidArgumentError("socket path too long");
    }
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      ::close(fd);
      return absl::UnavailableError(absl::StrCat("connect to redis ", path, ": ", std::strerror(errno)));
    }
    return std::unique_ptr<RespClient>(new RespClient(fd));
  }

  // SET key value; expects +OK.
  absl::Status Set(const std::string& key, std::span<const std::byte> value) {
    const std::string head = absl::StrCat("*3\r\n$3\r\nSET\r\n$", key.size(), "\r\n", key, "\r\n$", value.size(), "\r\n");
    iovec iov[3] = {{const_cast<char*>(head.data()), head.size()},
                    {const_cast<std::byte*>(value.data()), value.size()},
                    {const_cast<char*>("\r\n"), 2}};
    if (auto st = WriteAll(iov, 3); !st.ok()) return st;
    auto line = ReadLine();
    if (!line.ok()) return line.status();
    if (*line != "+OK") return absl::InternalError(absl::StrCat("redis SET: ", *line));
    return absl::OkStatus();
  }

  // GET key into `out`; returns the value size. NotFound for a nil reply.
  absl::StatusOr<size_t> GetInto(const std::string& key, std::span<std::byte> out) {
    const std::string cmd = absl::StrCat("*2\r\n$3\r\nGET\r\n$", key.size(), "\r\n", key, "\r\n");
    iovec iov[1] = {{const_cast<char*>(cmd.data()), cmd.size()}};
    if (auto st = WriteAll(iov, 1); !st.ok()) return st;
    auto line = ReadLine();
    if (!line.ok()) return line.status();
    if (line->empty() || (*line)[0] != '$') return absl::InternalError(absl::StrCat("redis GET: ", *line));
    const long long n = std::stoll(line->substr(1));
    if (n < 0) return absl::NotFoundError("nil");
    if (static_cast<size_t>(n) > out.size()) return absl::InvalidArgumentError("value larger than buffer");
    if (auto st = ReadExact(out.data(), static_cast<size_t>(n)); !st.ok()) return st;
    char crlf[2];
    if (auto st = ReadExact(reinterpret_cast<std::byte*>(crlf), 2); !st.ok()) return st;
    return static_cast<size_t>(n);
  }

  // A command with simple arguments (FLUSHALL, PING, CONFIG ...); returns the reply line.
  absl::StatusOr<std::string> Command(const std::vector<std::string>& args) {
    std::string cmd = absl::StrCat("*", args.size(), "\r\n");
    for (const auto& a : args) absl::StrAppend(&cmd, "$", a.size(), "\r\n", a, "\r\n");
    iovec iov[1] = {{cmd.data(), cmd.size()}};
    if (auto st = WriteAll(iov, 1); !st.ok()) return st;
    return ReadLine();
  }

 private:
  explicit RespClient(int fd) : fd_(fd), buf_(64 << 10) {}

  absl::Status WriteAll(iovec* iov, int count) {
    while (count > 0) {
      ssize_t n = ::writev(fd_, iov, count);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return absl::UnavailableError(absl::StrCat("redis write: ", std::strerror(errno)));
      size_t left = static_cast<size_t>(n);
      while (count > 0 && left >= iov->iov_len) {
        left -= iov->iov_len;
        ++iov;
        --count;
      }
      if (count > 0) {
        iov->iov_base = static_cast<char*>(iov->iov_base) + left;
        iov->iov_len -= left;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Fill() {
    if (begin_ == end_) begin_ = end_ = 0;
    ssize_t n;
    do {
      n = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return absl::UnavailableError("redis connection closed");
    end_ += static_cast<size_t>(n);
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> ReadLine() {
    while (true) {
      for (size_t i = begin_; i + 1 < end_; ++i) {
        if (buf_[i] == '\r' && buf_[i + 1] == '\n') {
          std::string line(buf_.data() + begin_, i - begin_);
          begin_ = i + 2;
          return line;
        }
      }
      if (begin_ > 0) {
        std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (end_ == buf_.size()) return absl::InternalError("redis reply line too long");
      if (auto st = Fill(); !st.ok()) return st;
    }
  }

  // Buffered bytes first, then straight from the socket into `dst`.
  absl::Status ReadExact(std::byte* dst, size_t n) {
    const size_t buffered = std::min(n, end_ - begin_);
    std::memcpy(dst, buf_.data() + begin_, buffered);
    begin_ += buffered;
    size_t got = buffered;
    while (got < n) {
      ssize_t r = ::read(fd_, dst + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return absl::UnavailableError("redis connection closed mid-value");
      got += static_cast<size_t>(r);
    }
    return absl::OkStatus();
  }

  int fd_;
  std::vector<char> buf_;
  size_t begin_ = 0, end_ = 0;
};

}  // namespace adaptcache::bench
