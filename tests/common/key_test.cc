#include "common/key.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <numeric>

namespace adaptcache {
namespace {

std::vector<uint32_t> Iota(size_t n) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0u);
  return v;
}

std::string ChildKey() { return HashTokenChunks("x", Iota(300), 128).back().ToHex(); }

// The other process of DeterministicAcrossProcesses: this binary run with the variable
// set prints its key and exits before any test runs.
constexpr char kChildEnv[] = "ADAPTCACHE_KEY_TEST_CHILD";
[[maybe_unused]] const bool kIsChild = [] {
  if (std::getenv(kChildEnv) == nullptr) return false;
  std::printf("CHILDKEY=%s\n", ChildKey().c_str());
  std::exit(0);
}();

TEST(KeyTest, BytesRoundTrip) {
  Key128 k{0x0123456789abcdefull, 0xfedcba9876543210ull};
  auto back = Key128::FromBytes(k.ToBytes());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, k);
  EXPECT_EQ(k.ToHex(), "efcdab89674523011032547698badcfe");
  EXPECT_EQ(*Key128::FromHex(k.ToHex()), k);
  EXPECT_FALSE(Key128::FromBytes("short").ok());
  EXPECT_FALSE(Key128::FromHex("zz").ok());
  EXPECT_FALSE(Key128::FromHex(std::string(32, 'g')).ok());
}

// Known vectors pin the definition (computed independently with python-xxhash):
// changing the hash breaks every warm cache.
TEST(KeyTest, KnownVectors) {
  auto tokens = Iota(600);
  auto keys = HashTokenChunks("llama-3.1-8b/bf16/tp1", tokens, 256);
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(NamespaceSeed("").ToHex(), "aab030e1acb9e89177ade2e563e7ad16");
  EXPECT_EQ(keys[0].ToHex(), "02486e184c1ff726ef10696d272e50a5");
  EXPECT_EQ(keys[2].ToHex(), "b5db3b5e64e48d461b7c2fc368e1ae25");
}

TEST(KeyTest, ChainAndPrefixProperties) {
  auto tokens = Iota(1000);
  auto a = HashTokenChunks("ns", tokens, 256);
  ASSERT_EQ(a.size(), 4u);  // 256+256+256+232
  // A prefix gives the same leading keys.
  auto b = HashTokenChunks("ns", std::span(tokens).first(512), 256);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(a[0], b[0]);
  EXPECT_EQ(a[1], b[1]);
  // Other namespace: no alias.
  auto c = HashTokenChunks("ns2", tokens, 256);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NE(a[i], c[i]);
  // A change in chunk 0 changes every later key.
  tokens[3] ^= 1;
  auto d = HashTokenChunks("ns", tokens, 256);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NE(a[i], d[i]);
  EXPECT_TRUE(HashTokenChunks("ns", tokens, 0).empty());
}

// Same keys in another process (no per-process seed).
TEST(KeyTest, DeterministicAcrossProcesses) {
  std::string here = ChildKey();
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  ASSERT_GT(n, 0);
  self[n] = 0;
  std::string cmd = std::string(kChildEnv) + "=1 " + self + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[4096];
  std::string out;
  while (fgets(buf, sizeof buf, p)) out += buf;
  pclose(p);
  EXPECT_NE(out.find("CHILDKEY=" + here), std::string::npos) << out;
}

TEST(KeyTest, NamespaceValidation) {
  EXPECT_TRUE(ValidateNamespace("model/bf16").ok());
  EXPECT_FALSE(ValidateNamespace("").ok());
  EXPECT_FALSE(ValidateNamespace(std::string(300, 'a')).ok());
  EXPECT_FALSE(ValidateNamespace(std::string("a\0b", 3)).ok());
}

}  // namespace
}  // namespace adaptcache
