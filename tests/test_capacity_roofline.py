"""Roofline and memory arithmetic against figures worked out by hand."""

from __future__ import annotations

import json

import pytest

from yieldmeter.capacity.roofline import require_fit, roofline
from yieldmeter.capacity.specs import (
    GPUS,
    SHAPES,
    CapacityError,
    compute_flops,
    gpu_spec,
    model_shape,
    precision,
)

H100 = gpu_spec("h100")
BF16 = precision("bf16")
L8B = SHAPES["llama-3-8b"]


def test_llama_3_8b_parameter_count() -> None:
    # per layer: q and o 2 x 4096 x (32 x 128) = 33,554,432; k and v 2 x 4096 x (8 x 128) = 8,388,608
    assert L8B.attention_params_per_layer == 41_943_040
    # gate, up, down: 3 x 4096 x 14336
    assert L8B.mlp_params_per_layer == 176_160_768
    # 32 x (41,943,040 + 176,160,768)
    assert L8B.body_params == 6_979_321_856
    # embedding and untied output head, each 128256 x 4096 = 525,336,576
    assert L8B.total_params == 6_979_321_856 + 2 * 525_336_576 == 8_029_995_008
    assert SHAPES["llama-3-70b"].total_params == 70_552_387_584  # the "70B"


def test_decode_bound_at_batch_1_is_bandwidth_over_weight_bytes() -> None:
    r = roofline(L8B, H100, BF16, batch=1, prompt_tokens=512, output_tokens=256)
    # weights read per step: (body + head) x 2 bytes = 7,504,658,432 x 2 (input embedding is a lookup)
    assert r.weight_bytes_read == 15_009_316_864
    # KV per token: 2 (K, V) x 32 layers x 8 KV heads x 128 x 2 bytes
    assert r.kv_bytes_per_token == 131_072
    # mean context while decoding 256 tokens after 512: 512 + 256 / 2
    assert r.decode_context == 640
    # bytes per step: 15,009,316,864 + 1 x 640 x 131,072 = 15,093,202,944
    assert r.decode_bytes_per_step == 15_093_202_944
    # 3.35e12 B/s / 15,093,202,944 B = 221.95 tokens/s (the "~208" rule of thumb counts all 8.03 B params)
    assert r.decode_tokens_per_s == pytest.approx(3.35e12 / 15_093_202_944)
    assert r.decode_tokens_per_s == pytest.approx(221.95, abs=0.01)
    assert r.decode_bound == "memory bandwidth"
    # flops per step: 2 x 7,504,658,432 + 4 x 32 x 4096 x 640 = 15,344,861,184 -> 15.5 us at 989.5 TFLOP/s
    assert r.decode_flops_per_step == 15_344_861_184


def test_decode_bound_at_batch_256_adds_kv_reads() -> None:
    r = roofline(L8B, H100, BF16, batch=256, prompt_tokens=512, output_tokens=256)
    # 15,009,316,864 + 256 x 83,886,080 = 36,484,153,344 bytes per step
    assert r.decode_bytes_per_step == 36_484_153_344
    # 256 x 3.35e12 / 36,484,153,344 = 23,506.1 tokens/s; compute needs 256 x 15.34 GFLOP = 3.97 ms < 10.9 ms
    assert r.decode_tokens_per_s == pytest.approx(23_506.1, abs=0.1)
    assert r.decode_bound == "memory bandwidth"


def test_prefill_bound_is_compute() -> None:
    r = roofline(L8B, H100, BF16, batch=1, prompt_tokens=512, output_tokens=256)
    # per token: 2 x 6,979,321,856 + 2 x 32 x 4096 x 512 + 2 x 128256 x 4096 / 512
    #          = 13,958,643,712 + 134,217,728 + 2,052,096 = 14,094,913,536 FLOP
    assert r.prefill_flops_per_token == 14_094_913_536
    # 989.5e12 / 14,094,913,536 = 70,202.6 tokens/s (compute 7.29 ms > memory 4.5 ms)
    assert r.prefill_tokens_per_s == pytest.approx(70_202.6, abs=0.1)
    assert r.prefill_bound == "compute"


def test_memory_check_and_largest_batch() -> None:
    r = roofline(L8B, H100, BF16, batch=1, prompt_tokens=512, output_tokens=256)
    m = r.memory
    assert m.weights_bytes == 16_059_990_016  # 8,029,995,008 x 2
    assert m.kv_cache_bytes == 100_663_296  # 768 tokens x 131,072
    assert m.usable_bytes == pytest.approx(72e9)  # 80 GB x 0.9
    # floor((72e9 - 16,059,990,016) / 100,663,296) = floor(555.7)
    assert m.max_batch == 555
    assert m.fits


def test_int4_weights_take_a_quarter_plus_scales() -> None:
    r = roofline(L8B, H100, precision("int4"), batch=1, prompt_tokens=512, output_tokens=256)
    # 0.5 byte per weight + one fp16 scale per 128 weights = 0.515625 byte
    assert r.weight_bytes_read == pytest.approx(7_504_658_432 * 0.515625)
    assert r.peak_flops == H100.peak_flops["bf16"]  # weight-only: BF16 math


def test_tensor_parallel_scales_bandwidth_and_memory() -> None:
    one = roofline(SHAPES["llama-3-70b"], H100, BF16, batch=1)
    four = roofline(SHAPES["llama-3-70b"], H100, BF16, batch=1, gpus=4)
    assert four.decode_tokens_per_s == pytest.approx(4 * one.decode_tokens_per_s)
    assert not one.memory.fits and four.memory.fits


def test_shape_that_does_not_fit_says_by_how_much() -> None:
    r = roofline(SHAPES["llama-3-70b"], H100, BF16, batch=64, prompt_tokens=4096, output_tokens=1024)
    # weights 70,552,387,584 x 2 = 141.1 GB; KV 64 x 5120 x 327,680 = 107.4 GB; usable 72 GB
    with pytest.raises(CapacityError) as e:
        require_fit(r)
    text = str(e.value)
    assert "141.1 GB of weights" in text and "107.4 GB of KV cache" in text
    assert "short by 176.5 GB" in text
    assert "fp8, int4" in text


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(CapacityError, match="unknown GPU 'h900'; known GPUs: a10, a100") as e:
        gpu_spec("h900")
    assert all(name in str(e.value) for name in GPUS)
    with pytest.raises(CapacityError, match=r"known shapes: llama-3-70b, llama-3-8b, tiny, or a PATH.json"):
        model_shape("llama-9")
    with pytest.raises(CapacityError, match="known precisions: bf16, fp16, fp8, int4, int8"):
        precision("fp4")
    with pytest.raises(CapacityError, match="a100 has no fp8 tensor cores"):
        compute_flops(gpu_spec("a100"), precision("fp8"))


def test_shape_from_json_file_accepts_hugging_face_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mistral-7b.json"
    path.write_text(
        json.dumps(
            {
                "num_hidden_layers": 32,
                "hidden_size": 4096,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "intermediate_size": 14336,
                "vocab_size": 32000,
                "tie_word_embeddings": False,
            }
        )
    )
    s = model_shape(str(path))
    assert s.name == "mistral-7b" and s.kv_heads == 8 and s.head_dim == 128
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"layers": 2}))
    with pytest.raises(CapacityError, match="lacks heads, hidden, intermediate, vocab"):
        model_shape(str(bad))
    with pytest.raises(CapacityError, match="does not exist"):
        model_shape(str(tmp_path / "missing.json"))
