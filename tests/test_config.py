"""yieldmeter.yaml: the template validates, mistakes name the file, line and key."""

from __future__ import annotations

import pytest

from yieldmeter.config import TEMPLATE, ConfigError, parse_config


def test_template_is_valid_and_documents_every_workflow_field() -> None:
    config = parse_config(TEMPLATE)
    w = config.workflows[0]
    assert w.workflow == "claims-triage" and w.unit_value == 4.0 and w.risk_class == "medium"
    for field in (
        "workflow",
        "process",
        "owner",
        "team",
        "value_dimension",
        "outcome_definition",
        "unit_value",
        "baseline_cost",
        "baseline_minutes",
        "quality_threshold",
        "risk_class",
        "latency_slo_ms",
        "labour_rate",
    ):
        assert f"    {field}:" in TEMPLATE or f"  - {field}:" in TEMPLATE, field
    assert "min_group_size" in TEMPLATE and "prices:" in TEMPLATE and "labour_rates:" in TEMPLATE


def line_of(text: str) -> int:
    """1-based line of the template where ``text`` first appears (the line the error must name)."""
    return next(i for i, line in enumerate(TEMPLATE.splitlines(), start=1) if text in line)


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (
            ("unit_value: 4.0", "unit_value: lots"),
            "workflows[0].unit_value",
            "Input should be a valid number",
        ),
        (("  default: 60", "  defualt: 60"), "labour_rates.defualt", "unknown key"),
        (("risk_class: medium", "risk_class: scary"), "workflows[0].risk_class", "Input should be 'low'"),
        (("value_dimension: cycle_time", "value_dimension: vibes"), "workflows[0].value_dimension", "Input"),
    ],
)
def test_errors_name_file_line_and_key(change: tuple[str, str], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(TEMPLATE.replace(*change), source="yieldmeter.yaml")
    line = line_of(change[0])
    assert f"yieldmeter.yaml, line {line} ({key}): {message}" in str(err.value)


def test_bad_yaml_and_duplicate_workflows() -> None:
    with pytest.raises(ConfigError, match=r"yieldmeter.yaml, line 3: not valid YAML"):
        parse_config("workflows:\n  - workflow: [unclosed\n")
    with pytest.raises(ConfigError, match="declared twice"):
        parse_config("workflows:\n  - workflow: a\n  - workflow: a\n")
