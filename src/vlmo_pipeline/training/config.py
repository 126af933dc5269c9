"""Configuration of one training run (a pretraining stage or a fine-tuning task) as dataclasses.

A Kedro parameters section (``conf/base/parameters_<pipeline>.yml``) or a ``--params`` YAML file for
``python -m vlmo_pipeline.train`` is turned into a :class:`RunConfig` by :func:`run_config_from_dict`: every value is
checked against its field's type and unknown keys are errors, each naming the file and the key
(:mod:`vlmo_pipeline.schema`), so a typo or a quoted ``"false"`` never silently changes the run.

Stages / tasks (``RunConfig.stage``):

==================  ==========================================================================================
``stage1``          image-only masked image modeling (BEiT-style blockwise masks, pixel-regression target)
``stage2``          text-only masked language modeling (whole-word masking), attention + V-FFN frozen
``stage3``          image-text pretraining: ITC (two branches) + ITM (global hard negatives) + 0.25 · MLM
``retrieval``       dual-encoder fine-tuning with the ITC loss (COCO or F30K)
``vqa``             VQAv2 fine-tuning (soft-score BCE over the answer vocabulary)
``nlvr2``           NLVR2 fine-tuning (two fused passes, concatenated poolers)
==================  ==========================================================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmo_pipeline.schema import build_config, plain
from vlmo_pipeline.training.freezing import STAGE1_TRAINABLE, STAGE2_TRAINABLE

__all__ = [
    "STAGES",
    "PRETRAIN_STAGES",
    "FINETUNE_TASKS",
    "RESUME_MODES",
    "STRATEGIES",
    "ITM_NEGATIVE_MODES",
    "OFFICIAL_NO_DECAY_SUBSTRINGS",
    "OFFICIAL_HEAD_NAMES",
    "OptimConfig",
    "TrainerConfig",
    "DataConfig",
    "MIMConfig",
    "MLMConfig",
    "RunConfig",
    "run_config_from_dict",
    "DEFAULT_STAGE1_TRAINABLE",
]

PRETRAIN_STAGES: tuple[str, ...] = ("stage1", "stage2", "stage3")
FINETUNE_TASKS: tuple[str, ...] = ("retrieval", "vqa", "nlvr2")
STAGES: tuple[str, ...] = PRETRAIN_STAGES + FINETUNE_TASKS
#: ``itm_negatives`` values: how stage 3's ITM picks negative pairs (see :class:`RunConfig`).
ITM_NEGATIVE_MODES: tuple[str, ...] = ("hard", "random")
#: ``trainer.resume`` values (see :class:`TrainerConfig`).
RESUME_MODES: tuple[str, ...] = ("auto", "never", "require")
#: ``trainer.strategy`` values (see :class:`TrainerConfig` and :mod:`vlmo_pipeline.training.strategies`).
STRATEGIES: tuple[str, ...] = ("ddp", "fsdp")

#: Stage-1 trainable substrings: :data:`STAGE1_TRAINABLE` plus the model's own MIM mask token, which the model
#: library names ``transformer.mask_token`` (``STAGE1_TRAINABLE`` expects ``mim_mask_token``).
DEFAULT_STAGE1_TRAINABLE: tuple[str, ...] = STAGE1_TRAINABLE + ("transformer.mask_token",)

#: Which VLMo heads (``loss_names``) each stage trains with.
STAGE_TASKS: dict[str, tuple[str, ...]] = {
    "stage1": ("mim",),
    "stage2": ("textmlm",),
    "stage3": ("itc", "itm", "mlm"),
    "retrieval": ("irtr",),
    "vqa": ("vqa",),
    "nlvr2": ("nlvr2",),
}


#: The official no-weight-decay list (matched as substrings of parameter names).
OFFICIAL_NO_DECAY_SUBSTRINGS: tuple[str, ...] = (
    "bias",
    "LayerNorm.bias",
    "LayerNorm.weight",
    "norm.bias",
    "norm.weight",
    "norm1.bias",
    "norm1.weight",
    "norm2.bias",
    "norm2.weight",
)

#: Task heads that train with ``lr × lr_mult`` (substring match, as the official code).
OFFICIAL_HEAD_NAMES: tuple[str, ...] = ("vqa_classifier", "nlvr2_classifier")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser + schedule settings (defaults = the paper's stage-3 VLMo-Base values).

    ``warmup``: an ``int`` is a number of optimiser steps, a ``float`` in [0, 1] a fraction of the total
    (the official convention: ``0.1`` for VQA/NLVR2, ``2500`` steps for pretraining).
    """

    lr: float = 2e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    warmup: int | float = 2500
    lr_mult: float = 1.0
    head_names: tuple[str, ...] = OFFICIAL_HEAD_NAMES
    no_decay_substrings: tuple[str, ...] = field(default=OFFICIAL_NO_DECAY_SUBSTRINGS)

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0; got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay must be >= 0; got {self.weight_decay}")
        if self.lr_mult <= 0:
            raise ValueError(f"optim.lr_mult must be > 0; got {self.lr_mult}")
        # Accept lists from YAML and normalise to tuples (the dataclass is frozen, hence object.__setattr__).
        object.__setattr__(self, "betas", tuple(float(beta) for beta in self.betas))
        object.__setattr__(self, "head_names", tuple(self.head_names))
        object.__setattr__(self, "no_decay_substrings", tuple(self.no_decay_substrings))
        if len(self.betas) != 2:
            raise ValueError(f"optim.betas must have two values; got {self.betas}")


