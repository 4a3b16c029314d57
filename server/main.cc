// adaptcached: the AdaptCache daemon. See docs/operations.md ("Running the daemon").
#include <sys/stat.h>

#include <cstdio>
#include <iostream>

#include "absl/synchronization/mutex.h"
#include "server/config.h"
#include "server/daemon.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  using namespace adaptcache::server;
  // Debian's Abseil checks every Mutex acquisition against a process-wide lock graph
  // (one global lock: it serialises the DRAM tier's readers). Tests keep the check.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  auto cl = ParseCommandLine(argc, argv);
  if (!cl.ok()) {
    std::fprintf(stderr, "adaptcached: %s\n", std::string(cl.status().message()).c_str());
    return 2;
  }
  if (cl->exit_now) return cl->exit_code;
  if (cl->print_config) {
    ServerConfig cfg = cl->config;
    if (cfg.pool_bytes == 0) {
      auto bytes = AutoPoolBytes(cfg.shm_dir);
      if (bytes.ok()) cfg.pool_bytes = *bytes;  // show what "auto" resolves to here
    }
    std::cout << ToToml(cfg);
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(cl->config.log_level));
  BlockShutdownSignals();
  // The daemon's files hold tenants' bytes; RocksDB creates its files with 0644 & ~umask.
  ::umask(077);
  return RunDaemon(cl->config);
}
