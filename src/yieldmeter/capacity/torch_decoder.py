"""A Llama-style decoder in plain PyTorch with random weights and a static KV cache.

Imported only when a local benchmark runs (PyTorch is the optional
``yieldmeter[bench]`` extra). Throughput does not depend on the values of the
weights, so nothing is downloaded: the tensors have the shape's sizes and are
filled with scaled Gaussian noise.

The decode step has static shapes: the KV cache is preallocated for the whole
sequence, the position is a device tensor, and the next token is written
back into the input buffer by ``argmax``. That lets a whole step be captured
once as a CUDA graph and replayed without the CPU in the loop, which is what
serving engines do to reach the memory-bandwidth bound at small batches.
Attention in a decode step reads only the cache up to a *bucket* (the context
rounded up to :data:`BUCKET` tokens); one graph is captured per bucket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from yieldmeter.capacity.specs import ModelShape

BUCKET = 128
PREFILL_TOKENS_PER_PASS = 32768
SMALL_SHAPE_PARAMS = 50_000_000


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding on the last dim of ``x`` [B, T, heads, hd]; cos/sin [T, hd/2] in x's dtype.

    Computed in the model's dtype: a decode step is a chain of small kernels, and every
    cast would be one more launch (the figures do not depend on the values).
    """
    x1, x2 = x.chunk(2, dim=-1)
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


@dataclass
class _Layer:
    attn_norm: torch.Tensor
    wqkv: torch.Tensor  # [(H + 2 Hkv) hd, d], q, k and v fused as serving engines do
    wo: torch.Tensor  # [d, H hd]
    mlp_norm: torch.Tensor
    w_gate_up: torch.Tensor  # [2 I, d]
    w_down: torch.Tensor  # [d, I]
    k_cache: torch.Tensor  # [B, Hkv, max_len, hd]
    v_cache: torch.Tensor


