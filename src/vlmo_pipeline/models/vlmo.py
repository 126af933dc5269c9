"""The VLMo model: Multiway transformer + shared relative position bias + text embeddings + task heads.

(About 640 lines, on purpose: the whole forward pass, the task heads' wiring and the save / load of the weights in
one file that reads in one sitting against the official ``vlmo_module.py``.)

State-dict keys equal the official ``VLMo`` LightningModule's (spec §2). Forward entry points mirror the
official ``infer*`` methods but take tensors instead of batch dicts:

=====================  ==========================================  =================================
method                 official counterpart                        returns
=====================  ==========================================  =================================
``encode_image``       ``infer_image_ft(batch)["cls_feats"]``      (B, D) L2-normalised
``encode_text``        ``infer_text_ft(batch)["cls_feats"]``       (B, D) L2-normalised
``encode_image_vl``    ``infer_image(batch)["cls_vlffn_feats"]``   (B, D) L2-normalised
``encode_text_vl``     ``infer_text(batch)["cls_vlffn_feats"]``    (B, D) L2-normalised
``infer_image/_text``  ``infer_image`` / ``infer_text``            :class:`UnimodalOutput`
``fuse``               ``infer(batch)``                            :class:`FusionOutput`
``encode_text_mlm``    ``infer_text_mlm(batch)["text_feats"]``     (B, T, D)
=====================  ==========================================  =================================
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..files import atomic_write_json, atomic_write_via
from ..schema import ConfigError
from .config import CONFIG_FORMAT_VERSION, VLMoConfig
from .heads import (
    LOGIT_SCALE_INIT,
    ITCHead,
    ITMHead,
    MLMHead,
    Pooler,
    TextEmbeddings,
    classifier,
    init_bert_style,
)
from .layers import Mlp, MoMEBlock, PatchEmbed
from .pretrained import CONFIG_NAME, VOCAB_NAME, WEIGHTS_NAME
from .relpos import (
    RelPosLayout,
    fused_relative_position_index,
    gather_relative_position_bias,
    image_relative_position_index,
    text_relative_position_index,
)

logger = logging.getLogger(__name__)


class NonFiniteWeightsError(ValueError):
    """A model or state dict holds NaN / ±inf values (e.g. a diverged training run); names the first tensors."""


def non_finite_tensors(tensors: Iterable[tuple[str, torch.Tensor]] | dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or ±inf value, in the given order."""
    items = tensors.items() if isinstance(tensors, dict) else tensors
    return [
        name
        for name, tensor in items
        if isinstance(tensor, torch.Tensor)
        and tensor.is_floating_point()
        and tensor.numel()
        and not bool(torch.isfinite(tensor.detach()).all())
    ]


def describe_non_finite(names: list[str], total: int, shown: int = 5) -> str:
    """``"3 of 120 tensors (a, b, c)"``: a short list of :func:`non_finite_tensors` for messages."""
    listed = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
    return f"{len(names)} of {total} tensors hold NaN/inf ({listed})"


def check_finite_weights(
    tensors: dict[str, torch.Tensor], source: str, allow_non_finite: bool = False, action: str = "load"
) -> list[str]:
    """Refuse (``NonFiniteWeightsError``) or, with ``allow_non_finite``, warn about non-finite tensors."""
    bad = non_finite_tensors(tensors)
    if bad:
        message = f"{source}: {describe_non_finite(bad, len(tensors))}"
        if not allow_non_finite:
            raise NonFiniteWeightsError(
                f"refusing to {action} {message}: a diverged run? (pass allow_non_finite=True to {action} anyway)"
            )
        logger.warning("%s: loading anyway (allow_non_finite=True)", message)
    return bad


@dataclass
class FusionOutput:
    """Output of the fused (fusion-encoder) pass. ``cls_feats`` = pooler(final-norm text [CLS])."""

    text_feats: torch.Tensor  # (B, T, D) final-norm text part
    image_feats: torch.Tensor  # (B, 1+W², D) final-norm image part
    cls_feats: torch.Tensor  # (B, D)
    raw_cls_feats: torch.Tensor  # (B, D) final-norm x[:, 0] before the pooler


