"""The run registry: every training run of the chain, declared once.

A run is one Kedro pipeline (and DVC stage) of the same name, one parameters section
(``conf/<env>/parameters_<pipeline>.yml``), one :class:`~vlmo_pipeline.training.config.RunConfig` stage kind, the
catalog entries it reads (the model it starts from, the Arrow datasets, the folders it works in) and the two it
writes (its model directory and its training summary). The Kedro pipelines (:mod:`vlmo_pipeline.pipelines.train`),
the torchrun entry point (``python -m vlmo_pipeline.train``), the evaluation's inputs and the ablation are all built
from this table; adding a fine-tune means adding a row here, a parameters file, a catalog entry (when its model is
not matched by ``{task}_model``) and a DVC stage.

Imports nothing heavy: Kedro reads it at start-up to register the pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunSpec", "RUNS", "PRETRAINING_RUNS", "FINETUNING_RUNS", "get_run", "run_names"]


@dataclass(frozen=True)
class RunSpec:
    """One training run.

    Attributes:
        name: run name: the model folder (``data/06_models/<name>``), the report folder, the training summary's
            catalog entry (``<name>_training_summary``) and the key of its model in the evaluation.
        stage: :data:`~vlmo_pipeline.training.config.STAGES` kind (``retrieval`` serves COCO and F30K alike).
        pipeline: Kedro pipeline, node, DVC stage and parameters section (``pretrain_stage1``, ``finetune_vqa``).
        description: one line for the node's docstring and Kedro-Viz.
        starts_from: catalog entry of the model directory it starts from; ``None`` for stage 1, which starts
            from the parameters' ``init`` (a registry name or a BEiT checkpoint) with the ``vocab`` directory.
        datasets: Arrow datasets it reads (catalog ``<dataset>_arrow``; the parameters pick their splits).
        model_output: catalog entry of the model directory it writes.
    """

    name: str
    stage: str
    pipeline: str
    description: str
    starts_from: str | None
    datasets: tuple[str, ...]
    model_output: str

    @property
    def summary_output(self) -> str:
        """Catalog entry of the training summary (``data/08_reporting/<name>/training_summary.json``)."""
        return f"{self.name}_training_summary"

    @property
    def work_dirs(self) -> str:
        """Catalog entry naming the folders the run trains in (model directory with its checkpoints, log folder)."""
        return f"{self.name}_work_dirs"

    @property
    def parameters(self) -> str:
        """Kedro input of the run's parameters section."""
        return f"params:{self.pipeline}"

    @property
    def inputs(self) -> list[str]:
        """The node's inputs, in order: the starting model (or the vocabulary), the Arrow datasets, the work folders,
        the parameters."""
        first = self.starts_from or "vocab"
        return [first, *(f"{dataset}_arrow" for dataset in self.datasets), self.work_dirs, self.parameters]


_IMAGE_TEXT = ("coco", "vg", "cc3m", "sbu")

#: The chain in order. Stage 3's model is `pretrained_model`: the one every fine-tune starts from.
RUNS: tuple[RunSpec, ...] = (
    RunSpec(
        "stage1",
        "stage1",
        "pretrain_stage1",
        "Stage 1: image-only masked image modeling (attention + V-FFN), from scratch or a BEiT checkpoint.",
        None,
        _IMAGE_TEXT,
        "stage1_model",
    ),
    RunSpec(
        "stage2",
        "stage2",
        "pretrain_stage2",
        "Stage 2: text-only masked language modeling; attention and V-FFN frozen.",
        "stage1_model",
        ("text",),
        "stage2_model",
    ),
    RunSpec(
        "stage3",
        "stage3",
        "pretrain_stage3",
        "Stage 3: image-text pretraining (ITC + ITM with hard negatives + 0.25 MLM).",
        "stage2_model",
        _IMAGE_TEXT,
        "pretrained_model",
    ),
    RunSpec(
        "retrieval_coco",
        "retrieval",
        "finetune_retrieval_coco",
        "COCO retrieval fine-tuning (dual encoder, ITC loss).",
        "pretrained_model",
        ("coco",),
        "retrieval_coco_model",
    ),
    RunSpec(
        "retrieval_f30k",
        "retrieval",
        "finetune_retrieval_f30k",
        "Flickr30K retrieval fine-tuning (dual encoder, ITC loss).",
        "pretrained_model",
        ("f30k",),
        "retrieval_f30k_model",
    ),
    RunSpec(
        "vqa",
        "vqa",
        "finetune_vqa",
        "VQAv2 fine-tuning (soft-score BCE over the ingest's answer vocabulary).",
        "pretrained_model",
        ("vqav2",),
        "vqa_model",
    ),
    RunSpec(
        "nlvr2",
        "nlvr2",
        "finetune_nlvr2",
        "NLVR2 fine-tuning (two fused passes, concatenated poolers).",
        "pretrained_model",
        ("nlvr2",),
        "nlvr2_model",
    ),
)

PRETRAINING_RUNS: tuple[RunSpec, ...] = tuple(run for run in RUNS if run.pipeline.startswith("pretrain_"))
FINETUNING_RUNS: tuple[RunSpec, ...] = tuple(run for run in RUNS if run.pipeline.startswith("finetune_"))
_BY_KEY = {**{run.name: run for run in RUNS}, **{run.pipeline: run for run in RUNS}}


def run_names() -> list[str]:
    """Every accepted name: run names, then pipeline names."""
    return [run.name for run in RUNS] + [run.pipeline for run in RUNS]


def get_run(name: str) -> RunSpec:
    """The run called ``name`` (a run name such as ``stage1`` or its pipeline name ``pretrain_stage1``)."""
    try:
        return _BY_KEY[name]
    except KeyError:
        raise ValueError(f"unknown run {name!r}; expected one of {run_names()}") from None
