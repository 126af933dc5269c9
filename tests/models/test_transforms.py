"""Train/eval transforms (spec §7) and image decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from vlmo_pipeline.models.transforms import (
    AlbefRandAugment,
    build_eval_transform,
    build_train_transform,
    decode_image,
)


def _image(width: int = 70, height: int = 50, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def _encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("randaug", [True, False])
def test_train_transform_shape_and_range(randaug):
    transform = build_train_transform(32, randaug=randaug)
    image = _image()
    for _ in range(20):
        tensor = transform(image)
        assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
        assert tensor.min() >= -1.0 and tensor.max() <= 1.0


def test_train_transform_is_random_but_seedable():
    transform = build_train_transform(32)
    image = _image()
    torch.manual_seed(123)
    first = transform(image)
    torch.manual_seed(123)
    again = transform(image)
    assert torch.equal(first, again)
    others = [transform(image) for _ in range(5)]
    assert any(not torch.equal(first, other) for other in others)


def test_hflip_flag():
    # every crop (area >= 50 %) keeps the leftmost 4 output columns inside the dark left half
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:, 16:] = 255
    image = Image.fromarray(pixels)
    no_flip = build_train_transform(32, randaug=False, hflip=False)
    with_flip = build_train_transform(32, randaug=False, hflip=True)
    torch.manual_seed(0)
    left_means = [float(no_flip(image)[:, :, :4].mean()) for _ in range(30)]
    assert max(left_means) < 0.0  # left side always stays dark
    left_means = [float(with_flip(image)[:, :, :4].mean()) for _ in range(30)]
    assert max(left_means) > 0.0 and min(left_means) < 0.0  # sometimes flipped


def test_eval_transform_is_exact_bicubic_resize():
    image = _image(70, 50)
    tensor = build_eval_transform(24)(image)
    reference = np.asarray(image.resize((24, 24), Image.BICUBIC), dtype=np.float32) / 255.0 * 2.0 - 1.0
    assert tensor.shape == (3, 24, 24)
    assert torch.allclose(tensor, torch.from_numpy(reference.copy()).permute(2, 0, 1), atol=1e-6)
    assert torch.equal(tensor, build_eval_transform(24)(image))  # deterministic


def test_randaugment_ops_and_magnitudes():
    augment = AlbefRandAugment()
    assert set(augment._AUGMENTATION_SPACE) == {
        "Identity",
        "AutoContrast",
        "Equalize",
        "Brightness",
        "Sharpness",
        "ShearX",
        "ShearY",
        "TranslateX",
        "TranslateY",
        "Rotate",
    }
    levels = {name: fn(11, 224, 224) for name, (fn, _) in augment._AUGMENTATION_SPACE.items()}
    assert levels["ShearX"][7].item() == pytest.approx(0.21)
    assert levels["TranslateX"][7].item() == pytest.approx(7.0)
    assert levels["Rotate"][7].item() == pytest.approx(21.0)
    assert 1.0 + levels["Brightness"][7].item() == pytest.approx(1.36)  # ALBEF enhance factor at M=7
    # applies to PIL images and keeps their size/mode; with p=0 it is the identity
    image = _image()
    out = AlbefRandAugment(apply_probability=1.0)(image)
    assert out.size == image.size and out.mode == "RGB"
    assert np.array_equal(np.asarray(AlbefRandAugment(apply_probability=0.0)(image)), np.asarray(image))
    with pytest.raises(ValueError, match="0-10"):
        AlbefRandAugment(magnitude=11)


def test_decode_image_rgb_and_errors():
    gray = Image.new("L", (9, 7), color=40)
    decoded = decode_image(_encoded(gray, "JPEG"))
    assert decoded.mode == "RGB" and decoded.size == (9, 7)
    with pytest.raises(ValueError, match="empty"):
        decode_image(b"")
    with pytest.raises(ValueError, match="cannot decode"):
        decode_image(b"definitely not an image")
    truncated = _encoded(_image(64, 64), "JPEG")[:200]
    with pytest.raises(ValueError, match="cannot decode"):
        decode_image(truncated)
