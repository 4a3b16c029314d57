// The io_uring layer on its own (storage/io_uring_file.h): staging buffers, positional
// O_DIRECT writes and reads (readv included), lane bounds and injected faults.
#include "storage/io_uring_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "storage/ssd_format.h"
#include "tests/storage/temp_dir.h"

namespace adaptcache {
namespace {

constexpr uint32_t kBlock = static_cast<uint32_t>(kSsdBlock);

IoRingOptions SmallRing() {
  IoRingOptions o;
  o.buffer_bytes = 4 * kSsdBlock;
  o.write_buffers = 2;
  o.read_buffers = 2;
  o.write_slots = 4;
  o.read_slots = 2;
  return o;
}

class IoRingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_ / "file.log";
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
    ASSERT_GE(fd_, 0) << std::strerror(errno);
    ASSERT_EQ(::ftruncate(fd_, 16 * kSsdBlock), 0);
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
  }
  std::unique_ptr<IoRing> Ring(const IoRingOptions& o) {
    auto r = IoRing::Create(o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(*r) : nullptr;
  }
  IoRequest Op(IoOp op, std::byte* buf, uint32_t len, uint64_t offset, int index = -1) const {
    return IoRequest{op, fd_, buf, len, offset, index, &path_};
  }

  testing::TempDir dir_;
  std::string path_;
  int fd_ = -1;
};

void Fill(std::byte* p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<std::byte>(seed + i * 7);
}

TEST_F(IoRingTest, WritesAndReadsBackThroughStagingBuffers) {
  auto ring = Ring(SmallRing());
  ASSERT_NE(ring, nullptr);
  IoBuffer w = ring->AcquireWriteBuffer();
  ASSERT_NE(w.data, nullptr);
  EXPECT_EQ(w.size, 4 * kSsdBlock);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.data) % kSsdBlock, 0u);
  Fill(w.data, 2 * kSsdBlock, 3);
  auto wr = ring->RunSync(IoRing::Lane::kWrite, Op(IoOp::kWrite, w.data, 2 * kBlock, kSsdBlock, w.index));
  ASSERT_TRUE(wr.ok()) << wr.status();
  EXPECT_EQ(*wr, static_cast<int>(2 * kBlock));
  auto fs = ring->RunSync(IoRing::Lane::kWrite, Op(IoOp::kFsync, nullptr, 0, 0));
  ASSERT_TRUE(fs.ok());
  EXPECT_EQ(*fs, 0);

  auto r = ring->TryAcquireReadBuffer();
  ASSERT_TRUE(r.has_value());
  auto rd = ring->RunSync(IoRing::Lane::kRead, Op(IoOp::kRead, r->data, 2 * kBlock, kSsdBlock, r->index));
  ASSERT_TRUE(rd.ok());
  EXPECT_EQ(*rd, static_cast<int>(2 * kBlock));
  EXPECT_EQ(std::memcmp(r->data, w.data, 2 * kSsdBlock), 0);
  ring->ReleaseBuffer(*r);
  ring->ReleaseBuffer(w);
}

TEST_F(IoRingTest, ReadvFillsBothBuffersInOneOperation) {
  auto ring = Ring(SmallRing());
  ASSERT_NE(ring, nullptr);
  IoBuffer w = ring->AcquireWriteBuffer();
  Fill(w.data, 3 * kSsdBlock, 11);
  ASSERT_EQ(*ring->RunSync(IoRing::Lane::kWrite, Op(IoOp::kWrite, w.data, 3 * kBlock, 0, w.index)),
            static_cast<int>(3 * kBlock));
  AlignedBuffer head(kSsdBlock), rest(2 * kSsdBlock);
  IoRequest req = Op(IoOp::kRead, head.data(), kBlock, 0);
  req.buf2 = rest.data();
  req.len2 = 2 * kBlock;
  auto rd = ring->RunSync(IoRing::Lane::kRead, req);
  ASSERT_TRUE(rd.ok());
  EXPECT_EQ(*rd, static_cast<int>(3 * kBlock));
  EXPECT_EQ(std::memcmp(head.data(), w.data, kSsdBlock), 0);
  EXPECT_EQ(std::memcmp(rest.data(), w.data + kSsdBlock, 2 * kSsdBlock), 0);
  ring->ReleaseBuffer(w);
}

