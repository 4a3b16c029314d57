// Who a call comes from, and what it may touch (docs/operations.md "Tenants and
// authentication").
//
// Without a tenants file the daemon is single-tenant: whoever can connect (the socket is
// 0600; TCP needs TLS) may use every namespace, and namespace ids are NamespaceId(ns).
//
// With a tenants file every call must identify a tenant:
//  - a bearer token (`authorization: Bearer <token>` metadata) from the tokens file,
//    which SIGHUP reloads; a token that is present must be valid;
//  - else, on the Unix socket, the peer's uid or gid (SO_PEERCRED, recorded when the
//    daemon accepts the connection) listed by a tenant.
// A tenant may use the namespaces it lists (exact names, or prefixes ending in '*').
// Its namespace ids are NamespaceId(tenant + "\x1f" + ns), so two tenants' identical
// prompts never share an entry, unless the namespace is also listed under [shared]: then
// the id is NamespaceId(ns), shared by every tenant that lists it. Only tenants with
// `shm = true` may map the DRAM pool (they can read every entry in it); the others use
// the streamed Get and Put. Quotas (DRAM bytes, entries) are enforced at Put by evicting
// the tenant's own least recently used entries; the SSD quota by dropping its oldest SSD
// entries, after its durable Puts and periodically. Lease ids are per-tenant (Caller::LeaseId).
//
// Thread safety: every method may be called concurrently; ReloadTokens swaps the token
// table atomically.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adaptcache::server {

struct Tenant {
  std::string name;
  std::vector<std::string> namespaces;  // exact names or "prefix*"
  std::vector<uint32_t> uids, gids;
  bool shm = false;                     // may map the shared DRAM pool
  uint64_t dram_bytes = 0;              // DRAM quota; 0 = none
  uint64_t max_entries = 0;             // DRAM entry quota; 0 = none
  uint64_t ssd_bytes = 0;               // SSD quota (container bytes); 0 = none
  // Lease ids a tenant sees are the tier's ids XOR this (random per start, high bit set):
  // another tenant's lease id names no lease of the caller, so only the owner releases it.
  uint64_t lease_mask = 0;
};

// What Identify found. tenant == nullptr: single-tenant mode.
struct Caller {
  const Tenant* tenant = nullptr;
  int index = -1;  // into Auth::tenants()
  // The tier's lease id as this caller sees it, and back (the same XOR both ways).
  uint64_t LeaseId(uint64_t id) const { return tenant != nullptr ? id ^ tenant->lease_mask : id; }
};

class Auth {
 public:
  // tenants_file "" = single-tenant mode (tokens_file must then be "" too).
  static absl::StatusOr<std::unique_ptr<Auth>> Create(const std::string& tenants_file,
                                                      const std::string& tokens_file);
  // The tenants file's text (TOML), for tests and --print-config checks.
  static absl::StatusOr<std::vector<Tenant>> ParseTenants(std::string_view toml, const std::string& origin,
                                                          std::vector<std::string>* shared);

  bool multi_tenant() const { return !tenants_.empty(); }
  const std::vector<std::unique_ptr<Tenant>>& tenants() const { return tenants_; }

  // Records the credentials of an accepted Unix-socket connection (fd as gRPC reports
  // it in ServerContext::peer(): "fd:<fd>").
  void NoteUnixPeer(int fd, uid_t uid, gid_t gid);
  // Unauthenticated when no tenant matches (multi-tenant mode only).
  absl::StatusOr<Caller> Identify(const grpc::ServerContextBase& ctx) const;
  // The namespace id for the caller, PermissionDenied when its tenant may not use `ns`,
  // ResourceExhausted beyond 65536 distinct namespaces of one tenant.
  absl::StatusOr<uint64_t> NamespaceIdFor(const Caller& c, std::string_view ns);
  // PermissionDenied unless the caller may map the shared pool.
  absl::Status CheckShm(const Caller& c) const;
  // The namespace ids a tenant has used since start (its quota's scope).
  std::vector<uint64_t> NamespaceIdsOf(int tenant_index) const;
  // Every namespace id used so far by exactly one tenant, with that tenant's index
  // (a shared namespace used by several has no single owner and is left out).
  absl::flat_hash_map<uint64_t, int32_t> NamespaceOwners() const;
  // Rereads the tokens file (SIGHUP). On error the old table stays.
  absl::Status ReloadTokens();
  size_t token_count() const;

 private:
  Auth() = default;
  bool Shared(std::string_view ns) const;

  std::vector<std::unique_ptr<Tenant>> tenants_;
  std::vector<std::string> shared_;
  std::string tokens_file_;

  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, int> tokens_;         // guarded by mu_: token -> tenant
  absl::flat_hash_map<int, std::pair<uid_t, gid_t>> peers_;  // guarded by mu_: fd -> creds
  std::vector<absl::flat_hash_set<uint64_t>> used_ns_;   // guarded by mu_: per tenant
};

// True if `ns` is `pattern`, or `pattern` ends in '*' and `ns` starts with the rest.
bool NamespaceMatches(std::string_view pattern, std::string_view ns);

}  // namespace adaptcache::server
