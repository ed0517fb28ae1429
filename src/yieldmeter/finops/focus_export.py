"""``yieldmeter export focus``: the allocation as FOCUS cost-and-usage rows.

One FOCUS row per allocation row of :func:`.showback.allocate` (a charge and
the team it goes to), so an existing FinOps tool can take yieldmeter's
showback/chargeback in:

- costs: ``BilledCost`` = ``EffectiveCost`` = ``ListCost`` = ``ContractedCost``
  = the allocated amount (USD). yieldmeter does not know list prices apart
  from what it charged, so all four are the same figure;
- who: ``SubAccountId``/``SubAccountName`` = the team, ``Tags`` carry team,
  workflow, cost centre, cost part and allocation method (``yieldmeter.*``
  keys, which yieldmeter's own FOCUS importer reads back);
- what: ``ResourceId`` = the workflow, ``SkuId`` = provider/model for model
  cost, ``allocated-cost`` or ``effort`` otherwise; ``ConsumedQuantity`` =
  calls (unit ``Requests``) for model cost, else 1 ``Allocation``;
- FOCUS 1.3 split cost allocation: a shared charge split over teams has
  ``AllocatedMethodId`` (``yieldmeter-proportional``, ``-even`` or ``-fixed``),
  ``AllocatedMethodDetails`` = ``{"Elements": [{"AllocatedRatio": r,
  "UsageUnit": "USD", "UsageQuantity": the team's direct cost}]}`` (ratios of
  one charge add up to 1), ``AllocatedResourceId``/``Name`` = the receiving
  team and ``AllocatedTags`` = its cost centre. Direct charges are not split:
  their Allocated* columns are null, as the specification requires.

``version="1.0"`` writes the FOCUS 1.0 names (``ProviderName``,
``PublisherName``) without the 1.1+ and 1.3 columns, for tools (and the
FinOps Foundation's ``focus-validator`` 1.0) that read only 1.0.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from yieldmeter.finops.settings import ChargebackSettings

VERSIONS = ("1.0", "1.3")
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
#: 1.3: 1.0 with ProviderName/PublisherName renamed, the 1.1+ columns used here, and the Allocated* columns.
_RENAMED_1_3 = {"ProviderName": "ServiceProviderName", "PublisherName": "HostProviderName"}
COLUMNS_1_3 = (
    *(_RENAMED_1_3.get(c, c) for c in COLUMNS_1_0),
    "ServiceSubcategory", "SkuMeter", "SkuPriceDetails", "AllocatedMethodId", "AllocatedMethodDetails",
    "AllocatedResourceId", "AllocatedResourceName", "AllocatedTags",
)  # fmt: skip
EXTRA = ("x_CostPart", "x_Workflow", "x_CostCentre", "x_OriginChargeId", "x_OriginAmount")
_PART_SKU = {"allocated_cost": "allocated-cost", "effort_cost": "effort"}
_PART_TEXT = {
    "model_cost": "AI model cost",
    "allocated_cost": "allocated platform cost",
    "effort_cost": "human effort",
}


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _month(dt: datetime) -> tuple[datetime, datetime]:
    a = datetime(dt.year, dt.month, 1, tzinfo=UTC)
    return a, datetime(dt.year + (dt.month == 12), dt.month % 12 + 1, 1, tzinfo=UTC)


def focus_row(r: dict[str, Any], settings: ChargebackSettings) -> dict[str, Any]:
    day: datetime = r["day"].astimezone(UTC) if r["day"].tzinfo else r["day"].replace(tzinfo=UTC)
    b0, b1 = _month(day)
    part = r["cost_part"]
    provider = r["provider"] if part == "model_cost" and r["provider"] else "internal"
    sku = f"{r['provider'] or 'unknown'}/{r['model']}" if part == "model_cost" else _PART_SKU[part]
    split = r["method"] not in ("direct", "unallocated")
    amount = float(r["amount"])
    tags = {
        "yieldmeter.team": r["team"],
        "yieldmeter.workflow": r["workflow"],
        "yieldmeter.cost_centre": r["cost_centre"],
        "yieldmeter.cost_part": part,
        "yieldmeter.allocation": r["method"],
    }
    usage = part == "model_cost" and (r["calls"] or 0) > 0
    row: dict[str, Any] = {
        "AvailabilityZone": None,
        "BilledCost": amount,
        "BillingAccountId": settings.billing_account,
        "BillingAccountName": settings.billing_account,
        "BillingCurrency": "USD",
        "BillingPeriodEnd": _iso(b1),
        "BillingPeriodStart": _iso(b0),
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeDescription": f"{_PART_TEXT[part]} of {r['workflow'] or 'no workflow'} "
        f"for team {r['team']} ({r['method']})",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": _iso(day + timedelta(days=1)),
        "ChargePeriodStart": _iso(day),
        "CommitmentDiscountCategory": None,
        "CommitmentDiscountId": None,
        "CommitmentDiscountName": None,
        "CommitmentDiscountStatus": None,
        "CommitmentDiscountType": None,
        "ConsumedQuantity": float(r["calls"]) if usage else 1.0,
        "ConsumedUnit": "Requests" if usage else "Allocation",
        "ContractedCost": amount,
        "ContractedUnitPrice": None,
        "EffectiveCost": amount,
        "InvoiceIssuerName": settings.billing_account,
        "ListCost": amount,
        "ListUnitPrice": None,
        "PricingCategory": "Other",
        "PricingQuantity": None,
        "PricingUnit": None,
        "ProviderName": provider,
        "PublisherName": provider,
        "RegionId": None,
        "RegionName": None,
        "ResourceId": r["workflow"],
        "ResourceName": r["workflow"],
        "ResourceType": "Workflow" if r["workflow"] else None,
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": "yieldmeter allocation",
        "SkuId": sku,
        "SkuPriceId": None,
        "SubAccountId": r["team"],
        "SubAccountName": r["team"],
        "Tags": json.dumps(tags, sort_keys=True),
        "ServiceSubcategory": "Generative AI",
        "SkuMeter": _PART_TEXT[part],
        "SkuPriceDetails": None,
        "AllocatedMethodId": f"yieldmeter-{r['method']}" if split else None,
        "AllocatedMethodDetails": json.dumps(
            {
                "Elements": [
                    {
                        "AllocatedRatio": float(r["ratio"]),
                        "UsageUnit": "USD",
                        "UsageQuantity": float(r["basis"] or 0.0),
                    }
                ]
            }
        )
        if split
        else None,
        "AllocatedResourceId": r["team"] if split else None,
        "AllocatedResourceName": r["team"] if split else None,
        "AllocatedTags": json.dumps({"yieldmeter.cost_centre": r["cost_centre"]}) if split else None,
        "x_CostPart": part,
        "x_Workflow": r["workflow"],
        "x_CostCentre": r["cost_centre"],
        "x_OriginChargeId": r["charge_id"],
        "x_OriginAmount": float(r["origin_amount"]),
    }
    return row


_FLOATS = {"BilledCost", "ConsumedQuantity", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
           "ListCost", "ListUnitPrice", "PricingQuantity", "x_OriginAmount"}  # fmt: skip


def focus_rows(alloc: pa.Table, settings: ChargebackSettings, *, version: str = "1.3") -> pa.Table:
    """The FOCUS table of an allocation (columns of ``version``, then the ``x_`` columns)."""
    if version not in VERSIONS:
        raise ValueError(f"FOCUS version {version!r} is not supported; choose {' or '.join(VERSIONS)}")
    names = [*(COLUMNS_1_3 if version == "1.3" else COLUMNS_1_0), *EXTRA]
    rows = [focus_row(r, settings) for r in alloc.to_pylist()]
    if version == "1.3":
        for row in rows:
            row["ServiceProviderName"] = row.pop("ProviderName")
            row["HostProviderName"] = row.pop("PublisherName")
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
