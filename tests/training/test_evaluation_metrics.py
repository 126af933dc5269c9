"""VQA score, retrieval recall (vs brute force), chance and majority baselines."""

from __future__ import annotations

import itertools

import pytest
import torch

from vlmo_pipeline.evaluation.metrics import (
    RetrievalRecall,
    VQAScore,
    chance_retrieval_recall,
    majority_baseline_vqa_score,
    majority_class_accuracy,
    recall_keys,
    retrieval_recall,
)


def test_vqa_score_is_the_soft_score_of_the_argmax_in_percent():
    metric = VQAScore()
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0], [0.0, 0.0, 5.0]])
    targets = torch.tensor([[0.0, 0.6, 1.0], [0.3, 1.0, 0.0], [0.0, 0.0, 1.0]])
    metric.update(logits[:2], targets[:2])
    metric.update(logits[2:], targets[2:])
    # argmax answers 1, 0, 2 → scores 0.6, 0.3, 1.0
    assert metric.compute().item() == pytest.approx(100 * (0.6 + 0.3 + 1.0) / 3)
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert VQAScore().compute().item() == 0.0


def _brute_force_recall(scores: list[list[float]], text_to_image: list[int], ks) -> dict[str, float]:
    """Rank by sorting each row explicitly (scores are distinct)."""
    n_images, n_texts = len(scores), len(scores[0])
    result = {}
    for k in ks:
        image_hits = 0
        for image in range(n_images):
            ranked = sorted(range(n_texts), key=lambda text: -scores[image][text])[:k]
            image_hits += any(text_to_image[text] == image for text in ranked)
        result[f"tr_r{k}"] = 100 * image_hits / n_images
    for k in ks:
        text_hits = 0
        for text in range(n_texts):
            ranked = sorted(range(n_images), key=lambda image: -scores[image][text])[:k]
            text_hits += text_to_image[text] in ranked
        result[f"ir_r{k}"] = 100 * text_hits / n_texts
    result["rsum"] = sum(result.values())
    return result


def test_retrieval_recall_on_a_hand_built_matrix():
    # 3 images, one-hot image embeddings → score[i][t] = text_feats[t][i] is written directly.
    scores = [
        [0.9, 0.1, 0.5, 0.2, 0.3, 0.0],
        [0.8, 0.7, 0.4, 0.6, 0.1, 0.2],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    ]
    text_to_image = [0, 0, 1, 1, 2, 2]
    image_feats = torch.eye(3)
    text_feats = torch.tensor(scores).t().contiguous()
    result = retrieval_recall(image_feats, text_feats, torch.tensor(text_to_image), ks=(1, 2, 5))
    # TR@1: img0 → text0 (own) ✓; img1 → text0 (img0's) ✗; img2 → text5 ✓ → 2/3.
    assert result["tr_r1"] == pytest.approx(200 / 3)
    # IR@1: t0→img0 ✓, t1→img1 ✗, t2→img0 ✗, t3→img1 ✓, t4→img2 ✓, t5→img2 ✓ → 4/6.
    assert result["ir_r1"] == pytest.approx(400 / 6)
    assert result == pytest.approx(_brute_force_recall(scores, text_to_image, (1, 2, 5)))
    assert list(result) == recall_keys((1, 2, 5))


@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
def test_retrieval_recall_matches_brute_force_on_random_features(chunk_size):
    generator = torch.Generator().manual_seed(0)
    image_feats = torch.nn.functional.normalize(torch.randn(9, 5, generator=generator), dim=1)
    text_to_image = torch.arange(9).repeat_interleave(3)[torch.randperm(27, generator=generator)]
    text_feats = torch.nn.functional.normalize(
        image_feats[text_to_image] + 0.9 * torch.randn(27, 5, generator=generator), dim=1
    )
    result = retrieval_recall(image_feats, text_feats, text_to_image, chunk_size=chunk_size)
    scores = (image_feats @ text_feats.t()).tolist()
    assert result == pytest.approx(_brute_force_recall(scores, text_to_image.tolist(), (1, 5, 10)))
    assert 0 < result["tr_r1"] < 100  # a non-trivial case


