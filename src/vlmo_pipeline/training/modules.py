"""LightningModules of the three pretraining stages and the three fine-tuning tasks.

Each module owns a :class:`~vlmo_pipeline.models.VLMo` as ``self.model`` (plus, for stage 1, the MIM head),
runs the model passes its objective needs and calls :mod:`vlmo_pipeline.training.objectives` for the losses.
Optimisation is shared (:class:`VLMoTaskModule`): the official AdamW parameter groups, linear warm-up + decay
stepped per optimiser step, over the trainable parameters only.

Logged keys (per step, and per epoch for the ``train/`` means): ``train/loss`` and the parts of each objective.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torchmetrics
from torch import nn

from vlmo_pipeline.models import VLMo
from vlmo_pipeline.models.vlmo import trunc_normal_
from vlmo_pipeline.training.config import RunConfig
from vlmo_pipeline.training.distributed import all_gather_no_grad
from vlmo_pipeline.training.metrics import VQAScore
from vlmo_pipeline.training.objectives import (
    VL_MLM_WEIGHT,
    PixelRegressionTarget,
    contrastive_loss,
    itc_loss,
    itm_accuracy,
    itm_loss,
    mim_loss,
    mlm_loss,
    nlvr2_loss,
    sample_itm_negatives,
    vqa_loss,
)
from vlmo_pipeline.training.optim import configure_optimization

__all__ = [
    "VLMoTaskModule",
    "MIMPretrainModule",
    "TextMLMModule",
    "VLPretrainModule",
    "RetrievalModule",
    "VQAModule",
    "NLVR2Module",
    "build_module",
]


class VLMoTaskModule(L.LightningModule):
    """Shared plumbing: the model, the optimiser/schedule, logging helpers."""

    def __init__(self, model: VLMo, config: RunConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.save_hyperparameters({"run": config.to_dict(), "model": model.config.to_dict()})

    def configure_optimizers(self) -> dict:
        total_steps = int(self.trainer.estimated_stepping_batches)
        return configure_optimization(self, self.config.optim, total_steps)

    def _log_losses(self, values: dict[str, torch.Tensor], batch_size: int) -> None:
        for key, value in values.items():
            self.log(
                f"train/{key}",
                value.detach() if isinstance(value, torch.Tensor) else value,
                on_step=True,
                on_epoch=True,
                prog_bar=key == "loss",
                batch_size=batch_size,
                sync_dist=False,
            )


class MIMPretrainModule(VLMoTaskModule):
    """Stage 1: image-only masked image modeling (BEiT-style blockwise masks).

    Masked patches are replaced by the model's learnable ``transformer.mask_token`` before the first block; a
    linear ``mim_head`` maps every final patch state to the target of its patch, and :func:`mim_loss` (MSE over
    masked patches) compares them. The target is pluggable (``config.mim.target``); built in is ``pixel``
    (:class:`PixelRegressionTarget`) because no visual tokenizer can be downloaded here.
    """

    def __init__(self, model: VLMo, config: RunConfig) -> None:
        super().__init__(model, config)
        if config.mim.target != "pixel":
            raise ValueError(f"mim.target {config.mim.target!r} is not available; built in: 'pixel'")
        self.target = PixelRegressionTarget(normalize_per_patch=config.mim.normalize_per_patch)
        patch_size = model.config.patch_size
        self.mim_head = nn.Linear(model.config.embed_dim, self.target.target_dim(patch_size, model.config.in_chans))
        trunc_normal_(self.mim_head.weight, model.config.linear_init_std)
        nn.init.zeros_(self.mim_head.bias)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images, patch_mask = batch["image"], batch["patch_mask"]
        hidden = self.model.encode_image_tokens(images, patch_mask)
        predictions = self.mim_head(hidden[:, 1:])
        targets = self.target(images, self.model.config.patch_size)
        loss = mim_loss(predictions, targets, patch_mask)
        self._log_losses({"loss": loss, "mim_loss": loss}, images.shape[0])
        return loss


class TextMLMModule(VLMoTaskModule):
    """Stage 2: text-only masked language modeling with whole-word masking (no 0.25 factor)."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self.model.mlm_logits(batch["text_ids_mlm"], batch["text_masks"])
        loss = mlm_loss(logits, batch["text_labels_mlm"])
        with torch.no_grad():
            labelled = batch["text_labels_mlm"] != -100
            accuracy = (logits.argmax(-1) == batch["text_labels_mlm"])[labelled].float().mean()
        self._log_losses({"loss": loss, "mlm_loss": loss, "mlm_accuracy": accuracy}, logits.shape[0])
        return loss


