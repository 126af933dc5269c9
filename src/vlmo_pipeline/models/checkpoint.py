"""Checkpoint I/O: official VLMo ``.pt``/``.ckpt`` files, BEiT v1 vision checkpoints, state-dict adaptation.

(About 540 lines: the key maps of two foreign formats, their resizing rules and the reports of what was loaded;
splitting them would separate each mapping from the checks that prove it.)

Every ``torch.load`` here uses ``weights_only=True`` (no arbitrary code from a checkpoint file).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .config import VLMoConfig, get_config, list_configs
from .pretrained import WEIGHTS_NAME
from .relpos import RelPosLayout, grid_size_from_rows, resize_relative_position_table
from .vlmo import VLMo, check_finite_weights

logger = logging.getLogger(__name__)

#: Index tensors that older official checkpoints carry but that are rebuilt at construction.
NON_PERSISTENT_KEYS = ("relative_position_index", "text_relative_position_index", "text_imag_relative_position_index")
POSITION_IDS_KEY = "text_embeddings.position_ids"
TABLE_KEY = "relative_position_bias_table"

StateDict = dict[str, torch.Tensor]


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model; the message lists every offending key."""


@dataclass
class LoadReport:
    """What happened while loading a state dict into a model."""

    source: str = "<state dict>"
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint (a, b) vs model (c, d)"
    notes: list[str] = field(default_factory=list)  # transformations applied (truncation, resize, ...)
    #: the part of ``missing`` that this kind of checkpoint never has (e.g. the text side of a BEiT checkpoint)
    expected_missing: list[str] = field(default_factory=list)
    loaded: int = 0  # tensors copied into the model

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self) -> dict[str, list[str]]:
        """Missing (beyond ``expected_missing``), unexpected and mis-shaped keys, by kind; empty when none."""
        expected = set(self.expected_missing)
        kinds = (
            ("missing", [k for k in self.missing if k not in expected]),
            ("unexpected", self.unexpected),
            ("shape mismatch", self.mismatched),
        )
        return {label: keys for label, keys in kinds if keys}

    def brief(self, shown: int = 3) -> str:
        """One short line: counts and the first ``shown`` names of every kind of problem."""
        parts = []
        for label, keys in self.problems().items():
            names = ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "")
            parts.append(f"{len(keys)} {label} ({names})")
        return "; ".join(parts) if parts else "all keys matched"

    def describe(self, limit: int = 60) -> str:
        parts = []
        for label, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("shape mismatch", self.mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:limit]) + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")
                parts.append(f"{len(keys)} {label} key(s): {shown}")
        return "; ".join(parts) if parts else "all keys matched"


# ----------------------------------------------------------------------------------------- reading


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler raises several types; surface one clear message
        raise ValueError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({type(error).__name__}: {error}). "
            "If it holds non-tensor Python objects, extract its state dict in a trusted environment first."
        ) from error


def read_state_dict(path_or_state_dict: str | os.PathLike | Mapping[str, Any]) -> tuple[StateDict, dict[str, Any]]:
    """Load and unwrap a checkpoint. Returns ``(state_dict, hints)``.

    Accepts a path (``.pt``/``.pth``/``.bin``/``.ckpt`` via torch, ``.safetensors``, or a
    ``save_pretrained`` directory) or an in-memory mapping. Containers ``state_dict`` (Lightning),
    ``module`` (DeepSpeed) and ``model`` (BEiT) are unwrapped and a leading ``module.`` is stripped
    from keys. ``hints`` holds the Lightning ``hyper_parameters["config"]`` dict when present.
    """
    source = "<state dict>"
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        path = Path(path_or_state_dict)
        source = str(path)
        if path.is_dir():
            path = path / WEIGHTS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} not found")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(path))
        else:
            raw = _torch_load(path)
    else:
        raw = path_or_state_dict
    if not isinstance(raw, Mapping):
        raise ValueError(f"{source}: expected a dict-like checkpoint, got {type(raw).__name__}")
    hints: dict[str, Any] = {}
    hyper = raw.get("hyper_parameters")
    if isinstance(hyper, Mapping) and isinstance(hyper.get("config"), Mapping):
        hints = dict(hyper["config"])
    for container in ("state_dict", "module", "model"):
        if container in raw and isinstance(raw[container], Mapping):
            raw = raw[container]
            break
    state_dict: StateDict = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state_dict[key[len("module.") :] if key.startswith("module.") else key] = value
    if not state_dict:
        raise ValueError(f"{source}: the checkpoint holds no tensors")
    return state_dict, hints


