"""The training recipe: plain dataclasses loaded from YAML, with errors that name the file and key.

A recipe is one YAML file; ``--set section.key=value`` overrides are applied to the raw mapping
before validation, so an override gets exactly the same checks as the file. Relative manifest paths
are resolved against the working directory at load time (run from the repository root), and the
resolved recipe is saved into the run folder so that ``--resume`` works from anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from radscribe.tasks import TASKS
from radscribe.train.augment import AugmentSection
from radscribe.train.distributed import DISTRIBUTED_STRATEGIES

RECIPE_KINDS = ("vlm", "detector")
STAGE_KINDS = ("pairing", "reference", "grounding")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
BACKEND_CHOICES = ("auto", "on", "off")


class ConfigError(ValueError):
    """A recipe that does not fit; the message names the file, the dotted key and what was expected."""

    def __init__(self, source: str, key: str, expected: str, got: Any = None):
        self.source = source
        self.key = key
        self.expected = expected
        detail = f"key '{key}': {expected}" if key else expected
        if got is not None:
            detail += f", got {got!r}"[:200]
        super().__init__(f"{source}: {detail}")


@dataclass
class ModelSection:
    name: str = "radscribe-tiny"  # a registry name (radscribe.models.list_models()) or a local folder
    overrides: dict[str, Any] = field(default_factory=dict)  # passed to create_model(name, **overrides)
    memory_slots: int | None = None  # S2D-Align memory adapter; None keeps the model's default, 0 turns it off
    freeze_vision: bool = False
    lora: dict[str, Any] | None = None  # peft LoraConfig keyword arguments; None trains the full model


@dataclass
class DataSection:
    train: str | list[str] | None = None  # manifest (JSONL) of training studies, or a list of manifests read together
    valid: str | list[str] | None = None  # manifest(s) of validation studies (may be the same file(s) as train)
    train_split: str | None = "train"  # keep only studies of this split; null keeps every study
    valid_split: str | None = "valid"
    tasks: dict[str, float] = field(default_factory=lambda: {"structured_report": 1.0})
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task, e.g. {phrase_grounding: {labels: [vertebra]}}
    temperature: float = 1.0  # RadGrounder dynamic sampling: p(task) ~ (weight * examples) ** (1 / temperature)
    codec: str | None = None  # box codec for grounded tasks; None uses the model's own
    max_train_studies: int | None = None
    max_valid_studies: int | None = None


@dataclass
class OptimSection:
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.01
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio at the last step
    batch_size: int = 8  # global: examples per optimiser step, summed over ranks and accumulation
    grad_accum: int = 1
    grad_clip: float | None = 1.0
    max_steps: int = 100  # used when the recipe has no stages
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU


@dataclass
class GenerationSection:
    metrics: list[str] = field(default_factory=list)  # radscribe.evaluate metric names
    max_examples: int = 16
    max_new_tokens: int = 256
    tasks: list[str] | None = None  # None: every task of the current stage


@dataclass
class EvalSection:
    every: int = 50
    max_examples_per_task: int | None = 64
    batch_size: int | None = None  # None: optim.batch_size
    generation: GenerationSection | None = None


@dataclass
class CheckpointSection:
    every: int = 50
    keep_last: int = 2


@dataclass
class EarlyStoppingSection:
    patience: int = 0  # evaluations without improvement before stopping; 0 disables
    min_delta: float = 0.0


@dataclass
class LoggingSection:
    tensorboard: str = "auto"  # auto: used when installed
    mlflow: str = "off"
    log_every: int = 1


@dataclass
class DistributedSection:
    """How the processes torchrun starts share the model (radscribe.train.distributed); ignored in one process."""

    strategy: str = "ddp"  # ddp: a whole replica per GPU; fsdp: parameters, gradients and AdamW state sharded (fully_shard)


@dataclass
class StageSection:
    """One S2D-Align curriculum stage; every stage continues training the same model."""

    name: str
    kind: str = "pairing"  # pairing | reference | grounding
    steps: int = 100
    tasks: dict[str, float] | None = None  # None: data.tasks
    reference: bool | None = None  # prompts carry the nearest training report; None: on from the reference stage on
    reference_max_chars: int | None = 600  # cut the reference report (at a line end) so the target still fits
    lr: float | None = None  # None: optim.lr


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentSection | None = None  # box-moving image augmentation of training examples; None: off
    optim: OptimSection = field(default_factory=OptimSection)
    eval: EvalSection = field(default_factory=EvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    early_stopping: EarlyStoppingSection = field(default_factory=EarlyStoppingSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)
    stages: list[StageSection] = field(default_factory=list)
    ablation: list[dict[str, Any]] | None = None  # settings for `radscribe ablate`; None: derived from the stages
    seed: int = 0
    device: str = "auto"

    def resolved_stages(self) -> list[StageSection]:
        """The stages to run, with defaults filled in; a recipe without stages is one pairing stage."""
        stages = self.stages or [StageSection(name="train", kind="pairing", steps=self.optim.max_steps)]
        resolved, reference_seen = [], False
        for stage in stages:
            reference_seen = reference_seen or stage.kind == "reference"
            resolved.append(
                dataclasses.replace(
                    stage,
                    tasks=dict(stage.tasks or self.data.tasks),
                    reference=reference_seen if stage.reference is None else stage.reference,
                    lr=self.optim.lr if stage.lr is None else stage.lr,
                )
            )
        return resolved

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: Path | str, overrides: list[str] | None = None) -> TrainConfig:
    """Read a recipe from YAML, apply ``key.path=value`` overrides, validate and resolve paths."""
    return config_from_dict(read_recipe(path, overrides), str(path))


def recipe_kind(path: Path | str) -> str:
    """``vlm`` (the default) or ``detector``: the top-level ``kind`` key of a recipe file."""
    kind = read_recipe(path).get("kind", "vlm")
    if kind not in RECIPE_KINDS:
        raise ConfigError(str(path), "kind", f"one of {', '.join(RECIPE_KINDS)}", kind)
    return kind


def read_recipe(path: Path | str, overrides: list[str] | None = None) -> dict[str, Any]:
    """The raw mapping of a recipe file with ``key.path=value`` overrides applied (not yet validated)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "", "the recipe file does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(str(path), "", f"valid YAML ({error})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "", "a mapping at the top level", type(raw).__name__)
    for override in overrides or []:
        apply_override(raw, override, str(path))
    return raw


