"""Distributed strategies by parameter: ``trainer.strategy: ddp`` (default) or ``fsdp``.

``ddp``
    every rank holds the whole model, its gradients and optimiser state; gradients are averaged (Lightning's DDP,
    ``find_unused_parameters=True`` because fine-tuning leaves parts of the model unused). One device: no strategy.
``fsdp``
    fully sharded data parallel with PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``), full shard over all
    ranks (two or more; one device is refused by the config). Parameters, gradients and optimiser state are split
    across the ranks. Each MoME block (:class:`~vlmo_pipeline.models.MoMEBlock`) is one FSDP unit, gathered only
    while it computes (and again in backward); the rest of the model (embeddings, rel-pos table, heads) is the root
    unit, except the 0-d ITC temperatures, which FSDP cannot shard: they stay whole on every rank and their
    gradients are averaged here. For models whose DDP copy (weights + gradients + AdamW state, 16 bytes per
    parameter in fp32) does not fit one device: VLMo-Large and beyond. Mixed precision follows
    ``trainer.precision``: ``bf16-mixed`` gathers and computes in bf16 and reduces gradients in fp32 over fp32
    sharded weights; ``32-true`` and ``bf16-true`` as in DDP; fp16 is refused (it would need a sharded gradient
    scaler). ``trainer.activation_checkpointing`` recomputes each block in backward, as in DDP.

    ``last.ckpt`` holds the full model and optimiser state, written by rank 0 (not a folder of shards), so it is
    resumed as a DDP checkpoint is (same fingerprint) and stays one file to hard-link; a DDP ``last.ckpt`` resumes
    under FSDP too (:meth:`VLMoFSDPStrategy.load_checkpoint`). At the end all ranks gather the full state dict and
    rank 0 exports it as the usual ``save_pretrained`` directory (:func:`full_state_dict`, :func:`exported_model`).

Why FSDP2 through Lightning's :class:`~lightning.pytorch.strategies.ModelParallelStrategy` and not Lightning's
``FSDPStrategy`` (FSDP1): Lightning refuses the latter unless the accelerator is CUDA, and FSDP1 itself stops on CPU
ranks ("FSDP needs a non-CPU accelerator device") when no device id is given, which Lightning does not give on CPU;
FSDP2 runs on CPU ranks with gloo (so the same code path is tested without a GPU) and is what PyTorch recommends for
GPUs. :class:`VLMoFSDPStrategy` applies the sharding itself (the LightningModules keep no ``configure_model``) and
runs ``training_step`` through the root module's ``__call__``, so that FSDP's hooks gather the root parameters:
the modules call model methods (``infer_image``, ``fuse``, ...), not ``forward``.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.optimizer import _optimizers_to_device
from lightning.pytorch.strategies import ModelParallelStrategy, Strategy
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from vlmo_pipeline.models import MoMEBlock, VLMo
from vlmo_pipeline.training.config import STRATEGIES, RunConfig

__all__ = ["STRATEGIES", "FSDP_PRECISIONS", "VLMoFSDPStrategy", "build_strategy", "full_state_dict", "exported_model"]

#: ``trainer.precision`` values ``fsdp`` accepts (after Lightning's aliases: ``32`` → ``32-true``, ...).
FSDP_PRECISIONS: tuple[str, ...] = ("32-true", "bf16-mixed", "bf16-true")
_ALIASES = {"32": "32-true", "bf16": "bf16-mixed"}


def _unified_precision(precision: str | int) -> str:
    return _ALIASES.get(str(precision), str(precision))


def _average_gradient(param: torch.Tensor, group: Any) -> None:
    torch.distributed.all_reduce(param.grad, op=torch.distributed.ReduceOp.SUM, group=group)
    param.grad.div_(torch.distributed.get_world_size(group))


def _state_by_name(state: dict[str, Any]) -> dict[str, Any] | None:
    """An optimiser state saved keyed by parameter index (as Lightning writes it, DDP and FSDP alike) keyed by
    parameter name instead, through the names the parameter groups carry (``param_names``, :mod:`.optim`).

    The indices mean different things: a DDP checkpoint numbers the parameters in parameter-group order, an FSDP
    one in ``model.parameters()`` order; each group's ``params`` and ``param_names`` lists hold them side by side,
    so both are mapped correctly (Lightning's own re-keying assumes model order and mismaps a DDP checkpoint).
    ``None`` when the groups carry no names."""
    groups = state.get("param_groups", [])
    if not all("param_names" in group for group in groups):
        return None
    names: dict[Any, str] = {}
    for group in groups:
        names.update(zip(group["params"], group["param_names"], strict=True))
    return {
        "state": {names.get(key, key): value for key, value in state["state"].items()},
        "param_groups": [{**group, "params": [names[key] for key in group["params"]]} for group in groups],
    }


class VLMoFSDPStrategy(ModelParallelStrategy):
    """FSDP2 over all ranks (data parallel = world size, no tensor parallelism), one unit per MoME block plus the
    root; full-state ``last.ckpt`` (see module docstring)."""

    def __init__(self, world_size: int, block_type: type[nn.Module] = MoMEBlock, **kwargs: Any) -> None:
        super().__init__(
            data_parallel_size=world_size, tensor_parallel_size=1, save_distributed_checkpoint=False, **kwargs
        )
        self._block_type = block_type

    def _mixed_precision_policy(self) -> Any:
        from torch.distributed.fsdp import MixedPrecisionPolicy

        if getattr(self.precision_plugin, "precision", None) == "bf16-mixed":
            return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        return MixedPrecisionPolicy()  # 32-true; bf16-true: the module itself is bf16

    def _shard(self, module: nn.Module) -> None:
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        policy = self._mixed_precision_policy()
        blocks = [sub for sub in module.modules() if isinstance(sub, self._block_type)]
        if not blocks:
            raise TypeError(f"fsdp: {type(module).__name__} has no {self._block_type.__name__} to shard")
        for block in blocks:
            fully_shard(block, mesh=mesh, mp_policy=policy)
        # FSDP cannot shard 0-d parameters (the ITC temperatures logit_scale / logit_vl_scale): they stay whole on
        # every rank, outside FSDP, and their gradients are averaged over the ranks here, as DDP would.
        scalars = {param for param in module.parameters() if param.ndim == 0}
        group = mesh.get_group()
        for param in scalars:
            if param.requires_grad:
                param.register_post_accumulate_grad_hook(partial(_average_gradient, group=group))
        fully_shard(module, mesh=mesh, mp_policy=policy, ignored_params=scalars)

    def setup(self, trainer: L.Trainer) -> None:
        # ModelParallelStrategy.setup, with the sharding applied here instead of in LightningModule.configure_model.
        assert self.model is not None and self.accelerator is not None
        self.accelerator.setup(trainer)
        self.model = self.precision_plugin.convert_module(self.model)
        self.model_to_device()
        self._shard(self.model)
        self.barrier()
        if trainer.state.fn == TrainerFn.FITTING:
            self.setup_optimizers(trainer)
        self.setup_precision_plugin()
        if trainer.state.fn == TrainerFn.FITTING:
            _optimizers_to_device(self.optimizers, self.root_device)

    def load_checkpoint(self, checkpoint_path: str | os.PathLike, weights_only: bool | None = None) -> dict[str, Any]:
        """A full-state ``last.ckpt`` into the sharded model and optimisers (rank 0's copy broadcast to the ranks).

        As ModelParallelStrategy's, except that a trainable parameter without optimiser state is accepted: AdamW
        keeps none for a parameter that never had a gradient (e.g. the absolute text positions of a model with
        relative position bias), and DDP resumes such a checkpoint as it is; the model weights load strictly."""
        from lightning.fabric.strategies.model_parallel import _rekey_optimizer_state_if_needed
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        assert self.model is not None and self.lightning_module is not None
        path = Path(self.broadcast(checkpoint_path))
        if not path.is_file():
            raise ValueError(f"fsdp: {path} is not a full-state checkpoint file")
        checkpoint = torch.load(path, mmap=True, map_location="cpu", weights_only=weights_only)
        strict = self.lightning_module.strict_loading
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=strict)
        set_model_state_dict(self.model, checkpoint.pop("state_dict"), options=options)
        if self.lightning_module.trainer.state.fn == TrainerFn.FITTING:
            states = checkpoint.get("optimizer_states", [])
            if len(states) != len(self.optimizers):
                raise RuntimeError(f"fsdp: {path} holds {len(states)} optimiser states for {len(self.optimizers)}")
            options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
            for optimizer, state in zip(self.optimizers, states, strict=True):
                state = _state_by_name(state) or _rekey_optimizer_state_if_needed(state, self.model)
                set_optimizer_state_dict(self.model, optimizer, optim_state_dict=state, options=options)
        return checkpoint

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        # Through the root module's __call__ (Lightning's forward redirection): FSDP's pre-forward hook gathers the
        # root unit's parameters, and registers the backward hooks, before training_step runs.
        assert self.lightning_module is not None and self.model is not None
        with self.precision_plugin.train_step_context():
            return self._forward_redirection(self.model, self.lightning_module, "training_step", *args, **kwargs)


def build_strategy(config: RunConfig, precision: str | int = "32-true") -> str | Strategy:
    """The Lightning ``strategy`` argument for ``config.trainer.strategy`` (``precision``: the resolved one)."""
    settings = config.trainer
    world_size = settings.devices * settings.num_nodes
    if settings.strategy == "fsdp":
        if _unified_precision(precision) not in FSDP_PRECISIONS:
            raise ValueError(
                f"{config.name}: trainer.strategy 'fsdp' supports trainer.precision {list(FSDP_PRECISIONS)} (or "
                f"'auto'); got {precision!r} (fp16 would need a sharded gradient scaler: use bf16-mixed)"
            )
        return VLMoFSDPStrategy(world_size)
    if world_size > 1:
        # Fine-tuning leaves parts of the model unused (VL-FFN in retrieval, pooler in stage 2, ...).
        return "ddp_find_unused_parameters_true"
    return "auto"


def full_state_dict(trainer: L.Trainer, module: nn.Module) -> dict[str, torch.Tensor]:
    """The LightningModule's full state dict: its own under DDP; under FSDP gathered from all ranks (every rank
    must call this) into rank 0's CPU memory, and an empty dict on the other ranks."""
    if not isinstance(trainer.strategy, VLMoFSDPStrategy):
        return module.state_dict()
    state = trainer.strategy.lightning_module_state_dict()  # full state dict, rank 0 only, offloaded to the CPU
    return state if trainer.is_global_zero else {}


def exported_model(model: VLMo, state: dict[str, torch.Tensor], prefix: str = "model.") -> VLMo:
    """After FSDP, the model to export: a plain copy of ``model`` (whose parameters are its shards) built from the
    gathered full ``state`` (the LightningModule's keys: ``prefix`` + the VLMo key). Rank 0, after
    :func:`full_state_dict`."""
    plain = VLMo(model.config)
    weights = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    plain.load_state_dict(weights, strict=True, assign=True)  # the gathered tensors, dtypes as trained
    return plain.train(model.training)
