"""Routing exports a router can use: a plain JSON policy and a LiteLLM proxy configuration.

The **policy** maps each segment (workflow x task type) to a model, with the evidence: the action
(switch, experiment, keep, insufficient_data), the tests' p-values and margin, and per model its
volume, success rate and fully loaded cost per unit (what :mod:`.replay` needs to price a
counterfactual). It round-trips: :func:`policy_from_report` -> :func:`Policy.to_json` ->
:func:`load_policy`.

The **LiteLLM config** (``config.yaml`` of the LiteLLM proxy) routes by tag: every deployment in
``model_list`` serves the public model name :data:`ROUTE_NAME` and carries the tags of the segments
routed to it (``<workflow>/<task_type>``) and of its workflow's tier (``<workflow>/tier:<tier>``);
``router_settings.enable_tag_filtering: true`` makes the proxy send a request tagged
``claims/extraction`` to the deployment that holds that tag. An experiment puts the incumbent and
the candidate under the same tag with ``weight`` set to the traffic split (LiteLLM's
simple-shuffle picks deployments in proportion to ``weight``). Untagged requests go to the
deployment tagged ``default`` (the most used incumbent).

Only experiments that decide within the policy's ``max_days`` split traffic: every experiment in the
policy carries the work units and days it needs, and one that would need longer (a hand-edited file,
or a policy written with another limit) stays on its incumbent in the LiteLLM config. A segment kept
as *not testable at this volume* carries the experiment it would need under
``evidence["not_testable"]`` and is never split.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from yieldmeter.errors import InputError, read_text_file
from yieldmeter.routing.recommend import Action, Experiment, ModelEvidence, RoutingSettings, _finite
from yieldmeter.routing.report import RoutingReport

POLICY_VERSION = 1
ROUTE_NAME = "yieldmeter-route"
DEFAULT_MAX_DAYS = RoutingSettings().max_days


class PolicyError(InputError):
    """A policy file that cannot be used; the message names the file, the entry and the key."""


@dataclass(frozen=True)
class ModelFigures:
    """A model's evidence in a segment; replay needs the first three, people read the rest."""

    n: int
    success_rate: float
    cost_per_unit: float
    success_low: float | None = None
    success_high: float | None = None
    cost_per_success: float | None = None
    cost_per_success_low: float | None = None
    cost_per_success_high: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p95_low_ms: float | None = None
    latency_p95_high_ms: float | None = None
    latency_p99_ms: float | None = None


@dataclass(frozen=True)
class PolicyEntry:
    workflow: str
    task_type: str
    action: str
    model: str
    incumbent: str
    tier: str = "routine"
    experiment_model: str | None = None
    experiment_share: float | None = None
    #: an experiment's size: work units (both arms) and days at the segment's volume
    experiment_units: int | None = None
    experiment_days: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    models: dict[str, ModelFigures] = field(default_factory=dict)

    @property
    def segment(self) -> str:
        return f"{self.workflow}/{self.task_type}"

    @property
    def routes(self) -> bool:
        """Whether the entry moves traffic (only a switch does; the rest leave traffic as it is)."""
        return self.action == Action.SWITCH.value

    def splits(self, max_days: int) -> bool:
        """Whether the entry is an experiment that decides within ``max_days`` (only those split)."""
        return (
            self.action == Action.EXPERIMENT.value
            and bool(self.experiment_model)
            and bool(self.experiment_share)
            and self.experiment_days is not None
            and 0 <= self.experiment_days <= max_days
        )


