"""Raw-format readers, one module per dataset family.

Each ``open_<family>(root, *, max_caption_chars, ...)`` parses the annotation files (metadata only, raising
:class:`RawLayoutError` for a missing required file or a wrong layout) and returns a :class:`RawSource` whose
``items`` generator streams :class:`RawRecord` (a future row; images as file locations) and :class:`Reject`
objects in a deterministic order. Image bytes are read later, by the ingest workers.
"""

from vlmo_pipeline.data.raw.cc3m import iter_tsv, open_cc3m
from vlmo_pipeline.data.raw.coco import load_official_captions, open_coco
from vlmo_pipeline.data.raw.f30k import open_f30k
from vlmo_pipeline.data.raw.img2dataset import iter_img2dataset
from vlmo_pipeline.data.raw.karpathy import load_karpathy
from vlmo_pipeline.data.raw.nlvr2 import iter_nlvr2_lines, open_nlvr2, pair_id
from vlmo_pipeline.data.raw.records import (
    REJECT_REASONS,
    ImageSource,
    PathEscapesRootError,
    RawLayoutError,
    RawRecord,
    RawSource,
    Reject,
    safe_join,
)
from vlmo_pipeline.data.raw.sbu import load_sbu_json, open_sbu
from vlmo_pipeline.data.raw.text import open_text, split_sentences
from vlmo_pipeline.data.raw.vg import open_vg
from vlmo_pipeline.data.raw.vqa_answers import build_answer_vocab, normalize_answer, score_answers, soft_score
from vlmo_pipeline.data.raw.vqav2 import load_annotations, load_questions, open_vqav2

__all__ = [
    "REJECT_REASONS",
    "ImageSource",
    "PathEscapesRootError",
    "RawLayoutError",
    "RawRecord",
    "RawSource",
    "Reject",
    "build_answer_vocab",
    "iter_img2dataset",
    "iter_nlvr2_lines",
    "iter_tsv",
    "load_annotations",
    "load_karpathy",
    "load_official_captions",
    "load_questions",
    "load_sbu_json",
    "normalize_answer",
    "open_cc3m",
    "open_coco",
    "open_f30k",
    "open_nlvr2",
    "open_sbu",
    "open_text",
    "open_vg",
    "open_vqav2",
    "pair_id",
    "safe_join",
    "score_answers",
    "soft_score",
    "split_sentences",
]
