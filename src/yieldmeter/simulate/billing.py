"""The organisation's non-token AI cost as FOCUS 1.x rows, and its ``yieldmeter.yaml``.

Token spend is not billed here (it comes from the traces and the price
catalog); these rows are what a cloud or SaaS bill adds on top: a GPU node for
the self-hosted model, a vector store, document OCR, coding-assistant seats,
the shared gateway and observability platform.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import yaml

from yieldmeter.config import parse_config
from yieldmeter.simulate.catalog import WorkflowSpec
from yieldmeter.simulate.engine import Org
from yieldmeter.simulate.scenarios import Scenario, SimulationParams
from yieldmeter.simulate.workflows import GPT4O_DISCOUNT


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _people(org: Org, scenario: Scenario, workflow: str) -> int:
    wi = [w.name for w in scenario.workflows].index(workflow)
    return int((org.workflow == wi).sum())


def focus_rows(scenario: Scenario, params: SimulationParams, org: Org) -> list[dict[str, Any]]:
    """Daily usage rows and monthly licence rows for the workflows of ``scenario``."""
    rng = np.random.default_rng([params.seed, 3])
    names = {w.name for w in scenario.workflows}
    start = params.start
    end = start + timedelta(days=params.days)
    rows: list[dict[str, Any]] = []

    def add(
        day0: datetime,
        day1: datetime,
        cost: float,
        *,
        provider: str,
        service: str,
        category: str,
        description: str,
        resource: str,
        sku: str,
        quantity: float,
        unit: str,
        tags: dict[str, str],
        charge: str = "Usage",
        frequency: str = "Usage-Based",
        region: str = "eu-west-1",
    ) -> None:
        billed = round(cost, 4)
        rows.append(
            {
                "BillingAccountId": "ba-4711",
                "BillingAccountName": "Acme Group",
                "BillingCurrency": "USD",
                "BillingPeriodStart": _iso(day0.replace(day=1)),
                "BillingPeriodEnd": _iso((day0.replace(day=28) + timedelta(days=4)).replace(day=1)),
                "ChargeCategory": charge,
                "ChargeClass": "",
                "ChargeDescription": description,
                "ChargeFrequency": frequency,
                "ChargePeriodStart": _iso(day0),
                "ChargePeriodEnd": _iso(day1),
                "BilledCost": billed,
                "EffectiveCost": billed,
                "ListCost": round(cost * 1.08, 4),
                "ContractedCost": billed,
                "ConsumedQuantity": round(quantity, 3),
                "ConsumedUnit": unit,
                "PricingQuantity": round(quantity, 3),
                "PricingUnit": unit,
                "ProviderName": provider,
                "PublisherName": provider,
                "InvoiceIssuerName": provider,
                "RegionId": region,
                "ResourceId": resource,
                "ResourceName": resource.rsplit("/", 1)[-1],
                "ResourceType": category,
                "ServiceCategory": category,
                "ServiceName": service,
                "SkuId": sku,
                "SubAccountId": "sa-ai-platform",
                "SubAccountName": "ai-platform",
                "Tags": json.dumps(tags, sort_keys=True),
            }
        )

    day = start
    while day < end:
        nxt = day + timedelta(days=1)
        jitter = float(rng.lognormal(0.0, 0.05))
        if "incident-agent" in names:
            add(
                day,
                nxt,
                2 * 5.672 * 24 * jitter,
                provider="AWS",
                service="Amazon Elastic Compute Cloud",
                category="Compute",
                description="g5.12xlarge on-demand, self-hosted acme-sre-llm",
                resource="arn:aws:ec2:eu-west-1:4711:instance/i-0sre-llm",
                sku="g5.12xlarge",
                quantity=48 * jitter,
                unit="Hours",
                tags={"team": "sre-core", "workflow": "incident-agent"},
            )
        if "board-analysis" in names:
            add(
                day,
                nxt,
                46.0 * jitter,
                provider="AWS",
                service="Amazon OpenSearch Service",
                category="Databases",
                description="vector index for analyst retrieval",
                resource="arn:aws:es:eu-west-1:4711:domain/analyst-rag",
                sku="or1.large.search",
                quantity=24,
                unit="Hours",
                tags={"team": "strategy", "workflow": "board-analysis"},
            )
        if "claims-processing" in names:
            pages = 4000 * jitter
            add(
                day,
                nxt,
                pages * 0.01,
                provider="Microsoft",
                service="Azure AI Document Intelligence",
                category="AI and Machine Learning",
                description="document OCR before extraction",
                resource="/subscriptions/4711/resourceGroups/claims/providers/docintel",
                sku="prebuilt-read",
                quantity=pages,
                unit="Pages",
                tags={"team": "claims-auto", "workflow": "claims-processing"},
                region="westeurope",
            )
        # Shared platform: the AI gateway, no single workflow (allocated pro rata to model cost).
        add(
            day,
            nxt,
            38.0 * jitter,
            provider="Microsoft",
            service="Azure Container Apps",
            category="Compute",
            description="LLM gateway (LiteLLM proxy) replicas",
            resource="/subscriptions/4711/resourceGroups/ai-platform/providers/containerapps/llm-gateway",
            sku="consumption",
            quantity=72,
            unit="vCPU-Hours",
            tags={"team": "ai-platform"},
            region="westeurope",
        )
        day = nxt

    month = start
    while month < end:
        month_end = min(end, (month.replace(day=28) + timedelta(days=4)).replace(day=1))
        share = (month_end - month).days / 30.0
        add(
            month,
            month_end,
            1200.0 * share,
            provider="Datadog",
            service="LLM Observability",
            category="Management and Governance",
            description="LLM observability, shared",
            resource="datadog/llm-obs",
            sku="llm-obs-spans",
            quantity=1,
            unit="Subscription",
            tags={"team": "ai-platform"},
            charge="Purchase",
            frequency="Recurring",
            region="",
        )
        if "software-delivery" in names:
            seats = _people(org, scenario, "software-delivery")
            add(
                month,
                month_end,
                19.0 * seats * share,
                provider="GitHub",
                service="GitHub Copilot Business",
                category="Developer Tools",
                description="coding assistant seats",
                resource="github/acme/copilot",
                sku="copilot-business",
                quantity=seats,
                unit="Seats",
                tags={"team": "eng-platform", "workflow": "software-delivery"},
                charge="Purchase",
                frequency="Recurring",
                region="",
            )
        if "customer-support" in names:
            seats = _people(org, scenario, "customer-support")
            add(
                month,
                month_end,
                50.0 * seats * share,
                provider="Zendesk",
                service="Zendesk Advanced AI",
                category="AI and Machine Learning",
                description="helpdesk AI add-on seats",
                resource="zendesk/acme/advanced-ai",
                sku="advanced-ai",
                quantity=seats,
                unit="Seats",
                tags={"team": "support-emea", "workflow": "customer-support"},
                charge="Purchase",
                frequency="Recurring",
                region="",
            )
        month = month_end
    return rows


def workflow_entry(w: WorkflowSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "workflow": w.name,
        "process": w.process,
        "owner": w.owner,
        "team": w.teams[0],
        "value_dimension": w.value_dimension,
        "outcome_definition": w.outcome_definition,
        "unit_value": w.unit_value,
        "baseline_cost": w.baseline_cost,
        "baseline_minutes": w.baseline_minutes,
        "quality_threshold": w.quality_threshold,
        "risk_class": w.risk_class,
        "latency_slo_ms": w.latency_slo_ms,
        "labour_rate": w.labour_rate,
        "recontact_window_days": w.recontact_window_days,
    }
    return {k: v for k, v in entry.items() if v is not None}


def config_text(scenario: Scenario, params: SimulationParams) -> str:
    """``yieldmeter.yaml`` for the simulated organisation, checked against the real config model."""
    mid = params.start + timedelta(days=params.days // 2)
    data: dict[str, Any] = {
        "workflows": [workflow_entry(w) for w in scenario.workflows],
        "prices": [
            {
                "model": "gpt-4o",
                "provider": "openai",
                "discount": GPT4O_DISCOUNT,
                "valid_from": _iso(mid),
                "note": "enterprise agreement signed mid-period",
            }
        ],
        "labour_rates": {"default": 60.0, "teams": {}, "people": {}},
        "privacy": {"min_group_size": 5, "capture_content": False},
        # the platform team runs the gateway and observability for everyone: showback shares its cost out
        "chargeback": {"shared_teams": ["ai-platform"]},
        "initiatives": [
            {
                "initiative": "ai-in-operations",
                "owner": "coo",
                "budget": 7_500_000.0,  # a year of fully loaded cost, people included
                "workflows": [w.name for w in scenario.workflows],
            },
        ],
    }
    header = (
        f"# Simulated organisation: scenario {scenario.name!r}, seed {params.seed}, "
        f"{params.days} days from {params.start.date()}.\n# Written by `yieldmeter simulate`.\n"
    )
    text = header + yaml.safe_dump(data, sort_keys=False)
    parse_config(text, source="simulated yieldmeter.yaml")
    return text
