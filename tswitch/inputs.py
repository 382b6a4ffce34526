"""Validating what users send: images and text, with one-line errors (no tracebacks).

Images are opened with Pillow under an explicit pixel budget (decompression bombs are refused
before they are decoded) and fully decoded here, so a truncated file fails now rather than inside a
model forward. Text must be non-empty and is capped in length.
"""

from __future__ import annotations

import io
import os
import warnings

MAX_PIXELS = 40_000_000  # ~ 6300 x 6300: any real photo; a bomb expands far beyond
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 20_000  # the encoders truncate to a few hundred tokens anyway


class InputError(ValueError):
    """An input the models cannot take, with a message for the user."""


def load_image(source, max_pixels: int = MAX_PIXELS):
    """A decoded RGB ``PIL.Image`` from a path, bytes, a file object or a PIL image."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        image = source
        if image.width * image.height > max_pixels:
            raise InputError(f"image too large: {image.width}x{image.height} pixels (limit {max_pixels:,})")
        return image.convert("RGB")
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise InputError(f"image not found: {source}")
        if os.path.getsize(source) > MAX_IMAGE_BYTES:
            raise InputError(f"image file too large (over {MAX_IMAGE_BYTES // 2**20} MB)")
        with open(source, "rb") as f:
            source = f.read()
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else source.read()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > max_pixels:
                raise InputError(f"image too large: {image.width}x{image.height} pixels (limit {max_pixels:,})")
            image.load()
    except InputError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InputError("image refused: it decompresses to too many pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"not a readable image ({type(exc).__name__})") from None
    return image.convert("RGB")


def check_text(text) -> str:
    """A non-empty string of at most ``MAX_TEXT_CHARS`` characters."""
    if not isinstance(text, str):
        raise InputError("text must be a string")
    if not text.strip():
        raise InputError("text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"text too long: {len(text):,} characters (limit {MAX_TEXT_CHARS:,})")
    return text
