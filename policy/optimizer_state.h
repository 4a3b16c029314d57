// Internal to the optimizer's files (optimizer*.cc): the solver state AdaptiveOptimizer
// keeps between plans, and the local search over it. Not for other users.
#pragma once

#include <cstdint>
#include <vector>

#include "policy/optimizer.h"

namespace adaptcache::policy {

struct AdaptiveOptimizer::State {
  // What the cached hulls were built from.
  bool valid = false;
  uint64_t epoch = 0;
  std::vector<ConfigSpec> configs;
  std::vector<SizeClass> classes;
  std::vector<double> max_loss;
  DelayModelOptions delay;
  std::vector<double> hull_alpha;  // α per namespace of the current hulls

  // Per class: configs by ascending size, decode time per config, miss cost.
  size_t k = 0;
  std::vector<uint8_t> order;
  std::vector<uint32_t> order_begin, order_len;
  std::vector<double> dec;         // [class][config]
  std::vector<uint64_t> bytes;     // [class][config]
  std::vector<double> miss;        // [class]

  // Per entry: snapshot of what the hull depends on, and the hull's slot.
  struct Snap {
    uint32_t size_class;
    int16_t config;
    uint8_t tier;
    uint8_t master;
    uint16_t ns;
    friend bool operator==(const Snap&, const Snap&) = default;
  };
  std::vector<Snap> snap;
  std::vector<uint32_t> off;
  std::vector<uint8_t> len, cap;
  std::vector<float> vs, vg;  // vertex stored bytes, decode time + α·qloss
  std::vector<uint8_t> vc;    // vertex config
  uint64_t wasted = 0;

  // Warm start.
  double lambda_d = 0, lambda_s = 0;

  // Scratch for one solve.
  std::vector<double> hist;
  std::vector<uint32_t> active;
  std::vector<uint8_t> tt, tv;  // target tier (kT*) and hull vertex per entry
};

namespace internal {

// Integer clean-up at the margin: the Lagrangian solution is optimal for the capacity
// it uses, so what is lost is at most a few entries' worth around the prices. Takes the
// `window` entries closest to changing their choice (smallest Lagrangian regret) and
// applies the best improving single or pairwise change over all their allowed options
// until none is left (cost O(passes · window² · options²)), then re-optimises the
// `exact_window` most marginal of them exactly by branch and bound (node-bounded).
// `target` and the tier uses are updated in place.
void LocalSearch(const PolicyInput& in, const AdaptiveOptimizer::State& st, double ld, double ls,
                 double cap_d, double cap_s, size_t window, size_t exact_window,
                 uint64_t exact_nodes, uint64_t* use_d, uint64_t* use_s,
                 std::vector<Placement>* target);

}  // namespace internal
}  // namespace adaptcache::policy
