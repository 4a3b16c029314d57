#include "common/status_kinds.h"

#include "absl/strings/cord.h"

namespace adaptcache {
namespace {

constexpr absl::string_view KindName(ErrorKind k) {
  switch (k) {
    case ErrorKind::kLeased: return "leased";
    case ErrorKind::kNotAdmitted: return "not_admitted";
    case ErrorKind::kOverBudget: return "over_budget";
    case ErrorKind::kOverloaded: return "overloaded";
  }
  return "";
}

constexpr ErrorKind kAllKinds[] = {ErrorKind::kLeased, ErrorKind::kNotAdmitted, ErrorKind::kOverBudget,
                                   ErrorKind::kOverloaded};

bool Is(const absl::Status& s, absl::StatusCode code, ErrorKind kind) {
  return s.code() == code && KindOf(s) == kind;
}

}  // namespace

absl::Status WithKind(absl::Status s, ErrorKind kind) {
  if (!s.ok()) s.SetPayload(kErrorKindUrl, absl::Cord(KindName(kind)));
  return s;
}

std::optional<ErrorKind> KindOf(const absl::Status& s) {
  auto p = s.GetPayload(kErrorKindUrl);
  if (!p) return std::nullopt;
  for (ErrorKind k : kAllKinds) {
    if (*p == KindName(k)) return k;
  }
  return std::nullopt;
}

absl::Status LeasedError(absl::string_view msg) {
  return WithKind(absl::FailedPreconditionError(msg), ErrorKind::kLeased);
}
absl::Status NotAdmittedError(absl::string_view msg) {
  return WithKind(absl::FailedPreconditionError(msg), ErrorKind::kNotAdmitted);
}
absl::Status OverBudgetError(absl::string_view msg) {
  return WithKind(absl::ResourceExhaustedError(msg), ErrorKind::kOverBudget);
}

absl::Status OverloadedError(absl::string_view msg) {
  return WithKind(absl::ResourceExhaustedError(msg), ErrorKind::kOverloaded);
}

bool IsLeased(const absl::Status& s) {
  return Is(s, absl::StatusCode::kFailedPrecondition, ErrorKind::kLeased);
}
bool IsNotAdmitted(const absl::Status& s) {
  return Is(s, absl::StatusCode::kFailedPrecondition, ErrorKind::kNotAdmitted);
}
bool IsOverBudget(const absl::Status& s) {
  return Is(s, absl::StatusCode::kResourceExhausted, ErrorKind::kOverBudget);
}

bool IsOverloaded(const absl::Status& s) {
  return Is(s, absl::StatusCode::kResourceExhausted, ErrorKind::kOverloaded);
}

}  // namespace adaptcache
