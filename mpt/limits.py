"""How much a data set reader may read (`DataLimits`), and the running count of one read
against them (`ReadBudget`)."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.limits import MAX_CLASSES
from mpt.data import DataError


@dataclass(frozen=True)
class DataLimits:
    """What a loader may read. The service fills it from its settings and names them in
    `names` ({field: setting name}) so that an error says which setting to raise."""

    # Decoded bytes of every array of both splits (images, labels, class names); an image
    # folder opened for streaming holds none, and load_dataset counts the pixels it decodes.
    max_bytes: int = 4 * 1024**3
    # Images of both splits together.
    max_images: int = 2_000_000
    # Height x width of one image, from its header (Pillow's MAX_IMAGE_PIXELS is set to this).
    max_image_pixels: int = 4096 * 4096
    max_classes: int = MAX_CLASSES
    names: tuple[tuple[str, str], ...] = ()

    def exceeded(self, field: str, what: str) -> DataError:
        name = dict(self.names).get(field, field)
        return DataError(f"{what}: more than the limit of {getattr(self, field)} ({name})")


class ReadBudget:
    """Running totals of one load against its limits."""

    def __init__(self, limits: DataLimits):
        self.limits = limits
        self.bytes = 0
        self.images = 0

    def spend(self, nbytes: int, what: str) -> None:
        self.bytes += nbytes
        if self.bytes > self.limits.max_bytes:
            raise self.limits.exceeded("max_bytes", f"{what} brings the data set to {self.bytes} bytes")

    def count_images(self, count: int, what: str) -> None:
        self.images += count
        if self.images > self.limits.max_images:
            raise self.limits.exceeded("max_images", f"{what} brings the data set to {self.images} images")

    def check_pixels(self, height: int, width: int, what: str) -> None:
        if height * width > self.limits.max_image_pixels:
            raise self.limits.exceeded("max_image_pixels", f"{what} is {width}x{height} pixels")

    def check_classes(self, count: int, what: str) -> None:
        if count > self.limits.max_classes:
            raise self.limits.exceeded("max_classes", f"{what} names {count} classes")