def test_retrieval_recall_validates_inputs():
    with pytest.raises(ValueError, match="text_to_image values"):
        retrieval_recall(torch.eye(2), torch.eye(2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="share D"):
        retrieval_recall(torch.eye(2), torch.zeros(2, 3), torch.tensor([0, 1]))


def test_retrieval_recall_metric_accumulates_and_drops_duplicates():
    generator = torch.Generator().manual_seed(1)
    image_feats = torch.nn.functional.normalize(torch.randn(6, 4, generator=generator), dim=1)
    text_to_image = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    text_feats = torch.nn.functional.normalize(
        image_feats[text_to_image] + torch.randn(12, 4, generator=generator), dim=1
    )
    expected = retrieval_recall(image_feats, text_feats, text_to_image)

    image_ids = torch.tensor([50, 10, 40, 20, 30, 60])  # arbitrary ids, any order
    metric = RetrievalRecall()
    order = torch.tensor([3, 0, 5])
    metric.update(image_feats=image_feats[order], image_ids=image_ids[order])
    rest = torch.tensor([1, 2, 4, 4])  # image 4 twice (sampler padding)
    metric.update(image_feats=image_feats[rest], image_ids=image_ids[rest])
    text_ids = torch.arange(12)
    metric.update(text_feats=text_feats[:7], text_image_ids=image_ids[text_to_image[:7]], text_ids=text_ids[:7])
    tail = torch.tensor([7, 8, 9, 10, 11, 0])  # caption 0 repeated
    metric.update(text_feats=text_feats[tail], text_image_ids=image_ids[text_to_image[tail]], text_ids=text_ids[tail])
    assert metric.compute() == pytest.approx(expected)


def test_retrieval_recall_metric_reports_unknown_image_ids():
    metric = RetrievalRecall()
    metric.update(image_feats=torch.eye(2), image_ids=torch.tensor([1, 2]))
    metric.update(text_feats=torch.eye(2), text_image_ids=torch.tensor([1, 7]))
    with pytest.raises(ValueError, match=r"\[7\]"):
        metric.compute()


def _exhaustive_chance(n_images: int, captions: int, k: int) -> tuple[float, float]:
    """Average over every ranking of the texts (TR) and of the images (IR)."""
    n_texts = n_images * captions
    own = set(range(captions))  # by symmetry: image 0 owns texts 0..captions-1
    permutations = list(itertools.permutations(range(n_texts)))
    tr = sum(bool(own & set(order[:k])) for order in permutations) / len(permutations)
    image_orders = list(itertools.permutations(range(n_images)))
    ir = sum(0 in order[:k] for order in image_orders) / len(image_orders)
    return 100 * tr, 100 * ir


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_chance_recall_matches_exhaustive_enumeration(k):
    chance = chance_retrieval_recall(3, 2, ks=(k,))
    tr, ir = _exhaustive_chance(3, 2, k)
    assert chance[f"tr_r{k}"] == pytest.approx(tr)
    assert chance[f"ir_r{k}"] == pytest.approx(ir)
    assert chance["rsum"] == pytest.approx(tr + ir)


def test_chance_recall_coco_scale_and_per_image_counts():
    coco = chance_retrieval_recall(5000, 5)
    assert coco["ir_r1"] == pytest.approx(0.02) and coco["ir_r10"] == pytest.approx(0.2)
    assert coco["tr_r1"] == pytest.approx(100 * 5 / 25000)
    uneven = chance_retrieval_recall(2, [1, 3], ks=(1,))
    assert uneven["tr_r1"] == pytest.approx(100 * (1 / 4 + 3 / 4) / 2)
    with pytest.raises(ValueError, match="entries"):
        chance_retrieval_recall(3, [1, 2])


def test_majority_baselines():
    train_answers = ["yes", "no", "yes", "2", "yes"]
    eval_targets = [{"yes": 1.0}, {"no": 1.0, "yes": 0.3}, {"2": 0.6}]
    assert majority_baseline_vqa_score(train_answers, eval_targets) == pytest.approx(100 * 1.3 / 3)
    dense_eval = torch.tensor([[1.0, 0.0], [0.3, 1.0], [0.0, 0.0]])
    assert majority_baseline_vqa_score(torch.tensor([0, 1, 0]), dense_eval) == pytest.approx(100 * 1.3 / 3)
    soft_train = torch.tensor([[0.3, 1.0], [0.3, 0.0], [0.3, 0.0]])  # column sums 0.9 vs 1.0 → answer 1
    assert majority_baseline_vqa_score(soft_train, dense_eval) == pytest.approx(100 / 3)
    assert majority_class_accuracy([1, 1, 0], [1, 0, 0, 0]) == pytest.approx(25.0)
    with pytest.raises(ValueError, match="empty"):
        majority_baseline_vqa_score([], eval_targets)
