// Misbehaving clients against the real daemon: stalled Puts, Gets that never read and
// header-only Puts must not stop it serving Health and the well-behaved clients, must be
// cancelled once idle, and must evict nothing; overload is refused with a retry hint that
// the C++ client follows.
#include <atomic>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "client/client.h"
#include "client/kv_files.h"
#include "common/status_kinds.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/integration/server_test_util.h"

namespace adaptcache::testing {
namespace {

using grpc::StatusCode;

// 6 streams at once; an idle stream is cancelled after 1.5 s.
constexpr int kStreamCap = 6;

// A small Put for the C++ client.
struct SmallPut {
  client::PutSpec spec;
  std::string raw;
  SmallPut(uint64_t key, uint32_t seed) {
    spec.ns = "ns";
    spec.key = Key128{key, key + 1};
    spec.shape = KvShape{2, 16, 2, 64, DType::kBF16};
    raw = RandomBytes(spec.shape.Bytes(), seed);
  }
  std::span<const std::byte> bytes() const { return std::as_bytes(std::span<const char>(raw.data(), raw.size())); }
};

// [2][2][1024][2][64] bf16 = 1 MiB.
v1::KvShape MiBShape(uint32_t mib = 1) { return SmallShape(1024 * mib); }

// One client connection of its own (gRPC would otherwise share one between stubs).
std::unique_ptr<v1::AdaptCache::Stub> OwnConnection(const std::string& target, int id) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("adaptcache.test.connection", id);
  args.SetMaxReceiveMessageSize(-1);
  return v1::AdaptCache::NewStub(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
}

// A Put that sends its header (and optionally some data) and then nothing.
struct StalledPut {
  std::unique_ptr<v1::AdaptCache::Stub> stub;
  grpc::ClientContext ctx;
  v1::PutResponse resp;
  std::unique_ptr<grpc::ClientWriter<v1::PutRequest>> writer;
  StalledPut(const std::string& target, int id, const v1::PutHeader& h, size_t data_bytes = 0)
      : stub(OwnConnection(target, id)) {
    WithDeadline(&ctx, 60);
    writer = stub->Put(&ctx, &resp);
    writer->Write(HeaderFrame(h));
    if (data_bytes > 0) writer->Write(DataFrame(std::string(data_bytes, 'x')));
  }
  ~StalledPut() { ctx.TryCancel(); }
  grpc::Status Finish() { return writer->Finish(); }
};

class ServerOverloadTest : public DaemonTest {
 protected:
  DaemonOptions Options() override {
    DaemonOptions o;
    // No preemption here: these tests hold slots on purpose (see the test below).
    o.extra_args = {"--max-streams", "6", "--stream-idle-timeout-ms", "1500", "--max-entry-bytes", "24MiB",
                    "--max-staging-bytes", "40MiB", "--retry-after-ms", "20", "--stream-preempt-idle-ms", "0"};
    return o;
  }

  void ExpectHealthy(int times) {
    for (int i = 0; i < times; ++i) {
      grpc::ClientContext ctx;
      WithDeadline(&ctx, 5);
      v1::HealthResponse resp;
      auto st = stub_->Health(&ctx, v1::HealthRequest(), &resp);
      ASSERT_TRUE(st.ok()) << st.error_message();
      ASSERT_TRUE(resp.serving());
    }
  }

