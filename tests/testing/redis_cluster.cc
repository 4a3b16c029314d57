#include "tests/testing/redis_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace adaptcache::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kCliTimeoutMs = 10'000;
constexpr int kCreateTimeoutMs = 30'000;
constexpr int kNodeStartTimeoutMs = 10'000;
constexpr int kHealthyTimeoutMs = 30'000;
constexpr int kFailoverTimeoutMs = 30'000;
constexpr int kStartAttemptsPerNode = 4;
constexpr int kTermGraceMs = 2'000;
constexpr int kSlots = 16384;
// Client ports in [12000, 22000), so the bus ports (P+10000) fall in [22000, 32000):
// the two ranges do not overlap, and both stay below Linux's default ephemeral range
// (32768-60999), where outgoing connections could take a port between the bind test
// and redis-server's bind.
constexpr int kPortLo = 12000;
constexpr int kPortHi = 22000;
constexpr int kBusOffset = 10000;
constexpr char kDirPrefix[] = "ac_redis_";
constexpr char kTmpRoot[] = "/var/tmp";

std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string p = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  for (absl::string_view dir : absl::StrSplit(p, ':')) {
    if (dir.empty()) dir = ".";
    std::string full = absl::StrCat(dir, "/", name);
    if (::access(full.c_str(), X_OK) == 0 && !std::filesystem::is_directory(full)) return full;
  }
  return "";
}

const std::string& RedisServerPath() {
  static const std::string p = FindOnPath("redis-server");
  return p;
}
const std::string& RedisCliPath() {
  static const std::string p = FindOnPath("redis-cli");
  return p;
}

// An fd >= 3 with O_CLOEXEC (so dup2 onto 0/1/2 in the child always clears CLOEXEC and
// never collides with its own target).
int AboveStdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  ::close(fd);
  return moved;
}

// fork/exec of `path argv...` with stdin/stdout/stderr from the given fds and, when
// `chdir_to` is not empty, that working directory. The child gets PDEATHSIG=SIGKILL, an
// empty signal mask and no other inherited fds. Everything the child touches is
// prepared before fork (the test process may have threads).
pid_t Spawn(const std::string& path, const std::vector<std::string>& args, int in_fd,
            int out_fd, int err_fd, const std::string& chdir_to) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 2);
  argv.push_back(const_cast<char*>(path.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const char* dir = chdir_to.empty() ? nullptr : chdir_to.c_str();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;  // parent (or -1)
  // Child: async-signal-safe calls only.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  ::signal(SIGINT, SIG_DFL);
  if (::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) ::_exit(126);
  if (::syscall(SYS_close_range, 3u, ~0u, 0u) != 0) {
    for (int fd = 3; fd < 4096; ++fd) ::close(fd);
  }
  if (dir != nullptr && ::chdir(dir) != 0) ::_exit(126);
  ::execv(argv[0], argv.data());
  ::_exit(127);
}

struct RunResult {
  int exit_code = -1;  // -1: killed by a signal, timed out, or could not be reaped
  bool timed_out = false;
  std::string out;
  std::string err;
};

int DevNull(int flags) { return AboveStdio(::open("/dev/null", flags | O_CLOEXEC)); }

// Runs a command to completion (at most timeout_ms), capturing stdout and stderr.
absl::StatusOr<RunResult> RunCapture(const std::string& path,
                                     const std::vector<std::string>& args, int timeout_ms) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return absl::InternalError("pipe2 failed");
  }
  for (int* fd : {&out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1]}) *fd = AboveStdio(*fd);
  const int in_fd = DevNull(O_RDONLY);
  const pid_t pid = Spawn(path, args, in_fd, out_pipe[1], err_pipe[1], "");
  const int fork_errno = errno;
  ::close(in_fd);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (pid < 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return absl::InternalError(absl::StrCat("fork failed: ", std::strerror(fork_errno)));
  }
  RunResult r;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[8192];
  while (open_fds > 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      r.timed_out = true;
      break;
    }
    const int n = ::poll(fds, 2, static_cast<int>(left));
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t got = ::read(fds[i].fd, buf, sizeof(buf));
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  if (r.timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  pid_t w;
  do {
    w = ::waitpid(pid, &status, 0);
  } while (w < 0 && errno == EINTR);
  if (w == pid && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

bool PortFree(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // No SO_REUSEADDR: stricter than redis-server's own bind, so a port that passes here
  // is bindable there.
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return ok;
}

std::mt19937& Rng() {
  static std::mt19937 rng([] {
    std::random_device rd;
    return rd() ^ static_cast<uint32_t>(::getpid()) * 2654435761u ^
           static_cast<uint32_t>(Clock::now().time_since_epoch().count());
  }());
  return rng;
}

// A client port P with P and P+10000 bindable and neither in `taken`.
absl::StatusOr<int> PickPort(const std::vector<int>& taken) {
  std::uniform_int_distribution<int> dist(kPortLo, kPortHi - 1);
  for (int attempt = 0; attempt < 2000; ++attempt) {
    const int p = dist(Rng());
    if (std::find(taken.begin(), taken.end(), p) != taken.end()) continue;
    if (PortFree(p) && PortFree(p + kBusOffset)) return p;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("no free loopback port pair P, P+", kBusOffset, " in [", kPortLo, ", ",
                   kPortHi, ")"));
}

// Removes /var/tmp/ac_redis_<pid>_* directories whose creating process is gone (left by
// a test process that was killed before its destructor ran).
void SweepStaleDirs() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(kTmpRoot, ec)) {
    const std::string name = e.path().filename().string();
    absl::string_view rest = name;
    if (!absl::ConsumePrefix(&rest, kDirPrefix)) continue;
    const size_t us = rest.find('_');
    int pid = 0;
    if (us == absl::string_view::npos || !absl::SimpleAtoi(rest.substr(0, us), &pid) ||
        pid <= 0) {
      continue;
    }
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
      std::error_code rm_ec;
      std::filesystem::remove_all(e.path(), rm_ec);
    }
  }
}

