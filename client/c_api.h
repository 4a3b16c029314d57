/* A C ABI over the C++ client (client/client.h, client/get_to_device.h), for the Python
 * package's ctypes layer (python/adaptcache/_native.py) and any other FFI.
 *
 * Why C and not a CPython extension: one shared library (libadaptcache_client.so) loads
 * into every Python 3.x (and any language with a C FFI), so a build on Debian's 3.11 serves
 * torch's 3.12 on the GPU host. Only `ac_*` symbols are exported.
 *
 * Conventions:
 *   - Every fallible function returns an int status: 0 is OK, anything else an
 *     absl::StatusCode number (gRPC's numbering: 3 INVALID_ARGUMENT, 5 NOT_FOUND,
 *     14 UNAVAILABLE, ...). The message of the last failing call on the calling thread is
 *     ac_last_error() (daemon errors keep their "adaptcached: " prefix).
 *   - Keys are 16-byte values (Key128::ToBytes, little-endian lo then hi); arrays of keys
 *     are packed back to back (n * 16 bytes).
 *   - Dtypes are the container codes: 1 bf16, 2 fp16, 3 fp32 (common/kv_shape.h).
 *   - Tensors are [2][layers][tokens][kv_heads][head_dim], C order, K then V.
 *   - Pointers are borrowed for the duration of the call only.
 * Thread safety: an ac_client may be used from any number of threads at once (as a
 * Client); ac_close must not race other calls on the same handle.
 */
#ifndef ADAPTCACHE_CLIENT_C_API_H_
#define ADAPTCACHE_CLIENT_C_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any change of a signature or struct below. */
#define AC_ABI_VERSION 3

typedef struct ac_client ac_client;

typedef struct ac_shape {
  uint32_t layers, tokens, kv_heads, head_dim;
  uint32_t dtype; /* 1 bf16, 2 fp16, 3 fp32 */
} ac_shape;

#define AC_CODEC_NAME_BYTES 64

/* What the daemon reports about one entry (EntryInfo). tier 0 = miss, 1 DRAM, 2 SSD. */
typedef struct ac_entry_info {
  uint32_t tier;
  char codec[AC_CODEC_NAME_BYTES]; /* NUL-terminated config name, e.g. "quant-k4v4-g64" */
  uint64_t stored_bytes;           /* container size */
  uint64_t raw_bytes;
  ac_shape shape;                  /* meaningful when tier != 0 */
  float est_quality_loss;
  uint32_t crc32c;                 /* CRC32C of the whole container */
} ac_entry_info;

/* Side data and options of a Put; zero-initialise for none. */
typedef struct ac_put_options {
  const char* codec;              /* NULL or "": the namespace's default */
  const float* token_importance;  /* NULL or shape.tokens floats */
  uint64_t token_importance_count;
  uint32_t probe_count;
  const float* probe_queries;     /* NULL or layers*probe_count*kv_heads*head_dim floats */
  uint64_t probe_query_count;
} ac_put_options;

/* The engine's paged KV cache (cuda::PagedCache). k_layers/v_layers are arrays of `layers`
 * pointers, each to num_blocks blocks of block_size slots of kv_heads*head_dim values;
 * blocks block_stride elements apart (0 = dense). On the GPU path the arrays and caches are
 * device memory; on the CPU path host memory. bad_slots: optional counter (same memory). */
typedef struct ac_paged_cache {
  void* const* k_layers;
  void* const* v_layers;
  uint32_t layers, kv_heads, head_dim, block_size;
  uint64_t num_blocks, block_stride;
  uint32_t dtype;
  uint32_t* bad_slots;
} ac_paged_cache;

typedef struct ac_device_result {
  uint32_t decoded;            /* leading keys decoded (the usable prefix) */
  uint32_t leased;             /* leading keys the daemon leased */
  uint32_t prefix_hits;        /* Lookup's prefix */
  int32_t corrupt;             /* the prefix ended on an entry that failed its checks */
  int32_t used_gpu;
  int32_t mapping_registered;  /* H2D copies were DMAs from the pool mapping */
} ac_device_result;

