#include "server/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "server/metrics_http.h"
#include "tests/server/prom_text.h"

namespace adaptcache::server {
namespace {

using adaptcache::testing::ParsePromText;
using adaptcache::testing::PromText;

TEST(MetricsTest, CounterGaugeExposition) {
  MetricsRegistry reg;
  auto reqs = reg.AddCounter("ac_requests_total", "Requests by op.", {"op", "code"});
  ASSERT_TRUE(reqs.ok());
  (*(*reqs)->WithLabels({"get", "OK"}))->Inc(3);
  (*(*reqs)->WithLabels({"put", "INVALID_ARGUMENT"}))->Inc();
  auto g = reg.AddGauge("ac_pool_bytes", "Pool bytes.");
  ASSERT_TRUE(g.ok());
  (*g)->Get()->Set(1.5);

  const std::string text = reg.Render();
  EXPECT_EQ(text,
            "# HELP ac_requests_total Requests by op.\n"
            "# TYPE ac_requests_total counter\n"
            "ac_requests_total{op=\"get\",code=\"OK\"} 3\n"
            "ac_requests_total{op=\"put\",code=\"INVALID_ARGUMENT\"} 1\n"
            "# HELP ac_pool_bytes Pool bytes.\n"
            "# TYPE ac_pool_bytes gauge\n"
            "ac_pool_bytes 1.5\n");
  PromText parsed;
  ASSERT_EQ(ParsePromText(text, &parsed), "");
  EXPECT_EQ(parsed.Sum("ac_requests_total", {{"op", "get"}}), 3);
  EXPECT_EQ(parsed.types["ac_pool_bytes"], "gauge");
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry reg;
  auto c = reg.AddCounter("ac_x_total", "Line one\nback\\slash", {"ns"});
  ASSERT_TRUE(c.ok());
  (*(*c)->WithLabels({"a\"b\\c\nd"}))->Inc();
  const std::string text = reg.Render();
  EXPECT_NE(text.find("# HELP ac_x_total Line one\\nback\\\\slash\n"), std::string::npos);
  EXPECT_NE(text.find("ac_x_total{ns=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos);
  PromText parsed;
  ASSERT_EQ(ParsePromText(text, &parsed), "");
  ASSERT_EQ(parsed.samples.size(), 1u);
  EXPECT_EQ(parsed.samples[0].labels.at("ns"), "a\"b\\c\nd");
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  MetricsRegistry reg;
  auto h = reg.AddHistogram("ac_latency_seconds", "Latency.", {"op"}, {0.001, 0.01, 0.1});
  ASSERT_TRUE(h.ok());
  Histogram* get = *(*h)->WithLabels({"get"});
  get->Observe(0.0005);
  get->Observe(0.001);  // le is inclusive
  get->Observe(0.05);
  get->Observe(7);
  PromText parsed;
  const std::string text = reg.Render();
  ASSERT_EQ(ParsePromText(text, &parsed), "") << text;
  EXPECT_EQ(parsed.types["ac_latency_seconds"], "histogram");
  EXPECT_EQ(parsed.Sum("ac_latency_seconds_bucket", {{"le", "0.001"}}), 2);
  EXPECT_EQ(parsed.Sum("ac_latency_seconds_bucket", {{"le", "0.01"}}), 2);
  EXPECT_EQ(parsed.Sum("ac_latency_seconds_bucket", {{"le", "0.1"}}), 3);
  EXPECT_EQ(parsed.Sum("ac_latency_seconds_bucket", {{"le", "+Inf"}}), 4);
  EXPECT_EQ(parsed.Sum("ac_latency_seconds_count", {{"op", "get"}}), 4);
  EXPECT_DOUBLE_EQ(parsed.Sum("ac_latency_seconds_sum"), 0.0005 + 0.001 + 0.05 + 7);
}

TEST(MetricsTest, RejectsBadRegistrations) {
  MetricsRegistry reg;
  EXPECT_FALSE(reg.AddCounter("1bad", "x").ok());
  EXPECT_FALSE(reg.AddCounter("bad-name", "x").ok());
  EXPECT_FALSE(reg.AddCounter("ok_total", "x", {"__reserved"}).ok());
  EXPECT_FALSE(reg.AddCounter("ok_total", "x", {"a", "a"}).ok());
  EXPECT_FALSE(reg.AddHistogram("h", "x", {"le"}, {1.0}).ok());
  EXPECT_FALSE(reg.AddHistogram("h", "x", {}, {2.0, 1.0}).ok());
  EXPECT_FALSE(reg.AddHistogram("h", "x", {}, {}).ok());
  ASSERT_TRUE(reg.AddCounter("ok_total", "x", {"a"}).ok());
  EXPECT_EQ(reg.AddGauge("ok_total", "dup").status().code(), absl::StatusCode::kAlreadyExists);
  auto fam = reg.AddCounter("two_total", "x", {"a", "b"});
  ASSERT_TRUE(fam.ok());
  EXPECT_FALSE((*fam)->WithLabels({"only-one"}).ok());
}

TEST(MetricsTest, CollectorsRunBeforeRender) {
  MetricsRegistry reg;
  Gauge* g = (*reg.AddGauge("ac_g", "g"))->Get();
  int calls = 0;
  reg.AddCollector([&] { g->Set(++calls); });
  EXPECT_NE(reg.Render().find("ac_g 1\n"), std::string::npos);
  EXPECT_NE(reg.Render().find("ac_g 2\n"), std::string::npos);
}

TEST(MetricsTest, FormatValue) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(2.5e-4), "0.00025");
  EXPECT_EQ(FormatValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatValue(NAN), "NaN");
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry reg;
  auto* fam = *reg.AddCounter("ac_c_total", "c", {"t"});
  auto* hist = *reg.AddHistogram("ac_h", "h", {}, DefaultLatencyBuckets());
  constexpr int kThreads = 4, kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter* c = *fam->WithLabels({t % 2 ? "odd" : "even"});
      for (int i = 0; i < kIters; ++i) {
        c->Inc();
        hist->Get()->Observe(1e-3);
      }
    });
  }
  std::string mid = reg.Render();  // rendering concurrently is safe
  for (auto& th : threads) th.join();
  PromText parsed;
  ASSERT_EQ(ParsePromText(reg.Render(), &parsed), "");
  EXPECT_EQ(parsed.Sum("ac_c_total"), kThreads * kIters);
  EXPECT_EQ(parsed.Sum("ac_h_count"), kThreads * kIters);
  PromText mid_parsed;
  EXPECT_EQ(ParsePromText(mid, &mid_parsed), "");
}

