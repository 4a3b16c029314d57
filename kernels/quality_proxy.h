// Quality proxies: how much a codec config is expected to hurt generation for one entry,
// without running the model (DESIGN.md §5, docs/quality.md).
//
// For an entry and a config the proxy encodes and decodes through the public codec API
// and compares the reconstruction with the original:
//   * per layer, the relative reconstruction error of K and V, ||X - X'||_F / ||X||_F
//     (dropped tokens decode as zeros and count as fully lost);
//   * per layer, the attention error: for each query q of each KV head, with exact
//     attention weights w = softmax(q K^T / sqrt(d)) over all tokens,
//       lost(q) = sum of w over the tokens the codec dropped, plus
//       rel(q)  = ||o_S - o'_S|| / max(||o_S||, 0.05 * rms_t ||v_t||),
//     where o_S = softmax over kept tokens S of the exact logits times V, and o'_S the same
//     from K', V'; averaged over heads and queries. Splitting the dropped mass from the
//     reconstruction error keeps the proxy monotone: fewer kept tokens (nested sets) lose
//     more mass, and an extra quant stage only adds rel(q) (0 without it).
//     Queries are the engine's probes (SideData, one set per KV head: GQA) when given,
//     else five pseudo-queries per head derived from the keys (the mean-key direction and
//     +-the top two principal directions, each scaled so the logits have std 2.5);
//   * per layer, the RMS logit error over kept tokens, (q.(k - k'))/sqrt(d).
// The scalar `proxy` is the mean over layers of the attention-output error; 0 means
// lossless, larger is worse. Reference data (queries, exact outputs) is computed once per
// entry by QualityReference and reused for every config.
// Thread safety: a built QualityReference is immutable; Evaluate*() may run concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/kv_shape.h"
#include "kernels/codec.h"
#include "kernels/container.h"

namespace adaptcache {

inline constexpr uint32_t kPseudoQueriesPerHead = 5;
inline constexpr double kPseudoQueryLogitStd = 2.5;

struct LayerQuality {
  double k_rel_error = 0;
  double v_rel_error = 0;
  double attention_error = 0;  // mean of lost + rel over heads x queries (see above)
  double attention_mass_lost = 0;  // mean of lost over heads x queries (0 unless dropping)
  double logit_rms_error = 0;  // RMS of the logit error over heads x queries x kept tokens
};

struct QualityReport {
  std::vector<LayerQuality> layers;
  bool used_probes = false;
  double k_rel_error = 0;  // over the whole entry
  double v_rel_error = 0;
  double proxy = 0;  // mean over layers of attention_error; the optimizer's input
};

class QualityReference {
 public:
  // Validates shape, tensor size and side data (probe_queries must be exactly
  // [layers][probe_count][kv_heads][head_dim] finite floats when probe_count > 0), then
  // computes queries and exact attention outputs. `raw` is borrowed: it must outlive the
  // reference. `side` is copied.
  static absl::StatusOr<QualityReference> Build(const KvShape& shape, ConstByteSpan raw,
                                                const SideData& side);

  // Compares a reconstruction (same shape and dtype as the original). `kept` is empty
  // (all tokens present) or [tokens] flags, 0 for tokens the codec dropped.
  absl::StatusOr<QualityReport> Evaluate(ConstByteSpan decoded,
                                         std::span<const uint8_t> kept = {}) const;

  // Encodes with `cfg` through the public API (passing the side data), decodes, and
  // evaluates; for drop containers the kept-token list comes from the container.
  absl::StatusOr<QualityReport> EvaluateConfig(const CodecConfig& cfg) const;

  const KvShape& shape() const { return shape_; }
  uint32_t queries_per_head() const { return queries_per_head_; }

 private:
  KvShape shape_;
  ConstByteSpan raw_;
  std::vector<float> importance_;
  std::vector<float> probes_;  // copy of the side data's probes
  uint32_t probe_count_ = 0;
  bool used_probes_ = false;
  uint32_t queries_per_head_ = 0;
  // [layers][kv_heads][queries][head_dim], already multiplied by 1/sqrt(head_dim).
  std::vector<float> queries_;
  // Exact attention outputs, same layout as queries_.
  std::vector<float> outputs_;
  // Per (layer, head): the floor of the attention-error denominator.
  std::vector<float> output_floor_;
};

// One-shot helper: Build + EvaluateConfig.
absl::StatusOr<QualityReport> EstimateQuality(const CodecConfig& cfg, const KvShape& shape,
                                              ConstByteSpan raw, const SideData& side = {});

}  // namespace adaptcache
