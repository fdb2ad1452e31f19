"""Augmentation of whole batches on the training device: random crops (after padding, or
random resized) and horizontal flips, drawn from one seeded generator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.data

from mpt.recipe import Recipe


def augment(images: torch.Tensor, *, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop after zero padding and per-sample horizontal flip, batched.

    Works on the batch's device with one gather; `generator` must live on that device.
    """
    batch, _, height, width = images.shape
    device = images.device
    if padding:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (batch,), device=device, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (batch,), device=device, generator=generator)
        rows = (dy[:, None] + torch.arange(height, device=device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width, device=device))[:, None, None, :]
        samples = torch.arange(batch, device=device)[:, None, None, None]
        channels = torch.arange(images.shape[1], device=device)[None, :, None, None]
        images = padded[samples, channels, rows, cols]
    if flip:
        flipped = torch.rand(batch, device=device, generator=generator) < 0.5
        images = torch.where(flipped[:, None, None, None], images.flip(3), images)
    return images


def random_resized_crop(
    images: torch.Tensor,
    *,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    flip: bool,
    generator: torch.Generator,
    attempts: int = 10,
) -> torch.Tensor:
    """torchvision's RandomResizedCrop (+ optional horizontal flip) for a whole batch on its
    device: float32 (B, C, H, W) on the 0..255 scale.

    Each sample draws `attempts` boxes of a random share of the area in `scale` and a
    log-uniform aspect in `ratio`, keeps the first that fits (the whole image when none
    does) and resamples it bilinearly to the input size (a box is never larger than the
    image, so this only enlarges: no antialiasing is needed).
    """
    batch, _, height, width = images.shape
    device = images.device
    area = height * width * torch.empty(batch, attempts, device=device).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(batch, attempts, device=device).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    aspect = log_ratio.exp()
    box_w = (area * aspect).sqrt().round()
    box_h = (area / aspect).sqrt().round()
    fits = (box_w >= 1) & (box_w <= width) & (box_h >= 1) & (box_h <= height)
    first = fits.float().argmax(1)  # index of the first fitting attempt (0 when none fits)
    found = fits.any(1)
    pick = torch.arange(batch, device=device)
    box_w = torch.where(found, box_w[pick, first], torch.full_like(box_w[:, 0], width))
    box_h = torch.where(found, box_h[pick, first], torch.full_like(box_h[:, 0], height))
    u = torch.rand(batch, 2, device=device, generator=generator)
    top = (u[:, 0] * (height - box_h + 1)).floor()
    left = (u[:, 1] * (width - box_w + 1)).floor()
    # The affine map from output to input in grid_sample's [-1, 1] coordinates (pixel centres).
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = box_w / width
    theta[:, 0, 2] = (2 * left + box_w) / width - 1
    theta[:, 1, 1] = box_h / height
    theta[:, 1, 2] = (2 * top + box_h) / height - 1
    if flip:
        flipped = torch.rand(batch, device=device, generator=generator) < 0.5
        theta[:, 0, 0] = torch.where(flipped, -theta[:, 0, 0], theta[:, 0, 0])
    grid = F.affine_grid(theta, [batch, images.shape[1], height, width], align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(images: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """The recipe's training augmentation of a uint8 batch on its device (mpt.recipe.Recipe's
    train_crop): uint8 for "pad", float on the 0..255 scale for "random_resized"."""
    if recipe.train_crop == "random_resized":
        return random_resized_crop(
            images, scale=recipe.crop_scale, ratio=recipe.crop_ratio, flip=recipe.horizontal_flip, generator=generator
        )
    return augment(images, padding=recipe.crop_padding, flip=recipe.horizontal_flip, generator=generator)