def build_section(cls: type, raw: Any, source: str) -> Any:
    """A recipe dataclass from a raw mapping, with type checks whose errors name the file and key."""
    return _build(cls, raw, "", source)


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> TrainConfig:
    raw = {key: value for key, value in raw.items() if key != "kind"}
    config = _build(TrainConfig, raw, "", source)
    _check(config, source)
    for key in ("train", "valid"):
        value = getattr(config.data, key)
        if isinstance(value, str):
            setattr(config.data, key, resolve_path(value))
        elif value is not None:
            setattr(config.data, key, [resolve_path(item) for item in value])
    return config


def resolve_path(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def save_config(config: TrainConfig, path: Path | str) -> None:
    from radscribe.data.manifest import atomic_write

    with atomic_write(path) as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)


def apply_override(raw: dict[str, Any], override: str, source: str) -> None:
    """``optim.lr=1e-4`` sets a nested key; the value is parsed as YAML (numbers, lists, null...)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(source, override, "an override of the form section.key=value")
    parts = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(source, ".".join(parts[: depth + 1]), "a mapping to set a key inside", child)
        node = child
    node[parts[-1]] = yaml.safe_load(text)


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(source, prefix, "a mapping", raw)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(source, key, f"an unknown key; known keys here: {', '.join(fields)}")
    values = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        values[name] = _convert(hints[name], value, key, source)
    missing = [
        name for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(source, f"{prefix}.{missing[0]}" if prefix else missing[0], "a value (required)")
    return cls(**values)


def _convert(hint: Any, value: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, key, source)
        errors = []
        for option in options:
            try:
                return _convert(option, value, key, source)
            except ConfigError as error:
                if error.key != key:  # the value has this option's shape; something inside it is wrong
                    raise
                errors.append(error.expected)
        raise ConfigError(source, key, " or ".join(errors), value)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, source)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, "true or false", value)
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(source, key, "an integer", value)
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(source, key, "a number", value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(source, key, "a string", value)
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(source, key, "a list", value)
        return [_convert(args[0], item, f"{key}[{index}]", source) for index, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, key, "a mapping", value)
        return {str(k): _convert(args[1], v, f"{key}.{k}", source) for k, v in value.items()}
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug in this module, not in the recipe


def _check(config: TrainConfig, source: str) -> None:
    """Value checks the types alone cannot express."""

    def require(ok: bool, key: str, expected: str, got: Any) -> None:
        if not ok:
            raise ConfigError(source, key, expected, got)

    optim = config.optim
    require(optim.lr > 0, "optim.lr", "a positive learning rate", optim.lr)
    require(len(optim.betas) == 2 and all(0 <= b < 1 for b in optim.betas), "optim.betas", "two numbers in [0, 1)", optim.betas)
    require(optim.weight_decay >= 0, "optim.weight_decay", "a number >= 0", optim.weight_decay)
    require(optim.warmup_steps >= 0, "optim.warmup_steps", "an integer >= 0", optim.warmup_steps)
    require(0 <= optim.min_lr_ratio <= 1, "optim.min_lr_ratio", "a number in [0, 1]", optim.min_lr_ratio)
    require(optim.batch_size >= 1, "optim.batch_size", "an integer >= 1", optim.batch_size)
    require(optim.grad_accum >= 1, "optim.grad_accum", "an integer >= 1", optim.grad_accum)
    require(
        optim.batch_size % optim.grad_accum == 0,
        "optim.batch_size",
        f"a multiple of optim.grad_accum ({optim.grad_accum})",
        optim.batch_size,
    )
    require(optim.grad_clip is None or optim.grad_clip > 0, "optim.grad_clip", "a positive number or null", optim.grad_clip)
    require(optim.max_steps >= 1, "optim.max_steps", "an integer >= 1", optim.max_steps)
    require(optim.precision in PRECISIONS, "optim.precision", f"one of {', '.join(PRECISIONS)}", optim.precision)
    require(config.device in DEVICES, "device", f"one of {', '.join(DEVICES)}", config.device)
    strategy = config.distributed.strategy
    require(strategy in DISTRIBUTED_STRATEGIES, "distributed.strategy", f"one of {', '.join(DISTRIBUTED_STRATEGIES)}", strategy)
    require(
        strategy != "fsdp" or config.model.overrides.get("quantization") is None,
        "distributed.strategy",
        "ddp with a 4-bit quantised base (model.overrides.quantization): bitsandbytes' packed weights are not sharded by fully_shard",
        strategy,
    )
    same_file = config.data.train is not None and config.data.train == config.data.valid
    require(
        not same_file or (config.data.train_split is not None and config.data.train_split != config.data.valid_split),
        "data.valid_split",
        "a split other than data.train_split when train and valid read the same manifest",
        config.data.valid_split,
    )
    require(config.data.temperature > 0, "data.temperature", "a positive number", config.data.temperature)
    _check_tasks(config.data.tasks, "data.tasks", require)
    for task in config.data.task_options:
        require(task in TASKS, f"data.task_options.{task}", f"a task from {', '.join(TASKS)}", task)
    require(config.eval.every >= 1, "eval.every", "an integer >= 1", config.eval.every)
    if config.eval.generation is not None and config.eval.generation.metrics:
        # A misspelt metric would otherwise surface only at the first validation, after real training time.
        from radscribe.evaluate import metric_names

        known = metric_names()
        for name in config.eval.generation.metrics:
            require(name in known, "eval.generation.metrics", f"metric names from {', '.join(known)}", name)
    require(config.checkpoint.every >= 1, "checkpoint.every", "an integer >= 1", config.checkpoint.every)
    require(config.checkpoint.keep_last >= 1, "checkpoint.keep_last", "an integer >= 1", config.checkpoint.keep_last)
    require(config.early_stopping.patience >= 0, "early_stopping.patience", "an integer >= 0", config.early_stopping.patience)
    require(config.logging.log_every >= 1, "logging.log_every", "an integer >= 1", config.logging.log_every)
    for key in ("tensorboard", "mlflow"):
        value = getattr(config.logging, key)
        require(value in BACKEND_CHOICES, f"logging.{key}", f"one of {', '.join(BACKEND_CHOICES)}", value)
    require(config.model.memory_slots is None or config.model.memory_slots >= 0, "model.memory_slots", "an integer >= 0", config.model.memory_slots)
    names = set()
    for index, stage in enumerate(config.stages):
        key = f"stages[{index}]"
        require(stage.kind in STAGE_KINDS, f"{key}.kind", f"one of {', '.join(STAGE_KINDS)}", stage.kind)
        require(stage.steps >= 1, f"{key}.steps", "an integer >= 1", stage.steps)
        require(stage.name not in names, f"{key}.name", "a name not used by an earlier stage", stage.name)
        require(stage.lr is None or stage.lr > 0, f"{key}.lr", "a positive learning rate or null", stage.lr)
        require(
            stage.reference_max_chars is None or stage.reference_max_chars > 0,
            f"{key}.reference_max_chars", "a positive number of characters or null", stage.reference_max_chars,
        )
        names.add(stage.name)
        if stage.tasks is not None:
            _check_tasks(stage.tasks, f"{key}.tasks", require)
    for index, setting in enumerate(config.ablation or []):
        key = f"ablation[{index}]"
        require(isinstance(setting, dict) and isinstance(setting.get("name"), str), key, "a mapping with a 'name'", setting)
        unknown = sorted(set(setting) - {"name", "stages", "memory_slots", "set"})
        require(not unknown, f"{key}.{unknown[0] if unknown else ''}", "one of the keys name, stages, memory_slots, set", setting)
        overrides = setting.get("set")
        require(overrides is None or (isinstance(overrides, list) and all(isinstance(o, str) and "=" in o for o in overrides)),
                f"{key}.set", "a list of recipe overrides 'section.key=value'", overrides)
        stages = setting.get("stages")
        require(
            stages is None or (isinstance(stages, list) and all(s in names for s in stages)),
            f"{key}.stages",
            f"a list of stage names from {sorted(names)}",
            stages,
        )


def _check_tasks(tasks: dict[str, float], key: str, require: Any) -> None:
    require(bool(tasks), key, "at least one task", tasks)
    for name, weight in tasks.items():
        require(weight > 0, f"{key}.{name}", "a positive sampling weight", weight)
