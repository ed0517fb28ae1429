"""The alert schedule inside ``yieldmeter serve``: evaluate every rule every few minutes.

Calendar budgets and rolling windows change state with time alone (a rolling
window moves past a spike and the breach ends), so alerts are evaluated on a
schedule as well as on ingest. In the server the evaluation runs on the single
writer thread (``submit``), so it never races an ingest; outside the server
the scheduler opens its own workspace.

    handle = start_alert_scheduler(ctx.writer.submit, interval_s=300)
    ...
    handle.stop()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace

log = logging.getLogger("yieldmeter.alerts")

Submit = Callable[[Callable[["Workspace"], Any]], "Future[Any]"]


def _evaluate(ws: Workspace) -> int:
    return len(ws.finops.evaluate_alerts())


class AlertScheduler:
    """A daemon thread that evaluates alerts every ``interval_s`` seconds until :meth:`stop`."""

    def __init__(self, target: Submit | Path | str, interval_s: float) -> None:
        self.interval_s = float(interval_s)
        self.runs = 0
        self.last_error: str | None = None
        self._target = target
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="yieldmeter-alerts", daemon=True)

    def start(self) -> AlertScheduler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> None:
        try:
            if callable(self._target):
                self._target(_evaluate).result(timeout=max(self.interval_s, 60.0))
            else:
                from yieldmeter.app.workspace import Workspace

                with Workspace.open(self._target) as ws:
                    _evaluate(ws)
            self.last_error = None
        except Exception as exc:  # keep the schedule alive; say what failed
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("alert evaluation failed: %s", self.last_error)
        self.runs += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run_once()


def start_alert_scheduler(target: Submit | Path | str, interval_s: float) -> AlertScheduler:
    """Start evaluating alerts every ``interval_s`` seconds; returns the handle to stop it."""
    return AlertScheduler(target, interval_s).start()


def start_for_server(ctx: Any) -> AlertScheduler | None:
    """The server's schedule (``alerts.schedule_seconds``), on its writer; None when alerts are off."""
    from yieldmeter.config import ConfigError

    try:
        settings = ctx.workspace.finops.settings
    except ConfigError as exc:
        log.error("alerts are off: %s", exc)
        return None
    if not settings.schedule_seconds:
        return None
    return start_alert_scheduler(ctx.writer.submit, settings.schedule_seconds)
