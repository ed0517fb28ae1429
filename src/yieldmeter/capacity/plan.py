"""Rent, reserve or build: the monthly cost of serving an observed token load.

Pure arithmetic over an hourly load profile (tokens per hour over a window,
zero hours included) and the ``capacity`` settings. With ``m = hours_per_month
/ hours in the window``:

* **rent**: the load's list-price cost from the price catalog x ``m``, less
  ``batch_share x batch_discount`` of it for work that can wait for a batch API.
* **reserve**: a unit serves ``tokens_per_s_per_unit`` (an output token counts
  ``output_token_weight`` times). Units-busy in hour h
  ``= (in_h + w x out_h) / tokens_per_s_per_unit / 3600``; the fleet is
  ``U = max(min_units, ceil(quantile(units-busy, sizing_quantile)))`` units,
  paid every hour: ``U x unit_price_per_hour x hours_per_month``.
* **build**: a replica (``gpus_per_replica`` GPUs) prefills at ``P`` and decodes
  at ``D`` tokens/s. Replicas-busy in hour h ``= (in_h / P + out_h / D) / 3600``;
  the fleet is ``R = max(1, ceil(quantile(replicas-busy, sizing_quantile)))``.
  Utilisation ``u = sum(min(busy_h, R)) / (R x hours)``. Its rows:
  capital (annuity of ``GPUs x (gpu_price + other_capex_per_gpu)`` over
  ``amortisation_months`` at ``cost_of_capital / 12`` a month), energy
  (``GPUs x (gpu_power x (idle + (1 - idle) x u) + server_power) x PUE x
  hours_per_month / 1000`` kWh at ``energy_price_per_kwh``), hosting,
  operations.
* For reserve and build, the part of an hour above the fleet's capacity
  overflows to rent at that hour's rent price: ``(1 - min(1, F / busy_h)) x
  rent_h`` with ``F`` the fleet size.

Cost per million tokens = monthly cost / monthly tokens x 1e6; cost per
successful outcome = monthly cost / successful outcomes per month.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from yieldmeter.capacity.settings import BuildSettings, CapacitySettings, RentSettings, ReserveSettings
from yieldmeter.capacity.specs import CapacityError, GPUSpec

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class LoadProfile:
    """Observed tokens per hour (zero hours included) and their list-price rent cost."""

    input_tokens: np.ndarray
    output_tokens: np.ndarray
    rent_cost: np.ndarray  # USD per hour at list price (catalog or capacity.rent prices)
    successful_outcomes: float | None = None  # over the same window
    label: str = "all calls"

    def __post_init__(self) -> None:
        n = len(self.input_tokens)
        if n == 0:
            raise CapacityError(
                "no calls in the chosen scope: nothing to plan for (check --workflow/--model)"
            )
        if len(self.output_tokens) != n or len(self.rent_cost) != n:
            raise ValueError("hourly arrays differ in length")

    @property
    def hours(self) -> int:
        return len(self.input_tokens)

    @property
    def tokens(self) -> float:
        return float(self.input_tokens.sum() + self.output_tokens.sum())

    def scaled(self, k: float) -> LoadProfile:
        """The same shape of load, ``k`` times the volume."""
        outcomes = None if self.successful_outcomes is None else self.successful_outcomes * k
        return replace(
            self,
            input_tokens=self.input_tokens * k,
            output_tokens=self.output_tokens * k,
            rent_cost=self.rent_cost * k,
            successful_outcomes=outcomes,
        )

    @classmethod
    def with_prices(
        cls, input_tokens: Any, output_tokens: Any, input_price: float, output_price: float, **kw: Any
    ) -> LoadProfile:
        """A profile priced at flat USD-per-million prices."""
        i = np.asarray(input_tokens, dtype=float)
        o = np.asarray(output_tokens, dtype=float)
        return cls(i, o, (i * input_price + o * output_price) / 1e6, **kw)


@dataclass(frozen=True)
class ReplicaThroughput:
    """What one serving replica sustains, and where the figure comes from."""

    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    gpus: int
    source: str

    def scaled(self, k: float) -> ReplicaThroughput:
        return replace(
            self,
            prefill_tokens_per_s=self.prefill_tokens_per_s * k,
            decode_tokens_per_s=self.decode_tokens_per_s * k,
            source=f"{self.source} x {k:g}",
        )


@dataclass(frozen=True)
class CostLine:
    option: str
    line: str
    usd_per_month: float
    note: str = ""


@dataclass(frozen=True)
class OptionCost:
    option: str  # rent, reserve, build
    lines: tuple[CostLine, ...]
    tokens_per_month: float
    successful_outcomes_per_month: float | None
    capacity: str = ""
    utilisation: float | None = None
    overflow_share: float = 0.0  # share of tokens served by rent overflow
    fleet: int = 0  # reserved units or owned replicas
    energy_kwh: float | None = None  # per month, owned GPUs only

    @property
    def usd_per_month(self) -> float:
        return sum(c.usd_per_month for c in self.lines)

    @property
    def usd_per_million_tokens(self) -> float | None:
        return self.usd_per_month / self.tokens_per_month * 1e6 if self.tokens_per_month else None

    @property
    def usd_per_successful_outcome(self) -> float | None:
        n = self.successful_outcomes_per_month
        return self.usd_per_month / n if n else None

    def row(self) -> dict[str, Any]:
        return {
            "option": self.option,
            "usd_per_month": self.usd_per_month,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "usd_per_successful_outcome": self.usd_per_successful_outcome,
            "capacity": self.capacity,
            "utilisation": self.utilisation,
            "overflow_share": self.overflow_share,
        }


@dataclass(frozen=True)
class Plan:
    options: tuple[OptionCost, ...]
    unavailable: dict[str, str]
    break_even: tuple[dict[str, Any], ...]
    sensitivity: tuple[dict[str, Any], ...]
    recommendation: str
    assumptions: tuple[str, ...] = field(default=())

    def option(self, name: str) -> OptionCost | None:
        return next((o for o in self.options if o.option == name), None)

    @property
    def cheapest(self) -> OptionCost:
        return min(self.options, key=lambda o: o.usd_per_month)

    def lines(self) -> list[dict[str, Any]]:
        return [
            {"option": c.option, "line": c.line, "usd_per_month": c.usd_per_month, "note": c.note}
            for o in self.options
            for c in o.lines
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "options": [o.row() for o in self.options],
            "lines": self.lines(),
            "unavailable": self.unavailable,
            "break_even": list(self.break_even),
            "sensitivity": list(self.sensitivity),
            "recommendation": self.recommendation,
            "assumptions": list(self.assumptions),
        }


def annuity(principal: float, annual_rate: float, months: int) -> float:
    """Monthly payment that repays ``principal`` over ``months`` at ``annual_rate / 12`` a month."""
    r = annual_rate / 12
    if r == 0:
        return principal / months
    return principal * r / (1 - (1 + r) ** -months)


def _month_scale(profile: LoadProfile, hours_per_month: float) -> float:
    return hours_per_month / profile.hours


def _outcomes_per_month(profile: LoadProfile, m: float) -> float | None:
    return None if profile.successful_outcomes is None else profile.successful_outcomes * m


def _effective_rent(profile: LoadProfile, rent: RentSettings) -> np.ndarray:
    return profile.rent_cost * (1 - rent.batch_share * rent.batch_discount)


def _fleet(busy: np.ndarray, quantile: float, minimum: int) -> int:
    """Fleet size covering ``quantile`` of the hours (``busy`` in units of one replica or unit)."""
    need = float(np.quantile(busy, quantile, method="higher")) if len(busy) else 0.0
    return max(minimum, math.ceil(need - 1e-9))


def _overflow(
    busy: np.ndarray, fleet: int, rent_h: np.ndarray, profile: LoadProfile
) -> tuple[float, float, float]:
    """(overflow rent cost over the window, overflow token share, utilisation)."""
    served = np.minimum(busy, fleet)
    with np.errstate(divide="ignore", invalid="ignore"):
        served_frac = np.where(busy > 0, served / busy, 1.0)
    over = 1 - served_frac
    tokens_h = profile.input_tokens + profile.output_tokens
    total = tokens_h.sum()
    share = float((over * tokens_h).sum() / total) if total else 0.0
    utilisation = float(served.sum() / (fleet * len(busy))) if fleet else 0.0
    return float((over * rent_h).sum()), share, utilisation


def rent_option(profile: LoadProfile, s: CapacitySettings) -> OptionCost:
    m = _month_scale(profile, s.hours_per_month)
    listed = float(profile.rent_cost.sum()) * m
    lines = [
        CostLine("rent", "tokens at list price", listed, "energy and capital are inside the provider's price")
    ]
    if s.rent.batch_share and s.rent.batch_discount:
        lines.append(
            CostLine(
                "rent",
                "batch API discount",
                -listed * s.rent.batch_share * s.rent.batch_discount,
                f"{s.rent.batch_share:.0%} of volume at {s.rent.batch_discount:.0%} off",
            )
        )
    return OptionCost("rent", tuple(lines), profile.tokens * m, _outcomes_per_month(profile, m), "per token")


def reserve_option(profile: LoadProfile, s: CapacitySettings) -> OptionCost:
    r: ReserveSettings = s.reserve
    if r.unit_price_per_hour is None or r.tokens_per_s_per_unit is None:
        raise CapacityError(
            "reserve needs capacity.reserve.unit_price_per_hour and capacity.reserve.tokens_per_s_per_unit"
        )
    m = _month_scale(profile, s.hours_per_month)
    busy = (profile.input_tokens + r.output_token_weight * profile.output_tokens) / r.tokens_per_s_per_unit
    busy = busy / SECONDS_PER_HOUR
    units = _fleet(busy, s.sizing_quantile, r.min_units)
    over_cost, over_share, u = _overflow(busy, units, _effective_rent(profile, s.rent), profile)
    lines = [
        CostLine(
            "reserve",
            "reserved units",
            units * r.unit_price_per_hour * s.hours_per_month,
            f"{units} units x ${r.unit_price_per_hour:g}/h x {s.hours_per_month:g} h, "
            f"{r.term_months}-month term",
        ),
        CostLine("reserve", "overflow to rent", over_cost * m, f"{over_share:.1%} of tokens above the units"),
    ]
    return OptionCost(
        "reserve",
        tuple(lines),
        profile.tokens * m,
        _outcomes_per_month(profile, m),
        f"{units} unit{'s' if units != 1 else ''}",
        u,
        over_share,
        units,
    )


def build_option(
    profile: LoadProfile,
    s: CapacitySettings,
    gpu: GPUSpec,
    throughput: ReplicaThroughput,
    replicas: int | None = None,
) -> OptionCost:
    """The build option; ``replicas`` fixes the fleet (GPUs already installed) instead of sizing it."""
    b: BuildSettings = s.build
    m = _month_scale(profile, s.hours_per_month)
    busy = (
        profile.input_tokens / throughput.prefill_tokens_per_s
        + profile.output_tokens / throughput.decode_tokens_per_s
    ) / SECONDS_PER_HOUR
    replicas = replicas or _fleet(busy, s.sizing_quantile, 1)
    over_cost, over_share, u = _overflow(busy, replicas, _effective_rent(profile, s.rent), profile)
    gpus = replicas * throughput.gpus
    capex = gpus * (b.gpu_price + b.other_capex_per_gpu)
    gpu_w = b.gpu_power_w or gpu.board_power_w
    avg_w = gpus * (
        gpu_w * (b.idle_power_fraction + (1 - b.idle_power_fraction) * u) + b.server_power_w_per_gpu
    )
    kwh = avg_w * b.pue * s.hours_per_month / 1000
    lines = [
        CostLine(
            "build",
            "capital",
            annuity(capex, b.cost_of_capital, b.amortisation_months),
            f"${capex:,.0f} for {gpus} x {gpu.name} over {b.amortisation_months} months "
            f"at {b.cost_of_capital:.1%}/yr",
        ),
        CostLine(
            "build",
            "energy",
            kwh * b.energy_price_per_kwh,
            f"{kwh:,.0f} kWh: {avg_w / 1000:.2f} kW mean IT load x PUE {b.pue:g} "
            f"at ${b.energy_price_per_kwh:g}/kWh",
        ),
        CostLine(
            "build", "hosting", gpus * b.hosting_per_gpu_month, f"{gpus} GPUs x ${b.hosting_per_gpu_month:g}"
        ),
        CostLine("build", "operations", b.operations_per_month, "people and tooling"),
        CostLine("build", "overflow to rent", over_cost * m, f"{over_share:.1%} of tokens above the fleet"),
    ]
    return OptionCost(
        "build",
        tuple(lines),
        profile.tokens * m,
        _outcomes_per_month(profile, m),
        f"{replicas} x {throughput.gpus} {gpu.name}",
        u,
        over_share,
        replicas,
        kwh,
    )


def _break_even_volume(
    profile: LoadProfile, cost: Callable[[LoadProfile], float], rent: Callable[[LoadProfile], float]
) -> float | None:
    """Smallest volume factor k (of today's load) from which ``cost`` <= ``rent``; None up to 1e6 x."""
    grid = np.geomspace(1e-3, 1e6, 181)
    prev = None
    for k in grid:
        if cost(profile.scaled(k)) <= rent(profile.scaled(k)):
            if prev is None:
                return float(k)
            lo, hi = prev, float(k)
            for _ in range(40):
                mid = math.sqrt(lo * hi)
                if cost(profile.scaled(mid)) <= rent(profile.scaled(mid)):
                    hi = mid
                else:
                    lo = mid
            return hi
        prev = float(k)
    return None


def _break_even_utilisation(
    option: OptionCost,
    rent: OptionCost,
    profile: LoadProfile,
    s: CapacitySettings,
    gpu: GPUSpec,
    t: ReplicaThroughput | None,
) -> float | None:
    """Utilisation at which the fleet's cost per token equals rent's blended price per token."""
    if not rent.tokens_per_month or rent.usd_per_month <= 0:
        return None
    price = rent.usd_per_month / rent.tokens_per_month  # USD per token
    tin, tout = float(profile.input_tokens.sum()), float(profile.output_tokens.sum())
    hours = s.hours_per_month
    if option.option == "reserve":
        r = s.reserve
        assert r.unit_price_per_hour is not None and r.tokens_per_s_per_unit is not None
        per_unit_s = r.tokens_per_s_per_unit * (tin + tout) / (tin + r.output_token_weight * tout)
        return r.unit_price_per_hour / (per_unit_s * SECONDS_PER_HOUR * price)
    assert t is not None
    b = s.build
    replicas = option.fleet
    gpus = replicas * t.gpus
    mix_tps = (tin + tout) / (tin / t.prefill_tokens_per_s + tout / t.decode_tokens_per_s)
    capacity_tokens = replicas * mix_tps * SECONDS_PER_HOUR * hours
    fixed = sum(c.usd_per_month for c in option.lines if c.line in ("capital", "hosting", "operations"))
    gpu_w = b.gpu_power_w or gpu.board_power_w
    energy_per_w = b.pue * hours / 1000 * b.energy_price_per_kwh
    e0 = gpus * (gpu_w * b.idle_power_fraction + b.server_power_w_per_gpu) * energy_per_w
    e1 = gpus * gpu_w * (1 - b.idle_power_fraction) * energy_per_w
    denom = capacity_tokens * price - e1
    return (fixed + e0) / denom if denom > 0 else None


def compare(
    profile: LoadProfile,
    s: CapacitySettings,
    gpu: GPUSpec,
    throughput: ReplicaThroughput | None,
) -> Plan:
    """Every available option's monthly cost, break-evens, sensitivity and the recommendation."""
    unavailable: dict[str, str] = {}

    def options_for(p: LoadProfile, t: ReplicaThroughput | None) -> dict[str, OptionCost]:
        out = {"rent": rent_option(p, s)}
        if "reserve" not in unavailable:
            try:
                out["reserve"] = reserve_option(p, s)
            except CapacityError as exc:
                unavailable["reserve"] = str(exc)
        if t is not None:
            out["build"] = build_option(p, s, gpu, t)
        return out

    if throughput is None:
        unavailable["build"] = "no throughput for the model shape: it does not fit, or no GPU was given"
    base = options_for(profile, throughput)
    rent = base["rent"]

    break_even: list[dict[str, Any]] = []
    for name, opt in base.items():
        if name == "rent":
            continue

        def cost(p: LoadProfile, name: str = name) -> float:
            return options_for(p, throughput)[name].usd_per_month

        k = _break_even_volume(profile, cost, lambda p: rent_option(p, s).usd_per_month)
        break_even.append(
            {
                "option": name,
                "break_even_tokens_per_month": None if k is None else k * rent.tokens_per_month,
                "volume_vs_today": k,
                "break_even_utilisation": _break_even_utilisation(opt, rent, profile, s, gpu, throughput),
                "utilisation_today": opt.utilisation,
            }
        )

    scenarios = [
        ("today", 1.0, 1.0),
        ("volume -50%", 0.5, 1.0),
        ("volume +50%", 1.5, 1.0),
        ("efficiency -50%", 1.0, 0.5),
        ("efficiency +50%", 1.0, 1.5),
    ]
    sensitivity: list[dict[str, Any]] = []
    for label, kv, ke in scenarios:
        t = throughput.scaled(ke) if throughput is not None and ke != 1.0 else throughput
        opts = options_for(profile.scaled(kv), t)
        row: dict[str, Any] = {"scenario": label}
        row.update({f"{n}_usd_per_month": o.usd_per_month for n, o in opts.items()})
        row["cheapest"] = min(opts.values(), key=lambda o: o.usd_per_month).option
        sensitivity.append(row)

    options = tuple(base.values())
    plan = Plan(
        options, dict(unavailable), tuple(break_even), tuple(sensitivity), "", _assumptions(s, throughput)
    )
    return replace(plan, recommendation=_recommend(plan, throughput))


def _assumptions(s: CapacitySettings, t: ReplicaThroughput | None) -> tuple[str, ...]:
    out = [
        f"a month is {s.hours_per_month:g} hours; the observed window is scaled to it",
        f"reserved and owned capacity is sized to the {s.sizing_quantile:.0%} quantile hour; "
        "the rest overflows to rent",
        "owned replicas reach their serving-batch throughput whenever they are busy",
        f"building serves the {s.model_shape} shape in {s.precision} in place of the rented model: "
        "check quality on the workflow's own outcomes before switching",
    ]
    if t is not None:
        out.append(
            f"throughput per replica: prefill {t.prefill_tokens_per_s:,.0f} tokens/s, "
            f"decode {t.decode_tokens_per_s:,.0f} tokens/s ({t.source})"
        )
    return tuple(out)


def _usd(x: float) -> str:
    return f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}"


