"""Training: a plain PyTorch loop with a task mixture, the S2D-Align curriculum, DDP or FSDP and exact resume.

``train(config, run_dir)`` runs a recipe (``load_config("configs/x.yaml")``); ``run_ablation``
trains each curriculum setting on the same budget; ``ReferenceIndex`` is the stage-2 retrieval of
the nearest training report, saved in the run folder for reuse at inference.
"""

from radscribe.train.ablation import ablation_settings, run_ablation
from radscribe.train.config import ConfigError, StageSection, TrainConfig, config_from_dict, load_config
from radscribe.train.data import Datasets, SplitData
from radscribe.train.loop import TrainResult, train
from radscribe.train.reference import ReferenceIndex, with_reference

__all__ = [
    "ConfigError",
    "Datasets",
    "ReferenceIndex",
    "SplitData",
    "StageSection",
    "TrainConfig",
    "TrainResult",
    "ablation_settings",
    "config_from_dict",
    "load_config",
    "run_ablation",
    "train",
    "with_reference",
]