# ----------------------------------------------------------------------------------------- inference


def _block_indices(state_dict: StateDict, pattern: str) -> list[int]:
    regex = re.compile(r"^transformer\.blocks\.(\d+)\." + pattern)
    return sorted({int(m.group(1)) for key in state_dict if (m := regex.match(key))})


def infer_config(state_dict: StateDict, hints: Mapping[str, Any] | None = None, **overrides: Any) -> VLMoConfig:
    """Derive a :class:`VLMoConfig` from tensor shapes (spec: depth, dim, heads, VL-FFN start,
    image size, heads present). ``overrides`` win over everything; ``hints`` (Lightning
    hyper-parameters) fill values that shapes cannot tell (text budget of the table, drop path)."""
    hints = dict(hints or {})
    if "transformer.cls_token" not in state_dict or "transformer.patch_embed.proj.weight" not in state_dict:
        sample = ", ".join(list(state_dict)[:8])
        raise ValueError(f"not a VLMo state dict: no transformer.cls_token / patch_embed (first keys: {sample})")
    blocks = _block_indices(state_dict, r"norm1\.weight")
    if not blocks:
        raise ValueError("not a VLMo state dict: no transformer.blocks.*")
    depth = blocks[-1] + 1
    dim = state_dict["transformer.cls_token"].shape[-1]
    patch_weight = state_dict["transformer.patch_embed.proj.weight"]
    vl_blocks = _block_indices(state_dict, r"mlp_vl\.fc1\.weight")
    table = state_dict.get(TABLE_KEY)
    pos_embed = state_dict.get("transformer.pos_embed")
    text_positions = state_dict["text_embeddings.position_embeddings.weight"].shape[0]

    tasks: list[str] = []
    if "mlm_score.decoder.weight" in state_dict:
        tasks.append("mlm" if vl_blocks else "textmlm")
    if "itm_score.fc.weight" in state_dict:
        tasks.append("itm")
    if "itc_vl_text_proj.fc.weight" in state_dict:
        tasks.append("itc")
    elif "itc_text_proj.fc.weight" in state_dict:
        tasks.append("irtr")
    if "vqa_classifier.3.weight" in state_dict:
        tasks.append("vqa")
    if "nlvr2_classifier.3.weight" in state_dict:
        tasks.append("nlvr2")
    if "transformer.mask_token" in state_dict:
        tasks.append("mim")

    values: dict[str, Any] = {
        "name": "from_checkpoint",
        "embed_dim": dim,
        "depth": depth,
        "patch_size": patch_weight.shape[-1],
        "in_chans": patch_weight.shape[1],
        "mlp_ratio": state_dict["transformer.blocks.0.mlp_text.fc1.weight"].shape[0] / dim,
        "vlffn_start_layer_index": vl_blocks[0] if vl_blocks else depth,
        "layer_scale_init_values": 0.1 if "transformer.blocks.0.gamma_1" in state_dict else None,
        "use_relative_position_bias": table is not None,
        "use_abs_pos_emb": pos_embed is not None,
        "max_text_len": int(hints.get("max_text_len", text_positions)),
        "vocab_size": state_dict["text_embeddings.word_embeddings.weight"].shape[0],
        "loss_names": tuple(tasks),
    }
    if "vqa_classifier.3.weight" in state_dict:
        values["vqa_num_labels"] = state_dict["vqa_classifier.3.weight"].shape[0]
    if "drop_path_rate" in hints:
        values["drop_path_rate"] = float(hints["drop_path_rate"])
    values["num_heads"] = overrides.get("num_heads") or _infer_heads(table, depth, dim)

    # Image size and table text budget: overrides > hints > shapes.
    init_len = overrides.get("max_text_len_of_initckpt", hints.get("max_text_len_of_initckpt"))
    source_grid = None
    if table is not None:
        candidates = [init_len] if init_len is not None else [196, text_positions, values["max_text_len"], 40]
        for candidate in candidates:
            source_grid = grid_size_from_rows(table.shape[0], int(candidate))
            if source_grid is not None:
                init_len = int(candidate)
                break
        if source_grid is None:
            raise ValueError(
                f"cannot infer image size from a relative position table with {table.shape[0]} rows "
                f"(tried max_text_len_of_initckpt in {candidates}); pass image_size= and max_text_len_of_initckpt="
            )
    elif pos_embed is not None:
        source_grid = math.isqrt(pos_embed.shape[1] - 1)
    values["max_text_len_of_initckpt"] = int(init_len) if init_len is not None else max(196, values["max_text_len"])
    if source_grid is not None:
        values["image_size"] = source_grid * values["patch_size"]
    elif "image_size" in hints:
        values["image_size"] = int(hints["image_size"])
    values.update(overrides)
    return VLMoConfig(**values)


