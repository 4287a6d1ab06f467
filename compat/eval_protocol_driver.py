"""The eval-protocol client, unchanged, against the gateway (runs in the client's own venv).

eval-protocol pins its own LiteLLM, so it cannot share the gateway's environment; ``check.py``
starts the gateway and runs this file with the client's interpreter. It does what a rollout does:
builds the tracing base URL (with an ``encoded_base_url``), calls the model through it with the
official ``openai`` client, then reads the rollout back with ``FireworksTracingAdapter``.

Arguments: the gateway's base URL (must start with http://localhost) and the provider's base URL.
"""

import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from eval_protocol.adapters.fireworks_tracing import FireworksTracingAdapter
from eval_protocol.pytest.tracing_utils import build_fireworks_tracing_url
from eval_protocol.types.remote_rollout_processor import RolloutMetadata
from openai import OpenAI


def main(gateway: str, provider: str) -> None:
    meta = RolloutMetadata(
        invocation_id="inv1", experiment_id="exp1", rollout_id="r-ep-1", run_id="run1", row_id="row1"
    )
    url = build_fireworks_tracing_url(gateway, meta, completion_params_base_url=provider)
    reply = OpenAI(base_url=url, api_key="sk-test").chat.completions.create(
        model="openai/fake-model", messages=[{"role": "user", "content": "hi"}]
    )
    rows = FireworksTracingAdapter(base_url=gateway, api_key="sk-test").get_evaluation_rows(
        tags=["rollout_id:r-ep-1"], max_retries=5
    )
    assert len(rows) == 1, f"expected one evaluation row, got {len(rows)}"
    row = rows[0]
    assert row.messages[-1].role == "assistant"
    assert row.messages[-1].content == reply.choices[0].message.content
    assert row.execution_metadata.rollout_id == "r-ep-1"
    assert row.input_metadata.row_id == "row1"
    print(f"eval-protocol client: chat and trace read-back OK ({row.messages[-1].content!r})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
