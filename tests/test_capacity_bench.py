"""The local bench on the tiny shape on the CPU, and the endpoint bench against a real server process."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.loopback import free_port
from tests.openai_server import running_server
from yieldmeter.capacity.endpoint_bench import base_url, run_endpoint_bench
from yieldmeter.capacity.local_bench import LocalResult, gpu_from_device_name, run_local_bench
from yieldmeter.capacity.specs import SHAPES, CapacityError


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server() as url:
        yield url


# -- endpoint ---------------------------------------------------------------------------------------
def test_endpoint_bench_at_rising_concurrency(server: str) -> None:
    profile = [(60, 20), (120, 30)]
    levels = run_endpoint_bench(server + "/v1", concurrencies=(1, 4), requests_per_level=8, profile=profile)
    assert [lv.concurrency for lv in levels] == [1, 4]
    for lv in levels:
        assert lv.model == "test-model"  # found at /v1/models
        assert lv.requests == 8 and lv.failed == 0
        # 8 requests alternate the two shapes: 4 x 20 + 4 x 30 output tokens, as the server's usage reports
        assert lv.output_tokens == 200
        assert lv.output_tokens_per_s == pytest.approx(200 / lv.duration_s)
        assert lv.ttft_ms_p50 is not None and lv.latency_ms_p50 is not None and lv.latency_ms_p99 is not None
        assert 0 < lv.ttft_ms_p50 < lv.latency_ms_p50 <= lv.latency_ms_p99
    # each request takes >= 20 steps x 2 ms; four at a time finish the level several times sooner
    assert levels[1].output_tokens_per_s > 1.5 * levels[0].output_tokens_per_s


def test_endpoint_bench_completions_api(server: str) -> None:
    (lv,) = run_endpoint_bench(
        server,
        api="completions",
        concurrencies=(2,),
        requests_per_level=2,
        profile=[(10, 5)],
        model="test-model",
    )
    assert lv.output_tokens == 10 and lv.failed == 0


def test_unreachable_endpoint_fails_fast_naming_the_address() -> None:
    port = free_port()  # nothing listens there once the probe socket is closed
    t0 = time.monotonic()
    with pytest.raises(CapacityError, match=rf"cannot reach the endpoint at http://127\.0\.0\.1:{port}"):
        run_endpoint_bench(f"127.0.0.1:{port}", concurrencies=(1,), connect_timeout=2.0)
    assert time.monotonic() - t0 < 5


def test_wrong_model_reports_the_server_error(server: str) -> None:
    with pytest.raises(CapacityError, match=r"every request .* failed at concurrency 1: HTTP 404"):
        run_endpoint_bench(server, model="nope", concurrencies=(1,), requests_per_level=2, profile=[(5, 2)])


def test_base_url_spellings() -> None:
    assert base_url("localhost:8000") == "http://localhost:8000"
    assert base_url("http://h:1/v1/") == "http://h:1"


# -- local ------------------------------------------------------------------------------------------
def test_device_names_map_to_specs() -> None:
    assert gpu_from_device_name("NVIDIA H100 80GB HBM3") == "h100"
    assert gpu_from_device_name("NVIDIA H100 PCIe") == "h100-pcie"
    assert gpu_from_device_name("NVIDIA L40S") == "l40s"
    assert gpu_from_device_name("NVIDIA L4") == "l4"
    assert gpu_from_device_name("NVIDIA A100-SXM4-80GB") == "a100"
    assert gpu_from_device_name("Some Other Card") is None


def test_serving_efficiency_is_measured_over_bound() -> None:
    r = LocalResult(
        "cuda",
        "h100",
        "llama-3-8b",
        "bf16",
        1,
        512,
        256,
        50000.0,
        150.0,
        6.67,
        "CUDA graphs",
        70202.6,
        221.95,
    )
    assert r.serving_efficiency == pytest.approx(150.0 / 221.95)
    assert r.prefill_efficiency == pytest.approx(50000.0 / 70202.6)


def test_local_bench_tiny_shape_on_cpu() -> None:
    pytest.importorskip("torch")
    messages: list[str] = []
    choice, results = run_local_bench(
        SHAPES["tiny"],
        batches=(1, 4),
        prompt_tokens=32,
        output_tokens=16,
        device="cpu",
        repeats=1,
        log=messages.append,
    )
    assert choice.device == "cpu"
    assert [r.batch for r in results] == [1, 4]
    for r in results:
        assert r.prefill_tokens_per_s > 0 and r.decode_tokens_per_s > 0
        assert r.decode_ms_per_step == pytest.approx(r.batch * 1e3 / r.decode_tokens_per_s)
        assert r.method == "eager" and r.serving_efficiency is None  # no roofline for a CPU
        assert r.precision == "fp32"


def test_decode_loop_matches_a_full_forward_pass() -> None:
    """The static KV cache decode computes what a fresh prefill of the longer sequence computes."""
    torch = pytest.importorskip("torch")
    from yieldmeter.capacity.torch_decoder import Decoder

    shape = SHAPES["tiny"]
    with torch.inference_mode():
        prompt = torch.randint(0, shape.vocab, (2, 8), generator=torch.Generator().manual_seed(3))
        m = Decoder(shape, batch=2, max_len=16, device=torch.device("cpu"), dtype=torch.float32)
        first = m.prefill(prompt)
        m.tokens.copy_(first.view(2, 1))
        m.pos.fill_(8)
        produced = []
        for i in range(3):
            m.decode_step(16 if i % 2 else 12)  # any bucket that covers the context gives the same result
            produced.append(m.tokens.clone())
        fresh = Decoder(shape, batch=2, max_len=16, device=torch.device("cpu"), dtype=torch.float32)
        seq = torch.cat([prompt, first.view(2, 1), *produced[:2]], dim=1)  # 11 tokens
        assert torch.equal(fresh.prefill(seq).view(2, 1), produced[2])


def test_local_bench_refusals() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(CapacityError, match="quantised kernels"):
        run_local_bench(SHAPES["tiny"], precision_name="int4", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(CapacityError, match=r"no CUDA accelerator found.*--model-shape tiny"):
            run_local_bench(SHAPES["llama-3-8b"])
        with pytest.raises(CapacityError, match="no CUDA accelerator is visible"):
            run_local_bench(SHAPES["tiny"], device="cuda")
