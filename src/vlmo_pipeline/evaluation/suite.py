"""The whole evaluation of the `evaluate` pipeline: every fine-tuned model on its test split, with baselines and
image controls.

:func:`run_evaluation` loads the four fine-tuned model directories and the stage-3 pretrained model
(``save_pretrained`` + ``vocab.txt``), builds the evaluation loaders over the Arrow datasets and scores

* retrieval (COCO, F30K): dual-encoder recall, and with ``rerank_k > 0`` the ITM re-ranking of every query's
  top-k by the stage-3 model's ITM head (the fine-tuned retrieval models keep none), each timed;
* VQA: the score on real, shuffled and blank images (:mod:`vlmo_pipeline.evaluation.controls`), and per answer
  type and per demo-world question family;
* NLVR2: dev and test1 accuracy, and dev accuracy with the image pairs shuffled across statements;
* ITM: held-out accuracy of the stage-3 model on the COCO evaluation split, hard and random negatives;

computes the chance / majority baselines on the same sets, and returns the ``metrics.json`` dictionary
(:func:`vlmo_pipeline.evaluation.report.assemble_metrics`) together with the report's example gallery
(:mod:`vlmo_pipeline.evaluation.gallery`), built from the rankings and predictions of that same scoring pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from vlmo_pipeline.data.collate import collate
from vlmo_pipeline.data.datasets import ImageTextDataset, NLVR2Dataset, VQADataset
from vlmo_pipeline.data.demo.vqav2 import QUESTION_FAMILIES
from vlmo_pipeline.evaluation.baselines import (
    nlvr2_majority_baseline,
    retrieval_chance,
    vqa_majority_baseline,
    vqa_majority_baseline_by_group,
)
from vlmo_pipeline.evaluation.controls import with_blank_images, with_shuffled_images
from vlmo_pipeline.evaluation.evaluate import (
    VQA_ANSWER_TYPES,
    default_device,
    evaluate_itm,
    evaluate_nlvr2,
    evaluate_retrieval,
    evaluate_vqa,
    group_counts,
    mean_score_by_group,
    vqa_question_groups,
)
from vlmo_pipeline.evaluation.gallery import (
    Gallery,
    nlvr2_examples,
    retrieval_examples,
    retrieval_query_rows,
    vqa_examples,
)
from vlmo_pipeline.evaluation.report import ITM_CHANCE, assemble_metrics
from vlmo_pipeline.models import VLMo
from vlmo_pipeline.models.pretrained import VOCAB_NAME, load_pretrained
from vlmo_pipeline.models.tokenizer import VLMoTokenizer
from vlmo_pipeline.models.transforms import build_eval_transform
from vlmo_pipeline.schema import build_config

__all__ = [
    "EvaluationConfig",
    "EvaluationResult",
    "run_evaluation",
    "RETRIEVAL_DATASETS",
    "MODEL_NAMES",
    "GALLERY_RETRIEVAL_DATASET",
    "ITM_DATASET",
]

logger = logging.getLogger(__name__)

RETRIEVAL_DATASETS = ("coco", "f30k")
#: model directories the evaluation reads: the four fine-tuned models and the stage-3 pretrained model (the only
#: one with an ITM head: held-out ITM accuracy and the re-ranking of retrieval)
MODEL_NAMES = (*(f"retrieval_{name}" for name in RETRIEVAL_DATASETS), "vqa", "nlvr2", "stage3")
#: The retrieval dataset whose test captions the report's retrieval gallery shows.
GALLERY_RETRIEVAL_DATASET = "coco"
#: The caption dataset (split: ``retrieval_split``) of the held-out ITM accuracy.
ITM_DATASET = "coco"


@dataclass
class EvaluationConfig:
    """Splits and loader settings of the evaluation (defaults = the spec's test splits)."""

    retrieval_split: str = "test"
    retrieval_ks: list[int] = field(default_factory=lambda: [1, 5, 10])
    rerank_k: int = 0
    #: seed of the image controls (shuffled-image permutations) and of the held-out ITM captions and negatives
    controls_seed: int = 0
    vqa_split: str = "val"
    vqa_train_splits: list[str] = field(default_factory=lambda: ["train"])
    nlvr2_dev_split: str = "dev"
    nlvr2_test_split: str = "test1"
    nlvr2_train_split: str = "train"
    batch_size: int = 64
    num_workers: int = 0
    max_text_len: int = 40
    device: str = "auto"
    # Report gallery (0 leaves a part out): query captions of the COCO test split and images shown per query,
    # VQA questions of vqa_split, NLVR2 statements of nlvr2_dev_split.
    gallery_captions: int = 4
    gallery_depth: int = 5
    gallery_vqa: int = 8
    gallery_nlvr2: int = 6

    def __post_init__(self) -> None:
        for name in ("gallery_captions", "gallery_vqa", "gallery_nlvr2"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.gallery_depth < 1:
            raise ValueError(f"gallery_depth must be >= 1, got {self.gallery_depth}")
        if self.rerank_k < 0:
            raise ValueError(f"rerank_k must be >= 0 (0 = no re-ranking), got {self.rerank_k}")

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any] | None, where: str = "parameters_evaluate.yml", path: str = "evaluate"
    ) -> EvaluationConfig:
        """Typed construction (:func:`vlmo_pipeline.schema.build_config`): wrong types and unknown keys are errors."""
        return build_config(cls, values, where, path)


