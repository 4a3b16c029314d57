#include "bench/eval/ground_truth.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "kernels/codec_config.h"

namespace adaptcache::eval {
namespace {

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

absl::StatusOr<GroundTruth> ParseGroundTruth(absl::string_view csv) {
  std::vector<absl::string_view> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  for (auto& l : lines) l = absl::StripTrailingAsciiWhitespace(l);
  if (lines.empty()) return absl::InvalidArgumentError("chunk_quality: empty");
  std::vector<std::string> head = absl::StrSplit(lines[0], ',');
  const std::vector<std::string> want = {"context", "chunk", "config", "ratio", "kl", "top1_agreement",
                                         "nll_delta", "proxy", "predicted_loss", "proxy_probe"};
  if (head != want) return absl::InvalidArgumentError("chunk_quality: unexpected header");
  struct Row {
    double ratio, kl, top1, pred, probe;
  };
  std::vector<std::string> cfg_order;
  absl::flat_hash_map<std::string, size_t> cfg_idx;
  std::map<std::pair<std::string, int32_t>, std::map<size_t, Row>> by_chunk;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], ',');
    if (f.size() != want.size()) return absl::InvalidArgumentError(absl::StrCat("chunk_quality line ", i + 1, ": fields"));
    int32_t chunk;
    Row r;
    if (!absl::SimpleAtoi(f[1], &chunk) || !absl::SimpleAtod(f[3], &r.ratio) || !absl::SimpleAtod(f[4], &r.kl) ||
        !absl::SimpleAtod(f[5], &r.top1) || !absl::SimpleAtod(f[8], &r.pred) || !absl::SimpleAtod(f[9], &r.probe) ||
        !(r.ratio > 0) || !std::isfinite(r.kl) || !std::isfinite(r.top1) || !std::isfinite(r.pred) ||
        !std::isfinite(r.probe)) {
      return absl::InvalidArgumentError(absl::StrCat("chunk_quality line ", i + 1, ": bad number"));
    }
    if (chunk < 0) continue;  // whole-context rows
    auto [it, inserted] = cfg_idx.try_emplace(f[2], cfg_order.size());
    if (inserted) cfg_order.push_back(f[2]);
    by_chunk[{f[0], chunk}][it->second] = r;
  }
  auto raw = cfg_idx.find("raw");
  if (raw == cfg_idx.end()) return absl::InvalidArgumentError("chunk_quality: no raw rows");
  // Raw first, then the CSV's order.
  std::vector<size_t> order = {raw->second};
  for (size_t c = 0; c < cfg_order.size(); ++c) {
    if (c != raw->second) order.push_back(c);
  }
  GroundTruth gt;
  std::vector<std::vector<double>> ratios(order.size());
  for (size_t j = 0; j < order.size(); ++j) {
    auto cc = ParseCodecConfig(cfg_order[order[j]]);
    if (!cc.ok()) return absl::InvalidArgumentError(absl::StrCat("chunk_quality: config ", cfg_order[order[j]]));
    gt.configs.push_back({cfg_order[order[j]], cc->family});
  }
  std::map<std::string, uint32_t> ctx_idx;
  for (const auto& [key, m] : by_chunk) ctx_idx.emplace(key.first, 0);
  for (auto& [name, idx] : ctx_idx) {
    idx = static_cast<uint32_t>(gt.contexts.size());
    gt.contexts.push_back(name);
  }
  for (const auto& [key, m] : by_chunk) {
    if (m.size() != order.size()) continue;
    GtChunk c;
    c.context = ctx_idx[key.first];
    c.chunk = key.second;
    for (size_t j = 0; j < order.size(); ++j) {
      const Row& r = m.at(order[j]);
      const bool is_raw = j == 0;
      c.loss.push_back(is_raw ? 0.f : static_cast<float>(std::max(0.0, 1.0 - r.top1)));
      c.kl.push_back(is_raw ? 0.f : static_cast<float>(std::max(0.0, r.kl)));
      c.predicted.push_back(is_raw ? 0.f : static_cast<float>(std::max(0.0, r.pred)));
      c.probe.push_back(is_raw ? 0.f : static_cast<float>(std::max(0.0, r.probe)));
      ratios[j].push_back(r.ratio);
    }
    gt.chunks.push_back(std::move(c));
  }
  if (gt.chunks.empty()) return absl::InvalidArgumentError("chunk_quality: no chunk has every config");
  for (size_t j = 0; j < order.size(); ++j) gt.size_frac.push_back(j == 0 ? 1.0 : 1.0 / Median(ratios[j]));
  return gt;
}

absl::StatusOr<GroundTruth> LoadGroundTruth(const std::string& path) {
  auto s = ReadAll(path);
  if (!s.ok()) return s.status();
  return ParseGroundTruth(*s);
}

ContextSplit SplitContexts(const GroundTruth& gt, uint32_t stride, uint32_t per) {
  ContextSplit s;
  for (uint32_t i = 0; i < gt.chunks.size(); ++i) {
    const bool val = stride > 0 && gt.chunks[i].context % stride < per;
    (val ? s.validation_chunks : s.test_chunks).push_back(i);
  }
  return s;
}