std::string TailOfFile(const std::string& path, size_t max_lines) {
  std::ifstream in(path);
  if (!in) return "(missing)\n";
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(std::move(line));
    if (lines.size() > 4 * max_lines) lines.erase(lines.begin(), lines.end() - max_lines);
  }
  const size_t from = lines.size() > max_lines ? lines.size() - max_lines : 0;
  std::string out;
  for (size_t i = from; i < lines.size(); ++i) absl::StrAppend(&out, "  ", lines[i], "\n");
  return out;
}

// One line of CLUSTER NODES.
struct NodeLine {
  std::string id;
  int port = 0;
  std::set<std::string> flags;
  std::string master_id;  // "-" for a master
  std::vector<std::pair<int, int>> slots;  // inclusive ranges; importing/migrating skipped

  bool Has(const std::string& f) const { return flags.count(f) != 0; }
  bool Failing() const { return Has("fail") || Has("fail?"); }
  bool IsMaster() const { return Has("master"); }
  bool IsReplica() const { return Has("slave"); }
  bool Owns(int slot) const {
    for (const auto& [lo, hi] : slots) {
      if (slot >= lo && slot <= hi) return true;
    }
    return false;
  }
  int SlotCount() const {
    int n = 0;
    for (const auto& [lo, hi] : slots) n += hi - lo + 1;
    return n;
  }
};

absl::StatusOr<std::vector<NodeLine>> ParseClusterNodes(const std::string& text) {
  std::vector<NodeLine> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 8) return absl::InternalError(absl::StrCat("bad CLUSTER NODES line: ", line));
    NodeLine n;
    n.id = std::string(f[0]);
    // ip:port@cport[,hostname]
    absl::string_view addr = f[1];
    const size_t colon = addr.rfind(':', addr.find('@'));
    const size_t at = addr.find('@');
    if (colon == absl::string_view::npos ||
        !absl::SimpleAtoi(addr.substr(colon + 1, at == absl::string_view::npos
                                                     ? absl::string_view::npos
                                                     : at - colon - 1),
                          &n.port)) {
      n.port = 0;  // e.g. ":0@0" for a node whose address is not known yet
    }
    for (absl::string_view flag : absl::StrSplit(f[2], ',')) n.flags.insert(std::string(flag));
    n.master_id = std::string(f[3]);
    for (size_t i = 8; i < f.size(); ++i) {
      if (f[i].empty() || f[i][0] == '[') continue;
      std::pair<absl::string_view, absl::string_view> r = absl::StrSplit(f[i], '-');
      int lo = 0, hi = 0;
      if (!absl::SimpleAtoi(r.first, &lo)) continue;
      if (r.second.empty()) {
        hi = lo;
      } else if (!absl::SimpleAtoi(r.second, &hi)) {
        continue;
      }
      n.slots.emplace_back(lo, hi);
    }
    out.push_back(std::move(n));
  }
  return out;
}

