// End to end: the `adaptcache` CLI binary against the real daemon, files compared.
#include <sys/wait.h>

#include <cctype>
#include <cstdio>
#include <sstream>
#include <fstream>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/kv_files.h"
#include "client/npy.h"
#include "tests/integration/daemon_fixture.h"

namespace adaptcache::client {
namespace {

using ::adaptcache::testing::DaemonOptions;
using ::adaptcache::testing::DaemonTest;

struct RunResult {
  int code = -1;
  std::string output;  // stdout and stderr
};

class CliTest : public DaemonTest {
 protected:
  DaemonOptions Options() override {
    DaemonOptions o;
    o.extra_args = {"--max-entry-bytes", "16MiB"};
    return o;
  }

  RunResult Run(const std::string& args) { return RunAt(daemon_->socket_path(), args); }
  RunResult RunAt(const std::string& target, const std::string& args) {
    const char* bin_dir = std::getenv("ADAPTCACHE_BIN_DIR");
    const std::string cmd = absl::StrCat(bin_dir ? bin_dir : "build/bin", "/adaptcache --target ",
                                         target, " ", args, " 2>&1");
    RunResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
    const int status = ::pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
  }
  std::string File(const std::string& name) const { return daemon_->dir() + "/" + name; }
  static std::vector<std::byte> ReadAll(const std::string& path) {
    auto b = ReadFileBytes(path);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *b : std::vector<std::byte>{};
  }
};

TEST_F(CliTest, PutLookupGetDeleteRoundTrip) {
  // A 600-token bf16 tensor in safetensors, ids in a text file: chunks of 256, 256, 88.
  std::vector<uint32_t> ids(600);
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<uint32_t>(1000 + 7 * i);
    absl::StrAppend(&text, ids[i], i % 16 == 15 ? "\n" : " ");
  }
  std::ofstream(File("ids.txt")) << text;
  HostTensor kv;
  kv.type = ElemType::kBF16;
  kv.shape = {2, 2, 600, 2, 16};
  kv.data = RandomKvBytes(KvShape{2, 600, 2, 16, DType::kBF16}, 5);
  ASSERT_TRUE(WriteTensorFile(File("kv.safetensors"), kv).ok());

  auto put = Run(absl::StrCat("put -n cli-ns --tensor ", File("kv.safetensors"), " --tokens ", File("ids.txt")));
  ASSERT_EQ(put.code, 0) << put.output;
  const auto keys = Client::HashTokens("cli-ns", ids, 256);
  ASSERT_EQ(keys.size(), 3u);
  for (const auto& k : keys) EXPECT_NE(put.output.find(k.ToHex()), std::string::npos) << put.output;
  EXPECT_NE(put.output.find("tokens 512..600"), std::string::npos) << put.output;

  auto lookup = Run(absl::StrCat("lookup -n cli-ns --tokens ", File("ids.txt")));
  ASSERT_EQ(lookup.code, 0) << lookup.output;
  EXPECT_NE(lookup.output.find("prefix_hits 3 of 3"), std::string::npos) << lookup.output;

  // Decoded, over both data paths: the original tensor, bit for bit.
  for (const char* path_flag : {"", " --shm"}) {
    auto get = Run(absl::StrCat("get -n cli-ns --tokens ", File("ids.txt"), " --decode -o ", File("out.safetensors"),
                                path_flag));
    ASSERT_EQ(get.code, 0) << get.output;
    auto back = ReadTensorFile(File("out.safetensors"));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->shape, kv.shape);
    EXPECT_EQ(back->type, ElemType::kBF16);
    EXPECT_TRUE(back->data == kv.data) << path_flag;
  }

