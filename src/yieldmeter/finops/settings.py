"""The ``alerts:`` and ``chargeback:`` sections of ``yieldmeter.yaml``, validated.

``Config`` keeps both sections free-form; this module gives them a schema, so a
wrong key is reported with the section and the key path, e.g.::

    yieldmeter.yaml (alerts.webhook.url): must start with http:// or https://

Example::

    alerts:
      timezone: Europe/Paris          # calendar budget periods start at local midnight
      schedule_seconds: 300           # evaluation interval inside `yieldmeter serve`
      soft_channels: [dashboard]      # soft alerts only on the dashboard; hard ones go everywhere
      webhook:
        url: https://hooks.example.com/yieldmeter
        secret_env: YIELDMETER_WEBHOOK_SECRET   # or `secret:` inline (not recommended)
      email:
        host: smtp.example.com
        port: 587
        starttls: true
        from: yieldmeter@example.com
        to: [finops@example.com]
      rules:
        - kind: cost_per_successful_outcome_above
          workflow: claims-triage
          limit: 2.5
        - kind: yield_below
          limit: 1.0
        - kind: attribution_coverage_below
          limit: 0.6
        - kind: unpriced_share_above
          limit: 0.02

    chargeback:
      cost_centres: {claims-ops: CC-4100, fraud: CC-4200}
      shared: proportional            # or even, or a rule: {claims-ops: 0.7, fraud: 0.3}
      shared_teams: [ai-platform]     # their cost is split over the other teams like cost with no team
"""

from __future__ import annotations

import os
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from yieldmeter.config import CONFIG_FILE, Config, ConfigError

RuleKind = Literal[
    "cost_per_successful_outcome_above",
    "yield_below",
    "attribution_coverage_below",
    "unpriced_share_above",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WebhookSettings(_Strict):
    url: str
    #: HMAC-SHA256 key for the signature header; prefer ``secret_env``.
    secret: str | None = None
    secret_env: str | None = None
    timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    def key(self) -> bytes | None:
        """The signing key, read from the environment at send time (never at import)."""
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value is None:
                raise ConfigError(
                    f"{CONFIG_FILE} (alerts.webhook.secret_env): environment variable "
                    f"{self.secret_env} is not set"
                )
            return value.encode()
        return self.secret.encode() if self.secret else None


class EmailSettings(_Strict):
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    from_addr: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    starttls: bool = False
    #: CA bundle (PEM) that signs the server's certificate, for a private CA; else the system's CAs.
    ca_file: str | None = None
    username: str | None = None
    password_env: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _login(self) -> EmailSettings:
        if self.username and not self.password_env:
            raise ValueError("username needs password_env (the environment variable holding the password)")
        if self.username and not self.starttls:
            raise ValueError("username needs starttls: true (a password is never sent in clear text)")
        return self

    def password(self) -> str:
        """The SMTP password, read from the environment at send time (never at import)."""
        value = os.environ.get(self.password_env or "")
        if value is None:
            raise ConfigError(
                f"{CONFIG_FILE} (alerts.email.password_env): environment variable "
                f"{self.password_env} is not set"
            )
        return value


class UnitRule(_Strict):
    """An alert rule on unit economics, evaluated over the last ``window_days``."""

    kind: RuleKind
    limit: float
    workflow: str | None = Field(default=None, description="one workflow; none = every workflow")
    family: Literal["workflow", "revenue", "risk", "capacity"] | None = Field(
        default=None, description="yield family for yield_below; none = every monetary family"
    )
    window_days: int = Field(default=30, ge=1, le=366)
    severity: Literal["soft", "hard"] = "soft"


class AlertSettings(_Strict):
    timezone: str = "UTC"
    schedule_seconds: int = Field(default=300, ge=0, description="0 turns the schedule in serve off")
    evaluate_on_ingest: bool = True
    #: On a busy server ingest arrives every second; evaluate at most this often on ingest.
    ingest_min_interval_s: float = Field(default=30.0, ge=0)
    channels: list[Literal["log", "dashboard", "webhook", "email"]] = Field(
        default_factory=lambda: ["log", "dashboard", "webhook", "email"],
        description="where alerts go; webhook and email only when configured",
    )
    soft_channels: list[Literal["log", "dashboard", "webhook", "email"]] | None = Field(
        default=None,
        description="where soft alerts go (none set: every channel); [] or [dashboard] mutes soft "
        "deliveries. Hard alerts always go to every channel",
    )
    webhook: WebhookSettings | None = None
    email: EmailSettings | None = None
    rules: list[UnitRule] = Field(default_factory=list)

    @field_validator("schedule_seconds")
    @classmethod
    def _schedule(cls, v: int) -> int:
        if 0 < v < 5:
            raise ValueError("must be 0 (off) or at least 5 seconds")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r}; use an IANA name such as UTC or Europe/Paris"
            ) from None
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ChargebackSettings(_Strict):
    #: team -> cost centre; teams not listed are their own cost centre.
    cost_centres: dict[str, str] = Field(default_factory=dict)
    #: how cost with no team is spread: proportional (to each team's direct cost), even, or fixed shares.
    shared: Literal["proportional", "even"] | dict[str, float] = "proportional"
    #: teams that run shared services for the others (an AI platform team): their cost is split over
    #: the other teams by ``shared``, like cost with no team.
    shared_teams: list[str] = Field(default_factory=list)
    billing_account: str = "yieldmeter"

    @model_validator(mode="after")
    def _shares(self) -> ChargebackSettings:
        if isinstance(self.shared, dict):
            if not self.shared:
                raise ValueError("shared: a rule needs at least one team with a share")
            if any(v < 0 for v in self.shared.values()):
                raise ValueError("shared: shares must not be negative")
            total = sum(self.shared.values())
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"shared: shares must add up to 1 (they add up to {total:g})")
            pooled = sorted(set(self.shared) & set(self.shared_teams))
            if pooled:
                raise ValueError(f"shared: {', '.join(pooled)} is in shared_teams and cannot take a share")
        return self


def _errors(section: str, exc: ValidationError) -> ConfigError:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (section, *err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling; see docs/finops.md)"
        lines.append(f"{CONFIG_FILE} ({loc}): {msg}")
    return ConfigError("\n".join(lines))


def alert_settings(config: Config | dict[str, Any]) -> AlertSettings:
    """The validated ``alerts`` section; a ConfigError names the key that is wrong."""
    raw = config.alerts if isinstance(config, Config) else config
    try:
        return AlertSettings.model_validate(raw or {})
    except ValidationError as exc:
        raise _errors("alerts", exc) from None


def chargeback_settings(config: Config | dict[str, Any]) -> ChargebackSettings:
    """The validated ``chargeback`` section."""
    raw = getattr(config, "chargeback", {}) if isinstance(config, Config) else config
    try:
        return ChargebackSettings.model_validate(raw or {})
    except ValidationError as exc:
        raise _errors("chargeback", exc) from None
