"""Configuration for the tests of the fakes themselves.

The fakes are imported as ``tests.fakes``; the repository root is put on
``sys.path`` so this works however pytest was started.  LiteLLM must not try
to download its price map, so the offline switch is set before anything
imports it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.fakes.fixtures import (  # noqa: E402
    FAKE_LANGFUSE_PROJECTS,
    fake_langfuse,
    fake_langfuse_server,
    fake_upstream,
    fake_upstream_server,
)

__all__ = [
    "FAKE_LANGFUSE_PROJECTS",
    "fake_langfuse",
    "fake_langfuse_server",
    "fake_upstream",
    "fake_upstream_server",
]
