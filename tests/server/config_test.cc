#include "server/config.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace adaptcache::server {
namespace {

absl::StatusOr<CommandLine> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "adaptcached");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data());
}

TEST(ConfigTest, DefaultsAreValid) {
  ServerConfig cfg;
  EXPECT_TRUE(Validate(cfg).ok());
  EXPECT_EQ(cfg.socket, "/tmp/adaptcache/adaptcached.sock");
  EXPECT_EQ(cfg.metrics_listen, "127.0.0.1:9464");
  EXPECT_EQ(cfg.tcp_listen, "");
  EXPECT_EQ(cfg.pool_bytes, 0u);  // auto
  EXPECT_EQ(cfg.CodecFor("anything"), "raw");
  EXPECT_TRUE(cfg.SsdOn());  // SSD tier on by default, directory and size chosen at start
  EXPECT_EQ(cfg.ssd_dir, "auto");
  EXPECT_EQ(cfg.ssd_segment_count, 0u);
  EXPECT_TRUE(cfg.ssd_flush_on_shutdown);
}

TEST(ConfigTest, ParseByteSize) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("64MiB"), 64ull << 20);
  EXPECT_EQ(*ParseByteSize("2g"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("1KB"), 1024u);
  EXPECT_FALSE(ParseByteSize("").ok());
  EXPECT_FALSE(ParseByteSize("MiB").ok());
  EXPECT_FALSE(ParseByteSize("12 parsecs").ok());
  EXPECT_FALSE(ParseByteSize("-1").ok());
  EXPECT_FALSE(ParseByteSize("99999999999999999999").ok());
  EXPECT_FALSE(ParseByteSize("17179869184TiB").ok());  // overflows
  EXPECT_EQ(FormatByteSize(64ull << 20), "64MiB");
  EXPECT_EQ(FormatByteSize(1000), "1000");
}

TEST(ConfigTest, TomlOverridesDefaults) {
  ServerConfig cfg;
  ASSERT_TRUE(ApplyToml(R"(
[server]
socket = "/run/ac/d.sock"
tcp_listen = "0.0.0.0:7000"
insecure_tcp = true
metrics_listen = "127.0.0.1:0"
threads = 8
[pool]
size = "128MiB"
mlock = false
[leases]
default_ms = 1000
max_ms = 2000
[limits]
max_entry_bytes = 1048576
[codec]
default = "raw"
[namespaces."llama-3-8b/bf16/tp1"]
codec = "raw"
)",
                        "test.toml", cfg)
                  .ok());
  EXPECT_EQ(cfg.socket, "/run/ac/d.sock");
  EXPECT_EQ(cfg.tcp_listen, "0.0.0.0:7000");
  EXPECT_EQ(cfg.threads, 8u);
  EXPECT_EQ(cfg.pool_bytes, 128ull << 20);
  EXPECT_FALSE(cfg.mlock);
  EXPECT_TRUE(cfg.huge_pages);
  EXPECT_EQ(cfg.lease_default_ms, 1000u);
  EXPECT_EQ(cfg.max_entry_bytes, 1u << 20);
  ASSERT_EQ(cfg.namespaces.size(), 1u);
  EXPECT_EQ(cfg.CodecFor("llama-3-8b/bf16/tp1"), "raw");
  EXPECT_TRUE(Validate(cfg).ok());
}