// A TCP socket on 127.0.0.1:`port`, bound and listening, with SO_REUSEPORT when asked
// (what another program sharing the port would do); -1 on failure.
int ListenOn(int port, bool reuse_port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int yes = 1;
  if (reuse_port) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &yes, sizeof(yes));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd, 4) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The status line of GET /healthz on 127.0.0.1:`port`, or "" when nothing answers.
std::string HealthzStatusLine(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  const std::string req = "GET /healthz HTTP/1.0\r\n\r\n";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
    char buf[512];
    for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) out.append(buf, n);
  }
  ::close(fd);
  return out.substr(0, out.find("\r\n"));
}

TEST(MetricsHttpTest, ASecondServerOnThePortFailsWithAClearError) {
  MetricsRegistry reg;
  MetricsHttpServer first(&reg, [] { return true; });
  auto port = first.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  MetricsHttpServer second(&reg, [] { return true; });
  auto again = second.Start("127.0.0.1", *port);
  ASSERT_FALSE(again.ok()) << "two servers share port " << *port;
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(again.status().message().find(absl::StrCat("port ", *port, " is in use")),
            std::string::npos)
      << again.status();
  // Nor may it join a socket that offers SO_REUSEPORT itself.
  const int other = ListenOn(0, /*reuse_port=*/true);
  ASSERT_GE(other, 0);
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  ASSERT_EQ(::getsockname(other, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const int other_port = ntohs(a.sin_port);
  EXPECT_FALSE(second.Start("127.0.0.1", other_port).ok());
  ::close(other);
  // The first one still serves; once stopped, its port can be bound again at once
  // (SO_REUSEADDR, despite the connection just closed).
  const std::string status_line = HealthzStatusLine(*port);
  EXPECT_NE(status_line.find(" 200 OK"), std::string::npos) << status_line;
  first.Stop();
  auto third = second.Start("127.0.0.1", *port);
  EXPECT_TRUE(third.ok()) << third.status();
}

}  // namespace
}  // namespace adaptcache::server
