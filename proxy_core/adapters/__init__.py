"""Adapters: one third-party library each, its errors translated into ``proxy_core.errors``."""
