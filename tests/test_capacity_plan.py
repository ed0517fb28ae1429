"""Rent / reserve / build arithmetic against figures worked out by hand."""

from __future__ import annotations

import pytest

from yieldmeter.capacity.plan import (
    LoadProfile,
    ReplicaThroughput,
    annuity,
    build_option,
    compare,
    rent_option,
)
from yieldmeter.capacity.settings import load_settings
from yieldmeter.capacity.specs import CapacityError, gpu_spec

# Four observed hours; input $1 and output $4 per million tokens.
#   hour 0: 3.6 M in, 0.36 M out -> rent $3.60 + $1.44 = $5.04
#   hour 1: 7.2 M in, 0.72 M out -> rent $10.08
#   hour 2: nothing
#   hour 3: like hour 0         -> rent $5.04
# window: 14.4 M in + 1.44 M out = 15.84 M tokens, $20.16; a month of 730 h is 182.5 windows.
PROFILE = LoadProfile.with_prices(
    [3.6e6, 7.2e6, 0.0, 3.6e6], [0.36e6, 0.72e6, 0.0, 0.36e6], 1.0, 4.0, successful_outcomes=100
)
# A replica prefills 2,000 and decodes 200 tokens/s: hour 0 keeps it busy 3.6e6/2000 + 0.36e6/200 = 3,600 s.
REPLICA = ReplicaThroughput(
    prefill_tokens_per_s=2000, decode_tokens_per_s=200, gpus=1, source="measured: test"
)
SETTINGS = load_settings(
    {
        "sizing_quantile": 0.5,
        "rent": {"batch_share": 0.0},
        "reserve": {"unit_price_per_hour": 2.0, "tokens_per_s_per_unit": 1000, "output_token_weight": 4},
        "build": {
            "gpu": "h100",
            "gpu_price": 20000,
            "other_capex_per_gpu": 4000,
            "amortisation_months": 24,
            "cost_of_capital": 0.0,
            "server_power_w_per_gpu": 100,
            "idle_power_fraction": 0.3,
            "pue": 1.5,
            "energy_price_per_kwh": 0.10,
            "hosting_per_gpu_month": 100,
            "operations_per_month": 500,
        },
    }
)
H100 = gpu_spec("h100")


def test_rent() -> None:
    rent = rent_option(PROFILE, SETTINGS)
    assert rent.usd_per_month == pytest.approx(20.16 * 182.5)  # $3,679.20
    assert rent.tokens_per_month == pytest.approx(15.84e6 * 182.5)  # 2,890.8 M
    assert rent.usd_per_million_tokens == pytest.approx(20.16 / 15.84)  # $1.2727
    assert rent.usd_per_successful_outcome == pytest.approx(3679.2 / 18250)  # 100 x 182.5 outcomes a month


def test_rent_batch_discount_is_its_own_row() -> None:
    s = load_settings({"rent": {"batch_share": 0.4, "batch_discount": 0.5}})
    rent = rent_option(PROFILE, s)
    lines = {c.line: c.usd_per_month for c in rent.lines}
    assert lines["batch API discount"] == pytest.approx(-3679.2 * 0.4 * 0.5)  # -$735.84
    assert rent.usd_per_month == pytest.approx(3679.2 * 0.8)


def test_build_lines() -> None:
    b = build_option(PROFILE, SETTINGS, H100, REPLICA)
    lines = {c.line: c.usd_per_month for c in b.lines}
    # replicas busy per hour: [1, 2, 0, 1]; the 50% quantile ("higher") of [0, 1, 1, 2] is 1 -> 1 replica
    assert b.fleet == 1
    # utilisation: served (1 + 1 + 0 + 1) / (1 replica x 4 h)
    assert b.utilisation == pytest.approx(0.75)
    # capital: 1 GPU x ($20,000 + $4,000) / 24 months at 0%
    assert lines["capital"] == pytest.approx(1000.0)
    # energy: (700 W x (0.3 + 0.7 x 0.75) + 100 W) = 677.5 W x PUE 1.5 x 730 h = 741.8625 kWh x $0.10
    assert lines["energy"] == pytest.approx(74.18625)
    assert lines["hosting"] == 100.0 and lines["operations"] == 500.0
    # hour 1 needs 2 replicas, 1 serves: half its $10.08 overflows to rent -> $5.04 x 182.5
    assert lines["overflow to rent"] == pytest.approx(919.8)
    assert b.overflow_share == pytest.approx(0.5 * 7.92e6 / 15.84e6)  # 25% of the tokens
    assert b.usd_per_month == pytest.approx(1000 + 74.18625 + 100 + 500 + 919.8)  # $2,593.99
    assert b.usd_per_million_tokens == pytest.approx(2593.98625 / 2890.8)  # $0.8973
    assert b.usd_per_successful_outcome == pytest.approx(2593.98625 / 18250)


