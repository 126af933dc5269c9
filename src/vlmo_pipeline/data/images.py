"""Validate (and optionally re-encode) encoded image bytes before they go into an Arrow shard.

Checks, in order, each mapped to one reject reason:

* empty input → ``zero_byte``
* header not readable as an image → ``corrupt_image``
* ``width * height`` (read from the header, before any pixel is decoded) above ``max_pixels``, or PIL's own
  ``DecompressionBombError``/``DecompressionBombWarning`` → ``decompression_bomb``
* ``Image.verify()`` then a full ``load()`` (verify alone misses broken JPEG entropy data) failing with a
  "truncated" error → ``truncated_image``, with any other error → ``corrupt_image``. JPEG (whose ``verify()`` is a
  no-op in Pillow) is opened once and, when its original bytes are what gets stored, decoded in draft mode: libjpeg
  still decodes every entropy-coded segment (where truncation and broken data show) but runs the inverse DCT at
  1/8 scale; a JPEG to be re-encoded or normalised is decoded at full size. tests/data/test_image_validation.py
  checks that draft and full decoding give the same verdict and message on truncated, cut, garbage and corrupted
  files.

Images whose plain ``Image.open(...).convert("RGB")`` (what the official ViLT/VLMo loaders, and our
``decode_image``, do at training time) would give wrong pixels are *normalised* once here and stored as a
lossless RGB PNG (see :func:`needs_normalization` and docs/data_layout.md): 16-bit and 32-bit grey (``I;16*``,
``I``, ``F``: ``convert`` clips them to almost-white; we scale to 8 bits), images with an alpha channel or a
palette transparency (``LA``, ``PA``, ``RGBA``, ``P`` + transparency: ``convert`` shows whatever colour hides
under transparent pixels; we flatten onto white), ``CMYK`` (converted to RGB here, so the stored image needs no
CMYK support), and, with ``exif_transpose``, an EXIF orientation other than 1 (rotated/flipped upright).
Everything else keeps its original bytes.

When ``max_side`` is set, images whose longer side exceeds it are downscaled (aspect ratio kept, Lanczos) and
re-encoded as RGB JPEG at ``jpeg_quality`` (after the same mode handling); images already small enough keep their
original bytes, so no generation loss is added where it buys nothing.

Bytes are read with :func:`~vlmo_pipeline.data.raw.safe_io.read_regular_file`: regular files only (a FIFO or
device is never opened → ``not_regular_file``), at most ``max_bytes`` (→ ``too_large``), symlinks confined to the
record's dataset root (→ ``outside_root``, unless ``allow_outside_symlinks``).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps

from vlmo_pipeline.data.raw.records import (
    CORRUPT_IMAGE,
    DECOMPRESSION_BOMB,
    TRUNCATED_IMAGE,
    ZERO_BYTE,
    ImageSource,
)
from vlmo_pipeline.data.raw.safe_io import DEFAULT_MAX_IMAGE_BYTES, FileRejected, read_regular_file

# PIL's own default limit (~89.5 M pixels, a 0.25 GB RGB buffer); the ingest config can change it.
DEFAULT_MAX_PIXELS = 89_478_485


class ImageRejected(Exception):
    """The bytes are not a usable image; ``reason`` is one of the reject reasons."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class ImageOptions:
    """How images are checked and stored (a picklable subset of the ingest config, sent to workers)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int | None = None
    jpeg_quality: int = 90
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    allow_outside_symlinks: bool = False
    exif_transpose: bool = True


def _classify_decode_error(error: Exception) -> str:
    return TRUNCATED_IMAGE if "truncat" in str(error).lower() else CORRUPT_IMAGE


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Open ``data`` (header only) with the pixel limit applied; raise ImageRejected on failure."""
    # PIL checks its module-level limit inside Image.open; align it with ours for the duration of the call so
    # both checks agree (PIL warns above the limit and raises above twice the limit; we turn the warning into
    # an error below). Saved and restored because it is process-global state.
    saved_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected(DECOMPRESSION_BOMB, str(error)) from None
    except Image.UnidentifiedImageError:
        raise ImageRejected(CORRUPT_IMAGE, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(_classify_decode_error(error), str(error)) from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved_limit
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejected(CORRUPT_IMAGE, f"header gives size {width}x{height}")
    if width * height > max_pixels:
        raise ImageRejected(DECOMPRESSION_BOMB, f"{width}x{height} = {width * height} pixels > {max_pixels}")
    return image


def validate_image_bytes(data: bytes, options: ImageOptions = ImageOptions()) -> bytes:
    """Return the bytes to store for one encoded image, or raise :class:`ImageRejected`.

    The returned bytes are ``data`` itself unless ``options.max_side`` asks for a downscale or the image needs
    normalising (:func:`needs_normalization`: then a lossless RGB PNG).
    """
    if len(data) == 0:
        raise ImageRejected(ZERO_BYTE)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone in this process allowed truncated images; that would hide exactly what we check for.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; image validation needs it False")

    image = _open_checked(data, options.max_pixels)
    if image.format == "JPEG":  # exactly JPEG: MPO (multi-picture) keeps the general path
        return _validate_jpeg(image, data, options)
    try:
        image.verify()
    except Exception as error:  # PIL raises a variety of types (OSError, SyntaxError, struct.error, ...)
        raise ImageRejected(_classify_decode_error(error), f"verify failed: {error}") from None

    # verify() leaves the image unusable; reopen and decode every pixel to catch broken entropy-coded data.
    image = _open_checked(data, options.max_pixels)
    try:
        image.load()
    except Exception as error:
        raise ImageRejected(_classify_decode_error(error), f"decoding failed: {error}") from None

    return _stored_bytes(image, data, options)


def _stored_bytes(image: Image.Image, data: bytes, options: ImageOptions) -> bytes:
    """What to store for a fully decoded, valid ``image``: a downscaled JPEG, a normalised PNG or ``data``."""
    try:
        if _needs_downscale(image, options):
            return _reencode(image, options.max_side, options.jpeg_quality, options.exif_transpose)
        if needs_normalization(image, options.exif_transpose):
            return _encode_png(to_rgb(image, options.exif_transpose))
    except (OSError, ValueError) as error:  # e.g. a colour space PIL cannot convert to RGB
        raise ImageRejected(CORRUPT_IMAGE, f"cannot convert mode {image.mode} to RGB: {error}") from None
    return data


def _needs_downscale(image: Image.Image, options: ImageOptions) -> bool:
    return options.max_side is not None and max(image.size) > options.max_side


def _validate_jpeg(image: Image.Image, data: bytes, options: ImageOptions) -> bytes:
    """:func:`validate_image_bytes` for an opened JPEG: one header parse (Pillow's ``verify()`` does nothing for
    JPEG, so the general path's second open buys nothing) and a DCT-scaled decode when the bytes are kept."""
    # Mode, EXIF orientation and size come from the header, so whether the output must be re-encoded is known
    # before any pixel is decoded; the size and pixel limits were checked on the header size in _open_checked.
    keep_original = not _needs_downscale(image, options) and not needs_normalization(image, options.exif_transpose)
    if keep_original:
        # Scale 1/8 (the smallest libjpeg offers): the entropy-coded data is decoded in full, only the inverse
        # DCT and colour conversion work on 1/64 of the pixels. draft() changes image.size, so nothing after
        # this point may look at it.
        image.draft(image.mode, (1, 1))
    try:
        image.load()
    except Exception as error:
        raise ImageRejected(_classify_decode_error(error), f"decoding failed: {error}") from None
    return data if keep_original else _stored_bytes(image, data, options)


# --- pixel modes and orientation ----------------------------------------------------------------------------------

#: Modes whose plain ``convert("RGB")`` is right (or the best there is): their bytes are stored unchanged.
PLAIN_MODES = frozenset({"RGB", "L", "1", "P", "YCbCr", "RGBX"})
#: EXIF tag 0x0112: 1 = upright; 2-8 = flipped and/or rotated.
_ORIENTATION_TAG = 0x0112


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image, 1 when absent or unreadable."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not reject an otherwise good image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "La", "PA", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )


def needs_normalization(image: Image.Image, exif_transpose: bool = True) -> bool:
    """True when a plain ``convert("RGB")`` of ``image`` would give wrong pixels (module docstring)."""
    if has_transparency(image) or image.mode not in PLAIN_MODES:
        return True
    return exif_transpose and exif_orientation(image) != 1


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float grey → 8-bit ``L`` by scaling (``convert`` would clip at 255)."""
    array = np.asarray(image)
    if image.mode == "F":
        finite = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(finite.max()) if finite.size else 0.0
        scaled = finite * 255.0 if peak <= 1.0 else finite / 257.0
    else:
        scaled = np.clip(array.astype(np.int64), 0, 65535) / 257.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))  # uint8 2-D: mode L


def to_rgb(image: Image.Image, exif_transpose: bool = True) -> Image.Image:
    """Decode ``image`` to an 8-bit RGB image: grey of any depth scaled, transparency flattened onto white, CMYK
    and other modes converted, and (with ``exif_transpose``) the EXIF orientation applied."""
    if exif_transpose and exif_orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":
        return _to_8bit_grey(image).convert("RGB")
    if has_transparency(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_rgb(data: bytes, exif_transpose: bool = True) -> Image.Image:
    """Encoded bytes → fully decoded 8-bit RGB image with the rules of :func:`to_rgb` (for readers of shards
    written before normalisation, or of raw files)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return to_rgb(image, exif_transpose)


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _reencode(image: Image.Image, max_side: int, jpeg_quality: int, exif_transpose: bool = True) -> bytes:
    """Downscale so the longer side is ``max_side`` and encode as RGB JPEG."""
    image = to_rgb(image, exif_transpose)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=jpeg_quality)
    return buffer.getvalue()


