"""The paper's training loop as a user runs it (docs/METHOD.md, "The reference training loop"):
DataLoader workers put every sample through PIL and torchvision transforms, each batch is copied
to the device, float32, and the loss is read back every step. bench/train_throughput.py times
the engine against it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from harness import OLD_TEACHER_SEED, RECIPE, REFERENCE_TEACHER_SEED, Workload, new_mask

from mpt.losses import LossInputs, get_method
from mpt.nets import build_net
from mpt.recipe import MethodParams


class PilDataset(torch.utils.data.Dataset):
    """The paper's data path: uint8 array -> PIL image -> torchvision transforms, per sample."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, mean: Sequence[float], std: Sequence[float], padding: int
    ) -> None:
        self.images, self.labels = images, labels  # (N, H, W) grey or (N, H, W, 3)
        self.mean, self.std, self.padding = tuple(mean), tuple(std), padding
        self.transform: Callable | None = None  # built lazily in each worker

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image
        from torchvision import transforms as T

        transform = self.transform
        if transform is None:
            size = self.images.shape[1]
            transform = self.transform = T.Compose(
                [
                    T.RandomCrop(size, padding=self.padding),
                    T.RandomHorizontalFlip(),
                    T.ToTensor(),
                    T.Normalize(self.mean, self.std),
                ]
            )
        return transform(Image.fromarray(self.images[i])), int(self.labels[i])


def reference_run(
    work: Workload,
    *,
    steps: int,
    warmup: int,
    workers: int,
    context: str,
) -> tuple[float, float]:
    """(images/s over `steps` timed steps after `warmup` untimed ones, worker start-up seconds)."""
    train_set, k, k_old, arch, device = work.train_set, work.k, work.k_old, work.arch, work.device
    pixels = train_set.images.numpy()
    pixels = np.ascontiguousarray(pixels[:, 0] if pixels.shape[1] == 1 else pixels.transpose(0, 2, 3, 1))
    dataset = PilDataset(pixels, train_set.labels.numpy(), work.mean, work.std, RECIPE.crop_padding)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=RECIPE.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        multiprocessing_context=context if workers else None,
    )
    in_channels = train_set.images.shape[1]
    student = build_net(arch, num_classes=k, in_channels=in_channels, seed=1).to(device).train()
    old = build_net(arch, num_classes=k_old, in_channels=in_channels, seed=OLD_TEACHER_SEED).to(device).eval()
    reference = build_net(arch, num_classes=k, in_channels=in_channels, seed=REFERENCE_TEACHER_SEED).to(device).eval()
    optimizer = torch.optim.SGD(
        student.parameters(), lr=RECIPE.lr, momentum=RECIPE.momentum, weight_decay=RECIPE.weight_decay
    )
    method, params, mask = get_method("mpt-kl"), MethodParams(), new_mask(k, k_old).to(device)
    started = time.perf_counter()
    iterator = iter(loader)
    clock = started
    startup = 0.0
    for step in range(warmup + steps):
        x, y = next(iterator)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if step == 0:
            startup = time.perf_counter() - started
        if step == warmup:
            clock = time.perf_counter()  # the previous step's .item() waited for the device
        with torch.no_grad():
            old_logits = old(x)
            ref_logits = reference(x)
        logits = student(x)
        loss = method.loss(LossInputs(logits, y, mask, old_logits, ref_logits, None, 0), params)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the paper's loop reads the loss back every step
    elapsed = time.perf_counter() - clock
    del iterator  # shuts the workers down
    return steps * RECIPE.batch_size / elapsed, startup
