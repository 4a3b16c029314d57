#include "common/status_kinds.h"

#include <gtest/gtest.h>

#include "absl/strings/cord.h"

namespace adaptcache {
namespace {

TEST(StatusKindsTest, EachErrorHasItsCodeMessageAndKind) {
  const absl::Status leased = LeasedError("DRAM copy is leased");
  EXPECT_EQ(leased.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(leased.message(), "DRAM copy is leased");
  EXPECT_EQ(KindOf(leased), ErrorKind::kLeased);

  const absl::Status cold = NotAdmittedError("too cold");
  EXPECT_EQ(cold.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(KindOf(cold), ErrorKind::kNotAdmitted);

  const absl::Status budget = OverBudgetError("spent");
  EXPECT_EQ(budget.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(KindOf(budget), ErrorKind::kOverBudget);
}

TEST(StatusKindsTest, PredicatesMatchOnlyTheirOwnKind) {
  EXPECT_TRUE(IsLeased(LeasedError("x")));
  EXPECT_FALSE(IsLeased(NotAdmittedError("x")));
  EXPECT_FALSE(IsLeased(OverBudgetError("x")));
  EXPECT_TRUE(IsNotAdmitted(NotAdmittedError("x")));
  EXPECT_FALSE(IsNotAdmitted(LeasedError("x")));
  EXPECT_TRUE(IsOverBudget(OverBudgetError("x")));
  EXPECT_FALSE(IsOverBudget(NotAdmittedError("x")));
  EXPECT_FALSE(IsLeased(absl::OkStatus()));
}

TEST(StatusKindsTest, MessageTextAloneIsNotAKind) {
  EXPECT_FALSE(IsLeased(absl::FailedPreconditionError("DRAM copy is leased")));
  EXPECT_FALSE(IsNotAdmitted(absl::FailedPreconditionError("ssd admission: not admitted")));
  EXPECT_FALSE(IsOverBudget(absl::ResourceExhaustedError("ssd admission: write budget exhausted")));
  EXPECT_EQ(KindOf(absl::InternalError("x")), std::nullopt);
}

TEST(StatusKindsTest, KindNeedsTheMatchingCode) {
  EXPECT_FALSE(IsLeased(WithKind(absl::AbortedError("x"), ErrorKind::kLeased)));
  EXPECT_FALSE(IsOverBudget(WithKind(absl::FailedPreconditionError("x"), ErrorKind::kOverBudget)));
}

TEST(StatusKindsTest, CopiesKeepTheKindAndOkCarriesNone) {
  absl::Status s = NotAdmittedError("x");
  absl::Status copy = s;
  EXPECT_TRUE(IsNotAdmitted(copy));
  EXPECT_TRUE(WithKind(absl::OkStatus(), ErrorKind::kLeased).ok());
  EXPECT_EQ(KindOf(WithKind(absl::OkStatus(), ErrorKind::kLeased)), std::nullopt);
}

TEST(StatusKindsTest, UnknownPayloadIsNoKind) {
  absl::Status s = absl::FailedPreconditionError("x");
  s.SetPayload(kErrorKindUrl, absl::Cord("something_else"));
  EXPECT_EQ(KindOf(s), std::nullopt);
  EXPECT_FALSE(IsLeased(s));
}

}  // namespace
}  // namespace adaptcache
