"""proxy_core: an evaluation-aware, OpenAI-compatible LLM gateway.

Importing the package does nothing but define names; ``create_app(settings)`` builds the
application and ``python -m proxy_core`` runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy_core.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from proxy_core.app import create_app

        return create_app
    raise AttributeError(name)
