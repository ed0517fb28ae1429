"""Run by ``tests/test_receiver.py`` in a subprocess whose ``PYTHONPATH`` puts an older Langfuse
SDK (3.x or 4.x, installed beside the project's own) first: the SDK, unchanged, sends a
generation over OTLP and two scores through ``/api/public/ingestion``, then prints the trace id.

Usage: ``python tests/langfuse_legacy_sdk.py URL PUBLIC_KEY SECRET_KEY``
"""

from __future__ import annotations

import json
import sys

import langfuse


def main() -> None:
    url, public_key, secret_key = sys.argv[1:4]
    lf = langfuse.Langfuse(public_key=public_key, secret_key=secret_key, host=url, tracing_enabled=True)
    with (
        lf.start_as_current_observation(name="answer", as_type="span") as root,
        langfuse.propagate_attributes(
            user_id="u-3", session_id="chat-8", metadata={"yieldmeter.workflow": "support-answers"}
        ),
    ):
        with lf.start_as_current_observation(name="llm", as_type="generation", model="acme-chat") as gen:
            gen.update(
                usage_details={"input": 600, "input_cached_tokens": 400, "output": 250},
                cost_details={"total": 0.0034},
            )
            gen.score(name="helpful", value=1, data_type="BOOLEAN")  # a score-create event
            gen.score_trace(name="relevance", value=0.75)
        trace_id = root.trace_id
    lf.flush()
    lf.shutdown()
    print(json.dumps({"trace_id": trace_id, "sdk": langfuse.__file__}))


if __name__ == "__main__":
    main()
