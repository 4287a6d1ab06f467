"""Experiment assignment: weights are honoured and a unit always lands in the same arm."""

from __future__ import annotations

from collections import Counter

from proxy_core.policy_config import Experiment
from proxy_core.services.experiments import assign, pick_variant

EXPERIMENT = Experiment.model_validate(
    {
        "id": "exp-1",
        "variants": [{"name": "control", "weight": 70}, {"name": "treatment", "weight": 30, "model": "other"}],
    }
)


def test_split_follows_the_weights_within_2_percent_over_10000_sessions() -> None:
    counts = Counter(pick_variant(EXPERIMENT, f"session-{n}").name for n in range(10_000))
    assert abs(counts["control"] / 10_000 - 0.70) < 0.02
    assert abs(counts["treatment"] / 10_000 - 0.30) < 0.02


def test_assignment_is_stable_per_unit() -> None:
    for n in range(200):
        first = pick_variant(EXPERIMENT, f"s{n}")
        assert all(pick_variant(EXPERIMENT, f"s{n}") == first for _ in range(5))


def test_experiments_scoped_to_models() -> None:
    scoped = Experiment.model_validate({**EXPERIMENT.model_dump(), "models": ["m1"]})
    assert assign((scoped,), "m2", "u") == []
    [assignment] = assign((scoped,), "m1", "u")
    assert assignment.tags == ("experiment:exp-1", f"variant:{assignment.variant.name}")