ProbeCalibration ProbeCalibration::Fit(const GroundTruth& gt, const std::vector<uint32_t>& chunks) {
  ProbeCalibration cal;
  cal.knots_.resize(gt.configs.size());
  for (size_t c = 1; c < gt.configs.size(); ++c) {
    std::vector<std::pair<double, double>> pts;
    for (uint32_t i : chunks) pts.push_back({gt.chunks[i].probe[c], gt.chunks[i].loss[c]});
    std::sort(pts.begin(), pts.end());
    // Pool adjacent violators: blocks of (sum x, sum y, n) with non-decreasing mean y.
    struct Block {
      double sx, sy;
      double n;
    };
    std::vector<Block> b;
    for (const auto& [x, y] : pts) {
      b.push_back({x, y, 1});
      while (b.size() > 1 && b[b.size() - 2].sy / b[b.size() - 2].n >= b.back().sy / b.back().n) {
        Block t = b.back();
        b.pop_back();
        b.back().sx += t.sx;
        b.back().sy += t.sy;
        b.back().n += t.n;
      }
    }
    for (const Block& k : b) cal.knots_[c].push_back({k.sx / k.n, k.sy / k.n});
  }
  return cal;
}

double ProbeCalibration::operator()(size_t config, double x) const {
  if (config == 0 || config >= knots_.size() || knots_[config].empty()) return 0;
  const auto& k = knots_[config];
  if (x <= k.front().first) return k.front().second;
  if (x >= k.back().first) return k.back().second;
  auto it = std::upper_bound(k.begin(), k.end(), std::make_pair(x, -HUGE_VAL));
  const auto& [x1, y1] = *it;
  const auto& [x0, y0] = *(it - 1);
  return x1 > x0 ? y0 + (y1 - y0) * (x - x0) / (x1 - x0) : y1;
}

const char* EstimateName(Estimate e) {
  switch (e) {
    case Estimate::kPredicted: return "predicted";
    case Estimate::kProbe: return "probe";
    case Estimate::kTruth: return "truth";
  }
  return "?";
}

absl::StatusOr<Estimate> ParseEstimate(absl::string_view s) {
  if (s == "predicted") return Estimate::kPredicted;
  if (s == "probe") return Estimate::kProbe;
  if (s == "truth") return Estimate::kTruth;
  return absl::InvalidArgumentError(absl::StrCat("unknown estimate ", s));
}

double EstimateOf(const GroundTruth& gt, const GtChunk& c, size_t config, Estimate e, const ProbeCalibration* cal) {
  if (config == 0) return 0;
  switch (e) {
    case Estimate::kPredicted: return c.predicted[config] / std::max<uint32_t>(gt.chunks_per_context, 1);
    case Estimate::kProbe: return cal ? (*cal)(config, c.probe[config]) : c.probe[config];
    case Estimate::kTruth: return c.loss[config];
  }
  return 0;
}

SimModel MakeGroundTruthModel(const GroundTruth& gt, const std::vector<uint32_t>& chunks, Estimate est,
                              const ProbeCalibration* cal, uint64_t seed, const ScoreDelay* score) {
  SimModel m;
  m.configs = gt.configs;
  m.size_frac = gt.size_frac;
  m.sources = static_cast<uint32_t>(chunks.size());
  m.source_salt = seed * 0xD1B54A32D192ED03ull + 0x5851F42D4C957F2Dull;
  m.score = score;
  const size_t k = gt.configs.size();
  for (uint32_t i : chunks) {
    const GtChunk& c = gt.chunks[i];
    for (size_t j = 0; j < k; ++j) {
      m.est.push_back(static_cast<float>(EstimateOf(gt, c, j, est, cal)));
      m.truth.push_back(c.loss[j]);
      m.truth_kl.push_back(c.kl[j]);
    }
  }
  return m;
}

