// libFuzzer target: the drop decoder (see fuzz_util.h for the strategy).
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return adaptcache::fuzz::FuzzOne(data, size, adaptcache::CodecId::kDrop);
}
