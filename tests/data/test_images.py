"""Safe decoding: every kind of input either becomes an upright RGB image or raises a clear ImageError."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bintally.data.images import Enhance, ImageError, ImageTooLarge, decode_image, enhance, image_size


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def real_jpeg(abid_root) -> bytes:
    return (abid_root / "bin-images" / "00585.jpg").read_bytes()


def test_real_bin_photo_decodes_to_rgb(real_jpeg):
    img = decode_image(real_jpeg)
    assert img.mode == "RGB" and img.size == image_size(real_jpeg)


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b"", "empty"),
        (lambda b: b"plain text, not a photo", "cannot"),
        (lambda b: b[:200], "cannot"),
    ],
    ids=["truncated", "zero-byte", "text", "header-only"],
)
def test_broken_bytes_raise_image_error(real_jpeg, mangle, message):
    """Truncated, empty and non-image bytes raise ImageError with a reason, never crash or return pixels."""
    with pytest.raises(ImageError, match=message):
        decode_image(mangle(real_jpeg))


def test_pixel_limit_refuses_before_decoding():
    """A 60-megapixel PNG (tiny on disk) is refused from its header: the bomb is never expanded."""
    bomb = _encode(Image.new("L", (10_000, 6_000)), "PNG", optimize=True)
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLarge, match="60,000,000 pixels"):
        decode_image(bomb)
    assert decode_image(bomb, max_pixels=61_000_000).size == (10_000, 6_000)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16", "LA"])
def test_every_mode_comes_out_rgb(real_jpeg, mode):
    """Grayscale, CMYK, alpha, palette and 16-bit inputs all come out as RGB of the same size."""
    src = Image.new(mode, (32, 24), 4000) if mode == "I;16" else decode_image(real_jpeg).convert(mode)
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    img = decode_image(_encode(src, fmt))
    assert img.mode == "RGB" and img.size == src.size


def test_exif_orientation_is_applied(real_jpeg):
    """A photo stored sideways with EXIF orientation 6 (display rotated 90 degrees clockwise) comes out upright:
    its size, and a red mark in the upright photo's top-left corner lands back in the top-left corner (not in
    another one, as a rotation the wrong way or a flip would put it)."""
    upright = decode_image(real_jpeg).resize((80, 40))
    upright.paste((255, 0, 0), (0, 0, 16, 16))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes before tagging it
    img = np.asarray(decode_image(_encode(stored, "JPEG", exif=exif, quality=95)), dtype=np.int32)
    assert img.shape[:2] == (40, 80)
    corners = {"top-left": img[2:14, 2:14], "top-right": img[2:14, -14:-2], "bottom-left": img[-14:-2, 2:14]}
    corners["bottom-right"] = img[-14:-2, -14:-2]
    red = {name: bool((c[..., 0] > 200).all() and (c[..., 1] < 60).all()) for name, c in corners.items()}
    assert red == {"top-left": True, "top-right": False, "bottom-left": False, "bottom-right": False}


def test_unsharp_enhancement_sharpens_and_none_is_identity(real_jpeg):
    img = decode_image(real_jpeg)
    assert enhance(img, None) is img
    sharp = np.asarray(enhance(img, Enhance(percent=200)), dtype=np.float32)
    original = np.asarray(img, dtype=np.float32)
    # Sharpening raises local contrast: the mean absolute horizontal gradient grows.
    grad = lambda a: np.abs(np.diff(a, axis=1)).mean()  # noqa: E731
    assert grad(sharp) > grad(original) * 1.05
