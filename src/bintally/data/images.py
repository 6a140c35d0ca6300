"""Safe image decoding and the optional enhancement.

Every stage that reads a photo (data checks, training, export checks, serving,
batch scoring) goes through `decode_image`, so limits and colour handling can
never differ between them.
"""

from __future__ import annotations

import io
import warnings
from typing import Literal

from PIL import Image, ImageFilter, ImageOps
from pydantic import BaseModel, Field

# ABID photos are ~0.1 MP; 40 MP still admits a phone photo but refuses
# decompression bombs before any pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """The bytes are not a decodable image."""


class ImageTooLarge(ImageError):
    """The image declares more pixels than allowed."""


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes into an upright RGB image, or raise ImageError / ImageTooLarge."""
    if not data:
        raise ImageError("empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"image is {width}x{height} = {width * height:,} pixels; limit is {max_pixels:,}")
            img.load()
    except ImageTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(str(exc)) from exc
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error...
        raise ImageError(f"cannot decode image: {exc}") from exc
    return _to_rgb(ImageOps.exif_transpose(img))


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        # Flatten transparency onto white, as a viewer would show it.
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        img = ImageOps.autocontrast(img.convert("I").point(lambda v: v / 256).convert("L"))
    return img.convert("RGB")


class Enhance(BaseModel):
    """UnsharpMask, the original system's preprocessing; parameters as in PIL."""

    kind: Literal["unsharp"] = "unsharp"
    radius: float = Field(2.0, gt=0)
    percent: int = Field(150, ge=0)
    threshold: int = Field(3, ge=0)


def enhance(img: Image.Image, cfg: Enhance | None) -> Image.Image:
    if cfg is None:
        return img
    return img.filter(ImageFilter.UnsharpMask(radius=cfg.radius, percent=cfg.percent, threshold=cfg.threshold))


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the header alone (no pixel decoding)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception as exc:
        raise ImageError(f"cannot read image header: {exc}") from exc
