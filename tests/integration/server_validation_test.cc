// Raw gRPC-stub tests of the daemon's validation: every bad input gets the right
// status code, changes nothing, and the daemon keeps serving.
#include <cstring>
#include <thread>

#include <gtest/gtest.h>

#include "common/crc32c.h"
#include "kernels/codec.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/integration/server_test_util.h"

namespace adaptcache::testing {
namespace {

using grpc::StatusCode;

class ServerValidationTest : public DaemonTest {
 protected:
  DaemonOptions Options() override {
    DaemonOptions o;
    o.extra_args = {"--max-entry-bytes", "1MiB", "--max-batch-keys", "64"};
    return o;
  }

  bool Stored(const std::string& ns, const std::string& key) { return StoredInDram(stub_.get(), ns, key); }

  v1::StatsResponse Stats() {
    grpc::ClientContext ctx;
    WithDeadline(&ctx);
    v1::StatsResponse resp;
    EXPECT_TRUE(stub_->Stats(&ctx, v1::StatsRequest(), &resp).ok());
    return resp;
  }

  void ExpectServing() {
    grpc::ClientContext ctx;
    WithDeadline(&ctx);
    v1::HealthResponse resp;
    ASSERT_TRUE(stub_->Health(&ctx, v1::HealthRequest(), &resp).ok());
    EXPECT_TRUE(resp.serving());
    // And a real Put/Get still works.
    std::string data = RandomBytes(ShapeBytes(SmallShape()), 99);
    ASSERT_TRUE(PutBytes(stub_.get(), Header("alive", TestKey(1)), data).ok());
    std::string container;
    ASSERT_TRUE(GetStream(stub_.get(), "alive", TestKey(1), &container).ok());
  }

