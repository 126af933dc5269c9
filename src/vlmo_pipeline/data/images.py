"""Validate (and optionally re-encode) encoded image bytes before they go into an Arrow shard.

Checks, in order, each mapped to one reject reason:

* empty input → ``zero_byte``
* header not readable as an image → ``corrupt_image``
* ``width * height`` (read from the header, before any pixel is decoded) above ``max_pixels``, or PIL's own
  ``DecompressionBombError``/``DecompressionBombWarning`` → ``decompression_bomb``
* ``Image.verify()`` then a full ``load()`` (verify alone misses broken JPEG entropy data) failing with a
  "truncated" error → ``truncated_image``, with any other error → ``corrupt_image``

When ``max_side`` is set, images whose longer side exceeds it are downscaled (aspect ratio kept, Lanczos) and
re-encoded as RGB JPEG at ``jpeg_quality``; images already small enough keep their original bytes, so no
generation loss is added where it buys nothing.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile

from vlmo_pipeline.data.raw.records import (
    CORRUPT_IMAGE,
    DECOMPRESSION_BOMB,
    MISSING_FILE,
    TRUNCATED_IMAGE,
    ZERO_BYTE,
    ImageSource,
)

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

    The returned bytes are ``data`` itself unless ``options.max_side`` asks for a downscale.
    """
    if len(data) == 0:
        raise ImageRejected(ZERO_BYTE)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone in this process allowed truncated images; that would hide exactly what we check for.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; image validation needs it False")

    image = _open_checked(data, options.max_pixels)
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

    if options.max_side is None or max(image.size) <= options.max_side:
        return data
    return _reencode(image, options.max_side, options.jpeg_quality)


def _reencode(image: Image.Image, max_side: int, jpeg_quality: int) -> bytes:
    """Downscale so the longer side is ``max_side`` and encode as RGB JPEG."""
    if image.mode != "RGB":
        # Flatten transparency onto white rather than letting convert() turn it black.
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            image = background
        else:
            image = image.convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=jpeg_quality)
    return buffer.getvalue()


def read_image_source(source: ImageSource) -> bytes:
    """Read the encoded bytes an :class:`ImageSource` points at; a missing file raises ``missing_file``."""
    try:
        with open(source.path, "rb") as handle:
            if source.offset is None:
                return handle.read()
            handle.seek(source.offset)
            data = handle.read(source.length if source.length is not None else -1)
    except FileNotFoundError:
        raise ImageRejected(MISSING_FILE, f"no such file: {source.path}") from None
    except IsADirectoryError:
        raise ImageRejected(MISSING_FILE, f"is a directory, not an image file: {source.path}") from None
    if source.length is not None and len(data) != source.length:
        raise ImageRejected(TRUNCATED_IMAGE, f"expected {source.length} bytes, file ends after {len(data)}")
    return data


def load_image(source: ImageSource, options: ImageOptions = ImageOptions()) -> bytes:
    """Read and validate one image; raises :class:`ImageRejected`."""
    return validate_image_bytes(read_image_source(source), options)