typedef struct ac_device_registration {
  int32_t done, registered;
  double seconds;
  uint64_t bytes;
} ac_device_registration;

/* Library facts. */
uint32_t ac_abi_version(void);
/* 1 when the library was built with the CUDA decoders (GetToDevice). */
int ac_built_with_cuda(void);
/* 1 when built with CUDA and a CUDA device is usable by this process. */
int ac_cuda_available(void);
/* The message of the last failing call on this thread ("" if none). Valid until the
 * thread's next ac_* call. */
const char* ac_last_error(void);
/* What kind of failure the last failing call on this thread was, beyond its code:
 * AC_ERROR_KIND_OVERLOADED = the daemon refused it for load through every retry
 * (RESOURCE_EXHAUSTED; an unreachable daemon is UNAVAILABLE). */
#define AC_ERROR_KIND_NONE 0
#define AC_ERROR_KIND_OVERLOADED 1
int ac_last_error_kind(void);

/* Connects (target: "unix:///path", "unix:path", a socket path or "host:port") and checks
 * the daemon with Health. rpc_timeout_ms: deadline per RPC, 0 = none, < 0 = the default
 * (60 s). On success *out owns the client; free it with ac_close. */
int ac_connect(const char* target, int64_t rpc_timeout_ms, ac_client** out);
void ac_close(ac_client* c);

/* Chunk keys of a token sequence (Client::HashTokens): ceil(n_tokens / chunk_tokens) keys
 * into keys_out (keys_cap keys of room), their count into *n_keys. */
int ac_hash_tokens(const char* ns, const uint32_t* tokens, uint64_t n_tokens, uint32_t chunk_tokens,
                   uint8_t* keys_out, uint64_t keys_cap, uint64_t* n_keys);

/* entries: n_keys infos, in key order. */
int ac_lookup(ac_client* c, const char* ns, const uint8_t* keys, uint64_t n_keys, uint32_t* prefix_hits,
              ac_entry_info* entries);

/* Stores the raw tensor (data: exactly the shape's bytes) under key; streamed over gRPC
 * (ac_put) or written into the shared pool (ac_put_shm). opts may be NULL. info may be NULL. */
int ac_put(ac_client* c, const char* ns, const uint8_t* key, const ac_shape* shape, const void* data,
           uint64_t data_bytes, const ac_put_options* opts, ac_entry_info* info);
int ac_put_shm(ac_client* c, const char* ns, const uint8_t* key, const ac_shape* shape, const void* data,
               uint64_t data_bytes, const ac_put_options* opts, ac_entry_info* info);

/* Copies the entry's container (verified) into out (cap bytes); streamed (ac_get_into) or
 * through a shared-memory lease (ac_get_shm_into). A miss is NOT_FOUND. When cap is too
 * small: OUT_OF_RANGE (11) with info->stored_bytes set to the size needed (shm), or
 * INVALID_ARGUMENT (stream). info must not be NULL. */
int ac_get_into(ac_client* c, const char* ns, const uint8_t* key, void* out, uint64_t cap,
                ac_entry_info* info);
int ac_get_shm_into(ac_client* c, const char* ns, const uint8_t* key, void* out, uint64_t cap,
                    ac_entry_info* info);

/* Validates a container fully (CRC included) and reports its shape and config name
 * (codec: AC_CODEC_NAME_BYTES of room, may be NULL). */
int ac_container_info(const void* container, uint64_t n, ac_shape* shape, char* codec);
/* Decodes a container on the CPU (kernels/codec.h Decode) into out: exactly the shape's
 * bytes in the container's dtype. DATA_LOSS for bad bytes. */
int ac_decode(const void* container, uint64_t n, void* out, uint64_t out_bytes);
/* Token positions a decode reconstructs (all but the dropped ones of a drop entry) into
 * tokens_out (cap of room), their count into *n_kept. */
int ac_kept_tokens(const void* container, uint64_t n, uint32_t* tokens_out, uint64_t cap, uint64_t* n_kept);