absl::StatusOr<MeasuredDelays> ParseE2eCsv(absl::string_view csv) {
  std::vector<absl::string_view> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  for (auto& l : lines) l = absl::StripTrailingAsciiWhitespace(l);
  if (lines.empty() || !absl::StartsWith(lines[0], "model,prefix_tokens,suffix_tokens,case,ttft_ms,prefix_load_ms")) {
    return absl::InvalidArgumentError("e2e.csv: unexpected header");
  }
  std::map<std::string, std::vector<std::pair<double, double>>> pts;  // case -> (chunks, seconds)
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], ',');
    if (f.size() < 6 || f[0] != "llama-3.1-8b-random") continue;
    double tokens, ms;
    if (!absl::SimpleAtod(f[1], &tokens) || !absl::SimpleAtod(f[5], &ms)) {
      return absl::InvalidArgumentError(absl::StrCat("e2e.csv line ", i + 1, ": bad number"));
    }
    pts[f[3]].push_back({tokens, ms * 1e-3});
  }
  MeasuredDelays m;
  auto slope = [](const std::vector<std::pair<double, double>>& v) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    const double n = v.size();
    for (const auto& [t, s] : v) {
      const double x = t / 256.0;
      sx += x, sy += s, sxx += x * x, sxy += x * s;
    }
    const double den = n * sxx - sx * sx;
    return den > 0 ? (n * sxy - sx * sy) / den : 0.0;
  };
  for (const auto& [c, v] : pts) {
    if (v.size() < 2) continue;
    if (c == "raw-ssd") m.raw_ssd_s_per_chunk = slope(v);
    else if (absl::EndsWith(c, "-dram")) m.dram_s_per_chunk.push_back({c.substr(0, c.size() - 5), slope(v)});
  }
  auto rc = pts.find("recompute");
  if (rc == pts.end() || m.raw_ssd_s_per_chunk <= 0) {
    return absl::InvalidArgumentError("e2e.csv: needs recompute and raw-ssd rows of llama-3.1-8b-random");
  }
  auto r = rc->second;
  std::sort(r.begin(), r.end());
  m.recompute.push_back({0, 0});
  for (const auto& p : r) m.recompute.push_back(p);
  bool has_raw = false;
  for (const auto& [c, s] : m.dram_s_per_chunk) has_raw |= c == "raw";
  if (!has_raw) return absl::InvalidArgumentError("e2e.csv: no raw-dram rows");
  return m;
}

ScoreDelay BuildScoreDelay(const MeasuredDelays& m, const std::vector<policy::ConfigSpec>& configs,
                           const std::vector<double>& size_frac, uint64_t raw_bytes, uint32_t tokens,
                           std::string* notes) {
  std::map<std::string, double> measured(m.dram_s_per_chunk.begin(), m.dram_s_per_chunk.end());
  const double raw_s = measured.at("raw");
  const double B = raw_bytes / raw_s;  // end-to-end DRAM bytes/s of raw
  const double ssd_extra_per_byte = (m.raw_ssd_s_per_chunk - raw_s) / raw_bytes;
  auto frac_of = [&](const std::string& name) {
    for (size_t c = 0; c < configs.size(); ++c) {
      if (configs[c].name == name) return size_frac[c];
    }
    return -1.0;
  };
  auto formula = [&](const std::string& name, CodecId fam, double frac) {
    double s = frac * raw_bytes / B;
    if (fam != CodecId::kRaw) {
      auto d = m.decode_gbs.find(name);
      if (d != m.decode_gbs.end() && d->second > 0) s += raw_bytes / (d->second * 1e9);
    }
    return s;
  };
  std::map<CodecId, std::vector<double>> resid;
  for (const auto& [name, s] : measured) {
    auto cc = ParseCodecConfig(name);
    const double frac = frac_of(name);
    if (!cc.ok() || frac <= 0 || cc->family == CodecId::kRaw) continue;
    resid[cc->family].push_back(s - formula(name, cc->family, frac));
  }
  ScoreDelay sd;
  sd.recompute = m.recompute;
  if (notes) {
    absl::StrAppendFormat(notes, "raw DRAM end to end %.2f GB/s (%.3f ms per %u-token chunk); SSD raw %.2f ms/chunk (%.2f GB/s)\n",
                          B / 1e9, raw_s * 1e3, tokens, m.raw_ssd_s_per_chunk * 1e3,
                          raw_bytes / m.raw_ssd_s_per_chunk / 1e9);
  }
  for (size_t c = 0; c < configs.size(); ++c) {
    auto it = measured.find(configs[c].name);
    double s;
    const char* how;
    if (it != measured.end()) {
      s = it->second;
      how = "measured (e2e.csv slope)";
    } else {
      auto r = resid.find(configs[c].family);
      const double res = r == resid.end() ? 0.0 : Median(r->second);
      s = std::max(formula(configs[c].name, configs[c].family, size_frac[c]) + res, 1e-6);
      how = r == resid.end() ? "formula (no measured config of the family)" : "formula + family residual";
    }
    const double ssd = s + size_frac[c] * raw_bytes * ssd_extra_per_byte;
    sd.dram_s_per_token.push_back(s / tokens);
    sd.ssd_s_per_token.push_back(ssd / tokens);
    if (notes) {
      absl::StrAppendFormat(notes, "%s,%.4f,%.4f,%s\n", configs[c].name, s * 1e3, ssd * 1e3, how);
    }
  }
  return sd;
}

policy::DelayModelOptions MeasuredPlannerOptions(const MeasuredDelays& m, const std::vector<std::string>& configs) {
  policy::DelayModelOptions o;
  o.dram.bandwidth_Bps = 47.504e9;
  o.ssd.bandwidth_Bps = 1.840e9;
  o.recompute_s_per_token = 31.336e-6;
  const auto fam = policy::FamilyDecodeBps(m.decode_gbs, configs);
  for (size_t f = 1; f < fam.size(); ++f) {
    if (fam[f] > 0) o.decode_Bps[f] = fam[f];
  }
  return o;
}

}  // namespace adaptcache::eval
