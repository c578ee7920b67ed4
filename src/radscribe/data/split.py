"""Seeded train/valid/test splits that keep a patient (or an image) on one side.

Groups are the patient where known, else the first image, else the study itself, so that no
patient's films and no image's questions straddle two splits. Group order is a seeded shuffle of
the sorted group keys: the same manifest and seed always give the same split.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from radscribe.types import Study


def group_key(study: Study) -> str:
    if study.patient_id:
        return f"patient:{study.patient_id}"
    if study.images:
        return f"image:{study.images[0].path}"
    return f"study:{study.id}"


def assign_splits(
    studies: Sequence[Study], valid: float = 0.15, test: float = 0.0, seed: int = 0, keep_existing: bool = False
) -> list[Study]:
    """Return copies of ``studies`` with ``split`` set; fractions count studies, whole groups move.

    With ``keep_existing`` studies that already have a split keep it (a held-out test set stays
    put) and studies without one join their group's existing split if it has one.
    """
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise ValueError(f"expected valid and test fractions in [0, 1) summing below 1, got valid={valid}, test={test}")
    groups: dict[str, list[int]] = {}
    for index, study in enumerate(studies):
        groups.setdefault(group_key(study), []).append(index)

    splits: list[str | None] = [study.split if keep_existing else None for study in studies]
    free_groups = []
    for key, members in groups.items():
        fixed = Counter(splits[index] for index in members if splits[index] is not None)
        if fixed:
            # A group already placed pulls its unplaced members along, so no patient leaks across.
            for index in members:
                splits[index] = splits[index] or fixed.most_common(1)[0][0]
        else:
            free_groups.append(key)

    free_groups.sort()
    random.Random(seed).shuffle(free_groups)
    free_total = sum(len(groups[key]) for key in free_groups)
    targets = (("test", round(test * free_total)), ("valid", round(valid * free_total)))
    position = 0
    for name, target in targets:
        taken = 0
        while taken < target and position < len(free_groups):
            members = groups[free_groups[position]]
            for index in members:
                splits[index] = name
            taken += len(members)
            position += 1
    for key in free_groups[position:]:
        for index in groups[key]:
            splits[index] = "train"
    return [replace(study, split=split) for study, split in zip(studies, splits)]