/* *deleted = how many of the keys existed. */
int ac_delete(ac_client* c, const char* ns, const uint8_t* keys, uint64_t n_keys, uint32_t* deleted);

/* Stats as JSON text into buf (cap bytes, NUL-terminated); *needed = its length + 1.
 * OUT_OF_RANGE when cap is too small (nothing but *needed written). */
int ac_stats_json(ac_client* c, char* buf, uint64_t cap, uint64_t* needed);
/* version: at least 64 bytes of room (NUL-terminated, truncated). */
int ac_health(ac_client* c, int32_t* serving, char* version, uint64_t version_cap);
/* Sends pending lease releases now; *held = how many the daemon still held (may be NULL). */
int ac_flush_releases(ac_client* c, uint32_t* held);

/* GetToDevice: one LeasePrefix round trip, then the leading leased entries decoded into
 *   contiguous mode (paged == NULL): outs[i], one [2][L][T][H][D] buffer of out_dtype per key;
 *   paged mode: the cache through slot_mappings[i] (int64 per token of key i).
 * sizes (may be NULL: unchecked): per key, the bytes of outs[i] (contiguous) or the slots in
 *   slot_mappings[i] (paged); an entry that needs more is INVALID_ARGUMENT before any write.
 * GPU path (built with CUDA, a usable device, force_cpu == 0): outputs, pointer arrays and
 * slot mappings are DEVICE memory of `device` (>= 0: made current first; -1 leaves the
 * current device); the decodes are enqueued on `stream` (a cudaStream_t / CUstream, 0 = the
 * legacy default stream) and are complete when it reaches them. CPU path (force_cpu, no
 * usable device, or a build without CUDA): everything is HOST memory and complete on
 * return; the bytes are the same. entries: n_keys infos (may be NULL). Keys past
 * result->decoded were not written (misses, or the prefix ended on a corrupt entry). */
int ac_get_to_device(ac_client* c, const char* ns, const uint8_t* keys, uint64_t n_keys, void* const* outs,
                     uint32_t out_dtype, const ac_paged_cache* paged, const int64_t* const* slot_mappings,
                     const uint64_t* sizes, uintptr_t stream, int32_t device, int force_cpu, uint32_t lease_ms,
                     ac_device_result* result, ac_entry_info* entries);

/* ac_get_to_device in two steps (client/get_to_device.h StartGetToDevice): _start returns
 * once the copies, checks and decodes are enqueued; pending->decoded is the prefix whose
 * decodes were enqueued. ac_device_fetch_wait blocks for the copies and checks, releases
 * the leases and gives the final result: its decoded may be smaller (an entry failed its
 * device check), or the call fails UNAVAILABLE (a lease expired): anything computed from
 * outputs past the final decoded is wrong. Outputs must stay allocated until `stream` ran
 * the decodes. ac_device_fetch_free frees the fetch (waiting for its copies if unwaited).
 * On the CPU path the fetch is complete when _start returns. */
typedef struct ac_device_fetch ac_device_fetch;
int ac_get_to_device_start(ac_client* c, const char* ns, const uint8_t* keys, uint64_t n_keys, void* const* outs,
                           uint32_t out_dtype, const ac_paged_cache* paged, const int64_t* const* slot_mappings,
                           const uint64_t* sizes, uintptr_t stream, int32_t device, int force_cpu,
                           uint32_t lease_ms, ac_device_fetch** fetch, ac_device_result* pending,
                           ac_entry_info* entries);
int ac_device_fetch_wait(ac_device_fetch* f, ac_device_result* result);
void ac_device_fetch_free(ac_device_fetch* f);

/* Starts (wait = 0) or completes (wait = 1) registering the pool mapping with CUDA
 * (PrepareDevice). FAILED_PRECONDITION without a usable GPU or a CUDA build. */
int ac_prepare_device(ac_client* c, int32_t device, int wait, ac_device_registration* out);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // ADAPTCACHE_CLIENT_C_API_H_