  // The put must fail with `code`, store nothing, and leave the pool as it was.
  void ExpectPutRejected(const std::vector<v1::PutRequest>& frames, StatusCode code,
                         const std::string& what) {
    SCOPED_TRACE(what);
    const uint64_t used_before = Stats().tiers(0).used_bytes();
    auto st = SendFrames(stub_.get(), frames);
    EXPECT_EQ(st.error_code(), code) << st.error_message();
    EXPECT_FALSE(st.error_message().empty());
    EXPECT_FALSE(Stored("ns", TestKey(7)));
    EXPECT_EQ(Stats().tiers(0).used_bytes(), used_before);
  }
};

TEST_F(ServerValidationTest, PutThenGetStreamAndShmReturnIdenticalBytes) {
  const std::string data = RandomBytes(ShapeBytes(SmallShape()), 1);
  v1::PutResponse put;
  ASSERT_TRUE(PutBytes(stub_.get(), Header("ns", TestKey(7)), data, 1000, &put).ok());
  EXPECT_EQ(put.entry().tier(), v1::TIER_DRAM);
  EXPECT_EQ(put.entry().codec(), "raw");
  EXPECT_EQ(put.entry().raw_bytes(), data.size());

  std::string container;
  v1::EntryInfo info;
  ASSERT_TRUE(GetStream(stub_.get(), "ns", TestKey(7), &container, &info).ok());
  EXPECT_EQ(container.size(), info.stored_bytes());
  EXPECT_EQ(Crc32c(container.data(), container.size()), info.payload_crc32c());
  std::string decoded(data.size(), '\0');
  ASSERT_TRUE(Decode(ConstByteSpan(reinterpret_cast<const std::byte*>(container.data()), container.size()),
                     ByteSpan(reinterpret_cast<std::byte*>(decoded.data()), decoded.size()))
                  .ok());
  EXPECT_EQ(decoded, data);

  grpc::ClientContext pctx;
  v1::PoolInfoResponse pool;
  ASSERT_TRUE(stub_->PoolInfo(&pctx, v1::PoolInfoRequest(), &pool).ok());
  EXPECT_EQ(pool.shm_path(), daemon_->pool_path());
  PoolMapping map(pool);
  ASSERT_NE(map.base(), nullptr);
  v1::GetResponse shm;
  ASSERT_TRUE(GetShm(stub_.get(), "ns", TestKey(7), 0, &shm).ok());
  EXPECT_EQ(shm.pool_id(), pool.pool_id());
  EXPECT_NE(shm.lease_id(), 0u);
  EXPECT_GT(shm.lease_expires_unix_ms(), 0u);
  ASSERT_LE(shm.offset() + shm.entry().stored_bytes(), map.size());
  EXPECT_EQ(std::string(map.base() + shm.offset(), shm.entry().stored_bytes()), container);

  grpc::ClientContext rctx;
  v1::ReleaseRequest rel;
  rel.add_lease_ids(shm.lease_id());
  rel.add_lease_ids(shm.lease_id());  // the second is no longer live
  rel.add_lease_ids(123456789);       // never issued
  v1::ReleaseResponse relr;
  ASSERT_TRUE(stub_->Release(&rctx, rel, &relr).ok());
  EXPECT_EQ(relr.released(), 1u);
}

TEST_F(ServerValidationTest, RejectsBadPutStreams) {
  const auto shape = SmallShape();
  const std::string data = RandomBytes(ShapeBytes(shape), 2);
  const auto h = Header("ns", TestKey(7));

  ExpectPutRejected({HeaderFrame(h), DataFrame(data.substr(0, data.size() - 1))},
                    StatusCode::INVALID_ARGUMENT, "one byte short");
  ExpectPutRejected({HeaderFrame(h), DataFrame(data), DataFrame("x")},
                    StatusCode::INVALID_ARGUMENT, "one byte too many");
  ExpectPutRejected({HeaderFrame(h)}, StatusCode::INVALID_ARGUMENT, "header only");
  ExpectPutRejected({}, StatusCode::INVALID_ARGUMENT, "empty stream");
  ExpectPutRejected({DataFrame(data), HeaderFrame(h)}, StatusCode::INVALID_ARGUMENT,
                    "header missing");
  ExpectPutRejected({HeaderFrame(h), DataFrame(data.substr(0, 100)), HeaderFrame(h),
                     DataFrame(data.substr(100))},
                    StatusCode::INVALID_ARGUMENT, "header duplicated");
  ExpectPutRejected({HeaderFrame(h), v1::PutRequest(), DataFrame(data)},
                    StatusCode::INVALID_ARGUMENT, "frame with neither header nor data");
  // docs/api.md: an empty data frame is a client bug (not a keepalive), wherever it comes.
  ExpectPutRejected({HeaderFrame(h), DataFrame(""), DataFrame(data)}, StatusCode::INVALID_ARGUMENT,
                    "empty first data frame");
  ExpectPutRejected({HeaderFrame(h), DataFrame(data.substr(0, 100)), DataFrame(""), DataFrame(data.substr(100))},
                    StatusCode::INVALID_ARGUMENT, "empty middle data frame");
  ExpectPutRejected({HeaderFrame(h), DataFrame(data), DataFrame("")}, StatusCode::INVALID_ARGUMENT,
                    "empty data frame after all the bytes");
  {
    v1::PutHeader lossy = h;  // a staged (non-raw) Put takes the same rule
    lossy.set_codec("quant-k4v4-g64");
    ExpectPutRejected({HeaderFrame(lossy), DataFrame(data), DataFrame("")}, StatusCode::INVALID_ARGUMENT,
                      "empty data frame in a lossy put");
  }

  auto with = [&](auto mutate) {
    v1::PutHeader bad = h;
    mutate(bad);
    return std::vector<v1::PutRequest>{HeaderFrame(bad), DataFrame(data)};
  };
  ExpectPutRejected(with([](v1::PutHeader& b) { b.mutable_shape()->set_dtype(v1::DTYPE_UNSPECIFIED); }),
                    StatusCode::INVALID_ARGUMENT, "dtype unspecified");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.mutable_shape()->set_dtype(static_cast<v1::DType>(42)); }),
                    StatusCode::INVALID_ARGUMENT, "unknown dtype");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.clear_shape(); }), StatusCode::INVALID_ARGUMENT,
                    "no shape");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.mutable_shape()->set_layers(0); }),
                    StatusCode::INVALID_ARGUMENT, "zero layers");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.mutable_shape()->set_head_dim(0); }),
                    StatusCode::INVALID_ARGUMENT, "zero head_dim");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.mutable_shape()->set_layers(4000000000u); }),
                    StatusCode::INVALID_ARGUMENT, "absurd layers");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.set_key(std::string(15, 'k')); }),
                    StatusCode::INVALID_ARGUMENT, "15-byte key");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.set_key(std::string(17, 'k')); }),
                    StatusCode::INVALID_ARGUMENT, "17-byte key");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.set_key(""); }), StatusCode::INVALID_ARGUMENT,
                    "empty key");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.set_namespace_(""); }),
                    StatusCode::INVALID_ARGUMENT, "empty namespace");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.set_namespace_(std::string(300, 'n')); }),
                    StatusCode::INVALID_ARGUMENT, "long namespace");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.set_namespace_("bad\nns"); }),
                    StatusCode::INVALID_ARGUMENT, "control character in namespace");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.set_codec("zstd-19"); }),
                    StatusCode::INVALID_ARGUMENT, "unknown codec");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.add_token_importance(1.0f); }),
                    StatusCode::INVALID_ARGUMENT, "token_importance length");
  ExpectPutRejected(with([&](v1::PutHeader& b) {
                      for (uint32_t i = 0; i < shape.tokens(); ++i) b.add_token_importance(i == 3 ? NAN : 1.0f);
                    }),
                    StatusCode::INVALID_ARGUMENT, "NaN importance");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.set_probe_count(2); }),
                    StatusCode::INVALID_ARGUMENT, "probe_count without queries");
  ExpectPutRejected(with([](v1::PutHeader& b) { b.add_probe_queries(1.0f); }),
                    StatusCode::INVALID_ARGUMENT, "queries without probe_count");
  ExpectServing();
}