// "key:value" lines of CLUSTER INFO / INFO.
std::map<std::string, std::string> ParseInfo(const std::string& text) {
  std::map<std::string, std::string> kv;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t c = line.find(':');
    if (c == absl::string_view::npos) continue;
    kv[std::string(line.substr(0, c))] = std::string(line.substr(c + 1));
  }
  return kv;
}

}  // namespace

bool RedisServerAvailable() { return !RedisServerPath().empty() && !RedisCliPath().empty(); }

absl::StatusOr<std::unique_ptr<LocalRedisCluster>> LocalRedisCluster::Start(Options options) {
  if (!RedisServerAvailable()) return absl::FailedPreconditionError(kRedisMissingMessage);
  if (options.masters < 3) {
    return absl::InvalidArgumentError("a Redis Cluster needs at least 3 masters");
  }
  if (options.replicas_per_master < 0 || options.node_timeout_ms <= 0) {
    return absl::InvalidArgumentError("replicas_per_master >= 0 and node_timeout_ms > 0");
  }
  SweepStaleDirs();
  std::unique_ptr<LocalRedisCluster> c(new LocalRedisCluster(std::move(options)));
  absl::Status s = c->StartNodes();
  if (s.ok()) s = c->CreateCluster();
  if (s.ok()) s = c->WaitHealthy(kHealthyTimeoutMs);
  if (!s.ok()) {
    s = c->WithLogs(s);
    c->StopAll();
    return s;  // c's destructor removes the directories
  }
  return c;
}

