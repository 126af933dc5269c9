"""Image controls of the evaluation (shuffled / blank images for VQA and NLVR2, held-out ITM with hard and random
negatives) and the ITM re-ranking of retrieval, on the real Arrow datasets of the tiny demo world.

The controls are checked against models whose use of the image is known: models that ignore the image score the
same on real, shuffled and blank images (exactly), models that read the answer off the image (a lookup keyed by the
image's mean colour, right on the real images) drop; an ITM head that ignores the image scores exactly 50 %.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from vlmo_pipeline.data.collate import collate
from vlmo_pipeline.data.datasets import ImageTextDataset, NLVR2Dataset, VQADataset
from vlmo_pipeline.data.demo.vqav2 import QUESTION_FAMILIES, question_family
from vlmo_pipeline.evaluation.controls import (
    derange_groups,
    derangement,
    shuffled_row_map,
    with_blank_images,
    with_image_rows,
    with_shuffled_images,
)
from vlmo_pipeline.evaluation.evaluate import (
    RERANK_OUTSIDE_TOP_K,
    VQA_ANSWER_TYPES,
    evaluate_itm,
    evaluate_nlvr2,
    evaluate_retrieval,
    evaluate_vqa,
    mean_score_by_group,
    rerank_scores,
    vqa_question_groups,
)
from vlmo_pipeline.evaluation.report import RECALL_KEYS
from vlmo_pipeline.models import VLMo, get_config
from vlmo_pipeline.models.tokenizer import VLMoTokenizer
from vlmo_pipeline.models.transforms import build_eval_transform

try:
    from .tiny_training_world import tiny_world  # noqa: F401  (fixture)
except ImportError:  # rootdir-style import when tests/training is not a package
    from tiny_training_world import tiny_world  # noqa: F401

CPU = torch.device("cpu")
TEXT_LEN = 32


# ----------------------------------------------------------------------------------------------- helpers
def _tokenizer(world: Path) -> VLMoTokenizer:
    return VLMoTokenizer(world.parent / "vocab" / "vocab.txt", lowercase=True, max_len=TEXT_LEN)


def _vocab_size(world: Path) -> int:
    return len((world.parent / "vocab" / "vocab.txt").read_text().splitlines())


def _vqa(world: Path, split: str = "val") -> VQADataset:
    return VQADataset(
        (world / "vqav2", split),
        transform=build_eval_transform(64),
        tokenizer=_tokenizer(world),
        max_text_len=TEXT_LEN,
        drop_unanswerable=True,
    )


def _nlvr2(world: Path, split: str = "dev") -> NLVR2Dataset:
    return NLVR2Dataset(
        (world / "nlvr2", split), transform=build_eval_transform(64), tokenizer=_tokenizer(world), max_text_len=TEXT_LEN
    )


def _captions(world: Path, split: str) -> tuple[ImageTextDataset, ImageTextDataset]:
    source = (world / "coco", split)
    return (
        ImageTextDataset(source, transform=build_eval_transform(64), image_only=True),
        ImageTextDataset(source, tokenizer=_tokenizer(world), max_text_len=TEXT_LEN, text_only=True),
    )


def _loader(dataset, batch_size: int = 5) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)


def colour(image: torch.Tensor) -> tuple[float, ...]:
    """Mean pixel value per channel of one (3, H, W) image: the image feature the lookup models read."""
    return tuple(round(value, 4) for value in image.float().mean(dim=(-2, -1)).tolist())


def tokens(text_ids: torch.Tensor, text_masks: torch.Tensor) -> tuple[int, ...]:
    return tuple(text_ids[text_masks.bool()].tolist())


class TextOnlyVQA(nn.Module):
    """VQA head on the question tokens alone: the image never reaches the answer."""

    def __init__(self, vocab_size: int, num_labels: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab_size, num_labels)

    def vqa_logits(self, text_ids, text_masks, images):
        return (self.embed(text_ids) * text_masks.unsqueeze(-1)).sum(1)


class LookupVQA(nn.Module):
    """Answers from a table keyed by (question tokens, mean colour of the image), built on the real images: right
    on them, and a fixed label for any (question, image) pair the table does not know."""

    def __init__(self, dataset: VQADataset) -> None:
        super().__init__()
        self.num_labels = dataset.num_labels
        self.table = {}
        for index in range(len(dataset)):
            item = dataset[index]
            key = (tokens(item["text_ids"], item["text_masks"]), colour(item["image"]))
            self.table[key] = int(item["vqa_targets"].argmax())

    def vqa_logits(self, text_ids, text_masks, images):
        logits = torch.zeros(len(text_ids), self.num_labels)
        for row in range(len(text_ids)):
            key = (tokens(text_ids[row], text_masks[row]), colour(images[row]))
            logits[row, self.table.get(key, 0)] = 1.0
        return logits


class TextOnlyNLVR2(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.embed = nn.Embedding(vocab_size, 2)

    def nlvr2_logits(self, text_ids, text_masks, images_0, images_1):
        return (self.embed(text_ids) * text_masks.unsqueeze(-1)).sum(1)


class LookupNLVR2(nn.Module):
    """The label from a table keyed by (statement tokens, mean colours of both images); "False" when unknown."""

    def __init__(self, dataset: NLVR2Dataset) -> None:
        super().__init__()
        self.table = {}
        for index in range(len(dataset)):
            item = dataset[index]
            key = (tokens(item["text_ids"], item["text_masks"]), colour(item["image_0"]), colour(item["image_1"]))
            self.table[key] = int(item["label"])

    def nlvr2_logits(self, text_ids, text_masks, images_0, images_1):
        logits = torch.zeros(len(text_ids), 2)
        for row in range(len(text_ids)):
            key = (tokens(text_ids[row], text_masks[row]), colour(images_0[row]), colour(images_1[row]))
            logits[row, self.table.get(key, 0)] = 1.0
        return logits


def _itm_config(world: Path, **overrides):
    return get_config(
        "vlmo_tiny", loss_names=("itc", "itm"), vocab_size=_vocab_size(world), drop_path_rate=0.0, **overrides
    )


class ConstantITM(VLMo):
    """A real VLMo (its ITC similarities pick the hard negatives) whose ITM head always says the same."""

    says_match = True

    def itm_logits(self, text_ids, text_masks, images):
        logits = torch.zeros(len(text_ids), 2)
        logits[:, int(self.says_match)] = 1.0
        return logits


class OracleITM(VLMo):
    """A real VLMo whose ITM head knows every (image, caption) pair of the split: match logit +50 for a true pair,
    -50 otherwise (a caption that is word for word the caption of the image counts as a true pair)."""

    true_pairs: set = set()

    def itm_logits(self, text_ids, text_masks, images):
        logits = torch.zeros(len(text_ids), 2)
        for row in range(len(text_ids)):
            known = (colour(images[row]), tokens(text_ids[row], text_masks[row])) in self.true_pairs
            logits[row] = torch.tensor([-50.0, 50.0] if known else [50.0, -50.0])
        return logits


def _true_pairs(images: ImageTextDataset, texts: ImageTextDataset) -> set:
    colours = [colour(images[row]["image"]) for row in range(len(images))]
    pairs = set()
    for index in range(len(texts)):
        item = texts[index]
        pairs.add((colours[item["image_index"]], tokens(item["text_ids"], item["text_masks"])))
    return pairs


def _seeded(cls, config, seed: int = 0):
    torch.manual_seed(seed)
    return cls(config).eval()


# ----------------------------------------------------------------------------------------- permutations
def test_derangement_is_a_seeded_permutation_without_fixed_points():
    for n in range(2, 40):
        for seed in range(5):
            permutation = derangement(n, seed)
            assert sorted(permutation) == list(range(n)), (n, seed)
            assert all(target != position for position, target in enumerate(permutation)), (n, seed)
            assert derangement(n, seed) == permutation  # same seed, same permutation
    assert len({tuple(derangement(12, seed)) for seed in range(20)}) > 15  # the seed matters
    # n = 3 has exactly two derangements, both drawn
    assert {tuple(derangement(3, seed)) for seed in range(50)} == {(1, 2, 0), (2, 0, 1)}
    assert derangement(0, 0) == []
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, 0)


def test_derange_groups_moves_every_group_whole_to_another_key():
    keys = ["a", "a", "b", "c", "c", "c", "d", "b"]
    for seed in range(30):
        targets = derange_groups(keys, seed)
        assert all(keys[target] != keys[position] for position, target in enumerate(targets)), seed
        for key in set(keys):  # all members of a group land on the same position, the first of its target group
            landing = {targets[position] for position, other in enumerate(keys) if other == key}
            assert len(landing) == 1, (seed, key)
            (target,) = landing
            assert keys.index(keys[target]) == target
        assert sorted({keys[target] for target in targets}) == sorted(set(keys))  # a permutation of the groups
    with pytest.raises(ValueError, match="1 distinct image"):
        derange_groups(["x", "x", "x"], 0)


def test_shuffled_vqa_questions_keep_everything_but_get_another_image(tiny_world: Path):
    dataset = _vqa(tiny_world)
    shuffled, row_map = with_shuffled_images(dataset, seed=3, key_column="image_id")
    assert row_map == shuffled_row_map(dataset, 3, "image_id")  # seeded: the same map again
    rows = sorted(set(dataset.row_of_sample.tolist()))
    assert sorted(row_map) == rows and sorted(row_map.values()) == rows  # a permutation of the images in use
    for row, other in row_map.items():
        assert dataset.table.value(other, "image_id") != dataset.table.value(row, "image_id")
    images_of = {row: dataset[int(list(dataset.row_of_sample).index(row))]["image"] for row in rows}
    for index in range(len(dataset)):
        real, control = dataset[index], shuffled[index]
        for key in ("question", "question_id", "answer_labels", "answer_scores", "answer_type", "image_index"):
            assert control[key] == real[key], key
        assert torch.equal(control["vqa_targets"], real["vqa_targets"])
        assert torch.equal(control["text_ids"], real["text_ids"])
        assert torch.equal(control["image"], images_of[row_map[real["image_index"]]])
        assert not torch.equal(control["image"], real["image"])
    assert torch.equal(dataset[0]["image"], images_of[int(dataset.row_of_sample[0])])  # the original is untouched
    again = pickle.loads(pickle.dumps(shuffled))  # DataLoader workers get the controlled copy intact
    assert torch.equal(again[1]["image"], shuffled[1]["image"])


def test_blank_images_are_mid_grey_before_the_transform(tiny_world: Path):
    dataset = _nlvr2(tiny_world)
    blank = with_blank_images(dataset)
    for index in (0, len(dataset) - 1):
        real, control = dataset[index], blank[index]
        for column in ("image_0", "image_1"):
            assert control[column].shape == real[column].shape
            # 0.5 grey through the eval transform's (x - 0.5) / 0.5 normalisation: 0 up to resampling rounding
            assert float(control[column].abs().max()) < 1e-5
            assert float(real[column].abs().max()) > 0.5
        assert control["sentence"] == real["sentence"] and control["label"] == real["label"]
    pairs = with_image_rows(dataset, {row: (row + 1) % dataset.table.num_rows for row in range(dataset.table.num_rows)})
    item = pairs[0]
    source = int(dataset.row_of_sample[0]) + 1
    other = next(index for index in range(len(dataset)) if int(dataset.row_of_sample[index]) == source)
    assert torch.equal(item["image_0"], dataset[other]["image_0"])
    assert torch.equal(item["image_1"], dataset[other]["image_1"])


# ------------------------------------------------------------------------------------------------ VQA
def test_vqa_controls_leave_an_image_blind_model_unchanged(tiny_world: Path):
    dataset = _vqa(tiny_world)
    model = TextOnlyVQA(_vocab_size(tiny_world), dataset.num_labels)
    real = evaluate_vqa(model, _loader(dataset), device=CPU)
    shuffled = evaluate_vqa(model, _loader(with_shuffled_images(dataset, 0)[0]), device=CPU)
    blank = evaluate_vqa(model, _loader(with_blank_images(dataset)), device=CPU)
    assert shuffled["score"] == real["score"] and blank["score"] == real["score"]
    assert shuffled["predictions"] == real["predictions"] == blank["predictions"]


def test_vqa_controls_drop_for_a_model_that_reads_the_image(tiny_world: Path):
    dataset = _vqa(tiny_world)
    model = LookupVQA(dataset)
    real = evaluate_vqa(model, _loader(dataset), device=CPU)
    best = [float(dataset[index]["vqa_targets"].max()) for index in range(len(dataset))]
    assert real["question_scores"] == pytest.approx(best)  # right on every real image
    assert real["score"] == pytest.approx(100.0 * sum(best) / len(best))
    shuffled = evaluate_vqa(model, _loader(with_shuffled_images(dataset, 0)[0]), device=CPU)
    blank = evaluate_vqa(model, _loader(with_blank_images(dataset)), device=CPU)
    assert shuffled["score"] < real["score"] - 20 and blank["score"] < real["score"] - 20

    groups = vqa_question_groups(dataset)
    questions = [dataset[index]["question"] for index in range(len(dataset))]
    assert groups["family"] == [question_family(question) for question in questions]
    assert groups["answer_type"] == [dataset[index]["answer_type"] for index in range(len(dataset))]
    by_family = mean_score_by_group(real["question_scores"], groups["family"], QUESTION_FAMILIES)
    families = {family for family in groups["family"] if family != "unmatched"}
    assert set(by_family) == families and families <= set(QUESTION_FAMILIES)
    for family, score in by_family.items():
        members = [value for value, group in zip(best, groups["family"]) if group == family]
        assert score == pytest.approx(100.0 * sum(members) / len(members))
    by_type = mean_score_by_group(real["question_scores"], groups["answer_type"], VQA_ANSWER_TYPES)
    assert list(by_type) == [name for name in VQA_ANSWER_TYPES if name in groups["answer_type"]]


# ---------------------------------------------------------------------------------------------- NLVR2
def test_nlvr2_shuffled_pairs_only_hurt_a_model_that_reads_the_images(tiny_world: Path):
    dataset = _nlvr2(tiny_world)
    shuffled, row_map = with_shuffled_images(dataset, 0, key_column=None)
    assert all(row != other for row, other in row_map.items())
    blind = TextOnlyNLVR2(_vocab_size(tiny_world))
    assert (
        evaluate_nlvr2(blind, _loader(shuffled), device=CPU)["predictions"]
        == evaluate_nlvr2(blind, _loader(dataset), device=CPU)["predictions"]
    )
    reader = LookupNLVR2(dataset)
    assert evaluate_nlvr2(reader, _loader(dataset), device=CPU)["accuracy"] == 100.0
    assert evaluate_nlvr2(reader, _loader(shuffled), device=CPU)["accuracy"] < 90.0


# ------------------------------------------------------------------------------------------------ ITM
@pytest.mark.parametrize("says_match", [True, False])
def test_itm_that_ignores_the_image_scores_exactly_chance(tiny_world: Path, says_match: bool):
    images, texts = _captions(tiny_world, "train")
    model = _seeded(ConstantITM, _itm_config(tiny_world))
    model.says_match = says_match
    result = evaluate_itm(model, images, texts, batch_size=3, seed=0, device=CPU)
    assert result["acc_hard_negatives"] == 50.0 and result["acc_random_negatives"] == 50.0
    assert result["images"] == len(images)


def test_itm_oracle_is_right_except_where_the_negative_describes_the_image_too(tiny_world: Path):
    images, texts = _captions(tiny_world, "train")
    model = _seeded(OracleITM, _itm_config(tiny_world))
    model.true_pairs = _true_pairs(images, texts)
    result = evaluate_itm(model, images, texts, batch_size=3, seed=5, device=CPU)
    captions = [texts[index]["caption"] for index in result["positives"]]
    own_texts = [set() for _ in range(len(images))]
    for index in range(len(texts)):
        own_texts[texts[index]["image_index"]].add(texts[index]["caption"])
    for mode in ("hard", "random"):
        negatives = result["negatives"][mode]
        assert all(negative != image for image, negative in enumerate(negatives))  # never the own pair
        duplicates = sum(captions[negative] == captions[image] for image, negative in enumerate(negatives))
        assert result[f"{mode}_negative_duplicate_rate"] == pytest.approx(100.0 * duplicates / len(negatives))
        # the 2N decisions: every positive right; a negative wrong only when its text is one of the image's captions
        describes = sum(captions[negative] in own_texts[image] for image, negative in enumerate(negatives))
        assert describes >= duplicates
        assert result[f"acc_{mode}_negatives"] == pytest.approx(100.0 - 50.0 * describes / len(negatives))
    for image, index in enumerate(result["positives"]):
        assert texts[index]["image_index"] == image  # one of the image's own captions
    again = evaluate_itm(model, images, texts, batch_size=8, seed=5, device=CPU)
    assert again["positives"] == result["positives"] and again["negatives"] == result["negatives"]


def test_hard_itm_negatives_follow_the_itc_similarities_with_temperature(tiny_world: Path):
    images, texts = _captions(tiny_world, "train")
    model = _seeded(ConstantITM, _itm_config(tiny_world))
    with torch.no_grad():
        model.logit_scale.fill_(25.0)  # exp(25): the softmax is an arg-max over the other images' captions
    result = evaluate_itm(model, images, texts, batch_size=4, seed=0, device=CPU)
    pixels = torch.stack([images[row]["image"] for row in range(len(images))])
    chosen = [texts[index] for index in result["positives"]]
    with torch.no_grad():
        similarity = (
            model.encode_image(pixels)
            @ model.encode_text(
                torch.stack([item["text_ids"] for item in chosen]), torch.stack([item["text_masks"] for item in chosen])
            ).t()
        )
    similarity.fill_diagonal_(float("-inf"))
    drawn = similarity.gather(1, torch.tensor(result["negatives"]["hard"]).unsqueeze(1)).squeeze(1)
    assert torch.allclose(drawn, similarity.max(dim=1).values, atol=1e-6)  # the most similar other caption


# -------------------------------------------------------------------------------------------- re-rank
def _retrieval_model(world: Path) -> VLMo:
    torch.manual_seed(0)
    return VLMo(
        get_config("vlmo_tiny", loss_names=("irtr", "itm"), vocab_size=_vocab_size(world), drop_path_rate=0.0)
    ).eval()


def test_rerank_with_a_constant_itm_keeps_the_dual_encoder_recall(tiny_world: Path):
    images, texts = _captions(tiny_world, "train")
    result = evaluate_retrieval(
        _retrieval_model(tiny_world),
        _loader(images),
        _loader(texts),
        rerank_k=3,
        device=CPU,
        itm_model=_seeded(ConstantITM, _itm_config(tiny_world)),
    )
    assert set(result["rerank"]) == set(RECALL_KEYS)
    assert result["rerank"] == {key: result[key] for key in RECALL_KEYS}  # the same ranking, shifted
    assert set(result["timing"]) == {"dual_encoder_s", "rerank_s"}


def test_rerank_adds_the_itm_match_logit_to_every_query_top_k(tiny_world: Path):
    model = _retrieval_model(tiny_world)
    images, texts = _captions(tiny_world, "train")
    pixels = torch.stack([images[row]["image"] for row in range(len(images))])
    ids = torch.stack([texts[index]["text_ids"] for index in range(len(texts))])
    masks = torch.stack([texts[index]["text_masks"] for index in range(len(texts))])
    with torch.no_grad():
        scores = model.encode_image(pixels) @ model.encode_text(ids, masks).t()
    k = 3
    i2t, t2i = rerank_scores(model, scores, images, texts, k, CPU, batch_size=4)
    i2t_big, t2i_big = rerank_scores(model, scores, images, texts, k, CPU, batch_size=1000)
    assert torch.allclose(i2t, i2t_big, atol=1e-5) and torch.allclose(t2i, t2i_big, atol=1e-5)
    with torch.no_grad():
        for image in (0, len(images) - 1):  # image -> text: one direct ITM call per pair, as the official loop
            top = scores[image].topk(k).indices
            logits = model.itm_logits(ids[top], masks[top], pixels[image].expand(k, -1, -1, -1))[:, 1]
            assert torch.allclose(i2t[image, top], scores[image, top] + logits, atol=1e-4)
            rest = torch.ones(len(texts), dtype=torch.bool)
            rest[top] = False
            assert torch.allclose(i2t[image, rest], scores[image, rest] + RERANK_OUTSIDE_TOP_K)
        for text in (0, len(texts) - 1):  # text -> image
            top = scores[:, text].topk(k).indices
            logits = model.itm_logits(ids[text].expand(k, -1), masks[text].expand(k, -1), pixels[top])[:, 1]
            assert torch.allclose(t2i[text, top], scores[top, text] + logits, atol=1e-4)


def test_rerank_with_an_oracle_itm_ranks_a_true_match_first(tiny_world: Path):
    images, texts = _captions(tiny_world, "train")
    oracle = _seeded(OracleITM, _itm_config(tiny_world))
    oracle.true_pairs = _true_pairs(images, texts)
    model = _retrieval_model(tiny_world)
    result = evaluate_retrieval(
        model, _loader(images), _loader(texts), rerank_k=len(texts), device=CPU, itm_model=oracle
    )
    assert result["rerank"]["ir_r1"] == 100.0 and result["ir_r1"] < 100.0  # the untrained dual encoder alone misses
    pixels = torch.stack([images[row]["image"] for row in range(len(images))])
    ids = torch.stack([texts[index]["text_ids"] for index in range(len(texts))])
    masks = torch.stack([texts[index]["text_masks"] for index in range(len(texts))])
    with torch.no_grad():
        scores = model.encode_image(pixels) @ model.encode_text(ids, masks).t()
    i2t, _ = rerank_scores(oracle, scores, images, texts, len(texts), CPU, batch_size=64)
    caption = [texts[index]["caption"] for index in range(len(texts))]
    owner = [texts[index]["image_index"] for index in range(len(texts))]
    for image, best in enumerate(i2t.argmax(dim=1).tolist()):  # its own caption (or the same words) comes first
        assert caption[best] in {caption[index] for index in range(len(texts)) if owner[index] == image}