def _infer_heads(table: torch.Tensor | None, depth: int, dim: int) -> int:
    if table is not None:
        if table.shape[1] % depth:
            raise ValueError(f"relative position table has {table.shape[1]} columns, not a multiple of depth {depth}")
        return table.shape[1] // depth
    for name in list_configs():  # no table (Base-plus): fall back to a registered size with this width
        config = get_config(name)
        if config.embed_dim == dim and config.depth == depth:
            return config.num_heads
    if dim % 64 == 0:
        return dim // 64
    raise ValueError(f"cannot infer num_heads for embed_dim={dim} without a relative position table; pass num_heads=")


# ----------------------------------------------------------------------------------------- adaptation


def adapt_state_dict(state_dict: StateDict, config: VLMoConfig, notes: list[str] | None = None) -> StateDict:
    """Make a VLMo checkpoint fit ``config`` the way the official loader does.

    Drops the rebuilt index tensors, truncates text positions (e.g. stage-2 196 → 40) and sets
    ``position_ids``, interpolates Base-plus ``pos_embed`` bicubically, resizes the image part of the
    relative position table to the new grid, and grows the modality embedding 2→3 rows for NLVR2.
    """
    notes = [] if notes is None else notes
    adapted = {k: v for k, v in state_dict.items() if k not in NON_PERSISTENT_KEYS}
    if len(adapted) != len(state_dict):
        notes.append("dropped rebuilt relative-position index tensors")
    max_len = config.max_text_len
    position_key = "text_embeddings.position_embeddings.weight"
    if position_key in adapted and adapted[position_key].shape[0] != max_len:
        rows = adapted[position_key].shape[0]
        if rows < max_len:
            raise CheckpointMismatchError(
                f"{position_key} has {rows} rows but max_text_len={max_len}: cannot extend text positions"
            )
        adapted[position_key] = adapted[position_key][:max_len].clone()
        notes.append(f"truncated text position embeddings {rows} -> {max_len}")
    if position_key in adapted:
        adapted[POSITION_IDS_KEY] = torch.arange(max_len, dtype=torch.long).unsqueeze(0)

    pos_embed = adapted.get("transformer.pos_embed")
    if pos_embed is not None and config.use_abs_pos_emb and pos_embed.shape[1] != config.num_image_tokens:
        adapted["transformer.pos_embed"] = _interpolate_pos_embed(pos_embed, config.grid_size)
        notes.append(f"interpolated pos_embed {pos_embed.shape[1]} -> {config.num_image_tokens} tokens")

    table = adapted.get(TABLE_KEY)
    target = RelPosLayout(config.grid_size, config.max_text_len_of_initckpt)
    if table is not None and config.use_relative_position_bias and table.shape[0] != target.num_rows:
        source_grid = grid_size_from_rows(table.shape[0], config.max_text_len_of_initckpt)
        if source_grid is None:
            raise CheckpointMismatchError(
                f"{TABLE_KEY} has {table.shape[0]} rows, which matches no image grid for "
                f"max_text_len_of_initckpt={config.max_text_len_of_initckpt} (model needs {target.num_rows})"
            )
        adapted[TABLE_KEY] = resize_relative_position_table(table, source_grid, config.grid_size)
        notes.append(
            f"resized {TABLE_KEY} grid {source_grid} -> {config.grid_size} ({table.shape[0]} -> {target.num_rows} rows)"
        )

    token_types = adapted.get("token_type_embeddings.weight")
    if token_types is not None and token_types.shape[0] == 2 and config.num_token_types == 3:
        adapted["token_type_embeddings.weight"] = torch.cat([token_types, token_types[1:2]], dim=0)
        notes.append("expanded token_type_embeddings 2 -> 3 rows (row 2 = row 1)")
    return adapted


