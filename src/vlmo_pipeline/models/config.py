"""VLMo model configuration: one dataclass and a registry of named sizes.

The named VLMo sizes follow the official `multiway_transformer.py` variants (see
`docs/models.md`); `vlmo_tiny` / `vlmo_small` are our own small sizes for tests and the CPU demo.
Every field can be overridden, so any size is constructible::

    cfg = get_config("vlmo_tiny", vocab_size=1000, image_size=96)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmo_pipeline.schema import ConfigError, build_config, check_fields

#: Task names understood by ``VLMoConfig.loss_names`` (official ``loss_names`` keys plus ``mim``).
KNOWN_TASKS: tuple[str, ...] = ("itc", "itm", "mlm", "textmlm", "irtr", "vqa", "nlvr2", "mim")

PRETRAIN_TASKS: tuple[str, ...] = ("itc", "itm", "mlm")

ATTENTION_IMPLS: tuple[str, ...] = ("sdpa", "reference")

#: Layout version of the ``config.json`` that ``save_pretrained`` writes; a file of a newer version is refused.
CONFIG_FORMAT_VERSION = 1


@dataclass
class VLMoConfig:
    """Architecture + task-head description of a VLMo model.

    ``loss_names`` plays the role of the official ``loss_names`` dict: it decides which heads are
    built (MLM for ``mlm``/``textmlm``, ITM for ``itm``, four ITC projections and two temperatures
    for ``itc``, two projections and one temperature for ``irtr``, VQA / NLVR2 classifiers; ``mim``
    adds a learnable ``transformer.mask_token`` for masked image modelling). ``textmlm`` switches off
    the VL-FFN experts (official stage 2 behaviour) without changing ``vlffn_start_layer_index``.
    """

    name: str = "custom"
    # --- transformer ---
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    vlffn_start_layer_index: int = 10
    patch_size: int = 16
    image_size: int = 224
    in_chans: int = 3
    layer_scale_init_values: float | None = 0.1
    # Std of the (truncated) normal init of every Linear weight. The official 0.02 suits width 768; a tiny model
    # trained for a few hundred steps needs about 1/sqrt(embed_dim), or its [CLS] features stay dominated by the
    # constant [CLS] embedding and the contrastive losses sit at ln(batch) (see docs/models.md).
    linear_init_std: float = 0.02
    use_relative_position_bias: bool = True
    use_abs_pos_emb: bool = False
    norm_eps: float = 1e-6
    drop_path_rate: float = 0.1
    # --- text ---
    max_text_len: int = 40
    max_text_len_of_initckpt: int = 196
    vocab_size: int = 30522
    text_layer_norm_eps: float = 1e-12
    # Official quirk: BertEmbeddings dropout uses hidden_dropout_prob=drop_path_rate. None = same.
    text_dropout: float | None = None
    pad_token_id: int = 0
    # --- heads ---
    loss_names: tuple[str, ...] = PRETRAIN_TASKS
    vqa_num_labels: int = 3129
    # --- execution ---
    attention_impl: str = "sdpa"
    # Free-form JSON-serialisable metadata (e.g. training stage); never read by the model.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.loss_names = tuple(dict.fromkeys(self.loss_names))  # keep order, drop duplicates
        self.validate()

    # ------------------------------------------------------------------ derived values
    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def grid_size(self) -> int:
        """Patches per image side (W in the spec)."""
        return self.image_size // self.patch_size

    @property
    def num_image_tokens(self) -> int:
        """Image sequence length: CLS + W² patches."""
        return self.grid_size**2 + 1

    @property
    def effective_vlffn_start(self) -> int:
        """First block with a VL-FFN; ``depth`` (none) when ``textmlm`` is a task (official rule)."""
        return self.depth if "textmlm" in self.loss_names else self.vlffn_start_layer_index

    @property
    def num_token_types(self) -> int:
        """Rows of the modality embedding: 3 for NLVR2 (second image uses type 2), else 2."""
        return 3 if "nlvr2" in self.loss_names else 2

    @property
    def effective_text_dropout(self) -> float:
        return self.drop_path_rate if self.text_dropout is None else self.text_dropout

    def has_task(self, task: str) -> bool:
        return task in self.loss_names

    # ------------------------------------------------------------------ checks and (de)serialisation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending field when the configuration is inconsistent."""
        sizes = ("embed_dim", "depth", "num_heads", "patch_size", "image_size", "in_chans", "vocab_size")
        problems = [f"{name}={getattr(self, name)} must be >= 1" for name in sizes if getattr(self, name) < 1]
        if not self.mlp_ratio > 0:
            problems.append(f"mlp_ratio={self.mlp_ratio} must be > 0")
        if problems:  # the checks below divide by these sizes
            raise ValueError("invalid VLMoConfig: " + "; ".join(problems))
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.image_size % self.patch_size:
            problems.append(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        if not 0 <= self.vlffn_start_layer_index <= self.depth:
            problems.append(f"vlffn_start_layer_index={self.vlffn_start_layer_index} outside [0, depth={self.depth}]")
        if self.use_relative_position_bias and self.max_text_len > self.max_text_len_of_initckpt:
            problems.append(
                f"max_text_len={self.max_text_len} exceeds max_text_len_of_initckpt="
                f"{self.max_text_len_of_initckpt}: the relative position table has no rows for such distances"
            )
        unknown = [t for t in self.loss_names if t not in KNOWN_TASKS]
        if unknown:
            problems.append(f"unknown loss_names {unknown}; known: {list(KNOWN_TASKS)}")
        if self.attention_impl not in ATTENTION_IMPLS:
            problems.append(f"attention_impl={self.attention_impl!r} not in {ATTENTION_IMPLS}")
        if self.max_text_len < 2:
            problems.append("max_text_len must be at least 2 ([CLS] + one token)")
        if not self.linear_init_std > 0:
            problems.append(f"linear_init_std must be > 0, got {self.linear_init_std}")
        if problems:
            raise ValueError("invalid VLMoConfig: " + "; ".join(problems))

    def replace(self, **overrides: Any) -> VLMoConfig:
        """Copy with some fields changed; each value is type-checked and unknown field names raise
        :class:`~vlmo_pipeline.schema.ConfigError` (a ``ValueError``)."""
        return dataclasses.replace(self, **check_fields(VLMoConfig, overrides, "VLMoConfig overrides"))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["loss_names"] = list(self.loss_names)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config") -> VLMoConfig:
        """Typed construction from a ``config.json`` mapping (:func:`vlmo_pipeline.schema.build_config`): a wrong
        type, an unknown field or a ``format_version`` newer than :data:`CONFIG_FORMAT_VERSION` raises
        :class:`~vlmo_pipeline.schema.ConfigError` naming ``where`` and the field."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a JSON object of model settings, got {type(data).__name__}")
        values = dict(data)
        version = values.pop("format_version", CONFIG_FORMAT_VERSION)  # files before the field are version 1
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= CONFIG_FORMAT_VERSION:
            raise ConfigError(
                f"{where}: format_version: expected an integer from 1 to {CONFIG_FORMAT_VERSION} (the newest this "
                f"version of vlmo_pipeline reads), got {version!r}"
            )
        return build_config(cls, values, where)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> VLMoConfig:
        """Read a ``config.json`` (as written by ``save_pretrained``); errors name the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path}: not UTF-8 text ({error})") from error
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: invalid JSON ({error})") from error
        return cls.from_dict(data, where=str(path))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _base_like(**fields: Any) -> VLMoConfig:
    return VLMoConfig(**fields)


