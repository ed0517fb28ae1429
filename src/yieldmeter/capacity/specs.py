"""Accelerator specs, model shapes and numeric precisions: the inputs of the roofline.

The figures are vendor datasheet numbers for *dense* tensor math (the
datasheets headline the 2:4 structured-sparsity figure, twice the dense one;
serving does not use sparsity, so we halve it). Each entry names its source.
A spec is a ceiling, not a forecast: real serving reaches a fraction of it,
which is what the benchmark measures as *serving efficiency*.

Model shapes are the handful of numbers that decide parameter count, FLOPs
and KV-cache size of a Llama-style decoder (gated MLP, grouped-query
attention). More shapes load from JSON with the same keys as
:class:`ModelShape`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from yieldmeter.errors import InputError, read_text_file

TERA = 1e12
GB = 1e9  # decimal gigabytes, as the datasheets count memory and bandwidth


class CapacityError(InputError):
    """Input the capacity tools cannot use; the message says what and what to do."""


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator: dense peak FLOP/s per precision, memory, bandwidth, power."""

    name: str
    description: str
    #: Dense tensor-core peak in FLOP/s (or OP/s for int8) by compute precision.
    peak_flops: dict[str, float]
    memory_bytes: float
    memory_bandwidth: float  # bytes/s
    board_power_w: float  # typical maximum board power (TDP/TGP)
    source: str

    def flops(self, compute: str) -> float | None:
        return self.peak_flops.get(compute)


def _gpu(
    name: str,
    description: str,
    *,
    bf16_tflops: float,
    fp8_tflops: float | None,
    int8_tops: float | None,
    memory_gb: float,
    bandwidth_gbs: float,
    power_w: float,
    source: str,
) -> GPUSpec:
    peak = {"bf16": bf16_tflops * TERA, "fp16": bf16_tflops * TERA}
    if fp8_tflops is not None:
        peak["fp8"] = fp8_tflops * TERA
    if int8_tops is not None:
        peak["int8"] = int8_tops * TERA
    return GPUSpec(
        name=name,
        description=description,
        peak_flops=peak,
        memory_bytes=memory_gb * GB,
        memory_bandwidth=bandwidth_gbs * GB,
        board_power_w=power_w,
        source=source,
    )