def _interpolate_pos_embed(pos_embed: torch.Tensor, grid_size: int) -> torch.Tensor:
    cls_part, patch_part = pos_embed[:, :1], pos_embed[:, 1:]
    source = math.isqrt(patch_part.shape[1])
    grid = patch_part.reshape(1, source, source, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(grid_size, grid_size), mode="bicubic", align_corners=False)
    patch_part = grid.permute(0, 2, 3, 1).reshape(1, grid_size * grid_size, -1).to(pos_embed.dtype)
    return torch.cat([cls_part, patch_part], dim=1)


def load_into_model(
    model: VLMo,
    state_dict: StateDict,
    strict: bool = True,
    source: str = "<state dict>",
    adapt: bool = True,
    log: bool = True,
) -> LoadReport:
    """Load ``state_dict`` (adapted to the model's config) into ``model``.

    ``strict=True`` raises :class:`CheckpointMismatchError` listing every missing / unexpected /
    mis-shaped key; ``strict=False`` loads what fits and returns the report (logged in at most one short line
    unless ``log=False``: a warning with counts and a few names when keys do not match).
    """
    report = LoadReport(source=source)
    if adapt:
        state_dict = adapt_state_dict(state_dict, model.config, report.notes)
    expected = model.state_dict()
    report.missing = [k for k in expected if k not in state_dict]
    report.unexpected = [k for k in state_dict if k not in expected]
    loadable = {}
    for key, value in state_dict.items():
        if key in expected:
            if tuple(value.shape) != tuple(expected[key].shape):
                report.mismatched.append(
                    f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[key].shape)}"
                )
            else:
                loadable[key] = value
    if strict and not report.ok:
        raise CheckpointMismatchError(f"{source} does not match the model: {report.describe()}")
    model.load_state_dict(loadable, strict=False)
    report.loaded = len(loadable)
    if log:
        _log_load(report)
    return report


def _log_load(report: LoadReport, what: str = "") -> None:
    """At most one line: a short warning with counts and a few key names when keys really do not match,
    else one info line when the load transformed something (notes) or loaded a partial checkpoint on purpose."""
    problems = report.problems()
    notes = "; ".join(report.notes)
    if problems:
        logger.warning(
            "%s%s loaded non-strictly: %s%s (LoadReport in model.load_report lists every key)",
            what,
            report.source,
            report.brief(),
            f"; {notes}" if notes else "",
        )
    elif notes or report.expected_missing:
        kept = (
            f"; {len(report.expected_missing)} tensors it does not hold keep their initialisation"
            if report.expected_missing
            else ""
        )
        logger.info(
            "%s%s: %d tensors loaded%s%s", what, report.source, report.loaded, kept, f" ({notes})" if notes else ""
        )


# ----------------------------------------------------------------------------------------- public API


def load_official_checkpoint(
    path_or_state_dict: str | os.PathLike | Mapping[str, Any], allow_non_finite: bool = False, **overrides: Any
) -> VLMo:
    """Build a :class:`VLMo` matching an official checkpoint and load it strictly.

    Accepts the released ``.pt`` (bare state dict or ``{"state_dict"|"model"|"module": ...}``), a
    Lightning ``.ckpt``, or a mapping. The architecture is inferred from the tensor shapes;
    ``overrides`` (any :class:`VLMoConfig` field, e.g. ``image_size=384``, ``max_text_len=40``,
    ``attention_impl``) change it, with the official loader transformations applied. Only the
    documented non-persistent keys may differ; anything else raises :class:`CheckpointMismatchError`.
    The model is returned in eval mode (call ``.train()`` to fine-tune). Weights holding NaN / ±inf raise
    :class:`~vlmo_pipeline.models.vlmo.NonFiniteWeightsError`; ``allow_non_finite=True`` loads them with a warning.
    """
    source = str(path_or_state_dict) if isinstance(path_or_state_dict, (str, os.PathLike)) else "<state dict>"
    state_dict, hints = read_state_dict(path_or_state_dict)
    check_finite_weights(state_dict, source, allow_non_finite)
    config = infer_config(state_dict, hints, **overrides)
    model = VLMo(config)
    model.load_report = load_into_model(model, state_dict, strict=True, source=source)
    return model.eval()


