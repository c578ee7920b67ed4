"""Tasks: turn canonical studies into (prompt, target) examples, and mix task datasets for training.

``build_examples(studies, manifest_dir, ["structured_report", "vqa", ...], codec)`` runs the tasks in
:data:`TASKS` (``structured_report``, ``report``, ``grounded_report``, ``phrase_grounding``, ``vqa``,
``region``); :class:`TaskMixture` samples from per-task datasets (RadGrounder's dynamic sampling).
Prompts are data: ``prompts.yaml``. Importing this package does not import torch.
"""

from radscribe.tasks.builders import (
    TASKS,
    BuiltExamples,
    build_examples,
    reading_order,
    region_boxes,
    register_task,
    union_box,
)
from radscribe.tasks.example import Example, ExampleDataset
from radscribe.tasks.mixture import TaskMixture
from radscribe.tasks.prompts import prompt

__all__ = [
    "TASKS",
    "BuiltExamples",
    "Example",
    "ExampleDataset",
    "TaskMixture",
    "build_examples",
    "prompt",
    "reading_order",
    "region_boxes",
    "register_task",
    "union_box",
]
