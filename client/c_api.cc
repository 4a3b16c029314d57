// The C ABI over the C++ client (client/c_api.h). Thin: argument checks that C cannot
// express (NULLs, sizes), conversions, and the status code into the return value and the
// message into a thread-local string. Nothing here throws across the boundary.
#include "client/c_api.h"
#include "common/status_kinds.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "common/half.h"
#include "common/key.h"
#include "common/kv_shape.h"
#include "kernels/codec.h"
#include "kernels/container.h"

#ifdef ADAPTCACHE_C_API_CUDA
#include <cuda_runtime_api.h>

#include "client/get_to_device.h"
#include "kernels/cuda/decode.h"
#endif

struct ac_client {
  std::unique_ptr<adaptcache::client::Client> impl;
};

namespace {

using adaptcache::DType;
using adaptcache::Key128;
using adaptcache::KvShape;
using adaptcache::client::Client;
using adaptcache::client::EntryInfo;

thread_local std::string g_last_error;
thread_local int g_last_error_kind = AC_ERROR_KIND_NONE;

int Fail(const absl::Status& st) {
  g_last_error = std::string(st.message());
  g_last_error_kind = adaptcache::IsOverloaded(st) ? AC_ERROR_KIND_OVERLOADED : AC_ERROR_KIND_NONE;
  const int code = static_cast<int>(st.code());
  return code == 0 ? static_cast<int>(absl::StatusCode::kUnknown) : code;
}
int Fail(absl::StatusCode code, std::string msg) { return Fail(absl::Status(code, msg)); }
int Invalid(std::string msg) { return Fail(absl::StatusCode::kInvalidArgument, std::move(msg)); }
int Ok() {
  g_last_error.clear();
  g_last_error_kind = AC_ERROR_KIND_NONE;
  return 0;
}

// Runs f, turning a C++ exception (bad_alloc from a vector, mostly) into a status.
template <typename F>
int Guard(F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return Fail(absl::StatusCode::kResourceExhausted, "out of memory");
  } catch (const std::exception& e) {
    return Fail(absl::StatusCode::kInternal, std::string("unexpected C++ exception: ") + e.what());
  }
}

void CopyName(std::string_view s, char* dst, size_t cap) {
  if (dst == nullptr || cap == 0) return;
  const size_t n = std::min(s.size(), cap - 1);
  std::memcpy(dst, s.data(), n);
  dst[n] = '\0';
}

absl::StatusOr<KvShape> ShapeFromC(const ac_shape* s) {
  if (s == nullptr) return absl::InvalidArgumentError("shape is NULL");
  auto dt = adaptcache::DTypeFromCode(s->dtype);
  if (!dt.ok()) return dt.status();
  KvShape shape{s->layers, s->tokens, s->kv_heads, s->head_dim, *dt};
  if (auto st = adaptcache::ValidateShape(shape); !st.ok()) return st;
  return shape;
}

ac_shape ShapeToC(const KvShape& s) {
  return ac_shape{s.layers, s.tokens, s.kv_heads, s.head_dim, static_cast<uint32_t>(s.dtype)};
}

void InfoToC(const EntryInfo& e, ac_entry_info* out) {
  if (out == nullptr) return;
  *out = ac_entry_info{};
  out->tier = static_cast<uint32_t>(e.tier);
  CopyName(e.codec, out->codec, sizeof(out->codec));
  out->stored_bytes = e.stored_bytes;
  out->raw_bytes = e.raw_bytes;
  if (e.hit()) out->shape = ShapeToC(e.shape);
  out->est_quality_loss = e.est_quality_loss;
  out->crc32c = e.payload_crc32c;
}

absl::StatusOr<Key128> KeyAt(const uint8_t* keys, uint64_t i) {
  return Key128::FromBytes(
      std::string_view(reinterpret_cast<const char*>(keys) + i * adaptcache::kKeyBytes, adaptcache::kKeyBytes));
}

absl::StatusOr<std::vector<Key128>> KeysFromC(const uint8_t* keys, uint64_t n) {
  if (n > 0 && keys == nullptr) return absl::InvalidArgumentError("keys is NULL");
  std::vector<Key128> out;
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    auto k = KeyAt(keys, i);
    if (!k.ok()) return k.status();
    out.push_back(*k);
  }
  return out;
}

