#include "server/metrics_http.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace adaptcache::server {

MetricsHttpServer::MetricsHttpServer(MetricsRegistry* registry, std::function<bool()> healthy)
    : registry_(registry), healthy_(std::move(healthy)) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

absl::StatusOr<int> MetricsHttpServer::Start(const std::string& host, int port) {
  if (http_) return absl::FailedPreconditionError("metrics server already started");
  http_ = std::make_unique<httplib::Server>();
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry_->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http_->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    bool ok = healthy_();
    res.status = ok ? 200 : 503;
    res.set_content(ok ? "ok\n" : "not serving\n", "text/plain");
  });
  // "[::1]" style hosts are passed to getaddrinfo without brackets.
  std::string bind_host = host;
  if (bind_host.size() > 2 && bind_host.front() == '[') {
    bind_host = bind_host.substr(1, bind_host.size() - 2);
  }
  // httplib's default options set SO_REUSEPORT, which lets a second daemon share the port.
  http_->set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  errno = 0;
  int bound = port == 0 ? http_->bind_to_any_port(bind_host)
                        : (http_->bind_to_port(bind_host, port) ? port : -1);
  if (bound <= 0) {
    const int err = errno;
    http_.reset();
    return absl::UnavailableError(absl::StrCat(
        "cannot bind the metrics endpoint to ", host, ":", port,
        err == EADDRINUSE ? absl::StrCat(": port ", port, " is in use (another daemon?)")
                          : err != 0 ? absl::StrCat(": ", std::strerror(err)) : ""));
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  thread_ = std::thread([this, done] {
    http_->listen_after_bind();
    done->store(true);
  });
  // stop() only takes effect once the accept loop runs, so wait for it here.
  while (!http_->is_running() && !done->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return bound;
}

void MetricsHttpServer::Stop() {
  if (!http_) return;
  http_->stop();
  if (thread_.joinable()) thread_.join();
  http_.reset();
}

}  // namespace adaptcache::server
