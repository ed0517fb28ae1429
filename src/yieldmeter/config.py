"""The workspace configuration: ``yieldmeter.yaml``, validated with pydantic.

A wrong key or type is reported with the file, the line and the key path, and
what was expected, e.g.::

    yieldmeter.yaml, line 12 (workflows[0].unit_value): Input should be a valid number
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from yieldmeter.errors import read_text_file
from yieldmeter.schema import RISK_CLASSES, ValueDimension

CONFIG_FILE = "yieldmeter.yaml"
STORE_DIR = ".yieldmeter"


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Workflow(_Strict):
    workflow: str
    process: str | None = None
    owner: str | None = None
    team: str | None = None
    value_dimension: ValueDimension | None = None
    outcome_definition: str | None = None
    unit_value: float | None = Field(default=None, ge=0, description="USD of value per successful unit")
    baseline_cost: float | None = Field(default=None, ge=0, description="USD per unit without AI")
    baseline_minutes: float | None = Field(
        default=None, ge=0, description="human minutes per unit without AI"
    )
    quality_threshold: float | None = Field(default=None, ge=0, le=100, description="minimum value score")
    risk_class: Literal["low", "medium", "high", "critical"] | None = None
    latency_slo_ms: float | None = Field(default=None, ge=0)
    labour_rate: float | None = Field(default=None, ge=0, description="USD per hour")
    recontact_window_days: float = Field(default=7.0, ge=0)
    initiative: str | None = None


class PriceOverride(_Strict):
    """A negotiated price, a private model, or an owned-infrastructure rate.

    Either absolute prices (USD per million tokens) or a ``discount`` on the
    catalog price of the same model.
    """

    model: str
    provider: str | None = None
    input: float | None = Field(default=None, ge=0)
    output: float | None = Field(default=None, ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    discount: float | None = Field(default=None, ge=0, le=1)
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    note: str | None = None


class LabourRates(_Strict):
    default: float = Field(default=60.0, ge=0, description="USD per hour when nothing more specific is known")
    teams: dict[str, float] = Field(default_factory=dict)
    people: dict[str, float] = Field(default_factory=dict)


class Privacy(_Strict):
    min_group_size: int = Field(default=5, ge=1)
    capture_content: bool = Field(default=False, description="store prompt and completion text")


class Ingest(_Strict):
    #: processes a large file of OTLP JSON lines is decoded in: 0 (the importing process alone),
    #: a number, or ``auto`` (one per core, at most 4: :func:`yieldmeter.ingest.base.default_workers`)
    decode_workers: Annotated[int, Field(strict=True, ge=0, le=32)] | Literal["auto"] = 0


class Initiative(_Strict):
    initiative: str
    owner: str | None = None
    budget: float | None = Field(default=None, ge=0)
    workflows: list[str] = Field(default_factory=list)


class Engine(_Strict):
    """The ``engine:`` section: which engine reports run on, over which lake (yieldmeter.lake).

    Checked here so a mistake names the file, the line and the key like every other section;
    :meth:`yieldmeter.lake.engines.EngineSettings.resolve` reads it as a mapping (:meth:`settings`).
    """

    name: str | None = None
    engine: str | None = None  # another spelling of ``name``
    lake: str | None = None
    master: str | None = None
    spark_conf: dict[str, str | int | float | bool] = Field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """The keys set (an empty ``lake: ''`` is one: it puts a lake aside)."""
        return self.model_dump(exclude_none=True)


class Config(_Strict):
    workflows: list[Workflow] = Field(default_factory=list)
    prices: list[PriceOverride] = Field(default_factory=list)
    labour_rates: LabourRates = Field(default_factory=LabourRates)
    privacy: Privacy = Field(default_factory=Privacy)
    ingest: Ingest = Field(default_factory=Ingest)
    initiatives: list[Initiative] = Field(default_factory=list)
    #: Maps a score name (Langfuse scores, evaluation events) to a signal kind.
    score_signals: dict[str, str] = Field(default_factory=dict)
    #: Free-form sections that later capabilities read (capacity, alerts, engine...).
    capacity: dict[str, Any] = Field(default_factory=dict)
    alerts: dict[str, Any] = Field(default_factory=dict)
    #: Showback/chargeback rules: cost centres per team, how shared cost is spread (yieldmeter.finops).
    chargeback: dict[str, Any] = Field(default_factory=dict)
    engine: Engine = Field(default_factory=Engine)
    server: dict[str, Any] = Field(default_factory=dict)

    @field_validator("workflows")
    @classmethod
    def _unique_workflows(cls, v: list[Workflow]) -> list[Workflow]:
        seen: set[str] = set()
        for w in v:
            if w.workflow in seen:
                raise ValueError(f"workflow {w.workflow!r} is declared twice")
            seen.add(w.workflow)
        return v

    def workflow(self, name: str) -> Workflow | None:
        return next((w for w in self.workflows if w.workflow == name), None)


assert set(RISK_CLASSES) == {"low", "medium", "high", "critical"}


def _line_index(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each key path of a YAML document to its 1-based line."""
    index: dict[tuple[str | int, ...], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return index

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                index[(*path, k.value)] = k.start_mark.line + 1
                walk(v, (*path, k.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                index[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return index


def _format_loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(text: str, *, source: str = CONFIG_FILE) -> Config:
    """Parse and validate YAML text; errors name ``source``, the line and the key."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = _line_index(text)
        messages = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = None
            for cut in range(len(loc), -1, -1):
                if loc[:cut] in lines:
                    line = lines[loc[:cut]]
                    break
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check its spelling; see the commented template from `yieldmeter init`)"
            where = f", line {line}" if line else ""
            messages.append(f"{source}{where} ({_format_loc(loc)}): {msg}")
        raise ConfigError("\n".join(messages)) from None


def load_config(path: Path) -> Config:
    """Load ``yieldmeter.yaml`` at ``path``; a missing file is an empty config."""
    if not path.exists():
        return Config()
    return parse_config(read_text_file(path, ConfigError), source=str(path))


TEMPLATE = """\
# yieldmeter workspace configuration.
# Every key is optional; `yieldmeter status` shows what the store holds.

# The workflow catalog: what each piece of AI work is for and what it is worth.
workflows:
  - workflow: claims-triage          # the name calls and work units carry
    process: claims                  # the business process it serves
    owner: head-of-claims            # the benefit owner
    team: claims-ops
    value_dimension: cycle_time      # revenue, margin, loss_avoided, throughput, quality,
                                     # cycle_time, resilience, capacity, strategic
    outcome_definition: claim routed to the right queue without rework
    unit_value: 4.0                  # USD of value per successful work unit
    baseline_cost: 6.5               # USD per unit before AI
    baseline_minutes: 9              # human minutes per unit before AI
    quality_threshold: 60            # minimum interaction value score (0-100) to count as success
    risk_class: medium               # low, medium, high, critical
    latency_slo_ms: 20000
    labour_rate: 55                  # USD per hour of review time for this workflow
    recontact_window_days: 7

# Price overrides, USD per million tokens. They win over the genai-prices catalog.
prices: []
#  - model: gpt-4o                   # a negotiated discount on the catalog price
#    provider: openai
#    discount: 0.15
#  - model: acme-internal-llm        # a private model or owned infrastructure
#    provider: acme
#    input: 0.40
#    output: 0.80
#    valid_from: 2025-01-01T00:00:00Z

# Human effort is costed at minutes x rate (USD per hour): person, else workflow, else team, else default.
labour_rates:
  default: 60
  teams: {}
  people: {}

privacy:
  min_group_size: 5                  # team views hide groups smaller than this
  capture_content: false             # prompt and completion text is never stored unless true

# Portfolio level above workflows (owner and budget), for roll-ups a board funds.
initiatives: []

# Map score names (Langfuse scores, evaluation events) to signal kinds, e.g. helpful: accepted
score_signals: {}

# File imports. decode_workers: processes that decode a large file of OTLP JSON lines beside the
# importing process (0: none; up to 32; auto: one per core, at most 4). With 2 on 2 cores a
# 1M-span import ran 1.05x faster (the default already reads ahead on a second thread) and held
# up to 670 MB more; they pay on more cores (docs/telemetry.md, Throughput).
ingest:
  decode_workers: 0
"""