@dataclass
class TrainerConfig:
    """Lightning Trainer settings.

    ``precision="auto"`` means bf16-mixed on a GPU and 32-true on the CPU. ``max_steps`` counts optimiser steps;
    ``max_epochs`` is used only when ``max_steps`` is ``-1``. ``devices > 1`` makes the Kedro node launch
    ``python -m vlmo_pipeline.train`` under torchrun instead of training in-process.

    ``resume`` decides what an existing ``<output_dir>/lightning/last.ckpt`` means (see
    :func:`vlmo_pipeline.training.resume.run_fingerprint` for what must match):

    * ``auto`` (default): resume it when it belongs to the same run (same fingerprint), otherwise stop with an
      error naming the settings that differ; a re-run never silently resumes a stale run, nor discards one;
    * ``never``: always start fresh (the old checkpoints are deleted); same as the run's ``fresh_start: true``;
    * ``require``: resume it, and stop with an error when there is none or it belongs to another run.

    ``strategy`` (several devices): ``ddp`` (default; every rank holds the whole model) or ``fsdp`` (fully sharded:
    parameters, gradients and optimiser state split across the ranks, one FSDP unit per MoME block; for models that
    do not fit one device with DDP). See :mod:`vlmo_pipeline.training.strategies`.
    """

    max_steps: int = 100
    max_epochs: int = -1
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    precision: str | int = "auto"  # "auto" or any Lightning precision: "bf16-mixed", "32-true", 32, ...
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 100
    progress_bar: bool = True
    deterministic: bool = False
    resume: str = "auto"
    # Recompute each MoME block's activations in backward (less memory, ~1/3 more compute; same results).
    activation_checkpointing: bool = False
    strategy: str = "ddp"

    def __post_init__(self) -> None:
        if self.resume not in RESUME_MODES:
            raise ValueError(f"trainer.resume must be one of {list(RESUME_MODES)}; got {self.resume!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"trainer.strategy must be one of {list(STRATEGIES)}; got {self.strategy!r}")
        if self.strategy == "fsdp" and self.devices * self.num_nodes < 2:
            raise ValueError("trainer.strategy 'fsdp' shards the model across ranks: it needs devices x num_nodes >= 2")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"trainer.max_steps must be > 0 (or -1 to use max_epochs); got {self.max_steps}")
        if self.max_steps == -1 and self.max_epochs < 1:
            raise ValueError("trainer.max_steps is -1, so trainer.max_epochs must be >= 1")
        if (
            self.devices < 1
            or self.num_nodes < 1
            or self.accumulate_grad_batches < 1
            or self.checkpoint_every_n_steps < 1
        ):
            raise ValueError(
                "trainer.devices, num_nodes, accumulate_grad_batches and checkpoint_every_n_steps must be >= 1"
            )


