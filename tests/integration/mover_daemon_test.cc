// The daemon with a placement policy (--policy): a tiny DRAM pool and an SSD tier, a
// policy that must compress; after puts and repeated reads, Lookup shows changed
// codecs and tiers, /metrics counts the moves, a leased entry is never touched, and
// every Get returns a container that passes its CRC and decodes to (close to) the
// tensor that was put.
#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "tests/testing/kv_data.h"
#include "tiering_test_util.h"

namespace adaptcache::testing {
namespace {

constexpr char kNs[] = "mover-it";
constexpr int kEntries = 80;  // 80 x 64 KiB raw = 5 MiB > the 4 MiB DRAM pool

v1::KvShape Shape() { return SmallShape(64); }

// A KV-like tensor: Gaussian values with a per-channel scale, deterministic per seed.
std::string Tensor(int seed) {
  const std::vector<std::byte> t = GaussianBf16(ShapeBytes(Shape()) / 2, 1234 + seed, 64);
  return std::string(reinterpret_cast<const char*>(t.data()), t.size());
}

double RelError(const std::string& a, const std::string& b) {
  return RelativeError(std::as_bytes(std::span(a)), std::as_bytes(std::span(b)), DType::kBF16, 0,
                       a.size() / 2);
}

// Sum of every series of `family` whose labels contain all of `labels`.
double MetricSum(const std::string& text, const std::string& family,
                 const std::vector<std::string>& labels) {
  double sum = 0;
  size_t pos = 0;
  while ((pos = text.find("\n" + family, pos)) != std::string::npos) {
    ++pos;
    const size_t eol = text.find('\n', pos);
    const std::string line = text.substr(pos, eol - pos);
    const std::string name = line.substr(0, line.find_first_of("{ "));
    if (name != family) continue;
    bool match = true;
    for (const auto& l : labels) match &= line.find(l) != std::string::npos;
    if (match) sum += std::atof(line.c_str() + line.rfind(' ') + 1);
  }
  return sum;
}

class MoverDaemonTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> policy_args) {
    ASSERT_FALSE(ssd_.path().empty());
    if (std::find(policy_args.begin(), policy_args.end(), "--policy-interval-ms") == policy_args.end()) {
      policy_args.push_back("--policy-interval-ms");
      policy_args.push_back("100");
    }
    daemon_ = std::make_unique<DaemonProcess>(TieredOptions(ssd_.path(), policy_args));
    ASSERT_EQ(daemon_->Start(), "");
    stub_ = daemon_->NewStub();
  }
  void Put(int i) {
    v1::PutResponse resp;
    auto st = PutBytes(stub_.get(), Header(kNs, TestKey(i), Shape()), Tensor(i), 64 << 10, &resp);
    ASSERT_TRUE(st.ok()) << i << ": " << st.error_message();
  }
  std::vector<v1::EntryInfo> Lookup() {
    v1::LookupRequest req;
    req.set_namespace_(kNs);
    for (int i = 0; i < kEntries; ++i) req.add_keys(TestKey(i));
    grpc::ClientContext ctx;
    WithDeadline(&ctx);
    v1::LookupResponse resp;
    EXPECT_TRUE(stub_->Lookup(&ctx, req, &resp).ok());
    return {resp.entries().begin(), resp.entries().end()};
  }
  static std::string Describe(const std::vector<v1::EntryInfo>& infos) {
    std::map<std::string, int> n;
    for (const auto& i : infos) ++n[absl::StrCat(i.codec(), "/", v1::Tier_Name(i.tier()))];
    std::string out;
    for (const auto& [k, v] : n) absl::StrAppend(&out, k, "=", v, " ");
    return out + "\n";
  }
  std::string Metrics() {
    httplib::Client http("127.0.0.1", daemon_->metrics_port());
    auto res = http.Get("/metrics");
    return res && res->status == 200 ? res->body : "";
  }
  // Reads entry i and checks it: CRC, decode, and closeness to what was put (exact
  // for raw). Wrong bytes (another entry's tensor) would be ~1.4 away.
  void ReadAndCheck(int i, v1::EntryInfo* info_out = nullptr) {
    std::string raw;
    v1::EntryInfo info;
    auto st = GetRaw(stub_.get(), kNs, TestKey(i), &raw, &info);
    ASSERT_TRUE(st.ok()) << i << ": " << st.error_message();
    const std::string want = Tensor(i);
    ASSERT_EQ(raw.size(), want.size());
    if (info.codec() == "raw") {
      ASSERT_EQ(raw, want) << i;
    } else {
      EXPECT_LT(RelError(want, raw), 0.6) << i << " " << info.codec();
    }
    if (info_out) *info_out = info;
  }
  // Polls until pred(Lookup()) holds or 90 s pass (a liveness bound, not a timing
  // assertion: the mover runs every 100 ms).
  template <typename Pred>
  bool WaitFor(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return pred();
  }

