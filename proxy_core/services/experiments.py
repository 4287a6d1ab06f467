"""Experiments: deterministic assignment of calls to weighted variants.

A hash of the experiment id and the session id (else the user id, else the rollout id) picks the
variant, so a conversation stays in one arm across calls, replicas and restarts. A variant may
change the model and/or the prompt version or label; the trace gets ``experiment:<id>`` and
``variant:<name>`` tags and the response an ``x-experiment-variant`` header.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from proxy_core.policy_config import Experiment, Variant


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment: str
    variant: Variant

    @property
    def tags(self) -> tuple[str, str]:
        return f"experiment:{self.experiment}", f"variant:{self.variant.name}"


def pick_variant(experiment: Experiment, unit: str) -> Variant:
    """The variant for ``unit``: the same unit always gets the same variant."""
    digest = hashlib.sha256(f"{experiment.id}:{unit}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % experiment.total_weight
    for variant in experiment.variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    return experiment.variants[-1]


def assign(experiments: tuple[Experiment, ...], model: str, unit: str | None) -> list[Assignment]:
    """Assignments for a call to ``model``; without any unit a call is assigned at random."""
    chosen = []
    for experiment in experiments:
        if experiment.models and model not in experiment.models:
            continue
        chosen.append(Assignment(experiment.id, pick_variant(experiment, unit or uuid.uuid4().hex)))
    return chosen
