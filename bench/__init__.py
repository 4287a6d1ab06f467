"""Benchmark suite: the gateway against its upstream, the LiteLLM proxy and a minimal SDK app.

``python -m bench`` runs it; see ``bench/README.md`` for the figures and how each is measured.
"""