def export_official_state_dict(model: VLMo) -> StateDict:
    """State dict the official ``VLMo`` loads with ``strict=True`` (same keys, shapes, dtypes).

    Includes the int64 ``text_embeddings.position_ids`` buffer; drops ``transformer.mask_token``
    (our MIM extension, unknown to the official code).
    """
    exported = {k: v.detach().clone() for k, v in model.state_dict().items() if k != "transformer.mask_token"}
    exported[POSITION_IDS_KEY] = torch.arange(model.config.max_text_len, dtype=torch.long).unsqueeze(0)
    return exported


_BEIT_DROPPED = re.compile(r"^(fc_norm\.|head\.|lm_head\.|.*relative_position_index$)")
#: VLMo keys a BEiT checkpoint provides (after the key mapping of :func:`load_beit_checkpoint`).
_BEIT_IMAGE_SIDE = re.compile(
    r"^(transformer\.(patch_embed\.|cls_token$|pos_embed$|blocks\.\d+\.(norm1\.|attn\.|gamma_[12]$|norm2_imag\.|mlp_imag\.))"
    r"|relative_position_bias_table$)"
)


#: Share of the model's image-side tensors a BEiT checkpoint must fill for :func:`load_beit_checkpoint` to accept it.
MIN_BEIT_IMAGE_FRACTION = 0.9


