// drop codec family: query-agnostic token dropping (docs/format.md "drop").
//
// Keeps n = max(ceil(tokens * keep_permille / 1000), sinks + window) tokens (at most
// tokens): the first `sinks` tokens, the last `window` tokens, and the highest-scoring
// others (ties: lower index first). Scores are SideData::token_importance when given,
// else the key-norm proxy below. The kept tokens, as a [2][layers][n][kv_heads][head_dim]
// tensor, are stored raw or quant-encoded (drop-50+quant-...). The sorted kept-token
// index list (uint16) is stored too. Decode writes the kept tokens at their positions
// and zeros (+0.0) at dropped positions; DecodeDropKeptTokens() returns the positions.
//
// Key-norm proxy: score(t) = -sum over (layer, head) of ||k[l][t][h]||_2 / mean_t'(...).
// Tokens whose keys have a small L2 norm draw high attention (Devoto et al. 2024, "A
// Simple and Effective L2 Norm-Based Strategy for KV Cache Compression"); dividing by
// the per-(layer, head) mean norm keeps heads with large key scales from dominating.
// It needs no queries, costs one pass over K, and is deterministic.
// All functions are thread safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/kv_shape.h"
#include "kernels/container.h"
#include "kernels/quant.h"

namespace adaptcache {

inline constexpr uint8_t kDropSinks = 4;   // first tokens always kept
inline constexpr uint8_t kDropWindow = 8;  // last tokens always kept
inline constexpr uint32_t kDropSectionIndex = 16;  // uint16 LE kept-token positions
inline constexpr uint32_t kDropSectionRaw = 1;     // inner raw tensor (inner = raw)

struct DropParams {
  uint16_t keep_permille = 500;  // {750, 500, 330, 250, 100}
  bool quantized = false;        // inner codec quant (else raw)
  QuantParams quant;             // when quantized
};

// Kept-token count for a chunk of `tokens` tokens.
uint32_t DropKeepCount(uint32_t tokens, uint32_t keep_permille, uint32_t sinks,
                       uint32_t window);
// Key-norm proxy scores, [tokens] (higher = keep).
std::vector<float> KeyNormScores(const KvShape& shape, ConstByteSpan raw);
// Sorted kept positions. `importance` is empty or [tokens] finite values.
absl::StatusOr<std::vector<uint32_t>> SelectKeptTokens(const KvShape& shape, ConstByteSpan raw,
                                                       uint32_t keep_permille,
                                                       std::span<const float> importance);

absl::Status ValidateDropPermille(uint32_t keep_permille);
uint64_t DropContainerMaxBytes(const DropParams& p, const KvShape& shape);
absl::StatusOr<uint64_t> EncodeDrop(const DropParams& p, const KvShape& shape, ConstByteSpan raw,
                                    std::span<const float> importance, ByteSpan out);
absl::Status DecodeDrop(const ContainerView& view, ByteSpan out);
// Params of a parsed kDrop container (validated).
absl::StatusOr<DropParams> DropParamsOf(const ContainerView& view);
// Kept positions of a parsed kDrop container (validated as by DecodeDrop).
absl::StatusOr<std::vector<uint32_t>> DecodeDropKeptTokens(const ContainerView& view);

}  // namespace adaptcache
