"""``yieldmeter capacity``: roofline, bench, plan, measurements, specs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from yieldmeter.cli.common import (
    FormatOpt,
    OutputFormat,
    WorkspaceOpt,
    console,
    emit,
    err_console,
    fail,
    group,
    workspace,
)

ShapeOpt = Annotated[
    str | None,
    typer.Option(
        "--model-shape",
        "-s",
        help="llama-3-8b, llama-3-70b, tiny, a shape from capacity.shapes, or PATH.json.",
    ),
]
GpuOpt = Annotated[
    str | None, typer.Option("--gpu", "-g", help="h100, h200, a100, l40s, l4, ... (`capacity specs`).")
]
PrecisionOpt = Annotated[str | None, typer.Option("--precision", "-p", help="bf16, fp16, fp8, int8, int4.")]


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        fail(f"{what} {text!r} is not a comma-separated list of whole numbers, e.g. 1,16,64")
    if not values or min(values) < 1:
        fail(f"{what} must be whole numbers of at least 1")
    return values


@contextmanager
def _errors() -> Iterator[None]:
    from yieldmeter.capacity.specs import CapacityError

    try:
        yield
    except CapacityError as exc:
        fail(str(exc))


def _settings_for(ws_path: Path) -> Any:
    """Capacity settings of the workspace's yieldmeter.yaml, or the defaults when there is none."""
    from yieldmeter.capacity.settings import load_settings
    from yieldmeter.config import CONFIG_FILE, ConfigError, load_config

    try:
        config = load_config(ws_path / CONFIG_FILE)
    except ConfigError as exc:
        fail(str(exc))
    return load_settings(config.capacity)