def _recommend(plan: Plan, t: ReplicaThroughput | None) -> str:
    best = plan.cheapest
    rent = plan.option("rent")
    assert rent is not None
    parts = [f"{best.option}: {_usd(best.usd_per_month)}/month"]
    if best.usd_per_million_tokens is not None:
        parts.append(f"${best.usd_per_million_tokens:,.2f} per million tokens")
    if best.option != "rent" and rent.usd_per_month > 0:
        parts.append(f"{1 - best.usd_per_month / rent.usd_per_month:.0%} below renting")
    text = ", ".join(parts) + "."
    flips = sorted({r["scenario"] for r in plan.sensitivity if r["cheapest"] != best.option})
    if flips:
        text += " Sensitive: the cheapest option changes at " + ", ".join(flips) + "."
    else:
        text += " It stays the cheapest at volume and efficiency +/-50%."
    if best.option == "rent":
        ahead = [r for r in plan.break_even if r["break_even_tokens_per_month"]]
        for r in sorted(ahead, key=lambda r: r["break_even_tokens_per_month"]):
            millions = r["break_even_tokens_per_month"] / 1e6
            text += (
                f" {r['option'].capitalize()} would break even from {millions:,.0f} M tokens/month"
                f" ({r['volume_vs_today']:,.1f}x today)."
            )
    if best.option == "build" and t is not None and not t.source.startswith("measured"):
        text += " The build throughput is assumed, not measured: measure it with `yieldmeter capacity bench`."
    if best.utilisation is not None and best.utilisation < 0.3:
        text += f" Utilisation is only {best.utilisation:.0%}."
    return text
