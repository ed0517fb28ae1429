"""Local decode throughput against the roofline: the figure behind the build option.

On a CUDA accelerator: llama-3-8b in bf16 (random weights, static KV cache,
CUDA graphs) at batch 1, 16, 64 and 256 with 512 prompt and 256 output
tokens; writes ``benchmarks/results/capacity-<gpu>.json`` (``capacity-h100.json``
on an H100) with each decode figure beside its roofline bound and the serving
efficiency. The target: >= 50% of the bandwidth bound at batch 1.

Without an accelerator: the tiny shape in fp32 on the CPU, written to
``capacity-cpu.json``. That file checks the benchmark runs; it is no capacity
figure.

    python benchmarks/bench_capacity.py [--shape llama-3-8b] [--batches 1,16,64,256] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_BATCH_1_EFFICIENCY = 0.5


def main() -> int:
    from yieldmeter.capacity.local_bench import choose_device, run_local_bench, torch_available
    from yieldmeter.capacity.specs import CapacityError, model_shape

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default=None, help="model shape (default: llama-3-8b on a GPU, tiny on a CPU)")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes")
    ap.add_argument("--prompt", type=int, default=None)
    ap.add_argument("--output", type=int, default=None)
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--gpu", default=None, help="spec name when the device name is not recognised")
    ap.add_argument("--no-cuda-graphs", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()

    if not torch_available():
        print("PyTorch is not installed (pip install 'yieldmeter[bench]'); skipping the capacity benchmark.")
        return 0
    import torch

    on_gpu = a.device != "cpu" and torch.cuda.is_available()
    shape = model_shape(a.shape or ("llama-3-8b" if on_gpu else "tiny"))
    batches = [int(b) for b in (a.batches or ("1,16,64,256" if on_gpu else "1,4,16")).split(",")]
    prompt = a.prompt or (512 if on_gpu else 128)
    output = a.output or (256 if on_gpu else 64)
    if not on_gpu:
        print(
            "No CUDA accelerator: running the tiny shape on the CPU. The figures check the benchmark itself; "
            "measure llama-3-8b on the target GPU for a capacity figure."
        )
    try:
        choice = choose_device(shape, "cuda" if on_gpu else "cpu", a.gpu if on_gpu else None)
        _, results = run_local_bench(
            shape,
            batches=batches,
            prompt_tokens=prompt,
            output_tokens=output,
            device=choice.device,
            gpu=choice.gpu,
            cuda_graphs=not a.no_cuda_graphs,
            repeats=3 if on_gpu else 2,
            log=lambda m: print("  " + m, flush=True),
        )
    except CapacityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    first = next((r for r in results if r.batch == 1), None)
    eff1 = first.serving_efficiency if first else None
    report = {
        "benchmark": "capacity local decode",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "device": choice.name,
            "gpu_spec": choice.gpu,
            "torch": torch.__version__,
            "cuda": torch.version.cuda if on_gpu else None,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
        },
        "model_shape": shape.name,
        "parameters": shape.total_params,
        "precision": results[0].precision,
        "prompt_tokens": prompt,
        "output_tokens": output,
        "method": results[0].method,
        "note": choice.note or None,
        "results": [
            {
                k: v
                for k, v in r.to_dict().items()
                if k
                not in (
                    "device",
                    "gpu",
                    "model_shape",
                    "precision",
                    "prompt_tokens",
                    "output_tokens",
                    "method",
                )
            }
            for r in results
        ],
        "target": {
            "batch_1_serving_efficiency_at_least": TARGET_BATCH_1_EFFICIENCY,
            "batch_1_serving_efficiency": eff1,
            "met": None if eff1 is None else eff1 >= TARGET_BATCH_1_EFFICIENCY,
        },
    }
    out = a.out or RESULTS / f"capacity-{choice.gpu or 'cpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        eff = (
            f"{r.serving_efficiency:.0%} of {r.roofline_decode_tokens_per_s:,.0f}"
            if r.serving_efficiency
            else "n/a"
        )
        print(
            f"  batch {r.batch:>4}: decode {r.decode_tokens_per_s:>10,.1f} tokens/s "
            f"({r.decode_ms_per_step:.2f} ms/step), prefill {r.prefill_tokens_per_s:>10,.0f} tokens/s, "
            f"serving efficiency {eff}"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