  // Container files: identical over gRPC and shm, and equal to the library's bytes.
  ASSERT_EQ(Run(absl::StrCat("get -n cli-ns --tokens ", File("ids.txt"), " -o ", File("c1.bin"))).code, 0);
  ASSERT_EQ(Run(absl::StrCat("get -n cli-ns --tokens ", File("ids.txt"), " --shm -o ", File("c2.bin"))).code, 0);
  auto client = Client::Connect(daemon_->target());
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<std::byte> expected;
  for (const auto& k : keys) {
    auto b = (*client)->Get("cli-ns", k);
    ASSERT_TRUE(b.ok()) << b.status();
    expected.insert(expected.end(), b->begin(), b->end());
  }
  EXPECT_TRUE(ReadAll(File("c1.bin")) == expected);
  EXPECT_TRUE(ReadAll(File("c2.bin")) == expected);

  // Offline decode of the container file gives the tensor (as f32 in .npy).
  auto dec = Run(absl::StrCat("decode -i ", File("c1.bin"), " -o ", File("dec.npy")));
  ASSERT_EQ(dec.code, 0) << dec.output;
  auto npy = ReadNpy(File("dec.npy"));
  ASSERT_TRUE(npy.ok()) << npy.status();
  EXPECT_EQ(npy->type, ElemType::kF32);
  EXPECT_TRUE(ConvertFloat(*npy, ElemType::kBF16)->data == kv.data);

  auto del = Run(absl::StrCat("delete -n cli-ns --tokens ", File("ids.txt")));
  ASSERT_EQ(del.code, 0) << del.output;
  EXPECT_NE(del.output.find("deleted 3 of 3"), std::string::npos) << del.output;
  auto miss = Run(absl::StrCat("get -n cli-ns --tokens ", File("ids.txt"), " -o ", File("miss.bin")));
  EXPECT_EQ(miss.code, 2) << miss.output;
}

TEST_F(CliTest, NpyTensorAndNpyTokensThroughSharedMemory) {
  HostTensor ids;
  ids.type = ElemType::kI64;
  ids.shape = {1, 40};
  ids.data.resize(40 * 8);
  std::vector<uint32_t> id_values(40);
  for (int i = 0; i < 40; ++i) {
    const int64_t v = 50'000 + i;
    id_values[i] = static_cast<uint32_t>(v);
    std::memcpy(ids.data.data() + 8 * i, &v, 8);
  }
  ASSERT_TRUE(WriteNpy(File("ids.npy"), ids).ok());
  HostTensor kv;
  kv.type = ElemType::kF16;
  kv.shape = {2, 3, 40, 1, 32};
  kv.data = RandomKvBytes(KvShape{3, 40, 1, 32, DType::kFP16}, 8);
  ASSERT_TRUE(WriteNpy(File("kv.npy"), kv).ok());

  auto put = Run(absl::StrCat("put --shm -n np --chunk-tokens 16 --tensor ", File("kv.npy"), " --tokens ",
                              File("ids.npy")));
  ASSERT_EQ(put.code, 0) << put.output;
  EXPECT_NE(put.output.find("chunk 2"), std::string::npos) << put.output;

  // A gap in the middle: only the leading chunk comes back.
  const auto keys = Client::HashTokens("np", id_values, 16);
  ASSERT_EQ(Run(absl::StrCat("delete -n np --key ", keys[1].ToHex())).code, 0);
  auto get = Run(absl::StrCat("get -n np --chunk-tokens 16 --tokens ", File("ids.npy"), " --decode -o ",
                              File("out.npy")));
  ASSERT_EQ(get.code, 0) << get.output;
  EXPECT_NE(get.output.find("got 1 of 3"), std::string::npos) << get.output;
  auto back = ReadNpy(File("out.npy"));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->shape, (std::vector<uint64_t>{2, 3, 16, 1, 32}));
  EXPECT_EQ(back->type, ElemType::kF16);
  KvShape full{3, 40, 1, 32, DType::kFP16};
  EXPECT_TRUE(back->data == SliceTokens(full, kv.data, 0, 16));
}

