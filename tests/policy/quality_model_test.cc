#include "policy/quality_model.h"

#include <cmath>
#include <string>

#include "gtest/gtest.h"
#include "policy/json.h"

namespace adaptcache::policy {
namespace {

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

TEST(CalibrationCurveTest, InterpolatesAndExtrapolatesMonotonically) {
  auto c = CalibrationCurve::Create({{0.1, 0.01}, {0.2, 0.05}, {0.4, 0.05}, {1.0, 0.35}});
  ASSERT_TRUE(c.ok());
  EXPECT_DOUBLE_EQ((*c)(0), 0);
  EXPECT_DOUBLE_EQ((*c)(0.05), 0.005);  // from the origin to the first point
  EXPECT_DOUBLE_EQ((*c)(0.15), 0.03);
  EXPECT_DOUBLE_EQ((*c)(0.3), 0.05);
  EXPECT_DOUBLE_EQ((*c)(0.7), 0.2);
  EXPECT_DOUBLE_EQ((*c)(2.0), 0.85);  // last slope continues
  EXPECT_DOUBLE_EQ((*c)(-1), 0);
  EXPECT_TRUE(std::isinf((*c)(std::nan(""))));
  double prev = -1;
  for (double x = 0; x < 3; x += 0.01) {
    EXPECT_GE((*c)(x), prev);
    prev = (*c)(x);
  }
  auto single = CalibrationCurve::Create({{0, 0.2}});
  ASSERT_TRUE(single.ok());
  EXPECT_DOUBLE_EQ((*single)(5), 0.2);
}

TEST(CalibrationCurveTest, RejectsBadPoints) {
  EXPECT_FALSE(CalibrationCurve::Create({}).ok());
  EXPECT_FALSE(CalibrationCurve::Create({{0.2, 0.1}, {0.1, 0.2}}).ok());
  EXPECT_FALSE(CalibrationCurve::Create({{0.1, 0.2}, {0.2, 0.1}}).ok());
  EXPECT_FALSE(CalibrationCurve::Create({{-0.1, 0.2}}).ok());
  EXPECT_FALSE(CalibrationCurve::Create({{0.1, INFINITY}}).ok());
}

constexpr char kGood[] = R"({
  "format": "adaptcache-calibration",
  "version": 1,
  "comment": "test",
  "curves": [
    {"family": "quant", "points": [[0, 0], [0.1, 0.02], [1, 0.5]]},
    {"config": "quant-k2v2-g32", "points": [[0, 0], [0.1, 0.1]]}
  ]
})";

TEST(QualityModelTest, UsesConfigThenFamilyThenProxy) {
  auto m = QualityModel::FromJson(kGood);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->curve_count(), 2u);
  EXPECT_DOUBLE_EQ(m->ExpectedLoss("quant-k4v4-g64", CodecId::kQuant, 0.05), 0.01);
  EXPECT_DOUBLE_EQ(m->ExpectedLoss("quant-k2v2-g32", CodecId::kQuant, 0.05), 0.05);
  EXPECT_DOUBLE_EQ(m->ExpectedLoss("fp8", CodecId::kFp8, 0.03), 0.03);  // no curve: proxy
  EXPECT_DOUBLE_EQ(m->ExpectedLoss("raw", CodecId::kRaw, 0.7), 0);      // lossless
  QualityModel none;
  EXPECT_DOUBLE_EQ(none.ExpectedLoss("drop-500", CodecId::kDrop, 0.2), 0.2);
  EXPECT_TRUE(std::isinf(none.ExpectedLoss("drop-500", CodecId::kDrop, std::nan(""))));
}

TEST(QualityModelTest, ParseErrorsAreClear) {
  struct Case {
    const char* json;
    const char* expect;
  } cases[] = {
      {"{\"version\": 1, \"curves\": [", "line 1 column 27: unexpected end of input"},
      {"[]", "top level must be an object"},
      {"{\"curves\": []}", "\"version\" must be 1"},
      {"{\"version\": 2, \"curves\": []}", "\"version\" must be 1"},
      {"{\"version\": 1, \"curvez\": []}", "unknown key \"curvez\""},
      {"{\"version\": 1, \"curves\": [{\"family\": \"zip\", \"points\": [[0,0]]}]}",
       "unknown codec family \"zip\""},
      {"{\"version\": 1, \"curves\": [{\"family\": \"fp8\", \"points\": [[0,0.2],[1,0.1]]}]}",
       "curves[0]: point 1: y decreases"},
      {"{\"version\": 1, \"curves\": [{\"family\": \"fp8\", \"points\": [[0,0],[0,1]]}]}",
       "x must increase strictly"},
      {"{\"version\": 1, \"curves\": [{\"family\": \"fp8\", \"points\": [[0]]}]}",
       "curves[0].points[0] must be [proxy, loss]"},
      {"{\"version\": 1, \"curves\": [{\"family\": \"fp8\", \"config\": \"x\", \"points\": []}]}",
       "exactly one of"},
      {"{\"version\": 1, \"curves\": [{\"family\": \"fp8\", \"points\": [[0,0]]}, "
       "{\"family\": \"fp8\", \"points\": [[0,0]]}]}",
       "second curve for family"},
      {"{\"version\": 1, \"version\": 1, \"curves\": []}", "duplicate key"},
      {"{\"version\": 1, \"curves\": []} x", "trailing characters"},
      {"{\"version\": 1e999, \"curves\": []}", "number out of range"},
  };
  for (const Case& c : cases) {
    auto m = QualityModel::FromJson(c.json);
    ASSERT_FALSE(m.ok()) << c.json;
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(Msg(m.status()).find(c.expect), std::string::npos)
        << "message '" << Msg(m.status()) << "' lacks '" << c.expect << "'";
  }
}

TEST(QualityModelTest, MissingFileIsNotFound) {
  auto m = QualityModel::FromFile("/nonexistent/calibration.json");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
}

TEST(JsonTest, ParsesTheGrammar) {
  auto v = ParseJson(R"( {"a": [1, -2.5e2, true, false, null], "s": "x\"\\\/\n\u00e9\ud83d\ude00"} )");
  ASSERT_TRUE(v.ok()) << v.status();
  const JsonValue* a = v->Find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->items.size(), 5u);
  EXPECT_EQ(a->items[1].number, -250);
  EXPECT_TRUE(a->items[2].boolean);
  EXPECT_EQ(a->items[4].type, JsonValue::Type::kNull);
  EXPECT_EQ(v->Find("s")->string, "x\"\\/\n\xC3\xA9\xF0\x9F\x98\x80");
  for (const char* bad : {"", "01", "1.", "-", "\"\\x\"", "\"\\ud800\"", "[1,]", "{\"a\" 1}",
                          "tru", "\"a\nb\"", "[1 2]"}) {
    EXPECT_FALSE(ParseJson(bad).ok()) << bad;
  }
  std::string deep(100, '[');
  deep += std::string(100, ']');
  auto d = ParseJson(deep);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(Msg(d.status()).find("nesting too deep"), std::string::npos);
}

}  // namespace
}  // namespace adaptcache::policy