def _log(message: str) -> None:
    err_console().print(f"[dim]{message}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    cap = group(app, "capacity", "Capacity: roofline, benchmarks, and the rent / reserve / build plan.")

    @cap.command("roofline")
    def roofline_cmd(
        shape: ShapeOpt = None,
        gpu: GpuOpt = None,
        precision_name: PrecisionOpt = None,
        batch: Annotated[int, typer.Option("--batch", "-b", min=1, help="Concurrent sequences.")] = 1,
        prompt: Annotated[int, typer.Option("--prompt", min=1, help="Prompt tokens per sequence.")] = 512,
        output: Annotated[int, typer.Option("--output", min=1, help="Output tokens per sequence.")] = 256,
        gpus: Annotated[int, typer.Option("--gpus", min=1, help="GPUs in one tensor-parallel replica.")] = 1,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """The analytic bound on prefill and decode tokens/s, and whether weights + KV cache fit."""
        from yieldmeter.capacity.roofline import roofline
        from yieldmeter.capacity.specs import gpu_spec, model_shape, precision

        with _errors():
            s = _settings_for(ws_path)
            r = roofline(
                model_shape(shape or s.model_shape, s.shapes),
                gpu_spec(gpu or s.build.gpu),
                precision(precision_name or s.precision),
                batch=batch,
                prompt_tokens=prompt,
                output_tokens=output,
                gpus=gpus,
                memory_utilization=s.memory_utilization,
            )
        emit(r.summary(), fmt, title="Roofline")
        if not r.memory.fits:
            m = r.memory
            err_console().print(
                f"[bold red]does not fit:[/] needs {m.needed_bytes / 1e9:.1f} GB, "
                f"{m.usable_bytes / 1e9:.1f} GB usable, "
                f"short by {m.shortfall_bytes / 1e9:.1f} GB",
                highlight=False,
            )
            raise typer.Exit(3)

    @cap.command("bench")
    def bench_cmd(
        endpoint: Annotated[
            str | None,
            typer.Option("--endpoint", "-e", help="Load-test this OpenAI-compatible server instead."),
        ] = None,
        shape: ShapeOpt = None,
        batches: Annotated[
            str, typer.Option("--batch", "-b", help="Local: batch sizes, e.g. 1,16,64,256.")
        ] = "1,16,64,256",
        prompt: Annotated[
            int | None, typer.Option("--prompt", help="Local: prompt tokens (default: observed p50).")
        ] = None,
        output: Annotated[
            int | None, typer.Option("--output", help="Local: output tokens (default: observed p50).")
        ] = None,
        precision_name: Annotated[
            str | None, typer.Option("--precision", "-p", help="Local: bf16, fp16, fp32.")
        ] = None,
        device: Annotated[str, typer.Option("--device", help="Local: auto, cuda or cpu.")] = "auto",
        gpu: GpuOpt = None,
        no_graphs: Annotated[
            bool, typer.Option("--no-cuda-graphs", help="Local: plain eager decode.")
        ] = False,
        concurrency: Annotated[
            str, typer.Option("--concurrency", "-c", help="Endpoint: rising concurrency levels.")
        ] = "1,2,4,8,16,32",
        requests: Annotated[
            int | None, typer.Option("--requests", min=1, help="Endpoint: requests per level.")
        ] = None,
        model: Annotated[
            str | None, typer.Option("--model", "-m", help="Endpoint: served model name.")
        ] = None,
        api: Annotated[str, typer.Option("--api", help="Endpoint: chat or completions.")] = "chat",
        api_key: Annotated[
            str | None,
            typer.Option("--api-key", envvar="YIELDMETER_BENCH_API_KEY", help="Endpoint: bearer token."),
        ] = None,
        workflow: Annotated[
            str | None, typer.Option("--workflow", help="Token profile of this workflow's calls.")
        ] = None,
        store: Annotated[
            bool, typer.Option("--store/--no-store", help="Save results in capacity_measurements.")
        ] = True,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Measure tokens/s: a shape with random weights on the local accelerator, or a serving endpoint."""
        from yieldmeter.app.capacity import Scope

        with workspace(ws_path) as ws, _errors():
            scope = Scope(workflow=workflow)
            if endpoint:
                levels = ws.capacity.bench_endpoint(
                    endpoint,
                    model=model,
                    api=api,
                    concurrencies=_ints(concurrency, "--concurrency"),
                    requests_per_level=requests,
                    scope=scope,
                    api_key=api_key,
                    store=store,
                    log=_log,
                )
                rows = [
                    {k: v for k, v in lv.to_dict().items() if k not in ("endpoint", "errors")}
                    for lv in levels
                ]
                emit(rows, fmt, title=f"Endpoint {levels[0].endpoint}")
                return
            choice, results = ws.capacity.bench_local(
                shape=shape,
                batches=_ints(batches, "--batch"),
                prompt_tokens=prompt,
                output_tokens=output,
                precision_name=precision_name,
                device=device,
                gpu=gpu,
                scope=scope,
                cuda_graphs=not no_graphs,
                store=store,
                log=_log,
            )
        rows = [
            {k: v for k, v in r.to_dict().items() if k not in ("device", "gpu", "model_shape")}
            for r in results
        ]
        emit(rows, fmt, title=f"{results[0].model_shape} on {choice.name}")
        if choice.note and fmt is OutputFormat.table:
            console().print(f"[yellow]note:[/] {choice.note}", highlight=False)

    @cap.command("plan")
    def plan_cmd(
        workflow: Annotated[
            str | None, typer.Option("--workflow", help="Plan for this workflow's calls.")
        ] = None,
        model: Annotated[
            str | None, typer.Option("--model", "-m", help="Plan for this model's calls.")
        ] = None,
        period: Annotated[
            str | None, typer.Option("--period", help="YYYY-MM, YYYY-MM-DD or START..END.")
        ] = None,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Monthly cost of renting, reserving or building for the observed load; break-even, sensitivity."""
        from yieldmeter.app.capacity import Scope
        from yieldmeter.cli.common import parse_period

        start, end = parse_period(period)
        with workspace(ws_path) as ws, _errors():
            plan = ws.capacity.plan(Scope(workflow=workflow, model=model, start=start, end=end))
        if fmt is OutputFormat.json:
            emit([plan.to_dict()], fmt)
            return
        emit([o.row() for o in plan.options], fmt, title="Options (USD per month)")
        emit(plan.lines(), fmt, title="Cost lines: energy and capital are their own rows")
        if plan.break_even:
            emit(list(plan.break_even), fmt, title="Break-even against renting")
        emit(list(plan.sensitivity), fmt, title="Sensitivity")
        if fmt is OutputFormat.table:
            for name, why in plan.unavailable.items():
                console().print(f"[yellow]{name} not costed:[/] {why}", highlight=False)
            for a in plan.assumptions:
                console().print(f"[dim]assumes {a}[/]", highlight=False)
            console().print(f"[bold]Recommendation:[/] {plan.recommendation}", highlight=False)

    @cap.command("link")
    def link_cmd(
        workflow: Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")] = None,
        period: Annotated[
            str | None, typer.Option("--period", help="YYYY-MM, YYYY-MM-DD or START..END.")
        ] = None,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """The compute link per workflow served by owned GPUs: tokens, GPU-hours, energy, capital."""
        from yieldmeter.app.capacity import Scope
        from yieldmeter.cli.common import parse_period

        start, end = parse_period(period)
        with workspace(ws_path) as ws, _errors():
            rows = ws.capacity.compute_link(Scope(workflow=workflow, start=start, end=end))
        if not rows and fmt is OutputFormat.table:
            console().print("No calls are served by owned GPUs (declare them under capacity.owned).")
            return
        emit(rows, fmt, title="Energy and capital -> compute -> tokens")

    @cap.command("measurements")
    def measurements_cmd(
        mode: Annotated[str | None, typer.Option("--mode", help="local, endpoint or roofline.")] = None,
        limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Benchmark results stored in the workspace, newest first."""

        with workspace(ws_path) as ws:
            t = ws.capacity.measurements(mode).drop("attributes", "org").limit(limit).to_pyarrow()
        emit(t, fmt, title="Capacity measurements")

    @cap.command("specs")
    def specs_cmd(fmt: FormatOpt = OutputFormat.table) -> None:
        """The GPU specs and model shapes the roofline knows, with their sources."""
        from yieldmeter.capacity.specs import GPUS, SHAPES

        emit(
            [
                {
                    "gpu": g.name,
                    "description": g.description,
                    "bf16_tflops": g.peak_flops["bf16"] / 1e12,
                    "fp8_tflops": (g.peak_flops.get("fp8") or 0) / 1e12 or None,
                    "memory_gb": g.memory_bytes / 1e9,
                    "bandwidth_gb_s": g.memory_bandwidth / 1e9,
                    "board_power_w": g.board_power_w,
                    "source": g.source,
                }
                for g in GPUS.values()
            ],
            fmt,
            title="GPUs (dense peak)",
        )
        emit(
            [{**s.to_dict(), "params_b": round(s.total_params / 1e9, 3)} for s in SHAPES.values()],
            fmt,
            title="Model shapes",
        )