  SsdDir ssd_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::AdaptCache::Stub> stub_;
};

TEST_F(MoverDaemonTest, StaticPolicyTranscodesEverythingButTheLeasedEntry) {
  const std::string target = "quant-k4v4-g64";
  Start({"--policy", "static:" + target, "--policy-configs", "fp8"});
  Put(0);
  v1::GetResponse leased;  // held for the whole test: the mover must leave entry 0 alone
  ASSERT_TRUE(GetShm(stub_.get(), kNs, TestKey(0), 300'000, &leased).ok());
  for (int i = 1; i < kEntries; ++i) Put(i);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 10; ++i) ReadAndCheck(i);
  }
  ASSERT_TRUE(WaitFor([&] {
    auto infos = Lookup();
    int done = 0;
    for (int i = 1; i < kEntries; ++i) done += infos[i].codec() == target;
    return done == kEntries - 1;
  })) << Metrics();
  auto infos = Lookup();
  for (int i = 1; i < kEntries; ++i) {
    EXPECT_NE(infos[i].tier(), v1::TIER_NONE) << i;
    EXPECT_EQ(infos[i].codec(), target) << i;
    EXPECT_GT(infos[i].est_quality_loss(), 0.f) << i;
    EXPECT_LT(infos[i].stored_bytes(), infos[i].raw_bytes() / 2) << i;
  }
  // The leased entry is as it was put.
  EXPECT_EQ(infos[0].codec(), leased.entry().codec());
  EXPECT_EQ(infos[0].payload_crc32c(), leased.entry().payload_crc32c());
  const std::string m = Metrics();
  // Transcoded by a plan's moves or, soon after their Put, by put transcoding.
  EXPECT_GE(MetricSum(m, "adaptcache_mover_moves_total", {"kind=\"transcode\"", "result=\"done\""}) +
                MetricSum(m, "adaptcache_mover_admissions_total", {"result=\"done\""}),
            kEntries - 1)
      << m;
  EXPECT_GE(MetricSum(m, "adaptcache_mover_plans_total", {"result=\"ok\""}), 1);
  EXPECT_EQ(MetricSum(m, "adaptcache_mover_moves_total", {"result=\"failed\""}), 0) << m;
  EXPECT_NE(m.find("adaptcache_mover_policy_info{policy=\"static:" + target + "\"} 1"),
            std::string::npos);
  for (int i = 0; i < kEntries; ++i) ReadAndCheck(i);

  // Released, entry 0 is transcoded too.
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::ReleaseRequest rel;
  rel.add_lease_ids(leased.lease_id());
  v1::ReleaseResponse rresp;
  ASSERT_TRUE(stub_->Release(&ctx, rel, &rresp).ok());
  ASSERT_TRUE(WaitFor([&] { return Lookup()[0].codec() == target; })) << Metrics();
  ReadAndCheck(0);
}

