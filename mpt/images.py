"""Single images on the host: headers without pixels, decoding any mode, fitting to a size.

Every path into a network goes through `fit_image`, so a model sees the same pixels whether
its data was decoded once (resident) or per batch (streaming), in training and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

# Modes whose pixels carry no colour; everything else (RGB, RGBA, CMYK, YCbCr, ...) is colour.
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# EXIF orientations 5..8 turn the stored image by 90 degrees: width and height swap.
TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
EXIF_ORIENTATION = 0x0112


class ImageFileError(ValueError):
    """An image file that cannot be opened or decoded."""


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: its upright (height, width), mode and colour."""

    height: int
    width: int
    mode: str
    grey: bool


def read_header(path: str | Path) -> ImageHeader:
    """Size, mode and colour of an image file from its header (PIL's lazy open: no pixels)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if _orientation(image) in TRANSPOSED_ORIENTATIONS:
                width, height = height, width
            return ImageHeader(height, width, image.mode, _is_grey(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise  # too many pixels: the caller's limit names the setting
    except Exception as error:  # Pillow raises many kinds for a broken file: each is the file's fault
        raise ImageFileError(f"{path} is not a readable image ({type(error).__name__}: {error})") from None


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation found while opening. Image.getexif would decode a PNG's pixels to
    look for an eXIf chunk after them; one placed there (rare) shows only when decoding."""
    if image.format == "TIFF":
        return image.getexif().get(EXIF_ORIENTATION)  # TIFF tags are the header itself
    raw = image.info.get("exif")
    if not raw:
        return None
    exif = Image.Exif()
    exif.load(raw)
    return exif.get(EXIF_ORIENTATION)


def _is_grey(image: Image.Image) -> bool:
    if image.mode == "P" and image.palette is not None:
        # A palette of grey levels is a grey image. The palette comes with the header (PNG's
        # PLTE, GIF's colour table); getpalette() would decode the pixels first.
        palette = image.palette
        if (palette.rawmode or palette.mode) != "RGB" or len(palette.palette) % 3:
            return False
        rgb = np.frombuffer(bytes(palette.palette), dtype=np.uint8).reshape(-1, 3)
        return bool((rgb == rgb[:, :1]).all())
    return image.mode in GREY_MODES


def decode_image(path: str | Path, *, channels: int, size: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image upright (EXIF orientation applied) as mode L (1 channel) or RGB (3).

    With `size` (height, width), a JPEG may be decoded at a reduced scale that still covers
    it (PIL's draft mode): far less work for a large photo fitted to a small input.
    Transparency is dropped, as PIL's convert does.
    """
    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as image:
            if size is not None and image.format == "JPEG":
                side = max(size)  # covers the target whichever way EXIF turns the image
                image.draft(mode, (side, side))
            upright = ImageOps.exif_transpose(image)
            if upright.mode == "P" and "transparency" in upright.info:
                upright = upright.convert("RGBA")  # PIL asks for this before dropping alpha
            return upright.convert(mode)
    except Exception as error:  # as in read_header; a file's size was checked when it was opened
        raise ImageFileError(f"cannot decode {path} ({type(error).__name__}: {error})") from None


def fit_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize (bilinear, antialiased) so the image covers `size` (height, width) with its aspect
    kept, and cut out the centre: torchvision's Resize + CenterCrop, done as one resample."""
    height, width = size
    if image.size == (width, height):
        return image
    # The largest centred box of the target's aspect inside the image.
    scale = min(image.width / width, image.height / height)
    box_width, box_height = width * scale, height * scale
    left, top = (image.width - box_width) / 2, (image.height - box_height) / 2
    return image.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + box_width, top + box_height))


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """A mode L or RGB image as uint8 (C, H, W)."""
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        return torch.from_numpy(pixels.copy()).unsqueeze(0)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def tensor_to_image(pixels: torch.Tensor) -> Image.Image:
    """uint8 (1 or 3, H, W) as a mode L or RGB image."""
    array = pixels.numpy()
    return Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))


def fit_tensor(pixels: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 (C, H, W) fitted to `shape` (channels, height, width) exactly as a decoded file
    would be; returned as it is when it already has that shape."""
    if tuple(pixels.shape) == tuple(shape):
        return pixels
    image = tensor_to_image(pixels).convert("L" if shape[0] == 1 else "RGB")
    return image_to_tensor(fit_image(image, (shape[1], shape[2])))


def load_fitted(path: str | Path, shape: tuple[int, int, int]) -> torch.Tensor:
    """An image file decoded and fitted to `shape` (channels, height, width), as uint8."""
    size = (shape[1], shape[2])
    return image_to_tensor(fit_image(decode_image(path, channels=shape[0], size=size), size))


def thumbnail(pixels: torch.Tensor, max_side: int) -> torch.Tensor:
    """uint8 (C, H, W) scaled down (antialiased) so that its longer side is at most `max_side`."""
    height, width = pixels.shape[1:]
    if max(height, width) <= max_side:
        return pixels
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image_to_tensor(tensor_to_image(pixels).resize(size, Image.Resampling.BILINEAR))
