"""Adapters: one third-party library each, its errors translated into ``proxy_core.errors``.

LiteLLM reads three settings from the environment once, when first imported, so their defaults
are set here: Python runs this before any adapter module (and so before ``import litellm``).
An operator's own value wins.

* ``LITELLM_LOCAL_MODEL_COST_MAP``: LiteLLM downloads its model price map at import unless told
  to use the copy it ships. Gateways often run without internet access, and a download at
  start-up would add seconds and a network dependency.
* ``AIOHTTP_KEEPALIVE_TIMEOUT``: LiteLLM keeps an idle provider connection for 120 s, but many
  servers close idle connections after 5 s (uvicorn, Node.js; gunicorn after 2 s). A completion
  sent on a connection the provider has already closed fails with "Connection reset by peer",
  a 502 for a request that never reached the provider (seen under load whenever requests
  queue for more than 5 s). Idle connections are kept 4 s.
* ``AIOHTTP_CONNECTOR_LIMIT_PER_HOST``: LiteLLM opens at most 500 connections to one provider
  host per process (1 000 in all, ``AIOHTTP_CONNECTOR_LIMIT``), fewer than the 1 000 requests
  a process admits (``MAX_CONCURRENT_REQUESTS``). Past 500 a call waits, without an error or a
  metric, for a connection to come free: with 1 000 streams of 30 s to one provider, the second
  500 got their first byte after 30 s, when the first 500 ended. A request holds at most one
  provider connection, so the per-host bound is raised to the admission limit's default.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("AIOHTTP_KEEPALIVE_TIMEOUT", "4")
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT_PER_HOST", "1000")