# Dense figures = datasheet "with sparsity" figures / 2. Bandwidth and memory as printed.
GPUS: dict[str, GPUSpec] = {
    g.name: g
    for g in (
        # NVIDIA H100 Tensor Core GPU datasheet (2023), SXM column: BF16 1,979 TFLOPS*,
        # FP8 3,958 TFLOPS*, INT8 3,958 TOPS* (*with sparsity); 80 GB HBM3, 3.35 TB/s; up to 700 W.
        _gpu(
            "h100",
            "NVIDIA H100 SXM5 80 GB",
            bf16_tflops=989.5,
            fp8_tflops=1979.0,
            int8_tops=1979.0,
            memory_gb=80,
            bandwidth_gbs=3350,
            power_w=700,
            source="NVIDIA H100 datasheet, SXM column",
        ),
        # Same datasheet, PCIe column: BF16 1,513*, FP8 3,026*; 80 GB HBM2e, 2.0 TB/s; 300-350 W.
        _gpu(
            "h100-pcie",
            "NVIDIA H100 PCIe 80 GB",
            bf16_tflops=756.5,
            fp8_tflops=1513.0,
            int8_tops=1513.0,
            memory_gb=80,
            bandwidth_gbs=2000,
            power_w=350,
            source="NVIDIA H100 datasheet, PCIe column",
        ),
        # Same datasheet, H100 NVL column (per GPU): BF16 1,671*, FP8 3,341*; 94 GB, 3.9 TB/s; 350-400 W.
        _gpu(
            "h100-nvl",
            "NVIDIA H100 NVL 94 GB",
            bf16_tflops=835.5,
            fp8_tflops=1670.5,
            int8_tops=1670.5,
            memory_gb=94,
            bandwidth_gbs=3900,
            power_w=400,
            source="NVIDIA H100 datasheet, NVL column",
        ),
        # NVIDIA H200 Tensor Core GPU datasheet (2024), SXM: same tensor cores as H100 SXM;
        # 141 GB HBM3e, 4.8 TB/s; up to 700 W.
        _gpu(
            "h200",
            "NVIDIA H200 SXM 141 GB",
            bf16_tflops=989.5,
            fp8_tflops=1979.0,
            int8_tops=1979.0,
            memory_gb=141,
            bandwidth_gbs=4800,
            power_w=700,
            source="NVIDIA H200 datasheet, SXM column",
        ),
        # NVIDIA HGX B200 spec (8 GPUs): FP8 72 PFLOPS*, BF16 36 PFLOPS*, 1.4 TB HBM3e,
        # 64 TB/s aggregate; per GPU /8; about 1,000 W per GPU.
        _gpu(
            "b200",
            "NVIDIA B200 (HGX) 180 GB",
            bf16_tflops=2250.0,
            fp8_tflops=4500.0,
            int8_tops=4500.0,
            memory_gb=180,
            bandwidth_gbs=8000,
            power_w=1000,
            source="NVIDIA HGX B200 specifications, per GPU = system / 8",
        ),
        # NVIDIA A100 datasheet (2021), 80 GB SXM: BF16 312 TFLOPS (dense), INT8 624 TOPS (dense);
        # no FP8; HBM2e 2,039 GB/s; 400 W.
        _gpu(
            "a100",
            "NVIDIA A100 SXM4 80 GB",
            bf16_tflops=312.0,
            fp8_tflops=None,
            int8_tops=624.0,
            memory_gb=80,
            bandwidth_gbs=2039,
            power_w=400,
            source="NVIDIA A100 datasheet, 80GB SXM column",
        ),
        # Same datasheet, 40 GB PCIe: 1,555 GB/s; 250 W.
        _gpu(
            "a100-40gb",
            "NVIDIA A100 PCIe 40 GB",
            bf16_tflops=312.0,
            fp8_tflops=None,
            int8_tops=624.0,
            memory_gb=40,
            bandwidth_gbs=1555,
            power_w=250,
            source="NVIDIA A100 datasheet, 40GB PCIe column",
        ),
        # NVIDIA L40S datasheet: BF16 362.05 | 733* TFLOPS (it prints the dense figure too),
        # FP8 733 | 1,466*, INT8 733 | 1,466* TOPS; 48 GB GDDR6, 864 GB/s; 350 W.
        _gpu(
            "l40s",
            "NVIDIA L40S 48 GB",
            bf16_tflops=362.05,
            fp8_tflops=733.0,
            int8_tops=733.0,
            memory_gb=48,
            bandwidth_gbs=864,
            power_w=350,
            source="NVIDIA L40S datasheet",
        ),
        # NVIDIA L4 datasheet: BF16 242 TFLOPS*, FP8 485 TFLOPS*, INT8 485 TOPS*; 24 GB GDDR6, 300 GB/s; 72 W.
        _gpu(
            "l4",
            "NVIDIA L4 24 GB",
            bf16_tflops=121.0,
            fp8_tflops=242.5,
            int8_tops=242.5,
            memory_gb=24,
            bandwidth_gbs=300,
            power_w=72,
            source="NVIDIA L4 datasheet",
        ),
        # NVIDIA A10 datasheet: BF16 250 TFLOPS*, INT8 500 TOPS*; no FP8; 24 GB GDDR6, 600 GB/s; 150 W.
        _gpu(
            "a10",
            "NVIDIA A10 / A10G 24 GB",
            bf16_tflops=125.0,
            fp8_tflops=None,
            int8_tops=250.0,
            memory_gb=24,
            bandwidth_gbs=600,
            power_w=150,
            source="NVIDIA A10 datasheet",
        ),
        # AMD Instinct MI300X data sheet: FP16/BF16 1,307.4 TFLOPS, FP8 2,614.9 TFLOPS, INT8 2,614.9 TOPS
        # (dense); 192 GB HBM3, 5.3 TB/s; 750 W.
        _gpu(
            "mi300x",
            "AMD Instinct MI300X 192 GB",
            bf16_tflops=1307.4,
            fp8_tflops=2614.9,
            int8_tops=2614.9,
            memory_gb=192,
            bandwidth_gbs=5300,
            power_w=750,
            source="AMD Instinct MI300X data sheet",
        ),
    )
}


