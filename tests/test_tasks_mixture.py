"""TaskMixture: frequencies follow p_i ~ (w_i n_i)^(1/T); the sequence is seeded and resumable."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from scipy.stats import chisquare

from radscribe.tasks import Example, TaskMixture


def _datasets(**sizes: int) -> dict[str, list[Example]]:
    return {
        task: [Example(task, f"{task}-{i}", (Path(f"/img/{task}-{i}.png"),), "p", str(i)) for i in range(n)]
        for task, n in sizes.items()
    }


@pytest.mark.parametrize(("weights", "temperature"), [(None, 1.0), ({"report": 3.0}, 2.0), ({"vqa": 0.5}, 0.5)])
def test_empirical_frequencies_match_the_formula(weights, temperature) -> None:
    sizes = {"report": 50, "vqa": 400, "region": 1600}
    mixture = TaskMixture(_datasets(**sizes), weights, temperature, seed=7)
    w = {task: (weights or {}).get(task, 1.0) for task in sizes}
    mass = {task: (w[task] * n) ** (1 / temperature) for task, n in sizes.items()}
    expected = {task: m / sum(mass.values()) for task, m in mass.items()}
    assert mixture.probabilities == pytest.approx(expected)
    draws = 20_000
    observed = Counter(mixture.sample().task for _ in range(draws))
    assert observed == Counter(mixture.counts)
    result = chisquare([observed[t] for t in sizes], [expected[t] * draws for t in sizes])
    assert result.pvalue > 1e-3, (observed, expected)


def test_each_task_is_walked_without_replacement_then_reshuffled() -> None:
    mixture = TaskMixture(_datasets(a=7), seed=1)
    first, second = [mixture.sample().target for _ in range(7)], [mixture.sample().target for _ in range(7)]
    assert sorted(first) == sorted(second) == [str(i) for i in range(7)]
    assert first != second


def test_zero_weight_and_empty_tasks_are_never_drawn() -> None:
    mixture = TaskMixture(_datasets(a=5, b=5, c=0), {"b": 0.0}, seed=3)
    assert {mixture.sample().task for _ in range(200)} == {"a"}
    assert mixture.probabilities == {"a": 1.0, "b": 0.0, "c": 0.0}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        TaskMixture(_datasets(a=2), {"b": 1.0})
    with pytest.raises(ValueError, match="temperature"):
        TaskMixture(_datasets(a=2), temperature=0)
    with pytest.raises(ValueError, match="nothing to sample"):
        TaskMixture(_datasets(a=0))
    with pytest.raises(TypeError, match="no length"):
        len(TaskMixture(_datasets(a=2)))


def test_epochs_have_their_length_and_continue() -> None:
    mixture = TaskMixture(_datasets(a=3, b=10), seed=0, epoch_length=8)
    assert len(mixture) == 8
    epoch0, epoch1 = list(mixture), list(mixture)
    assert len(epoch0) == len(epoch1) == 8 and mixture.epoch == 2 and mixture.drawn == 16
    again = TaskMixture(_datasets(a=3, b=10), seed=0, epoch_length=8)
    assert [e.study_id for e in list(again) + list(again)] == [e.study_id for e in epoch0 + epoch1]
    other_seed = TaskMixture(_datasets(a=3, b=10), seed=1, epoch_length=8)
    assert [e.study_id for e in other_seed] != [e.study_id for e in epoch0]


@pytest.mark.parametrize("stop_after", [0, 5, 10, 13, 37])
def test_resuming_from_a_state_dict_continues_the_same_sequence(stop_after: int) -> None:
    data = _datasets(report=6, vqa=11, region=4)
    reference = TaskMixture(data, {"report": 2.0}, temperature=1.5, seed=42, epoch_length=10)
    full = [e.study_id for _ in range(6) for e in reference]

    interrupted = TaskMixture(data, {"report": 2.0}, temperature=1.5, seed=42, epoch_length=10)
    head = []
    iterator = iter(interrupted)
    for _ in range(stop_after):
        try:
            head.append(next(iterator).study_id)
        except StopIteration:
            iterator = iter(interrupted)
            head.append(next(iterator).study_id)
    saved = json.loads(json.dumps(interrupted.state_dict()))  # what a checkpoint would hold

    resumed = TaskMixture(data, {"report": 2.0}, temperature=1.5, seed=42, epoch_length=10)
    resumed.load_state_dict(saved)
    assert resumed.counts == interrupted.counts and resumed.drawn == stop_after
    tail = []
    while len(head) + len(tail) < len(full):
        tail += [e.study_id for e in resumed]
    assert head + tail == full


def test_a_state_from_other_data_is_refused() -> None:
    state = TaskMixture(_datasets(a=3), seed=0).state_dict()
    with pytest.raises(ValueError, match="other data"):
        TaskMixture(_datasets(a=4), seed=0).load_state_dict(state)