int CheckClient(ac_client* c) { return c == nullptr || c->impl == nullptr ? Invalid("client is NULL") : 0; }

int DoPut(ac_client* c, const char* ns, const uint8_t* key, const ac_shape* shape, const void* data,
          uint64_t data_bytes, const ac_put_options* opts, ac_entry_info* info, bool shm) {
  if (int rc = CheckClient(c); rc != 0) return rc;
  if (ns == nullptr || key == nullptr) return Invalid("namespace or key is NULL");
  auto s = ShapeFromC(shape);
  if (!s.ok()) return Fail(s.status());
  if (data == nullptr) return Invalid("data is NULL");
  if (data_bytes != s->Bytes()) {
    return Invalid(absl::StrCat("data is ", data_bytes, " bytes; shape ", s->DebugString(), " needs ", s->Bytes()));
  }
  auto k = KeyAt(key, 0);
  if (!k.ok()) return Fail(k.status());
  adaptcache::client::PutSpec spec;
  spec.ns = ns;
  spec.key = *k;
  spec.shape = *s;
  if (opts != nullptr) {
    if (opts->codec != nullptr) spec.codec = opts->codec;
    if (opts->token_importance_count > 0) {
      if (opts->token_importance == nullptr) return Invalid("token_importance is NULL");
      spec.token_importance.assign(opts->token_importance, opts->token_importance + opts->token_importance_count);
    }
    spec.probe_count = opts->probe_count;
    if (opts->probe_query_count > 0) {
      if (opts->probe_queries == nullptr) return Invalid("probe_queries is NULL");
      spec.probe_queries.assign(opts->probe_queries, opts->probe_queries + opts->probe_query_count);
    }
  }
  std::span<const std::byte> raw(static_cast<const std::byte*>(data), data_bytes);
  auto r = shm ? c->impl->PutShm(spec, raw) : c->impl->Put(spec, raw);
  if (!r.ok()) return Fail(r.status());
  InfoToC(*r, info);
  return Ok();
}

#ifndef ADAPTCACHE_C_API_CUDA
// The CPU path of GetToDevice for a build without CUDA: same contract and the same bytes
// as client/get_to_device.cc's fallback (leases, full host verification, Decode, then the
// contiguous or paged write with dtype conversion).
absl::Status CpuWrite(std::span<const std::byte> container, const KvShape& s, void* const* outs, DType out_dtype,
                      const ac_paged_cache* paged, DType paged_dtype, const int64_t* slots, size_t i) {
  std::vector<std::byte> tmp(s.Bytes());
  if (auto st = adaptcache::Decode(container, tmp); !st.ok()) return st;
  const uint64_t W = uint64_t{s.kv_heads} * s.head_dim;
  auto convert = [&](uint64_t src_elem, void* dst, DType dt, uint64_t count) {
    if (dt == s.dtype) {
      std::memcpy(dst, tmp.data() + src_elem * adaptcache::DTypeSize(dt), count * adaptcache::DTypeSize(dt));
      return;
    }
    for (uint64_t j = 0; j < count; ++j) {
      adaptcache::StoreFromFloat(dst, dt, j, adaptcache::LoadAsFloat(tmp.data(), s.dtype, src_elem + j));
    }
  };
  if (paged == nullptr) {
    convert(0, outs[i], out_dtype, s.Elements());
    return absl::OkStatus();
  }
  auto kept = adaptcache::DecodeKeptTokens(container);
  if (!kept.ok()) return kept.status();
  const uint64_t stride = paged->block_stride != 0 ? paged->block_stride : paged->block_size * W;
  for (uint32_t kv = 0; kv < 2; ++kv) {
    for (uint32_t l = 0; l < s.layers; ++l) {
      auto* base = static_cast<std::byte*>((kv == 0 ? paged->k_layers : paged->v_layers)[l]);
      for (uint32_t t : *kept) {
        const int64_t slot = slots[t];
        if (slot < 0) continue;
        if (static_cast<uint64_t>(slot) >= paged->num_blocks * paged->block_size) {
          if (paged->bad_slots != nullptr) ++*paged->bad_slots;
          continue;
        }
        const uint64_t elem = (slot / paged->block_size) * stride + (slot % paged->block_size) * W;
        convert(((uint64_t{kv} * s.layers + l) * s.tokens + t) * W,
                base + elem * adaptcache::DTypeSize(paged_dtype), paged_dtype, W);
      }
    }
  }
  return absl::OkStatus();
}
#endif