def _load(model_dir: Path, max_text_len: int) -> tuple[VLMo, VLMoTokenizer]:
    loaded = load_pretrained(model_dir, max_text_len=max_text_len)
    return loaded.model, loaded.tokenizer


def _load_itm_model(directory: Path, vocab_file: Path, image_size: int | None = None) -> VLMo:
    """The stage-3 model for ITM scoring, checked to read the same tokens as ``vocab_file``'s; with
    ``image_size`` it is loaded at that image size (rel-pos table resized) to score another model's images."""
    own_vocab = directory / VOCAB_NAME
    if not own_vocab.is_file() or own_vocab.read_bytes() != Path(vocab_file).read_bytes():
        raise ValueError(
            f"{directory}: its {VOCAB_NAME} differs from {vocab_file} (or is missing); the ITM head "
            "cannot score text tokenised with another vocabulary"
        )
    model = VLMo.from_pretrained(directory)
    if image_size is not None and model.config.image_size != image_size:
        model = VLMo.from_pretrained(directory, image_size=image_size)
    if getattr(model, "itm_score", None) is None:
        raise ValueError(
            f"{directory}: the model has no ITM head (loss_names {list(model.config.loss_names)}); "
            "held-out ITM and re-ranking need the stage-3 model"
        )
    return model


def _loader(dataset, config: EvaluationConfig) -> DataLoader:
    return DataLoader(
        dataset, batch_size=config.batch_size, shuffle=False, num_workers=config.num_workers, collate_fn=collate
    )


@dataclass
class EvaluationResult:
    """What :func:`run_evaluation` returns."""

    #: the ``metrics.json`` dictionary
    metrics: dict[str, Any]
    #: examples for the report (retrieval gallery, VQA and NLVR2 predictions)
    gallery: Gallery