// Each bad document fails with a message naming the problem, and leaves cfg alone.
TEST(ConfigTest, TomlErrorsAreClearAndChangeNothing) {
  struct Case {
    const char* toml;
    const char* expect;
  };
  const Case cases[] = {
      {"[server]\nsocket = \"/a.sock\"\nbogus = 1\n", "unknown key 'bogus' in [server]"},
      {"[nope]\nx = 1\n", "unknown section [nope]"},
      {"server = 3\n", "must be a table"},
      {"[server]\nthreads = \"eight\"\n", "must be an integer"},
      {"[server]\nthreads = -1\n", "must not be negative"},
      {"[server]\nthreads = 100000\n", "must be in [0, 4096]"},
      {"[pool]\nsize = \"12 parsecs\"\n", "unknown size unit"},
      {"[pool]\nsize = 1024\n", "must be in [4MiB"},
      {"[pool]\nmlock = \"yes\"\n", "must be a boolean"},
      {"[server]\nsocket = \"relative.sock\"\n", "absolute path"},
      {"[server]\nmetrics_listen = \"localhost\"\n", "host:port"},
      {"[server]\nmetrics_listen = \"127.0.0.1:70000\"\n", "port must be"},
      {"[server]\nlog_level = \"loud\"\n", "must be one of"},
      {"[codec]\ndefault = \"zstd-9\"\n", "'zstd-9'"},
      {"[namespaces.\"ns\"]\ncodec = \"nope\"\n", "'nope'"},
      {"[namespaces.\"ns\"]\nlevel = 3\n", "unknown key 'level'"},
      {"[namespaces.\"ns\"]\nalpha = -1\n", "namespaces.\"ns\".alpha: must be >= 0"},
      {"[namespaces.\"ns\"]\nmax_loss = \"lots\"\n", "max_loss: must be a number >= 0 or \"inf\""},
      {"[namespaces.\"ns\"]\navg_loss = true\n", "avg_loss must be a number"},
      {"[namespaces.\"\"]\ncodec = \"raw\"\n", "namespace ''"},
      {"[server\n", "test.toml:1"},
  };
  for (const auto& c : cases) {
    ServerConfig cfg;
    cfg.threads = 7;
    auto st = ApplyToml(c.toml, "test.toml", cfg);
    ASSERT_FALSE(st.ok()) << c.toml;
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.toml;
    EXPECT_NE(std::string(st.message()).find(c.expect), std::string::npos)
        << c.toml << " -> " << st.message();
    EXPECT_EQ(cfg.threads, 7u);
    EXPECT_TRUE(cfg.namespaces.empty());
  }
}

TEST(ConfigTest, NamespaceQualityBudgets) {
  ServerConfig cfg;
  ASSERT_TRUE(ApplyToml("[namespaces.\"chat\"]\nalpha = 0.5\nmax_loss = \"inf\"\n"
                        "[namespaces.\"legal\"]\ncodec = \"fp8\"\nmax_loss = 0.001\navg_loss = -1\n",
                        "test.toml", cfg)
                  .ok());
  ASSERT_EQ(cfg.namespaces.size(), 2u);
  EXPECT_EQ(cfg.namespaces["chat"].alpha, "0.5");
  EXPECT_EQ(cfg.namespaces["chat"].max_loss, "inf");
  EXPECT_EQ(cfg.CodecFor("chat"), "raw");  // no codec of its own: the default
  EXPECT_EQ(cfg.CodecFor("legal"), "fp8");
  EXPECT_EQ(cfg.namespaces["legal"].max_loss, "0.001");
  EXPECT_TRUE(Validate(cfg).ok());
  // Round trip through --print-config's TOML.
  ServerConfig back;
  ASSERT_TRUE(ApplyToml(ToToml(cfg), "printed.toml", back).ok()) << ToToml(cfg);
  EXPECT_EQ(back.namespaces["legal"].max_loss, "0.001");
  EXPECT_EQ(back.namespaces["chat"].alpha, "0.5");
  cfg.namespaces["chat"].alpha = "x";
  EXPECT_FALSE(Validate(cfg).ok());
}