@dataclass(frozen=True)
class Precision:
    """How a precision stores weights and KV cache, and which tensor cores it computes on.

    ``int4`` is weight-only quantisation (W4A16, as AWQ/GPTQ/Marlin kernels
    serve it): weights take half a byte plus one 16-bit scale per group of
    128, activations and the KV cache stay 16-bit, math runs on BF16 cores.
    ``fp8`` is W8A8 on FP8 tensor cores with a 16-bit KV cache (the serving
    engines' default).
    """

    name: str
    weight_bytes: float
    kv_bytes: float
    compute: str


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("bf16", 2.0, 2.0, "bf16"),
        Precision("fp16", 2.0, 2.0, "fp16"),
        Precision("fp8", 1.0, 2.0, "fp8"),
        Precision("int8", 1.0, 2.0, "int8"),
        Precision("int4", 0.5 + 2.0 / 128, 2.0, "bf16"),
    )
}


@dataclass(frozen=True)
class ModelShape:
    """A Llama-style decoder: gated (SwiGLU) MLP, grouped-query attention, RMSNorm."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    head_dim: int = 0  # 0 means hidden // heads
    tied_embeddings: bool = False
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        for f in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab", "head_dim"):
            if getattr(self, f) <= 0:
                raise CapacityError(f"model shape {self.name!r}: {f} must be a positive integer")
        if self.heads % self.kv_heads:
            raise CapacityError(
                f"model shape {self.name!r}: heads ({self.heads}) must be a multiple of "
                f"kv_heads ({self.kv_heads})"
            )

    # Parameter counts. Norm weights (2 x hidden per layer) are left out: < 0.01%.
    @property
    def attention_params_per_layer(self) -> int:
        q_and_o = 2 * self.hidden * self.heads * self.head_dim
        k_and_v = 2 * self.hidden * self.kv_heads * self.head_dim
        return q_and_o + k_and_v

    @property
    def mlp_params_per_layer(self) -> int:
        return 3 * self.hidden * self.intermediate  # gate, up, down

    @property
    def body_params(self) -> int:
        """Parameters of the transformer layers (no embedding, no output head)."""
        return self.layers * (self.attention_params_per_layer + self.mlp_params_per_layer)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        """The output projection to the vocabulary (shared with the embedding when tied)."""
        return self.vocab * self.hidden

    @property
    def total_params(self) -> int:
        return self.body_params + self.embedding_params + (0 if self.tied_embeddings else self.head_params)

    def kv_values_per_token(self) -> int:
        """K and V values cached per token over all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


SHAPES: dict[str, ModelShape] = {
    s.name: s
    for s in (
        # meta-llama/Meta-Llama-3-8B config.json (also Llama 3.1 8B).
        ModelShape(
            "llama-3-8b",
            layers=32,
            hidden=4096,
            heads=32,
            kv_heads=8,
            intermediate=14336,
            vocab=128256,
            source="meta-llama/Meta-Llama-3-8B config.json",
        ),
        # meta-llama/Meta-Llama-3-70B config.json (also Llama 3.1 / 3.3 70B).
        ModelShape(
            "llama-3-70b",
            layers=80,
            hidden=8192,
            heads=64,
            kv_heads=8,
            intermediate=28672,
            vocab=128256,
            source="meta-llama/Meta-Llama-3-70B config.json",
        ),
        # A toy with the same structure, small enough for a CPU test in a second.
        ModelShape(
            "tiny",
            layers=2,
            hidden=256,
            heads=4,
            kv_heads=2,
            intermediate=512,
            vocab=2048,
            tied_embeddings=True,
            source="yieldmeter test shape",
        ),
    )
}


