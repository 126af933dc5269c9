"""``create_model`` / ``create_model_and_transforms``: one entry point for names, directories and files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import get_config, list_configs
from .pretrained import CONFIG_NAME, VOCAB_NAME
from .vlmo import VLMo


def create_model(name_or_path: str | os.PathLike, **overrides: Any) -> VLMo:
    """Build a :class:`VLMo` from a registry name, a ``save_pretrained`` directory, or an official checkpoint.

    * registry name (``vlmo_base_patch16``, ``vlmo_tiny``, ...): random init; ``overrides`` change any
      config field (``image_size``, ``patch_size``, ``vocab_size``, ``max_text_len``, ``loss_names``, ...).
    * directory with ``config.json`` + ``model.safetensors``: :meth:`VLMo.from_pretrained` (strict;
      pass ``strict=False`` together with new ``loss_names`` to add heads).
    * file (``.pt``/``.pth``/``.ckpt``/``.safetensors``): :func:`load_official_checkpoint`.
    """
    name = os.fspath(name_or_path)
    if name in list_configs():
        return VLMo(get_config(name, **overrides))
    path = Path(name)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path} is a directory without {CONFIG_NAME}: not a VLMo model directory")
        strict = overrides.pop("strict", True)
        return VLMo.from_pretrained(path, strict=strict, **overrides)
    if path.is_file():
        from .checkpoint import load_official_checkpoint

        return load_official_checkpoint(path, **overrides)
    raise ValueError(
        f"{name!r} is neither a registered config ({', '.join(list_configs())}), a model directory, "
        "nor a checkpoint file"
    )


def create_model_and_transforms(
    name_or_path: str | os.PathLike, vocab_file: str | os.PathLike | None = None, **overrides: Any
) -> tuple[VLMo, Any, Any, Any]:
    """Return ``(model, train_transform, eval_transform, tokenizer)``.

    Transforms come from :mod:`vlmo_pipeline.models.transforms` at the model's image size (RandAugment
    training transform, plain square-resize eval transform). The tokenizer is a
    :class:`~vlmo_pipeline.models.tokenizer.VLMoTokenizer` for ``vocab_file`` — or for the ``vocab.txt``
    inside a model directory — and ``None`` when no vocabulary is available. For a registry name with a
    vocabulary and no explicit ``vocab_size``, the model's vocabulary size follows the tokenizer.
    """
    from .transforms import build_eval_transform, build_train_transform

    name = os.fspath(name_or_path)
    path = Path(name)
    if vocab_file is None and path.is_dir() and (path / VOCAB_NAME).is_file():
        vocab_file = path / VOCAB_NAME
    if vocab_file is not None:
        from .tokenizer import VLMoTokenizer

        if name in list_configs() and "vocab_size" not in overrides:
            overrides["vocab_size"] = VLMoTokenizer(str(vocab_file), lowercase=True).vocab_size
    model = create_model(name_or_path, **overrides)
    tokenizer = None
    if vocab_file is not None:
        tokenizer = VLMoTokenizer(str(vocab_file), lowercase=True, max_len=model.config.max_text_len)
    image_size = model.config.image_size
    return model, build_train_transform(image_size, randaug=True), build_eval_transform(image_size), tokenizer
