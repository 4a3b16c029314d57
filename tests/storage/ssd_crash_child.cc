// Load generator for ssd_crash_test: opens the tier in argv[1], puts entries with ids
// [first, first + count) asynchronously (several in flight), appends each id to the
// oracle file argv[2] once its Put is acknowledged durable, then reads back earlier
// entries until killed. Exits 3 if it ever reads wrong bytes.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "storage/ssd_tier.h"
#include "tests/storage/ssd_crash_common.h"

using namespace adaptcache;

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s dir oracle first count\n", argv[0]);
    return 2;
  }
  const uint64_t first = std::strtoull(argv[3], nullptr, 10);
  const uint64_t count = std::strtoull(argv[4], nullptr, 10);
  int oracle = ::open(argv[2], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (oracle < 0) return 2;
  auto tier = SsdTier::Open(crash::Options(argv[1]));
  if (!tier.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(tier.status().message()).c_str());
    return 2;
  }
  std::atomic<int> inflight{0};
  for (uint64_t id = first; id < first + count; ++id) {
    while (inflight.load() >= 16) ::usleep(200);
    auto bytes = std::make_shared<std::vector<std::byte>>(crash::Content(id));
    inflight.fetch_add(1);
    absl::Status st = (*tier)->Put(crash::Key(id), *bytes, [&, id, bytes](absl::Status s) {
      if (s.ok()) {
        const uint64_t v = id;
        if (::write(oracle, &v, sizeof v) != sizeof v) std::abort();
      }
      inflight.fetch_sub(1);
    }, SsdPutOptions{.borrow = true});
    if (!st.ok()) inflight.fetch_sub(1);
  }
  std::mt19937_64 rng(first);
  for (;;) {  // read load until SIGKILL
    const uint64_t id = rng() % (first + count);
    auto got = (*tier)->Get(crash::Key(id));
    if (got.ok() && *got != crash::Content(id)) return 3;
  }
}