@dataclass(frozen=True)
class Policy:
    entries: tuple[PolicyEntry, ...]
    generated_at: str = ""
    period: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def entry(self, workflow: str, task_type: str) -> PolicyEntry | None:
        return next((e for e in self.entries if e.workflow == workflow and e.task_type == task_type), None)

    @property
    def max_days(self) -> int:
        """The longest experiment the policy allows (its settings; 28 days when a file omits it)."""
        return int(self.settings.get("max_days") or DEFAULT_MAX_DAYS)

    def to_dict(self) -> dict[str, Any]:
        return _finite(
            {
                "yieldmeter_routing_policy": POLICY_VERSION,
                "generated_at": self.generated_at,
                "period": self.period,
                "settings": self.settings,
                "segments": [asdict(e) for e in self.entries],
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


def _figures(m: ModelEvidence) -> ModelFigures:
    return ModelFigures(
        m.n,
        m.success_rate,
        m.cost_per_unit,
        m.success_low,
        m.success_high,
        m.cost_per_success,
        m.cost_per_success_low,
        m.cost_per_success_high,
        m.latency_p50_ms,
        m.latency_p95_ms,
        m.latency_p95_low_ms,
        m.latency_p95_high_ms,
        m.latency_p99_ms,
    )


def _plan(e: Experiment, max_days: int) -> dict[str, Any]:
    return {
        "model": e.model,
        "traffic_share": e.traffic_share,
        "units_needed": e.units_needed if e.units_needed >= 0 else None,
        "candidate_units": e.candidate_units if e.candidate_units >= 0 else None,
        "days_needed": e.days if e.days >= 0 else None,
        "max_days": max_days,
    }


def policy_from_report(report: RoutingReport, now: datetime | None = None) -> Policy:
    entries = []
    s = report.settings
    for d in report.decisions:
        e = d.experiment
        evidence: dict[str, Any] = {
            "reason": d.reason,
            "units": d.n,
            "monthly_units": d.monthly_units,
            "margin": d.margin,
            "alpha": d.alpha,
            "p_cheaper": d.p_cheaper,
            "p_non_inferior": d.p_non_inferior,
            "p_lower": d.p_lower,
            "monthly_saving": d.monthly_saving,
            "monthly_success_change": d.monthly_success_change,
        }
        if e is not None:
            evidence["experiment"] = _plan(e, s.max_days)
        if d.not_testable is not None:
            evidence["not_testable"] = _plan(d.not_testable, s.max_days)
            evidence["potential_monthly_saving"] = d.potential_monthly_saving
        entries.append(
            PolicyEntry(
                workflow=d.workflow,
                task_type=d.task_type,
                action=str(d.action),
                model=d.model,
                incumbent=d.incumbent,
                tier=str(d.tier),
                experiment_model=e.model if e else None,
                experiment_share=e.traffic_share if e else None,
                experiment_units=e.units_needed if e else None,
                experiment_days=e.days if e else None,
                evidence=evidence,
                models={m.model: _figures(m) for m in d.models},
            )
        )
    return Policy(
        entries=tuple(entries),
        generated_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        period={
            "start": report.period_start.isoformat() if report.period_start else None,
            "end": report.period_end.isoformat() if report.period_end else None,
            "days": report.period_days,
        },
        settings={
            "alpha": s.alpha,
            "power": s.power,
            "min_units": s.min_units,
            "margins": dict(s.margins),
            "max_days": s.max_days,
        },
    )


def _req(obj: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in obj or obj[key] is None:
        raise PolicyError(f"{where}: missing {key!r}")
    if not isinstance(obj[key], kind):
        raise PolicyError(f"{where}: {key!r} should be {getattr(kind, '__name__', kind)}, got {obj[key]!r}")
    return obj[key]


def parse_policy(data: Any, source: str = "policy") -> Policy:
    """A :class:`Policy` from decoded JSON; errors say which segment and key is wrong."""
    if not isinstance(data, dict) or data.get("yieldmeter_routing_policy") != POLICY_VERSION:
        raise PolicyError(
            f'{source}: not a yieldmeter routing policy (expected "yieldmeter_routing_policy": 1)'
        )
    segs = data.get("segments")
    if not isinstance(segs, list):
        raise PolicyError(f"{source}: 'segments' should be a list")
    entries = []
    actions = {a.value for a in Action}
    for i, s in enumerate(segs):
        where = f"{source}, segments[{i}]"
        if not isinstance(s, dict):
            raise PolicyError(f"{where}: should be an object")
        action = _req(s, "action", where, str)
        if action not in actions:
            raise PolicyError(f"{where}: action {action!r} is not one of {', '.join(sorted(actions))}")
        models = {}
        for name, m in (s.get("models") or {}).items():
            mw = f"{where}.models[{name!r}]"
            if not isinstance(m, dict):
                raise PolicyError(f"{mw}: should be an object")
            extra = {k: _opt_num(m, k, mw) for k in _OPTIONAL_FIGURES}
            models[name] = ModelFigures(
                int(_req(m, "n", mw, int)),
                float(_req(m, "success_rate", mw, (int, float))),
                float(_req(m, "cost_per_unit", mw, (int, float))),
                **extra,
            )
        exp_units = exp_days = None
        if action == Action.EXPERIMENT.value:
            # an experiment without its size cannot be judged against the time limit
            _req(s, "experiment_model", where, str)
            _req(s, "experiment_share", where, (int, float))
            exp_units = int(_req(s, "experiment_units", where, int))
            exp_days = int(_req(s, "experiment_days", where, int))
        entries.append(
            PolicyEntry(
                workflow=_req(s, "workflow", where, str),
                task_type=_req(s, "task_type", where, str),
                action=action,
                model=_req(s, "model", where, str),
                incumbent=s.get("incumbent") or s["model"],
                tier=s.get("tier") or "routine",
                experiment_model=s.get("experiment_model"),
                experiment_share=s.get("experiment_share"),
                experiment_units=exp_units,
                experiment_days=exp_days,
                evidence=dict(s.get("evidence") or {}),
                models=models,
            )
        )
    return Policy(
        tuple(entries), data.get("generated_at", ""), data.get("period") or {}, data.get("settings") or {}
    )


#: ModelFigures beyond what replay needs: optional in a file, numbers when present
_OPTIONAL_FIGURES = tuple(ModelFigures.__dataclass_fields__)[3:]


def _opt_num(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PolicyError(f"{where}: {key!r} should be a number, got {v!r}")
    return float(v)


def load_policy(path: Path | str) -> Policy:
    p = Path(path)
    if not p.exists():
        raise PolicyError(f"{p}: no such file")
    try:
        data = json.loads(read_text_file(p, PolicyError))
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{p}, line {exc.lineno}: not valid JSON: {exc.msg}") from None
    return parse_policy(data, str(p))


#: Provider names as telemetry spells them (OpenTelemetry ``gen_ai.provider.name`` and its legacy
#: ``gen_ai.system``, gateway spellings) -> LiteLLM's provider prefix. A prefix LiteLLM does not
#: know makes the whole proxy config fail to load ("LLM Provider NOT provided").
LITELLM_PROVIDERS = {
    "gcp.gemini": "gemini",
    "google_genai": "gemini",
    "gcp.vertex_ai": "vertex_ai",
    "gcp.gen_ai": "vertex_ai",
    "vertex": "vertex_ai",
    "aws.bedrock": "bedrock",
    "amazon": "bedrock",
    "anthropic.bedrock": "bedrock",
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure_openai": "azure",
    "azure.ai.inference": "azure_ai",
    "az.ai.inference": "azure_ai",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "x_ai": "xai",
    "ibm.watsonx.ai": "watsonx",
    # LangChain's ls_provider spellings (what Langfuse exports carry)
    "google_vertexai": "vertex_ai",
    "amazon_bedrock": "bedrock",
    "together": "together_ai",
    "fireworks": "fireworks_ai",
}
#: LiteLLM provider -> the environment variable its key is read from (``os.environ/...``); Bedrock
#: and Vertex AI take the cloud's own credentials instead of a key.
_PROVIDER_KEYS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "azure": "AZURE_API_KEY",
    "azure_ai": "AZURE_AI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "cohere": "COHERE_API_KEY",
    "groq": "GROQ_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "xai": "XAI_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
}


def litellm_provider(provider: str | None) -> str | None:
    """LiteLLM's prefix for a provider as telemetry names it (unknown names pass unchanged)."""
    if not provider:
        return None
    name = provider.strip().lower()
    return LITELLM_PROVIDERS.get(name, name)


def _litellm_model(model: str, provider: str | None) -> str:
    return f"{provider}/{model}" if provider and "/" not in model else model


def litellm_config(policy: Policy, providers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The LiteLLM proxy config (as a mapping) that applies ``policy`` by tag."""
    providers = providers or {}
    # deployment key: (model, weight) -> tags
    deployments: dict[tuple[str, int], list[str]] = {}
    usage: dict[str, int] = {}
    max_days = policy.max_days
    for e in policy.entries:
        usage[e.incumbent] = usage.get(e.incumbent, 0) + int(e.evidence.get("units") or 0)
        if e.splits(max_days):
            assert e.experiment_model is not None and e.experiment_share is not None
            share = round(float(e.experiment_share) * 100)
            deployments.setdefault((e.incumbent, 100 - share), []).append(e.segment)
            deployments.setdefault((e.experiment_model, share), []).append(e.segment)
            continue
        deployments.setdefault((e.model if e.routes else e.incumbent, 100), []).append(e.segment)
    default_model = max(usage, key=lambda m: (usage[m], m)) if usage else None
    # workflow/tier tags only where every segment of that workflow and tier goes to one model
    by_wt: dict[str, set[str]] = {}
    for e in policy.entries:
        if not e.splits(max_days):
            by_wt.setdefault(f"{e.workflow}/tier:{e.tier}", set()).add(e.model if e.routes else e.incumbent)
    for tag, models in by_wt.items():
        if len(models) == 1:
            deployments.setdefault((next(iter(models)), 100), []).append(tag)
    if default_model is not None and (default_model, 100) not in deployments:
        # the incumbent moved everywhere: it still takes untagged and unmatched requests
        deployments[(default_model, 100)] = []
    model_list = []
    for (model, weight), tags in sorted(deployments.items()):
        provider = litellm_provider(providers.get(model))
        params: dict[str, Any] = {"model": _litellm_model(model, provider)}
        key = _PROVIDER_KEYS.get(provider or "")
        if key:
            params["api_key"] = f"os.environ/{key}"
        tags = sorted(set(tags))
        if model == default_model and weight == 100:
            tags.append("default")
        params["tags"] = tags
        if weight != 100:
            params["weight"] = weight
        model_list.append({"model_name": ROUTE_NAME, "litellm_params": params})
    return {
        "model_list": model_list,
        "router_settings": {"enable_tag_filtering": True, "routing_strategy": "simple-shuffle"},
    }


def litellm_yaml(policy: Policy, providers: Mapping[str, str] | None = None) -> str:
    """The config as YAML, with a header that says where it came from and what each tag does."""
    header = [
        "# LiteLLM proxy config written by `yieldmeter route --format litellm`.",
        f"# Policy generated {policy.generated_at}; evidence period {policy.period.get('start')} .. "
        f"{policy.period.get('end')}.",
        f'# Call model {ROUTE_NAME!r} with tags=["<workflow>/<task_type>"] (or "<workflow>/tier:<tier>").',
        "# segment -> model (action): evidence",
    ]
    for e in policy.entries:
        target = e.model if e.routes else e.incumbent
        if e.splits(policy.max_days):
            extra = (
                f", experiment {e.experiment_share:.0%} to {e.experiment_model} for {e.experiment_days} days"
            )
        elif e.action == Action.EXPERIMENT.value:
            extra = f", experiment not applied: needs {e.experiment_days} days, limit {policy.max_days}"
        elif "not_testable" in e.evidence:
            days = (e.evidence["not_testable"] or {}).get("days_needed")
            extra = f", not testable at this volume: {'no' if days is None else days} days would settle it"
        else:
            extra = ""
        reason = str(e.evidence.get("reason", ""))
        header.append(f"#   {e.segment} -> {target} ({e.action}{extra}): {reason}"[:260])
    body = yaml.safe_dump(litellm_config(policy, providers), sort_keys=False)
    return "\n".join(header) + "\n" + body