  std::unique_ptr<client::Client> Connect(std::chrono::milliseconds retry_for) {
    client::ClientOptions o;
    o.overload_retry_for = retry_for;
    auto c = client::Client::Connect(daemon_->target(), o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  bool Stored(const std::string& ns, const std::string& key) { return StoredInDram(stub_.get(), ns, key); }
};

TEST_F(ServerOverloadTest, StalledPutsLeaveHealthServedAndAreCancelledWhenIdle) {
  std::vector<std::unique_ptr<StalledPut>> stalled;
  for (int i = 0; i < kStreamCap + 4; ++i) {
    stalled.push_back(std::make_unique<StalledPut>(daemon_->target(), i, Header("stall", TestKey(i)),
                                                   i % 2 == 0 ? 4096 : 0));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ExpectHealthy(20);

  // Every slot is taken: a Put is refused at once, with the hint in its trailers.
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::PutResponse resp;
  auto writer = stub_->Put(&ctx, &resp);
  writer->Write(HeaderFrame(Header("ns", TestKey(100))));
  writer->WritesDone();
  const grpc::Status refused = writer->Finish();
  ASSERT_EQ(refused.error_code(), StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_NE(refused.error_message().find("retry in 20 ms"), std::string::npos) << refused.error_message();
  const auto& md = ctx.GetServerTrailingMetadata();
  auto hint = md.find("retry-after-ms");
  ASSERT_NE(hint, md.end());
  EXPECT_EQ(std::string(hint->second.data(), hint->second.size()), "20");

  // A client without retries is told it is overloaded, not that the daemon is gone.
  auto no_retry = Connect(std::chrono::milliseconds(0));
  ASSERT_NE(no_retry, nullptr);
  const SmallPut p(1, 3);
  auto st = no_retry->Put(p.spec, p.bytes());
  ASSERT_EQ(st.status().code(), absl::StatusCode::kResourceExhausted) << st.status();

  // One that retries for a while gets in once the idle streams are cancelled.
  auto retrying = Connect(std::chrono::milliseconds(20'000));
  ASSERT_NE(retrying, nullptr);
  auto put = retrying->Put(p.spec, p.bytes());
  ASSERT_TRUE(put.ok()) << put.status();
  auto got = retrying->Get("ns", p.spec.key);
  ASSERT_TRUE(got.ok()) << got.status();

  int cancelled = 0, refused_at_once = 0;
  for (auto& s : stalled) {
    const grpc::Status f = s->Finish();
    ASSERT_FALSE(f.ok());
    cancelled += f.error_code() == StatusCode::CANCELLED || f.error_code() == StatusCode::DEADLINE_EXCEEDED;
    refused_at_once += f.error_code() == StatusCode::RESOURCE_EXHAUSTED;
  }
  EXPECT_EQ(cancelled, kStreamCap);
  EXPECT_EQ(refused_at_once, 4);
  for (int i = 0; i < kStreamCap + 4; ++i) EXPECT_FALSE(Stored("stall", TestKey(i)));
  ExpectHealthy(5);
}

TEST_F(ServerOverloadTest, ARetryBudgetThatRunsOutIsReportedAsOverload) {
  std::vector<std::unique_ptr<StalledPut>> stalled;
  for (int i = 0; i < kStreamCap; ++i) {
    stalled.push_back(std::make_unique<StalledPut>(daemon_->target(), i, Header("stall", TestKey(i))));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto c = Connect(std::chrono::milliseconds(300));
  ASSERT_NE(c, nullptr);
  const SmallPut p(3, 4);
  auto st = c->Put(p.spec, p.bytes());
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(IsOverloaded(st.status())) << st.status();
  EXPECT_NE(st.status().message().find("tries over"), std::string::npos) << st.status();
  // Unary calls still have their threads.
  auto h = c->Health();
  ASSERT_TRUE(h.ok()) << h.status();
}

TEST_F(ServerOverloadTest, GetsThatNeverReadAreCancelledWhenIdle) {
  const std::string data = RandomBytes(ShapeBytes(MiBShape(8)), 5);
  ASSERT_TRUE(PutBytes(stub_.get(), Header("big", TestKey(1), MiBShape(8)), data, 1 << 20).ok());
  struct Unread {
    std::unique_ptr<v1::AdaptCache::Stub> stub;
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::GetResponse>> reader;
  };
  std::vector<std::unique_ptr<Unread>> unread;
  for (int i = 0; i < kStreamCap; ++i) {
    auto u = std::make_unique<Unread>();
    u->stub = OwnConnection(daemon_->target(), 100 + i);
    WithDeadline(&u->ctx, 60);
    v1::GetRequest req;
    req.set_namespace_("big");
    req.set_key(TestKey(1));
    req.set_transfer(v1::TRANSFER_STREAM);
    u->reader = u->stub->Get(&u->ctx, req);
    unread.push_back(std::move(u));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ExpectHealthy(10);
  // Once the idle ones are cancelled, every slot serves a reading client again.
  auto c = Connect(std::chrono::milliseconds(20'000));
  ASSERT_NE(c, nullptr);
  std::vector<std::thread> readers;
  std::atomic<int> ok{0};
  for (int i = 0; i < kStreamCap; ++i) {
    readers.emplace_back([&] {
      auto got = c->Get("big", Key128::FromBytes(TestKey(1)).value());
      if (got.ok()) ok.fetch_add(1);
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(ok.load(), kStreamCap);
  for (auto& u : unread) u->ctx.TryCancel();
}

TEST_F(ServerOverloadTest, HeaderOnlyPutsEvictNothing) {
  // 40 MiB of entries in the 64 MiB pool.
  const std::string data = RandomBytes(ShapeBytes(MiBShape()), 6);
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(PutBytes(stub_.get(), Header("keep", TestKey(i), MiBShape()), data, 1 << 20).ok());
  }
  // Three 20 MiB headers would need 60 MiB if staging were taken at the header.
  std::vector<std::unique_ptr<StalledPut>> headers;
  for (int i = 0; i < 3; ++i) {
    headers.push_back(std::make_unique<StalledPut>(daemon_->target(), 200 + i,
                                                   Header("hdr", TestKey(i), MiBShape(20))));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 40; ++i) EXPECT_TRUE(Stored("keep", TestKey(i))) << i;
  headers.clear();
  for (int i = 0; i < 40; ++i) EXPECT_TRUE(Stored("keep", TestKey(i))) << i;
}

TEST_F(ServerOverloadTest, RawPutsStalledMidStreamEvictNothing) {
  // 40 MiB of entries in the 64 MiB pool; two raw 16 MiB Puts send a frame and stall. The
  // first fits the free space; the second must stage rather than evict for its pool extent.
  const std::string data = RandomBytes(ShapeBytes(MiBShape()), 8);
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(PutBytes(stub_.get(), Header("keep", TestKey(i), MiBShape()), data, 1 << 20).ok());
  }
  std::vector<std::unique_ptr<StalledPut>> stalled;
  for (int i = 0; i < 2; ++i) {
    stalled.push_back(std::make_unique<StalledPut>(daemon_->target(), 400 + i,
                                                   Header("stall", TestKey(i), MiBShape(16)), 1 << 20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 40; ++i) EXPECT_TRUE(Stored("keep", TestKey(i))) << i;
  stalled.clear();
  for (int i = 0; i < 40; ++i) EXPECT_TRUE(Stored("keep", TestKey(i))) << i;
}

TEST_F(ServerOverloadTest, StagingBeyondItsBudgetIsRefusedAndFreedAfterwards) {
  // 40 MiB of staging: a 20 MiB Put mid-stream and a 24 MiB one cannot both stage.
  StalledPut first(daemon_->target(), 300, Header("stage", TestKey(1), MiBShape(20)), 0);
  for (int i = 0; i < 19; ++i) ASSERT_TRUE(first.writer->Write(DataFrame(std::string(1 << 20, 'a'))));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::string big = RandomBytes(ShapeBytes(MiBShape(24)), 7);
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::PutResponse resp;
  auto st = PutBytes(stub_.get(), Header("stage", TestKey(2), MiBShape(24)), big, 1 << 20);
  ASSERT_EQ(st.error_code(), StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_NE(st.error_message().find("staging budget"), std::string::npos) << st.error_message();
  // The first finishes and commits; its staging comes back, and the second fits.
  ASSERT_TRUE(first.writer->Write(DataFrame(std::string(1 << 20, 'a'))));
  first.writer->WritesDone();
  const grpc::Status done = first.Finish();
  ASSERT_TRUE(done.ok()) << done.error_message();
  EXPECT_TRUE(Stored("stage", TestKey(1)));
  ASSERT_TRUE(PutBytes(stub_.get(), Header("stage", TestKey(2), MiBShape(24)), big, 1 << 20).ok());
  EXPECT_TRUE(Stored("stage", TestKey(2)));
}

// Without an idle timeout, stalled streams that fill every slot still yield to new ones.
class StreamPreemptionTest : public ServerOverloadTest {
 protected:
  DaemonOptions Options() override {
    DaemonOptions o;
    o.extra_args = {"--max-streams", "6", "--stream-idle-timeout-ms", "0", "--stream-preempt-idle-ms", "300"};
    return o;
  }
};

TEST_F(StreamPreemptionTest, IdleStreamsYieldTheirSlotsToNewOnes) {
  std::vector<std::unique_ptr<StalledPut>> stalled;
  for (int i = 0; i < kStreamCap; ++i) {
    stalled.push_back(std::make_unique<StalledPut>(daemon_->target(), i, Header("stall", TestKey(i))));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto c = Connect(std::chrono::milliseconds(20'000));
  ASSERT_NE(c, nullptr);
  for (uint64_t k = 0; k < 3; ++k) {
    const SmallPut p(10 + k, 10 + static_cast<uint32_t>(k));
    auto put = c->Put(p.spec, p.bytes());
    ASSERT_TRUE(put.ok()) << put.status();
  }
  int cancelled = 0;
  for (auto& s : stalled) {
    s->ctx.TryCancel();
    cancelled += s->Finish().error_code() == StatusCode::CANCELLED;
  }
  EXPECT_EQ(cancelled, kStreamCap);
  ExpectHealthy(3);
}

// The idle timeout is the peer's silence, not the daemon's own work: Puts whose encodes
// queue behind each other for far longer than the timeout all succeed.
class SlowEncodeTest : public ServerOverloadTest {
 protected:
  DaemonOptions Options() override {
    DaemonOptions o;
    o.extra_args = {"--stream-idle-timeout-ms", "400", "--stream-preempt-idle-ms", "0"};
    return o;
  }
  void RunSlowEncodes() {
    constexpr int kPuts = 12;
    auto c = Connect(std::chrono::milliseconds(20'000));
    ASSERT_NE(c, nullptr);
    const KvShape shape{4, 512, 8, 128, DType::kBF16};  // 8 MiB raw
    const std::vector<std::byte> bytes = client::RandomKvBytes(shape, 7);
    std::vector<absl::Status> results(kPuts);
    const auto start = std::chrono::steady_clock::now();
    {
      std::vector<std::jthread> puts;
      for (int i = 0; i < kPuts; ++i) {
        puts.emplace_back([&, i] {
          client::PutSpec spec;
          spec.ns = "slow";
          spec.key = Key128{static_cast<uint64_t>(i), 1};
          spec.shape = shape;
          spec.codec = "lowrank-r8";
          results[i] = c->Put(spec, bytes).status();
        });
      }
    }
    const auto took = std::chrono::steady_clock::now() - start;
    for (int i = 0; i < kPuts; ++i) EXPECT_TRUE(results[i].ok()) << "put " << i << ": " << results[i];
    ExpectHealthy(1);
    if (took < std::chrono::milliseconds(1200)) {
      GTEST_SKIP() << "the encodes did not outlast the 400 ms idle timeout; nothing was exercised";
    }
  }
};

TEST_F(SlowEncodeTest, StreamsWaitingOnTheirEncodeAreNotIdle) { RunSlowEncodes(); }

// The same with tenants: the daemon then accepts the socket's connections itself and
// hands each to gRPC (server/unix_listener.h).
class SlowEncodeTenantTest : public SlowEncodeTest {
 protected:
  DaemonOptions Options() override {
    DaemonOptions o = SlowEncodeTest::Options();
    char tmpl[] = "/var/tmp/ac-slowenc-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    const std::string f = dir_ + "/tenants.toml";
    std::ofstream(f) << "[tenant.t]\nnamespaces = [\"slow\"]\nuids = [" << ::getuid() << "]\n";
    ::chmod(f.c_str(), 0600);
    o.extra_args.push_back("--tenants-file");
    o.extra_args.push_back(f);
    return o;
  }
  void TearDown() override {
    SlowEncodeTest::TearDown();
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
};

TEST_F(SlowEncodeTenantTest, StreamsWaitingOnTheirEncodeAreNotIdle) { RunSlowEncodes(); }

}  // namespace
}  // namespace adaptcache::testing
