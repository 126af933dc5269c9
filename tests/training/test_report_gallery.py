"""The report's example gallery (retrieval, VQA, NLVR2), built by the real evaluation of tiny models on the tiny
world: PNGs that are valid images, a report.md that links them relatively, examples that agree with the data and
with scores computed independently, and a metrics.json shape that the gallery leaves unchanged."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vlmo_pipeline.data.collate import collate
from vlmo_pipeline.data.datasets import ImageTextDataset, NLVR2Dataset, VQADataset, load_answer_vocab
from vlmo_pipeline.data.demo.vqav2 import QUESTION_FAMILIES, question_family
from vlmo_pipeline.evaluation.evaluate import evaluate_retrieval
from vlmo_pipeline.evaluation.gallery import (
    GALLERY_FILES,
    Gallery,
    RankedImage,
    RetrievalExample,
    gallery_markdown,
    nlvr2_examples,
    plot_retrieval_gallery,
    retrieval_examples,
    retrieval_query_rows,
    spread,
    vqa_examples,
)
from vlmo_pipeline.evaluation.report import RECALL_KEYS, check_metrics_shape, write_report
from vlmo_pipeline.evaluation.suite import MODEL_NAMES, EvaluationConfig, run_evaluation
from vlmo_pipeline.models import VLMo, get_config
from vlmo_pipeline.models.tokenizer import VLMoTokenizer
from vlmo_pipeline.models.transforms import build_eval_transform

try:
    from .tiny_training_world import tiny_world  # noqa: F401  (fixture)
except ImportError:  # rootdir-style import when tests/training is not a package
    from tiny_training_world import tiny_world  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_models(tiny_world: Path, tmp_path_factory) -> dict[str, Path]:
    """One untrained vlmo_tiny with every evaluation head (seeded), saved as the four fine-tuned model dirs and as
    the stage-3 model (it has the ITM head and the ITC projections)."""
    vocab = tiny_world.parent / "vocab" / "vocab.txt"
    answers = load_answer_vocab(tiny_world / "vqav2")
    torch.manual_seed(0)
    config = get_config(
        "vlmo_tiny",
        loss_names=("irtr", "itm", "vqa", "nlvr2"),
        vqa_num_labels=len(answers),
        vocab_size=len(vocab.read_text().splitlines()),
        drop_path_rate=0.0,
    )
    model = VLMo(config)
    root = tmp_path_factory.mktemp("gallery_models")
    return {name: model.save_pretrained(root / name, vocab_file=vocab) for name in MODEL_NAMES}


@pytest.fixture(scope="module")
def evaluation(tiny_world: Path, tiny_models: dict[str, Path]):
    config = EvaluationConfig(batch_size=4, device="cpu", max_text_len=32)
    datasets = {name: tiny_world / name for name in ("coco", "f30k", "vqav2", "nlvr2")}
    return run_evaluation(config, tiny_models, datasets)


@pytest.fixture(scope="module")
def report_dir(evaluation, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("report")
    histories = {"stage1": [(1, 2.0), (2, 1.5), (3, 1.2)]}
    write_report(directory, evaluation.metrics, histories, {}, gallery=evaluation.gallery)
    return directory


def test_spread_is_even_deterministic_and_distinct():
    assert spread(10, 4) == [0, 3, 6, 9]
    assert spread(3, 5) == [0, 1, 2]
    assert spread(7, 1) == [0]
    assert spread(0, 4) == [] and spread(5, 0) == []
    for total in range(1, 40):
        for count in range(1, total + 1):
            chosen = spread(total, count)
            assert len(chosen) == count and len(set(chosen)) == count, (total, count)
            assert chosen == sorted(chosen) and chosen[0] == 0, (total, count)
            if count > 1:
                assert chosen[-1] == total - 1, (total, count)


def test_report_embeds_every_gallery_png_by_relative_link(report_dir: Path):
    text = (report_dir / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    for name in GALLERY_FILES.values():
        assert name in links, f"report.md does not embed {name}"
        path = report_dir / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 200
    for link in links:  # every image link is relative and resolves next to report.md
        assert not Path(link).is_absolute() and "://" not in link, link
        assert (report_dir / link).is_file(), link
    assert "## Examples" in text and "| question | predicted | true answer |" in text
    assert not list(report_dir.glob(".*tmp*")), "temporary files left behind"


def test_gallery_leaves_the_metrics_shape_unchanged(evaluation, report_dir: Path):
    metrics = evaluation.metrics
    check_metrics_shape(metrics)
    for name in ("coco", "f30k"):
        assert set(metrics["retrieval"][name]) == set(RECALL_KEYS)
    rows = list(csv.DictReader((report_dir / "recall_at_k.csv").open()))
    assert [row["k"] for row in rows] == ["1", "5", "10"]
    for row in rows:
        k = row["k"]
        assert float(row["coco_t2i"]) == pytest.approx(metrics["retrieval"]["coco"][f"ir_r{k}"], abs=1e-3)
        assert float(row["f30k_i2t"]) == pytest.approx(metrics["retrieval"]["f30k"][f"tr_r{k}"], abs=1e-3)
        assert float(row["chance_coco_i2t"]) == pytest.approx(
            metrics["chance"]["retrieval"]["coco"][f"tr_r{k}"], abs=1e-3
        )


def test_image_controls_and_breakdowns_are_metrics_of_every_run(
    evaluation, tiny_world: Path, tiny_models, report_dir: Path
):
    """Every run reports the image controls, VQA per answer type and per question family (whatever families
    `question_family` finds in the split), ITM of the stage-3 model, and draws the per-family scores."""
    metrics = evaluation.metrics
    vqa = metrics["vqa"]
    assert {"score_shuffled_images", "score_blank_images"} <= set(vqa)
    assert "dev_acc_shuffled_images" in metrics["nlvr2"]
    assert set(metrics["itm"]) == {
        "acc_hard_negatives",
        "acc_random_negatives",
        "hard_negative_duplicate_rate",
        "random_negative_duplicate_rate",
    }
    assert "retrieval_rerank" not in metrics  # rerank_k = 0
    tokenizer = VLMoTokenizer(tiny_models["vqa"] / "vocab.txt", lowercase=True, max_len=32)
    dataset = VQADataset(
        (tiny_world / "vqav2", "val"),
        transform=build_eval_transform(64),
        tokenizer=tokenizer,
        max_text_len=32,
        drop_unanswerable=True,
    )
    questions = [dataset[index] for index in range(len(dataset))]
    families = [question_family(item["question"]) for item in questions]
    present = [family for family in QUESTION_FAMILIES if family in families]
    assert list(vqa["by_family"]) == present and present  # the demo world's questions have families
    assert list(metrics["chance"]["vqa"]["by_family"]) == present
    types = [item["answer_type"] for item in questions]
    assert list(vqa["by_type"]) == [name for name in ("yes/no", "number", "other") if name in types]
    counts = metrics["data"]["vqa_question_counts"]
    assert counts["by_family"] == {family: families.count(family) for family in present}
    assert sum(counts["by_type"].values()) == len(dataset)
    # the overall score is the question-weighted mean of the per-type scores
    weighted = sum(vqa["by_type"][name] * counts["by_type"][name] for name in vqa["by_type"]) / len(dataset)
    assert weighted == pytest.approx(vqa["score"], abs=1e-6)
    assert evaluation.gallery.vqa_by_family == vqa["by_family"]
    text = (report_dir / "report.md").read_text(encoding="utf-8")
    assert "## Does the model look at the image?" in text and "## VQA by question family (demo world)" in text


def test_retrieval_gallery_follows_the_model_similarities(evaluation, tiny_world: Path, tiny_models):
    """Every shown image, score, rank and ground-truth mark agrees with similarities computed here directly."""
    examples = evaluation.gallery.retrieval
    model = VLMo.from_pretrained(tiny_models["retrieval_coco"])
    tokenizer = VLMoTokenizer(tiny_models["retrieval_coco"] / "vocab.txt", lowercase=True, max_len=32)
    images = ImageTextDataset((tiny_world / "coco", "test"), transform=build_eval_transform(64), image_only=True)
    texts = ImageTextDataset((tiny_world / "coco", "test"), tokenizer=tokenizer, max_text_len=32, text_only=True)
    ids = [images.table.value(row, "image_id") for row in range(len(images))]
    queries = retrieval_query_rows(texts, 4)
    assert len(examples) == len(queries) == min(4, len(images)) and examples
    pixels = torch.stack([images[row]["image"] for row in range(len(images))])
    with torch.no_grad():
        image_feats = model.encode_image(pixels)
    for index, example in zip(queries, examples):
        item = texts[index]
        assert example.caption == item["caption"] and item["caption_index"] == 0
        with torch.no_grad():
            text_feat = model.encode_text(item["text_ids"][None], item["text_masks"][None])[0]
        similarity = (image_feats @ text_feat).tolist()
        truth_id = ids[item["image_index"]]
        assert len(example.ranked) == min(5, len(images))
        shown = [entry.image_id for entry in example.ranked]
        for entry in example.ranked:
            assert entry.score == pytest.approx(similarity[ids.index(entry.image_id)], abs=1e-4)
            assert entry.is_ground_truth == (entry.image_id == truth_id)
            assert entry.image.size[0] <= 160 and entry.image.size[1] <= 160
        assert [entry.score for entry in example.ranked] == sorted((e.score for e in example.ranked), reverse=True)
        hidden = [score for image_id, score in zip(ids, similarity) if image_id not in shown]
        assert all(score <= example.ranked[-1].score + 1e-5 for score in hidden)
        if truth_id in shown:
            assert example.ground_truth is None and example.ground_truth_rank == shown.index(truth_id) + 1
        else:
            assert example.ground_truth is not None and example.ground_truth.image_id == truth_id


@pytest.mark.parametrize("rerank_k", [0, 2])
def test_example_ranks_come_from_the_scores_the_recall_used(tiny_world: Path, tiny_models, rerank_k: int):
    """With every caption as a query, the share of ground truths at rank 1 / within 5 is the text→image R@1 / R@5
    of the dual encoder, also when the ITM re-ranked recall is computed beside it."""
    tokenizer = VLMoTokenizer(tiny_models["retrieval_coco"] / "vocab.txt", lowercase=True, max_len=32)
    images = ImageTextDataset((tiny_world / "coco", "test"), transform=build_eval_transform(64), image_only=True)
    texts = ImageTextDataset((tiny_world / "coco", "test"), tokenizer=tokenizer, max_text_len=32, text_only=True)

    def loader(dataset):
        return DataLoader(dataset, batch_size=3, shuffle=False, collate_fn=collate)

    result = evaluate_retrieval(
        VLMo.from_pretrained(tiny_models["retrieval_coco"]),
        loader(images),
        loader(texts),
        rerank_k=rerank_k,
        device=torch.device("cpu"),
        example_queries=range(len(texts)),
        example_depth=1,
    )
    examples = result.pop("examples")
    timing = result.pop("timing")
    assert set(timing) == ({"dual_encoder_s", "rerank_s"} if rerank_k else {"dual_encoder_s"})
    if rerank_k:
        assert set(result.pop("rerank")) == set(RECALL_KEYS)
    assert set(result) == set(RECALL_KEYS) and len(examples) == len(texts)
    ranks = [example["ground_truth_rank"] for example in examples]
    assert result["ir_r1"] == pytest.approx(100.0 * sum(rank == 1 for rank in ranks) / len(ranks))
    assert result["ir_r5"] == pytest.approx(100.0 * sum(rank <= 5 for rank in ranks) / len(ranks))
    for index, example in enumerate(examples):
        assert example["ground_truth"] == int(texts.row_of_sample[index])
        assert (example["image_rows"] == [example["ground_truth"]]) == (example["ground_truth_rank"] == 1)
    with pytest.raises(ValueError, match=r"example_queries \[99\] outside"):
        evaluate_retrieval(
            VLMo.from_pretrained(tiny_models["retrieval_coco"]),
            loader(images),
            loader(texts),
            device=torch.device("cpu"),
            example_queries=[99],
        )


def test_retrieval_example_whose_image_is_not_in_the_top_is_drawn_after_them(tiny_world: Path, tmp_path: Path):
    images = ImageTextDataset((tiny_world / "coco", "test"), transform=build_eval_transform(64), image_only=True)
    tokenizer = VLMoTokenizer(tiny_world.parent / "vocab" / "vocab.txt", lowercase=True, max_len=32)
    texts = ImageTextDataset((tiny_world / "coco", "test"), tokenizer=tokenizer, max_text_len=32, text_only=True)
    truth = int(texts.row_of_sample[0])
    other = 1 - truth
    ranked = [
        {
            "text_row": 0,
            "image_rows": [other],
            "scores": [0.5],
            "ground_truth": truth,
            "ground_truth_rank": 2,
            "ground_truth_score": 0.25,
        }
    ]
    [example] = retrieval_examples(images, texts, ranked)
    assert example.caption == texts[0]["caption"]
    assert [entry.is_ground_truth for entry in example.ranked] == [False]
    assert example.ground_truth is not None and example.ground_truth.is_ground_truth
    assert example.ground_truth.image_id == images.table.value(truth, "image_id")
    assert example.ground_truth_rank == 2 and example.ground_truth.score == 0.25
    path = plot_retrieval_gallery([example], tmp_path / "gallery.png")
    with Image.open(path) as image:
        image.verify()
    with pytest.raises(ValueError, match="image row 99 outside"):
        retrieval_examples(images, texts, [dict(ranked[0], image_rows=[99])])


def test_vqa_examples_agree_with_the_dataset_targets(evaluation, tiny_world: Path, tiny_models):
    examples = evaluation.gallery.vqa
    tokenizer = VLMoTokenizer(tiny_models["vqa"] / "vocab.txt", lowercase=True, max_len=32)
    dataset = VQADataset(
        (tiny_world / "vqav2", "val"),
        transform=build_eval_transform(64),
        tokenizer=tokenizer,
        max_text_len=32,
        drop_unanswerable=True,
    )
    assert len(examples) == min(8, len(dataset))
    vocabulary = dataset.answer_vocab
    for index, example in zip(spread(len(dataset), 8), examples):
        item = dataset[index]
        assert example.question == item["question"]
        targets = item["vqa_targets"]
        predicted = vocabulary.index(example.predicted)
        assert example.score == pytest.approx(float(targets[predicted]))
        assert example.truth == vocabulary[int(targets.argmax())]
        assert example.correct == (float(targets[predicted]) > 0 and float(targets[predicted]) == float(targets.max()))
    # a prediction list that does not match the dataset is refused, naming both sizes
    with pytest.raises(ValueError, match=rf"2 predictions for {len(dataset)} samples"):
        vqa_examples(dataset, [0, 1], 8)


def test_nlvr2_examples_agree_with_the_dataset_labels(evaluation, tiny_world: Path, tiny_models):
    examples = evaluation.gallery.nlvr2
    tokenizer = VLMoTokenizer(tiny_models["nlvr2"] / "vocab.txt", lowercase=True, max_len=32)
    dataset = NLVR2Dataset(
        (tiny_world / "nlvr2", "dev"), transform=build_eval_transform(64), tokenizer=tokenizer, max_text_len=32
    )
    assert len(examples) == min(6, len(dataset))
    for index, example in zip(spread(len(dataset), 6), examples):
        item = dataset[index]
        assert example.sentence == item["sentence"] and example.truth == bool(item["label"])
        assert example.correct == (example.predicted == example.truth)
    flipped = [1 - int(e.predicted) for e in examples]
    predictions = [0] * len(dataset)
    for index, value in zip(spread(len(dataset), 6), flipped):
        predictions[index] = value
    again = nlvr2_examples(dataset, predictions, 6)
    assert [e.predicted for e in again] == [bool(v) for v in flipped]
    assert [e.correct for e in again] == [not e.correct for e in examples]


def test_markdown_cells_are_escaped_and_math_signs_are_drawn_as_text(tmp_path: Path):
    image = Image.new("RGB", (32, 32), "white")
    example = RetrievalExample(
        caption="a $5 | cheap\nsign", ranked=[RankedImage(image, "x|1", 0.5, True)], ground_truth_rank=1
    )
    lines = gallery_markdown(Gallery(retrieval=[example]), {"retrieval": "retrieval_gallery.png"})
    row = next(line for line in lines if "cheap" in line)
    assert "a $5 \\| cheap sign" in row and row.count(" | ") == 2
    plot_retrieval_gallery([example], tmp_path / "g.png")  # "$" must not start mathtext
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG_MAGIC
    assert gallery_markdown(Gallery(), {}) == []


def test_zero_gallery_counts_leave_the_examples_out(tiny_world: Path, tiny_models, tmp_path: Path):
    config = EvaluationConfig(
        batch_size=8, device="cpu", max_text_len=32, gallery_captions=0, gallery_vqa=0, gallery_nlvr2=0, rerank_k=2
    )
    result = run_evaluation(
        config, tiny_models, {name: tiny_world / name for name in ("coco", "f30k", "vqav2", "nlvr2")}
    )
    assert result.gallery.is_empty()
    # re-ranking on: the re-ranked recall of both datasets next to the dual encoder's, each timed
    rerank = result.metrics["retrieval_rerank"]
    assert rerank["k"] == 2 and set(rerank["coco"]) == set(RECALL_KEYS) and set(rerank["f30k"]) == set(RECALL_KEYS)
    assert {
        "retrieval_coco_dual_encoder_s",
        "retrieval_coco_rerank_s",
        "retrieval_f30k_rerank_s",
        "itm_s",
        "total_s",
    } <= set(result.metrics["timing"])
    write_report(tmp_path, result.metrics, {}, {}, gallery=result.gallery)
    assert "## Examples" not in (tmp_path / "report.md").read_text()
    assert not any((tmp_path / name).exists() for name in GALLERY_FILES.values())
    with pytest.raises(ValueError, match="gallery_depth must be >= 1"):
        EvaluationConfig.from_dict({"gallery_depth": 0})
