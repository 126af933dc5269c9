"""VLMo (Mixture-of-Modality-Experts) in pure PyTorch, key-compatible with the official checkpoints.

Importing this package needs torch only (safetensors for saving/loading; tokenizer and transforms
import their own dependencies lazily).
"""

from .checkpoint import (
    CheckpointMismatchError,
    LoadReport,
    adapt_state_dict,
    export_official_state_dict,
    infer_config,
    load_beit_checkpoint,
    load_into_model,
    load_official_checkpoint,
    read_state_dict,
)
from .config import KNOWN_TASKS, VLMoConfig, get_config, list_configs, register_config
from .factory import create_model, create_model_and_transforms
from .layers import Attention, DropPath, Mlp, MoMEBlock, PatchEmbed
from .pretrained import Pretrained, load_pretrained
from .relpos import (
    RelPosLayout,
    fused_relative_position_index,
    image_relative_position_index,
    resize_relative_position_table,
    text_relative_position_index,
)
from .vlmo import FusionOutput, UnimodalOutput, VLMo

__all__ = [
    "Attention",
    "CheckpointMismatchError",
    "DropPath",
    "FusionOutput",
    "KNOWN_TASKS",
    "LoadReport",
    "Mlp",
    "MoMEBlock",
    "PatchEmbed",
    "Pretrained",
    "RelPosLayout",
    "UnimodalOutput",
    "VLMo",
    "VLMoConfig",
    "adapt_state_dict",
    "create_model",
    "create_model_and_transforms",
    "export_official_state_dict",
    "fused_relative_position_index",
    "get_config",
    "image_relative_position_index",
    "infer_config",
    "list_configs",
    "load_beit_checkpoint",
    "load_into_model",
    "load_official_checkpoint",
    "load_pretrained",
    "read_state_dict",
    "register_config",
    "resize_relative_position_table",
    "text_relative_position_index",
]
