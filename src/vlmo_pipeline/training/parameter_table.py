"""Trainable / frozen parameter counts per module group of a run (``trainable_parameters.md`` and ``.json``).

Every training run writes the table beside its CSV log (``<log_dir>``, i.e. ``data/08_reporting/<run>/``) once its
freezing rule is applied, so that "what does stage 2 freeze?" is answered by a file, not by reading
:mod:`vlmo_pipeline.training.freezing`. A parameter belongs to the first group of :data:`GROUPS` whose pattern
matches its name (the ``model.`` prefix of the Lightning module removed); anything unmatched goes to ``other``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from vlmo_pipeline.files import atomic_write_text

__all__ = [
    "GROUPS",
    "TABLE_NAME",
    "TABLE_JSON_NAME",
    "parameter_group",
    "trainable_parameter_table",
    "render_parameter_table",
    "write_parameter_table",
]

TABLE_NAME = "trainable_parameters.md"
TABLE_JSON_NAME = "trainable_parameters.json"

_BLOCK = r"^transformer\.blocks\.\d+\."
#: (group, what it holds, pattern on the parameter name), in matching order.
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("patch embedding", "transformer.patch_embed", r"^transformer\.patch_embed\."),
    (
        "image CLS / position embedding",
        "transformer.cls_token, transformer.pos_embed",
        r"^transformer\.(cls_token|pos_embed)$",
    ),
    ("text embeddings", "text_embeddings.* (word, position, token type, LayerNorm)", r"^text_embeddings\."),
    ("modality (token-type) embeddings", "token_type_embeddings", r"^token_type_embeddings\."),
    (
        "relative position bias",
        "relative_position_bias_table (image rows + text rows, every layer)",
        r"^relative_position_bias_table$",
    ),
    ("shared attention", "blocks.*.attn (qkv, q/v bias, proj)", _BLOCK + r"attn\."),
    ("attention norm (norm1)", "blocks.*.norm1", _BLOCK + r"norm1\."),
    ("layer scale (gamma_1, gamma_2)", "blocks.*.gamma_1, gamma_2", _BLOCK + r"gamma_[12]$"),
    ("V-FFN", "blocks.*.mlp_imag", _BLOCK + r"mlp_imag\."),
    ("V-FFN norm", "blocks.*.norm2_imag", _BLOCK + r"norm2_imag\."),
    ("L-FFN", "blocks.*.mlp_text", _BLOCK + r"mlp_text\."),
    ("L-FFN norm", "blocks.*.norm2_text", _BLOCK + r"norm2_text\."),
    ("VL-FFN", "blocks.*.mlp_vl", _BLOCK + r"mlp_vl\."),
    ("VL-FFN norm", "blocks.*.norm2_vl", _BLOCK + r"norm2_vl\."),
    ("final norm", "transformer.norm", r"^transformer\.norm\."),
    ("MIM mask token + head (stage 1)", "transformer.mask_token, mim_head", r"^(transformer\.mask_token$|mim_head\.)"),
    ("MLM head", "mlm_score", r"^mlm_score\."),
    (
        "ITC projections + temperatures",
        "itc_*_proj, logit_scale, logit_vl_scale",
        r"^(itc_\w+_proj\.|logit_scale$|logit_vl_scale$)",
    ),
    ("ITM head", "itm_score", r"^itm_score\."),
    ("pooler", "pooler", r"^pooler\."),
    ("VQA head", "vqa_classifier", r"^vqa_classifier\."),
    ("NLVR2 head", "nlvr2_classifier", r"^nlvr2_classifier\."),
)
OTHER = "other"
_COMPILED = tuple((name, re.compile(pattern)) for name, _, pattern in GROUPS)


def _model_name(name: str) -> str:
    return name[len("model.") :] if name.startswith("model.") else name


def parameter_group(name: str) -> str:
    """Group of a parameter name (with or without the Lightning module's ``model.`` prefix)."""
    name = _model_name(name)
    for group, pattern in _COMPILED:
        if pattern.search(name):
            return group
    return OTHER


def trainable_parameter_table(
    module: nn.Module, run: str = "", stage: str = "", rule: Sequence[str] | None = None
) -> dict[str, Any]:
    """Counts per group of ``module``'s parameters by ``requires_grad``: ``groups`` (present groups, in
    :data:`GROUPS` order: ``trainable`` / ``frozen`` / ``total`` parameters, the same for tensors, and ``state``
    = trainable, frozen or partial) and ``totals``. ``rule``: the trainable substrings applied (for the record)."""
    rows: dict[str, dict[str, Any]] = {}
    for name, parameter in module.named_parameters():
        group = parameter_group(name)
        row = rows.setdefault(
            group, {"group": group, "trainable": 0, "frozen": 0, "trainable_tensors": 0, "frozen_tensors": 0}
        )
        kind = "trainable" if parameter.requires_grad else "frozen"
        row[kind] += parameter.numel()
        row[f"{kind}_tensors"] += 1
    order = [name for name, _, _ in GROUPS] + [OTHER]
    holds = {name: what for name, what, _ in GROUPS} | {OTHER: "parameters matching no group"}
    groups = []
    for group in order:
        if group not in rows:
            continue
        row = rows[group]
        row["total"] = row["trainable"] + row["frozen"]
        row["state"] = "trainable" if not row["frozen"] else "frozen" if not row["trainable"] else "partial"
        row["holds"] = holds[group]
        groups.append(row)
    trainable = sum(row["trainable"] for row in groups)
    frozen = sum(row["frozen"] for row in groups)
    return {
        "run": run,
        "stage": stage,
        "trainable_rule": list(rule) if rule is not None else None,
        "groups": groups,
        "totals": {
            "trainable": trainable,
            "frozen": frozen,
            "total": trainable + frozen,
            "trainable_percent": round(100.0 * trainable / max(1, trainable + frozen), 2),
            "trainable_tensors": sum(row["trainable_tensors"] for row in groups),
            "frozen_tensors": sum(row["frozen_tensors"] for row in groups),
        },
    }


def _row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(f"{cell:,}" if isinstance(cell, int) else str(cell) for cell in cells) + " |"


def render_parameter_table(table: Mapping[str, Any]) -> str:
    """Markdown of :func:`trainable_parameter_table`."""
    title = table.get("run") or table.get("stage") or "run"
    totals = table["totals"]
    lines = [f"# Trainable parameters: {title}", ""]
    if table.get("stage"):
        lines.append(f"Stage / task: `{table['stage']}`.")
    rule = table.get("trainable_rule")
    if rule is None:
        lines.append("Freezing rule: none (every parameter of the model trains).")
    else:
        lines.append(
            "Freezing rule: everything frozen, then every parameter whose name contains one of "
            + ", ".join(f"`{substring}`" for substring in rule)
            + " trains "
            "(`vlmo_pipeline.training.freezing`)."
        )
    lines += ["", _row(["module group", "holds", "state", "trainable", "frozen", "total"]), _row(["---"] * 6)]
    for row in table["groups"]:
        lines.append(_row([row["group"], row["holds"], row["state"], row["trainable"], row["frozen"], row["total"]]))
    lines.append(
        _row(
            [
                "**total**",
                "",
                f"{totals['trainable_percent']:.1f} % trainable",
                totals["trainable"],
                totals["frozen"],
                totals["total"],
            ]
        )
    )
    lines.append("")
    states = {row["group"]: row["state"] for row in table["groups"]}
    if states.get("relative position bias") == "trainable" and states.get("shared attention") == "frozen":
        lines += [
            "The relative position bias table is one tensor for the image rows and the text rows: it is "
            "trainable, but a text-only pass indexes only its text rows, so only those get a gradient (and "
            "the table has no weight decay), while the image rows stay as they were.",
            "",
        ]
    return "\n".join(lines)


def write_parameter_table(table: Mapping[str, Any], directory: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``trainable_parameters.md`` and ``.json`` into ``directory`` (atomically); return both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / TABLE_NAME, directory / TABLE_JSON_NAME
    for path, text in zip(paths, (render_parameter_table(table), json.dumps(table, indent=2) + "\n")):
        atomic_write_text(path, text)
    return paths