_REGISTRY: dict[str, VLMoConfig] = {}


def register_config(config: VLMoConfig, *, overwrite: bool = False) -> None:
    """Add a named configuration to the registry (name taken from ``config.name``)."""
    if config.name in _REGISTRY and not overwrite:
        raise ValueError(f"config {config.name!r} is already registered")
    _REGISTRY[config.name] = config


def list_configs() -> list[str]:
    """Names accepted by :func:`get_config` / ``create_model``."""
    return sorted(_REGISTRY)


def get_config(name: str, **overrides: Any) -> VLMoConfig:
    """Registered configuration ``name`` with ``overrides`` applied (a fresh copy)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown VLMo config {name!r}; registered: {list_configs()}")
    return _REGISTRY[name].replace(**overrides)


# Official sizes (spec §1.1). All three: patch 16, image 224, MLP ratio 4, LN eps 1e-6.
register_config(_base_like(name="vlmo_base_patch16", embed_dim=768, depth=12, num_heads=12, vlffn_start_layer_index=10))
register_config(
    _base_like(name="vlmo_large_patch16", embed_dim=1024, depth=24, num_heads=16, vlffn_start_layer_index=21)
)
register_config(
    _base_like(
        name="vlmo_base_plus_patch16",
        embed_dim=544,
        depth=24,
        num_heads=16,
        vlffn_start_layer_index=21,
        layer_scale_init_values=None,
        use_relative_position_bias=False,
        use_abs_pos_emb=True,
    )
)
# Small sizes for tests and the CPU demo (not in the official code).
register_config(
    _base_like(
        name="vlmo_tiny",
        embed_dim=128,
        depth=4,
        num_heads=4,
        vlffn_start_layer_index=2,
        image_size=64,
        max_text_len=40,
        max_text_len_of_initckpt=40,
        linear_init_std=128**-0.5,
    )
)
register_config(
    _base_like(
        name="vlmo_small",
        embed_dim=256,
        depth=6,
        num_heads=4,
        vlffn_start_layer_index=4,
        image_size=128,
        max_text_len=40,
        max_text_len_of_initckpt=40,
        linear_init_std=256**-0.5,
    )
)