TEST_F(CliTest, RandomPutWithExplicitKeyAndConversion) {
  const std::string key = Key128{0x1111, 0x2222}.ToHex();
  auto put = Run(absl::StrCat("put -n rnd --random --seed 9 --shape 2,4,64,2,32 --dtype fp32 --key ", key));
  ASSERT_EQ(put.code, 0) << put.output;
  auto get = Run(absl::StrCat("get -n rnd --key ", key, " --decode -o ", File("r.npy")));
  ASSERT_EQ(get.code, 0) << get.output;
  auto back = ReadNpy(File("r.npy"));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->data == RandomKvBytes(KvShape{4, 64, 2, 32, DType::kFP32}, 9));
}

TEST_F(CliTest, BadInputIsAClearErrorAndStoresNothing) {
  std::ofstream(File("junk.npy")) << "\x93NUMPY\x01\x00\xff\xff{'descr'";
  std::ofstream(File("ids.txt")) << "1 2 3";
  auto put = Run(absl::StrCat("put -n bad --tensor ", File("junk.npy"), " --tokens ", File("ids.txt")));
  EXPECT_EQ(put.code, 1) << put.output;
  EXPECT_NE(put.output.find("junk.npy"), std::string::npos) << put.output;
  // Token count must match the tensor.
  HostTensor kv;
  kv.type = ElemType::kF32;
  kv.shape = {2, 1, 4, 1, 8};
  kv.data = RandomKvBytes(KvShape{1, 4, 1, 8, DType::kFP32}, 1);
  ASSERT_TRUE(WriteNpy(File("kv.npy"), kv).ok());
  auto mismatch = Run(absl::StrCat("put -n bad --tensor ", File("kv.npy"), " --tokens ", File("ids.txt")));
  EXPECT_EQ(mismatch.code, 1) << mismatch.output;
  EXPECT_NE(mismatch.output.find("3 token ids"), std::string::npos) << mismatch.output;
  auto lookup = Run(absl::StrCat("lookup -n bad --tokens ", File("ids.txt")));
  ASSERT_EQ(lookup.code, 2) << "zero prefix hits is not found\n" << lookup.output;
  EXPECT_NE(lookup.output.find("prefix_hits 0 of 1"), std::string::npos) << lookup.output;
  auto stats = Run("stats");
  ASSERT_EQ(stats.code, 0) << stats.output;
  EXPECT_NE(stats.output.find("puts 0"), std::string::npos) << stats.output;
}

TEST_F(CliTest, CodecsAndHealth) {
  auto codecs = Run("codecs");
  ASSERT_EQ(codecs.code, 0) << codecs.output;
  EXPECT_NE(codecs.output.find("raw"), std::string::npos);
  EXPECT_NE(codecs.output.find("33554432"), std::string::npos) << "Llama-3.1-8B chunk, bf16";
  auto health = Run("health");
  EXPECT_EQ(health.code, 0) << health.output;
  EXPECT_NE(health.output.find("serving"), std::string::npos);
}

// The fixture's daemon has no SSD tier: --durable stores the entry, says it is not
// durable and exits 1.
TEST_F(CliTest, DurablePutWithoutSsdTierExitsOne) {
  const std::string key = "000000000000000000000000000000d1";
  auto put = Run("put -n dur --random --shape 2,2,16,2,32 --durable --key " + key);
  EXPECT_EQ(put.code, 1) << put.output;
  EXPECT_NE(put.output.find("durable NO"), std::string::npos) << put.output;
  EXPECT_NE(put.output.find("not durable"), std::string::npos) << put.output;
  EXPECT_EQ(Run("lookup -n dur --key " + key).code, 0) << "stored anyway";
  auto plain = Run("put -n dur --random --shape 2,2,16,2,32 --key " + key);
  EXPECT_EQ(plain.code, 0) << plain.output;
  EXPECT_EQ(plain.output.find("durable"), std::string::npos) << plain.output;
}

