"""adaptcached as the prefix KV cache of a Hugging Face transformers decoder (Llama family).

The connector stores a prompt's KV after prefill, one entry per full chunk of
``chunk_tokens`` (256) tokens under the chained token-prefix keys of
:func:`adaptcache.hash_tokens` (common/key.h, the C++ client's and the CLI's keys); each
entry holds every layer of its chunk, [2, layers, chunk_tokens, kv_heads, head_dim] in the
model's dtype (the layout of ``Client.put``). On a later request it finds the longest stored
prefix, decodes it straight into the model's KV cache on the model's device
(``Client.get_to_device``: the CUDA decoders into torch CUDA tensors, or the CPU decoder for
a CPU model) and prefills only the rest.

The interface follows vLLM's KV connector v1, so an engine adapter stays thin:

  scheduler side   get_num_new_matched_tokens(request)  -> tokens loadable from the daemon
                   request_finished(request)            -> what the request loaded and saved
  worker side      start_load_kv(request)               -> a transformers cache holding the prefix
                   wait_for_layer_load(layer)           (the current stream waits for that layer)
                   save_kv_layer(layer, key, value)     (copies the layer's new chunks aside)
                   wait_for_save()                      (the Puts, with the connector's codec)

``HFKVConnector.generate`` (and :func:`generate_with_cache`) runs a whole request with greedy
decoding and reports its timings; ``score`` gives the next-token logits of a forced
continuation (teacher forcing), for quality measurements.

Layer by layer: forward hooks on the decoder layers call wait_for_layer_load(i) before layer
i and save_kv_layer(i) after it. On CUDA the load runs on a side stream: the entries are
decoded there (one entry covers all layers of a chunk, so the decode finishes as a whole),
then each layer's K/V is reordered into the cache layout and marked with its own CUDA event;
layer i of the suffix waits only for its event, so the per-layer work overlaps the earlier
layers' compute. Saves copy each layer's chunks on a side stream right after the layer ran;
the device-to-host copy and the Puts happen in wait_for_save (after the first token in
generate). On the CPU everything is synchronous.

Tokens of a drop entry that the codec dropped are masked out of attention (their positions
come from the container: one extra Get per drop entry). Batch size 1; models with sliding
window or non-attention layers are refused. The namespace must identify what the KV depends
on: the weights, their dtype and the chunking (the default is built from the model's config
name, dtype and shape; pass one of your own when several weights share a config).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import re
import time
from typing import Optional, Sequence

import torch

from ..client import DEFAULT_CHUNK_TOKENS, Client, PagedKV, cuda_available, hash_tokens, kept_tokens
from ..errors import FailedPrecondition, InvalidArgument, Unavailable

__all__ = ["HFKVConnector", "KVRequest", "GenerationResult", "generate_with_cache", "default_namespace",
           "model_kv_shape"]

_ids = itertools.count()


# ---------------------------------------------------------------------------- model shape


def _text_config(model):
    cfg = model.config
    get = getattr(cfg, "get_text_config", None)
    return get() if get is not None else cfg


def _decoder_layers(model):
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise InvalidArgument(3, f"{type(model).__name__} has no .model.layers: a Llama-family *ForCausalLM expected")
    return layers


def model_kv_shape(model) -> tuple:
    """(layers, kv_heads, head_dim, dtype) of a Llama-family transformers model's KV."""
    cfg = _text_config(model)
    layers = int(cfg.num_hidden_layers)
    heads = int(cfg.num_attention_heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    types = getattr(cfg, "layer_types", None)
    if types and any(t != "full_attention" for t in types):
        raise InvalidArgument(3, f"layer types {sorted(set(types))}: only full-attention decoders are supported")
    if getattr(cfg, "use_sliding_window", False) and getattr(cfg, "sliding_window", None):
        raise InvalidArgument(3, "sliding-window attention is not supported")
    attn = _decoder_layers(model)[0].self_attn
    dtype = attn.k_proj.weight.dtype
    if dtype not in (torch.bfloat16, torch.float16, torch.float32):
        raise InvalidArgument(3, f"model dtype {dtype}: bf16, fp16 or fp32 expected")
    return layers, kv_heads, head_dim, dtype


_DT = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def default_namespace(model, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> str:
    """"hf/<config name>/<dtype>/l<layers>h<kv_heads>d<head_dim>/c<chunk_tokens>": what the
    KV depends on, as far as the config tells (not the weights themselves)."""
    layers, kv_heads, head_dim, dtype = model_kv_shape(model)
    cfg = _text_config(model)
    name = str(getattr(cfg, "_name_or_path", "") or getattr(cfg, "model_type", "") or "model")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rstrip("/").split("/")[-1])[:120] or "model"
    return f"hf/{name}/{_DT[dtype]}/l{layers}h{kv_heads}d{head_dim}/c{chunk_tokens}"


# ---------------------------------------------------------------------------- transformers caches


def _new_cache(model):
    from transformers import DynamicCache  # noqa: PLC0415

    try:
        return DynamicCache(config=model.config)
    except TypeError:  # versions before the config argument
        return DynamicCache()


def _fills_in_place(cache, n_layers: int) -> bool:
    """Whether _fill_cache puts the tensors in as they are (per-layer cache objects,
    transformers >= 4.56), so they may still be being written on another stream."""
    layers = getattr(cache, "layers", None)
    return isinstance(layers, list) and len(layers) >= n_layers and \
        all(hasattr(x, "lazy_initialization") and not getattr(x, "is_initialized", True) for x in layers)


def _fill_cache(cache, ks, vs) -> None:
    """Puts per-layer K/V [1, kv_heads, T, head_dim] into an empty cache: as they are where
    _fills_in_place, else through cache.update (a copy on the current stream: the tensors
    must be ready)."""
    if _fills_in_place(cache, len(ks)):
        for layer, k, v in zip(cache.layers, ks, vs):
            try:
                layer.lazy_initialization(k, v)
            except TypeError:
                layer.lazy_initialization(k)
            layer.keys, layer.values = k, v
        return
    for i, (k, v) in enumerate(zip(ks, vs)):
        cache.update(k, v, i)


def _truncate_cache(cache, tokens: int) -> None:
    """Keeps the first ``tokens`` positions of every layer (crop's meaning differs between
    transformers versions)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            if getattr(layer, "keys", None) is not None:
                layer.keys, layer.values = layer.keys[:, :, :tokens], layer.values[:, :, :tokens]
        return
    for i in range(len(cache.key_cache)):
        cache.key_cache[i] = cache.key_cache[i][:, :, :tokens]
        cache.value_cache[i] = cache.value_cache[i][:, :, :tokens]


def _layer_kv(cache, i):
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return layers[i].keys, layers[i].values
    return cache.key_cache[i], cache.value_cache[i]


def _forward_params(model) -> set:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def _cache_kwarg(model) -> str:
    """The forward argument naming the cache: "cache" (transformers 5.x) or "past_key_values"."""
    return "cache" if "cache" in _forward_params(model) else "past_key_values"


def _keep_kwarg(model) -> Optional[str]:
    """The forward argument limiting the logits to the last positions, if the model has one:
    a 32k-token prefill of a 128k-vocabulary model would otherwise materialize 8 GiB of logits."""
    params = _forward_params(model)
    return next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)


# ---------------------------------------------------------------------------- requests and results


@dataclasses.dataclass
class KVRequest:
    """One request as the connector sees it (vLLM's Request, reduced to what matters here).
    ``prompt_token_ids``: the prompt. The connector fills in the rest."""

    prompt_token_ids: list
    request_id: str = ""
    keys: list = dataclasses.field(default_factory=list, repr=False)  # one per full chunk of the prompt
    num_matched_tokens: int = 0  # get_num_new_matched_tokens: the stored prefix (whole chunks)
    num_loaded_tokens: int = 0  # start_load_kv: what was decoded into the cache
    valid: Optional[torch.Tensor] = dataclasses.field(default=None, repr=False)  # bool [loaded]: False = dropped
    saved: list = dataclasses.field(default_factory=list, repr=False)  # (chunk index, EntryInfo)
    load_result: object = dataclasses.field(default=None, repr=False)  # start_load_kv's DeviceResult
    prefix_load_ms: float = 0.0
    save_ms: float = 0.0
    _stored: list = dataclasses.field(default_factory=list, repr=False)  # lookup: which keys hit
    _codecs: list = dataclasses.field(default_factory=list, repr=False)  # lookup: their configs
    _load_events: list = dataclasses.field(default_factory=list, repr=False)
    _load_start: object = dataclasses.field(default=None, repr=False)
    _load_t0: float = 0.0
    _load_wall_ms: float = 0.0

    def __post_init__(self):
        self.prompt_token_ids = [int(t) for t in self.prompt_token_ids]
        if not self.request_id:
            self.request_id = f"req-{next(_ids)}"


@dataclasses.dataclass
class GenerationResult:
    """What generate() / score() did. ``tokens``: the generated (or forced) tokens;
    ``logits``: float32 [len(tokens), vocab] on the CPU when asked for; ``prefix_load_ms``:
    from start_load_kv until the prefix was in the cache (CUDA events on the GPU);
    ``ttft_ms``: from the request's start (lookup included) to the first token on the host;
    ``save_ms``: wait_for_save (device-to-host copy and Puts), after the first token;
    ``cache``: the transformers cache at the end, when asked for."""

    tokens: list
    prompt_tokens: int
    matched_tokens: int
    loaded_tokens: int
    prefill_tokens: int
    saved_chunks: int
    prefix_load_ms: float
    ttft_ms: float
    save_ms: float
    decode_ms: float
    used_gpu: bool = False  # the prefix was decoded by the CUDA decoders
    logits: Optional[torch.Tensor] = dataclasses.field(default=None, repr=False)
    cache: object = dataclasses.field(default=None, repr=False)
    prompt_logits: Optional[torch.Tensor] = dataclasses.field(default=None, repr=False)  # generate(prompt_logits=n)


@dataclasses.dataclass
class _Save:
    request: KVRequest
    chunks: list  # chunk indices to store
    codec: Optional[str]
    stage: torch.Tensor  # [len(chunks), 2, layers, chunk, kv_heads, head_dim] on the model's device
    layers_done: set = dataclasses.field(default_factory=set)


# ---------------------------------------------------------------------------- the connector


class HFKVConnector:
    """adaptcached as the prefix cache of one transformers model (module docstring).

    ``model``: a Llama-family *ForCausalLM (eval mode, batch 1) on a CUDA device or the CPU.
    ``client``: an :class:`adaptcache.Client` (else one is made for ``target``).
    ``namespace``: default :func:`default_namespace`. ``save_codec``: the config new chunks are
    stored with ("raw", "fp8", "quant-k4v4-g64", "drop-33", "lowrank-r8", ...; None = the
    namespace's default on the daemon). ``layerwise``: per-layer load events and save copies
    through forward hooks (CUDA); False loads the whole prefix before the forward.
    ``shm``: Put through the shared pool (same host) rather than streaming."""

    def __init__(self, model, client: Optional[Client] = None, *, target: Optional[str] = None,
                 namespace: Optional[str] = None, save_codec: Optional[str] = None,
                 chunk_tokens: int = DEFAULT_CHUNK_TOKENS, layerwise: bool = True, shm: bool = True):
        self.model = model
        self.layers, self.kv_heads, self.head_dim, self.dtype = model_kv_shape(model)
        self.chunk_tokens = int(chunk_tokens)
        if self.chunk_tokens <= 0:
            raise InvalidArgument(3, f"chunk_tokens must be positive; got {chunk_tokens}")
        self.device = next(model.parameters()).device
        self.is_cuda = self.device.type == "cuda"
        # The CUDA decoders write the model's device memory; else the CPU decoder (and a copy up).
        self.gpu_decode = self.is_cuda and cuda_available()
        if self.device.type not in ("cuda", "cpu"):
            raise InvalidArgument(3, f"model on {self.device}: CUDA or CPU expected")
        self._own_client = client is None
        self.client = client if client is not None else Client(target)
        self.namespace = namespace or default_namespace(model, self.chunk_tokens)
        self.save_codec = save_codec
        self.layerwise = bool(layerwise)
        self.shm = bool(shm)
        self._cache_kw = _cache_kwarg(model)
        self._keep_kw = _keep_kwarg(model)
        self._loading: Optional[KVRequest] = None  # the request whose load the layer hooks wait for
        self._waited: set = set()
        self._save: Optional[_Save] = None
        self._save_cache = None  # the cache the post-layer hooks save from
        if self.is_cuda:
            self._load_stream = torch.cuda.Stream(self.device)
            self._save_stream = torch.cuda.Stream(self.device)
        if self.gpu_decode:
            # Registration (~70 ms per GiB of pool) runs in the background from now on,
            # instead of starting inside the first request's load.
            try:
                self.client.prepare_device(device=self.device.index)
            except FailedPrecondition:
                pass  # no shared pool here (a remote daemon): loads stage through pinned memory
        self._hooks = []
        for i, layer in enumerate(_decoder_layers(model)[:self.layers]):
            self._hooks.append(layer.register_forward_pre_hook(self._pre_hook(i)))
            self._hooks.append(layer.register_forward_hook(self._post_hook(i)))

    # -- lifetime

    def close(self) -> None:
        """Removes the layer hooks (and closes the client when this connector made it)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self._own_client:
            self.client.close()

    def __enter__(self) -> "HFKVConnector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"HFKVConnector(namespace={self.namespace!r}, device={self.device}, layers={self.layers}, "
                f"kv_heads={self.kv_heads}, head_dim={self.head_dim}, dtype={_DT[self.dtype]}, "
                f"save_codec={self.save_codec!r})")

    def _request(self, request) -> KVRequest:
        if isinstance(request, KVRequest):
            return request
        return KVRequest(list(request.tolist() if isinstance(request, torch.Tensor) else request))

    def _keys(self, req: KVRequest) -> list:
        n_full = len(req.prompt_token_ids) // self.chunk_tokens
        if len(req.keys) != n_full:
            req.keys = hash_tokens(self.namespace, req.prompt_token_ids[:n_full * self.chunk_tokens],
                                   self.chunk_tokens) if n_full else []
        return req.keys

    # -- scheduler side

    def get_num_new_matched_tokens(self, request, num_computed_tokens: int = 0) -> int:
        """Tokens of the prompt beyond ``num_computed_tokens`` that the daemon can supply:
        the longest stored prefix of whole chunks, leaving at least the prompt's last token
        to compute (its logits start the generation). Records it in the request."""
        req = self._request(request)
        keys = self._keys(req)
        n_max = (len(req.prompt_token_ids) - 1) // self.chunk_tokens if req.prompt_token_ids else 0
        lr = self.client.lookup(self.namespace, keys) if keys else None
        req._stored = [e.hit for e in lr.entries] if lr is not None else []
        req._codecs = [e.codec for e in lr.entries] if lr is not None else []
        req.num_matched_tokens = min(lr.prefix_hits if lr is not None else 0, n_max) * self.chunk_tokens
        return max(0, req.num_matched_tokens - int(num_computed_tokens))

    def request_finished(self, request) -> dict:
        """Forgets the request's load/save state; returns what it did (tokens matched and
        loaded, chunks saved, timings). Saves still pending are completed first."""
        req = self._request(request)
        if self._save is not None and self._save.request is req:
            self.wait_for_save()
        if self._loading is req:
            self._finish_load()
        req.valid = None
        req._load_events = []
        return {"request_id": req.request_id, "matched_tokens": req.num_matched_tokens,
                "loaded_tokens": req.num_loaded_tokens, "saved_chunks": len(req.saved),
                "prefix_load_ms": req.prefix_load_ms, "save_ms": req.save_ms}

    # -- worker side: load

    def start_load_kv(self, request, cache=None):
        """Loads the request's matched prefix (get_num_new_matched_tokens first) into a new
        transformers cache for the model and returns it; the forward then passes it
        (``cache=`` / ``past_key_values=``) with the prompt's remaining tokens. On CUDA the
        decode runs on the connector's load stream and layer i is ready once
        wait_for_layer_load(i) returned (the layer hooks call it); on the CPU it is complete
        on return. ``request.num_loaded_tokens`` tells what was loaded: fewer than matched
        when entries went away or failed their checks since the lookup."""
        req = self._request(request)
        cache = cache if cache is not None else _new_cache(self.model)
        req.num_loaded_tokens = 0
        req.valid = None
        req._load_events = []
        req.prefix_load_ms = 0.0
        req.load_result = None
        req._fetch = None
        n = req.num_matched_tokens // self.chunk_tokens
        if n == 0:
            return cache
        if cache.get_seq_length() != 0:
            raise InvalidArgument(3, "start_load_kv needs an empty cache")
        keys = self._keys(req)[:n]
        ct, L, H, D = self.chunk_tokens, self.layers, self.kv_heads, self.head_dim
        req._load_t0 = time.perf_counter()
        # Drop entries go through the paged path, which leaves their dropped tokens unwritten:
        # on a NaN-filled stage the NaNs mark them (no second Get for the kept-token list).
        paged = any(c.startswith("drop") for c in req._codecs[:n])
        if self.is_cuda:
            compute = torch.cuda.current_stream(self.device)
            load = self._load_stream
            stage = torch.empty((n, 2, L, ct, H, D), dtype=self.dtype, device=self.device)
            load.wait_stream(compute)
            req._load_start = torch.cuda.Event(enable_timing=True)
            req._load_start.record(load)
            if self.gpu_decode:
                # Enqueued, not waited for: the forward is enqueued while the DMAs run, and
                # _finish_load checks afterwards that every entry passed its device check.
                with torch.cuda.stream(load):
                    req._fetch = self._get_stage(keys, stage, paged, load)
                r = req._fetch.pending
            else:  # a library without CUDA: the CPU decoder into pinned memory, then one copy up
                host = torch.empty(stage.shape, dtype=self.dtype, pin_memory=True)
                r = self._get_stage(keys, host, paged, None).wait()
                with torch.cuda.stream(load):
                    stage.copy_(host, non_blocking=True)
                load.synchronize()  # the pinned buffer must outlive the copy
        else:
            stage = torch.empty((n, 2, L, ct, H, D), dtype=self.dtype)
            r = self._get_stage(keys, stage, paged, None).wait()
        req.load_result = r
        if req._fetch is None:
            self._forget_corrupt(req, r)
        m = r.decoded
        want = (2, L, ct, H, D)
        for i, e in enumerate(r.entries[:m]):
            if e.shape != want:
                if self.is_cuda:
                    stage.record_stream(load)
                raise InvalidArgument(3, f"entry {i} of namespace {self.namespace!r} is {e.shape}; the model's "
                                         f"chunks are {want}: the namespace holds another model's KV")
        T = m * ct
        req.num_loaded_tokens = T
        if m == 0:
            if self.is_cuda:
                stage.record_stream(load)
            return cache
        drop = [i for i, e in enumerate(r.entries[:m]) if e.codec.startswith("drop")]
        if drop:
            req.valid = self._drop_mask(req, keys, stage, r, m, paged, load if self.is_cuda else None)
        ks = [torch.empty((1, H, T, D), dtype=self.dtype, device=self.device) for _ in range(L)]
        vs = [torch.empty((1, H, T, D), dtype=self.dtype, device=self.device) for _ in range(L)]
        if self.is_cuda:
            load.wait_stream(compute)  # the allocations above
            with torch.cuda.stream(load):
                for layer in range(L):
                    ks[layer][0].view(H, m, ct, D).copy_(stage[:m, 0, layer].permute(2, 0, 1, 3))
                    vs[layer][0].view(H, m, ct, D).copy_(stage[:m, 1, layer].permute(2, 0, 1, 3))
                    ev = torch.cuda.Event(enable_timing=(layer == L - 1))
                    ev.record(load)
                    req._load_events.append(ev)
            for t in [stage] + ks + vs:
                t.record_stream(load)
        else:
            for layer in range(L):
                ks[layer][0].view(H, m, ct, D).copy_(stage[:m, 0, layer].permute(2, 0, 1, 3))
                vs[layer][0].view(H, m, ct, D).copy_(stage[:m, 1, layer].permute(2, 0, 1, 3))
        if self.is_cuda and self.layerwise and _fills_in_place(cache, L):
            self._waited = set()  # layer i waits for its event in wait_for_layer_load(i)
        else:  # everything before the forward
            if self.is_cuda:
                compute.wait_event(req._load_events[-1])
            self._waited = set(range(L))
        _fill_cache(cache, ks, vs)
        self._loading = req
        if not self.is_cuda:
            req._load_wall_ms = (time.perf_counter() - req._load_t0) * 1e3
        return cache

    def _get_stage(self, keys, stage, paged: bool, stream):
        """start_get_to_device into stage [n, 2, layers, chunk, kv_heads, head_dim]: contiguous,
        or (``paged``) as a paged cache whose block i is chunk i, after filling it with NaN."""
        if not paged:
            return self.client.start_get_to_device(self.namespace, keys, out=list(stage.unbind(0)), stream=stream)
        ct, L = self.chunk_tokens, self.layers
        stage.fill_(float("nan"))
        cache = PagedKV([stage[:, 0, layer] for layer in range(L)], [stage[:, 1, layer] for layer in range(L)])
        slots = torch.arange(len(keys) * ct, dtype=torch.int64, device=stage.device).view(len(keys), ct)
        return self.client.start_get_to_device(self.namespace, keys, paged=cache.with_slots(list(slots.unbind(0))),
                                               stream=stream)

    def _drop_mask(self, req, keys, stage, r, m, paged: bool, stream):
        """The usable-token mask (CPU bool [m * chunk]) of a load with drop entries; their
        dropped tokens' K/V in the stage become zeros (masked out, and no NaN reaches the
        attention's weighted sum)."""
        ct = self.chunk_tokens
        valid = torch.ones(m * ct, dtype=torch.bool)
        ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        with ctx:
            for i, e in enumerate(r.entries[:m]):
                if not e.codec.startswith("drop"):
                    continue
                if paged:  # NaN where the decoder wrote nothing
                    kept = ~torch.isnan(stage[i, 0, 0, :, 0, 0])
                    stage[i].nan_to_num_(nan=0.0)
                    valid[i * ct:(i + 1) * ct] = kept.cpu()
                else:  # turned into a drop entry after the lookup: its container says which
                    idx = torch.from_numpy(kept_tokens(self.client.get(self.namespace, keys[i])).astype("int64"))
                    valid[i * ct:(i + 1) * ct] = False
                    valid[i * ct + idx] = True
        return valid

    def _forget_corrupt(self, req: KVRequest, r) -> None:
        """Deletes the entry that failed its checks, so the next save stores it afresh
        instead of every later request loading up to it and stopping there."""
        if r.corrupt and r.decoded < len(req.keys):
            self.client.delete(self.namespace, req.keys[r.decoded])

    def wait_for_layer_load(self, layer: int) -> None:
        """Makes the current CUDA stream wait until ``layer``'s prefix K/V is in the cache
        (no host wait; a no-op on the CPU or once waited)."""
        req = self._loading
        if req is None or layer in self._waited:
            return
        self._waited.add(layer)
        if req._load_events:
            torch.cuda.current_stream(self.device).wait_event(req._load_events[layer])

    def _finish_load(self) -> None:
        """After the forward is enqueued: every layer waited for, the fetch's checks
        collected, and the load's duration recorded. When an entry failed its device check
        (or a lease expired) after the forward was enqueued, request.num_loaded_tokens
        shrinks to the prefix that really loaded: the forward read wrong KV past it and must
        be redone from there (_prefill does)."""
        req = self._loading
        if req is None:
            return
        for layer in range(self.layers):
            self.wait_for_layer_load(layer)
        fetch, req._fetch = req._fetch, None
        if fetch is not None:
            try:
                final = fetch.wait()
            except Unavailable:
                final = dataclasses.replace(fetch.pending, decoded=0)
            if final.decoded < req.load_result.decoded:
                req.num_loaded_tokens = min(req.num_loaded_tokens, final.decoded * self.chunk_tokens)
            req.load_result = final
            self._forget_corrupt(req, final)
        if req._load_events:
            req._load_events[-1].synchronize()
            req.prefix_load_ms = req._load_start.elapsed_time(req._load_events[-1])
        else:
            req.prefix_load_ms = req._load_wall_ms
        self._loading = None

    # -- worker side: save

    def start_save(self, request, codec: Optional[str] = None, *, cache=None, overwrite: bool = False) -> int:
        """Prepares storing the request's full prompt chunks that were not loaded (and, unless
        ``overwrite``, are not stored already); save_kv_layer then copies them layer by layer
        and wait_for_save stores them. ``cache``: the transformers cache the next forward
        fills; given, the layer hooks call save_kv_layer(i) from it after each layer i.
        ``codec``: default the connector's save_codec. Returns the number of chunks to store."""
        req = self._request(request)
        if self._save is not None:
            self.wait_for_save()
        self._save_cache = cache
        keys = self._keys(req)
        first = req.num_loaded_tokens // self.chunk_tokens
        chunks = list(range(first, len(keys)))
        if chunks and not overwrite:
            stored = req._stored if len(req._stored) == len(keys) else \
                [False] * first + [e.hit for e in self.client.lookup(self.namespace, keys[first:]).entries]
            chunks = [c for c in chunks if not stored[c]]
        req.saved = []
        if not chunks:
            return 0
        stage = torch.empty((len(chunks), 2, self.layers, self.chunk_tokens, self.kv_heads, self.head_dim),
                            dtype=self.dtype, device=self.device)
        self._save = _Save(req, chunks, codec if codec is not None else self.save_codec, stage)
        return len(chunks)

    def save_kv_layer(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Copies ``layer``'s K/V of the chunks being saved aside (on the save stream on
        CUDA). ``key``/``value``: the layer's cache, [1, kv_heads, tokens, head_dim] covering
        at least the saved chunks (transformers' layout). A no-op without start_save."""
        st = self._save
        if st is None or layer in st.layers_done:
            return
        ct, H, D = self.chunk_tokens, self.kv_heads, self.head_dim
        if key.dim() != 4 or key.shape[0] != 1 or key.shape[1] != H or key.shape[3] != D or \
                key.shape[2] < (st.chunks[-1] + 1) * ct or value.shape != key.shape:
            raise InvalidArgument(3, f"save_kv_layer({layer}): key/value must be [1, {H}, >= "
                                     f"{(st.chunks[-1] + 1) * ct}, {D}]; got {list(key.shape)}")
        st.layers_done.add(layer)
        c0, nc = st.chunks[0], len(st.chunks)
        runs = [(0, c0, nc)] if st.chunks == list(range(c0, c0 + nc)) else [(j, c, 1) for j, c in enumerate(st.chunks)]

        def copy():
            for j, c, n in runs:
                for kv, src in ((0, key), (1, value)):
                    part = src[0, :, c * ct:(c + n) * ct].reshape(H, n, ct, D).permute(1, 2, 0, 3)
                    st.stage[j:j + n, kv, layer].copy_(part)

        if self.is_cuda:
            save = self._save_stream
            save.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(save):
                copy()
            key.record_stream(save)
            value.record_stream(save)
        else:
            copy()

    def save_kv(self, request, cache, codec: Optional[str] = None, *, overwrite: bool = False) -> list:
        """Stores the request's prompt chunks from a filled cache (all layers at once):
        start_save, save_kv_layer per layer, wait_for_save. Returns (key, EntryInfo) per chunk."""
        if self.start_save(request, codec, overwrite=overwrite) == 0:
            return []
        for layer in range(self.layers):
            self.save_kv_layer(layer, *_layer_kv(cache, layer))
        return self.wait_for_save()

    def wait_for_save(self) -> list:
        """Stores the chunks save_kv_layer collected (device-to-host, then one Put each with
        the save's codec). Returns (key, EntryInfo) per stored chunk."""
        st = self._save
        self._save_cache = None
        if st is None:
            return []
        self._save = None
        t0 = time.perf_counter()
        missing = set(range(self.layers)) - st.layers_done
        if missing:
            raise InvalidArgument(3, f"wait_for_save: layers {sorted(missing)} were never saved")
        if self.is_cuda:
            host = torch.empty(st.stage.shape, dtype=self.dtype, pin_memory=True)
            with torch.cuda.stream(self._save_stream):
                host.copy_(st.stage, non_blocking=True)
            st.stage.record_stream(self._save_stream)
            self._save_stream.synchronize()
        else:
            host = st.stage
        req, out = st.request, []
        keys = self._keys(req)
        for j, c in enumerate(st.chunks):
            info = self.client.put(self.namespace, keys[c], host[j], st.codec, shm=self.shm)
            req.saved.append((c, info))
            out.append((keys[c], info))
        req.save_ms = (time.perf_counter() - t0) * 1e3
        return out

    def _pre_hook(self, i):
        def hook(module, args):
            if self._loading is not None:
                self.wait_for_layer_load(i)
        return hook

    def _post_hook(self, i):
        def hook(module, args, output):
            if self._save is not None and self._save_cache is not None:
                self.save_kv_layer(i, *_layer_kv(self._save_cache, i))
        return hook

    # -- whole requests

    def forward(self, ids, cache, start: int, valid: Optional[torch.Tensor] = None, keep: int = 0):
        """One forward of the model over token ids ``ids`` at positions start.. with
        ``cache`` (passed as the model's cache argument, whatever its name in this
        transformers version); the logits [len(ids), vocab], or of the last ``keep``
        positions only when keep > 0. ``valid``: the request's mask of usable cached tokens
        (``request.valid``: a drop entry's dropped tokens are False), None = all."""
        n = len(ids)
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        pos = torch.arange(start, start + n, dtype=torch.long, device=self.device).unsqueeze(0)
        kw = {self._cache_kw: cache, "use_cache": True, "position_ids": pos}
        if valid is not None:
            mask = torch.ones(start + n, dtype=torch.long)
            mask[:valid.numel()] = valid.to(torch.long)
            kw["attention_mask"] = mask.unsqueeze(0).to(self.device)
        keep = min(int(keep), n) if keep > 0 else 0
        if keep and self._keep_kw:
            kw[self._keep_kw] = keep
        logits = self.model(input_ids=x, **kw).logits[0]
        return logits[-keep:] if keep else logits

    def _prefill(self, req: KVRequest, extra: Sequence, load: bool, save: bool, keep: int):
        """Lookup, load, forward of the rest of the prompt (+ ``extra`` forced tokens), saves
        collected. Returns (cache, logits of the forward's last ``keep`` positions, t0)."""
        t0 = time.perf_counter()
        if load:
            self.get_num_new_matched_tokens(req)
        else:
            req.num_matched_tokens = 0
            req._stored = []
            self._keys(req)
        cache = self.start_load_kv(req)
        while True:
            start = req.num_loaded_tokens
            if save:
                self.start_save(req, cache=cache)
            try:
                logits = self.forward(req.prompt_token_ids[start:] + list(extra), cache, start, req.valid, keep)
            finally:
                self._save_cache = None  # wait_for_save comes later; the layers are all copied
                self._finish_load()
            if req.num_loaded_tokens >= start:
                return cache, logits, t0
            # An entry failed its device check after the forward was enqueued: that forward
            # read wrong KV, so its logits, the cache past the real prefix and the chunks it
            # was saving are discarded, and it runs again from there.
            self._save = None
            _truncate_cache(cache, req.num_loaded_tokens)
            if req.valid is not None:
                req.valid = req.valid[:req.num_loaded_tokens] if req.num_loaded_tokens > 0 else None

    @torch.no_grad()
    def generate(self, prompt_ids, max_new_tokens: int = 32, *, load: bool = True, save: bool = True,
                 forced_tokens: Optional[Sequence] = None, return_logits: bool = False,
                 eos_token_id: Optional[int] = None, return_cache: bool = False,
                 prompt_logits: int = 0) -> GenerationResult:
        """Runs one request: lookup and load of the stored prefix (``load``), prefill of the
        rest, greedy decoding of ``max_new_tokens`` tokens (or feeding ``forced_tokens``
        instead of the argmax: teacher forcing), storing the prompt's new chunks after the
        first token (``save``, with the connector's save_codec). Stops early at
        ``eos_token_id`` when given. ``prompt_logits`` > 0: the result's prompt_logits hold
        the next-token logits of the prompt's last that many positions (at most the
        prefilled ones), copied to the host after the first token was timed."""
        req = self._request(prompt_ids)
        if not req.prompt_token_ids:
            raise InvalidArgument(3, "empty prompt")
        if forced_tokens is not None:
            forced_tokens = [int(t) for t in forced_tokens]
            max_new_tokens = len(forced_tokens)
        cache, logits, t0 = self._prefill(req, (), load, save, max(1, int(prompt_logits)))
        last = logits[-1]
        tok = int(forced_tokens[0]) if forced_tokens is not None else int(torch.argmax(last))
        if forced_tokens is not None and self.is_cuda:
            torch.cuda.current_stream(self.device).synchronize()
        ttft_ms = (time.perf_counter() - t0) * 1e3
        self.wait_for_save()
        prompt_out = logits[-int(prompt_logits):].float().cpu() if prompt_logits > 0 else None
        del logits
        kept = [last.float().cpu()] if return_logits else None
        tokens = [tok]
        t1 = time.perf_counter()
        pos = len(req.prompt_token_ids)
        valid = req.valid
        while len(tokens) < max_new_tokens and (eos_token_id is None or tokens[-1] != eos_token_id):
            step = self.forward([tokens[-1]], cache, pos, valid)[-1]
            pos += 1
            if return_logits:
                kept.append(step.float().cpu())
            tokens.append(int(forced_tokens[len(tokens)]) if forced_tokens is not None else int(torch.argmax(step)))
        decode_ms = (time.perf_counter() - t1) * 1e3
        res = self._result(req, tokens, ttft_ms, decode_ms, torch.stack(kept) if return_logits else None,
                           cache if return_cache else None)
        res.prompt_logits = prompt_out
        return res

    def _result(self, req: KVRequest, tokens, ttft_ms, decode_ms, logits, cache) -> GenerationResult:
        info = self.request_finished(req)
        return GenerationResult(
            tokens=tokens, prompt_tokens=len(req.prompt_token_ids), matched_tokens=req.num_matched_tokens,
            loaded_tokens=req.num_loaded_tokens, prefill_tokens=len(req.prompt_token_ids) - req.num_loaded_tokens,
            saved_chunks=info["saved_chunks"], prefix_load_ms=req.prefix_load_ms, ttft_ms=ttft_ms,
            save_ms=req.save_ms, decode_ms=decode_ms,
            used_gpu=bool(req.load_result is not None and req.load_result.used_gpu), logits=logits, cache=cache)

    @torch.no_grad()
    def score(self, prompt_ids, continuation: Sequence, *, load: bool = True, save: bool = False) -> GenerationResult:
        """Teacher forcing in one forward: the next-token logits (float32 [len(continuation),
        vocab], on the CPU) after the prompt and after each continuation token but the last,
        with the stored prefix loaded (``load``) or computed."""
        req = self._request(prompt_ids)
        cont = [int(t) for t in continuation]
        if not req.prompt_token_ids or not cont:
            raise InvalidArgument(3, "score needs a prompt and a continuation")
        cache, logits, t0 = self._prefill(req, cont[:-1], load, save, len(cont))
        out = logits.float().cpu()
        ttft_ms = (time.perf_counter() - t0) * 1e3
        self.wait_for_save()
        return self._result(req, cont, ttft_ms, 0.0, out, None)


def generate_with_cache(model, input_ids, max_new_tokens: int = 32, *, connector: Optional[HFKVConnector] = None,
                        **kwargs) -> GenerationResult:
    """One greedy request through a connector (made for the call from ``kwargs`` — client,
    target, namespace, save_codec, ... — when none is given): the stored prefix is loaded,
    the rest prefilled, the prompt's new chunks stored. Returns tokens and timings
    (prefix_load_ms, ttft_ms, ...)."""
    gen_keys = ("load", "save", "forced_tokens", "return_logits", "eos_token_id", "return_cache", "prompt_logits")
    gen = {k: kwargs.pop(k) for k in gen_keys if k in kwargs}
    if isinstance(input_ids, torch.Tensor):
        input_ids = input_ids.reshape(-1).tolist()
    if connector is not None:
        if kwargs:
            raise InvalidArgument(3, f"connector given: unexpected arguments {sorted(kwargs)}")
        return connector.generate(input_ids, max_new_tokens, **gen)
    with HFKVConnector(model, **kwargs) as c:
        return c.generate(input_ids, max_new_tokens, **gen)
