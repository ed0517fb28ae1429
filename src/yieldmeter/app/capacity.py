"""The capacity service (``ws.capacity``): roofline, benchmarks and the build/reserve/rent plan.

The workspace supplies the load (hourly token volume per workload and the
prompt/output length distribution, both Ibis expressions over ``calls``), the
list-price cost of that load (the price catalog join), the successful
outcomes it produced, and stores benchmark results in
``capacity_measurements``. The arithmetic lives in :mod:`yieldmeter.capacity`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from yieldmeter.capacity.plan import LoadProfile, Plan, ReplicaThroughput, build_option, compare
from yieldmeter.capacity.roofline import Roofline, roofline
from yieldmeter.capacity.settings import CapacitySettings, load_settings
from yieldmeter.capacity.specs import CapacityError, ModelShape, gpu_spec, model_shape, precision
from yieldmeter.ingest.conform import conform, stable_id

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.capacity.endpoint_bench import EndpointLevel
    from yieldmeter.capacity.local_bench import DeviceChoice, LocalResult

DEFAULT_PROFILE = (512, 256)


def _when(t: datetime) -> str:
    return f"{t:%Y-%m-%d}" if (t.hour, t.minute, t.second) == (0, 0, 0) else f"{t:%Y-%m-%d %H:%M}"


@dataclass(frozen=True)
class Scope:
    """Which calls a plan or a token profile is about."""

    workflow: str | None = None
    model: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def label(self) -> str:
        """The scope in words: "workflow W, model M, from 2026-11-01 until 2026-12-01" (the end
        excluded), or "all calls"."""
        parts = [
            f"workflow {self.workflow}" if self.workflow else "",
            f"model {self.model}" if self.model else "",
        ]
        if self.start:
            parts.append(f"from {_when(self.start)}" + (f" until {_when(self.end)}" if self.end else ""))
        elif self.end:
            parts.append(f"until {_when(self.end)}")
        return ", ".join(p for p in parts if p) or "all calls"


@dataclass(frozen=True)
class TokenProfile:
    """Prompt and output tokens per request in a scope."""

    requests: int
    prompt_p50: int
    output_p50: int
    prompt_p90: int
    output_p90: int
    pairs: tuple[tuple[int, int], ...]  # a sample of (prompt, output) requests for the endpoint bench


class CapacityService:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    @cached_property
    def settings(self) -> CapacitySettings:
        return load_settings(self.ws.config.capacity)

    def shape(self, name: str | None = None) -> ModelShape:
        return model_shape(name or self.settings.model_shape, self.settings.shapes)

    # -- load, as Ibis expressions ------------------------------------------------------------
    def _scoped_calls(self, scope: Scope) -> ir.Table:
        # at the list price: the plan applies its own batch share and discount to it, so a call
        # already priced at the batch rate would be discounted twice
        c = self.ws.priced_calls(tiers=False)
        if scope.workflow:
            c = c.filter(c.workflow == scope.workflow)
        if scope.model:
            c = c.filter(c.model == scope.model)
        if scope.start:
            c = c.filter(c.ts >= scope.start)
        if scope.end:
            c = c.filter(c.ts < scope.end)
        return c

    def hourly_volume(self, scope: Scope = Scope()) -> ir.Table:
        """Per hour, workflow and model: requests, input and output tokens, list-price cost, unpriced."""
        c = self._scoped_calls(scope)
        return c.group_by(hour=c.ts.truncate("h"), workflow=c.workflow, model=c.model).aggregate(
            requests=c.request_count.sum(),
            input_tokens=c.input_tokens.sum(),
            output_tokens=c.output_tokens.sum(),
            list_cost=c.model_cost.sum(),
            unpriced_calls=(~c.priced).cast("int64").sum(),
        )

    def token_lengths(self, scope: Scope = Scope()) -> ir.Table:
        """Distribution of prompt and output tokens per request (p10, p50, p90, mean)."""
        c = self._scoped_calls(scope)
        n = ibis.greatest(c.request_count, 1).cast("float64")
        per = c.mutate(p=c.input_tokens.cast("float64") / n, o=c.output_tokens.cast("float64") / n)
        return per.aggregate(
            requests=per.request_count.sum(),
            prompt_p10=per.p.quantile(0.1),
            prompt_p50=per.p.quantile(0.5),
            prompt_p90=per.p.quantile(0.9),
            prompt_mean=per.p.mean(),
            output_p10=per.o.quantile(0.1),
            output_p50=per.o.quantile(0.5),
            output_p90=per.o.quantile(0.9),
            output_mean=per.o.mean(),
        )

    def token_profile(self, scope: Scope = Scope(), sample: int = 32) -> TokenProfile | None:
        """The observed prompt/output lengths, or None when the scope has no calls with tokens."""
        c = self._scoped_calls(scope)
        c = c.filter((c.input_tokens > 0) & (c.output_tokens > 0))
        row = self.token_lengths(scope).to_pyarrow().to_pylist()[0]
        if not row["requests"] or row["prompt_p50"] is None:
            return None
        n = ibis.greatest(c.request_count, 1)
        picked = (
            c.mutate(
                p=(c.input_tokens / n).round().cast("int64"), o=(c.output_tokens / n).round().cast("int64")
            )
            .order_by(c.call_id.hash())
            .select("p", "o")
            .limit(sample)
            .to_pyarrow()
            .to_pylist()
        )
        pairs = tuple((max(1, r["p"]), max(1, r["o"])) for r in picked)
        return TokenProfile(
            requests=int(row["requests"]),
            prompt_p50=max(1, round(row["prompt_p50"])),
            output_p50=max(1, round(row["output_p50"])),
            prompt_p90=max(1, round(row["prompt_p90"])),
            output_p90=max(1, round(row["output_p90"])),
            pairs=pairs or ((max(1, round(row["prompt_p50"])), max(1, round(row["output_p50"]))),),
        )

    def successful_outcomes(self, scope: Scope) -> float | None:
        """Successful work units among those the scope's calls served; None when nothing tracks work units."""
        try:
            from yieldmeter.metrics.units import unit_facts
        except ImportError:
            return None
        c = self._scoped_calls(scope)
        units = c.filter(c.work_unit_id.notnull()).select(unit_id=c.work_unit_id).distinct()
        if not units.count().to_pyarrow().as_py():
            return None
        facts = unit_facts(self.ws.tables(), self.ws.priced_calls(), None, self.ws.config.labour_rates)
        hit = facts.join(units, facts.work_unit_id == units.unit_id)
        return float(hit.successful.cast("int64").sum().to_pyarrow().as_py() or 0)

    def load_profile(self, scope: Scope = Scope()) -> LoadProfile:
        """Hourly tokens over the scope's window (empty hours as zeros) with their rent cost."""
        hv = self.hourly_volume(scope)
        hours = (
            hv.group_by("hour")
            .aggregate(
                input_tokens=hv.input_tokens.sum(),
                output_tokens=hv.output_tokens.sum(),
                list_cost=hv.list_cost.sum(),
                unpriced_calls=hv.unpriced_calls.sum(),
            )
            .order_by("hour")
            .to_pyarrow()
        )
        if hours.num_rows == 0:
            raise CapacityError(f"nothing to plan for: no calls ({scope.label()})")
        rent = self.settings.rent
        hour_list = hours.column("hour").to_pylist()
        first, stop = self._window(scope, _hour(hour_list[0]), _hour(hour_list[-1]) + timedelta(hours=1))
        span = int((stop - first).total_seconds() // 3600)
        idx = np.array([int((_hour(h) - first).total_seconds() // 3600) for h in hour_list])
        inp, out, cost = np.zeros(span), np.zeros(span), np.zeros(span)
        inp[idx] = np.asarray(hours.column("input_tokens").to_pylist(), dtype=float)
        out[idx] = np.asarray(hours.column("output_tokens").to_pylist(), dtype=float)
        if rent.input is not None and rent.output is not None:
            cost = (inp * rent.input + out * rent.output) / 1e6
        else:
            unpriced = sum(int(v or 0) for v in hours.column("unpriced_calls").to_pylist())
            if unpriced:
                models = self.ws.unpriced().column("model").to_pylist()
                raise CapacityError(
                    f"{unpriced} calls ({scope.label()}) are unpriced "
                    f"(models: {', '.join(map(str, models[:5]))}), "
                    "so their rent cost is unknown. Add them under `prices:` in yieldmeter.yaml, or set "
                    "capacity.rent.input and capacity.rent.output (USD per million tokens)."
                )
            cost[idx] = np.asarray([float(v or 0.0) for v in hours.column("list_cost").to_pylist()])
        return LoadProfile(inp, out, cost, self.successful_outcomes(scope), scope.label())

    def _window(self, scope: Scope, first: datetime, stop: datetime) -> tuple[datetime, datetime]:
        """The hours a profile spans (``first``/``stop``: the scope's first call and the hour after
        its last). Where the scope gives a period, the period's hours in which the store has data
        (from its first to its last call): a quiet hour of the period is a zero, so a month's rent
        is that month's and not its busy days' scaled up, while hours before or after any data
        (not reached yet, or before the workspace) are no hours of the profile."""
        if scope.start is None and scope.end is None:
            return first, stop
        c = self.ws.tables().calls  # the store's span of data: no prices needed
        span = c.aggregate(lo=c.ts.min(), hi=c.ts.max()).to_pyarrow().to_pylist()[0]
        data_first, data_stop = _hour(span["lo"]), _hour(span["hi"]) + timedelta(hours=1)
        if scope.start is not None:
            first = min(first, max(_hour(scope.start), data_first))
        if scope.end is not None:
            period_stop = _hour(scope.end - timedelta(microseconds=1)) + timedelta(hours=1)
            stop = max(stop, min(period_stop, data_stop))
        return first, stop

    # -- roofline --------------------------------------------------------------------------------
    def roofline(
        self,
        *,
        shape: str | None = None,
        gpu: str | None = None,
        precision_name: str | None = None,
        batch: int = 1,
        prompt_tokens: int | None = None,
        output_tokens: int | None = None,
        gpus: int = 1,
    ) -> Roofline:
        s = self.settings
        return roofline(
            self.shape(shape),
            gpu_spec(gpu or s.build.gpu),
            precision(precision_name or s.precision),
            batch=batch,
            prompt_tokens=prompt_tokens or DEFAULT_PROFILE[0],
            output_tokens=output_tokens or DEFAULT_PROFILE[1],
            gpus=gpus,
            memory_utilization=s.memory_utilization,
        )

    # -- benchmarks --------------------------------------------------------------------------------
    def bench_local(
        self,
        *,
        shape: str | None = None,
        batches: Sequence[int] = (1, 16, 64, 256),
        prompt_tokens: int | None = None,
        output_tokens: int | None = None,
        precision_name: str | None = None,
        device: str = "auto",
        gpu: str | None = None,
        scope: Scope = Scope(),
        cuda_graphs: bool = True,
        repeats: int = 2,
        store: bool = True,
        log: Callable[[str], None] = lambda _m: None,
    ) -> tuple[DeviceChoice, list[LocalResult]]:
        """Measure the shape locally; lengths default to the scope's observed p50 (else 512/256)."""
        from yieldmeter.capacity.local_bench import run_local_bench

        p, o = prompt_tokens, output_tokens
        if p is None or o is None:
            prof = self.token_profile(scope)
            p = p or (prof.prompt_p50 if prof else DEFAULT_PROFILE[0])
            o = o or (prof.output_p50 if prof else DEFAULT_PROFILE[1])
            log(
                f"prompt {p} and output {o} tokens "
                f"({'observed p50 of ' + scope.label() if prof else 'default'})"
            )
        choice, results = run_local_bench(
            self.shape(shape),
            batches=batches,
            prompt_tokens=p,
            output_tokens=o,
            precision_name=precision_name,
            device=device,
            gpu=gpu,
            cuda_graphs=cuda_graphs,
            repeats=repeats,
            memory_utilization=self.settings.memory_utilization,
            log=log,
        )
        if store:
            self._store([self._local_row(r) for r in results])
        return choice, results

    def bench_endpoint(
        self,
        url: str,
        *,
        model: str | None = None,
        api: str = "chat",
        concurrencies: Sequence[int] = (1, 2, 4, 8, 16, 32),
        requests_per_level: int | None = None,
        scope: Scope = Scope(),
        api_key: str | None = None,
        connect_timeout: float = 3.0,
        ignore_eos: bool = True,
        store: bool = True,
        log: Callable[[str], None] = lambda _m: None,
    ) -> list[EndpointLevel]:
        """Load-test ``url`` with the scope's observed (prompt, output) requests at rising concurrency."""
        from yieldmeter.capacity.endpoint_bench import run_endpoint_bench

        prof = self.token_profile(scope)
        pairs = prof.pairs if prof else (DEFAULT_PROFILE,)
        log(
            f"token profile: {len(pairs)} request shapes from "
            f"{scope.label() if prof else 'the default 512/256'}"
        )
        levels = run_endpoint_bench(
            url,
            model=model,
            api=api,
            concurrencies=concurrencies,
            requests_per_level=requests_per_level,
            profile=pairs,
            api_key=api_key,
            connect_timeout=connect_timeout,
            ignore_eos=ignore_eos,
            log=log,
        )
        if store:
            self._store([self._endpoint_row(lv) for lv in levels])
        return levels

    def _local_row(self, r: LocalResult) -> dict[str, Any]:
        ts = datetime.now(UTC)
        return {
            "measurement_id": stable_id(
                "local", ts.isoformat(), r.device, r.model_shape, r.precision, r.batch
            ),
            "ts": ts,
            "mode": "local",
            "gpu": r.gpu or r.device,
            "model_shape": r.model_shape,
            "precision": r.precision,
            "batch": r.batch,
            "prompt_tokens": r.prompt_tokens,
            "output_tokens": r.output_tokens,
            "prefill_tokens_per_s": r.prefill_tokens_per_s,
            "decode_tokens_per_s": r.decode_tokens_per_s,
            "roofline_decode_tokens_per_s": r.roofline_decode_tokens_per_s,
            "serving_efficiency": r.serving_efficiency,
            "attributes": json.dumps(
                {
                    "device": r.device,
                    "method": r.method,
                    "decode_ms_per_step": r.decode_ms_per_step,
                    "roofline_prefill_tokens_per_s": r.roofline_prefill_tokens_per_s,
                }
            ),
        }

    def _endpoint_row(self, lv: EndpointLevel) -> dict[str, Any]:
        ts = datetime.now(UTC)
        ok = lv.requests - lv.failed
        return {
            "measurement_id": stable_id("endpoint", ts.isoformat(), lv.endpoint, lv.model, lv.concurrency),
            "ts": ts,
            "mode": "endpoint",
            "endpoint": lv.endpoint,
            "model_shape": lv.model,
            "concurrency": lv.concurrency,
            "prompt_tokens": round(lv.prompt_tokens / ok) if ok else None,
            "output_tokens": round(lv.output_tokens / ok) if ok else None,
            "decode_tokens_per_s": lv.output_tokens_per_s,
            "ttft_ms_p50": lv.ttft_ms_p50,
            "latency_ms_p50": lv.latency_ms_p50,
            "latency_ms_p99": lv.latency_ms_p99,
            "attributes": json.dumps(
                {
                    "requests": lv.requests,
                    "failed": lv.failed,
                    "total_tokens_per_s": lv.total_tokens_per_s,
                    "ttft_ms_p99": lv.ttft_ms_p99,
                    "latency_ms_p90": lv.latency_ms_p90,
                    "errors": list(lv.errors),
                }
            ),
        }

    def _store(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        c = conform("capacity_measurements", pa.Table.from_pylist(rows), source="yieldmeter capacity bench")
        self.ws.store.write("capacity_measurements", c.rows, c.rejects)

    def measurements(self, mode: str | None = None) -> ir.Table:
        """Stored measurements, newest first."""
        m = self.ws.backend.table("capacity_measurements")  # the lake's, on a lake workspace
        if mode:
            m = m.filter(m.mode == mode)
        return m.order_by([m.ts.desc(), m.batch, m.concurrency])

    # -- plan ------------------------------------------------------------------------------------
    def replica_throughput(
        self, shape: ModelShape, prompt: int, output: int
    ) -> tuple[ReplicaThroughput | None, str]:
        """Per-replica throughput for the build option: a stored measurement, else roofline x efficiency."""
        s, b = self.settings, self.settings.build
        gpu = gpu_spec(b.gpu)
        prec = precision(s.precision)
        counts = [b.gpus_per_replica] if b.gpus_per_replica else [1, 2, 4, 8]
        fitted = None
        for g in counts:
            r = roofline(
                shape,
                gpu,
                prec,
                batch=b.batch,
                prompt_tokens=prompt,
                output_tokens=output,
                gpus=g,
                memory_utilization=s.memory_utilization,
            )
            if r.memory.fits:
                fitted = r
                break
        if fitted is None:
            m = r.memory
            return None, (
                f"{shape.name} in {prec.name} at batch {b.batch} does not fit {counts[-1]} x {gpu.name}: "
                f"short by {m.shortfall_bytes / 1e9:.1f} GB"
            )
        if fitted.gpus == 1:
            m = self.measurements("local")
            m = m.filter((m.gpu == gpu.name) & (m.model_shape == shape.name) & (m.precision == prec.name))
            rows = m.to_pyarrow().to_pylist()
            if rows:
                best = min(
                    rows,
                    key=lambda row: (abs(math.log((row["batch"] or 1) / b.batch)), -row["ts"].timestamp()),
                )
                return ReplicaThroughput(
                    best["prefill_tokens_per_s"],
                    best["decode_tokens_per_s"],
                    1,
                    f"measured: local bench at batch {best['batch']} on {best['ts']:%Y-%m-%d}",
                ), ""
        return ReplicaThroughput(
            fitted.prefill_tokens_per_s * b.efficiency,
            fitted.decode_tokens_per_s * b.efficiency,
            fitted.gpus,
            f"roofline at batch {b.batch} x assumed efficiency {b.efficiency:g}",
        ), ""

    def plan(self, scope: Scope = Scope()) -> Plan:
        """Rent, reserve and build for the scope's observed load (see :mod:`yieldmeter.capacity.plan`)."""
        profile = self.load_profile(scope)
        prof = self.token_profile(scope)
        prompt, output = (prof.prompt_p50, prof.output_p50) if prof else DEFAULT_PROFILE
        throughput, why = self.replica_throughput(self.shape(), prompt, output)
        plan = compare(profile, self.settings, gpu_spec(self.settings.build.gpu), throughput)
        if why:
            plan.unavailable["build"] = why
        return plan

    # -- the compute link of the conversion chain -------------------------------------------------------
    def compute_link(self, scope: Scope = Scope()) -> list[dict[str, Any]]:
        """Per workflow served by owned GPUs (``capacity.owned``): energy and capital -> compute -> tokens.

        Over the scope's window (first to last hour with owned calls):
        GPU-hours busy = (input / prefill tokens/s + output / decode tokens/s) / 3600 x GPUs per replica,
        with the replica throughput of the plan (measured, else roofline x efficiency). The fleet
        (``owned.gpus``, else sized like the build option) costs capital, energy, hosting and
        operations for the window's hours; each workflow carries them in its share of GPU-hours
        busy, so idle capacity is carried too. Empty when nothing is declared owned.
        """
        s = self.settings
        owned = s.owned
        if not owned.providers and not owned.models:
            return []
        c = self._scoped_calls(scope)
        served = ibis.literal(False)
        if owned.providers:
            served = served | c.provider.isin(owned.providers)
        if owned.models:
            served = served | c.model.isin(owned.models)
        c = c.filter(served)
        per = (
            c.group_by(hour=c.ts.truncate("h"), workflow=c.workflow.fill_null("(unassigned)"))
            .aggregate(input_tokens=c.input_tokens.sum(), output_tokens=c.output_tokens.sum())
            .to_pyarrow()
            .to_pylist()
        )
        if not per:
            return []
        first = min(r["hour"] for r in per)
        span = int((max(r["hour"] for r in per) - first).total_seconds() // 3600) + 1
        inp, out = np.zeros(span), np.zeros(span)
        for r in per:
            i = int((r["hour"] - first).total_seconds() // 3600)
            inp[i] += r["input_tokens"]
            out[i] += r["output_tokens"]
        lengths = (
            c.aggregate(
                p=(c.input_tokens / ibis.greatest(c.request_count, 1)).quantile(0.5),
                o=(c.output_tokens / ibis.greatest(c.request_count, 1)).quantile(0.5),
            )
            .to_pyarrow()
            .to_pylist()[0]
        )
        shape = self.shape()
        t, why = self.replica_throughput(
            shape, max(1, round(lengths["p"] or 1)), max(1, round(lengths["o"] or 1))
        )
        if t is None:
            raise CapacityError(why)
        replicas = None
        if owned.gpus is not None:
            if owned.gpus < t.gpus:
                raise CapacityError(
                    f"capacity.owned.gpus is {owned.gpus}, fewer than one replica of {shape.name} "
                    f"needs ({t.gpus})"
                )
            replicas = owned.gpus // t.gpus
        gpu = gpu_spec(s.build.gpu)
        fleet = build_option(LoadProfile(inp, out, np.zeros(span)), s, gpu, t, replicas)
        window = span / s.hours_per_month  # the fleet's monthly cost -> this window
        line = {cl.line: cl.usd_per_month * window for cl in fleet.lines}
        kwh = (fleet.energy_kwh or 0.0) * window

        busy: dict[str, list[float]] = {}
        for r in per:
            gpu_s = (
                r["input_tokens"] / t.prefill_tokens_per_s + r["output_tokens"] / t.decode_tokens_per_s
            ) * t.gpus
            acc = busy.setdefault(r["workflow"], [0.0, 0.0, 0.0])
            acc[0] += r["input_tokens"]
            acc[1] += r["output_tokens"]
            acc[2] += gpu_s
        total_busy = sum(v[2] for v in busy.values()) or 1.0
        rows = []
        for wf, (i_tok, o_tok, gpu_s) in sorted(busy.items()):
            share = gpu_s / total_busy
            compute = share * (line["capital"] + line["energy"] + line["hosting"] + line["operations"])
            tokens = i_tok + o_tok
            rows.append(
                {
                    "workflow": wf,
                    "input_tokens": int(i_tok),
                    "output_tokens": int(o_tok),
                    "gpu_hours_busy": gpu_s / 3600,
                    "share": share,
                    "energy_kwh": kwh * share,
                    "energy_usd": line["energy"] * share,
                    "capital_usd": line["capital"] * share,
                    "hosting_operations_usd": (line["hosting"] + line["operations"]) * share,
                    "compute_usd": compute,
                    "usd_per_million_tokens": compute / tokens * 1e6 if tokens else None,
                    "fleet": fleet.capacity,
                    "fleet_utilisation": fleet.utilisation,
                    "window_hours": span,
                    "throughput": t.source,
                }
            )
        return rows


def _hour(t: datetime) -> datetime:
    """``t`` down to its hour, in UTC without a zone, as the profile's hours come from the store."""
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t.replace(minute=0, second=0, microsecond=0)