class Decoder:
    """Random-weight decoder for ``batch`` sequences of up to ``max_len`` tokens."""

    def __init__(
        self,
        shape: ModelShape,
        *,
        batch: int,
        max_len: int,
        device: torch.device,
        dtype: torch.dtype,
        seed: int = 0,
    ) -> None:
        self.shape, self.batch, self.max_len, self.device, self.dtype = shape, batch, max_len, device, dtype
        torch.manual_seed(seed)
        s = shape
        hd, h, hkv = s.head_dim, s.heads, s.kv_heads

        def w(out_f: int, in_f: int) -> torch.Tensor:
            t = torch.empty(out_f, in_f, device=device, dtype=dtype)
            return t.normal_(0.0, 1.0 / math.sqrt(in_f))

        def ones(n: int) -> torch.Tensor:
            return torch.ones(n, device=device, dtype=dtype)

        self.embed = w(s.vocab, s.hidden)
        self.lm_head = self.embed if s.tied_embeddings else w(s.vocab, s.hidden)
        self.final_norm = ones(s.hidden)
        cache_shape = (batch, hkv, max_len, hd)
        self.layers = [
            _Layer(
                attn_norm=ones(s.hidden),
                wqkv=w((h + 2 * hkv) * hd, s.hidden),
                wo=w(s.hidden, h * hd),
                mlp_norm=ones(s.hidden),
                w_gate_up=w(2 * s.intermediate, s.hidden),
                w_down=w(s.hidden, s.intermediate),
                k_cache=torch.zeros(cache_shape, device=device, dtype=dtype),
                v_cache=torch.zeros(cache_shape, device=device, dtype=dtype),
            )
            for _ in range(s.layers)
        ]
        inv = 1.0 / (500000.0 ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd))
        angles = torch.outer(torch.arange(max_len, device=device, dtype=torch.float32), inv)
        self.cos, self.sin = angles.cos().to(dtype), angles.sin().to(dtype)
        self.key_positions = torch.arange(max_len, device=device)
        # Static buffers of the decode step.
        self.tokens = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)

    # -- one transformer pass -------------------------------------------------
    def _mlp(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(_rms_norm(x, layer.mlp_norm), layer.w_gate_up).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, layer.w_down)

    def _qkv(
        self, layer: _Layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        s = self.shape
        b, t, _ = x.shape
        qkv = F.linear(_rms_norm(x, layer.attn_norm), layer.wqkv)
        qk, v = qkv.split([(s.heads + s.kv_heads) * s.head_dim, s.kv_heads * s.head_dim], dim=-1)
        # One rotary pass over the query and key heads together.
        qk = _rope(qk.reshape(b, t, s.heads + s.kv_heads, s.head_dim), cos, sin)
        return qk[:, :, : s.heads], qk[:, :, s.heads :], v.reshape(b, t, s.kv_heads, s.head_dim)

    def prefill(self, tokens: torch.Tensor, first_row: int = 0) -> torch.Tensor:
        """Prompts ``tokens`` [B, P] from position 0 into cache rows ``first_row``...; returns next tokens."""
        s = self.shape
        b, p = tokens.shape
        groups = s.heads // s.kv_heads
        cos, sin = self.cos[:p], self.sin[:p]
        x = F.embedding(tokens, self.embed)
        for layer in self.layers:
            q, k, v = self._qkv(layer, x, cos, sin)
            rows = slice(first_row, first_row + b)
            layer.k_cache[rows, :, :p] = k.transpose(1, 2)
            layer.v_cache[rows, :, :p] = v.transpose(1, 2)
            kk = k.transpose(1, 2).repeat_interleave(groups, dim=1)
            vv = v.transpose(1, 2).repeat_interleave(groups, dim=1)
            a = F.scaled_dot_product_attention(q.transpose(1, 2), kk, vv, is_causal=True)
            x = x + F.linear(a.transpose(1, 2).reshape(b, p, -1), layer.wo)
            x = self._mlp(layer, x)
        # Logits for the last position only, as serving engines compute them.
        logits = F.linear(_rms_norm(x[:, -1], self.final_norm), self.lm_head)
        return logits.argmax(dim=-1)

    def decode_step(self, context: int) -> None:
        """One token for every sequence at position ``self.pos``; attention reads ``context`` cached tokens.

        Reads ``self.tokens`` and writes the next tokens back into it; advances ``self.pos``.
        """
        s = self.shape
        b = self.batch
        groups = s.heads // s.kv_heads
        cos = self.cos.index_select(0, self.pos)
        sin = self.sin.index_select(0, self.pos)
        mask = (self.key_positions[:context] <= self.pos).view(1, 1, 1, context)
        x = F.embedding(self.tokens, self.embed)
        for layer in self.layers:
            q, k, v = self._qkv(layer, x, cos, sin)
            layer.k_cache.index_copy_(2, self.pos, k.transpose(1, 2))
            layer.v_cache.index_copy_(2, self.pos, v.transpose(1, 2))
            # Fold the query heads that share a KV head into the query-length axis: one read of each KV head.
            qg = q.reshape(b, s.kv_heads, groups, s.head_dim)
            a = F.scaled_dot_product_attention(
                qg, layer.k_cache[:, :, :context], layer.v_cache[:, :, :context], attn_mask=mask
            )
            x = x + F.linear(a.reshape(b, 1, -1), layer.wo)
            x = self._mlp(layer, x)
        logits = F.linear(_rms_norm(x[:, -1], self.final_norm), self.lm_head)
        self.tokens.copy_(logits.argmax(dim=-1, keepdim=True))
        self.pos.add_(1)


@dataclass(frozen=True)
class Timing:
    prefill_s: float
    decode_s: float
    method: str


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bucket(context: int, max_len: int) -> int:
    return min(max_len, ((context + BUCKET - 1) // BUCKET) * BUCKET)


def measure(
    shape: ModelShape,
    *,
    batch: int,
    prompt_tokens: int,
    output_tokens: int,
    device: torch.device,
    dtype: torch.dtype,
    cuda_graphs: bool = True,
    repeats: int = 2,
    log: Callable[[str], None] = lambda _m: None,
) -> Timing:
    """Best-of-``repeats`` wall time of the prefill of ``batch`` prompts and of ``output_tokens`` steps."""
    max_len = prompt_tokens + output_tokens + 1
    threads = torch.get_num_threads()
    if device.type == "cpu" and shape.total_params < SMALL_SHAPE_PARAMS:
        # A toy shape's ops are too small to split across threads; threads contending for shared
        # cores only add noise to the figure.
        torch.set_num_threads(1)
    try:
        return _measure(
            shape, batch, prompt_tokens, output_tokens, device, dtype, cuda_graphs, repeats, log, max_len
        )
    finally:
        torch.set_num_threads(threads)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the model and its graphs are gone; give their memory back


def _measure(
    shape: ModelShape,
    batch: int,
    prompt_tokens: int,
    output_tokens: int,
    device: torch.device,
    dtype: torch.dtype,
    cuda_graphs: bool,
    repeats: int,
    log: Callable[[str], None],
    max_len: int,
) -> Timing:
    with torch.inference_mode():
        model = Decoder(shape, batch=batch, max_len=max_len, device=device, dtype=dtype)
        gen = torch.Generator(device="cpu").manual_seed(1)
        prompts = torch.randint(0, shape.vocab, (batch, prompt_tokens), generator=gen).to(device)
        per_pass = max(1, PREFILL_TOKENS_PER_PASS // prompt_tokens)

        def prefill() -> torch.Tensor:
            firsts = [model.prefill(prompts[i : i + per_pass], i) for i in range(0, batch, per_pass)]
            return torch.cat(firsts)

        use_graphs = cuda_graphs and device.type == "cuda"
        buckets = sorted({_bucket(prompt_tokens + i + 1, max_len) for i in range(output_tokens)})
        graphs: dict[int, torch.cuda.CUDAGraph] = {}

        def reset() -> None:
            model.tokens.copy_(prefill().view(batch, 1))
            model.pos.fill_(prompt_tokens)

        # Warm up every code path (kernels selected, allocator grown) before timing or capture.
        reset()
        if use_graphs:
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                for bucket in buckets:
                    model.decode_step(bucket)
            torch.cuda.current_stream(device).wait_stream(stream)
            pool = None
            try:
                for bucket in buckets:
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g, pool=pool):
                        model.decode_step(bucket)
                    pool = g.pool()
                    graphs[bucket] = g
                log(f"captured {len(graphs)} CUDA graphs (context buckets of {BUCKET})")
            except RuntimeError as exc:
                # Say so and measure eager decode rather than no figure; the result records the method.
                graphs.clear()
                use_graphs = False
                torch.cuda.synchronize(device)
                log(f"CUDA graph capture failed ({str(exc).splitlines()[0]}); measuring eager decode")
        if not use_graphs:
            model.decode_step(buckets[0])
        _sync(device)

        best_prefill = best_decode = math.inf
        for _ in range(max(1, repeats)):
            _sync(device)
            t0 = time.perf_counter()
            first = prefill()
            _sync(device)
            best_prefill = min(best_prefill, time.perf_counter() - t0)
            model.tokens.copy_(first.view(batch, 1))
            model.pos.fill_(prompt_tokens)
            _sync(device)
            t0 = time.perf_counter()
            for i in range(output_tokens):
                bucket = _bucket(prompt_tokens + i + 1, max_len)
                if use_graphs:
                    graphs[bucket].replay()
                else:
                    model.decode_step(bucket)
            _sync(device)
            best_decode = min(best_decode, time.perf_counter() - t0)
    return Timing(best_prefill, best_decode, "CUDA graphs" if use_graphs else "eager")