@dataclass
class DataConfig:
    """Which Arrow datasets and splits to read, and how to batch and transform them.

    ``datasets`` maps a dataset name (a folder under ``root``, e.g. ``coco``) to its training splits (evaluation
    splits are the ``evaluate`` pipeline's parameters). ``dataset_dirs`` gives the folder of a dataset (the Kedro
    nodes fill it from their catalog inputs; ``root`` serves runs started by hand). ``max_text_len`` is the padded
    token length (<= the model's ``max_text_len``). ``augment=False`` trains on the evaluation transform (plain
    resize): the official random crop + RandAugment (``randaug``) + flip (``hflip``) are on by default, but crops
    and colour operations contradict text that states exact counts, colours and positions (the demo world's).
    """

    root: str = ""
    datasets: dict[str, list[str]] = field(default_factory=dict)
    dataset_dirs: dict[str, str] = field(default_factory=dict)
    batch_size: int = 32
    num_workers: int = 0
    max_text_len: int = 40
    augment: bool = True
    randaug: bool = True
    hflip: bool = True
    max_train_samples: int | None = None
    # How the Arrow shards are checked when a run opens them (``vlmo_pipeline.data.datasets``): ``size`` (the
    # manifest's byte sizes, row counts and schema; cheap) or ``sha256`` (also hash every shard, as `vlmo verify`).
    verify: str = "size"
    # A sample that cannot be decoded: ``fail`` stops the run naming shard and row; ``skip`` replaces it by the
    # next good one, logged and counted, and fails once more than ``max_corrupt_rate`` of the samples were skipped.
    corrupt_policy: str = "fail"
    max_corrupt_rate: float = 0.001

    def __post_init__(self) -> None:
        if self.verify not in ("size", "sha256"):
            raise ValueError(f"data.verify must be 'size' or 'sha256'; got {self.verify!r}")
        if self.corrupt_policy not in ("fail", "skip"):
            raise ValueError(f"data.corrupt_policy must be 'fail' or 'skip'; got {self.corrupt_policy!r}")
        if not 0.0 <= self.max_corrupt_rate < 1.0:
            raise ValueError(f"data.max_corrupt_rate must be in [0, 1); got {self.max_corrupt_rate}")
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1; got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0; got {self.num_workers}")
        for name, splits in self.datasets.items():
            if isinstance(splits, str) or not splits:
                raise ValueError(f"data: splits of {name!r} must be a non-empty list, got {splits!r}")
        self.datasets = {name: list(splits) for name, splits in self.datasets.items()}

    def dataset_dir(self, name: str) -> Path:
        """Folder of dataset ``name``: ``dataset_dirs[name]`` if given, else ``root/name``."""
        if name in self.dataset_dirs:
            return Path(self.dataset_dirs[name])
        if not self.root:
            raise ValueError(
                f"data: no folder for dataset {name!r}: the Kedro nodes take it from the catalog ({name}_arrow); "
                "by hand, set data.root (e.g. --data-root data/03_primary)"
            )
        return Path(self.root) / name

    def sources(self, names_to_splits: Mapping[str, list[str]]) -> list[tuple[Path, str]]:
        """``(dataset_dir, split)`` source specs for :mod:`vlmo_pipeline.data.datasets`, in the given order."""
        return [(self.dataset_dir(name), split) for name, splits in names_to_splits.items() for split in splits]


@dataclass
class MIMConfig:
    """Stage-1 masked image modeling: BEiT blockwise masks and a pluggable target (only ``pixel`` built in)."""

    mask_ratio: float = 0.4
    min_num_patches: int = 4
    max_aspect: float = 3.0
    target: str = "pixel"
    normalize_per_patch: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mim.mask_ratio must be in (0, 1); got {self.mask_ratio}")


@dataclass
class MLMConfig:
    """Whole-word masking (spec §4.3) and, for stage 3, the weight of the VL-MLM loss (``None`` = 0.25, official)."""

    mlm_probability: float = 0.15
    whole_word_masking: bool = True
    budget_over_padded_length: bool = True
    weight: float | None = None