TEST_F(MoverDaemonTest, AdaptivePolicyCompressesUnderDramPressure) {
  // Quality is nearly free (alpha tiny), DRAM holds ~70% of the raw data and SSD loads
  // cost more than decoding: the optimizer must compress some entries to keep all of
  // them in DRAM (and keeps the rest raw, which decodes for free).
  Start({"--policy", "adaptive", "--policy-alpha", "0.000001", "--policy-configs",
         "fp8,quant-k4v4-g64,quant-k2v2-g32"});
  for (int i = 0; i < kEntries; ++i) Put(i);
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 20; ++i) ReadAndCheck(i);
  }
  ASSERT_TRUE(WaitFor([&] {
    auto infos = Lookup();
    int changed = 0, dram = 0;
    for (const auto& info : infos) {
      changed += info.codec() != "raw";
      dram += info.tier() == v1::TIER_DRAM;
    }
    // Raw, the pool holds < 64 of the 80 entries; compressed, all of them. The mover may
    // leave a straggler on SSD (a promote waits for free DRAM), so allow 5%.
    return changed >= kEntries / 4 && dram >= kEntries - kEntries / 20;
  })) << Describe(Lookup()) << Metrics();
  auto infos = Lookup();
  std::map<std::string, int> codecs;
  int dram = 0;
  for (int i = 0; i < kEntries; ++i) {
    ASSERT_NE(infos[i].tier(), v1::TIER_NONE) << i;  // SSD has room for everything
    ++codecs[infos[i].codec()];
    dram += infos[i].tier() == v1::TIER_DRAM;
    if (infos[i].codec() != "raw") {
      EXPECT_GT(infos[i].est_quality_loss(), 0.f) << i;
    }
  }
  EXPECT_GE(codecs.size(), 2u);  // raw where it fits, compressed where it must
  EXPECT_GE(dram, kEntries - kEntries / 20);
  const std::string m = Metrics();
  EXPECT_GE(MetricSum(m, "adaptcache_mover_moves_total", {"kind=\"transcode\"", "result=\"done\""}) +
                MetricSum(m, "adaptcache_mover_admissions_total", {"result=\"done\""}),
            kEntries / 4)
      << m;
  EXPECT_GT(MetricSum(m, "adaptcache_mover_quality_estimates_total", {"result=\"ok\""}), 0);
  EXPECT_GT(MetricSum(m, "adaptcache_mover_objective", {"term=\"total\""}), 0);
  EXPECT_EQ(MetricSum(m, "adaptcache_mover_moves_total", {"result=\"failed\""}), 0) << m;
  for (int i = 0; i < kEntries; ++i) ReadAndCheck(i);
}

TEST_F(MoverDaemonTest, PutTranscodingCompressesNewPutsWithoutWaitingForAPlan) {
  // Plans every 2 s; the first one gives the shape a put rule (static: its
  // config). Later puts are transcoded right after they land, before any plan could (a
  // plan leaves an entry alone until its quality is estimated).
  const std::string target = "fp8";
  Start({"--policy", "static:" + target, "--policy-interval-ms", "2000"});
  Put(0);
  ASSERT_TRUE(WaitFor([&] { return Lookup()[0].codec() == target; })) << Metrics();
  for (int i = 1; i <= 20; ++i) Put(i);
  ASSERT_TRUE(WaitFor([&] {
    auto infos = Lookup();
    int done = 0;
    for (int i = 1; i <= 20; ++i) done += infos[i].codec() == target;
    return done == 20;
  })) << Describe(Lookup()) << Metrics();
  const std::string m = Metrics();
  EXPECT_GE(MetricSum(m, "adaptcache_mover_admissions_total", {"result=\"done\""}), 10) << m;
  EXPECT_EQ(MetricSum(m, "adaptcache_mover_admissions_total", {"result=\"failed\""}), 0) << m;
  EXPECT_EQ(MetricSum(m, "adaptcache_mover_admission_shapes", {}), 1) << m;
  for (int i = 0; i <= 20; ++i) ReadAndCheck(i);
}

}  // namespace
}  // namespace adaptcache::testing
