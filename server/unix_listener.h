// The Unix-socket listener of a daemon with tenants (a single-tenant daemon lets gRPC
// listen). The daemon accepts connections itself, records the
// peer's credentials (SO_PEERCRED: uid, gid) for tenant identification (server/auth.h)
// and hands each connection to gRPC, which reports it as peer "fd:<fd>".
//
// Thread safety: Start and Stop from one thread; the accept loop runs on its own.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "server/auth.h"

namespace adaptcache::server {

class UnixListener {
 public:
  // Binds and listens on `path` (mode 0600; the caller has removed a stale socket).
  static absl::StatusOr<std::unique_ptr<UnixListener>> Listen(const std::string& path);
  ~UnixListener();
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // Accepts until Stop; `auth` (optional) learns every peer's credentials.
  void Start(grpc::Server* server, Auth* auth);
  // Stops accepting (connections already handed over stay with gRPC).
  void Stop();

 private:
  explicit UnixListener(int fd) : fd_(fd) {}
  void Loop(grpc::Server* server, Auth* auth);

  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace adaptcache::server
