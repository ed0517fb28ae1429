"""``yieldmeter export focus``: the allocation as FOCUS cost-and-usage rows.

One FOCUS row per allocation row of :func:`.showback.allocate` (a charge and
the team it goes to), so an existing FinOps tool can take yieldmeter's
showback/chargeback in:

- costs: ``BilledCost`` = ``EffectiveCost`` = ``ListCost`` = ``ContractedCost``
  = the allocated amount (USD). yieldmeter charges teams what it metered, so
  all four are the same figure. A negative amount (a credit item) is a
  ``Credit`` row; every other row is ``Usage``;
- who: ``InvoiceIssuerName`` = ``ProviderName`` (1.3: ``ServiceProviderName``)
  = the billing account (``chargeback.billing_account``): the internal AI
  platform that resells models to the teams, so no row is a third-party
  (marketplace) charge; ``PublisherName`` and 1.3's ``HostProviderName`` = the
  model's provider for model cost, else the billing account;
  ``SubAccountId``/``SubAccountName`` = the team; ``Tags`` carry team,
  workflow, cost centre, cost part and allocation method (``yieldmeter.*``
  keys, which yieldmeter's own FOCUS importer reads back);
- what: ``ResourceId`` = the workflow, ``SkuId`` = provider/model for model
  cost, ``allocated-cost`` or ``effort`` otherwise, ``SkuPriceId`` = the SKU and
  its pricing unit;
- quantities and prices (FOCUS 1.2+: ``SkuPriceId``, ``PricingQuantity``,
  ``PricingUnit``, ``ListUnitPrice`` and ``ContractedUnitPrice`` are never null
  on a Usage row, and unit price x ``PricingQuantity`` = the cost):

  ========================  ==================  ===================================  ==================
  cost part                 ``PricingUnit``     ``PricingQuantity``                  ``ConsumedUnit``
  ========================  ==================  ===================================  ==================
  model cost                ``1000000 Tokens``  (input + output tokens) / 1,000,000  ``Requests`` (calls)
  model cost, no tokens     ``Requests``        calls                                ``Requests``
  allocated cost, effort    ``Units``           the row's ratio of its origin (1)    ``Units``
  ========================  ==================  ===================================  ==================

  ``ListUnitPrice`` = ``ContractedUnitPrice`` = cost / ``PricingQuantity``: for
  tokens the blended price per million of the charge's tokens (input, output,
  cached and reasoning tokens are priced apart, at the catalog's prices; a
  charge's unit price is their blend), for an allocation the origin's amount
  per unit. A split row takes its ratio of the origin's quantities, at the
  origin's unit price, so split rows add up to their origin in every metric;
- FOCUS 1.3 split cost allocation (``AllocatedMethodId``,
  ``AllocatedMethodDetails``, ``AllocatedResourceId``/``Name``,
  ``AllocatedTags``) on every row that is one team's part of a split origin
  (methods in :mod:`.showback`): ``AllocatedMethodId`` =
  ``yieldmeter-pro-rata`` (a shared cost item spread by the model cost of the
  team's calls), ``yieldmeter-proportional``, ``-even``, ``-fixed`` (cost with
  no team split by ``chargeback.shared``), or ``yieldmeter-pro-rata+...``
  (both); ``AllocatedMethodDetails`` = ``{"Elements": [{"AllocatedRatio": r,
  "UsageUnit": u, "UsageQuantity": q}]}`` where ``r`` is the row's share of
  its origin (the ratios of one origin add up to 1) and ``q`` the basis the
  ratio came from (USD of model cost for pro rata, USD of the team's cost for
  proportional, 1 of N ``Teams`` for even, none for a fixed share);
  ``AllocatedResourceId``/``Name`` = the receiving team and ``AllocatedTags``
  its cost centre. Direct charges are not split: their Allocated* columns are
  null, as the specification requires. ``x_OriginChargeId`` names the origin
  (a charge, or ``cost_item:<id>``) and ``x_OriginAmount`` its amount.

``version``: ``1.3`` (default), ``1.2`` (the 1.2 columns: no
``ServiceProviderName``/``HostProviderName`` and no Allocated* columns, for
tools and the FinOps Foundation's ``focus-validator`` 2.x, whose newest rule
set is 1.2) or ``1.0`` (the 1.0 columns, for 1.0-only tools and
``focus-validator`` 1.0). 1.3 keeps the deprecated ``ProviderName`` and
``PublisherName``, which 1.3 still requires.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from yieldmeter.errors import InputError
from yieldmeter.finops.settings import ChargebackSettings
from yieldmeter.finops.showback import is_split

VERSIONS = ("1.0", "1.2", "1.3")
COLUMNS_1_0 = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
    "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit", "ContractedCost", "ContractedUnitPrice", "EffectiveCost", "InvoiceIssuerName", "ListCost",
    "ListUnitPrice", "PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName",
    "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType", "ServiceCategory", "ServiceName",
    "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
)  # fmt: skip
#: 1.2: 1.0 with the 1.1 and 1.2 columns yieldmeter can fill (null where the concept does not apply).
COLUMNS_1_2 = (
    *COLUMNS_1_0,
    "CapacityReservationId", "CapacityReservationStatus", "CommitmentDiscountQuantity",
    "CommitmentDiscountUnit", "InvoiceId", "PricingCurrency", "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice", "ServiceSubcategory", "SkuMeter",
    "SkuPriceDetails",
)  # fmt: skip
#: 1.3: 1.2 with the provider columns of 1.3 and the split cost allocation columns.
COLUMNS_1_3 = (
    *COLUMNS_1_2,
    "ServiceProviderName", "HostProviderName", "AllocatedMethodId", "AllocatedMethodDetails",
    "AllocatedResourceId", "AllocatedResourceName", "AllocatedTags",
)  # fmt: skip
COLUMNS = {"1.0": COLUMNS_1_0, "1.2": COLUMNS_1_2, "1.3": COLUMNS_1_3}
EXTRA = ("x_CostPart", "x_Workflow", "x_CostCentre", "x_OriginChargeId", "x_OriginAmount")
_PART_SKU = {"allocated_cost": "allocated-cost", "effort_cost": "effort"}
_PART_TEXT = {
    "model_cost": "AI model cost",
    "allocated_cost": "allocated platform cost",
    "effort_cost": "human effort",
}
TOKEN_UNIT = "1000000 Tokens"
#: What an allocation's UsageQuantity counts, per method (the last method of a chain decides the team).
_BASIS_NOTE = {
    "pro_rata": "ModelCostOfTeamCalls",
    "proportional": "TeamCostBeforeSplit",
    "even": "OneOfTeams",
    "fixed": "FixedShare",
}


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _month(dt: datetime) -> tuple[datetime, datetime]:
    a = datetime(dt.year, dt.month, 1, tzinfo=UTC)
    return a, datetime(dt.year + (dt.month == 12), dt.month % 12 + 1, 1, tzinfo=UTC)


def method_id(method: str) -> str:
    """FOCUS ``AllocatedMethodId`` of a showback method: ``yieldmeter-pro-rata``, ``yieldmeter-even``..."""
    return "yieldmeter-" + method.replace("_", "-")


def pricing(r: dict[str, Any]) -> tuple[float, str]:
    """(PricingQuantity, PricingUnit) of an allocation row (see the module docstring)."""
    if r["cost_part"] == "model_cost":
        tokens, calls = float(r["tokens"] or 0.0), float(r["calls"] or 0.0)
        if tokens > 0:
            return tokens / 1e6, TOKEN_UNIT
        if calls > 0:
            return calls, "Requests"
    return float(r["ratio"]), "Units"


def method_details(r: dict[str, Any]) -> dict[str, Any]:
    """``AllocatedMethodDetails`` of a split row: its ratio and the basis the ratio came from."""
    last = r["method"].split("+")[-1]
    element: dict[str, Any] = {"AllocatedRatio": float(r["ratio"])}
    if r["basis"] is not None and r["basis_unit"]:
        element.update(UsageUnit=r["basis_unit"], UsageQuantity=float(r["basis"]))
    element["x_Basis"] = _BASIS_NOTE.get(last, last)
    return {"Elements": [element], "x_OriginChargeId": r["origin_id"]}


def focus_row(r: dict[str, Any], settings: ChargebackSettings) -> dict[str, Any]:
    day: datetime = r["day"].astimezone(UTC) if r["day"].tzinfo else r["day"].replace(tzinfo=UTC)
    b0, b1 = _month(day)
    part = r["cost_part"]
    platform = settings.billing_account
    publisher = r["provider"] if part == "model_cost" and r["provider"] else platform
    sku = f"{r['provider'] or 'unknown'}/{r['model']}" if part == "model_cost" else _PART_SKU[part]
    split = is_split(r["method"])
    amount = float(r["amount"])
    tags = {
        "yieldmeter.team": r["team"],
        "yieldmeter.workflow": r["workflow"],
        "yieldmeter.cost_centre": r["cost_centre"],
        "yieldmeter.cost_part": part,
        "yieldmeter.allocation": r["method"],
    }
    credit = amount < 0
    quantity, unit = pricing(r)
    priced = not credit and quantity > 0
    unit_price = amount / quantity if priced else None
    consumed = (float(r["calls"] or 0.0), "Requests") if part == "model_cost" else (quantity, "Units")
    row: dict[str, Any] = {
        "AvailabilityZone": None,
        "BilledCost": amount,
        "BillingAccountId": platform,
        "BillingAccountName": platform,
        "BillingCurrency": "USD",
        "BillingPeriodEnd": _iso(b1),
        "BillingPeriodStart": _iso(b0),
        "ChargeCategory": "Credit" if credit else "Usage",
        "ChargeClass": None,
        "ChargeDescription": f"{_PART_TEXT[part]} of {r['workflow'] or 'no workflow'} "
        f"for team {r['team']} ({r['method'].replace('_', ' ')})",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": _iso(day + timedelta(days=1)),
        "ChargePeriodStart": _iso(day),
        "CommitmentDiscountCategory": None,
        "CommitmentDiscountId": None,
        "CommitmentDiscountName": None,
        "CommitmentDiscountStatus": None,
        "CommitmentDiscountType": None,
        # FOCUS: ConsumedQuantity only on Usage rows
        "ConsumedQuantity": None if credit else consumed[0],
        "ConsumedUnit": None if credit else consumed[1],
        "ContractedCost": amount,
        "ContractedUnitPrice": unit_price,
        "EffectiveCost": amount,
        "InvoiceIssuerName": platform,
        "ListCost": amount,
        "ListUnitPrice": unit_price,
        "PricingCategory": None if credit else "Standard" if part == "model_cost" else "Other",
        "PricingQuantity": quantity if priced else None,
        "PricingUnit": unit if priced else None,
        "ProviderName": platform,
        "PublisherName": publisher,
        "RegionId": None,
        "RegionName": None,
        "ResourceId": r["workflow"],
        "ResourceName": r["workflow"],
        "ResourceType": "Workflow" if r["workflow"] else None,
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": "yieldmeter allocation",
        "SkuId": sku,
        "SkuPriceId": f"{sku}@{unit.replace(' ', '-').lower()}" if priced else None,
        "SubAccountId": r["team"],
        "SubAccountName": r["team"],
        "Tags": json.dumps(tags, sort_keys=True),
        "CapacityReservationId": None,
        "CapacityReservationStatus": None,
        "CommitmentDiscountQuantity": None,
        "CommitmentDiscountUnit": None,
        # an internal showback is on no provider invoice: InvoiceId null (FOCUS 1.2 InvoiceId-C-004-C)
        "InvoiceId": None,
        # priced in the billing currency: the pricing-currency columns repeat the USD figures
        "PricingCurrency": "USD",
        "PricingCurrencyContractedUnitPrice": unit_price,
        "PricingCurrencyEffectiveCost": amount,
        "PricingCurrencyListUnitPrice": unit_price,
        "ServiceSubcategory": "Generative AI",
        "SkuMeter": _PART_TEXT[part],
        "SkuPriceDetails": None,
        "ServiceProviderName": platform,
        "HostProviderName": publisher,
        "AllocatedMethodId": method_id(r["method"]) if split else None,
        "AllocatedMethodDetails": json.dumps(method_details(r), sort_keys=True) if split else None,
        "AllocatedResourceId": r["team"] if split else None,
        "AllocatedResourceName": r["team"] if split else None,
        "AllocatedTags": json.dumps({"yieldmeter.cost_centre": r["cost_centre"]}) if split else None,
        "x_CostPart": part,
        "x_Workflow": r["workflow"],
        "x_CostCentre": r["cost_centre"],
        "x_OriginChargeId": r["origin_id"],
        "x_OriginAmount": float(r["origin_amount"]),
    }
    return row


_FLOATS = {"BilledCost", "CommitmentDiscountQuantity", "ConsumedQuantity", "ContractedCost",
           "ContractedUnitPrice", "EffectiveCost", "ListCost", "ListUnitPrice", "PricingQuantity",
           "PricingCurrencyContractedUnitPrice", "PricingCurrencyEffectiveCost",
           "PricingCurrencyListUnitPrice", "x_OriginAmount"}  # fmt: skip


def focus_rows(alloc: pa.Table, settings: ChargebackSettings, *, version: str = "1.3") -> pa.Table:
    """The FOCUS table of an allocation (columns of ``version``, then the ``x_`` columns)."""
    if version not in VERSIONS:
        raise InputError(
            f"FOCUS version {version!r} is not supported; choose {' or '.join(VERSIONS)}", field="version"
        )
    names = [*COLUMNS[version], *EXTRA]
    rows = [focus_row(r, settings) for r in alloc.to_pylist()]
    schema = pa.schema([(n, pa.float64() if n in _FLOATS else pa.string()) for n in names])
    return pa.Table.from_pylist([{n: row.get(n) for n in names} for row in rows], schema=schema)


def write(table: pa.Table, path: Path) -> None:
    """CSV, or Parquet when the path ends in .parquet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
        return
    import csv

    # Python's csv module with repr() floats: "1.0", never "1", so a typed reader sees decimals.
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(table.column_names)
        for row in zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True):
            writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