def load_beit_checkpoint(
    model_or_config: VLMo | VLMoConfig | str,
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    min_image_fraction: float = MIN_BEIT_IMAGE_FRACTION,
) -> VLMo:
    """Initialise the image side from a BEiT (v1) checkpoint (official stage-1 → stage-2 conversion).

    Keys get the ``transformer.`` prefix, ``mlp`` → ``mlp_imag``, ``norm2`` → ``norm2_imag``; per-layer
    ``blocks.i.attn.relative_position_bias_table`` (or a shared ``rel_pos_bias`` table, repeated per
    layer) fill rows 0..(2W−1)²+2 of the VLMo table (resized if the grid differs; text rows untouched);
    ``fc_norm``/``head``/``lm_head`` and index tensors are dropped. Loads non-strictly (text side,
    ``transformer.norm`` when absent, heads stay as initialised); the :class:`LoadReport` is stored in
    ``model.load_report``. Returns the model.

    Strict about the image side: :class:`CheckpointMismatchError` (naming the file, the counts and a few keys),
    with the model left untouched, when any tensor has another shape than the model's (a BEiT of another width,
    depth or patch size) or fewer than ``min_image_fraction`` (90 %) of the model's image-side tensors would be
    filled (e.g. a VLMo or other non-BEiT file). The text side a BEiT file never holds stays one INFO line.
    """
    if isinstance(model_or_config, str):
        model_or_config = get_config(model_or_config)
    model = VLMo(model_or_config) if isinstance(model_or_config, VLMoConfig) else model_or_config
    source = str(path_or_state_dict) if isinstance(path_or_state_dict, (str, os.PathLike)) else "<state dict>"
    beit, _ = read_state_dict(path_or_state_dict)
    config = model.config
    report = LoadReport(source=source)
    mapped: StateDict = {}
    per_layer_tables: dict[int, torch.Tensor] = {}
    shared_table = None
    for key, value in beit.items():
        if _BEIT_DROPPED.match(key):
            continue
        layer_table = re.match(r"^blocks\.(\d+)\.attn\.relative_position_bias_table$", key)
        if layer_table:
            per_layer_tables[int(layer_table.group(1))] = value
            continue
        if key == "rel_pos_bias.relative_position_bias_table":
            shared_table = value
            continue
        new_key = "transformer." + key
        if "mlp" in new_key:
            new_key = new_key.replace("mlp", "mlp_imag")
        if "norm2" in new_key:
            new_key = new_key.replace("norm2", "norm2_imag")
        mapped[new_key] = value
    if shared_table is not None and not per_layer_tables:
        per_layer_tables = {i: shared_table for i in range(config.depth)}
        report.notes.append("shared BEiT rel-pos table repeated for every layer")
    if per_layer_tables and model.relative_position_bias_table is not None:
        if sorted(per_layer_tables) != list(range(config.depth)):
            raise CheckpointMismatchError(
                f"{source}: BEiT relative position tables for layers {sorted(per_layer_tables)}, "
                f"model has {config.depth}"
            )
        image_table = torch.cat([per_layer_tables[i] for i in range(config.depth)], dim=1)
        source_grid = (math.isqrt(image_table.shape[0] - 3) + 1) // 2
        if (2 * source_grid - 1) ** 2 + 3 != image_table.shape[0]:
            raise CheckpointMismatchError(
                f"{source}: BEiT rel-pos table has {image_table.shape[0]} rows, not (2W-1)^2+3"
            )
        if source_grid != config.grid_size:
            image_table = resize_relative_position_table(image_table, source_grid, config.grid_size)
            report.notes.append(f"resized BEiT rel-pos grid {source_grid} -> {config.grid_size}")
        table = model.relative_position_bias_table.detach().clone()
        if image_table.shape != (model.layout.num_image_distances, table.shape[1]):
            raise CheckpointMismatchError(
                f"{source}: BEiT rel-pos tables give {tuple(image_table.shape)}, model image part is "
                f"({model.layout.num_image_distances}, {table.shape[1]})"
            )
        table[: model.layout.num_image_distances] = image_table.to(table.dtype)
        mapped[TABLE_KEY] = table
    if "transformer.pos_embed" in mapped and config.use_abs_pos_emb:
        if mapped["transformer.pos_embed"].shape[1] != config.num_image_tokens:
            mapped["transformer.pos_embed"] = _interpolate_pos_embed(mapped["transformer.pos_embed"], config.grid_size)
    _check_beit_fits(model, mapped, source, min_image_fraction)
    loaded = load_into_model(model, mapped, strict=False, source=source, adapt=False, log=False)
    loaded.notes[:0] = report.notes
    # A BEiT checkpoint holds the image side only: the text side, L-FFN/VL-FFN, heads and (mean-pooling BEiT)
    # the final norm keep their initialisation by design; only a missing image-side key is a problem.
    loaded.expected_missing = [key for key in loaded.missing if not _BEIT_IMAGE_SIDE.match(key)]
    _log_load(loaded, what="BEiT checkpoint ")
    model.load_report = loaded
    return model


def _check_beit_fits(model: VLMo, mapped: StateDict, source: str, min_image_fraction: float) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``mapped`` fills the model's image side (see the caller)."""
    expected = model.state_dict()
    image_keys = [key for key in expected if _BEIT_IMAGE_SIDE.match(key)]
    mismatched = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[key].shape)}"
        for key, value in mapped.items()
        if key in expected and tuple(value.shape) != tuple(expected[key].shape)
    ]
    used = [key for key in image_keys if key in mapped and tuple(mapped[key].shape) == tuple(expected[key].shape)]
    unexpected = [key for key in mapped if key not in expected]
    if not mismatched and len(used) >= min_image_fraction * len(image_keys):
        return

    def few(keys: list[str], shown: int = 3) -> str:
        return ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "")

    missing = [key for key in image_keys if key not in mapped]
    need = f"need >= {min_image_fraction:.0%}"
    parts = [f"{len(used)} of the model's {len(image_keys)} image-side tensors usable ({need})"]
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatch ({few(mismatched)})")
    if missing:
        parts.append(f"{len(missing)} image-side missing ({few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({few(unexpected)})")
    config = model.config
    raise CheckpointMismatchError(
        f"{source} does not fit the image side of this model (embed_dim {config.embed_dim}, depth {config.depth}, "
        f"patch_size {config.patch_size}): " + "; ".join(parts) + ". Is it a BEiT (v1) checkpoint of the same "
        "architecture? The model was left unchanged."
    )