@dataclass
class RunConfig:
    """Everything one training run needs.

    Attributes:
        stage: one of :data:`STAGES`.
        name: run name used for folders and logs (the registry's run name, e.g. ``stage1``).
        init: model to start from: a registry name (``vlmo_tiny``) or a ``save_pretrained`` directory.
        model_overrides: :class:`~vlmo_pipeline.models.VLMoConfig` fields applied when building from a name.
        init_from: optional BEiT checkpoint for stage 1 (``load_beit_checkpoint``).
        vocab_file: WordPiece ``vocab.txt``; ``None`` = the ``vocab.txt`` inside ``init``.
        output_dir: where the final ``save_pretrained`` directory goes; Lightning checkpoints go to
            ``<output_dir>/lightning`` (``last.ckpt`` is resumed unless ``fresh_start``).
        log_dir: CSV logs (``<log_dir>/metrics.csv``).
        The Kedro nodes take ``init`` (after stage 1), ``vocab_file`` (stage 1), ``output_dir``, ``log_dir`` and the
        dataset folders from the catalog; the parameter files hold no paths. By hand
        (``python -m vlmo_pipeline.train``) they come from the file or the command line.
        trainable: substrings of trainable parameter names (``None`` = everything trains); stage 1 and 2
            default to the spec's freezing rules.
        vlffn_init: stage 3 VL-FFN initialisation when the checkpoint has none: ``random`` (official code),
            ``text`` or ``image`` (copy the L-FFN / V-FFN of the same block).
        itm_negatives: stage 3 only: how ITM picks its negative pairs. ``hard`` (official): sampled from the ITC
            similarities, so the negative is a look-alike; ``random``: uniform over the other pairs of the global
            batch. The demo world's captions describe a part of the scene, so its look-alikes are often true of
            the image as well: such a "negative" is a wrong label, and the tiny model's ITM stays at its 2:1 prior.
        itc_temperature_init: initial temperature of ITC heads *created* by this run (``logit_scale`` =
            ln(1/T)); ``None`` keeps the official 0.07. Existing (loaded) temperatures are never touched.
    """

    stage: str
    name: str = ""
    init: str = "vlmo_tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    vocab_file: str | None = None
    output_dir: str = ""
    log_dir: str = ""
    seed: int = 0
    fresh_start: bool = False
    trainable: list[str] | None = None
    vlffn_init: str = "random"
    itc_temperature_init: float | None = None
    itm_negatives: str = "hard"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    mim: MIMConfig = field(default_factory=MIMConfig)
    mlm: MLMConfig = field(default_factory=MLMConfig)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; expected one of {list(STAGES)}")
        if not self.name:
            self.name = self.stage
        if self.trainable is None and self.stage == "stage1":
            self.trainable = list(DEFAULT_STAGE1_TRAINABLE)
        if self.trainable is None and self.stage == "stage2":
            self.trainable = list(STAGE2_TRAINABLE)
        if self.vlffn_init not in ("random", "text", "image"):
            raise ValueError(f"vlffn_init must be 'random', 'text' or 'image'; got {self.vlffn_init!r}")
        if self.itm_negatives not in ITM_NEGATIVE_MODES:
            raise ValueError(f"itm_negatives must be 'hard' or 'random'; got {self.itm_negatives!r}")
        if self.itc_temperature_init is not None and self.itc_temperature_init <= 0:
            raise ValueError(f"itc_temperature_init must be > 0; got {self.itc_temperature_init}")
        if self.stage != "stage1" and self.init_from:
            raise ValueError("init_from (a BEiT checkpoint) applies to stage1 only; later stages use `init`")

    @property
    def tasks(self) -> tuple[str, ...]:
        """The model heads (``loss_names``) this stage trains with."""
        return STAGE_TASKS[self.stage]

    @property
    def checkpoint_dir(self) -> Path:
        """Lightning checkpoints (``last.ckpt``) of this run."""
        return Path(self.output_dir) / "lightning"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["optim"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data["optim"].items()}
        return data


def run_config_from_dict(
    values: Mapping[str, Any], where: str = "parameters", path: str = "", **overrides: Any
) -> RunConfig:
    """Build a :class:`RunConfig` from a parameters mapping, every value type-checked
    (:func:`vlmo_pipeline.schema.build_config`); ``overrides`` replace top-level keys. ``where`` names the source
    (a parameters file) and ``path`` the section inside it, for error messages."""
    merged = dict(plain(values))
    merged.update(overrides)
    config = build_config(RunConfig, merged, where, path)
    optim = config.optim
    if isinstance(optim.warmup, float) and optim.warmup.is_integer() and optim.warmup > 1:
        config.optim = dataclasses.replace(optim, warmup=int(optim.warmup))
    return config
