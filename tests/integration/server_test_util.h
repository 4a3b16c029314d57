// Helpers for the raw gRPC-stub tests of the daemon (server_*_test.cc).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "adaptcache/v1/cache.grpc.pb.h"

namespace adaptcache::testing {

namespace v1 = ::adaptcache::v1;

inline std::string TestKey(uint64_t i) {
  std::string k(16, '\0');
  for (int b = 0; b < 8; ++b) k[b] = static_cast<char>((i >> (8 * b)) & 0xff);
  k[8] = 'k';
  return k;
}

// [2][layers=2][tokens][kv_heads=2][head_dim=64] bf16 = 16 KiB at 16 tokens.
inline v1::KvShape SmallShape(uint32_t tokens = 16) {
  v1::KvShape s;
  s.set_layers(2);
  s.set_tokens(tokens);
  s.set_kv_heads(2);
  s.set_head_dim(64);
  s.set_dtype(v1::DTYPE_BF16);
  return s;
}
inline uint64_t ShapeBytes(const v1::KvShape& s) {
  uint64_t e = 2ull * s.layers() * s.tokens() * s.kv_heads() * s.head_dim();
  return e * (s.dtype() == v1::DTYPE_FP32 ? 4 : 2);
}

inline std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

inline v1::PutHeader Header(const std::string& ns, const std::string& key,
                            const v1::KvShape& shape = SmallShape(), const std::string& codec = "raw") {
  v1::PutHeader h;
  h.set_namespace_(ns);
  h.set_key(key);
  *h.mutable_shape() = shape;
  h.set_codec(codec);
  return h;
}

inline void WithDeadline(grpc::ClientContext* ctx, int seconds = 20) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

// Sends the given frames in order, half-closes, and returns the final status.
inline grpc::Status SendFrames(v1::AdaptCache::Stub* stub, const std::vector<v1::PutRequest>& frames,
                               v1::PutResponse* resp = nullptr) {
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::PutResponse local;
  auto writer = stub->Put(&ctx, resp ? resp : &local);
  for (const auto& f : frames) {
    if (!writer->Write(f)) break;  // the server already answered
  }
  writer->WritesDone();
  return writer->Finish();
}

inline v1::PutRequest HeaderFrame(const v1::PutHeader& h) {
  v1::PutRequest r;
  *r.mutable_header() = h;
  return r;
}
inline v1::PutRequest DataFrame(std::string bytes) {
  v1::PutRequest r;
  r.set_data(std::move(bytes));
  return r;
}

// Header then `data` in frames of `frame` bytes.
inline grpc::Status PutBytes(v1::AdaptCache::Stub* stub, const v1::PutHeader& h,
                             const std::string& data, size_t frame = 4096,
                             v1::PutResponse* resp = nullptr) {
  std::vector<v1::PutRequest> frames{HeaderFrame(h)};
  for (size_t off = 0; off < data.size(); off += frame) frames.push_back(DataFrame(data.substr(off, frame)));
  return SendFrames(stub, frames, resp);
}

// Whether Lookup finds the entry in DRAM.
inline bool StoredInDram(v1::AdaptCache::Stub* stub, const std::string& ns, const std::string& key) {
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::LookupRequest req;
  req.set_namespace_(ns);
  req.add_keys(key);
  v1::LookupResponse resp;
  EXPECT_TRUE(stub->Lookup(&ctx, req, &resp).ok());
  return resp.entries_size() == 1 && resp.entries(0).tier() == v1::TIER_DRAM;
}

// Streams an entry back; returns the concatenated container bytes.
inline grpc::Status GetStream(v1::AdaptCache::Stub* stub, const std::string& ns,
                              const std::string& key, std::string* container,
                              v1::EntryInfo* info = nullptr) {
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::GetRequest req;
  req.set_namespace_(ns);
  req.set_key(key);
  req.set_transfer(v1::TRANSFER_STREAM);
  auto reader = stub->Get(&ctx, req);
  v1::GetResponse frame;
  bool first = true;
  container->clear();
  while (reader->Read(&frame)) {
    if (first && info) *info = frame.entry();
    first = false;
    container->append(frame.data());
  }
  return reader->Finish();
}

inline grpc::Status GetShm(v1::AdaptCache::Stub* stub, const std::string& ns, const std::string& key,
                           uint32_t lease_ms, v1::GetResponse* out) {
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::GetRequest req;
  req.set_namespace_(ns);
  req.set_key(key);
  req.set_transfer(v1::TRANSFER_SHM);
  req.set_lease_ms(lease_ms);
  auto reader = stub->Get(&ctx, req);
  int frames = 0;
  v1::GetResponse frame;
  while (reader->Read(&frame)) {
    if (frames++ == 0) *out = frame;
  }
  return reader->Finish();
}

// The daemon's pool, mapped read-write as a local client would.
class PoolMapping {
 public:
  explicit PoolMapping(const v1::PoolInfoResponse& info) : size_(info.size()) {
    int fd = ::open(info.shm_path().c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p != MAP_FAILED) base_ = static_cast<char*>(p);
  }
  ~PoolMapping() {
    if (base_) ::munmap(base_, size_);
  }
  char* base() const { return base_; }
  uint64_t size() const { return size_; }

 private:
  char* base_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace adaptcache::testing
