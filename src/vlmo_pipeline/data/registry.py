"""The datasets the project ingests, declared once (in the order the demo world writes them and `ingest` runs).

Each name is a raw format under ``data/01_raw/<name>`` (read by ``data/raw/``), a catalog pair ``raw_<name>`` /
``<name>_arrow``, an ``ingest_<name>`` pipeline and DVC stage, and an Arrow dataset under ``data/03_primary/<name>``.
"""

from __future__ import annotations

#: name -> what it holds. COCO comes before VQAv2, whose questions are about COCO's images.
DATASET_DESCRIPTIONS: dict[str, str] = {
    "coco": "COCO captions, Karpathy splits (train / restval / val / test)",
    "f30k": "Flickr30K captions, Karpathy splits",
    "vg": "Visual Genome region descriptions",
    "cc3m": "Conceptual Captions 3M (TSV or img2dataset output)",
    "sbu": "SBU Captions (img2dataset output)",
    "vqav2": "VQAv2 questions and answers over COCO images",
    "nlvr2": "NLVR2 image pairs and statements",
    "text": "a plain-text corpus for stage-2 masked language modeling",
}
DATASETS: tuple[str, ...] = tuple(DATASET_DESCRIPTIONS)
