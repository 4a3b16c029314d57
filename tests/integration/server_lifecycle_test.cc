// Start-up, restart and shutdown of the real daemon.
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/integration/daemon_fixture.h"
#include "tests/integration/server_test_util.h"
#include "tests/integration/tiering_test_util.h"

namespace adaptcache::testing {
namespace {

bool Exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

unsigned ModeOf(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 ? st.st_mode & 07777 : ~0u;
}

// Runs a second adaptcached on `dir` (8 MiB pool, no SSD) with `args` until it exits,
// which it is expected to do at start (a timeout kills one that serves, exit 124).
// Returns its exit code; its output goes to *log.
int RunSecondDaemon(const std::string& dir, const std::string& args, std::string* log) {
  const std::string out = dir + "/second.log";
  const std::string cmd = "timeout 30 " + DaemonProcess::BinDir() +
                          "/adaptcached --pool-size 8MiB --ssd-dir '' --shm-dir " + dir + " " +
                          args + " > " + out + " 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream in(out);
  log->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The pool files named adaptcache-* (the second daemon's default pool name) in `dir`.
int DefaultPoolFiles(const std::string& dir) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    n += e.path().filename().string().rfind("adaptcache-", 0) == 0;
  }
  return n;
}

bool Healthy(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::HealthResponse resp;
  return v1::AdaptCache::NewStub(channel)->Health(&ctx, v1::HealthRequest(), &resp).ok() &&
         resp.serving();
}

TEST(ServerLifecycleTest, SigtermAndSigintExitCleanlyAndRemoveFiles) {
  for (int sig : {SIGTERM, SIGINT}) {
    DaemonProcess d;
    ASSERT_EQ(d.Start(), "");
    const std::string pool = d.pool_path();
    ASSERT_FALSE(pool.empty());
    EXPECT_TRUE(Exists(pool));
    EXPECT_TRUE(Exists(d.socket_path()));
    struct stat st {};
    ASSERT_EQ(::stat(d.socket_path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    int status = d.Stop(sig);
    ASSERT_TRUE(WIFEXITED(status)) << status << "\n" << d.Log();
    EXPECT_EQ(WEXITSTATUS(status), 0) << d.Log();
    EXPECT_FALSE(Exists(pool));
    EXPECT_FALSE(Exists(d.socket_path()));
    EXPECT_FALSE(Exists(d.ready_file()));
  }
}

TEST(ServerLifecycleTest, RestartAfterKillReplacesStaleSocketAndStartsEmpty) {
  DaemonProcess d;
  ASSERT_EQ(d.Start(), "");
  auto stub = d.NewStub();
  ASSERT_TRUE(PutBytes(stub.get(), Header("ns", TestKey(1)),
                       RandomBytes(ShapeBytes(SmallShape()), 1))
                  .ok());
  const std::string old_pool = d.pool_path();
  ASSERT_EQ(d.Restart(/*crash=*/true), "");  // SIGKILL leaves the socket behind
  EXPECT_NE(d.pool_path(), old_pool);
  stub = d.NewStub();
  std::string c;
  EXPECT_EQ(GetStream(stub.get(), "ns", TestKey(1), &c).error_code(), grpc::StatusCode::NOT_FOUND);
  // A killed daemon cannot unlink its pool file; the new one removed it at start.
  EXPECT_FALSE(Exists(old_pool));
  EXPECT_TRUE(Exists(d.pool_path()));
  std::filesystem::remove(old_pool);  // in case it did not
}

TEST(ServerLifecycleTest, SecondDaemonOnTheSameSocketIsRefused) {
  DaemonProcess first;
  ASSERT_EQ(first.Start(), "");
  std::string log;
  EXPECT_EQ(RunSecondDaemon(first.dir(),
                            "--metrics-listen 127.0.0.1:0 --socket " + first.socket_path(), &log),
            1);
  EXPECT_NE(log.find("another daemon"), std::string::npos) << log;
  // The first one is unaffected.
  EXPECT_TRUE(Healthy(first.channel()));
}

TEST(ServerLifecycleTest, SecondDaemonOnTheSameTcpPortFailsAtStart) {
  DaemonOptions o;
  o.extra_args = {"--tcp-listen", "127.0.0.1:0", "--insecure-tcp"};
  DaemonProcess first(o);
  ASSERT_EQ(first.Start(), "");
  const int port = first.tcp_port();
  ASSERT_GT(port, 0);
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  std::string log;
  EXPECT_EQ(RunSecondDaemon(first.dir(),
                            "--metrics-listen 127.0.0.1:0 --socket " + first.dir() +
                                "/second.sock --insecure-tcp --tcp-listen " + listen,
                            &log),
            1)
      << log;
  EXPECT_NE(log.find("is " + listen + " in use"), std::string::npos) << log;
  EXPECT_EQ(DefaultPoolFiles(first.dir()), 0);  // the failed one removed its pool
  // The port is still the first daemon's alone.
  EXPECT_TRUE(Healthy(grpc::CreateChannel(listen, grpc::InsecureChannelCredentials())));
}

TEST(ServerLifecycleTest, SecondDaemonOnTheSameMetricsPortFailsAtStart) {
  DaemonProcess first;
  ASSERT_EQ(first.Start(), "");
  const int port = first.metrics_port();
  ASSERT_GT(port, 0);
  std::string log;
  EXPECT_EQ(RunSecondDaemon(first.dir(),
                            "--metrics-listen 127.0.0.1:" + std::to_string(port) + " --socket " +
                                first.dir() + "/second.sock",
                            &log),
            1)
      << log;
  EXPECT_NE(log.find("port " + std::to_string(port) + " is in use"), std::string::npos) << log;
  EXPECT_EQ(DefaultPoolFiles(first.dir()), 0);
  EXPECT_TRUE(Healthy(first.channel()));
}

TEST(ServerLifecycleTest, PoolAndSsdFilesArePrivate) {
  SsdDir ssd;
  const std::string tier = ssd.path() + "/tier";
  DaemonProcess d(TieredOptions(tier));
  ASSERT_EQ(d.Start(), "");
  EXPECT_EQ(ModeOf(d.pool_path()), 0600u);
  auto stub = d.NewStub();
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(PutBytes(stub.get(), Header("ns", TestKey(i)),
                         RandomBytes(ShapeBytes(SmallShape()), i + 1))
                    .ok());
  }
  // RocksDB creates index files (WAL, SST) while serving with 0644 & ~umask: the daemon's
  // umask must be 077 whatever the one it was started with (the test's, usually 022).
  std::ifstream proc("/proc/" + std::to_string(d.pid()) + "/status");
  std::string line, umask;
  while (std::getline(proc, line)) {
    if (line.rfind("Umask:", 0) == 0) umask = line.substr(line.find_first_not_of(" \t", 6));
  }
  EXPECT_EQ(umask, "0077");
  const int status = d.Stop();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << d.Log();
  EXPECT_EQ(ModeOf(tier), 0700u);
  int files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(tier)) {
    const bool dir = e.is_directory();
    files += !dir;
    EXPECT_EQ(ModeOf(e.path()), dir ? 0700u : 0600u) << e.path() << " " << std::oct << ModeOf(e.path());
  }
  EXPECT_GT(files, 3);
}

TEST(ServerLifecycleTest, BadConfigFailsWithAClearMessage) {
  DaemonOptions o;
  o.config_toml = "[limits]\nmax_entry_bytes = \"lots\"\n";
  DaemonProcess d(o);
  std::string err = d.Start();
  EXPECT_NE(err.find("exited during start"), std::string::npos) << err;
  EXPECT_NE(err.find("max_entry_bytes"), std::string::npos) << err;
}

// A directory reads as an empty file: the daemon used to start on its defaults.
TEST(ServerLifecycleTest, ConfigThatIsADirectoryStopsTheStart) {
  char tmpl[] = "/dev/shm/ac-cfgdir-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::string log;
  const int code = RunSecondDaemon(dir, "--socket " + dir + "/s.sock --metrics-listen '' --config " + dir, &log);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(code, 2) << log;  // a configuration error, as for any bad --config
  EXPECT_NE(log.find("is a directory"), std::string::npos) << log;
  EXPECT_EQ(log.find("serving"), std::string::npos) << log;
}

// The pool's allocation and mlock are logged while they run (a pool of tens of GiB takes
// seconds to minutes); $ADAPTCACHE_STARTUP_PROGRESS_MS shortens the 2 s interval.
TEST(ServerLifecycleTest, StartupLogsPoolAllocationProgress) {
  ::setenv("ADAPTCACHE_STARTUP_PROGRESS_MS", "1", 1);
  DaemonOptions o;
  o.pool_bytes = 512ull << 20;
  o.log_level = "info";
  DaemonProcess d(o);
  const std::string err = d.Start();
  ::unsetenv("ADAPTCACHE_STARTUP_PROGRESS_MS");
  ASSERT_EQ(err, "");
  const std::string log = d.Log();
  const size_t begin = log.find("allocating the DRAM pool: 536870912 bytes");
  const size_t progress = log.find("starting (");
  const size_t ready = log.find("storage tiers ready in");
  const size_t serving = log.find("serving on");
  ASSERT_NE(begin, std::string::npos) << log;
  ASSERT_NE(progress, std::string::npos) << log;
  ASSERT_NE(ready, std::string::npos) << log;
  ASSERT_NE(serving, std::string::npos) << log;
  EXPECT_LT(begin, progress) << log;
  EXPECT_LT(progress, ready) << log;
  EXPECT_LT(ready, serving) << log;
  EXPECT_NE(log.find("of 0.5 GiB allocated"), std::string::npos) << log;
}

TEST(ServerLifecycleTest, NamespaceDefaultCodecFromConfigFile) {
  DaemonOptions o;
  o.config_toml = "[codec]\ndefault = \"raw\"\n[namespaces.\"model-a\"]\ncodec = \"raw\"\n";
  DaemonProcess d(o);
  ASSERT_EQ(d.Start(), "");
  auto stub = d.NewStub();
  v1::PutResponse resp;
  ASSERT_TRUE(PutBytes(stub.get(), Header("model-a", TestKey(1), SmallShape(), ""),
                       RandomBytes(ShapeBytes(SmallShape()), 2), 4096, &resp)
                  .ok());
  EXPECT_EQ(resp.entry().codec(), "raw");
}

}  // namespace
}  // namespace adaptcache::testing