TEST(ConfigTest, CrossFieldValidation) {
  ServerConfig cfg;
  cfg.socket = "";
  EXPECT_NE(std::string(Validate(cfg).message()).find("no listener"), std::string::npos);
  cfg = ServerConfig{};
  cfg.lease_default_ms = 10;
  cfg.lease_max_ms = 5;
  EXPECT_NE(std::string(Validate(cfg).message()).find("exceeds max_ms"), std::string::npos);
  cfg = ServerConfig{};
  cfg.stream_chunk_bytes = 2 << 20;
  cfg.max_frame_bytes = 1 << 20;
  EXPECT_NE(std::string(Validate(cfg).message()).find("stream_chunk_bytes"), std::string::npos);
  cfg = ServerConfig{};
  cfg.socket = "/" + std::string(200, 'x');
  EXPECT_FALSE(Validate(cfg).ok());
  cfg = ServerConfig{};
  cfg.namespaces["bad\x01ns"].codec = "raw";
  EXPECT_FALSE(Validate(cfg).ok());
}

TEST(ConfigTest, PrintedConfigLoadsBackIdentically) {
  ServerConfig cfg;
  cfg.pool_bytes = 96ull << 20;
  cfg.tcp_listen = "[::1]:7001";
  cfg.insecure_tcp = true;
  cfg.log_level = "debug";
  cfg.mlock = false;
  cfg.max_frame_bytes = 123457;
  cfg.namespaces["team \"a\"/model"].codec = "raw";
  std::string text = ToToml(cfg);
  ServerConfig back;
  ASSERT_TRUE(ApplyToml(text, "printed", back).ok()) << text;
  EXPECT_EQ(ToToml(back), text);
  EXPECT_EQ(back.pool_bytes, cfg.pool_bytes);
  EXPECT_EQ(back.max_frame_bytes, 123457u);
  EXPECT_EQ(back.CodecFor("team \"a\"/model"), "raw");
}

TEST(ConfigTest, CommandLineLayersOverConfigFile) {
  char path[] = "/tmp/ac-config-test-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << "[server]\nthreads = 3\nlog_level = \"warn\"\n[pool]\nsize = \"64MiB\"\n";
  auto cl = Parse({"--config", path, "--threads", "5", "--mlock", "false", "--namespace-codec",
                   "m1=raw"});
  std::remove(path);
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(cl->config.threads, 5u);          // flag wins
  EXPECT_EQ(cl->config.log_level, "warn");    // from the file
  EXPECT_EQ(cl->config.pool_bytes, 64ull << 20);
  EXPECT_FALSE(cl->config.mlock);
  EXPECT_EQ(cl->config.CodecFor("m1"), "raw");
  EXPECT_FALSE(cl->print_config);
}

