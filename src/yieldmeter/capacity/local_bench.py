"""Local benchmark: a model shape with random weights on this machine's accelerator.

Measures prefill and decode tokens/s at several batch sizes and sets each
decode figure beside its roofline bound: ``serving efficiency = measured
decode tokens/s / roofline decode tokens/s`` at the same batch, prompt and
output lengths. PyTorch is imported only when a benchmark runs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from yieldmeter.capacity.roofline import roofline
from yieldmeter.capacity.specs import GPUS, CapacityError, ModelShape, gpu_spec, precision

BENCH_PRECISIONS = ("bf16", "fp16", "fp32")
NO_TORCH = (
    "the local benchmark needs PyTorch, an optional extra: pip install 'yieldmeter[bench]' "
    "(or measure a running server with --endpoint URL)"
)


@dataclass(frozen=True)
class LocalResult:
    device: str
    gpu: str | None  # the spec the roofline used (None on a CPU)
    model_shape: str
    precision: str
    batch: int
    prompt_tokens: int
    output_tokens: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    decode_ms_per_step: float
    method: str
    roofline_prefill_tokens_per_s: float | None
    roofline_decode_tokens_per_s: float | None

    @property
    def serving_efficiency(self) -> float | None:
        r = self.roofline_decode_tokens_per_s
        return self.decode_tokens_per_s / r if r else None

    @property
    def prefill_efficiency(self) -> float | None:
        r = self.roofline_prefill_tokens_per_s
        return self.prefill_tokens_per_s / r if r else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["serving_efficiency"] = self.serving_efficiency
        d["prefill_efficiency"] = self.prefill_efficiency
        return d


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def gpu_from_device_name(name: str) -> str | None:
    """The spec name for a CUDA device name such as ``NVIDIA H100 80GB HBM3``; None when unknown."""
    n = name.upper()
    rules = [
        ("H200", "h200"),
        ("B200", "b200"),
        ("MI300X", "mi300x"),
        ("L40S", "l40s"),
        ("H100 NVL", "h100-nvl"),
        ("H100 PCIE", "h100-pcie"),
        ("H100", "h100"),
        ("A100-PCIE-40GB", "a100-40gb"),
        ("A100 40GB", "a100-40gb"),
        ("A100", "a100"),
        ("A10G", "a10"),
        ("A10", "a10"),
        ("L4", "l4"),
    ]
    for needle, spec in rules:
        if needle in n:
            return spec
    return None


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda" or "cpu"
    name: str
    gpu: str | None
    note: str = ""


def choose_device(shape: ModelShape, requested: str = "auto", gpu: str | None = None) -> DeviceChoice:
    """The device to run on. Without an accelerator only the tiny shape runs unless the CPU is asked for."""
    if not torch_available():
        raise CapacityError(NO_TORCH)
    import torch

    if requested not in ("auto", "cuda", "cpu"):
        raise CapacityError(f"unknown device {requested!r}; use auto, cuda or cpu")
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise CapacityError("no CUDA accelerator is visible to PyTorch (torch.cuda.is_available() is false)")
    if requested == "cpu" or not has_cuda:
        if requested == "auto" and shape.name != "tiny":
            raise CapacityError(
                f"no CUDA accelerator found, and {shape.name} is too large to measure meaningfully on a CPU. "
                "Run `--model-shape tiny` to exercise the benchmark on the CPU, pass --device cpu to insist, "
                "or measure a serving endpoint with --endpoint URL."
            )
        note = (
            "no accelerator: ran on the CPU. CPU figures check the benchmark itself; "
            "they are not a capacity figure for planning."
            if not has_cuda
            else "ran on the CPU as asked"
        )
        if gpu:
            gpu_spec(gpu)  # still reject a misspelt name
            note += f" --gpu {gpu} is ignored on the CPU (no roofline, so no serving efficiency)."
        return DeviceChoice("cpu", "cpu", None, note)
    name = torch.cuda.get_device_name(0)
    spec = gpu_spec(gpu).name if gpu else gpu_from_device_name(name)
    note = (
        "" if spec else f"no spec for {name!r} (known: {', '.join(sorted(GPUS))}); pass --gpu for efficiency"
    )
    return DeviceChoice("cuda", name, spec, note)


def run_local_bench(
    shape: ModelShape,
    *,
    batches: Sequence[int] = (1, 16, 64, 256),
    prompt_tokens: int = 512,
    output_tokens: int = 256,
    precision_name: str | None = None,
    device: str = "auto",
    gpu: str | None = None,
    cuda_graphs: bool = True,
    repeats: int = 2,
    memory_utilization: float = 0.9,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[DeviceChoice, list[LocalResult]]:
    """Measure every batch size; a batch whose cache does not fit is refused before anything is allocated."""
    choice = choose_device(shape, device, gpu)
    import torch

    from yieldmeter.capacity.torch_decoder import measure

    prec_name = precision_name or ("bf16" if choice.device == "cuda" else "fp32")
    if prec_name not in BENCH_PRECISIONS:
        raise CapacityError(
            f"the local benchmark runs {', '.join(BENCH_PRECISIONS)}; for {prec_name} (quantised kernels) "
            "measure a serving engine with --endpoint URL"
        )
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[prec_name]
    if prompt_tokens < 1 or output_tokens < 1 or not batches or min(batches) < 1:
        raise CapacityError("batch sizes, prompt tokens and output tokens must each be at least 1")
    if choice.note:
        log(choice.note)
    results: list[LocalResult] = []
    for batch in batches:
        bound = None
        if choice.gpu and prec_name in ("bf16", "fp16"):
            bound = roofline(
                shape,
                gpu_spec(choice.gpu),
                precision(prec_name),
                batch=batch,
                prompt_tokens=prompt_tokens,
                output_tokens=output_tokens,
                memory_utilization=memory_utilization,
            )
            if choice.device == "cuda" and not bound.memory.fits:
                gb = 1e9
                log(
                    f"batch {batch}: skipped, needs {bound.memory.needed_bytes / gb:.1f} GB of "
                    f"{bound.memory.usable_bytes / gb:.1f} GB usable "
                    f"(short by {bound.memory.shortfall_bytes / gb:.1f} GB)"
                )
                continue
        log(f"batch {batch}: prefill {prompt_tokens} tokens, decode {output_tokens} tokens on {choice.name}")
        try:
            timing = measure(
                shape,
                batch=batch,
                prompt_tokens=prompt_tokens,
                output_tokens=output_tokens,
                device=torch.device(choice.device),
                dtype=dtype,
                cuda_graphs=cuda_graphs,
                repeats=repeats,
                log=log,
            )
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            log(f"batch {batch}: out of accelerator memory; skipped")
            continue
        results.append(
            LocalResult(
                device=choice.name,
                gpu=choice.gpu,
                model_shape=shape.name,
                precision=prec_name,
                batch=batch,
                prompt_tokens=prompt_tokens,
                output_tokens=output_tokens,
                prefill_tokens_per_s=batch * prompt_tokens / timing.prefill_s,
                decode_tokens_per_s=batch * output_tokens / timing.decode_s,
                decode_ms_per_step=timing.decode_s / output_tokens * 1e3,
                method=timing.method,
                roofline_prefill_tokens_per_s=bound.prefill_tokens_per_s if bound else None,
                roofline_decode_tokens_per_s=bound.decode_tokens_per_s if bound else None,
            )
        )
    if not results:
        raise CapacityError("no batch size could be measured (see the messages above)")
    return choice, results
