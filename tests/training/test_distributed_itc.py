"""Two CPU processes (gloo): the gathered-with-gradient ITC equals the single-process ITC on the global batch.

Each rank holds a slice of one global batch. Checked against one process on the concatenated batch:
* the loss on every rank equals the single-process loss;
* the gradient w.r.t. each rank's features is ``world_size ×`` the single-process gradient of that slice,
  so after DDP's averaging the gradient of a shared projection / temperature equals the single-process one;
* ``RetrievalRecall`` gathers its features from both ranks;
* hard negatives drawn from the gathered logits are global indices, never the own pair, and cross ranks.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from vlmo_pipeline.evaluation.metrics import RetrievalRecall, retrieval_recall
from vlmo_pipeline.training.distributed import all_gather_no_grad, world_info
from vlmo_pipeline.training.objectives import contrastive_loss, itc_loss, sample_hard_negatives

WORLD_SIZE = 2
DIM = 4
SCENARIOS = {"equal": (3, 3), "uneven": (2, 3)}  # per-rank batch sizes


def _global_inputs(n_global: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(n_global)
    return {
        "images": torch.randn(n_global, DIM, generator=generator),
        "texts": torch.randn(n_global, DIM, generator=generator),
        "projection": torch.randn(DIM, DIM, generator=generator),
        "log_scale": torch.tensor(1.5),
    }


def _loss_and_grads(
    images: torch.Tensor, texts: torch.Tensor, projection: torch.Tensor, log_scale: torch.Tensor
) -> dict[str, torch.Tensor]:
    """ITC through a shared projection; returns the loss and gradients of every input."""
    images = images.clone().requires_grad_()
    texts = texts.clone().requires_grad_()
    projection = projection.clone().requires_grad_()
    log_scale = log_scale.clone().requires_grad_()
    loss, logits_per_image, logits_per_text = contrastive_loss(
        F.normalize(images @ projection, dim=1), F.normalize(texts @ projection, dim=1), log_scale
    )
    loss.backward()
    return {
        "loss": loss.detach(),
        "images": images.grad,
        "texts": texts.grad,
        "projection": projection.grad,
        "log_scale": log_scale.grad,
        "logits_per_image": logits_per_image.detach(),
        "logits_per_text": logits_per_text.detach(),
    }


def _recall_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    image_feats = F.normalize(torch.randn(6, DIM, generator=generator), dim=1)
    text_to_image = torch.arange(6).repeat_interleave(2)
    text_feats = F.normalize(image_feats[text_to_image] + torch.randn(12, DIM, generator=generator), dim=1)
    return image_feats, text_feats, text_to_image


def _rank_recall(rank: int) -> dict[str, float]:
    """Each rank sees a strided shard of images and texts; RetrievalRecall syncs them before computing."""
    image_feats, text_feats, text_to_image = _recall_inputs()
    metric = RetrievalRecall()
    images, texts = torch.arange(rank, 6, WORLD_SIZE), torch.arange(rank, 12, WORLD_SIZE)
    metric.update(image_feats=image_feats[images], image_ids=images + 100)
    metric.update(text_feats=text_feats[texts], text_image_ids=text_to_image[texts] + 100)
    return metric.compute()


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)  # forked children: keep OpenMP out of the picture (and 2 cores for 2 ranks)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE, timeout=timedelta(seconds=60)
    )  # a failing rank errors out instead of hanging
    try:
        results: dict[str, object] = {"world": tuple(world_info())}
        for name, sizes in SCENARIOS.items():
            inputs = _global_inputs(sum(sizes))
            start, stop = sum(sizes[:rank]), sum(sizes[: rank + 1])
            outcome = _loss_and_grads(
                inputs["images"][start:stop], inputs["texts"][start:stop], inputs["projection"], inputs["log_scale"]
            )
            features = F.normalize(inputs["images"][start:stop], dim=1)
            itc = itc_loss(features, features, features, features, torch.tensor(0.0), torch.tensor(0.0))
            outcome["local_offset"] = itc["local_offset"]
            outcome["gathered_ids"] = all_gather_no_grad(torch.arange(start, stop))
            generator = torch.Generator().manual_seed(rank)
            draws = [
                sample_hard_negatives(
                    outcome["logits_per_image"][start:stop],
                    outcome["logits_per_text"][start:stop],
                    itc["local_offset"],
                    generator,
                )
                for _ in range(100)
            ]
            outcome["neg_images"] = torch.stack([neg_images for neg_images, _ in draws])
            outcome["neg_texts"] = torch.stack([neg_texts for _, neg_texts in draws])
            results[name] = outcome
        results["recall"] = _rank_recall(rank)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    out_dir = tmp_path_factory.mktemp("itc_ranks")
    # fork starts the ranks in well under a second; spawn would re-import torch in each child (~10 s here).
    start_method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(
        _worker, args=(_free_port(), str(out_dir)), nprocs=WORLD_SIZE, join=True, start_method=start_method
    )
    return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]


def test_world_info_inside_and_outside_the_process_group(rank_results):
    assert [result["world"] for result in rank_results] == [(0, 2), (1, 2)]
    assert tuple(world_info()) == (0, 1) and not world_info().is_distributed


def test_retrieval_recall_metric_gathers_every_rank(rank_results):
    expected = retrieval_recall(*_recall_inputs())
    for result in rank_results:
        assert result["recall"] == pytest.approx(expected)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_two_rank_loss_and_gradients_equal_single_process(rank_results, scenario):
    sizes = SCENARIOS[scenario]
    inputs = _global_inputs(sum(sizes))
    single = _loss_and_grads(**inputs)
    for rank, result in enumerate(rank_results):
        outcome = result[scenario]
        torch.testing.assert_close(outcome["loss"], single["loss"])
        torch.testing.assert_close(outcome["logits_per_image"], single["logits_per_image"])
        assert outcome["local_offset"] == sum(sizes[:rank])
        assert outcome["gathered_ids"].tolist() == list(range(sum(sizes)))
    # Features: rank r holds world_size × the single-process gradient of its slice.
    for key in ("images", "texts"):
        stacked = torch.cat([result[scenario][key] for result in rank_results])
        torch.testing.assert_close(stacked / WORLD_SIZE, single[key])
    # Shared parameters: DDP averages over ranks → exactly the single-process gradient.
    for key in ("projection", "log_scale"):
        averaged = sum(result[scenario][key] for result in rank_results) / WORLD_SIZE
        torch.testing.assert_close(averaged, single[key])


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_hard_negatives_across_ranks_are_global_and_never_the_own_pair(rank_results, scenario):
    sizes = SCENARIOS[scenario]
    n_global = sum(sizes)
    for rank, result in enumerate(rank_results):
        start, stop = sum(sizes[:rank]), sum(sizes[: rank + 1])
        own = torch.arange(start, stop)
        for key in ("neg_images", "neg_texts"):
            drawn = result[scenario][key]  # (draws, local batch)
            assert drawn.shape == (100, stop - start)
            assert int(drawn.min()) >= 0 and int(drawn.max()) < n_global
            assert not bool((drawn == own).any())
            outside_rank = (drawn < start) | (drawn >= stop)
            assert bool(outside_rank.any()), "negatives should also come from the other rank"