def read_image_source(
    source: ImageSource, options: ImageOptions = ImageOptions(), roots: dict[str, str] | None = None
) -> bytes:
    """Read the encoded bytes an :class:`ImageSource` points at, safely (module docstring); problems raise
    :class:`ImageRejected` (``missing_file``, ``not_regular_file``, ``too_large``, ``outside_root``,
    ``unreadable_file``, ``truncated_image`` for a short byte range).

    ``roots``: a cache ``root -> os.path.realpath(root)`` that the caller keeps for a batch of sources (one ingest
    task), so a dataset root is resolved once per batch rather than once per image. Kept by the caller and not
    here for the life of a process, so a root relinked between runs on a long-lived worker is seen.
    """
    resolved_root = None
    if roots is not None and source.root is not None and not options.allow_outside_symlinks:
        resolved_root = roots.get(source.root)
        if resolved_root is None:
            resolved_root = roots[source.root] = os.path.realpath(source.root)
    try:
        return read_regular_file(
            source.path,
            limit=options.max_bytes,
            root=source.root,
            allow_outside=options.allow_outside_symlinks,
            offset=source.offset,
            length=source.length,
            resolved_root=resolved_root,
        )
    except FileRejected as rejected:
        raise ImageRejected(rejected.reason, rejected.detail) from None


def load_image(
    source: ImageSource, options: ImageOptions = ImageOptions(), roots: dict[str, str] | None = None
) -> bytes:
    """Read and validate one image (``roots``: see :func:`read_image_source`); raises :class:`ImageRejected`."""
    return validate_image_bytes(read_image_source(source, options, roots), options)
