// The metrics HTTP endpoint: GET /metrics (Prometheus text format 0.0.4) and GET
// /healthz ("ok" with 200 while `healthy()` says so, else 503), served by cpp-httplib
// on its own small thread pool.
//
// Thread safety: Start() and Stop() from one thread; handlers run on httplib's threads.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/metrics.h"

namespace httplib {
class Server;
}

namespace adaptcache::server {

class MetricsHttpServer {
 public:
  MetricsHttpServer(MetricsRegistry* registry, std::function<bool()> healthy);
  ~MetricsHttpServer();  // stops the server
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Binds host:port (port 0 = ephemeral) and starts serving; returns the bound port.
  absl::StatusOr<int> Start(const std::string& host, int port);
  void Stop();

 private:
  MetricsRegistry* registry_;
  std::function<bool()> healthy_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
};

}  // namespace adaptcache::server
