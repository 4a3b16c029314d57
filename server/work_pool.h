// A fixed set of threads running submitted jobs in order of submission. The daemon's
// callback-API streams hand it their blocking steps (an SSD read behind a Get, the encode
// and commit that end a Put), which must not run on gRPC's callback threads.
//
// Thread safety: Submit may be called from any thread. The destructor runs the jobs
// already queued, then joins.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace adaptcache::server {

class WorkPool {
 public:
  explicit WorkPool(unsigned threads);
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  void Submit(std::function<void()> job);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace adaptcache::server
