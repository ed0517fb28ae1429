"""A seeded simulator of an organisation's AI use whose true value is known.

``simulate(out, SimulationParams(...))`` writes what real sources would (OTLP
trace files, signal/effort/outcome tables, a FOCUS cost file, ``yieldmeter.yaml``)
and ``truth.parquet``, which yieldmeter itself only reads in the validity report.
See ``docs/simulator.md``.
"""

from yieldmeter.simulate.run import TRUTH_FILE, SimulationResult, simulate
from yieldmeter.simulate.scenarios import (
    DEFAULT_SCENARIO,
    SCENARIOS,
    Scenario,
    SimulationError,
    SimulationParams,
)

__all__ = [
    "DEFAULT_SCENARIO",
    "SCENARIOS",
    "TRUTH_FILE",
    "Scenario",
    "SimulationError",
    "SimulationParams",
    "SimulationResult",
    "simulate",
]