#ifdef ADAPTCACHE_C_API_CUDA
ac_device_result ResultToC(const adaptcache::client::GetToDeviceResult& r) {
  uint32_t prefix = 0;
  while (prefix < r.entries.size() && r.entries[prefix].hit()) ++prefix;
  return ac_device_result{r.decoded, r.leased, prefix, r.corrupt ? 1 : 0, r.used_gpu ? 1 : 0,
                          r.mapping_registered ? 1 : 0};
}
#endif

}  // namespace

struct ac_device_fetch {
#ifdef ADAPTCACHE_C_API_CUDA
  std::unique_ptr<adaptcache::client::DeviceFetch> impl;  // null: complete (CPU path)
#endif
  ac_device_result result{};
};

extern "C" {

uint32_t ac_abi_version(void) { return AC_ABI_VERSION; }

int ac_built_with_cuda(void) {
#ifdef ADAPTCACHE_C_API_CUDA
  return 1;
#else
  return 0;
#endif
}

int ac_cuda_available(void) {
#ifdef ADAPTCACHE_C_API_CUDA
  return adaptcache::cuda::CudaDeviceAvailable() ? 1 : 0;
#else
  return 0;
#endif
}

const char* ac_last_error(void) { return g_last_error.c_str(); }
int ac_last_error_kind(void) { return g_last_error_kind; }

int ac_connect(const char* target, int64_t rpc_timeout_ms, ac_client** out) {
  return Guard([&] {
    if (target == nullptr || out == nullptr) return Invalid("target or out is NULL");
    *out = nullptr;
    adaptcache::client::ClientOptions opts;
    if (rpc_timeout_ms >= 0) opts.rpc_timeout = std::chrono::milliseconds(rpc_timeout_ms);
    auto c = Client::Connect(target, opts);
    if (!c.ok()) return Fail(c.status());
    *out = new ac_client{std::move(*c)};
    return Ok();
  });
}

void ac_close(ac_client* c) { delete c; }

int ac_hash_tokens(const char* ns, const uint32_t* tokens, uint64_t n_tokens, uint32_t chunk_tokens,
                   uint8_t* keys_out, uint64_t keys_cap, uint64_t* n_keys) {
  return Guard([&] {
    if (ns == nullptr || n_keys == nullptr) return Invalid("namespace or n_keys is NULL");
    if (n_tokens > 0 && tokens == nullptr) return Invalid("tokens is NULL");
    if (chunk_tokens == 0) return Invalid("chunk_tokens must be > 0");
    if (auto st = adaptcache::ValidateNamespace(ns); !st.ok()) return Fail(st);
    const uint64_t need = (n_tokens + chunk_tokens - 1) / chunk_tokens;
    *n_keys = need;
    if (need > keys_cap || (need > 0 && keys_out == nullptr)) {
      return Fail(absl::StatusCode::kOutOfRange, absl::StrCat(need, " keys need room; keys_cap is ", keys_cap));
    }
    auto keys = Client::HashTokens(ns, std::span<const uint32_t>(tokens, n_tokens), chunk_tokens);
    for (size_t i = 0; i < keys.size(); ++i) {
      std::memcpy(keys_out + i * adaptcache::kKeyBytes, keys[i].ToBytes().data(), adaptcache::kKeyBytes);
    }
    return Ok();
  });
}

int ac_lookup(ac_client* c, const char* ns, const uint8_t* keys, uint64_t n_keys, uint32_t* prefix_hits,
              ac_entry_info* entries) {
  return Guard([&] {
    if (int rc = CheckClient(c); rc != 0) return rc;
    if (ns == nullptr) return Invalid("namespace is NULL");
    if (n_keys > 0 && entries == nullptr) return Invalid("entries is NULL");
    auto k = KeysFromC(keys, n_keys);
    if (!k.ok()) return Fail(k.status());
    auto r = c->impl->Lookup(ns, *k);
    if (!r.ok()) return Fail(r.status());
    if (r->entries.size() != n_keys) return Fail(absl::StatusCode::kInternal, "Lookup answered a different key count");
    if (prefix_hits != nullptr) *prefix_hits = r->prefix_hits;
    for (uint64_t i = 0; i < n_keys; ++i) InfoToC(r->entries[i], &entries[i]);
    return Ok();
  });
}

int ac_put(ac_client* c, const char* ns, const uint8_t* key, const ac_shape* shape, const void* data,
           uint64_t data_bytes, const ac_put_options* opts, ac_entry_info* info) {
  return Guard([&] { return DoPut(c, ns, key, shape, data, data_bytes, opts, info, false); });
}

int ac_put_shm(ac_client* c, const char* ns, const uint8_t* key, const ac_shape* shape, const void* data,
               uint64_t data_bytes, const ac_put_options* opts, ac_entry_info* info) {
  return Guard([&] { return DoPut(c, ns, key, shape, data, data_bytes, opts, info, true); });
}

int ac_get_into(ac_client* c, const char* ns, const uint8_t* key, void* out, uint64_t cap, ac_entry_info* info) {
  return Guard([&] {
    if (int rc = CheckClient(c); rc != 0) return rc;
    if (ns == nullptr || key == nullptr || info == nullptr) return Invalid("namespace, key or info is NULL");
    if (cap > 0 && out == nullptr) return Invalid("out is NULL");
    auto k = KeyAt(key, 0);
    if (!k.ok()) return Fail(k.status());
    auto r = c->impl->GetInto(ns, *k, std::span<std::byte>(static_cast<std::byte*>(out), cap));
    if (!r.ok()) return Fail(r.status());
    InfoToC(*r, info);
    return Ok();
  });
}

int ac_get_shm_into(ac_client* c, const char* ns, const uint8_t* key, void* out, uint64_t cap,
                    ac_entry_info* info) {
  return Guard([&] {
    if (int rc = CheckClient(c); rc != 0) return rc;
    if (ns == nullptr || key == nullptr || info == nullptr) return Invalid("namespace, key or info is NULL");
    if (cap > 0 && out == nullptr) return Invalid("out is NULL");
    auto k = KeyAt(key, 0);
    if (!k.ok()) return Fail(k.status());
    auto le = c->impl->GetShm(ns, *k);
    if (!le.ok()) return Fail(le.status());
    InfoToC(le->info(), info);
    if (cap < le->info().stored_bytes) {
      return Fail(absl::StatusCode::kOutOfRange,
                  absl::StrCat("buffer is ", cap, " bytes; entry needs ", le->info().stored_bytes));
    }
    auto n = le->CopyOut(std::span<std::byte>(static_cast<std::byte*>(out), cap));
    if (!n.ok()) return Fail(n.status());
    return Ok();
  });
}

int ac_container_info(const void* container, uint64_t n, ac_shape* shape, char* codec) {
  return Guard([&] {
    if (container == nullptr && n > 0) return Invalid("container is NULL");
    auto view = adaptcache::ParseContainer(adaptcache::ConstByteSpan(static_cast<const std::byte*>(container), n));
    if (!view.ok()) return Fail(view.status());
    auto cfg = adaptcache::ConfigOf(*view);
    if (!cfg.ok()) return Fail(cfg.status());
    if (shape != nullptr) *shape = ShapeToC(view->shape);
    CopyName(cfg->Name(), codec, AC_CODEC_NAME_BYTES);
    return Ok();
  });
}

int ac_decode(const void* container, uint64_t n, void* out, uint64_t out_bytes) {
  return Guard([&] {
    if ((container == nullptr && n > 0) || (out == nullptr && out_bytes > 0)) return Invalid("container or out is NULL");
    auto st = adaptcache::Decode(adaptcache::ConstByteSpan(static_cast<const std::byte*>(container), n),
                                 adaptcache::ByteSpan(static_cast<std::byte*>(out), out_bytes));
    return st.ok() ? Ok() : Fail(st);
  });
}

int ac_kept_tokens(const void* container, uint64_t n, uint32_t* tokens_out, uint64_t cap, uint64_t* n_kept) {
  return Guard([&] {
    if ((container == nullptr && n > 0) || n_kept == nullptr) return Invalid("container or n_kept is NULL");
    auto kept =
        adaptcache::DecodeKeptTokens(adaptcache::ConstByteSpan(static_cast<const std::byte*>(container), n));
    if (!kept.ok()) return Fail(kept.status());
    *n_kept = kept->size();
    if (kept->size() > cap || (!kept->empty() && tokens_out == nullptr)) {
      return Fail(absl::StatusCode::kOutOfRange, absl::StrCat(kept->size(), " tokens need room; cap is ", cap));
    }
    std::copy(kept->begin(), kept->end(), tokens_out);
    return Ok();
  });
}

int ac_delete(ac_client* c, const char* ns, const uint8_t* keys, uint64_t n_keys, uint32_t* deleted) {
  return Guard([&] {
    if (int rc = CheckClient(c); rc != 0) return rc;
    if (ns == nullptr) return Invalid("namespace is NULL");
    auto k = KeysFromC(keys, n_keys);
    if (!k.ok()) return Fail(k.status());
    auto r = c->impl->Delete(ns, *k);
    if (!r.ok()) return Fail(r.status());
    if (deleted != nullptr) *deleted = *r;
    return Ok();
  });
}

namespace {
std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20 || u >= 0x7f) {
      out += absl::StrCat("\\u00", absl::Hex(u, absl::kZeroPad2));
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string StatsJson(const adaptcache::client::StatsInfo& s) {
  std::string j = "{\"tiers\":[";
  for (size_t i = 0; i < s.tiers.size(); ++i) {
    const auto& t = s.tiers[i];
    absl::StrAppend(&j, i ? "," : "", "{\"tier\":", JsonString(adaptcache::client::TierName(t.tier)),
                    ",\"capacity_bytes\":", t.capacity_bytes, ",\"used_bytes\":", t.used_bytes,
                    ",\"entries\":", t.entries, ",\"hits\":", t.hits, "}");
  }
  absl::StrAppend(&j, "],\"lookups\":", s.lookups, ",\"misses\":", s.misses, ",\"puts\":", s.puts,
                  ",\"evictions\":", s.evictions, ",\"leases_outstanding\":", s.leases_outstanding);
  for (const auto* m : {&s.entries_by_codec, &s.bytes_by_codec}) {
    absl::StrAppend(&j, m == &s.entries_by_codec ? ",\"entries_by_codec\":{" : ",\"bytes_by_codec\":{");
    bool first = true;
    for (const auto& [k, v] : *m) {
      absl::StrAppend(&j, first ? "" : ",", JsonString(k), ":", v);
      first = false;
    }
    j += "}";
  }
  absl::StrAppend(&j, ",\"version\":", JsonString(s.version), ",\"uptime_s\":", s.uptime_s, "}");
  return j;
}
}  // namespace

int ac_stats_json(ac_client* c, char* buf, uint64_t cap, uint64_t* needed) {
  return Guard([&] {
    if (int rc = CheckClient(c); rc != 0) return rc;
    if (needed == nullptr) return Invalid("needed is NULL");
    auto s = c->impl->Stats();
    if (!s.ok()) return Fail(s.status());
    const std::string j = StatsJson(*s);
    *needed = j.size() + 1;
    if (buf == nullptr || cap < j.size() + 1) {
      return Fail(absl::StatusCode::kOutOfRange, absl::StrCat("stats need ", j.size() + 1, " bytes"));
    }
    std::memcpy(buf, j.c_str(), j.size() + 1);
    return Ok();
  });
}

int ac_health(ac_client* c, int32_t* serving, char* version, uint64_t version_cap) {
  return Guard([&] {
    if (int rc = CheckClient(c); rc != 0) return rc;
    auto h = c->impl->Health();
    if (!h.ok()) return Fail(h.status());
    if (serving != nullptr) *serving = h->serving ? 1 : 0;
    CopyName(h->version, version, version_cap);
    return Ok();
  });
}

int ac_flush_releases(ac_client* c, uint32_t* held) {
  return Guard([&] {
    if (int rc = CheckClient(c); rc != 0) return rc;
    auto r = c->impl->FlushReleases();
    if (!r.ok()) return Fail(r.status());
    if (held != nullptr) *held = *r;
    return Ok();
  });
}

int ac_get_to_device_start(ac_client* c, const char* ns, const uint8_t* keys, uint64_t n_keys, void* const* outs,
                           uint32_t out_dtype, const ac_paged_cache* paged, const int64_t* const* slot_mappings,
                           const uint64_t* sizes, uintptr_t stream, int32_t device, int force_cpu,
                           uint32_t lease_ms, ac_device_fetch** fetch, ac_device_result* pending,
                           ac_entry_info* entries) {
  return Guard([&] {
    if (int rc = CheckClient(c); rc != 0) return rc;
    if (ns == nullptr || fetch == nullptr || pending == nullptr) return Invalid("namespace, fetch or pending is NULL");
    *fetch = nullptr;
    *pending = ac_device_result{};
    auto f = std::make_unique<ac_device_fetch>();
    auto k = KeysFromC(keys, n_keys);
    if (!k.ok()) return Fail(k.status());
    DType odt = DType::kBF16;
    if (paged == nullptr) {
      if (n_keys > 0 && outs == nullptr) return Invalid("outs is NULL in contiguous mode");
      for (uint64_t i = 0; i < n_keys; ++i) {
        if (outs[i] == nullptr) return Invalid(absl::StrCat("outs[", i, "] is NULL"));
      }
      auto d = adaptcache::DTypeFromCode(out_dtype);
      if (!d.ok()) return Fail(d.status());
      odt = *d;
    } else {
      if (n_keys > 0 && slot_mappings == nullptr) return Invalid("slot_mappings is NULL in paged mode");
      if (paged->k_layers == nullptr || paged->v_layers == nullptr) return Invalid("k_layers or v_layers is NULL");
      if (paged->block_size == 0 || paged->num_blocks == 0) return Invalid("block_size and num_blocks must be > 0");
      auto d = adaptcache::DTypeFromCode(paged->dtype);
      if (!d.ok()) return Fail(d.status());
      odt = *d;
    }
#ifdef ADAPTCACHE_C_API_CUDA
    namespace cu = adaptcache::cuda;
    const bool gpu = force_cpu == 0 && cu::CudaDeviceAvailable();
    if (gpu && device >= 0) {
      if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
        return Fail(absl::StatusCode::kInvalidArgument,
                    absl::StrCat("cudaSetDevice(", device, "): ", cudaGetErrorString(e)));
      }
    }
    adaptcache::client::DeviceOutput out;
    if (paged == nullptr) {
      for (uint64_t i = 0; i < n_keys; ++i) {
        out.contiguous.push_back(cu::ContiguousOut{outs[i], odt, sizes != nullptr ? sizes[i] : 0});
      }
    } else {
      out.paged = true;
      out.cache = cu::PagedCache{paged->k_layers, paged->v_layers, paged->layers, paged->kv_heads,
                                 paged->head_dim, paged->block_size, paged->num_blocks, paged->block_stride,
                                 odt, paged->bad_slots};
      out.slot_mappings.assign(slot_mappings, slot_mappings + n_keys);
      if (sizes != nullptr) out.slot_counts.assign(sizes, sizes + n_keys);
    }
    adaptcache::client::GetToDeviceOptions opts;
    opts.lease_ms = lease_ms;
    opts.force_cpu = force_cpu != 0;
    auto r = adaptcache::client::StartGetToDevice(*c->impl, ns, *k, out, reinterpret_cast<cudaStream_t>(stream),
                                                  opts);
    if (!r.ok()) return Fail(r.status());
    const auto& p = (*r)->pending();
    *pending = ResultToC(p);
    if (entries != nullptr) {
      for (uint64_t i = 0; i < n_keys && i < p.entries.size(); ++i) InfoToC(p.entries[i], &entries[i]);
    }
    f->impl = std::move(*r);
    *fetch = f.release();
    return Ok();
#else
    // No CUDA in this build: the CPU path, host memory, as GetToDevice's fallback.
    ac_device_result* result = &f->result;
    if (paged != nullptr) {
      for (uint64_t i = 0; i < n_keys; ++i) {
        if (slot_mappings[i] == nullptr) return Invalid(absl::StrCat("slot_mappings[", i, "] is NULL"));
      }
    }
    auto lp = c->impl->LeasePrefix(ns, *k, lease_ms);
    if (!lp.ok()) return Fail(lp.status());
    result->leased = static_cast<uint32_t>(lp->leases.size());
    result->prefix_hits = lp->lookup.prefix_hits;
    if (entries != nullptr) {
      for (uint64_t i = 0; i < n_keys && i < lp->lookup.entries.size(); ++i) InfoToC(lp->lookup.entries[i], &entries[i]);
    }
    for (size_t i = 0; i < lp->leases.size(); ++i) {
      const auto& le = lp->leases[i];
      if (paged != nullptr) {
        const KvShape& s = le.info().shape;
        if (s.layers != paged->layers || s.kv_heads != paged->kv_heads || s.head_dim != paged->head_dim) {
          return Invalid(absl::StrCat("entry ", i, " has shape ", s.DebugString(),
                                      "; the paged cache is layers ", paged->layers, " kv_heads ", paged->kv_heads,
                                      " head_dim ", paged->head_dim));
        }
      }
      if (sizes != nullptr) {
        const KvShape& s = le.info().shape;
        const uint64_t need = paged != nullptr ? s.tokens : s.Elements() * adaptcache::DTypeSize(odt);
        if (sizes[i] < need) {
          return Invalid(absl::StrCat(paged != nullptr ? "slot mapping " : "output ", i, " holds ", sizes[i],
                                      paged != nullptr ? " slots" : " bytes", "; the entry ", s.DebugString(),
                                      " needs ", need));
        }
      }
      if (!adaptcache::client::VerifyContainer(le.bytes(), le.info()).ok()) {
        result->corrupt = 1;
        break;
      }
      auto st = CpuWrite(le.bytes(), le.info().shape, outs, odt, paged, odt,
                         paged != nullptr ? slot_mappings[i] : nullptr, i);
      if (!st.ok()) return Fail(st);
      result->decoded = static_cast<uint32_t>(i + 1);
    }
    const auto now = std::chrono::system_clock::now();
    for (const auto& le : lp->leases) {
      if (now >= le.expires()) return Fail(absl::UnavailableError("a lease expired before its copy finished; retry"));
    }
    (void)stream;
    (void)device;
    (void)force_cpu;
    *pending = *result;
    *fetch = f.release();
    return Ok();
#endif
  });
}

