// Error kinds that callers branch on. The kind rides on the Status as a payload under
// kErrorKindUrl, set where the error is made, so no caller matches message text. A copy
// of the Status keeps it; a Status rebuilt from code and message does not (the kind is
// then absent, never misread). Thread safe: free functions on values.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace adaptcache {

inline constexpr absl::string_view kErrorKindUrl = "adaptcache/kind";

enum class ErrorKind : uint8_t {
  kLeased,       // FailedPrecondition: the DRAM copy is under a lease; nothing changed
  kNotAdmitted,  // FailedPrecondition: the SSD admission rule refused the write (too cold)
  kOverBudget,   // ResourceExhausted: the SSD write budget is spent
  kOverloaded,   // ResourceExhausted: the daemon refused the call for load, retries ran out
};

// `s` with its kind set; an OK status is returned as it is (OK carries no payload).
absl::Status WithKind(absl::Status s, ErrorKind kind);
// The kind set on `s`, if any.
std::optional<ErrorKind> KindOf(const absl::Status& s);

absl::Status LeasedError(absl::string_view msg);
absl::Status NotAdmittedError(absl::string_view msg);
absl::Status OverBudgetError(absl::string_view msg);
absl::Status OverloadedError(absl::string_view msg);

// True when `s` has the kind's code and carries the kind.
bool IsLeased(const absl::Status& s);
bool IsNotAdmitted(const absl::Status& s);
bool IsOverBudget(const absl::Status& s);
bool IsOverloaded(const absl::Status& s);

}  // namespace adaptcache