@dataclass
class UnimodalOutput:
    """Output of an image-only or text-only pass (dual encoder)."""

    feats: torch.Tensor  # (B, N, D) final-norm tokens of the modality-expert path
    cls_feats: torch.Tensor | None  # (B, D) L2-normalised ITC embedding (None without ITC head)
    cls_vlffn_feats: torch.Tensor | None  # (B, D) L2-normalised VL-FFN embedding, when requested
    raw_cls_feats: torch.Tensor  # (B, D) pre-norm last hidden state at [CLS]


_BLOCK_KEY = re.compile(r"^transformer\.blocks\.(\d+)\.")


def check_weights_header(config: VLMoConfig, weights_path: str | os.PathLike) -> None:
    """Raise :class:`~vlmo_pipeline.schema.ConfigError` when the tensor shapes in a ``model.safetensors`` header
    differ from those ``config`` implies; reads the header only, and builds the expected shapes on the meta
    device (no memory), after a cheap check of the block count."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(weights_path), framework="pt") as handle:
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises its own error type for a damaged header
        raise ValueError(f"{weights_path}: cannot load the weights: not a safetensors file ({error})") from error
    blocks = {int(match.group(1)) for name in shapes if (match := _BLOCK_KEY.match(name))}
    if blocks and len(blocks) != config.depth:
        raise ConfigError(
            f"{weights_path}: the weights hold {len(blocks)} transformer blocks but the config says depth="
            f"{config.depth}: config.json does not belong to these weights"
        )
    with torch.device("meta"):
        skeleton = VLMo(config)
    expected = {name: tuple(tensor.shape) for name, tensor in skeleton.state_dict().items()}
    mismatched = [name for name in expected if name in shapes and shapes[name] != expected[name]]
    if mismatched:
        shown = ", ".join(f"{name} {list(shapes[name])} vs {list(expected[name])}" for name in mismatched[:3])
        more = f" and {len(mismatched) - 3} more" if len(mismatched) > 3 else ""
        raise ConfigError(
            f"{weights_path}: {len(mismatched)} tensor(s) differ in shape from what config.json describes "
            f"(file vs config: {shown}{more}): config.json does not belong to these weights"
        )


@torch.no_grad()
def trunc_normal_(tensor: torch.Tensor, std: float = 0.02, bound: float = 2.0) -> torch.Tensor:
    """timm's ``trunc_normal_(std=.02)`` (absolute bounds ±2, i.e. ±100σ): a plain normal draw with a clamp.

    Drawing outside ±100σ has probability ~0, so this equals the truncated normal in distribution while
    avoiding ``nn.init.trunc_normal_``'s slow inverse-CDF path (tens of ms per tensor on CPU)."""
    return tensor.normal_(0.0, std).clamp_(-bound, bound)


def _trunc_normal_init(module: nn.Module, std: float = 0.02) -> None:
    """Transformer init of the official MultiWayTransformer: Linear trunc-normal(.02), LN 1/0."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MultiwayTransformer(nn.Module):
    """Patch embedding, CLS token, optional absolute position embedding, MoME blocks, final norm."""

    def __init__(self, config: VLMoConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.image_size, config.patch_size, config.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if config.use_abs_pos_emb:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, dim))
        else:
            self.pos_embed = None
        if "mim" in config.loss_names:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        else:
            self.mask_token = None
        drop_rates = torch.linspace(0, config.drop_path_rate, config.depth, device="cpu").tolist()
        use_sdpa = config.attention_impl == "sdpa"
        self.blocks = nn.ModuleList(
            MoMEBlock(
                dim,
                config.num_heads,
                config.mlp_hidden_dim,
                drop_path=drop_rates[i],
                layer_scale_init_values=config.layer_scale_init_values,
                with_vlffn=i >= config.effective_vlffn_start,
                norm_eps=config.norm_eps,
                use_sdpa=use_sdpa,
            )
            for i in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)
        for extra in (self.cls_token, self.pos_embed, self.mask_token):
            if extra is not None:
                trunc_normal_(extra)
        self.blocks.apply(partial(_trunc_normal_init, std=config.linear_init_std))
        _trunc_normal_init(self.norm)

    def visual_embed(self, images: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1+W², D) image tokens; ``patch_mask`` (B, W²) True = replace the patch by ``mask_token``."""
        x = self.patch_embed(images)
        if patch_mask is not None:
            if self.mask_token is None:
                raise RuntimeError(
                    "patch_mask given but the model has no mask_token: build it with 'mim' in loss_names"
                )
            weight = patch_mask.to(x.dtype).unsqueeze(-1)
            x = x * (1 - weight) + self.mask_token.to(x.dtype) * weight
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return x


