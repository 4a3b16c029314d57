// Starts the real adaptcached binary for integration tests.
//
// DaemonProcess forks and execs $ADAPTCACHE_BIN_DIR/adaptcached on a private temporary
// directory under /dev/shm (socket, pool file, ready file and log all live there), with
// a small pool (64 MiB by default), an ephemeral metrics port and no SSD tier (unless
// extra_args name --ssd-dir/--ssd-enabled or config_toml has an [ssd] section).
// Start() returns once the daemon has written its ready file and answered Health; Stop() sends SIGTERM and
// returns the exit status; Restart() stops and starts it again on the same directory.
// The destructor kills a still-running daemon (SIGKILL after a grace period) and
// removes the directory. On a failed start the daemon's log is part of the error.
//
// DaemonTest is a gtest fixture that owns one DaemonProcess per test
// (override DaemonOptions() to change flags).
//
// Thread safety: a DaemonProcess is used from the test's main thread only; the stubs
// and channels it hands out are thread safe (gRPC objects).
#pragma once

#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "adaptcache/v1/cache.grpc.pb.h"

namespace adaptcache::testing {

struct DaemonOptions {
  uint64_t pool_bytes = 64ull << 20;
  std::string log_level = "warn";
  // Extra command-line flags, e.g. {"--max-entry-bytes", "1MiB"}.
  std::vector<std::string> extra_args;
  // If non-empty, written to <dir>/adaptcached.toml and passed as --config.
  std::string config_toml;
  std::chrono::seconds start_timeout{30};
};

class DaemonProcess {
 public:
  explicit DaemonProcess(DaemonOptions opts = {}) : opts_(std::move(opts)) {
    char tmpl[] = "/dev/shm/adaptcache-it-XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    if (made != nullptr) dir_ = made;
  }
  ~DaemonProcess() {
    if (pid_ > 0) {
      channel_.reset();  // a connected client makes the daemon's graceful stop wait its drain deadline
      ::kill(pid_, SIGTERM);
      if (!WaitExit(std::chrono::seconds(10))) {
        ::kill(pid_, SIGKILL);
        WaitExit(std::chrono::seconds(10));
      }
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // Starts the daemon and waits until Health answers serving. Empty string on success,
  // else a description of what went wrong (including the daemon's log).
  std::string Start() {
    if (dir_.empty()) return "mkdtemp under /dev/shm failed";
    if (pid_ > 0) return "daemon already running";
    std::string bin = BinDir() + "/adaptcached";
    if (::access(bin.c_str(), X_OK) != 0) return "no executable at " + bin;
    std::error_code ec;
    std::filesystem::remove(ready_file(), ec);
    std::vector<std::string> args = {bin,
                                     "--socket", socket_path(),
                                     "--metrics-listen", "127.0.0.1:0",
                                     "--pool-size", std::to_string(opts_.pool_bytes),
                                     "--shm-dir", dir_,
                                     "--pool-name", "it",
                                     "--ready-file", ready_file(),
                                     "--log-level", opts_.log_level};
    if (!opts_.config_toml.empty()) {
      std::ofstream(dir_ + "/adaptcached.toml") << opts_.config_toml;
      args.push_back("--config");
      args.push_back(dir_ + "/adaptcached.toml");
    }
    // No SSD tier unless the test sets one up: the daemon's default directory is shared
    // (~/.local/state/adaptcache) and parallel tests must never share or fill it.
    bool ssd_set = opts_.config_toml.find("[ssd]") != std::string::npos;
    for (const auto& a : opts_.extra_args) ssd_set |= a == "--ssd-dir" || a == "--ssd-enabled";
    if (!ssd_set) {
      args.push_back("--ssd-dir");
      args.push_back("");
    }
    for (const auto& a : opts_.extra_args) args.push_back(a);

    pid_t pid = ::fork();
    if (pid < 0) return "fork failed";
    if (pid == 0) {
      FILE* log = std::fopen(log_path().c_str(), "a");
      if (log != nullptr) {
        ::dup2(fileno(log), 1);
        ::dup2(fileno(log), 2);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    exit_status_ = -1;

    const auto deadline = std::chrono::steady_clock::now() + opts_.start_timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return "daemon exited during start (status " + std::to_string(status) + "):\n" + Log();
      }
      if (ReadReadyFile()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (ready_.empty()) return "daemon wrote no ready file in time:\n" + Log();
    channel_ = grpc::CreateChannel("unix:" + socket_path(), grpc::InsecureChannelCredentials());
    while (std::chrono::steady_clock::now() < deadline) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      adaptcache::v1::HealthResponse resp;
      auto st = NewStub()->Health(&ctx, adaptcache::v1::HealthRequest(), &resp);
      if (st.ok() && resp.serving()) return "";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return "daemon never answered Health:\n" + Log();
  }

  // Sends `sig` and waits for the exit. Returns the raw wait status, or -1 on timeout
  // (the daemon is then killed with SIGKILL).
  int Stop(int sig = SIGTERM, std::chrono::seconds timeout = std::chrono::seconds(20)) {
    if (pid_ <= 0) return exit_status_;
    channel_.reset();
    ::kill(pid_, sig);
    if (!WaitExit(timeout)) {
      ::kill(pid_, SIGKILL);
      WaitExit(std::chrono::seconds(10));
      return -1;
    }
    return exit_status_;
  }

  // Stop (SIGTERM, or SIGKILL when `crash`) and start again; same directory and flags.
  std::string Restart(bool crash = false) {
    Stop(crash ? SIGKILL : SIGTERM);
    channel_.reset();
    ready_.clear();
    return Start();
  }

  // $ADAPTCACHE_BIN_DIR, else the build's bin/ (compiled in by
  // tests/integration/CMakeLists.txt), else build/bin.
  static std::string BinDir() {
    if (const char* env = std::getenv("ADAPTCACHE_BIN_DIR"); env != nullptr && *env != '\0') {
      return env;
    }
#ifdef ADAPTCACHE_DEFAULT_BIN_DIR
    return ADAPTCACHE_DEFAULT_BIN_DIR;
#else
    return "build/bin";
#endif
  }

  std::unique_ptr<adaptcache::v1::AdaptCache::Stub> NewStub() {
    return adaptcache::v1::AdaptCache::NewStub(channel_);
  }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

  pid_t pid() const { return pid_; }
  int exit_status() const { return exit_status_; }  // raw wait status after Stop()
  const std::string& dir() const { return dir_; }
  std::string socket_path() const { return dir_ + "/adaptcached.sock"; }
  std::string target() const { return "unix:" + socket_path(); }
  std::string ready_file() const { return dir_ + "/ready"; }
  std::string log_path() const { return dir_ + "/daemon.log"; }
  // From the ready file (valid after a successful Start()).
  int metrics_port() const {
    auto it = ready_.find("metrics_port");
    return it == ready_.end() ? -1 : std::atoi(it->second.c_str());
  }
  int tcp_port() const {  // 0 without --tcp-listen
    auto it = ready_.find("tcp_port");
    return it == ready_.end() ? -1 : std::atoi(it->second.c_str());
  }
  std::string pool_path() const {
    auto it = ready_.find("shm_path");
    return it == ready_.end() ? "" : it->second;
  }
  std::string Log() const {
    std::ifstream in(log_path());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  bool WaitExit(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_ || r < 0) {
        exit_status_ = r == pid_ ? status : -1;
        pid_ = -1;
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // The ready file is written atomically (rename) as key=value lines.
  bool ReadReadyFile() {
    std::ifstream in(ready_file());
    if (!in) return false;
    std::map<std::string, std::string> kv;
    std::string line;
    while (std::getline(in, line)) {
      auto eq = line.find('=');
      if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
    }
    if (kv.find("pid") == kv.end() || std::atoi(kv["pid"].c_str()) != pid_) return false;
    ready_ = std::move(kv);
    return true;
  }

  DaemonOptions opts_;
  std::string dir_;
  pid_t pid_ = -1;
  int exit_status_ = -1;
  std::map<std::string, std::string> ready_;
  std::shared_ptr<grpc::Channel> channel_;
};

// One daemon per test.
class DaemonTest : public ::testing::Test {
 protected:
  virtual DaemonOptions Options() { return {}; }
  void SetUp() override {
    daemon_ = std::make_unique<DaemonProcess>(Options());
    std::string err = daemon_->Start();
    ASSERT_EQ(err, "");
    stub_ = daemon_->NewStub();
  }
  void TearDown() override {
    stub_.reset();
    daemon_.reset();
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<adaptcache::v1::AdaptCache::Stub> stub_;
};

}  // namespace adaptcache::testing
