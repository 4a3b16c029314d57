// Fault injection for the SSD tier's I/O layer. Compiled in always; when no rule is
// armed the cost per I/O is one relaxed atomic load.
//
// A FaultInjector holds rules. Each I/O the ring submits asks Decide(); the first armed
// rule that matches the operation (and, if set, the file path substring) fires after
// skipping `skip` matching operations, at most `count` times (-1: forever):
//   kError      the operation completes with -error (EIO, ENOSPC, ...) without touching
//               the file.
//   kShortWrite a write transfers only its first half (rounded down to 4 KiB, at least
//               one block short) and reports that count, like a device running out.
//   kTornWrite  a write transfers only its first `blocks` 4 KiB blocks but reports full
//               success, like a crash mid-write under a lying cache.
//   kFlipBit    a read completes normally, then one bit of the returned data flips
//               (bit `bit` modulo the length), like silent media corruption.
// FlipBitInFile() corrupts a file on disk directly, for tests of at-rest corruption.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace adaptcache {

enum class IoOp : uint8_t { kRead, kWrite, kFsync };

struct FaultRule {
  enum class Kind : uint8_t { kError, kShortWrite, kTornWrite, kFlipBit };
  Kind kind = Kind::kError;
  IoOp op = IoOp::kWrite;
  int error = 5;                // errno for kError (EIO = 5, ENOSPC = 28)
  std::string path_contains;    // empty: any file
  int64_t skip = 0;             // matching operations let through first
  int64_t count = 1;            // times to fire; -1 = forever
  uint32_t blocks = 0;          // kTornWrite: blocks actually written
  uint64_t bit = 0;             // kFlipBit: which bit of the read data
};

struct FaultDecision {
  FaultRule::Kind kind = FaultRule::Kind::kError;
  bool fire = false;
  int error = 0;
  uint32_t blocks = 0;
  uint64_t bit = 0;
};

class FaultInjector {
 public:
  void Add(const FaultRule& rule);
  void Clear();
  // Called by the I/O layer for every operation.
  FaultDecision Decide(IoOp op, const std::string& path) {
    if (!armed_.load(std::memory_order_relaxed)) return {};
    return DecideSlow(op, path);
  }
  // Times any rule fired.
  uint64_t fired() const { return fired_.load(std::memory_order_relaxed); }

 private:
  FaultDecision DecideSlow(IoOp op, const std::string& path);
  std::atomic<bool> armed_{false};
  std::atomic<uint64_t> fired_{0};
  std::mutex mu_;
  std::vector<FaultRule> rules_;
};

// XORs bit `bit` (0..7) of the byte at `offset` in the file at `path` (buffered I/O).
absl::Status FlipBitInFile(const std::string& path, uint64_t offset, int bit);

}  // namespace adaptcache
