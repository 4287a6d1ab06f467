"""A small remote agent, as eval-protocol users write one (runs in the client's own venv).

``POST /init`` takes eval-protocol's ``InitRequest``, logs RUNNING for the rollout before it
answers (so a retried rollout never reads the previous attempt's terminal status), and runs the
rollout in a thread: one chat completion through the rewritten ``model_base_url`` with the
``openai`` client, then FINISHED with extras. It reports through eval-protocol's own
``FireworksTracingHttpHandler`` (target: ``FW_TRACING_GATEWAY_BASE_URL``, the gateway) and
``RolloutIdFilter``. A row whose last message asks it to fail logs an INTERNAL status instead.

Argument: the port to serve on (127.0.0.1).
"""

import logging
import sys
import threading
import time

import uvicorn
from eval_protocol.log_utils.fireworks_tracing_http_handler import FireworksTracingHttpHandler
from eval_protocol.log_utils.rollout_id_filter import RolloutIdFilter
from eval_protocol.models import Status
from eval_protocol.types.remote_rollout_processor import InitRequest
from fastapi import FastAPI
from openai import OpenAI

FAIL_MARKER = "please fail"
AGENT_NAME = "compat-agent"
HANDLER = FireworksTracingHttpHandler()
app = FastAPI()


def rollout_logger(rollout_id: str) -> logging.Logger:
    logger = logging.getLogger(f"{AGENT_NAME}.{rollout_id}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(HANDLER)
        logger.addFilter(RolloutIdFilter(rollout_id))
    return logger


def run_rollout(req: InitRequest) -> None:
    logger = rollout_logger(req.metadata.rollout_id)
    messages = [message.dump_mdoel_for_chat_completion_request() for message in req.messages or []]
    last = str(messages[-1].get("content") or "") if messages else ""
    if FAIL_MARKER in last:
        failure = f"{AGENT_NAME} could not finish row {req.metadata.row_id}: asked to fail"
        logger.error(failure, extra={"status": Status.rollout_internal_error(failure)})
        return
    try:
        client = OpenAI(base_url=req.model_base_url, api_key=req.api_key or "dummy", max_retries=0)
        logger.info("calling the model")
        reply = client.chat.completions.create(model=req.completion_params["model"], messages=messages)
    except Exception as exc:  # any failure is the rollout's status, as the reference agent does
        logger.error("model call failed", extra={"status": Status.rollout_internal_error(str(exc))})
        return
    answer = reply.choices[0].message.content or ""
    extras = {"agent": AGENT_NAME, "row": req.metadata.row_id, "answer_chars": len(answer), "finished_at": time.time()}
    logger.info(
        f"Rollout {req.metadata.rollout_id} completed", extra={"status": Status.rollout_finished(), "extras": extras}
    )


@app.post("/init")
def init(req: InitRequest) -> dict[str, str]:
    rollout_logger(req.metadata.rollout_id).info("accepted", extra={"status": Status.rollout_running()})
    threading.Thread(target=run_rollout, args=(req,), daemon=True).start()
    return {"status": "accepted", "rollout_id": req.metadata.rollout_id}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