def test_reserve_lines() -> None:
    plan = compare(PROFILE, SETTINGS, H100, REPLICA)
    r = plan.option("reserve")
    assert r is not None
    # units busy: (in + 4 x out) / 1000 / 3600 -> [1.4, 2.8, 0, 1.4]; 50% quantile 1.4 -> 2 units
    assert r.fleet == 2
    lines = {c.line: c.usd_per_month for c in r.lines}
    assert lines["reserved units"] == pytest.approx(2 * 2.0 * 730)  # $2,920
    # hour 1: 2 of 2.8 served; 0.8 / 2.8 of $10.08 = $2.88 overflows, x 182.5
    assert lines["overflow to rent"] == pytest.approx(525.6)
    assert r.utilisation == pytest.approx((1.4 + 2 + 0 + 1.4) / 8)


def test_break_even_and_recommendation() -> None:
    plan = compare(PROFILE, SETTINGS, H100, REPLICA)
    assert plan.cheapest.option == "build"
    be = {row["option"]: row for row in plan.break_even}
    # Utilisation at which build's cost per token equals rent's $1.2727/M:
    #   capacity at 100%: 1 replica x 1,100 tokens/s (15.84 M / (7,200 s + 7,200 s)) x 3600 x 730 = 2,890.8 M
    #   fixed $1,600 (capital, hosting, operations); energy $/W-month 1.5 x 730 / 1000 x 0.10 = 0.1095:
    #   idle part e0 = (700 x 0.3 + 100) x 0.1095 = $33.945, load part e1 = 700 x 0.7 x 0.1095 = $53.655
    #   u* = (1600 + 33.945) / (2,890.8 M x $1.2727/M - 53.655) = 1633.945 / 3625.545 = 0.4507
    assert be["build"]["break_even_utilisation"] == pytest.approx(1633.945 / 3625.545)
    # Reserve: $2/unit-hour / (1000 x 15.84/(14.4 + 4 x 1.44) tokens/s x 3600 x $1.2727e-6) = 0.5556
    per_unit = 1000 * 15.84 / (14.4 + 4 * 1.44)
    assert be["reserve"]["break_even_utilisation"] == pytest.approx(2.0 / (per_unit * 3600 * 20.16 / 15.84e6))
    # Break-even volume: at that volume build and rent cost the same (within the search's precision).
    k = be["build"]["volume_vs_today"]
    assert k is not None and k < 1
    at = compare(PROFILE.scaled(k * 1.001), SETTINGS, H100, REPLICA)
    below = compare(PROFILE.scaled(k * 0.999), SETTINGS, H100, REPLICA)
    assert at.option("build").usd_per_month <= at.option("rent").usd_per_month  # type: ignore[union-attr]
    assert below.option("build").usd_per_month > below.option("rent").usd_per_month  # type: ignore[union-attr]
    assert plan.recommendation.startswith("build: $2,594/month")


def test_sensitivity_halving_efficiency_makes_reserve_cheapest() -> None:
    plan = compare(PROFILE, SETTINGS, H100, REPLICA)
    rows = {r["scenario"]: r for r in plan.sensitivity}
    # Half the throughput: busy [2, 4, 0, 2] -> 2 replicas; capital $2,000, energy 2 x $74.18625,
    # hosting $200, operations $500, overflow still half of hour 1 ($919.80) = $3,768.17 > reserve $3,445.60
    assert rows["efficiency -50%"]["build_usd_per_month"] == pytest.approx(
        2000 + 148.3725 + 200 + 500 + 919.8
    )
    assert rows["efficiency -50%"]["cheapest"] == "reserve"
    assert rows["volume +50%"]["rent_usd_per_month"] == pytest.approx(3679.2 * 1.5)
    assert "Sensitive: the cheapest option changes at efficiency -50%" in plan.recommendation


def test_annuity() -> None:
    # $24,000 over 24 months at 12%/yr (1%/month): 24000 x 0.01 / (1 - 1.01^-24) = $1,129.76
    assert annuity(24000, 0.12, 24) == pytest.approx(1129.76, abs=0.01)
    assert annuity(24000, 0.0, 24) == 1000


def test_reserve_without_prices_is_reported_not_costed() -> None:
    plan = compare(PROFILE, load_settings({}), H100, None)
    assert [o.option for o in plan.options] == ["rent"]
    assert "unit_price_per_hour" in plan.unavailable["reserve"]
    assert "build" in plan.unavailable


def test_settings_errors_name_the_key() -> None:
    with pytest.raises(
        CapacityError, match=r"capacity\.build\.pue: Input should be greater than or equal to 1"
    ):
        load_settings({"build": {"pue": 0.8}})
    with pytest.raises(CapacityError, match=r"capacity\.rent\.discount: unknown key"):
        load_settings({"rent": {"discount": 0.5}})


def test_empty_profile_is_refused() -> None:
    with pytest.raises(CapacityError, match="no calls"):
        LoadProfile.with_prices([], [], 1.0, 1.0)
