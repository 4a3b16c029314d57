// Start-up, restart and shutdown of the real daemon.
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/integration/daemon_fixture.h"
#include "tests/integration/server_test_util.h"

namespace adaptcache::testing {
namespace {

bool Exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
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
  // A killed daemon cannot unlink its pool file; clean up what it left.
  std::filesystem::remove(old_pool);
}

TEST(ServerLifecycleTest, SecondDaemonOnTheSameSocketIsRefused) {
  DaemonProcess first;
  ASSERT_EQ(first.Start(), "");
  std::string cmd = DaemonProcess::BinDir() +
                    "/adaptcached --pool-size 8MiB --metrics-listen 127.0.0.1:0 --shm-dir " +
                    first.dir() + " --socket " + first.socket_path() + " > " + first.dir() +
                    "/second.log 2>&1";
  int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::ifstream in(first.dir() + "/second.log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("another daemon"), std::string::npos) << log;
  // The first one is unaffected.
  grpc::ClientContext ctx;
  v1::HealthResponse resp;
  EXPECT_TRUE(first.NewStub()->Health(&ctx, v1::HealthRequest(), &resp).ok());
}

TEST(ServerLifecycleTest, BadConfigFailsWithAClearMessage) {
  DaemonOptions o;
  o.config_toml = "[limits]\nmax_entry_bytes = \"lots\"\n";
  DaemonProcess d(o);
  std::string err = d.Start();
  EXPECT_NE(err.find("exited during start"), std::string::npos) << err;
  EXPECT_NE(err.find("max_entry_bytes"), std::string::npos) << err;
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