LocalRedisCluster::~LocalRedisCluster() {
  for (Node& n : nodes_) {
    if (n.pid > 0) ::kill(n.pid, SIGTERM);
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(kTermGraceMs);
  for (;;) {
    bool any = false;
    for (Node& n : nodes_) {
      if (n.pid <= 0) continue;
      int status = 0;
      const pid_t w = ::waitpid(n.pid, &status, WNOHANG);
      if (w == n.pid || (w < 0 && errno == ECHILD)) {
        n.pid = -1;
      } else {
        any = true;
      }
    }
    if (!any || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  StopAll();
  for (const Node& n : nodes_) {
    std::error_code ec;
    if (!n.dir.empty()) std::filesystem::remove_all(n.dir, ec);
  }
}

std::vector<std::string> LocalRedisCluster::Seeds() const {
  std::vector<std::string> out;
  for (const Node& n : nodes_) out.push_back(absl::StrCat("127.0.0.1:", n.port));
  return out;
}

absl::StatusOr<std::string> LocalRedisCluster::Cli(int port,
                                              const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"-h", "127.0.0.1", "-p", std::to_string(port)};
  if (!options_.password.empty()) {
    argv.insert(argv.end(), {"-a", options_.password, "--no-auth-warning"});
  }
  argv.push_back("-e");  // an error reply exits 1
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<RunResult> r = RunCapture(RedisCliPath(), argv, kCliTimeoutMs);
  if (!r.ok()) return r.status();
  const std::string what = absl::StrCat("redis-cli -p ", port, " ", absl::StrJoin(args, " "));
  if (r->timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat(what, ": no answer in ", kCliTimeoutMs, " ms"));
  }
  if (r->exit_code != 0) {
    const std::string msg = absl::StrCat(what, " exited ", r->exit_code, ": ",
                                         absl::StripTrailingAsciiWhitespace(r->err),
                                         r->out.empty() ? "" : " / stdout: ",
                                         absl::StripTrailingAsciiWhitespace(r->out));
    if (r->err.find("Could not connect") != std::string::npos ||
        r->err.find("Connection refused") != std::string::npos ||
        r->err.find("Connection reset") != std::string::npos) {
      return absl::UnavailableError(msg);
    }
    return absl::InternalError(msg);
  }
  return std::move(r->out);
}

absl::Status LocalRedisCluster::StartNodes() {
  const int total = options_.masters * (1 + options_.replicas_per_master);
  std::vector<int> taken;
  nodes_.resize(total);
  for (Node& n : nodes_) {
    std::string tmpl = absl::StrCat(kTmpRoot, "/", kDirPrefix, ::getpid(), "_XXXXXX");
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return absl::InternalError(absl::StrCat("mkdtemp ", tmpl, ": ", std::strerror(errno)));
    }
    std::error_code ec;
    const auto canonical = std::filesystem::canonical(tmpl, ec);
    n.dir = ec ? tmpl : canonical.string();
  }
  // Launch all, then wait for each; a node that exits (its port taken meanwhile) is
  // restarted on another port.
  for (Node& n : nodes_) {
    absl::Status s = StartNode(n, taken);
    if (!s.ok()) return s;
  }
  const std::vector<std::string> probe = {"CONFIG", "GET", "dir"};
  for (Node& n : nodes_) {
    int attempts = 1;
    const auto deadline = Clock::now() + std::chrono::milliseconds(kNodeStartTimeoutMs);
    for (;;) {
      int status = 0;
      if (::waitpid(n.pid, &status, WNOHANG) == n.pid) {
        n.pid = -1;
        const std::string why = TailOfFile(n.dir + "/redis.log", 20) +
                                TailOfFile(n.dir + "/stdout.log", 20);
        const bool port_taken = absl::StrContains(why, "Address already in use") ||
                                absl::StrContains(why, "Failed listening on port");
        if (!port_taken || attempts >= kStartAttemptsPerNode) {
          return absl::InternalError(absl::StrCat("redis-server on port ", n.port,
                                                  " exited (attempt ", attempts, ")"));
        }
        ++attempts;
        absl::Status s = StartNode(n, taken);
        if (!s.ok()) return s;
        continue;
      }
      // CONFIG GET dir (not PING): the answer must come from this node, not from another
      // test's node that won the race for the port.
      absl::StatusOr<std::string> out = Cli(n.port, probe);
      if (out.ok() && absl::StrContains(*out, n.dir)) break;
      if (Clock::now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "redis-server on port ", n.port, " did not answer in ", kNodeStartTimeoutMs,
            " ms: ", out.ok() ? absl::StrCat("dir is ", *out) : out.status().ToString()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return absl::OkStatus();
}

absl::Status LocalRedisCluster::StartNode(Node& n, std::vector<int>& taken) {
  absl::StatusOr<int> port = PickPort(taken);
  if (!port.ok()) return port.status();
  n.port = *port;
  taken.push_back(n.port);
  std::error_code ec;
  std::filesystem::remove(n.dir + "/nodes.conf", ec);  // from an earlier attempt
  std::vector<std::string> args = {
      "--port", std::to_string(n.port), "--bind", "127.0.0.1",
      "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
      "--cluster-node-timeout", std::to_string(options_.node_timeout_ms),
      "--save", "", "--appendonly", "no",
      "--dir", n.dir, "--logfile", n.dir + "/redis.log", "--daemonize", "no",
      // A replica's full sync starts at once (the default waits 5 s for more replicas).
      "--repl-diskless-sync-delay", "0",
      // A replica always tries to fail over, however long its link has been down.
      "--cluster-replica-validity-factor", "0"};
  if (!options_.password.empty()) {
    args.insert(args.end(),
                {"--requirepass", options_.password, "--masterauth", options_.password});
  }
  const int in_fd = DevNull(O_RDONLY);
  const int out_fd = AboveStdio(
      ::open((n.dir + "/stdout.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (in_fd < 0 || out_fd < 0) {
    if (in_fd >= 0) ::close(in_fd);
    if (out_fd >= 0) ::close(out_fd);
    return absl::InternalError(absl::StrCat("open /dev/null or ", n.dir, "/stdout.log"));
  }
  n.pid = Spawn(RedisServerPath(), args, in_fd, out_fd, out_fd, n.dir);
  const int fork_errno = errno;
  ::close(in_fd);
  ::close(out_fd);
  if (n.pid < 0) {
    return absl::InternalError(absl::StrCat("fork failed: ", std::strerror(fork_errno)));
  }
  return absl::OkStatus();
}

absl::Status LocalRedisCluster::CreateCluster() {
  std::vector<std::string> argv;
  if (!options_.password.empty()) {
    argv.insert(argv.end(), {"-a", options_.password, "--no-auth-warning"});
  }
  argv.insert(argv.end(), {"--cluster", "create"});
  for (const std::string& s : Seeds()) argv.push_back(s);
  argv.insert(argv.end(), {"--cluster-replicas", std::to_string(options_.replicas_per_master),
                           "--cluster-yes"});
  absl::StatusOr<RunResult> r = RunCapture(RedisCliPath(), argv, kCreateTimeoutMs);
  if (!r.ok()) return r.status();
  if (r->timed_out || r->exit_code != 0 ||
      r->out.find("All 16384 slots covered") == std::string::npos) {
    return absl::InternalError(absl::StrCat(
        "redis-cli --cluster create ", r->timed_out ? "timed out" : "failed",
        " (exit ", r->exit_code, "):\n", r->out, r->err));
  }
  return absl::OkStatus();
}

// Every node: cluster_state:ok with all slots assigned; its CLUSTER NODES lists every
// node, none failing or in handshake, `masters` masters owning all slots and each
// replica attached to one of them; each replica's link to its master is up.
absl::Status LocalRedisCluster::CheckHealthy() const {
  const int total = static_cast<int>(nodes_.size());
  const int want_replicas = options_.masters * options_.replicas_per_master;
  for (const Node& n : nodes_) {
    absl::StatusOr<std::string> info = Cli(n.port, {"CLUSTER", "INFO"});
    if (!info.ok()) return info.status();
    auto kv = ParseInfo(*info);
    if (kv["cluster_state"] != "ok" || kv["cluster_slots_assigned"] != "16384" ||
        kv["cluster_known_nodes"] != std::to_string(total)) {
      return absl::UnavailableError(absl::StrCat(
          "node ", n.port, ": cluster_state=", kv["cluster_state"], " slots_assigned=",
          kv["cluster_slots_assigned"], " known_nodes=", kv["cluster_known_nodes"]));
    }
    absl::StatusOr<std::string> text = Cli(n.port, {"CLUSTER", "NODES"});
    if (!text.ok()) return text.status();
    absl::StatusOr<std::vector<NodeLine>> lines = ParseClusterNodes(*text);
    if (!lines.ok()) return lines.status();
    std::set<std::string> master_ids;
    int slots = 0, replicas = 0;
    bool self_replica = false;
    for (const NodeLine& l : *lines) {
      if (l.Failing() || l.Has("handshake") || l.Has("noaddr")) {
        return absl::UnavailableError(absl::StrCat("node ", n.port, " sees ", l.port, " as ",
                                                   absl::StrJoin(l.flags, ",")));
      }
      if (l.IsMaster()) {
        master_ids.insert(l.id);
        slots += l.SlotCount();
      }
      if (l.Has("myself") && l.IsReplica()) self_replica = true;
    }
    for (const NodeLine& l : *lines) {
      if (l.IsReplica() && master_ids.count(l.master_id) != 0) ++replicas;
    }
    if (static_cast<int>(master_ids.size()) != options_.masters || replicas != want_replicas ||
        slots != kSlots) {
      return absl::UnavailableError(absl::StrCat("node ", n.port, " sees ", master_ids.size(),
                                                 " masters, ", replicas, " replicas, ", slots,
                                                 " slots"));
    }
    if (self_replica) {
      absl::StatusOr<std::string> repl = Cli(n.port, {"INFO", "replication"});
      if (!repl.ok()) return repl.status();
      auto r = ParseInfo(*repl);
      if (r["master_link_status"] != "up" || r["master_sync_in_progress"] != "0") {
        return absl::UnavailableError(absl::StrCat("replica ", n.port,
                                                   ": master_link_status=",
                                                   r["master_link_status"]));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status LocalRedisCluster::WaitHealthy(int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    absl::Status s = CheckHealthy();
    if (s.ok()) return s;
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("cluster not healthy after ", timeout_ms, " ms: ", s.message()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

absl::StatusOr<std::string> LocalRedisCluster::AnyLiveCli(const std::vector<std::string>& args) const {
  absl::Status last = absl::UnavailableError("no live node");
  for (const Node& n : nodes_) {
    if (n.pid <= 0) continue;
    absl::StatusOr<std::string> out = Cli(n.port, args);
    if (out.ok()) return out;
    last = out.status();
  }
  return last;
}

std::vector<int> LocalRedisCluster::MasterPorts() const {
  std::vector<int> out;
  absl::StatusOr<std::string> text = AnyLiveCli({"CLUSTER", "NODES"});
  if (!text.ok()) return out;
  absl::StatusOr<std::vector<NodeLine>> lines = ParseClusterNodes(*text);
  if (!lines.ok()) return out;
  for (const NodeLine& l : *lines) {
    if (!l.IsMaster() || l.Failing()) continue;
    const bool alive = std::any_of(nodes_.begin(), nodes_.end(), [&](const Node& n) {
      return n.port == l.port && n.pid > 0;
    });
    if (alive) out.push_back(l.port);
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<int> LocalRedisCluster::KillMasterOfSlot(int slot) {
  if (slot < 0 || slot >= kSlots) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " out of range"));
  }
  absl::StatusOr<std::string> text = AnyLiveCli({"CLUSTER", "NODES"});
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<NodeLine>> lines = ParseClusterNodes(*text);
  if (!lines.ok()) return lines.status();
  const NodeLine* owner = nullptr;
  for (const NodeLine& l : *lines) {
    if (l.IsMaster() && !l.Failing() && l.Owns(slot)) owner = &l;
  }
  if (owner == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("no live master owns slot ", slot));
  }
  const int killed_port = owner->port;
  const std::string killed_id = owner->id;
  const bool has_replica = std::any_of(lines->begin(), lines->end(), [&](const NodeLine& l) {
    return l.IsReplica() && !l.Failing() && l.master_id == killed_id;
  });
  if (!has_replica) {
    return absl::FailedPreconditionError(absl::StrCat(
        "master ", killed_port, " of slot ", slot, " has no live replica to promote"));
  }
  auto node = std::find_if(nodes_.begin(), nodes_.end(),
                           [&](const Node& n) { return n.port == killed_port && n.pid > 0; });
  if (node == nodes_.end()) {
    return absl::InternalError(absl::StrCat("slot ", slot, " owner ", killed_port,
                                            " is not a live node of this harness"));
  }
  KillNode(*node, SIGKILL);

  // Each survivor must see the slot on a live master other than the killed one, and
  // cluster_state:ok (checking the state alone would pass before the failure is noticed).
  const auto deadline = Clock::now() + std::chrono::milliseconds(kFailoverTimeoutMs);
  absl::Status last;
  for (;;) {
    last = absl::OkStatus();
    for (const Node& n : nodes_) {
      if (n.pid <= 0) continue;
      absl::StatusOr<std::string> nodes_text = Cli(n.port, {"CLUSTER", "NODES"});
      if (!nodes_text.ok()) {
        last = nodes_text.status();
        break;
      }
      absl::StatusOr<std::vector<NodeLine>> view = ParseClusterNodes(*nodes_text);
      if (!view.ok()) {
        last = view.status();
        break;
      }
      const NodeLine* now_owner = nullptr;
      for (const NodeLine& l : *view) {
        if (l.IsMaster() && l.Owns(slot)) now_owner = &l;
      }
      if (now_owner == nullptr || now_owner->id == killed_id || now_owner->Failing()) {
        last = absl::UnavailableError(absl::StrCat(
            "node ", n.port, " sees slot ", slot, " on ",
            now_owner == nullptr ? std::string("nobody")
                                 : absl::StrCat(now_owner->port, " (",
                                                absl::StrJoin(now_owner->flags, ","), ")")));
        break;
      }
      absl::StatusOr<std::string> info = Cli(n.port, {"CLUSTER", "INFO"});
      if (!info.ok()) {
        last = info.status();
        break;
      }
      const std::string state = ParseInfo(*info)["cluster_state"];
      if (state != "ok") {
        last = absl::UnavailableError(absl::StrCat("node ", n.port, ": cluster_state=", state));
        break;
      }
    }
    if (last.ok()) return killed_port;
    if (Clock::now() >= deadline) {
      return WithLogs(absl::DeadlineExceededError(
          absl::StrCat("no failover of slot ", slot, " after killing ", killed_port, " in ",
                       kFailoverTimeoutMs, " ms: ", last.message())));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void LocalRedisCluster::KillNode(Node& n, int sig) {
  if (n.pid <= 0) return;
  ::kill(n.pid, sig);
  int status = 0;
  pid_t w;
  do {
    w = ::waitpid(n.pid, &status, 0);
  } while (w < 0 && errno == EINTR);
  n.pid = -1;
}

void LocalRedisCluster::StopAll() {
  for (Node& n : nodes_) {
    if (n.pid > 0) ::kill(n.pid, SIGKILL);
  }
  for (Node& n : nodes_) KillNode(n, SIGKILL);
}

std::string LocalRedisCluster::LogTails() const {
  std::string out;
  for (const Node& n : nodes_) {
    if (n.dir.empty()) continue;
    absl::StrAppend(&out, "--- 127.0.0.1:", n.port, n.pid > 0 ? "" : " (not running)", " ",
                    n.dir, "/redis.log (tail):\n", TailOfFile(n.dir + "/redis.log", 12));
    std::error_code ec;
    if (std::filesystem::file_size(n.dir + "/stdout.log", ec) > 0 && !ec) {
      absl::StrAppend(&out, "  stdout/stderr:\n", TailOfFile(n.dir + "/stdout.log", 5));
    }
  }
  return out;
}

absl::Status LocalRedisCluster::WithLogs(const absl::Status& s) const {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(s.message(), "\n", LogTails()));
}

}  // namespace adaptcache::testing
