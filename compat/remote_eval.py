"""A whole ``RemoteRolloutProcessor`` evaluation against the gateway (pytest, in the client's venv).

``check.py`` runs it with the gateway and ``remote_agent.py`` serving: each row goes to the agent's
``/init``; the processor polls the gateway's ``/v1/status``, reads ``/logs`` and the trace back.
Every row's outcome is written as one JSON line to ``$COMPAT_RESULTS`` for ``check.py`` to judge.
"""

import json
import os
import time

from eval_protocol.models import EvaluateResult, EvaluationRow, Message
from eval_protocol.pytest import evaluation_test
from eval_protocol.pytest.remote_rollout_processor import RemoteRolloutProcessor

STARTED = time.monotonic()
PROMPTS = ["What is two plus two?", "Name a primary colour.", "please fail this row"]
TIMEOUT_S = float(os.environ["COMPAT_ROLLOUT_TIMEOUT_S"])


@evaluation_test(
    input_rows=[[EvaluationRow(messages=[Message(role="user", content=prompt)]) for prompt in PROMPTS]],
    completion_params=[{"model": "openai/fake-model", "base_url": os.environ["COMPAT_PROVIDER_URL"]}],
    rollout_processor=RemoteRolloutProcessor(
        remote_base_url=os.environ["COMPAT_AGENT_URL"],
        model_base_url=os.environ["COMPAT_GATEWAY_URL"],
        poll_interval=0.2,
        timeout_seconds=TIMEOUT_S,
    ),
    mode="pointwise",
)
def test_remote_rollouts(row: EvaluationRow) -> EvaluationRow:
    status = row.rollout_status
    last = row.messages[-1]
    finished_at = (row.execution_metadata.extra or {}).get("finished_at")
    outcome = {
        "prompt": row.messages[0].content,
        "code": None if status is None else int(status.code),
        "message": status.message if status is not None else None,
        "last_role": last.role,
        "last_content": last.content,
        "extra": row.execution_metadata.extra,
        "rollout_id": row.execution_metadata.rollout_id,
        "seconds_since_start": round(time.monotonic() - STARTED, 2),
        "seconds_after_agent_finished": round(time.time() - finished_at, 2) if finished_at else None,
    }
    with open(os.environ["COMPAT_RESULTS"], "a") as results:
        results.write(json.dumps(outcome, default=str) + "\n")
    row.evaluation_result = EvaluateResult(score=1.0 if last.role == "assistant" else 0.0, reason="compat")
    return row
