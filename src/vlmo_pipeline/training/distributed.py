"""Cross-rank helpers for the contrastive objectives (plain ``torch.distributed``, no Lightning).

Why a gather *with* gradient (difference from the official VLMo code, spec §4.1)
-------------------------------------------------------------------------------
The official ``compute_itc`` gathers the features of every rank with ``dist.all_gather``, which carries no
gradient: on each rank only the rows/columns of the N×N logit matrix that come from the *local* features
contribute gradient, and DDP then averages the parameter gradients over ranks.  That gradient is not the
gradient of the single-process loss on the global batch (each rank's loss sees the other ranks' features as
constants; after DDP's averaging the parameter gradient is ``1/W`` of the part that flows through local rows).

Here :func:`all_gather_with_grad` concatenates the features of all ranks (rank order) and its backward
all-reduces (sums) the incoming gradient and hands each rank the slice of its own rows.  Every rank computes
the *same* full global loss ``L`` over the N×N logits, so the gradient arriving at the gathered tensor is
``∂L/∂X_global`` on every rank; the sum over W ranks is ``W·∂L/∂X_global`` and rank ``r`` keeps
``W·∂L/∂x_r``.  DDP divides parameter gradients by W when it averages them, so the parameter update equals
the one of a single process that computes ``L`` on the concatenated batch — exactly.

Consequences worth knowing:
* the gradient w.r.t. the *local features* on one rank is ``world_size ×`` the single-process gradient of
  the local slice (it is DDP's averaging that brings the parameter gradient back to the single-process one);
* every rank must run backward through every gather it did in forward (the backward is a collective);
* all helpers are no-ops (identity) when ``torch.distributed`` is not initialised or the world size is 1.

Ranks may hold different batch sizes (e.g. a short last batch): the first dimension is padded to the
largest one for the collective and the padding is removed afterwards.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist

__all__ = [
    "WorldInfo",
    "world_info",
    "all_gather_with_grad",
    "all_gather_no_grad",
    "gather_batch_sizes",
    "local_row_offset",
]


class WorldInfo(NamedTuple):
    """Rank and world size of the current process (``rank=0, world_size=1`` when not distributed)."""

    rank: int
    world_size: int

    @property
    def is_distributed(self) -> bool:
        """True when there is more than one process to talk to."""
        return self.world_size > 1


def world_info() -> WorldInfo:
    """Return ``(rank, world_size)``; ``(0, 1)`` when ``torch.distributed`` is unavailable or not initialised."""
    if dist.is_available() and dist.is_initialized():
        return WorldInfo(rank=dist.get_rank(), world_size=dist.get_world_size())
    return WorldInfo(rank=0, world_size=1)


def gather_batch_sizes(local_size: int, device: torch.device | str = "cpu") -> list[int]:
    """Sizes of the first dimension on every rank, in rank order (one small collective)."""
    info = world_info()
    if not info.is_distributed:
        return [int(local_size)]
    size_tensor = torch.tensor([local_size], dtype=torch.long, device=device)
    all_sizes = [torch.zeros_like(size_tensor) for _ in range(info.world_size)]
    dist.all_gather(all_sizes, size_tensor)
    # One host sync for the whole gather (not per sample): sizes are needed to build the output shape.
    return [int(size) for size in torch.cat(all_sizes).tolist()]


def local_row_offset(local_size: int, device: torch.device | str = "cpu") -> int:
    """Index of this rank's first row in the tensor produced by the gathers (sum of lower ranks' sizes)."""
    info = world_info()
    if not info.is_distributed:
        return 0
    return sum(gather_batch_sizes(local_size, device)[: info.rank])


def _gather_padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All-gather ``tensor`` (first dims given by ``sizes``) and concatenate in rank order, without grad."""
    max_size = max(sizes)
    local = tensor.contiguous()
    if local.shape[0] < max_size:
        pad_shape = (max_size - local.shape[0], *local.shape[1:])
        local = torch.cat([local, local.new_zeros(pad_shape)], dim=0)
    buffers = [torch.empty_like(local) for _ in sizes]
    dist.all_gather(buffers, local)
    return torch.cat([buffer[:size] for buffer, size in zip(buffers, sizes)], dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's tensor. Backward: sum the gradient over ranks, keep own slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        info = world_info()
        sizes = gather_batch_sizes(tensor.shape[0], tensor.device)
        ctx.row_start = sum(sizes[: info.rank])
        ctx.row_stop = ctx.row_start + sizes[info.rank]
        return _gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        summed = grad_output.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed[ctx.row_start : ctx.row_stop]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` over ranks (rank order) along dim 0; gradient flows back to the local slice.

    The backward sums the gradient over ranks (see the module docstring for why this, together with DDP's
    averaging, reproduces the single-process gradient on the global batch). Identity when not distributed.
    """
    if not world_info().is_distributed:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


@torch.no_grad()
def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` over ranks (rank order) along dim 0, detached (e.g. token ids, raw images).

    Unlike the official code, the local tensor is *not* moved to the front: rows are in rank order so that
    ``local_row_offset`` indexes the local rows in every gathered tensor consistently.
    """
    if not world_info().is_distributed:
        return tensor.detach()
    return _gather_padded(tensor.detach(), gather_batch_sizes(tensor.shape[0], tensor.device))
