"""Adapters: one third-party library each, its errors translated into ``proxy_core.errors``.

LiteLLM downloads its model price map when first imported unless told to use the copy it ships.
Gateways often run without internet access, and a download at start-up would add seconds and a
network dependency, so the switch is set here: Python runs this before any adapter module (and
so before ``import litellm``).
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
