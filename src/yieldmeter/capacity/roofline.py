"""The roofline: what a model shape can at most do on a GPU, and whether it fits.

Formulas (``g`` GPUs in one tensor-parallel replica, ideal scaling; ``wb`` and
``kvb`` the bytes per weight and per cached value of the precision):

* weights read per forward pass ``W = (body + head) x wb``. The input
  embedding is a lookup of a few rows, so its table is not read in full.
* KV cache per token ``kv = 2 x layers x kv_heads x head_dim x kvb``.
* **decode** (one new token for each of ``B`` sequences): the average
  context while generating ``O`` tokens after a prompt of ``P`` is
  ``c = P + O/2``.
  ``bytes = W + B x c x kv``;
  ``flops = B x (2 x (body + head) + 4 x layers x heads x head_dim x c)``;
  ``step = max(bytes / (g x bandwidth), flops / (g x peak))``;
  ``decode tokens/s = B / step``.
* **prefill** (``B`` prompts of ``P`` tokens in one pass): causal attention
  averages ``P/2`` keys per query, so per token
  ``flops = 2 x body + 2 x layers x heads x head_dim x P`` plus the output head
  for the last token only (``2 x vocab x hidden / P``);
  ``time = max(B x P x flops / (g x peak), (W + B x P x kv) / (g x bandwidth))``;
  ``prefill tokens/s = B x P / time``.
* **memory**: ``total params x wb + B x (P + O) x kv`` must fit in
  ``g x memory x memory_utilization`` (0.9 by default, like vLLM's
  ``gpu_memory_utilization``; the rest holds activations and the runtime).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yieldmeter.capacity.specs import (
    GB,
    CapacityError,
    GPUSpec,
    ModelShape,
    Precision,
    compute_flops,
)

DEFAULT_MEMORY_UTILIZATION = 0.9


@dataclass(frozen=True)
class MemoryCheck:
    """Weights plus KV cache against the usable memory of the replica."""

    weights_bytes: float
    kv_cache_bytes: float
    usable_bytes: float
    memory_bytes: float
    max_batch: int  # the largest batch whose KV cache fits beside the weights (0: weights alone do not fit)

    @property
    def needed_bytes(self) -> float:
        return self.weights_bytes + self.kv_cache_bytes

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.usable_bytes

    @property
    def shortfall_bytes(self) -> float:
        return max(0.0, self.needed_bytes - self.usable_bytes)


@dataclass(frozen=True)
class Roofline:
    """Analytic bounds for one shape, precision, GPU (x ``gpus``) and workload."""

    gpu: GPUSpec
    shape: ModelShape
    precision: Precision
    gpus: int
    batch: int
    prompt_tokens: int
    output_tokens: int
    peak_flops: float  # per GPU, dense, for the precision's compute
    weight_bytes_read: float
    kv_bytes_per_token: float
    decode_context: float
    decode_bytes_per_step: float
    decode_flops_per_step: float
    decode_step_s: float
    decode_bound: str  # "memory bandwidth" or "compute"
    prefill_flops_per_token: float
    prefill_s: float
    prefill_bound: str
    memory: MemoryCheck

    @property
    def decode_tokens_per_s(self) -> float:
        """Output tokens/s over the whole batch."""
        return self.batch / self.decode_step_s

    @property
    def decode_tokens_per_s_per_sequence(self) -> float:
        return 1.0 / self.decode_step_s

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.batch * self.prompt_tokens / self.prefill_s

    def summary(self) -> list[dict[str, Any]]:
        """Rows (quantity, value, unit, note) a person reads."""
        m = self.memory
        return [
            {
                "quantity": "gpu",
                "value": f"{self.gpus} x {self.gpu.description}",
                "unit": "",
                "note": self.gpu.source,
            },
            {
                "quantity": "model shape",
                "value": self.shape.name,
                "unit": "",
                "note": f"{self.shape.total_params / 1e9:.2f} B parameters",
            },
            {
                "quantity": "precision",
                "value": self.precision.name,
                "unit": "",
                "note": f"{self.precision.weight_bytes:g} B/weight, {self.precision.kv_bytes:g} B/KV value, "
                f"{self.precision.compute} math",
            },
            {
                "quantity": "peak compute",
                "value": round(self.peak_flops * self.gpus / 1e12, 1),
                "unit": "TFLOP/s",
                "note": "dense",
            },
            {
                "quantity": "memory bandwidth",
                "value": round(self.gpu.memory_bandwidth * self.gpus / GB, 0),
                "unit": "GB/s",
                "note": "",
            },
            {
                "quantity": "prefill bound",
                "value": round(self.prefill_tokens_per_s, 1),
                "unit": "tokens/s",
                "note": f"{self.prefill_bound} bound, batch {self.batch} x {self.prompt_tokens} prompt",
            },
            {
                "quantity": "decode bound",
                "value": round(self.decode_tokens_per_s, 1),
                "unit": "tokens/s",
                "note": f"{self.decode_bound} bound, batch {self.batch}, context {self.decode_context:g}",
            },
            {
                "quantity": "decode bound per sequence",
                "value": round(self.decode_tokens_per_s_per_sequence, 1),
                "unit": "tokens/s",
                "note": f"{self.decode_step_s * 1e3:.2f} ms per step",
            },
            {"quantity": "weights", "value": round(m.weights_bytes / GB, 2), "unit": "GB", "note": ""},
            {
                "quantity": "KV cache",
                "value": round(m.kv_cache_bytes / GB, 2),
                "unit": "GB",
                "note": f"{self.kv_bytes_per_token / 1024:g} KiB/token x {self.batch} x "
                f"{self.prompt_tokens + self.output_tokens} tokens",
            },
            {
                "quantity": "memory",
                "value": "fits" if m.fits else "does not fit",
                "unit": "",
                "note": f"{m.needed_bytes / GB:.1f} of {m.usable_bytes / GB:.1f} GB usable"
                + ("" if m.fits else f"; short by {m.shortfall_bytes / GB:.1f} GB")
                + f"; largest batch that fits: {m.max_batch}",
            },
        ]


def memory_check(
    shape: ModelShape,
    prec: Precision,
    gpu: GPUSpec,
    *,
    batch: int,
    context_tokens: int,
    gpus: int = 1,
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
) -> MemoryCheck:
    """Weights + KV cache for ``batch`` sequences of ``context_tokens`` against usable memory."""
    weights = shape.total_params * prec.weight_bytes
    kv_per_token = shape.kv_values_per_token() * prec.kv_bytes
    usable = gpu.memory_bytes * gpus * memory_utilization
    per_sequence = context_tokens * kv_per_token
    room = usable - weights
    max_batch = int(room // per_sequence) if room > 0 and per_sequence > 0 else 0
    return MemoryCheck(
        weights_bytes=weights,
        kv_cache_bytes=batch * per_sequence,
        usable_bytes=usable,
        memory_bytes=gpu.memory_bytes * gpus,
        max_batch=max_batch,
    )


def roofline(
    shape: ModelShape,
    gpu: GPUSpec,
    prec: Precision,
    *,
    batch: int = 1,
    prompt_tokens: int = 512,
    output_tokens: int = 256,
    gpus: int = 1,
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
) -> Roofline:
    """The prefill and decode bounds and the memory check (formulas in the module docstring)."""
    if batch < 1 or prompt_tokens < 1 or output_tokens < 1 or gpus < 1:
        raise CapacityError("batch, prompt tokens, output tokens and GPUs must each be at least 1")
    if not 0 < memory_utilization <= 1:
        raise CapacityError("memory utilisation must be in (0, 1]")
    peak = compute_flops(gpu, prec)
    bandwidth = gpu.memory_bandwidth * gpus
    flops_rate = peak * gpus
    s = shape
    attn_width = s.heads * s.head_dim

    weight_bytes_read = (s.body_params + s.head_params) * prec.weight_bytes
    kv_per_token = s.kv_values_per_token() * prec.kv_bytes

    context = prompt_tokens + output_tokens / 2
    decode_bytes = weight_bytes_read + batch * context * kv_per_token
    decode_flops = batch * (2 * (s.body_params + s.head_params) + 4 * s.layers * attn_width * context)
    t_mem, t_compute = decode_bytes / bandwidth, decode_flops / flops_rate
    decode_step = max(t_mem, t_compute)

    prefill_per_token = (
        2 * s.body_params + 2 * s.layers * attn_width * prompt_tokens + 2 * s.vocab * s.hidden / prompt_tokens
    )
    p_compute = batch * prompt_tokens * prefill_per_token / flops_rate
    p_mem = (weight_bytes_read + batch * prompt_tokens * kv_per_token) / bandwidth
    return Roofline(
        gpu=gpu,
        shape=s,
        precision=prec,
        gpus=gpus,
        batch=batch,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        peak_flops=peak,
        weight_bytes_read=weight_bytes_read,
        kv_bytes_per_token=kv_per_token,
        decode_context=context,
        decode_bytes_per_step=decode_bytes,
        decode_flops_per_step=decode_flops,
        decode_step_s=decode_step,
        decode_bound="memory bandwidth" if t_mem >= t_compute else "compute",
        prefill_flops_per_token=prefill_per_token,
        prefill_s=max(p_compute, p_mem),
        prefill_bound="compute" if p_compute >= p_mem else "memory bandwidth",
        memory=memory_check(
            s,
            prec,
            gpu,
            batch=batch,
            context_tokens=prompt_tokens + output_tokens,
            gpus=gpus,
            memory_utilization=memory_utilization,
        ),
    )


def require_fit(r: Roofline) -> None:
    """Raise a :class:`CapacityError` that says by how much a shape does not fit."""
    m = r.memory
    if m.fits:
        return
    hints = []
    if m.weights_bytes > m.usable_bytes:
        hints.append("a lower precision (fp8, int4) or more GPUs (--gpus)")
    else:
        hints.append(f"a batch of at most {m.max_batch}, shorter sequences, or more GPUs (--gpus)")
    tokens = r.prompt_tokens + r.output_tokens
    what = f"{r.shape.name} in {r.precision.name} at batch {r.batch} x {tokens} tokens"
    need = (
        f"{m.weights_bytes / GB:.1f} GB of weights + {m.kv_cache_bytes / GB:.1f} GB of KV cache"
        f" = {m.needed_bytes / GB:.1f} GB"
    )
    have = (
        f"{r.gpus} x {r.gpu.name} has {m.usable_bytes / GB:.1f} GB usable"
        f" ({m.memory_bytes / GB:.0f} GB x memory utilisation)"
    )
    raise CapacityError(
        f"{what} needs {need}, but {have}: short by {m.shortfall_bytes / GB:.1f} GB. Try {hints[0]}."
    )
