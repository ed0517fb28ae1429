"""The ``capacity:`` section of ``yieldmeter.yaml``, validated.

Every key is optional; the defaults are stated beside each field and in
``docs/capacity.md``. A wrong key or value is reported with its path, e.g.
``capacity.build.pue: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from yieldmeter.capacity.specs import CapacityError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RentSettings(_Strict):
    """Paying per token at the provider's list price (from the price catalog)."""

    #: USD per million tokens; when set they replace the catalog price of the calls (e.g. to price
    #: a different API model, or calls the catalog cannot price).
    input: float | None = Field(default=None, ge=0)
    output: float | None = Field(default=None, ge=0)
    batch_discount: float = Field(default=0.5, ge=0, le=1, description="discount of the provider's batch API")
    batch_share: float = Field(
        default=0.0, ge=0, le=1, description="share of volume that tolerates batch latency"
    )


class ReserveSettings(_Strict):
    """Provisioned throughput units (PTU, provisioned throughput, reserved capacity)."""

    unit_price_per_hour: float | None = Field(default=None, ge=0, description="USD per unit-hour")
    tokens_per_s_per_unit: float | None = Field(default=None, gt=0)
    #: How many input-token equivalents one output token uses of a unit's throughput.
    output_token_weight: float = Field(default=1.0, gt=0)
    min_units: int = Field(default=1, ge=1)
    term_months: int = Field(default=1, ge=1)


class BuildSettings(_Strict):
    """Owned GPUs: capital, energy, hosting and operations."""

    gpu: str = "h100"
    gpus_per_replica: int | None = Field(
        default=None, ge=1, description="default: fewest GPUs the shape fits in"
    )
    gpu_price: float = Field(default=30000.0, ge=0, description="USD per GPU")
    other_capex_per_gpu: float = Field(
        default=8000.0, ge=0, description="server, network, storage share, USD"
    )
    amortisation_months: int = Field(default=36, ge=1)
    cost_of_capital: float = Field(default=0.08, ge=0, le=1, description="annual rate")
    gpu_power_w: float | None = Field(default=None, gt=0, description="default: the spec's board power")
    server_power_w_per_gpu: float = Field(default=150.0, ge=0, description="CPU, fans, NICs per GPU")
    idle_power_fraction: float = Field(default=0.3, ge=0, le=1, description="GPU draw when idle / full draw")
    pue: float = Field(default=1.3, ge=1, description="power usage effectiveness of the facility")
    energy_price_per_kwh: float = Field(default=0.12, ge=0, description="USD per kWh")
    hosting_per_gpu_month: float = Field(default=150.0, ge=0, description="rack space, colocation, USD")
    operations_per_month: float = Field(default=2000.0, ge=0, description="people and tooling, USD")
    #: Share of the roofline a tuned server reaches, used when no measurement is stored.
    efficiency: float = Field(default=0.5, gt=0, le=1)
    batch: int = Field(default=64, ge=1, description="serving batch the throughput is taken at")


class OwnedSettings(_Strict):
    """Which calls owned GPUs already serve, for the compute link of the conversion chain."""

    providers: list[str] = Field(default_factory=list, description="e.g. vllm, self-hosted")
    models: list[str] = Field(default_factory=list)
    gpus: int | None = Field(default=None, ge=1, description="GPUs installed; default: sized to the load")


class CapacitySettings(_Strict):
    model_shape: str = "llama-3-8b"
    precision: str = "bf16"
    hours_per_month: float = Field(default=730.0, gt=0)
    #: Owned or reserved capacity is sized to this quantile of the hourly load; hours above it
    #: overflow to rent. 1.0 sizes for the peak hour.
    sizing_quantile: float = Field(default=0.95, gt=0, le=1)
    memory_utilization: float = Field(default=0.9, gt=0, le=1)
    rent: RentSettings = Field(default_factory=RentSettings)
    reserve: ReserveSettings = Field(default_factory=ReserveSettings)
    build: BuildSettings = Field(default_factory=BuildSettings)
    owned: OwnedSettings = Field(default_factory=OwnedSettings)
    #: Extra model shapes by name, with ModelShape's keys (layers, hidden, heads, kv_heads...).
    shapes: dict[str, dict[str, Any]] = Field(default_factory=dict)


def _loc(loc: tuple[Any, ...]) -> str:
    out = "capacity"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def load_settings(section: dict[str, Any] | None) -> CapacitySettings:
    """Validate the ``capacity`` section; errors name the key path."""
    try:
        return CapacitySettings.model_validate(section or {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = "unknown key (see docs/capacity.md)" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"yieldmeter.yaml {_loc(tuple(err['loc']))}: {msg}")
        raise CapacityError("\n".join(lines)) from None