class VLMo(nn.Module):
    """VLMo with official parameter names. Build with ``VLMo(config)`` or ``create_model(name)``."""

    def __init__(self, config: VLMoConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        dim = config.embed_dim
        self.num_layers = config.depth
        self.activation_checkpointing = False  # a training-time setting, not part of the model (see setter)
        self.layout = RelPosLayout(config.grid_size, config.max_text_len_of_initckpt)
        if config.use_relative_position_bias:
            # Zero-initialised and never touched by an init function (official behaviour).
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros(self.layout.num_rows, config.num_heads * config.depth)
            )
        else:
            self.relative_position_bias_table = None
        self._register_relpos_indices()

        self.transformer = MultiwayTransformer(config)
        self.text_embeddings = TextEmbeddings(
            config.vocab_size,
            dim,
            config.max_text_len,
            use_absolute_positions=not config.use_relative_position_bias,
            layer_norm_eps=config.text_layer_norm_eps,
            dropout=config.effective_text_dropout,
            pad_token_id=config.pad_token_id,
        )
        self.text_embeddings.apply(init_bert_style)
        self.token_type_embeddings = nn.Embedding(2, dim)
        self.token_type_embeddings.apply(init_bert_style)
        self.pooler = Pooler(dim)
        self.pooler.apply(partial(init_bert_style, linear_std=config.linear_init_std))
        self._build_heads(config)

    # ------------------------------------------------------------------------------------ construction
    def _register_relpos_indices(self) -> None:
        cfg = self.config
        if not cfg.use_relative_position_bias:
            self.relative_position_index = None
            self.text_relative_position_index = None
            self.text_imag_relative_position_index = None
            return
        image_index = image_relative_position_index(cfg.grid_size)
        text_index = text_relative_position_index(cfg.max_text_len, self.layout)
        fused_index = fused_relative_position_index(text_index, image_index, self.layout)
        # Non-persistent: rebuilt at construction, like the official plain attributes.
        self.register_buffer("relative_position_index", image_index, persistent=False)
        self.register_buffer("text_relative_position_index", text_index, persistent=False)
        self.register_buffer("text_imag_relative_position_index", fused_index, persistent=False)

    def _build_heads(self, config: VLMoConfig) -> None:
        """Create the heads that ``config.loss_names`` asks for and drop the others (official rules)."""
        dim = config.embed_dim
        tasks = set(config.loss_names)

        device = self.token_type_embeddings.weight.device

        def ensure(name: str, wanted: bool, factory) -> None:
            current = getattr(self, name, None)
            if wanted and current is None:
                created = factory()
                if isinstance(created, nn.Module):
                    created.apply(partial(init_bert_style, linear_std=config.linear_init_std))
                    created.to(device)
                setattr(self, name, created)
            elif not wanted:
                setattr(self, name, None)  # unregisters the head if it existed

        def scale() -> nn.Parameter:
            return nn.Parameter(torch.full((), LOGIT_SCALE_INIT, device=device))

        retrieval = bool(tasks & {"itc", "irtr"})
        ensure("logit_scale", retrieval, scale)
        ensure("logit_vl_scale", "itc" in tasks, scale)
        ensure("mlm_score", bool(tasks & {"mlm", "textmlm"}), lambda: MLMHead(dim, config.vocab_size))
        ensure("itm_score", "itm" in tasks, lambda: ITMHead(dim))
        ensure("itc_text_proj", retrieval, lambda: ITCHead(dim))
        ensure("itc_image_proj", retrieval, lambda: ITCHead(dim))
        ensure("itc_vl_text_proj", "itc" in tasks, lambda: ITCHead(dim))
        ensure("itc_vl_image_proj", "itc" in tasks, lambda: ITCHead(dim))
        ensure("vqa_classifier", "vqa" in tasks, lambda: classifier(dim, 2 * dim, config.vqa_num_labels))
        ensure("nlvr2_classifier", "nlvr2" in tasks, lambda: classifier(2 * dim, 2 * dim, 2))
        if "nlvr2" in tasks and self.token_type_embeddings.num_embeddings < 3:
            self.add_nlvr2_token_type()
        elif "nlvr2" not in tasks and self.token_type_embeddings.num_embeddings > 2:
            old = self.token_type_embeddings
            self.token_type_embeddings = nn.Embedding(2, dim).to(old.weight.device, old.weight.dtype)
            self.token_type_embeddings.weight.data.copy_(old.weight.data[:2])

    def add_nlvr2_token_type(self) -> None:
        """Grow ``token_type_embeddings`` 2→3 rows (rows 0,1 kept, row 2 = row 1), as official NLVR2 does."""
        old = self.token_type_embeddings
        if old.num_embeddings >= 3:
            return
        new = nn.Embedding(3, old.embedding_dim).to(old.weight.device, old.weight.dtype)
        new.apply(init_bert_style)
        with torch.no_grad():
            new.weight[:2] = old.weight[:2]
            new.weight[2] = old.weight[1]
        self.token_type_embeddings = new

    def set_tasks(self, loss_names: Iterable[str], vqa_num_labels: int | None = None) -> VLMo:
        """Switch the task set in place (fine-tuning): existing heads with the same name are kept,
        new heads are initialised as officially, unneeded ones removed; VL-FFN experts are added (random,
        trunc-normal .02) or removed when ``textmlm`` toggles. Returns ``self``."""
        overrides: dict[str, Any] = {"loss_names": tuple(loss_names)}
        if vqa_num_labels is not None:
            overrides["vqa_num_labels"] = vqa_num_labels
        new_config = self.config.replace(**overrides)
        if new_config.vqa_num_labels != self.config.vqa_num_labels:
            self.vqa_classifier = None  # rebuilt below with the new label count
        self.config = new_config
        device = self.token_type_embeddings.weight.device
        for index, block in enumerate(self.transformer.blocks):
            wanted = index >= new_config.effective_vlffn_start
            if wanted and block.mlp_vl is None:
                block.mlp_vl = Mlp(new_config.embed_dim, new_config.mlp_hidden_dim)
                block.norm2_vl = nn.LayerNorm(new_config.embed_dim, eps=new_config.norm_eps)
                block.mlp_vl.apply(partial(_trunc_normal_init, std=new_config.linear_init_std))
                block.mlp_vl.to(device)
                block.norm2_vl.to(device)
            elif not wanted and block.mlp_vl is not None:
                block.mlp_vl, block.norm2_vl = None, None
        if "mim" in new_config.loss_names and self.transformer.mask_token is None:
            self.transformer.mask_token = nn.Parameter(torch.zeros(1, 1, new_config.embed_dim, device=device))
            trunc_normal_(self.transformer.mask_token)
        elif "mim" not in new_config.loss_names and self.transformer.mask_token is not None:
            self.transformer.mask_token = None
        self._build_heads(new_config)
        return self

    def set_activation_checkpointing(self, enabled: bool = True) -> VLMo:
        """Recompute each MoME block's activations in the backward pass instead of keeping them (training only):
        activation memory falls from one set per block to the blocks' inputs, for about one more forward pass of
        compute. Results are unchanged (dropout and drop-path replay their random state)."""
        self.activation_checkpointing = bool(enabled)
        return self

    def set_attention_impl(self, impl: str) -> None:
        """``"sdpa"`` (fused kernel) or ``"reference"`` (explicit official computation)."""
        self.config = self.config.replace(attention_impl=impl)
        for block in self.transformer.blocks:
            block.attn.use_sdpa = impl == "sdpa"

    # ------------------------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return self.token_type_embeddings.weight.device

    def _require(self, name: str, tasks: str) -> nn.Module:
        module = getattr(self, name, None)
        if module is None:
            raise RuntimeError(
                f"this model has no '{name}' head (built with loss_names={list(self.config.loss_names)}); "
                f"it needs one of: {tasks}"
            )
        return module

    def relative_position_biases(self, index: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Per-layer (H, N, N) bias tensors for an index, or ``None`` per layer without rel-pos bias."""
        if self.relative_position_bias_table is None or index is None:
            return [None] * self.num_layers
        return list(gather_relative_position_bias(self.relative_position_bias_table, index, self.num_layers))

    def _text_index(self, length: int) -> torch.Tensor | None:
        if self.text_relative_position_index is None:
            return None
        return self.text_relative_position_index[:length, :length]

    def _fused_index(self, text_len: int) -> torch.Tensor | None:
        if self.text_imag_relative_position_index is None:
            return None
        full_text = self.config.max_text_len
        if text_len == full_text:
            return self.text_imag_relative_position_index
        # Keep text rows/cols 0..text_len-1 and every image row/col (exact: text distances are relative).
        total = self.text_imag_relative_position_index.shape[0]
        keep = torch.cat([torch.arange(text_len), torch.arange(full_text, total)]).to(
            self.text_imag_relative_position_index.device
        )
        return self.text_imag_relative_position_index.index_select(0, keep).index_select(1, keep)

    def _check_text(self, text_ids: torch.Tensor, text_masks: torch.Tensor) -> None:
        if text_ids.ndim != 2 or text_ids.shape != text_masks.shape:
            raise ValueError(
                f"text_ids {tuple(text_ids.shape)} and text_masks {tuple(text_masks.shape)} must both be (B, T)"
            )
        if text_ids.shape[1] > self.config.max_text_len:
            raise ValueError(f"text length {text_ids.shape[1]} exceeds max_text_len={self.config.max_text_len}")

    def embed_text(self, text_ids: torch.Tensor) -> torch.Tensor:
        """Text embeddings + modality type 0."""
        return self.text_embeddings(text_ids) + self.token_type_embeddings.weight[0]

    def embed_image(
        self, images: torch.Tensor, image_token_type_idx: int = 1, patch_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Image tokens + modality type ``image_token_type_idx`` (2 for NLVR2's second image)."""
        return (
            self.transformer.visual_embed(images, patch_mask) + self.token_type_embeddings.weight[image_token_type_idx]
        )

    def _run_blocks(self, x, modality, key_padding_mask, biases, text_len=None, start=0, stop=None, keep=None):
        """Run blocks ``start..stop-1``; if ``keep`` is an int, also return the output of block ``keep``."""
        kept = None
        stop = self.num_layers if stop is None else stop
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for index in range(start, stop):
            block = self.transformer.blocks[index]
            if recompute:  # keep only the block's inputs; recompute its activations (same RNG) in backward
                x = checkpoint(block, x, modality, key_padding_mask, biases[index], text_len, use_reentrant=False)
            else:
                x = block(x, modality, key_padding_mask, biases[index], text_len)
            if keep is not None and index == keep:
                kept = x
        return x, kept

    # ------------------------------------------------------------------------------------ single modality
    def _unimodal(self, x, modality, key_padding_mask, index, with_vlffn, proj_name, vl_proj_name):
        biases = self.relative_position_biases(index)
        start = self.config.effective_vlffn_start
        keep = start - 1 if with_vlffn and start > 0 else None
        hidden, branch = self._run_blocks(x, modality, key_padding_mask, biases, keep=keep)
        feats = self.transformer.norm(hidden)
        proj = getattr(self, proj_name, None)
        cls_feats = None if proj is None else F.normalize(proj(feats[:, 0]), dim=-1)
        cls_vlffn_feats = None
        if with_vlffn:
            vl_proj = self._require(vl_proj_name, "itc")
            branch = x if branch is None else branch  # VL-FFN from block 0: start from the embeddings
            vl_hidden, _ = self._run_blocks(branch, "vl", key_padding_mask, biases, start=start)
            cls_vlffn_feats = F.normalize(vl_proj(self.transformer.norm(vl_hidden)[:, 0]), dim=-1)
        return UnimodalOutput(feats, cls_feats, cls_vlffn_feats, hidden[:, 0])

    def infer_text(self, text_ids: torch.Tensor, text_masks: torch.Tensor, with_vlffn: bool = True) -> UnimodalOutput:
        """Text-only pass with L-FFN in every block (official ``infer_text`` / ``infer_text_ft``).

        ``with_vlffn=True`` also re-runs the top blocks with the VL-FFN from block ``vlffn_start-1``'s
        output (second ITC path, needs the ``itc`` heads)."""
        self._check_text(text_ids, text_masks)
        x = self.embed_text(text_ids)
        index = self._text_index(text_ids.shape[1])
        return self._unimodal(x, "text", text_masks, index, with_vlffn, "itc_text_proj", "itc_vl_text_proj")

    def infer_image(
        self, images: torch.Tensor, with_vlffn: bool = True, image_token_type_idx: int = 1
    ) -> UnimodalOutput:
        """Image-only pass with V-FFN in every block (official ``infer_image`` / ``infer_image_ft``)."""
        x = self.embed_image(images, image_token_type_idx)
        index = self.relative_position_index
        return self._unimodal(x, "image", None, index, with_vlffn, "itc_image_proj", "itc_vl_image_proj")

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D) L2-normalised dual-encoder image embedding (official ``infer_image_ft`` cls_feats)."""
        self._require("itc_image_proj", "itc or irtr")
        return self.infer_image(images, with_vlffn=False).cls_feats

    def encode_text(self, text_ids: torch.Tensor, text_masks: torch.Tensor) -> torch.Tensor:
        """(B, D) L2-normalised dual-encoder text embedding (official ``infer_text_ft`` cls_feats)."""
        self._require("itc_text_proj", "itc or irtr")
        return self.infer_text(text_ids, text_masks, with_vlffn=False).cls_feats

    def encode_image_vl(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D) VL-FFN-branch image embedding of the second pretraining ITC loss."""
        return self.infer_image(images, with_vlffn=True).cls_vlffn_feats

    def encode_text_vl(self, text_ids: torch.Tensor, text_masks: torch.Tensor) -> torch.Tensor:
        """(B, D) VL-FFN-branch text embedding of the second pretraining ITC loss."""
        return self.infer_text(text_ids, text_masks, with_vlffn=True).cls_vlffn_feats

    def encode_text_mlm(self, text_ids: torch.Tensor, text_masks: torch.Tensor) -> torch.Tensor:
        """(B, T, D) final-norm text states of the text-only pass (stage-2 ``textmlm``)."""
        self._check_text(text_ids, text_masks)
        biases = self.relative_position_biases(self._text_index(text_ids.shape[1]))
        hidden, _ = self._run_blocks(self.embed_text(text_ids), "text", text_masks, biases)
        return self.transformer.norm(hidden)

    def encode_image_tokens(self, images: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1+W², D) final-norm image states of the image-only pass, for masked image modelling.

        ``patch_mask`` (B, W²) bool marks patches replaced by the learnable ``transformer.mask_token``
        before the first block (needs ``'mim'`` in ``loss_names``)."""
        biases = self.relative_position_biases(self.relative_position_index)
        hidden, _ = self._run_blocks(self.embed_image(images, 1, patch_mask), "image", None, biases)
        return self.transformer.norm(hidden)

    # ------------------------------------------------------------------------------------ fusion
    def fuse(
        self,
        text_ids: torch.Tensor,
        text_masks: torch.Tensor,
        images: torch.Tensor,
        image_token_type_idx: int = 1,
    ) -> FusionOutput:
        """Fusion-encoder pass (official ``infer``): text first, image second, V/L experts below
        ``vlffn_start_layer_index`` (split at the text length), VL-FFN above, final norm, pooler."""
        self._check_text(text_ids, text_masks)
        text_embeds = self.embed_text(text_ids)
        image_embeds = self.embed_image(images, image_token_type_idx)
        text_len = text_embeds.shape[1]
        image_masks = torch.ones(image_embeds.shape[:2], dtype=text_masks.dtype, device=text_masks.device)
        x = torch.cat([text_embeds, image_embeds.to(text_embeds.dtype)], dim=1)
        masks = torch.cat([text_masks, image_masks], dim=1)
        biases = self.relative_position_biases(self._fused_index(text_len))
        hidden, _ = self._run_blocks(x, "vl", masks, biases, text_len=text_len)
        hidden = self.transformer.norm(hidden)
        return FusionOutput(
            text_feats=hidden[:, :text_len],
            image_feats=hidden[:, text_len:],
            cls_feats=self.pooler(hidden),
            raw_cls_feats=hidden[:, 0],
        )

    def forward(self, text_ids: torch.Tensor, text_masks: torch.Tensor, images: torch.Tensor) -> FusionOutput:
        """Same as :meth:`fuse` (official ``forward`` without ``current_tasks``)."""
        return self.fuse(text_ids, text_masks, images)

    # ------------------------------------------------------------------------------------ task outputs
    def itm_logits(self, text_ids: torch.Tensor, text_masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(B, 2) image-text matching logits (index 1 = match)."""
        head = self._require("itm_score", "itm")
        return head(self.fuse(text_ids, text_masks, images).cls_feats)

    def mlm_logits(
        self, text_ids: torch.Tensor, text_masks: torch.Tensor, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T, vocab) MLM logits: fused pass when ``images`` is given, else the text-only pass."""
        head = self._require("mlm_score", "mlm or textmlm")
        if images is None:
            return head(self.encode_text_mlm(text_ids, text_masks))
        return head(self.fuse(text_ids, text_masks, images).text_feats)

    def vqa_logits(self, text_ids: torch.Tensor, text_masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(B, vqa_num_labels) VQA logits on the pooler output."""
        head = self._require("vqa_classifier", "vqa")
        return head(self.fuse(text_ids, text_masks, images).cls_feats)

    def nlvr2_logits(
        self, text_ids: torch.Tensor, text_masks: torch.Tensor, images_0: torch.Tensor, images_1: torch.Tensor
    ) -> torch.Tensor:
        """(B, 2) NLVR2 logits from two fused passes (second image uses modality type 2)."""
        head = self._require("nlvr2_classifier", "nlvr2")
        first = self.fuse(text_ids, text_masks, images_0, image_token_type_idx=1).cls_feats
        second = self.fuse(text_ids, text_masks, images_1, image_token_type_idx=2).cls_feats
        return head(torch.cat([first, second], dim=-1))

    @torch.no_grad()
    def similarity(self, images: torch.Tensor, text_ids: torch.Tensor, text_masks: torch.Tensor) -> torch.Tensor:
        """(num_images, num_texts) cosine similarities of the dual-encoder embeddings (no temperature)."""
        return self.encode_image(images) @ self.encode_text(text_ids, text_masks).T

    # ------------------------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | os.PathLike, vocab_file: str | os.PathLike | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (and ``vocab.txt`` when given) atomically.

        Raises :class:`NonFiniteWeightsError` (naming the first tensors) before writing anything when a weight
        holds NaN / ±inf: a diverged model is never saved."""
        from safetensors.torch import save_file

        directory = Path(directory)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        bad = non_finite_tensors(tensors)
        if bad:
            raise NonFiniteWeightsError(
                f"refusing to save to {directory}: {describe_non_finite(bad, len(tensors))} (a diverged run?)"
            )
        directory.mkdir(parents=True, exist_ok=True)
        config_data = {"format_version": CONFIG_FORMAT_VERSION, **self.config.to_dict()}

        # Temp file + fsync + os.replace, final mode 0o666 & ~umask like a plain open() (vlmo_pipeline.files).
        atomic_write_via(
            directory / WEIGHTS_NAME, lambda path: save_file(tensors, str(path), metadata={"format": "pt"})
        )
        atomic_write_json(directory / CONFIG_NAME, config_data, indent=2, sort_keys=True, trailing_newline=False)
        if vocab_file is not None and Path(vocab_file).resolve() != (directory / VOCAB_NAME).resolve():
            atomic_write_via(directory / VOCAB_NAME, lambda path: shutil.copyfile(vocab_file, path))
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, strict: bool = True, allow_non_finite: bool = False, **overrides: Any
    ) -> VLMo:
        """Load a ``save_pretrained`` directory; the model is returned in eval mode.

        Weights holding NaN / ±inf raise :class:`NonFiniteWeightsError` naming the first tensors;
        ``allow_non_finite=True`` loads them anyway with a warning (to inspect a diverged model).

        ``overrides`` change config fields (e.g. a new ``image_size`` resizes the rel-pos table, new
        ``loss_names`` need ``strict=False``: missing heads keep their fresh init). The
        :class:`~vlmo_pipeline.models.checkpoint.LoadReport` is kept in ``model.load_report``."""
        from safetensors.torch import load_file

        from .checkpoint import load_into_model

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: not a VLMo save_pretrained directory")
        saved_config = VLMoConfig.from_file(config_path)
        # The saved config must describe the saved weights: compare sizes with the weights file's header before
        # anything of the config's size is allocated (a `depth: 100000` fails here, not after gigabytes).
        check_weights_header(saved_config, weights_path)
        config = saved_config.replace(**overrides)
        state_dict = load_file(str(weights_path))
        check_finite_weights(state_dict, str(weights_path), allow_non_finite)
        model = cls(config)
        model.load_report = load_into_model(model, state_dict, strict=strict, source=str(weights_path))
        return model.eval()