def _known(names: Any) -> str:
    return ", ".join(sorted(names))


def gpu_spec(name: str) -> GPUSpec:
    """The spec of GPU ``name``; an unknown name lists the known ones."""
    key = name.strip().lower()
    if key not in GPUS:
        raise CapacityError(f"unknown GPU {name!r}; known GPUs: {_known(GPUS)}")
    return GPUS[key]


def precision(name: str) -> Precision:
    key = name.strip().lower()
    if key not in PRECISIONS:
        raise CapacityError(f"unknown precision {name!r}; known precisions: {_known(PRECISIONS)}")
    return PRECISIONS[key]


def compute_flops(gpu: GPUSpec, prec: Precision) -> float:
    """Peak dense FLOP/s of ``gpu`` for ``prec``; a GPU without those tensor cores says so."""
    peak = gpu.flops(prec.compute)
    if peak is None:
        usable = [p.name for p in PRECISIONS.values() if gpu.flops(p.compute) is not None]
        raise CapacityError(
            f"{gpu.name} has no {prec.compute} tensor cores; precisions it computes in: {', '.join(usable)}"
        )
    return peak


_SHAPE_KEYS = {f.name for f in fields(ModelShape)} - {"extra"}


def shape_from_dict(data: dict[str, Any], *, name: str, where: str) -> ModelShape:
    """A shape from a mapping with :class:`ModelShape`'s keys (HF config.json names accepted)."""
    # Accept a Hugging Face config.json as it is.
    aliases = {
        "num_hidden_layers": "layers",
        "hidden_size": "hidden",
        "num_attention_heads": "heads",
        "num_key_value_heads": "kv_heads",
        "intermediate_size": "intermediate",
        "vocab_size": "vocab",
        "tie_word_embeddings": "tied_embeddings",
    }
    values: dict[str, Any] = {}
    for k, v in data.items():
        key = aliases.get(k, k)
        if key in _SHAPE_KEYS:
            values[key] = v
    values.setdefault("name", name)
    if "kv_heads" not in values and "heads" in values:
        values["kv_heads"] = values["heads"]
    missing = sorted({"layers", "hidden", "heads", "intermediate", "vocab"} - values.keys())
    if missing:
        raise CapacityError(f"{where}: model shape lacks {', '.join(missing)} (keys: {_known(_SHAPE_KEYS)})")
    for k in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab", "head_dim"):
        if k in values and not isinstance(values[k], int):
            raise CapacityError(f"{where}: {k} must be an integer, got {values[k]!r}")
    return ModelShape(**values)


def model_shape(name_or_path: str, extra: dict[str, dict[str, Any]] | None = None) -> ModelShape:
    """A built-in shape, one declared in config (``extra``), or a JSON file.

    An unknown name lists the known ones.
    """
    key = name_or_path.strip()
    if extra and key in extra:
        return shape_from_dict(extra[key], name=key, where=f"capacity.shapes.{key}")
    if key.lower() in SHAPES:
        return SHAPES[key.lower()]
    path = Path(key)
    if key.endswith(".json") or path.is_file():
        if not path.exists():
            raise CapacityError(f"model shape file {key} does not exist")
        try:
            data = json.loads(read_text_file(path, CapacityError))
        except json.JSONDecodeError as exc:
            raise CapacityError(f"{key}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise CapacityError(f"{key}: expected a JSON object with the shape's keys")
        return shape_from_dict(data, name=str(data.get("name", path.stem)), where=key)
    known = set(SHAPES) | set(extra or {})
    raise CapacityError(
        f"unknown model shape {name_or_path!r}; known shapes: {_known(known)}, or a PATH.json"
    )