TEST(ConfigTest, CommandLineErrors) {
  EXPECT_FALSE(Parse({"--threads", "many"}).ok());
  EXPECT_FALSE(Parse({"--no-such-flag"}).ok());
  EXPECT_FALSE(Parse({"--pool-size", "1"}).ok());
  EXPECT_FALSE(Parse({"--namespace-codec", "noequals"}).ok());
  EXPECT_FALSE(Parse({"--namespace-codec", "ns=unknown-codec"}).ok());
  EXPECT_FALSE(Parse({"--mlock", "maybe"}).ok());
  auto missing = Parse({"--config", "/nonexistent/adaptcached.toml"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("/nonexistent/adaptcached.toml"),
            std::string::npos);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  auto pc = Parse({"--print-config"});
  ASSERT_TRUE(pc.ok());
  EXPECT_TRUE(pc->print_config);
}

// A directory opens as an empty stream: it used to be read as "no settings" and the
// daemon started on its defaults.
TEST(ConfigTest, ConfigThatIsADirectoryIsAnError) {
  char dir[] = "/tmp/ac-config-dir-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  auto cl = Parse({"--config", dir});
  ServerConfig cfg;
  auto direct = ApplyTomlFile(dir, cfg);
  rmdir(dir);
  ASSERT_FALSE(cl.ok());
  EXPECT_EQ(cl.status().code(), absl::StatusCode::kInvalidArgument) << cl.status();
  EXPECT_NE(std::string(cl.status().message()).find("is a directory"), std::string::npos) << cl.status();
  EXPECT_NE(std::string(cl.status().message()).find(dir), std::string::npos) << cl.status();
  EXPECT_EQ(direct.code(), absl::StatusCode::kInvalidArgument) << direct;
  // A pipe (--config <(...)) or /dev/null still reads as a file.
  EXPECT_TRUE(Parse({"--config", "/dev/null"}).ok());
}

TEST(ConfigTest, HelpListsEveryFlagWithItsDefault) {
  testing::internal::CaptureStdout();
  auto cl = Parse({"--help"});
  std::string out = testing::internal::GetCapturedStdout();
  ASSERT_TRUE(cl.ok());
  EXPECT_TRUE(cl->exit_now);
  EXPECT_EQ(cl->exit_code, 0);
  for (const auto& s : AllSettings()) {
    EXPECT_NE(out.find("--" + s.flag), std::string::npos) << s.flag;
  }
  EXPECT_NE(out.find("(default: \"/tmp/adaptcache/adaptcached.sock\")"), std::string::npos);
  EXPECT_NE(out.find("(default: \"auto\")"), std::string::npos);
}

TEST(ConfigTest, AutoPoolSize) {
  auto bytes = AutoPoolBytes("/dev/shm");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_GE(*bytes, 64ull << 20);
  EXPECT_EQ(*bytes % (2 << 20), 0u);
  EXPECT_FALSE(AutoPoolBytes("/nonexistent-dir").ok());
}

TEST(ConfigTest, SsdDirSettings) {
  auto off = Parse({"--ssd-dir", ""});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->config.SsdOn());
  auto disabled = Parse({"--ssd-enabled", "false"});
  ASSERT_TRUE(disabled.ok()) << disabled.status();
  EXPECT_FALSE(disabled->config.SsdOn());
  ServerConfig cfg;
  EXPECT_TRUE(ApplyToml("[ssd]\nenabled = false\n", "t", cfg).ok());
  EXPECT_FALSE(cfg.SsdOn());
  EXPECT_FALSE(Parse({"--ssd-dir", "relative/dir"}).ok());
  EXPECT_FALSE(Parse({"--ssd-segment-count", "2"}).ok());
  auto flush = Parse({"--ssd-flush-on-shutdown", "false", "--ssd-flush-timeout-ms", "500"});
  ASSERT_TRUE(flush.ok()) << flush.status();
  EXPECT_FALSE(flush->config.ssd_flush_on_shutdown);
  EXPECT_EQ(flush->config.ssd_flush_timeout_ms, 500u);
}

TEST(ConfigTest, DefaultSsdDir) {
  auto dir = DefaultSsdDir();
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(dir->front(), '/');
  EXPECT_NE(dir->find("adaptcache"), std::string::npos);
}

TEST(ConfigTest, AutoSsdSegmentCount) {
  char tmpl[] = "/tmp/ac-config-ssd-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  // A directory that does not exist yet is sized from its parent's filesystem; the
  // auto size is at most 4GiB, so 2GiB segments never reach 3: a clear error.
  auto big = AutoSsdSegmentCount(dir + "/new", 2ull << 30, 0);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("fewer than 3 segments"), std::string::npos);
  // More than the disk holds, when asked explicitly: refused.
  EXPECT_FALSE(AutoSsdSegmentCount(dir, 64ull << 30, 1u << 20).ok());
  // Auto on a directory of an earlier run keeps its segment count.
  for (int i = 0; i < 5; ++i) {
    std::ofstream(dir + "/segment-0000" + std::to_string(i) + ".log") << "x";
  }
  auto kept = AutoSsdSegmentCount(dir, 1ull << 20, 0);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, 5u);
  for (int i = 0; i < 5; ++i) std::remove((dir + "/segment-0000" + std::to_string(i) + ".log").c_str());
  // Small segments on an empty directory: between 3 and 16.
  auto fresh = AutoSsdSegmentCount(dir, 1ull << 20, 0);
  if (fresh.ok()) {
    EXPECT_GE(*fresh, 3u);
    EXPECT_LE(*fresh, 16u);
  }
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace adaptcache::server
