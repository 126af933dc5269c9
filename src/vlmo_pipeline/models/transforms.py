"""Image decoding and the VLMo train/eval transforms (spec §7), on torchvision.transforms.v2.

* eval (``square_transform``): ``Resize((size, size), bicubic)`` — no crop, aspect ratio not kept — then a float
  tensor normalised with mean = std = 0.5 (range [-1, 1], *not* ImageNet statistics).
* train (``square_transform_randaug``): ``RandomResizedCrop(size, scale=(0.5, 1), bicubic)`` →
  ``RandomHorizontalFlip`` → RandAugment → the same normalisation.

The official RandAugment is ALBEF's ``RandomAugment(N=2, M=7)``: two ops drawn with replacement from
{Identity, AutoContrast, Equalize, Brightness, Sharpness, ShearX, ShearY, TranslateX, TranslateY, Rotate}, each
applied with probability 0.5, at magnitude 7 of 10 — enhance factor 1.36, shear ±0.21, translate ±7 px,
rotate ±21°, fill grey 128. :class:`AlbefRandAugment` is torchvision's ``v2.RandAugment`` restricted to that op
set with that magnitude table, so the augmentation matches the spec rather than torchvision's wider defaults
(which would add Color/Contrast/Posterize/Solarize and translate by up to 45 % of the image). Randomness comes
from torch's global RNG, so ``torch.manual_seed`` makes a transform reproducible (DataLoader seeds it per worker).
"""

from __future__ import annotations

import io
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2

#: Inception-style normalisation used by VLMo/BEiT: maps [0, 1] to [-1, 1].
NORMALIZE_MEAN = (0.5, 0.5, 0.5)
NORMALIZE_STD = (0.5, 0.5, 0.5)


def decode_image(data: bytes) -> Image.Image:
    """Decode encoded image bytes (JPEG/PNG/...) into a fully loaded RGB PIL image.

    Raises ``ValueError`` with PIL's reason when the bytes are empty, truncated or not an image (callers add the
    shard/row context). Decompression bombs are refused by PIL's own ``MAX_IMAGE_PIXELS`` guard.
    """
    if not data:
        raise ValueError("image bytes are empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # force the full decode now, so truncation is detected here and not in a transform
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot decode image ({len(data)} bytes): {type(error).__name__}: {error}") from error


def _enhance_magnitudes(num_bins: int, height: int, width: int) -> torch.Tensor:
    # ALBEF enhance factor = M/10 * 1.8 + 0.1, torchvision applies factor = 1 + magnitude: so the magnitude runs
    # from -0.9 (M=0) to +0.9 (M=10), unsigned (ALBEF never flips the sign of an enhancement).
    return torch.linspace(-0.9, 0.9, num_bins)


class AlbefRandAugment(v2.RandAugment):
    """ALBEF's ``RandomAugment(N, M)`` expressed as a torchvision ``v2.RandAugment`` (spec §7).

    Args:
        num_ops: ops drawn (with replacement) per image; 2 in VLMo.
        magnitude: level on ALBEF's 0-10 scale; 7 in VLMo.
        apply_probability: chance that each drawn op is applied; 0.5 in ALBEF (torchvision's plain RandAugment
            always applies, i.e. 1.0).
        fill: value for pixels uncovered by shear/translate/rotate (128 = ALBEF's grey).
    """

    _AUGMENTATION_SPACE = {
        "Identity": (lambda num_bins, height, width: None, False),
        "AutoContrast": (lambda num_bins, height, width: None, False),
        "Equalize": (lambda num_bins, height, width: None, False),
        "Brightness": (_enhance_magnitudes, False),
        "Sharpness": (_enhance_magnitudes, False),
        # shear 0.3 * M/10, translate 10 px * M/10 (ALBEF's translate_const=10), rotate 30° * M/10
        "ShearX": (lambda num_bins, height, width: torch.linspace(0.0, 0.3, num_bins), True),
        "ShearY": (lambda num_bins, height, width: torch.linspace(0.0, 0.3, num_bins), True),
        "TranslateX": (lambda num_bins, height, width: torch.linspace(0.0, 10.0, num_bins), True),
        "TranslateY": (lambda num_bins, height, width: torch.linspace(0.0, 10.0, num_bins), True),
        "Rotate": (lambda num_bins, height, width: torch.linspace(0.0, 30.0, num_bins), True),
    }

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 7,
        apply_probability: float = 0.5,
        fill: int = 128,
        interpolation: v2.InterpolationMode = v2.InterpolationMode.BICUBIC,
    ) -> None:
        if not 0 <= magnitude <= 10:
            raise ValueError(f"magnitude is on ALBEF's 0-10 scale, got {magnitude}")
        if not 0.0 <= apply_probability <= 1.0:
            raise ValueError(f"apply_probability must be in [0, 1], got {apply_probability}")
        super().__init__(
            num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=11, interpolation=interpolation, fill=fill
        )
        self.apply_probability = apply_probability

    def forward(self, *inputs: Any) -> Any:
        # Same control flow as v2.RandAugment.forward plus ALBEF's per-op coin flip.
        flat_inputs_with_spec, image = self._flatten_and_extract_image_or_video(inputs)
        height, width = v2.functional.get_size(image)
        for _ in range(self.num_ops):
            op_name, (magnitudes_fn, signed) = self._get_random_item(self._AUGMENTATION_SPACE)
            if float(torch.rand(())) >= self.apply_probability:
                continue
            magnitudes = magnitudes_fn(self.num_magnitude_bins, height, width)
            magnitude = 0.0
            if magnitudes is not None:
                magnitude = float(magnitudes[self.magnitude])
                if signed and float(torch.rand(())) <= 0.5:
                    magnitude = -magnitude
            image = self._apply_image_or_video_transform(
                image, op_name, magnitude, interpolation=self.interpolation, fill=self._fill
            )
        return self._unflatten_and_insert_image_or_video(flat_inputs_with_spec, image)


def _to_normalized_tensor() -> list[v2.Transform]:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(NORMALIZE_MEAN), std=list(NORMALIZE_STD)),
    ]


def build_train_transform(
    image_size: int,
    randaug: bool = True,
    hflip: bool = True,
    randaug_num_ops: int = 2,
    randaug_magnitude: int = 7,
) -> v2.Compose:
    """Training transform ``square_transform_randaug`` (spec §7): PIL image → float tensor (3, S, S) in [-1, 1].

    ``hflip=False`` removes the horizontal flip. The official code flips for every task without swapping "left"
    and "right" in the text; that is noise for real photos but wrong labels for data whose text talks about
    left/right positions (the demo world's captions, VQA questions and NLVR2 statements do), so the demo turns it
    off. Keep it on (the default) to follow the official recipe.
    """
    steps: list[Any] = [
        v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if randaug:
        steps.append(AlbefRandAugment(num_ops=randaug_num_ops, magnitude=randaug_magnitude, fill=128))
    steps.extend(_to_normalized_tensor())
    return v2.Compose(steps)


def build_eval_transform(image_size: int) -> v2.Compose:
    """Evaluation transform ``square_transform`` (spec §7): bicubic resize to (S, S), no crop → [-1, 1] tensor."""
    return v2.Compose(
        [
            v2.Resize((image_size, image_size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            *_to_normalized_tensor(),
        ]
    )