TEST_F(IoRingTest, ReadBuffersRunOutAndComeBack) {
  auto ring = Ring(SmallRing());
  ASSERT_NE(ring, nullptr);
  auto a = ring->TryAcquireReadBuffer();
  auto b = ring->TryAcquireReadBuffer();
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_NE(a->data, b->data);
  EXPECT_FALSE(ring->TryAcquireReadBuffer().has_value());
  ring->ReleaseBuffer(*a);
  auto c = ring->TryAcquireReadBuffer();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->data, a->data);
  ring->ReleaseBuffer(*b);
  ring->ReleaseBuffer(*c);
}

TEST_F(IoRingTest, SubmitIsAllOrNothingWithinTheLaneDepth) {
  auto ring = Ring(SmallRing());
  ASSERT_NE(ring, nullptr);
  EXPECT_EQ(ring->lane_depth(IoRing::Lane::kRead), 2u);
  AlignedBuffer buf(3 * kSsdBlock);
  std::vector<IoRequest> reqs;
  for (uint32_t i = 0; i < 3; ++i) reqs.push_back(Op(IoOp::kRead, buf.data() + i * kSsdBlock, kBlock, i * kSsdBlock));
  std::atomic<int> ran{0};
  std::vector<IoRing::Callback> cbs(3, [&](int) { ++ran; });
  EXPECT_EQ(ring->Submit(IoRing::Lane::kRead, reqs, cbs).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ring->Submit(IoRing::Lane::kRead, std::span(reqs).first(2), {cbs[0]}).code(),
            absl::StatusCode::kInvalidArgument);  // one callback per request
  // Within the depth: every callback runs once with the kernel's result.
  std::promise<void> done;
  std::atomic<int> left{2};
  std::vector<int> res(2, 0);
  std::vector<IoRing::Callback> two;
  for (int i = 0; i < 2; ++i) {
    two.push_back([&, i](int r) {
      res[i] = r;
      if (left.fetch_sub(1) == 1) done.set_value();
    });
  }
  ASSERT_TRUE(ring->Submit(IoRing::Lane::kRead, std::span(reqs).first(2), std::move(two)).ok());
  done.get_future().wait();
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(res[0], static_cast<int>(kBlock));
  EXPECT_EQ(res[1], static_cast<int>(kBlock));
}

TEST_F(IoRingTest, InjectedErrorsReachTheCallerAsErrno) {
  IoRingOptions o = SmallRing();
  o.faults = std::make_shared<FaultInjector>();
  FaultRule rule;
  rule.kind = FaultRule::Kind::kError;
  rule.op = IoOp::kWrite;
  rule.error = ENOSPC;
  rule.path_contains = "file.log";
  o.faults->Add(rule);
  auto ring = Ring(o);
  ASSERT_NE(ring, nullptr);
  IoBuffer w = ring->AcquireWriteBuffer();
  Fill(w.data, kSsdBlock, 1);
  auto first = ring->RunSync(IoRing::Lane::kWrite, Op(IoOp::kWrite, w.data, kBlock, 0, w.index));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, -ENOSPC);
  EXPECT_EQ(o.faults->fired(), 1u);
  // The rule fires once (count 1): the next write goes through.
  auto second = ring->RunSync(IoRing::Lane::kWrite, Op(IoOp::kWrite, w.data, kBlock, 0, w.index));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, static_cast<int>(kBlock));
  ring->ReleaseBuffer(w);
}

TEST(AlignedBufferTest, IsBlockAlignedAndMovable) {
  AlignedBuffer a(5000);
  ASSERT_NE(a.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % kSsdBlock, 0u);
  EXPECT_GE(a.size(), 5000u);
  std::byte* p = a.data();
  AlignedBuffer b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
  AlignedBuffer c;
  c = std::move(b);
  EXPECT_EQ(c.data(), p);
}

}  // namespace
}  // namespace adaptcache
