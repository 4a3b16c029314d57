// The client library against the real adaptcached: both data paths, prefix lookups,
// leases, eviction under pressure, delete, concurrency and daemon restarts.
#include <atomic>
#include <cstring>
#include <thread>

#include <gtest/gtest.h>

#include "client/client.h"
#include "client/kv_files.h"
#include "kernels/codec.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/integration/tiering_test_util.h"

namespace adaptcache::client {
namespace {

using ::adaptcache::testing::DaemonOptions;
using ::adaptcache::testing::DaemonTest;

constexpr char kNs[] = "it/llama-3.1-8b/bf16/tp1";

class ClientTest : public DaemonTest {
 protected:
  DaemonOptions Options() override {
    DaemonOptions o;
    o.pool_bytes = 64ull << 20;
    o.extra_args = {"--max-entry-bytes", "16MiB"};
    return o;
  }
  void SetUp() override {
    DaemonTest::SetUp();
    if (HasFatalFailure()) return;
    ClientOptions opts;
    opts.release_batch = 1;  // tests observe lease counts
    auto c = Client::Connect(daemon_->target(), opts);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }
  void TearDown() override {
    client_.reset();
    DaemonTest::TearDown();
  }

  static PutSpec Spec(const Key128& key, const KvShape& shape) {
    PutSpec s;
    s.ns = kNs;
    s.key = key;
    s.shape = shape;
    return s;
  }
  static Key128 KeyOf(uint64_t i) { return Key128{0x1234 + i, 0xabcdef00 + i}; }

  // Decodes `container` and compares with `raw`.
  static void ExpectDecodesTo(std::span<const std::byte> container, const std::vector<std::byte>& raw) {
    std::vector<std::byte> out(raw.size());
    ASSERT_TRUE(Decode(container, out).ok());
    EXPECT_TRUE(out == raw);
  }

