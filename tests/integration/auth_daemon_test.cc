// Tenants, bearer tokens, SO_PEERCRED and TLS against the real daemon: every refusal,
// with a test CA made at test time (openssl).
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "kernels/codec.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/testing/kv_data.h"

namespace adaptcache::client {
namespace {

using ::adaptcache::testing::DaemonOptions;
using ::adaptcache::testing::DaemonProcess;

const KvShape kShape{2, 16, 2, 64, DType::kBF16};
constexpr char kTokenB[] = "token-of-tenant-b-0123456789";
constexpr char kTokenC[] = "token-of-tenant-c-0123456789";
constexpr char kTokenD[] = "token-of-tenant-d-0123456789";

Key128 KeyOf(uint64_t i) { return Key128{0x77 + i, 0x99 + i}; }

PutSpec Spec(const std::string& ns, uint64_t i) {
  PutSpec s;
  s.ns = ns;
  s.key = KeyOf(i);
  s.shape = kShape;
  return s;
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  ::chmod(path.c_str(), 0600);
}

// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
bool MakeCerts(const std::string& dir) {
  const std::string d = "'" + dir + "'";
  const std::string cmd = absl::StrCat(
      "set -e; cd ", d, "; exec >openssl.log 2>&1; ",
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ac-test-ca -keyout ca.key -out ca.pem; ",
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext; ",
      "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr; ",
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem; ",
      "openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key -out client.csr; ",
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem; ",
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.pem");
  return std::system(cmd.c_str()) == 0;
}

class AuthDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/var/tmp/ac-auth-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // Tenant a: this test's own uid on the socket; b and c: tokens. "chat" is private to
    // each tenant that lists it, "pub/*" is shared.
    Write(dir_ + "/tenants.toml", absl::StrCat(R"(
[shared]
namespaces = ["pub/*"]

[tenant.a]
namespaces = ["a/*", "chat", "pub/*"]
uids = [)", ::getuid(), R"(]
shm = true

[tenant.b]
namespaces = ["b/*", "chat", "pub/*"]
max_entries = 3

[tenant.c]
namespaces = ["c/*"]

[tenant.d]
namespaces = ["d/*"]
shm = true
ssd_bytes = "1MiB"
)"));
    Write(dir_ + "/tokens", absl::StrCat("# tenant token\nb ", kTokenB, "\nd ", kTokenD, "\n"));
  }
  void TearDown() override {
    clients_.clear();
    daemon_.reset();
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  std::string Start(std::vector<std::string> extra = {}) {
    DaemonOptions o;
    o.extra_args = {"--tenants-file", dir_ + "/tenants.toml", "--tokens-file", dir_ + "/tokens"};
    for (auto& e : extra) o.extra_args.push_back(e);
    daemon_ = std::make_unique<DaemonProcess>(o);
    return daemon_->Start();
  }
  Client& Connect(const std::string& target, ClientOptions co = {}) {
    auto c = Client::Connect(target, co);
    EXPECT_TRUE(c.ok()) << c.status();
    clients_.push_back(std::move(*c));
    return *clients_.back();
  }
  ClientOptions WithToken(const char* token) {
    ClientOptions co;
    co.token = token;
    return co;
  }
  std::string Metrics() {
    httplib::Client http("127.0.0.1", daemon_->metrics_port());
    auto res = http.Get("/metrics");
    return res ? res->body : "";
  }

  std::string dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::vector<std::unique_ptr<Client>> clients_;
};

TEST_F(AuthDaemonTest, TenantsSeeOnlyTheirOwnNamespaces) {
  ASSERT_EQ(Start(), "");
  Client& a = Connect(daemon_->target());                     // by uid
  Client& b = Connect(daemon_->target(), WithToken(kTokenB));  // by token, same socket
  const auto raw = ::adaptcache::testing::SyntheticKv(kShape, 1);
  ASSERT_TRUE(a.Put(Spec("a/model", 1), raw).ok());
  ASSERT_TRUE(b.Put(Spec("b/model", 1), raw).ok());
  // A namespace the tenant does not list: PERMISSION_DENIED, for every RPC.
  const Key128 k1[] = {KeyOf(1)};
  EXPECT_EQ(a.Lookup("b/model", k1).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(a.Get("b/model", KeyOf(1)).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(a.Delete("b/model", k1).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(a.Put(Spec("b/model", 2), raw).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(b.Get("a/model", KeyOf(1)).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(b.Get("b/model", KeyOf(1)).ok()) << "b's own entry is untouched";
  // Both list "chat": identical keys, separate entries.
  ASSERT_TRUE(a.Put(Spec("chat", 5), raw).ok());
  auto blk = b.Lookup("chat", std::vector<Key128>{KeyOf(5)});
  ASSERT_TRUE(blk.ok()) << blk.status();
  EXPECT_EQ(blk->entries[0].tier, Tier::kNone) << "a private namespace is per tenant";
  // "pub/*" is shared: one entry for both.
  ASSERT_TRUE(a.Put(Spec("pub/docs", 6), raw).ok());
  auto shared = b.Get("pub/docs", KeyOf(6));
  ASSERT_TRUE(shared.ok()) << shared.status();
  std::vector<std::byte> decoded(raw.size());
  ASSERT_TRUE(Decode(*shared, decoded).ok());
  EXPECT_TRUE(decoded == raw);
  const std::string m = Metrics();
  EXPECT_NE(m.find("adaptcache_auth_refusals_total{reason=\"permission\"} 5"), std::string::npos) << m;
  EXPECT_NE(m.find("adaptcache_tenant_entries{tenant=\"b\"}"), std::string::npos);
  EXPECT_EQ(m.find(kTokenB), std::string::npos) << "metrics never show a token";
}

TEST_F(AuthDaemonTest, UnknownCallersAreUnauthenticated) {
  ASSERT_EQ(Start(), "");
  Client& bad = Connect(daemon_->target(), WithToken("not-a-token-at-all-0000"));
  const Key128 k[] = {KeyOf(1)};
  EXPECT_EQ(bad.Lookup("a/x", k).status().code(), absl::StatusCode::kUnauthenticated)
      << "a token that is sent must be valid, even from a known uid";
  EXPECT_EQ(bad.Stats().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(bad.Health().ok()) << "Health answers anyone";
  EXPECT_NE(Metrics().find("adaptcache_auth_refusals_total{reason=\"unauthenticated\"} 2"), std::string::npos);
}

TEST_F(AuthDaemonTest, AUidNoTenantListsIsRefusedOnTheSocket) {
  Write(dir_ + "/tenants.toml", R"(
[tenant.other]
namespaces = ["x/*"]
uids = [4242424]
)");
  Write(dir_ + "/tokens", "");
  ASSERT_EQ(Start(), "");
  Client& c = Connect(daemon_->target());
  const Key128 k[] = {KeyOf(1)};
  auto r = c.Lookup("x/y", k);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated) << r.status();
  EXPECT_NE(std::string(r.status().message()).find("uid"), std::string::npos) << r.status();
}

TEST_F(AuthDaemonTest, OnlyShmTenantsMapThePool) {
  ASSERT_EQ(Start(), "");
  Client& a = Connect(daemon_->target());
  Client& b = Connect(daemon_->target(), WithToken(kTokenB));
  const auto raw = ::adaptcache::testing::SyntheticKv(kShape, 2);
  ASSERT_TRUE(b.Put(Spec("b/m", 1), raw).ok()) << "the streamed Put works for b";
  EXPECT_EQ(b.PutShm(Spec("b/m", 2), raw).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(b.GetShm("b/m", KeyOf(1)).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(b.Get("b/m", KeyOf(1)).ok());
  ASSERT_TRUE(a.PutShm(Spec("a/m", 1), raw).ok());
  EXPECT_TRUE(a.GetShm("a/m", KeyOf(1)).ok());
}

TEST_F(AuthDaemonTest, AQuotaEvictsTheTenantsOwnEntriesOnly) {
  ASSERT_EQ(Start(), "");
  Client& a = Connect(daemon_->target());
  Client& b = Connect(daemon_->target(), WithToken(kTokenB));
  const auto raw = ::adaptcache::testing::SyntheticKv(kShape, 3);
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(a.Put(Spec("a/m", i), raw).ok());
  for (uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(b.Put(Spec("b/m", i), raw).ok()) << i;
  std::vector<Key128> keys;
  for (uint64_t i = 0; i < 6; ++i) keys.push_back(KeyOf(i));
  auto bl = b.Lookup("b/m", keys);
  ASSERT_TRUE(bl.ok());
  int held = 0;
  for (const auto& e : bl->entries) held += e.hit() ? 1 : 0;
  EXPECT_EQ(held, 3) << "max_entries = 3";
  EXPECT_TRUE(bl->entries[5].hit()) << "the newest stays; the least recently used went";
  EXPECT_FALSE(bl->entries[0].hit());
  auto al = a.Lookup("a/m", std::vector<Key128>(keys.begin(), keys.begin() + 3));
  ASSERT_TRUE(al.ok());
  EXPECT_EQ(al->prefix_hits, 3u) << "another tenant's entries are never evicted for b's quota";
  EXPECT_NE(Metrics().find("adaptcache_tenant_entries{tenant=\"b\"} 3"), std::string::npos) << Metrics();
}

// Lease ids are per tenant: another tenant's Release of them releases nothing.
TEST_F(AuthDaemonTest, OnlyTheOwnerReleasesALease) {
  ASSERT_EQ(Start(), "");
  Client& a = Connect(daemon_->target());
  const auto raw = ::adaptcache::testing::SyntheticKv(kShape, 4);
  ASSERT_TRUE(a.PutShm(Spec("a/m", 1), raw).ok());
  auto lease = a.GetShm("a/m", KeyOf(1));
  ASSERT_TRUE(lease.ok()) << lease.status();
  const uint64_t id = lease->lease_id();
  auto release = [&](const char* token) {
    grpc::ClientContext ctx;
    if (token != nullptr) ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    v1::ReleaseRequest req;
    req.add_lease_ids(id);
    v1::ReleaseResponse resp;
    auto st = daemon_->NewStub()->Release(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.released();
  };
  EXPECT_EQ(release(kTokenD), 0u) << "tenant d released tenant a's lease";
  EXPECT_EQ(release(kTokenB), 0u) << "tenant b released tenant a's lease";
  EXPECT_EQ(release(nullptr), 1u) << "the owner (a, by uid) releases it";
}

// A tenant's SSD copies stay within ssd_bytes: its oldest go first, others' are untouched.
TEST_F(AuthDaemonTest, AnSsdQuotaDropsTheTenantsOldestSsdCopies) {
  ASSERT_EQ(Start({"--ssd-dir", dir_ + "/ssd"}), "");
  Client& a = Connect(daemon_->target());
  Client& d = Connect(daemon_->target(), WithToken(kTokenD));
  const KvShape big{2, 128, 2, 64, DType::kBF16};  // 128 KiB raw
  const auto raw = ::adaptcache::testing::SyntheticKv(big, 5);
  auto durable = [&](const std::string& ns, uint64_t i) {
    PutSpec s = Spec(ns, i);
    s.shape = big;
    s.durable = true;
    return s;
  };
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(a.Put(durable("a/m", i), raw).ok());
  for (uint64_t i = 0; i < 16; ++i) {
    auto r = d.Put(durable("d/m", i), raw);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->durable) << i;
  }
  const std::string m = Metrics();
  auto gauge = [&](const std::string& name) {
    const auto at = m.find(name + " ");
    return at == std::string::npos ? -1.0 : std::atof(m.c_str() + at + name.size() + 1);
  };
  const double d_ssd = gauge("adaptcache_tenant_ssd_bytes{tenant=\"d\"}");
  EXPECT_GT(d_ssd, 0) << m;
  EXPECT_LE(d_ssd, 1024.0 * 1024) << "tenant d's SSD bytes exceed its 1 MiB quota";
  EXPECT_GE(gauge("adaptcache_tenant_ssd_bytes{tenant=\"a\"}"), 4.0 * big.Bytes()) << "a's copies untouched";
  EXPECT_EQ(gauge("adaptcache_tenant_ssd_quota_bytes{tenant=\"d\"}"), 1024.0 * 1024);
  // A crash: DRAM is gone, the SSD answers alone. d keeps its newest entries only.
  clients_.clear();
  ASSERT_EQ(daemon_->Restart(/*crash=*/true), "");
  Client& d2 = Connect(daemon_->target(), WithToken(kTokenD));
  std::vector<Key128> keys;
  for (uint64_t i = 0; i < 16; ++i) keys.push_back(KeyOf(i));
  auto l = d2.Lookup("d/m", keys);
  ASSERT_TRUE(l.ok());
  int held = 0;
  for (const auto& e : l->entries) held += e.hit() ? 1 : 0;
  EXPECT_GT(held, 0);
  EXPECT_LE(held * big.Bytes(), 1024u * 1024) << held << " entries of d survived on SSD";
  EXPECT_TRUE(l->entries[15].hit()) << "the newest stays";
  EXPECT_FALSE(l->entries[0].hit()) << "the oldest went";
  Client& a2 = Connect(daemon_->target());
  auto al = a2.Lookup("a/m", std::vector<Key128>(keys.begin(), keys.begin() + 4));
  ASSERT_TRUE(al.ok());
  EXPECT_EQ(al->prefix_hits, 4u);
}

TEST_F(AuthDaemonTest, SighupReloadsTheTokens) {
  ASSERT_EQ(Start(), "");
  Client& c = Connect(daemon_->target(), WithToken(kTokenC));
  const Key128 k[] = {KeyOf(1)};
  EXPECT_EQ(c.Lookup("c/x", k).status().code(), absl::StatusCode::kUnauthenticated);
  Write(dir_ + "/tokens", absl::StrCat("c ", kTokenC, "\n"));  // b's token is gone
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  bool ok = false;
  for (int i = 0; i < 100 && !ok; ++i) {
    ok = c.Lookup("c/x", k).ok();
    if (!ok) usleep(20'000);
  }
  EXPECT_TRUE(ok) << "the new token works after SIGHUP";
  Client& b = Connect(daemon_->target(), WithToken(kTokenB));
  EXPECT_EQ(b.Lookup("b/x", k).status().code(), absl::StatusCode::kUnauthenticated);
  // A bad file keeps the old table.
  Write(dir_ + "/tokens", "nobody short\n");
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  usleep(200'000);
  EXPECT_TRUE(c.Lookup("c/x", k).ok());
  EXPECT_NE(daemon_->Log().find("not reloaded"), std::string::npos);
}

TEST(AuthTcpTest, PlainTcpNeedsAnExplicitFlag) {
  DaemonOptions o;
  o.extra_args = {"--tcp-listen", "127.0.0.1:0"};
  DaemonProcess d(o);
  const std::string err = d.Start();
  EXPECT_NE(err.find("tcp_listen needs TLS"), std::string::npos) << err;
}

TEST_F(AuthDaemonTest, TlsAndMutualTlsOnTcp) {
  ASSERT_TRUE(MakeCerts(dir_)) << "openssl failed; see " << dir_ << "/openssl.log";
  ASSERT_EQ(Start({"--tcp-listen", "127.0.0.1:0", "--tls-cert", dir_ + "/server.pem", "--tls-key",
                   dir_ + "/server.key", "--tls-client-ca", dir_ + "/ca.pem"}),
            "");
  const std::string target = absl::StrCat("127.0.0.1:", daemon_->tcp_port());
  ClientOptions base = WithToken(kTokenB);
  base.rpc_timeout = std::chrono::milliseconds(5000);
  // Plain TCP to a TLS port: no connection.
  EXPECT_FALSE(Client::Connect(target, base).ok());
  // TLS, but no client certificate: the handshake is refused (mutual TLS).
  ClientOptions ca_only = base;
  ca_only.tls_ca_file = dir_ + "/ca.pem";
  EXPECT_FALSE(Client::Connect(target, ca_only).ok());
  // A CA that did not sign the server's certificate: refused by the client.
  ClientOptions wrong_ca = base;
  wrong_ca.tls_ca_file = dir_ + "/other.pem";
  wrong_ca.tls_cert_file = dir_ + "/client.pem";
  wrong_ca.tls_key_file = dir_ + "/client.key";
  EXPECT_FALSE(Client::Connect(target, wrong_ca).ok());
  // Mutual TLS and a token: served, as tenant b.
  ClientOptions good = wrong_ca;
  good.tls_ca_file = dir_ + "/ca.pem";
  auto c = Client::Connect(target, good);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto raw = ::adaptcache::testing::SyntheticKv(kShape, 4);
  ASSERT_TRUE((*c)->Put(Spec("b/tls", 1), raw).ok());
  EXPECT_TRUE((*c)->Get("b/tls", KeyOf(1)).ok());
  EXPECT_EQ((*c)->Get("a/tls", KeyOf(1)).status().code(), absl::StatusCode::kPermissionDenied);
  // Over TCP without a token: no uid to go by.
  ClientOptions no_token = good;
  no_token.token = "";
  ::unsetenv("ADAPTCACHE_TOKEN");
  auto n = Client::Connect(target, no_token);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ((*n)->Get("b/tls", KeyOf(1)).status().code(), absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace adaptcache::client
