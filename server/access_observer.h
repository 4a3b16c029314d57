// What the request path reports to the placement policy: accesses (for its statistics)
// and stored entries (for put transcoding). The service calls it; the policy runner
// (server/policy_runner.h) implements it; daemon.cc connects the two.
//
// Thread safety: called from every request thread at once. Implementations must be
// thread safe and cheap (no I/O, short critical sections), and must outlive the RPCs
// of the service they are given to.
#pragma once

#include "common/key.h"
#include "common/kv_shape.h"
#include "kernels/container.h"

namespace adaptcache::server {

class AccessObserver {
 public:
  virtual ~AccessObserver() = default;
  // One access of `key` (a hit by Lookup, Get or LeasePrefix, or a Put).
  virtual void OnAccess(const EntryKey& key) = 0;
  // `key` was just stored with `shape`, encoded as `family`.
  virtual void OnPut(const EntryKey& key, const KvShape& shape, CodecId family) = 0;
};

}  // namespace adaptcache::server