// lookup shows n/a, not 0.0000, for lossy entries the daemon has not estimated.
TEST_F(CliTest, LookupShowsUnknownQualityLossOfLossyEntriesAsNa) {
  const char* codecs[] = {"quant-k2v2-g64", "drop-33", "lowrank-r8", "raw"};
  std::string keys;
  for (int i = 0; i < 4; ++i) {
    const std::string key = absl::StrCat("00000000000000000000000000000a0", i);
    auto put = Run(absl::StrCat("put -n q --random --shape 2,2,64,2,64 --codec ", codecs[i], " --key ", key));
    ASSERT_EQ(put.code, 0) << put.output;
    absl::StrAppend(&keys, " --key ", key);
  }
  auto lookup = Run("lookup -n q" + keys);
  ASSERT_EQ(lookup.code, 0) << lookup.output;
  std::istringstream lines(lookup.output);
  std::string line;
  int rows = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || !std::isdigit(static_cast<unsigned char>(line[0]))) continue;
    const bool raw = line.find(" raw ") != std::string::npos;
    const std::string last = line.substr(line.find_last_of(' ') + 1);
    EXPECT_EQ(last, raw ? "0.0000" : "n/a") << line;
    ++rows;
  }
  EXPECT_EQ(rows, 4) << lookup.output;
}

TEST_F(CliTest, ExitCodesFollowTheDocs) {
  // docs/client.md: 1 error (usage and local file errors too), 2 not found (get: no entry
  // for the first key; lookup: zero prefix hits), 3 daemon unreachable.
  EXPECT_EQ(Run("get -n x --no-such-flag").code, 1);
  EXPECT_EQ(Run("get -n x").code, 1) << "no keys";
  EXPECT_EQ(Run("get -n x --key 00000000000000000000000000000001 -o " + File("miss.bin")).code, 2);
  auto miss = Run("lookup -n x --key 00000000000000000000000000000001");
  EXPECT_EQ(miss.code, 2) << miss.output;
  EXPECT_NE(miss.output.find("prefix_hits 0 of 1"), std::string::npos) << miss.output;
  EXPECT_EQ(Run("delete -n x --key 00000000000000000000000000000001").code, 0) << "deleting nothing is fine";
  // A missing local file is an error (1), not a cache miss (2), and says ENOENT.
  auto no_tokens = Run("lookup -n x --tokens " + File("no-such-ids.txt"));
  EXPECT_EQ(no_tokens.code, 1) << no_tokens.output;
  EXPECT_NE(no_tokens.output.find("No such file or directory"), std::string::npos) << no_tokens.output;
  EXPECT_EQ(no_tokens.output.find("PERMISSION_DENIED"), std::string::npos) << no_tokens.output;
  const std::string key = "00000000000000000000000000000042";
  ASSERT_EQ(Run("put -n x --random --shape 2,2,16,2,32 --key " + key).code, 0);
  auto no_dir = Run("get -n x --key " + key + " -o " + File("no-such-dir/out.bin"));
  EXPECT_EQ(no_dir.code, 1) << no_dir.output;
  EXPECT_NE(no_dir.output.find("NOT_FOUND"), std::string::npos) << "ENOENT keeps its meaning\n" << no_dir.output;
  EXPECT_EQ(no_dir.output.find("PERMISSION_DENIED"), std::string::npos) << no_dir.output;
  auto hit = Run("lookup -n x --key " + key);
  EXPECT_EQ(hit.code, 0) << hit.output;
  auto gone = RunAt(daemon_->dir() + "/no-daemon.sock", "health");
  EXPECT_EQ(gone.code, 3) << gone.output;
  EXPECT_NE(gone.output.find("cannot reach adaptcached"), std::string::npos) << gone.output;
  EXPECT_EQ(Run("--help").code, 0);
}

}  // namespace
}  // namespace adaptcache::client
