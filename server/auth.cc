#include "server/auth.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <random>
#include <sstream>

#include <toml++/toml.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/key.h"
#include "server/config.h"
#include "spdlog/spdlog.h"

namespace adaptcache::server {
namespace {

constexpr size_t kMinTokenBytes = 16;
// Namespace ids remembered per tenant (its quota's scope): bounded memory per tenant.
constexpr size_t kMaxNamespacesPerTenant = 1 << 16;

absl::Status CheckTenantName(std::string_view n) {
  if (n.empty() || n.size() > 64) return absl::InvalidArgumentError("a tenant name is 1..64 bytes");
  for (char c : n) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return absl::InvalidArgumentError(absl::StrCat("tenant name '", std::string(n),
                                                     "': only letters, digits, '-', '_' and '.'"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPattern(const std::string& p) {
  const std::string body = !p.empty() && p.back() == '*' ? p.substr(0, p.size() - 1) : p;
  if (body.find('*') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("namespace pattern '", p, "': '*' only at the end"));
  }
  if (body.empty()) return p == "*" ? absl::OkStatus() : absl::InvalidArgumentError("empty namespace");
  return ValidateNamespace(body);
}

std::string Where(const toml::node& n, const std::string& origin) {
  return absl::StrCat(origin, ":", n.source().begin.line, ": ");
}

absl::StatusOr<std::vector<std::string>> Strings(const toml::node& n, const std::string& what,
                                                 const std::string& origin) {
  const auto* arr = n.as_array();
  if (arr == nullptr) return absl::InvalidArgumentError(absl::StrCat(Where(n, origin), what, " must be an array of strings"));
  std::vector<std::string> out;
  for (const auto& e : *arr) {
    const auto* s = e.as_string();
    if (s == nullptr) return absl::InvalidArgumentError(absl::StrCat(Where(e, origin), what, " must hold strings"));
    out.push_back(s->get());
  }
  return out;
}

absl::StatusOr<std::vector<uint32_t>> Ids(const toml::node& n, const std::string& what, const std::string& origin) {
  const auto* arr = n.as_array();
  if (arr == nullptr) return absl::InvalidArgumentError(absl::StrCat(Where(n, origin), what, " must be an array of integers"));
  std::vector<uint32_t> out;
  for (const auto& e : *arr) {
    auto v = e.value<int64_t>();
    if (!v || *v < 0 || *v > 0xFFFFFFFE) {
      return absl::InvalidArgumentError(absl::StrCat(Where(e, origin), what, " must hold ids >= 0"));
    }
    out.push_back(static_cast<uint32_t>(*v));
  }
  return out;
}

absl::StatusOr<uint64_t> Bytes(const toml::node& n, const std::string& what, const std::string& origin) {
  if (auto v = n.value<int64_t>(); v && *v >= 0 && n.is_integer()) return static_cast<uint64_t>(*v);
  if (const auto* s = n.as_string()) {
    auto b = ParseByteSize(s->get());
    if (b.ok()) return *b;
    return absl::InvalidArgumentError(absl::StrCat(Where(n, origin), what, ": ", std::string(b.status().message())));
  }
  return absl::InvalidArgumentError(absl::StrCat(Where(n, origin), what, " must be a size (\"8GiB\") or an integer"));
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(what, " '", path, "': ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(what, " '", path, "' is not a file"));
  if ((st.st_mode & 0077) != 0 && what == "tokens file") {
    spdlog::warn("tokens file '{}' is readable by other users (mode {:o}); chmod 600 it", path, st.st_mode & 0777);
  }
  std::ifstream in(path);
  if (!in) return absl::PermissionDeniedError(absl::StrCat(what, " '", path, "': cannot read it"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

bool NamespaceMatches(std::string_view pattern, std::string_view ns) {
  if (!pattern.empty() && pattern.back() == '*') {
    return ns.substr(0, pattern.size() - 1) == pattern.substr(0, pattern.size() - 1);
  }
  return pattern == ns;
}

absl::StatusOr<std::vector<Tenant>> Auth::ParseTenants(std::string_view text, const std::string& origin,
                                                       std::vector<std::string>* shared) {
  toml::table doc;
  try {
    doc = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ":", e.source().begin.line, ": ",
                                                   std::string(e.description())));
  }
  std::vector<Tenant> out;
  for (auto&& [k, v] : doc) {
    const std::string section(k.str());
    const auto* table = v.as_table();
    if (table == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(Where(v, origin), "'", section, "' must be a table"));
    }
    if (section == "shared") {
      for (auto&& [sk, sv] : *table) {
        if (sk.str() != "namespaces") {
          return absl::InvalidArgumentError(absl::StrCat(Where(sv, origin), "unknown key '", std::string(sk.str()),
                                                         "' in [shared] (known: namespaces)"));
        }
        auto ns = Strings(sv, "shared.namespaces", origin);
        if (!ns.ok()) return ns.status();
        for (const auto& p : *ns) {
          if (auto st = CheckPattern(p); !st.ok()) return absl::InvalidArgumentError(absl::StrCat(Where(sv, origin), st.message()));
        }
        *shared = *ns;
      }
      continue;
    }
    if (section != "tenant") {
      return absl::InvalidArgumentError(absl::StrCat(Where(v, origin), "unknown section [", section,
                                                     "] (known: [tenant.\"name\"], [shared])"));
    }
    for (auto&& [tk, tv] : *table) {
      Tenant t;
      t.name = std::string(tk.str());
      if (auto st = CheckTenantName(t.name); !st.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(Where(tv, origin), st.message()));
      }
      const auto* tt = tv.as_table();
      if (tt == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(Where(tv, origin), "tenant.\"", t.name, "\" must be a table"));
      }
      const std::string pre = absl::StrCat("tenant.\"", t.name, "\".");
      for (auto&& [fk, fv] : *tt) {
        const std::string f(fk.str());
        absl::Status st;
        if (f == "namespaces") {
          auto ns = Strings(fv, pre + f, origin);
          if (!ns.ok()) return ns.status();
          for (const auto& p : *ns) {
            if (auto c = CheckPattern(p); !c.ok()) return absl::InvalidArgumentError(absl::StrCat(Where(fv, origin), c.message()));
          }
          t.namespaces = *ns;
        } else if (f == "uids" || f == "gids") {
          auto ids = Ids(fv, pre + f, origin);
          if (!ids.ok()) return ids.status();
          (f == "uids" ? t.uids : t.gids) = *ids;
        } else if (f == "shm") {
          auto b = fv.value<bool>();
          if (!b) return absl::InvalidArgumentError(absl::StrCat(Where(fv, origin), pre, "shm must be true or false"));
          t.shm = *b;
        } else if (f == "dram_bytes") {
          auto b = Bytes(fv, pre + f, origin);
          if (!b.ok()) return b.status();
          t.dram_bytes = *b;
        } else if (f == "ssd_bytes") {
          auto b = Bytes(fv, pre + f, origin);
          if (!b.ok()) return b.status();
          t.ssd_bytes = *b;
        } else if (f == "max_entries") {
          auto b = fv.value<int64_t>();
          if (!b || *b < 0) return absl::InvalidArgumentError(absl::StrCat(Where(fv, origin), pre, "max_entries must be an integer >= 0"));
          t.max_entries = static_cast<uint64_t>(*b);
        } else {
          return absl::InvalidArgumentError(absl::StrCat(Where(fv, origin), "unknown key '", f, "' in ", pre.substr(0, pre.size() - 1),
                                                         " (known: namespaces, uids, gids, shm, dram_bytes, ssd_bytes, max_entries)"));
        }
      }
      if (t.namespaces.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(Where(tv, origin), pre, "namespaces is missing: a tenant owns namespaces"));
      }
      out.push_back(std::move(t));
    }
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(origin, ": no [tenant.\"name\"] section"));
  for (const auto& a : out) {
    for (uint32_t id : a.uids) {
      for (const auto& b : out) {
        if (&a != &b && std::count(b.uids.begin(), b.uids.end(), id) > 0) {
          return absl::InvalidArgumentError(absl::StrCat(origin, ": uid ", id, " is listed by tenants '",
                                                         a.name, "' and '", b.name, "'"));
        }
      }
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Auth>> Auth::Create(const std::string& tenants_file, const std::string& tokens_file) {
  std::unique_ptr<Auth> a(new Auth());
  if (tenants_file.empty()) {
    if (!tokens_file.empty()) {
      return absl::InvalidArgumentError("auth: a tokens file maps tokens to tenants; set tenants_file too");
    }
    return a;
  }
  auto text = ReadFile(tenants_file, "tenants file");
  if (!text.ok()) return text.status();
  auto tenants = ParseTenants(*text, tenants_file, &a->shared_);
  if (!tenants.ok()) return tenants.status();
  std::random_device rd;
  for (auto& t : *tenants) {
    t.lease_mask = ((uint64_t{rd()} << 32) | rd()) | (1ull << 63);
    a->tenants_.push_back(std::make_unique<Tenant>(std::move(t)));
  }
  a->used_ns_.resize(a->tenants_.size());
  a->tokens_file_ = tokens_file;
  if (!tokens_file.empty()) {
    if (auto st = a->ReloadTokens(); !st.ok()) return st;
  }
  return a;
}

absl::Status Auth::ReloadTokens() {
  if (tokens_file_.empty()) return absl::OkStatus();
  auto text = ReadFile(tokens_file_, "tokens file");
  if (!text.ok()) return text.status();
  absl::flat_hash_map<std::string, int> next;
  std::istringstream in(*text);
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    const size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    std::istringstream ls(line);
    std::string tenant, token, extra;
    ls >> tenant >> token >> extra;
    const std::string where = absl::StrCat(tokens_file_, ":", no, ": ");
    if (token.empty() || !extra.empty()) {
      return absl::InvalidArgumentError(where + "expected '<tenant> <token>'");
    }
    if (token.size() < kMinTokenBytes) {
      return absl::InvalidArgumentError(absl::StrCat(where, "token shorter than ", kMinTokenBytes, " bytes"));
    }
    auto it = std::find_if(tenants_.begin(), tenants_.end(), [&](const auto& t) { return t->name == tenant; });
    if (it == tenants_.end()) return absl::InvalidArgumentError(absl::StrCat(where, "no tenant '", tenant, "'"));
    if (!next.emplace(token, static_cast<int>(it - tenants_.begin())).second) {
      return absl::InvalidArgumentError(where + "a token listed twice");
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  tokens_ = std::move(next);
  return absl::OkStatus();
}

size_t Auth::token_count() const {
  std::lock_guard<std::mutex> l(mu_);
  return tokens_.size();
}

void Auth::NoteUnixPeer(int fd, uid_t uid, gid_t gid) {
  std::lock_guard<std::mutex> l(mu_);
  peers_[fd] = {uid, gid};
}

absl::StatusOr<Caller> Auth::Identify(const grpc::ServerContextBase& ctx) const {
  if (!multi_tenant()) return Caller{};
  const auto& md = ctx.client_metadata();
  auto auth = md.find("authorization");
  std::lock_guard<std::mutex> l(mu_);
  if (auth != md.end()) {
    std::string_view v(auth->second.data(), auth->second.size());
    constexpr std::string_view kBearer = "Bearer ";
    if (v.substr(0, kBearer.size()) != kBearer) {
      return absl::UnauthenticatedError("authorization metadata is not 'Bearer <token>'");
    }
    auto it = tokens_.find(std::string(v.substr(kBearer.size())));
    if (it == tokens_.end()) return absl::UnauthenticatedError("unknown bearer token");
    return Caller{tenants_[it->second].get(), it->second};
  }
  const std::string peer = ctx.peer();
  int fd = -1;
  if (peer.rfind("fd:", 0) == 0) {
    auto [p, ec] = std::from_chars(peer.data() + 3, peer.data() + peer.size(), fd);
    if (ec != std::errc()) fd = -1;
  }
  auto pc = fd >= 0 ? peers_.find(fd) : peers_.end();
  if (pc == peers_.end()) {
    return absl::UnauthenticatedError("this daemon has tenants: send a bearer token (TCP) or connect to its Unix socket as a uid or gid a tenant lists");
  }
  const auto [uid, gid] = pc->second;
  for (size_t i = 0; i < tenants_.size(); ++i) {
    if (std::count(tenants_[i]->uids.begin(), tenants_[i]->uids.end(), uid) > 0) return Caller{tenants_[i].get(), static_cast<int>(i)};
  }
  for (size_t i = 0; i < tenants_.size(); ++i) {
    if (std::count(tenants_[i]->gids.begin(), tenants_[i]->gids.end(), gid) > 0) return Caller{tenants_[i].get(), static_cast<int>(i)};
  }
  return absl::UnauthenticatedError(absl::StrCat("no tenant lists uid ", uid, " or gid ", gid, ", and no bearer token was sent"));
}

bool Auth::Shared(std::string_view ns) const {
  return std::any_of(shared_.begin(), shared_.end(), [&](const std::string& p) { return NamespaceMatches(p, ns); });
}

absl::StatusOr<uint64_t> Auth::NamespaceIdFor(const Caller& c, std::string_view ns) {
  if (c.tenant == nullptr) return NamespaceId(ns);
  const auto& pats = c.tenant->namespaces;
  if (!std::any_of(pats.begin(), pats.end(), [&](const std::string& p) { return NamespaceMatches(p, ns); })) {
    return absl::PermissionDeniedError(absl::StrCat("tenant '", c.tenant->name, "' may not use namespace '",
                                                    std::string(ns), "' (its namespaces: ",
                                                    absl::StrJoin(pats, ", "), ")"));
  }
  const uint64_t id = Shared(ns) ? NamespaceId(ns) : NamespaceId(absl::StrCat(c.tenant->name, "\x1f", std::string(ns)));
  std::lock_guard<std::mutex> l(mu_);
  auto& used = used_ns_[c.index];
  if (used.size() >= kMaxNamespacesPerTenant && !used.contains(id)) {
    return absl::ResourceExhaustedError(absl::StrCat("tenant '", c.tenant->name, "' has used ",
                                                     kMaxNamespacesPerTenant, " namespaces, the most one tenant may"));
  }
  used.insert(id);
  return id;
}

absl::Status Auth::CheckShm(const Caller& c) const {
  if (c.tenant == nullptr || c.tenant->shm) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "tenant '", c.tenant->name, "' may not map the shared pool (shm = false); use the streamed Get/Put"));
}

absl::flat_hash_map<uint64_t, int32_t> Auth::NamespaceOwners() const {
  absl::flat_hash_map<uint64_t, int32_t> out;
  std::lock_guard<std::mutex> l(mu_);
  for (size_t t = 0; t < used_ns_.size(); ++t) {
    for (uint64_t id : used_ns_[t]) {
      auto [it, inserted] = out.try_emplace(id, static_cast<int32_t>(t));
      if (!inserted) it->second = -1;
    }
  }
  for (auto it = out.begin(); it != out.end();) {
    if (it->second < 0) {
      out.erase(it++);
    } else {
      ++it;
    }
  }
  return out;
}

std::vector<uint64_t> Auth::NamespaceIdsOf(int tenant_index) const {
  std::lock_guard<std::mutex> l(mu_);
  if (tenant_index < 0 || tenant_index >= static_cast<int>(used_ns_.size())) return {};
  return {used_ns_[tenant_index].begin(), used_ns_[tenant_index].end()};
}

}  // namespace adaptcache::server