  uint64_t LeasesOutstanding() {
    auto s = client_->Stats();
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->leases_outstanding : ~0ull;
  }

  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, StreamAndShmGetReturnIdenticalBytes) {
  const KvShape shapes[] = {
      {1, 3, 1, 8, DType::kFP32},        // tiny, odd token count
      {4, 64, 2, 64, DType::kFP16},      // 128 KiB
      {8, 256, 2, 128, DType::kBF16},    // 2 MiB, frames of 1 MiB
      {8, 256, 8, 128, DType::kBF16},    // 8 MiB: beyond one 4 MiB gRPC message
      {3, 100, 7, 96, DType::kFP32},     // ~3.2 MiB, sizes not frame multiples
  };
  for (size_t i = 0; i < std::size(shapes); ++i) {
    SCOPED_TRACE(shapes[i].DebugString());
    const auto raw = RandomKvBytes(shapes[i], i + 1);
    auto put = client_->Put(Spec(KeyOf(i), shapes[i]), raw);
    ASSERT_TRUE(put.ok()) << put.status();
    EXPECT_EQ(put->raw_bytes, raw.size());
    EXPECT_EQ(put->shape, shapes[i]);

    auto streamed = client_->Get(kNs, KeyOf(i));
    ASSERT_TRUE(streamed.ok()) << streamed.status();
    EXPECT_EQ(streamed->size(), put->stored_bytes);

    auto lease = client_->GetShm(kNs, KeyOf(i));
    ASSERT_TRUE(lease.ok()) << lease.status();
    std::vector<std::byte> copied(lease->bytes().size());
    auto n = lease->CopyOut(copied);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_TRUE(copied == *streamed) << "stream and shm differ";
    EXPECT_TRUE(std::equal(lease->bytes().begin(), lease->bytes().end(), streamed->begin()));
    ExpectDecodesTo(*streamed, raw);

    // GetInto with a larger caller buffer writes exactly stored_bytes at the front.
    std::vector<std::byte> big(put->stored_bytes + 100, std::byte{0x5a});
    auto into = client_->GetInto(kNs, KeyOf(i), big);
    ASSERT_TRUE(into.ok()) << into.status();
    EXPECT_TRUE(std::equal(streamed->begin(), streamed->end(), big.begin()));
    EXPECT_EQ(big.back(), std::byte{0x5a});
  }
}

TEST_F(ClientTest, GetIntoSmallBufferIsAnErrorAndMissIsNotFound) {
  const KvShape s{2, 16, 2, 64, DType::kBF16};
  ASSERT_TRUE(client_->Put(Spec(KeyOf(1), s), RandomKvBytes(s, 1)).ok());
  std::vector<std::byte> small(100);
  EXPECT_EQ(client_->GetInto(kNs, KeyOf(1), small).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Get(kNs, KeyOf(2)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->GetShm(kNs, KeyOf(2)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Get("other-namespace", KeyOf(1)).status().code(), absl::StatusCode::kNotFound)
      << "namespaces never alias";
  // Bad input is refused and changes nothing.
  std::vector<std::byte> short_raw(s.Bytes() - 2);
  EXPECT_EQ(client_->Put(Spec(KeyOf(4), s), short_raw).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Get(kNs, KeyOf(4)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Lookup("", std::vector<Key128>{KeyOf(1)}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, ShmPutThenStreamGetIsIdentical) {
  const KvShape s{8, 256, 4, 128, DType::kBF16};  // 4 MiB
  const auto raw = RandomKvBytes(s, 42);
  auto shm_put = client_->PutShm(Spec(KeyOf(1), s), raw);
  ASSERT_TRUE(shm_put.ok()) << shm_put.status();
  auto stream_put = client_->Put(Spec(KeyOf(2), s), raw);
  ASSERT_TRUE(stream_put.ok()) << stream_put.status();
  EXPECT_EQ(shm_put->payload_crc32c, stream_put->payload_crc32c) << "same tensor, same container";

  auto a = client_->Get(kNs, KeyOf(1));
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = client_->Get(kNs, KeyOf(2));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(*a == *b);
  ExpectDecodesTo(*a, raw);

  // A failing fill aborts the reservation: nothing is stored.
  auto failed = client_->PutShm(Spec(KeyOf(3), s), [](std::span<std::byte>) {
    return absl::CancelledError("engine gave up");
  });
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(client_->Get(kNs, KeyOf(3)).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ClientTest, LookupAnswersTheLongestPrefix) {
  std::vector<uint32_t> tokens(4 * 64);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i * 31 + 7);
  const auto keys = Client::HashTokens(kNs, tokens, 64);
  ASSERT_EQ(keys.size(), 4u);
  const KvShape s{2, 64, 2, 32, DType::kFP16};
  for (int chunk : {0, 1, 3}) {
    ASSERT_TRUE(client_->Put(Spec(keys[chunk], s), RandomKvBytes(s, chunk)).ok());
  }
  auto r = client_->Lookup(kNs, keys);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prefix_hits, 2u);
  ASSERT_EQ(r->entries.size(), 4u);
  EXPECT_TRUE(r->entries[0].hit());
  EXPECT_TRUE(r->entries[1].hit());
  EXPECT_FALSE(r->entries[2].hit());
  EXPECT_TRUE(r->entries[3].hit()) << "per-key info covers keys after the gap";
  EXPECT_EQ(r->entries[3].shape, s);
  EXPECT_EQ(r->entries[0].codec, "raw");
  EXPECT_EQ(r->entries[0].raw_bytes, s.Bytes());

  // The same tokens under another namespace hash to other keys.
  auto other = Client::HashTokens("another-model", tokens, 64);
  auto r2 = client_->Lookup("another-model", other);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->prefix_hits, 0u);
  // Filling the gap extends the prefix.
  ASSERT_TRUE(client_->Put(Spec(keys[2], s), RandomKvBytes(s, 2)).ok());
  EXPECT_EQ(client_->Lookup(kNs, keys)->prefix_hits, 4u);
}

TEST_F(ClientTest, LeasesAreReleased) {
  const KvShape s{2, 32, 2, 64, DType::kBF16};
  ASSERT_TRUE(client_->Put(Spec(KeyOf(1), s), RandomKvBytes(s, 1)).ok());
  ASSERT_EQ(LeasesOutstanding(), 0u);
  {
    auto a = client_->GetShm(kNs, KeyOf(1));
    ASSERT_TRUE(a.ok()) << a.status();
    auto b = client_->GetShm(kNs, KeyOf(1));
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_NE(a->lease_id(), b->lease_id());
    EXPECT_EQ(LeasesOutstanding(), 2u);
    a->Release();
    EXPECT_FALSE(a->valid());
    std::vector<std::byte> buf(s.Bytes() + 4096);
    EXPECT_EQ(a->CopyOut(buf).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(LeasesOutstanding(), 1u);
    LeasedEntry moved = std::move(*b);  // the lease moves with it, released once
    EXPECT_EQ(LeasesOutstanding(), 1u);
  }
  EXPECT_EQ(LeasesOutstanding(), 0u);
  std::vector<std::byte> buf(s.Bytes() + 4096);
  auto via_into = client_->GetShmInto(kNs, KeyOf(1), buf);
  EXPECT_TRUE(via_into.ok()) << via_into.status();
  EXPECT_EQ(LeasesOutstanding(), 0u);
}

TEST_F(ClientTest, LeasePrefixLeasesTheLeadingHitsInOneCall) {
  const KvShape s{2, 32, 2, 64, DType::kBF16};
  std::vector<Key128> keys;
  std::vector<std::vector<std::byte>> raws;
  for (uint64_t i = 0; i < 5; ++i) {
    keys.push_back(KeyOf(100 + i));
    raws.push_back(RandomKvBytes(s, 100 + i));
    if (i != 3) ASSERT_TRUE(client_->Put(Spec(keys.back(), s), raws.back()).ok());
  }
  {
    auto lp = client_->LeasePrefix(kNs, keys);
    ASSERT_TRUE(lp.ok()) << lp.status();
    ASSERT_EQ(lp->leases.size(), 3u);
    EXPECT_EQ(lp->lookup.prefix_hits, 3u);
    ASSERT_EQ(lp->lookup.entries.size(), 5u);
    EXPECT_FALSE(lp->lookup.entries[3].hit());
    EXPECT_TRUE(lp->lookup.entries[4].hit()) << "keys after the first miss still get Lookup's answer";
    EXPECT_EQ(LeasesOutstanding(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      const LeasedEntry& le = lp->leases[i];
      ASSERT_TRUE(le.valid());
      EXPECT_EQ(le.info().payload_crc32c, lp->lookup.entries[i].payload_crc32c);
      EXPECT_TRUE(VerifyContainer(le.bytes(), le.info()).ok());
      ExpectDecodesTo(le.bytes(), raws[i]);
    }
  }
  EXPECT_EQ(LeasesOutstanding(), 0u) << "destroyed leases are released";
  auto none = client_->LeasePrefix(kNs, std::span(keys).subspan(3, 1));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->leases.empty());
  EXPECT_EQ(client_->LeasePrefix("bad namespace\n", keys).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, BatchedReleasesGoOutWhenFlushed) {
  ClientOptions opts;
  opts.release_batch = 8;
  auto batched = Client::Connect(daemon_->target(), opts);
  ASSERT_TRUE(batched.ok());
  const KvShape s{1, 16, 1, 64, DType::kFP16};
  ASSERT_TRUE(client_->Put(Spec(KeyOf(1), s), RandomKvBytes(s, 1)).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*batched)->GetShm(kNs, KeyOf(1)).ok());
  EXPECT_EQ(LeasesOutstanding(), 5u) << "five leases queued, below the batch size";
  auto released = (*batched)->FlushReleases();
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(*released, 5u);
  EXPECT_EQ(LeasesOutstanding(), 0u);
}

TEST_F(ClientTest, EvictionNeverFreesALeasedEntry) {
  // 64 MiB pool; each entry is 4 MiB raw.
  const KvShape s{8, 256, 4, 128, DType::kBF16};
  const auto pinned_raw = RandomKvBytes(s, 1000);
  ASSERT_TRUE(client_->Put(Spec(KeyOf(0), s), pinned_raw).ok());
  auto lease = client_->GetShm(kNs, KeyOf(0), /*lease_ms=*/120'000);
  ASSERT_TRUE(lease.ok()) << lease.status();
  const std::vector<std::byte> before(lease->bytes().begin(), lease->bytes().end());

  // Write four times the pool through both paths.
  int stored = 0;
  for (int i = 1; i <= 64; ++i) {
    const auto raw = RandomKvBytes(s, i);
    auto r = (i % 2) ? client_->Put(Spec(KeyOf(i), s), raw) : client_->PutShm(Spec(KeyOf(i), s), raw);
    ASSERT_TRUE(r.ok()) << "put " << i << ": " << r.status();
    ++stored;
  }
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_GT(stats->evictions, 0u) << "the pool must have been under pressure";

  std::vector<std::byte> copy(lease->bytes().size());
  auto n = lease->CopyOut(copy);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_TRUE(copy == before);
  ExpectDecodesTo(copy, pinned_raw);
  // The newest entry is intact; the oldest unleased ones were evicted.
  auto last = client_->Get(kNs, KeyOf(64));
  ASSERT_TRUE(last.ok()) << last.status();
  ExpectDecodesTo(*last, RandomKvBytes(s, 64));
  EXPECT_EQ(client_->Get(kNs, KeyOf(1)).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ClientTest, ExpiredLeaseNeverYieldsWrongBytes) {
  // A reader slower than its lease: whatever happens to the slot, CopyOut returns the
  // entry's exact bytes or NotFound, never something else.
  const KvShape s{8, 256, 4, 128, DType::kBF16};
  const auto raw = RandomKvBytes(s, 77);
  ASSERT_TRUE(client_->Put(Spec(KeyOf(0), s), raw).ok());
  auto expected = client_->Get(kNs, KeyOf(0));
  ASSERT_TRUE(expected.ok());
  auto lease = client_->GetShm(kNs, KeyOf(0), /*lease_ms=*/1);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client_->Delete(kNs, std::vector<Key128>{KeyOf(0)}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (int i = 1; i <= 32; ++i) ASSERT_TRUE(client_->Put(Spec(KeyOf(i), s), RandomKvBytes(s, i)).ok());
  std::vector<std::byte> copy(lease->bytes().size());
  auto n = lease->CopyOut(copy);
  if (n.ok()) {
    EXPECT_TRUE(copy == *expected);
  } else {
    EXPECT_EQ(n.status().code(), absl::StatusCode::kNotFound) << n.status();
  }
}

TEST_F(ClientTest, DeleteRemovesEntries) {
  const KvShape s{2, 16, 2, 64, DType::kBF16};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client_->Put(Spec(KeyOf(i), s), RandomKvBytes(s, i)).ok());
  std::vector<Key128> two = {KeyOf(0), KeyOf(2), KeyOf(9)};
  auto n = client_->Delete(kNs, two);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(client_->Get(kNs, KeyOf(0)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(client_->Get(kNs, KeyOf(1)).ok());
  auto r = client_->Lookup(kNs, std::vector<Key128>{KeyOf(0), KeyOf(1), KeyOf(2)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->prefix_hits, 0u);
  EXPECT_TRUE(r->entries[1].hit());
  EXPECT_EQ(*client_->Delete(kNs, two), 0u) << "deleting again finds nothing";
}

TEST_F(ClientTest, ConcurrentCallsOnOneClient) {
  const KvShape s{4, 64, 2, 64, DType::kFP16};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        const uint64_t id = t * 100 + i;
        const auto raw = RandomKvBytes(s, id);
        auto put = (i % 2) ? client_->PutShm(Spec(KeyOf(id), s), raw) : client_->Put(Spec(KeyOf(id), s), raw);
        if (!put.ok()) {
          ++failures;
          continue;
        }
        std::vector<std::byte> out(put->stored_bytes), dec(raw.size());
        auto got = (i % 3) ? client_->GetShmInto(kNs, KeyOf(id), out) : client_->GetInto(kNs, KeyOf(id), out);
        if (!got.ok() || !Decode(out, dec).ok() || dec != raw) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(LeasesOutstanding(), 0u);
}

TEST_F(ClientTest, SurvivesADaemonRestart) {
  const KvShape s{2, 64, 2, 64, DType::kBF16};
  ASSERT_TRUE(client_->PutShm(Spec(KeyOf(1), s), RandomKvBytes(s, 1)).ok());
  ASSERT_EQ(daemon_->Restart(), "");
  // The old pool is gone; the client notices and maps the new one.
  const auto raw = RandomKvBytes(s, 2);
  absl::StatusOr<EntryInfo> put = absl::UnavailableError("not tried");
  for (int attempt = 0; attempt < 200 && !put.ok(); ++attempt) {
    put = client_->PutShm(Spec(KeyOf(2), s), raw);
    if (!put.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(100));  // channel reconnecting
  }
  ASSERT_TRUE(put.ok()) << put.status();
  auto back = client_->GetShm(kNs, KeyOf(2));
  ASSERT_TRUE(back.ok()) << back.status();
  std::vector<std::byte> copy(back->bytes().size());
  ASSERT_TRUE(back->CopyOut(copy).ok());
  ExpectDecodesTo(copy, raw);
}

// PutSpec::durable reaches the daemon on both put paths, EntryInfo::durable reports it,
// and a durable entry survives kill -9 of the daemon (its DRAM copy does not).
TEST(ClientDurableTest, DurablePutSurvivesKillNine) {
  ::adaptcache::testing::SsdDir ssd;
  ASSERT_FALSE(ssd.path().empty());
  ::adaptcache::testing::DaemonOptions o = ::adaptcache::testing::TieredOptions(
      ssd.path(), {"--ssd-demote-on-evict", "false", "--ssd-flush-on-shutdown", "false"});
  ::adaptcache::testing::DaemonProcess d(o);
  ASSERT_EQ(d.Start(), "");
  const KvShape s{2, 16, 2, 64, DType::kBF16};
  auto put_all = [&](Client* c) {
    std::vector<EntryInfo> infos;
    for (int i = 0; i < 3; ++i) {
      PutSpec spec;
      spec.ns = kNs;
      spec.key = Key128{0x900 + static_cast<uint64_t>(i), 7};
      spec.shape = s;
      spec.durable = i != 2;  // 0: streamed, 1: shared memory, 2: not asked
      const auto raw = RandomKvBytes(s, 40 + i);
      auto info = i == 1 ? c->PutShm(spec, raw) : c->Put(spec, raw);
      EXPECT_TRUE(info.ok()) << info.status();
      infos.push_back(info.ok() ? *info : EntryInfo{});
    }
    return infos;
  };
  {
    auto c = Client::Connect(d.target());
    ASSERT_TRUE(c.ok()) << c.status();
    auto infos = put_all(c->get());
    EXPECT_TRUE(infos[0].durable);
    EXPECT_TRUE(infos[1].durable);
    EXPECT_FALSE(infos[2].durable);
  }
  ASSERT_EQ(d.Restart(/*crash=*/true), "");
  auto c = Client::Connect(d.target());
  ASSERT_TRUE(c.ok()) << c.status();
  for (int i = 0; i < 3; ++i) {
    auto got = (*c)->Get(kNs, Key128{0x900 + static_cast<uint64_t>(i), 7});
    if (i == 2) {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound) << "not asked durable, DRAM only";
      continue;
    }
    ASSERT_TRUE(got.ok()) << i << ": " << got.status();
    std::vector<std::byte> out(s.Bytes());
    ASSERT_TRUE(Decode(*got, out).ok());
    EXPECT_TRUE(out == RandomKvBytes(s, 40 + i)) << i;
  }
}

TEST_F(ClientTest, DurablePutWithoutSsdTierIsStoredButNotDurable) {
  const KvShape s{2, 16, 2, 64, DType::kBF16};
  PutSpec spec = Spec(KeyOf(77), s);
  spec.durable = true;
  auto info = client_->Put(spec, RandomKvBytes(s, 5));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->durable);  // the fixture's daemon has no SSD tier
  EXPECT_TRUE(client_->Get(kNs, KeyOf(77)).ok());
}

// A lossy Put is not estimated on the Put path: est_quality_loss is 0 there, and
// quality_known() says it is not a measurement; raw is known lossless.
TEST_F(ClientTest, QualityOfALossyPutIsUnknownNotZero) {
  const KvShape s{2, 64, 2, 64, DType::kBF16};
  PutSpec lossy = Spec(KeyOf(80), s);
  lossy.codec = "quant-k2v2-g64";
  ASSERT_TRUE(client_->Put(lossy, RandomKvBytes(s, 8)).ok());
  ASSERT_TRUE(client_->Put(Spec(KeyOf(81), s), RandomKvBytes(s, 9)).ok());
  const Key128 keys[] = {KeyOf(80), KeyOf(81), KeyOf(82)};
  auto r = client_->Lookup(kNs, keys);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries[0].codec, "quant-k2v2-g64");
  EXPECT_FALSE(r->entries[0].quality_known());
  EXPECT_EQ(r->entries[1].codec, "raw");
  EXPECT_TRUE(r->entries[1].quality_known());
  EXPECT_FALSE(r->entries[2].quality_known()) << "a miss";
  EntryInfo estimated = r->entries[0];
  estimated.est_quality_loss = 0.01f;
  EXPECT_TRUE(estimated.quality_known());
}

TEST(ClientConnectTest, UnreachableTargetIsAClearError) {
  auto c = Client::Connect("/nonexistent/dir/adaptcached.sock");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(c.status().message()).find("/nonexistent/dir"), std::string::npos);
  EXPECT_EQ(Client::Connect("").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace adaptcache::client