int ac_device_fetch_wait(ac_device_fetch* f, ac_device_result* result) {
  return Guard([&] {
    if (f == nullptr || result == nullptr) return Invalid("fetch or result is NULL");
#ifdef ADAPTCACHE_C_API_CUDA
    if (f->impl != nullptr) {
      auto r = f->impl->Wait();
      if (!r.ok()) return Fail(r.status());
      f->result = ResultToC(*r);
    }
#endif
    *result = f->result;
    return Ok();
  });
}

void ac_device_fetch_free(ac_device_fetch* f) { delete f; }

int ac_get_to_device(ac_client* c, const char* ns, const uint8_t* keys, uint64_t n_keys, void* const* outs,
                     uint32_t out_dtype, const ac_paged_cache* paged, const int64_t* const* slot_mappings,
                     const uint64_t* sizes, uintptr_t stream, int32_t device, int force_cpu, uint32_t lease_ms,
                     ac_device_result* result, ac_entry_info* entries) {
  if (result == nullptr) return Guard([] { return Invalid("result is NULL"); });
  *result = ac_device_result{};
  ac_device_fetch* f = nullptr;
  ac_device_result pending{};
  int rc = ac_get_to_device_start(c, ns, keys, n_keys, outs, out_dtype, paged, slot_mappings, sizes, stream, device,
                                  force_cpu, lease_ms, &f, &pending, entries);
  if (rc != 0) return rc;
  rc = ac_device_fetch_wait(f, result);
  ac_device_fetch_free(f);
  return rc;
}

int ac_prepare_device(ac_client* c, int32_t device, int wait, ac_device_registration* out) {
  return Guard([&] {
    if (int rc = CheckClient(c); rc != 0) return rc;
    if (out == nullptr) return Invalid("out is NULL");
#ifdef ADAPTCACHE_C_API_CUDA
    if (device >= 0 && adaptcache::cuda::CudaDeviceAvailable()) {
      if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
        return Fail(absl::StatusCode::kInvalidArgument,
                    absl::StrCat("cudaSetDevice(", device, "): ", cudaGetErrorString(e)));
      }
    }
    auto r = adaptcache::client::PrepareDevice(*c->impl, wait != 0);
    if (!r.ok()) return Fail(r.status());
    *out = ac_device_registration{r->done ? 1 : 0, r->registered ? 1 : 0, r->seconds, r->bytes};
    return Ok();
#else
    return Fail(absl::StatusCode::kFailedPrecondition, "libadaptcache_client was built without CUDA");
#endif
  });
}

}  // extern "C"