def run_evaluation(
    config: EvaluationConfig,
    model_dirs: Mapping[str, Path],
    dataset_dirs: Mapping[str, Path],
    stage_summaries: Mapping[str, Mapping[str, Any]] | None = None,
) -> EvaluationResult:
    """Score every fine-tuned model and the stage-3 ITM head; returns the ``metrics.json`` dictionary and the
    report's examples.

    Args:
        model_dirs: :data:`MODEL_NAMES` → model directories: ``retrieval_<dataset>``, ``vqa``, ``nlvr2`` the
            fine-tuned ones, ``stage3`` the stage-3 pretrained model.
        dataset_dirs: ``coco``, ``f30k``, ``vqav2``, ``nlvr2`` → Arrow dataset directories.
        stage_summaries: training summaries per stage/task (go to ``metrics["model"]["stages"]``).
    """
    started_all = time.perf_counter()
    gallery = Gallery(
        retrieval_source=f"{GALLERY_RETRIEVAL_DATASET} {config.retrieval_split}",
        vqa_source=f"vqav2 {config.vqa_split}",
        nlvr2_source=f"nlvr2 {config.nlvr2_dev_split}",
    )
    device = default_device() if config.device == "auto" else torch.device(config.device)
    missing = [name for name in MODEL_NAMES if name not in model_dirs]
    if missing:
        raise ValueError(f"evaluate: model directories missing for {missing}")
    seed = int(config.controls_seed)
    stage3_dir = Path(model_dirs["stage3"])
    timing: dict[str, float] = {}
    retrieval, retrieval_rerank, chance_retrieval, data_counts = {}, {}, {}, {}
    for name in RETRIEVAL_DATASETS:
        model_dir = Path(model_dirs[f"retrieval_{name}"])
        model, tokenizer = _load(model_dir, config.max_text_len)
        itm_model = None
        if config.rerank_k > 0:
            itm_model = _load_itm_model(stage3_dir, model_dir / VOCAB_NAME, model.config.image_size)
            tokenizer.max_len = min(tokenizer.max_len, itm_model.config.max_text_len)
        source = (Path(dataset_dirs[name]), config.retrieval_split)
        transform = build_eval_transform(model.config.image_size)
        images = ImageTextDataset(source, transform=transform, image_only=True)
        texts = ImageTextDataset(source, tokenizer=tokenizer, max_text_len=tokenizer.max_len, text_only=True)
        queries = retrieval_query_rows(texts, config.gallery_captions) if name == GALLERY_RETRIEVAL_DATASET else []
        scores = evaluate_retrieval(
            model,
            _loader(images, config),
            _loader(texts, config),
            ks=config.retrieval_ks,
            rerank_k=config.rerank_k,
            device=device,
            example_queries=queries,
            example_depth=config.gallery_depth,
            itm_model=itm_model,
            desc=f"retrieval {name} {config.retrieval_split}",
        )
        if queries:
            gallery.retrieval = retrieval_examples(images, texts, scores.pop("examples"))
        for key, seconds in scores.pop("timing").items():
            timing[f"retrieval_{name}_{key}"] = seconds
        if "rerank" in scores:
            retrieval_rerank[name] = scores.pop("rerank")
        retrieval[name] = scores
        captions_per_image = texts.table.list_lengths("caption").tolist()
        chance_retrieval[name] = retrieval_chance(captions_per_image, config.retrieval_ks)
        data_counts[f"{name}_{config.retrieval_split}"] = {"images": len(images), "captions": len(texts)}
        logger.info(
            "retrieval %s: %s; ITM re-rank of the top %d: %s",
            name,
            retrieval[name],
            config.rerank_k,
            retrieval_rerank.get(name, "off"),
        )

    started = time.perf_counter()
    itm_model = _load_itm_model(stage3_dir, stage3_dir / VOCAB_NAME)
    itm_tokenizer = VLMoTokenizer(
        stage3_dir / VOCAB_NAME, lowercase=True, max_len=min(config.max_text_len, itm_model.config.max_text_len)
    )
    itm_source = (Path(dataset_dirs[ITM_DATASET]), config.retrieval_split)
    itm_images = ImageTextDataset(
        itm_source, transform=build_eval_transform(itm_model.config.image_size), image_only=True
    )
    itm_texts = ImageTextDataset(
        itm_source, tokenizer=itm_tokenizer, max_text_len=itm_tokenizer.max_len, text_only=True
    )
    itm_outcome = evaluate_itm(
        itm_model,
        itm_images,
        itm_texts,
        batch_size=config.batch_size,
        seed=seed,
        device=device,
        num_workers=config.num_workers,
        desc=f"itm (stage 3) {ITM_DATASET} {config.retrieval_split}",
    )
    itm = {key: value for key, value in itm_outcome.items() if isinstance(value, float)}
    data_counts[f"itm_{ITM_DATASET}_{config.retrieval_split}"] = {
        "images": itm_outcome["images"],
        "decisions": 2 * itm_outcome["images"],
    }
    timing["itm_s"] = time.perf_counter() - started
    logger.info("itm (stage 3, %s %s): %s", ITM_DATASET, config.retrieval_split, itm)

    started = time.perf_counter()
    model, tokenizer = _load(Path(model_dirs["vqa"]), config.max_text_len)
    vqa_dir = Path(dataset_dirs["vqav2"])
    transform = build_eval_transform(model.config.image_size)
    vqa_eval = VQADataset(
        (vqa_dir, config.vqa_split),
        transform=transform,
        tokenizer=tokenizer,
        max_text_len=tokenizer.max_len,
        drop_unanswerable=config.vqa_split != "test",
    )
    if vqa_eval.num_labels != model.config.vqa_num_labels:
        raise ValueError(
            f"the VQA model has {model.config.vqa_num_labels} answers, {vqa_dir} has {vqa_eval.num_labels}"
        )
    vqa_train = VQADataset(
        [(vqa_dir, split) for split in config.vqa_train_splits],
        transform=transform,
        tokenizer=tokenizer,
        max_text_len=tokenizer.max_len,
        drop_unanswerable=True,
    )
    vqa_real = evaluate_vqa(model, _loader(vqa_eval, config), device=device, desc=f"vqa {config.vqa_split}")
    timing["vqa_s"] = time.perf_counter() - started
    started = time.perf_counter()
    shuffled_vqa, _ = with_shuffled_images(vqa_eval, seed, key_column="image_id")
    vqa_shuffled = evaluate_vqa(
        model, _loader(shuffled_vqa, config), device=device, desc=f"vqa {config.vqa_split}, shuffled images"
    )
    vqa_blank = evaluate_vqa(
        model, _loader(with_blank_images(vqa_eval), config), device=device, desc=f"vqa {config.vqa_split}, blank images"
    )
    timing["vqa_controls_s"] = time.perf_counter() - started
    groups, train_groups = vqa_question_groups(vqa_eval), vqa_question_groups(vqa_train)
    orders = {"answer_type": VQA_ANSWER_TYPES, "family": QUESTION_FAMILIES}
    vqa = {
        "score": vqa_real["score"],
        "score_shuffled_images": vqa_shuffled["score"],
        "score_blank_images": vqa_blank["score"],
        "by_type": mean_score_by_group(vqa_real["question_scores"], groups["answer_type"], VQA_ANSWER_TYPES),
        "by_family": mean_score_by_group(vqa_real["question_scores"], groups["family"], QUESTION_FAMILIES),
    }
    vqa_chance = {"score": vqa_majority_baseline(vqa_train, vqa_eval)}
    for key, group in (("by_type", "answer_type"), ("by_family", "family")):
        vqa_chance[key] = vqa_majority_baseline_by_group(
            vqa_train, vqa_eval, train_groups[group], groups[group], orders[group]
        )
    gallery.vqa = vqa_examples(vqa_eval, vqa_real["predictions"], config.gallery_vqa)
    gallery.vqa_by_family, gallery.vqa_by_family_chance = dict(vqa["by_family"]), dict(vqa_chance["by_family"])
    data_counts[f"vqav2_{config.vqa_split}"] = {"questions": len(vqa_eval), "answers": vqa_eval.num_labels}
    data_counts["vqa_question_counts"] = {
        "by_type": group_counts(groups["answer_type"], VQA_ANSWER_TYPES),
        "by_family": group_counts(groups["family"], QUESTION_FAMILIES),
    }
    logger.info(
        "vqa: score %.2f, shuffled images %.2f, blank images %.2f (majority answer %.2f)",
        vqa["score"],
        vqa["score_shuffled_images"],
        vqa["score_blank_images"],
        vqa_chance["score"],
    )

    started = time.perf_counter()
    model, tokenizer = _load(Path(model_dirs["nlvr2"]), config.max_text_len)
    nlvr2_dir = Path(dataset_dirs["nlvr2"])
    transform = build_eval_transform(model.config.image_size)

    def nlvr2_dataset(split: str) -> NLVR2Dataset:
        return NLVR2Dataset(
            (nlvr2_dir, split), transform=transform, tokenizer=tokenizer, max_text_len=tokenizer.max_len
        )

    nlvr2_train = nlvr2_dataset(config.nlvr2_train_split)
    nlvr2_scores, nlvr2_chance = {}, {}
    nlvr2_dev = None
    for key, split in (("dev_acc", config.nlvr2_dev_split), ("test_acc", config.nlvr2_test_split)):
        dataset = nlvr2_dataset(split)
        outcome = evaluate_nlvr2(model, _loader(dataset, config), device=device, desc=f"nlvr2 {split}")
        nlvr2_scores[key] = outcome["accuracy"]
        if key == "dev_acc":
            nlvr2_dev = dataset
            gallery.nlvr2 = nlvr2_examples(dataset, outcome["predictions"], config.gallery_nlvr2)
        nlvr2_chance[key] = nlvr2_majority_baseline(nlvr2_train, dataset)
        data_counts[f"nlvr2_{split}"] = {"statements": len(dataset)}
    timing["nlvr2_s"] = time.perf_counter() - started
    started = time.perf_counter()
    shuffled_pairs, _ = with_shuffled_images(nlvr2_dev, seed, key_column=None)  # one pair per row
    nlvr2_scores["dev_acc_shuffled_images"] = evaluate_nlvr2(
        model, _loader(shuffled_pairs, config), device=device, desc=f"nlvr2 {config.nlvr2_dev_split}, shuffled images"
    )["accuracy"]
    timing["nlvr2_controls_s"] = time.perf_counter() - started
    logger.info("nlvr2: %s (majority class %s)", nlvr2_scores, nlvr2_chance)

    stages = dict(stage_summaries or {})
    model_info = {
        "config": model.config.name,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "embed_dim": model.config.embed_dim,
        "depth": model.config.depth,
        "image_size": model.config.image_size,
        "device": str(device),
        "stages": {
            name: {
                key: summary.get(key) for key in ("global_step", "first_loss", "last_loss", "seconds", "train_samples")
            }
            for name, summary in stages.items()
        },
    }
    timing["total_s"] = time.perf_counter() - started_all
    chance = {
        "retrieval": chance_retrieval,
        "vqa": vqa_chance,
        "nlvr2": nlvr2_chance,
        "itm": {key: ITM_CHANCE for key in ("acc_hard_negatives", "acc_random_negatives")},
    }
    metrics = assemble_metrics(
        retrieval,
        vqa,
        nlvr2_scores,
        itm,
        chance,
        model=model_info,
        data=data_counts,
        timing=timing,
        retrieval_rerank={"k": int(config.rerank_k), **retrieval_rerank} if retrieval_rerank else None,
    )
    return EvaluationResult(metrics=metrics, gallery=gallery)
