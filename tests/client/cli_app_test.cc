#include "client/cli_app.h"

#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace adaptcache::client {
namespace {

ParseOutcome Parse(std::vector<std::string> args, CliOptions* o) {
  args.insert(args.begin(), "adaptcache");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return ParseCli(static_cast<int>(argv.size()), argv.data(), o);
}

TEST(CliAppTest, PutWithTokens) {
  ::unsetenv("ADAPTCACHE_TARGET");
  CliOptions o;
  auto p = Parse({"--target", "unix:///run/ac.sock", "put", "-n", "llama", "--random", "--shape", "2,2,8,1,4",
                  "--tokens", "/dev/null", "--chunk-tokens", "4", "--shm", "--codec", "raw"},
                 &o);
  ASSERT_FALSE(p.exit_now) << p.text;
  EXPECT_EQ(o.command, "put");
  EXPECT_EQ(o.target, "unix:///run/ac.sock");
  EXPECT_EQ(o.ns, "llama");
  EXPECT_TRUE(o.random);
  EXPECT_TRUE(o.shm);
  EXPECT_EQ(o.chunk_tokens, 4u);
  EXPECT_EQ(o.codec, "raw");
  EXPECT_EQ(o.shape, "2,2,8,1,4");
}

TEST(CliAppTest, PutDurable) {
  CliOptions o;
  ASSERT_FALSE(Parse({"put", "-n", "x", "--random", "--shape", "2,1,4,1,4", "--key",
                      "00000000000000000000000000000001", "--durable"},
                     &o)
                   .exit_now);
  EXPECT_TRUE(o.durable);
  CliOptions d;
  ASSERT_FALSE(Parse({"put", "-n", "x", "--random", "--shape", "2,1,4,1,4", "--key",
                      "00000000000000000000000000000001"},
                     &d)
                   .exit_now);
  EXPECT_FALSE(d.durable);
  CliOptions g;
  EXPECT_TRUE(Parse({"get", "-n", "x", "--key", "00000000000000000000000000000001", "-o", "o.bin", "--durable"}, &g)
                  .exit_now)
      << "--durable is a put option";
}

TEST(CliAppTest, DefaultTargetFromEnvironment) {
  ::setenv("ADAPTCACHE_TARGET", "localhost:7000", 1);
  CliOptions o;
  ASSERT_FALSE(Parse({"stats"}, &o).exit_now);
  EXPECT_EQ(o.target, "localhost:7000");
  ::unsetenv("ADAPTCACHE_TARGET");
  CliOptions d;
  ASSERT_FALSE(Parse({"health"}, &d).exit_now);
  EXPECT_EQ(d.target, kDefaultTarget);
}

TEST(CliAppTest, HelpOnEverySubcommandExitsZero) {
  for (const char* sub : {"put", "get", "lookup", "delete", "stats", "health", "codecs", "decode"}) {
    CliOptions o;
    auto p = Parse({sub, "--help"}, &o);
    EXPECT_TRUE(p.exit_now) << sub;
    EXPECT_EQ(p.exit_code, 0) << sub;
    EXPECT_NE(p.text.find("Usage"), std::string::npos) << sub;
  }
  CliOptions o;
  auto p = Parse({"--help"}, &o);
  EXPECT_EQ(p.exit_code, 0);
  EXPECT_NE(p.text.find("codecs"), std::string::npos);
}

TEST(CliAppTest, RejectsBadCombinations) {
  const std::vector<std::vector<std::string>> bad = {
      {},                                                               // no subcommand
      {"frobnicate"},                                                   // unknown subcommand
      {"put", "--random", "--shape", "2,1,1,1,1", "--tokens", "/dev/null"},  // no namespace
      {"put", "-n", "x", "--random", "--shape", "2,1,1,1,1"},           // no keys
      {"put", "-n", "x", "--random", "--tokens", "/dev/null"},          // random without shape
      {"put", "-n", "x", "--tokens", "/dev/null"},                      // no tensor source
      {"put", "-n", "x", "--random", "--shape", "2,1,1,1,1", "--tensor", "/dev/null", "--tokens", "/dev/null"},
      {"put", "-n", "x", "--random", "--shape", "2,1,1,1,1", "--tokens", "/dev/null", "--key",
       std::string(32, '0')},                                           // both key sources
      {"put", "-n", "x", "--random", "--shape", "2,1,1,1,1", "--key", std::string(32, '0'), "--key",
       std::string(32, '1')},                                           // put takes one key
      {"put", "-n", "x", "--random", "--shape", "2,1,1,1,1", "--tokens", "/dev/null", "--dtype", "int8"},
      {"put", "-n", "x", "--random", "--shape", "2,1,1,1,1", "--tokens", "/dev/null", "--chunk-tokens", "0"},
      {"get", "-n", "x", "--key", std::string(32, '0')},                // no --out
      {"get", "-n", "x", "--key", std::string(32, '0'), "-o", "out.bin", "--decode"},  // decode needs .npy
      {"lookup", "-n", "x"},                                            // no keys
      {"codecs", "--layers", "0"},
      {"codecs", "--dtype", "fp8"},
      {"decode", "-i", "/nonexistent/file", "-o", "x.npy"},
      {"stats", "--bogus"},
  };
  for (const auto& args : bad) {
    CliOptions o;
    auto p = Parse(args, &o);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_TRUE(p.exit_now) << joined;
    EXPECT_NE(p.exit_code, 0) << joined;
    EXPECT_FALSE(p.text.empty()) << joined;
  }
}

TEST(CliAppTest, GetDecodeAndLookupKeys) {
  CliOptions o;
  auto p = Parse({"get", "-n", "x", "-k", std::string(32, 'a'), "-k", std::string(32, 'b'), "-o", "kv.safetensors",
                  "--decode"},
                 &o);
  ASSERT_FALSE(p.exit_now) << p.text;
  EXPECT_EQ(o.keys_hex.size(), 2u);
  EXPECT_TRUE(o.decode);
  CliOptions c;
  ASSERT_FALSE(Parse({"codecs", "--layers", "80", "--tokens", "128", "--dtype", "fp16"}, &c).exit_now);
  EXPECT_EQ(c.layers, 80u);
  EXPECT_EQ(c.tokens, 128u);
  EXPECT_EQ(c.kv_heads, 8u);
  EXPECT_EQ(c.codecs_dtype, "fp16");
}

}  // namespace
}  // namespace adaptcache::client