class VLPretrainModule(VLMoTaskModule):
    """Stage 3: ITC (both branches) + ITM with global hard (or random) negatives + weighted MLM (spec §4.1–4.3).

    Passes per step: image-only and text-only (each with the VL-FFN re-run of the top blocks), then *one* fused
    call over 4B rows = [positives; (hard-negative image, text); (image, hard-negative text); masked text with its
    image]. Stacking the four fused passes into one call is the same computation as four calls (every row is
    independent), with better throughput.
    """

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        model = self.model
        text_ids, text_masks, images = batch["text_ids"], batch["text_masks"], batch["image"]
        batch_size = text_ids.shape[0]
        image_out = model.infer_image(images, with_vlffn=True)
        text_out = model.infer_text(text_ids, text_masks, with_vlffn=True)
        itc = itc_loss(
            image_out.cls_feats,
            text_out.cls_feats,
            image_out.cls_vlffn_feats,
            text_out.cls_vlffn_feats,
            model.logit_scale,
            model.logit_vl_scale,
        )

        offset = itc["local_offset"]
        rows = slice(offset, offset + batch_size)
        neg_image_index, neg_text_index = sample_itm_negatives(
            itc["logits_per_image"][rows], itc["logits_per_text"][rows], offset, mode=self.config.itm_negatives
        )
        all_images = all_gather_no_grad(images)
        all_text_ids = all_gather_no_grad(text_ids)
        all_text_masks = all_gather_no_grad(text_masks)
        fused_ids = torch.cat([text_ids, text_ids, all_text_ids[neg_text_index], batch["text_ids_mlm"]])
        fused_masks = torch.cat([text_masks, text_masks, all_text_masks[neg_text_index], text_masks])
        fused_images = torch.cat([images, all_images[neg_image_index], images, images])
        fused = model.fuse(fused_ids, fused_masks, fused_images)

        itm_logits = model.itm_score(fused.cls_feats[: 3 * batch_size])
        itm = itm_loss(itm_logits)
        mlm_logits = model.mlm_score(fused.text_feats[3 * batch_size :])
        mlm = mlm_loss(mlm_logits, batch["text_labels_mlm"])
        mlm_weight = VL_MLM_WEIGHT if self.config.mlm.weight is None else self.config.mlm.weight
        loss = itc["loss"] + itm + mlm_weight * mlm
        self._log_losses(
            {
                "loss": loss,
                "itc_loss": itc["itc_loss"],
                "itc_vl_loss": itc["itc_vl_loss"],
                "itm_loss": itm,
                "mlm_loss": mlm,
                "itc_i2t_accuracy": itc["i2t_accuracy"],
                "itc_t2i_accuracy": itc["t2i_accuracy"],
                "itm_accuracy": itm_accuracy(itm_logits.detach()),
                "logit_scale": model.logit_scale.detach(),
            },
            batch_size,
        )
        return loss


class RetrievalModule(VLMoTaskModule):
    """Retrieval fine-tuning: dual encoder (modality experts only), one temperature, ITC loss (``compute_irtr``)."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        image_feats = self.model.encode_image(batch["image"])
        text_feats = self.model.encode_text(batch["text_ids"], batch["text_masks"])
        loss, logits_per_image, _ = contrastive_loss(image_feats, text_feats, self.model.logit_scale)
        with torch.no_grad():
            labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
            accuracy = (logits_per_image.argmax(1) == labels).float().mean()
        self._log_losses({"loss": loss, "irtr_loss": loss, "i2t_accuracy": accuracy}, image_feats.shape[0])
        return loss


class VQAModule(VLMoTaskModule):
    """VQAv2 fine-tuning: fused pass, pooler → classifier, soft-score BCE × num_labels; VQA score logged."""

    def __init__(self, model: VLMo, config: RunConfig) -> None:
        super().__init__(model, config)
        self.train_score = VQAScore()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self.model.vqa_logits(batch["text_ids"], batch["text_masks"], batch["image"])
        loss = vqa_loss(logits, batch["vqa_targets"])
        self.train_score(logits, batch["vqa_targets"])
        self._log_losses({"loss": loss, "vqa_loss": loss}, logits.shape[0])
        self.log("train/vqa_score", self.train_score, on_step=True, on_epoch=True, batch_size=logits.shape[0])
        return loss


class NLVR2Module(VLMoTaskModule):
    """NLVR2 fine-tuning: two fused passes (second image with token type 2), concatenated poolers, 2-way CE."""

    def __init__(self, model: VLMo, config: RunConfig) -> None:
        super().__init__(model, config)
        self.train_accuracy = torchmetrics.Accuracy(task="binary")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self.model.nlvr2_logits(batch["text_ids"], batch["text_masks"], batch["image_0"], batch["image_1"])
        loss = nlvr2_loss(logits, batch["label"])
        self.train_accuracy(logits.argmax(1), batch["label"])
        self._log_losses({"loss": loss, "nlvr2_loss": loss}, logits.shape[0])
        self.log("train/nlvr2_accuracy", self.train_accuracy, on_step=True, on_epoch=True, batch_size=logits.shape[0])
        return loss


_MODULES: dict[str, type[VLMoTaskModule]] = {
    "stage1": MIMPretrainModule,
    "stage2": TextMLMModule,
    "stage3": VLPretrainModule,
    "retrieval": RetrievalModule,
    "vqa": VQAModule,
    "nlvr2": NLVR2Module,
}


def build_module(model: VLMo, config: RunConfig) -> VLMoTaskModule:
    """The LightningModule of ``config.stage`` around ``model``."""
    return _MODULES[config.stage](model, config)