TEST_F(ServerValidationTest, OversizeEntryIsRejectedBeforeAnyData) {
  v1::KvShape big = SmallShape();
  big.set_tokens(4096);  // 4 MiB > --max-entry-bytes 1MiB
  grpc::ClientContext ctx;
  WithDeadline(&ctx, 10);
  v1::PutResponse resp;
  auto writer = stub_->Put(&ctx, &resp);
  ASSERT_TRUE(writer->Write(HeaderFrame(Header("ns", TestKey(7), big))));
  // No data, no half-close: the answer must come from the header alone.
  auto st = writer->Finish();
  EXPECT_EQ(st.error_code(), StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_NE(st.error_message().find("max_entry_bytes"), std::string::npos);
  EXPECT_FALSE(Stored("ns", TestKey(7)));
  ExpectServing();
}

TEST_F(ServerValidationTest, ClientCancellingMidStreamChangesNothing) {
  const std::string data = RandomBytes(ShapeBytes(SmallShape()), 3);
  const uint64_t used_before = Stats().tiers(0).used_bytes();
  {
    grpc::ClientContext ctx;
    WithDeadline(&ctx);
    v1::PutResponse resp;
    auto writer = stub_->Put(&ctx, &resp);
    ASSERT_TRUE(writer->Write(HeaderFrame(Header("ns", TestKey(7)))));
    ASSERT_TRUE(writer->Write(DataFrame(data.substr(0, data.size() / 2))));
    ctx.TryCancel();
    EXPECT_EQ(writer->Finish().error_code(), StatusCode::CANCELLED);
  }
  // The server notices the cancellation on its own thread; wait (bounded) for the
  // staging extent to come back, then check nothing was stored.
  for (int i = 0; i < 500 && Stats().tiers(0).used_bytes() != used_before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Stats().tiers(0).used_bytes(), used_before);
  EXPECT_FALSE(Stored("ns", TestKey(7)));
  ExpectServing();
}

// A raw Put's frames go straight into its container in the pool (held from the first data
// frame on), a lossy Put's into staging (nothing in the pool until it is encoded); either
// way what is committed is the streamed tensor, and what a failed stream held comes back.
TEST_F(ServerValidationTest, RawPutStreamsIntoItsContainerAndFailuresGiveItBack) {
  const v1::KvShape shape = SmallShape();
  std::string data = RandomBytes(ShapeBytes(shape), 11);
  for (size_t i = 1; i < data.size(); i += 2) data[i] = 0x3f;  // finite bf16 (fp8 refuses NaN)
  auto wait_used = [&](uint64_t want) {
    for (int i = 0; i < 500 && Stats().tiers(0).used_bytes() != want; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return Stats().tiers(0).used_bytes();
  };
  for (const std::string codec : {"raw", "fp8"}) {
    SCOPED_TRACE(codec);
    const uint64_t before = Stats().tiers(0).used_bytes();
    grpc::ClientContext ctx;
    WithDeadline(&ctx);
    v1::PutResponse resp;
    auto writer = stub_->Put(&ctx, &resp);
    ASSERT_TRUE(writer->Write(HeaderFrame(Header("direct", TestKey(codec == "raw" ? 1 : 2), shape, codec))));
    ASSERT_TRUE(writer->Write(DataFrame(data.substr(0, data.size() / 2))));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (codec == "raw") {
      EXPECT_GT(Stats().tiers(0).used_bytes(), before + data.size() / 2) << "raw bytes go to the pool at once";
    } else {
      EXPECT_EQ(Stats().tiers(0).used_bytes(), before) << "lossy bytes stage outside the pool";
    }
    ASSERT_TRUE(writer->Write(DataFrame(data.substr(data.size() / 2))));
    writer->WritesDone();
    const grpc::Status st = writer->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
    std::string container;
    ASSERT_TRUE(GetStream(stub_.get(), "direct", TestKey(codec == "raw" ? 1 : 2), &container).ok());
    EXPECT_EQ(Crc32c(container.data(), container.size()), resp.entry().payload_crc32c());
    EXPECT_EQ(container.size(), resp.entry().stored_bytes());
    if (codec == "raw") {
      std::vector<std::byte> out(data.size());
      ASSERT_TRUE(Decode(ConstByteSpan(reinterpret_cast<const std::byte*>(container.data()), container.size()),
                         ByteSpan(out))
                      .ok());
      EXPECT_EQ(std::memcmp(out.data(), data.data(), data.size()), 0);
    }
  }
  const uint64_t used1 = Stats().tiers(0).used_bytes();
  // Too many bytes, too few bytes, and a cancel: each frees what it held, stores nothing.
  std::string more = data + "x";
  EXPECT_EQ(PutBytes(stub_.get(), Header("direct", TestKey(3)), more, 4096).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(PutBytes(stub_.get(), Header("direct", TestKey(4)), data.substr(1), 4096).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(wait_used(used1), used1);
  EXPECT_FALSE(Stored("direct", TestKey(3)));
  EXPECT_FALSE(Stored("direct", TestKey(4)));
  ExpectServing();
}

TEST_F(ServerValidationTest, GetLookupDeleteValidation) {
  const std::string data = RandomBytes(ShapeBytes(SmallShape()), 4);
  for (uint64_t k : {0, 1, 3}) ASSERT_TRUE(PutBytes(stub_.get(), Header("ns", TestKey(k)), data).ok());

  {  // Longest run of leading hits, per-key info.
    grpc::ClientContext ctx;
    v1::LookupRequest req;
    req.set_namespace_("ns");
    for (uint64_t k : {0, 1, 2, 3}) req.add_keys(TestKey(k));
    v1::LookupResponse resp;
    ASSERT_TRUE(stub_->Lookup(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.prefix_hits(), 2u);
    ASSERT_EQ(resp.entries_size(), 4);
    EXPECT_EQ(resp.entries(2).tier(), v1::TIER_NONE);
    EXPECT_EQ(resp.entries(3).tier(), v1::TIER_DRAM);
    EXPECT_EQ(resp.entries(3).raw_bytes(), data.size());
    EXPECT_GT(resp.entries(3).stored_bytes(), data.size());
    EXPECT_EQ(resp.entries(3).shape().tokens(), 16u);
  }
  {  // Same key, other namespace: a miss.
    std::string c;
    EXPECT_EQ(GetStream(stub_.get(), "other", TestKey(0), &c).error_code(), StatusCode::NOT_FOUND);
  }
  auto lookup = [&](const std::string& ns, std::vector<std::string> keys) {
    grpc::ClientContext ctx;
    v1::LookupRequest req;
    req.set_namespace_(ns);
    for (auto& k : keys) req.add_keys(k);
    v1::LookupResponse resp;
    return stub_->Lookup(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(lookup("ns", {TestKey(0), "short"}), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(lookup("", {TestKey(0)}), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(lookup("ns", std::vector<std::string>(65, TestKey(0))), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(lookup("ns", {}), StatusCode::OK);

  std::string c;
  EXPECT_EQ(GetStream(stub_.get(), "ns", TestKey(2), &c).error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(GetStream(stub_.get(), "ns", "0123", &c).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(GetStream(stub_.get(), std::string(1000, 'x'), TestKey(0), &c).error_code(),
            StatusCode::INVALID_ARGUMENT);
  {
    grpc::ClientContext ctx;
    v1::GetRequest req;
    req.set_namespace_("ns");
    req.set_key(TestKey(0));
    req.set_transfer(static_cast<v1::Transfer>(9));
    auto reader = stub_->Get(&ctx, req);
    v1::GetResponse f;
    EXPECT_FALSE(reader->Read(&f));
    EXPECT_EQ(reader->Finish().error_code(), StatusCode::INVALID_ARGUMENT);
  }
  {  // A Delete with one bad key deletes nothing.
    grpc::ClientContext ctx;
    v1::DeleteRequest req;
    req.set_namespace_("ns");
    req.add_keys(TestKey(0));
    req.add_keys("bad");
    v1::DeleteResponse resp;
    EXPECT_EQ(stub_->Delete(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(Stored("ns", TestKey(0)));
  }
  {
    grpc::ClientContext ctx;
    v1::DeleteRequest req;
    req.set_namespace_("ns");
    req.add_keys(TestKey(0));
    req.add_keys(TestKey(2));  // absent
    v1::DeleteResponse resp;
    ASSERT_TRUE(stub_->Delete(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.deleted(), 1u);
    EXPECT_FALSE(Stored("ns", TestKey(0)));
  }
  {
    grpc::ClientContext ctx;
    v1::ReleaseRequest req;
    for (int i = 0; i < 65; ++i) req.add_lease_ids(i + 1);
    v1::ReleaseResponse resp;
    EXPECT_EQ(stub_->Release(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  ExpectServing();
}

TEST_F(ServerValidationTest, ReservePutCommitAndAbort) {
  grpc::ClientContext pctx;
  v1::PoolInfoResponse pool;
  ASSERT_TRUE(stub_->PoolInfo(&pctx, v1::PoolInfoRequest(), &pool).ok());
  PoolMapping map(pool);
  ASSERT_NE(map.base(), nullptr);
  const std::string data = RandomBytes(ShapeBytes(SmallShape()), 5);

  v1::ReservePutResponse res;
  {
    grpc::ClientContext ctx;
    v1::ReservePutRequest req;
    *req.mutable_header() = Header("ns", TestKey(7));
    ASSERT_TRUE(stub_->ReservePut(&ctx, req, &res).ok());
  }
  EXPECT_EQ(res.length(), data.size());
  EXPECT_EQ(res.pool_id(), pool.pool_id());
  ASSERT_LE(res.offset() + res.length(), map.size());
  std::memcpy(map.base() + res.offset(), data.data(), data.size());
  {
    grpc::ClientContext ctx;
    v1::CommitPutRequest req;
    req.set_reservation_id(res.reservation_id());
    v1::PutResponse resp;
    ASSERT_TRUE(stub_->CommitPut(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.entry().raw_bytes(), data.size());
  }
  std::string container;
  ASSERT_TRUE(GetStream(stub_.get(), "ns", TestKey(7), &container).ok());
  std::string decoded(data.size(), '\0');
  ASSERT_TRUE(Decode(ConstByteSpan(reinterpret_cast<const std::byte*>(container.data()), container.size()),
                     ByteSpan(reinterpret_cast<std::byte*>(decoded.data()), decoded.size()))
                  .ok());
  EXPECT_EQ(decoded, data);

  auto commit = [&](uint64_t id, bool abort) {
    grpc::ClientContext ctx;
    v1::CommitPutRequest req;
    req.set_reservation_id(id);
    req.set_abort(abort);
    v1::PutResponse resp;
    return stub_->CommitPut(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(commit(res.reservation_id(), false), StatusCode::NOT_FOUND);  // already committed
  EXPECT_EQ(commit(0, false), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(commit(987654321, false), StatusCode::NOT_FOUND);

  v1::ReservePutResponse res2;
  {
    grpc::ClientContext ctx;
    v1::ReservePutRequest req;
    *req.mutable_header() = Header("ns", TestKey(8));
    ASSERT_TRUE(stub_->ReservePut(&ctx, req, &res2).ok());
  }
  EXPECT_EQ(commit(res2.reservation_id(), true), StatusCode::OK);
  EXPECT_EQ(commit(res2.reservation_id(), false), StatusCode::NOT_FOUND);
  EXPECT_FALSE(Stored("ns", TestKey(8)));

  {  // Bad headers are refused before anything is reserved.
    grpc::ClientContext ctx;
    v1::ReservePutRequest req;
    v1::ReservePutResponse resp;
    EXPECT_EQ(stub_->ReservePut(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
    grpc::ClientContext ctx2;
    *req.mutable_header() = Header("ns", "shortkey");
    EXPECT_EQ(stub_->ReservePut(&ctx2, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_EQ(Stats().leases_outstanding(), 0u);
  ExpectServing();
}

// Short lease and reservation lifetimes, so expiry happens within the test.
class ServerExpiryTest : public ServerValidationTest {
 protected:
  DaemonOptions Options() override {
    DaemonOptions o;
    o.extra_args = {"--reservation-ms", "50", "--lease-default-ms", "20", "--reap-interval-ms", "20"};
    return o;
  }
};

TEST_F(ServerExpiryTest, ExpiredLeaseAndReservation) {
  const std::string data = RandomBytes(ShapeBytes(SmallShape()), 6);
  ASSERT_TRUE(PutBytes(stub_.get(), Header("ns", TestKey(1)), data).ok());
  v1::GetResponse shm;
  ASSERT_TRUE(GetShm(stub_.get(), "ns", TestKey(1), 0, &shm).ok());
  v1::ReservePutResponse res;
  {
    grpc::ClientContext ctx;
    v1::ReservePutRequest req;
    *req.mutable_header() = Header("ns", TestKey(2));
    ASSERT_TRUE(stub_->ReservePut(&ctx, req, &res).ok());
  }
  // Wait until both expiry times have passed on the wall clock.
  const uint64_t until = std::max(shm.lease_expires_unix_ms(), res.expires_unix_ms()) + 100;
  while (static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()) < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    grpc::ClientContext ctx;
    v1::ReleaseRequest req;
    req.add_lease_ids(shm.lease_id());
    v1::ReleaseResponse resp;
    ASSERT_TRUE(stub_->Release(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.released(), 0u);  // expired: nothing to release
  }
  {
    grpc::ClientContext ctx;
    v1::CommitPutRequest req;
    req.set_reservation_id(res.reservation_id());
    v1::PutResponse resp;
    auto st = stub_->CommitPut(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), StatusCode::FAILED_PRECONDITION) << st.error_message();
  }
  EXPECT_FALSE(Stored("ns", TestKey(2)));
  EXPECT_TRUE(Stored("ns", TestKey(1)));
  ExpectServing();
}

}  // namespace
}  // namespace adaptcache::testing
