"""Sweep cost: four values of b trained together (mpt.train.train_students: one data pass and one
teacher forward per batch, shared) against one MPT-KL run (mpt.train.train) with the same
epochs, data and teachers. The sweep runs twice: its students side by side
(Recipe.pack_students="off") and packed into one grouped-convolution network ("on",
mpt/packed.py). Runs alternate (single, side by side, packed, then reversed) in this one
process; medians are reported. Four separate runs would cost 4x one run.

    .venv/bin/python bench/sweep.py --arch small_cnn --steps 20 --epochs 2 --repeats 3 --threads 1
    PYTHONPATH=. python3 bench/sweep.py --arch resnet18 --device cuda --steps 100 --cuda-graphs
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch
from harness import device_name, new_mask, synchronize, teachers_for, workload

from mpt.data import channel_stats
from mpt.nets import build_net
from mpt.recipe import MethodParams, Recipe
from mpt.train import TrainingSetup, train, train_students

CONTENDERS = ("single", "side by side", "packed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="small_cnn", choices=["small_cnn", "resnet18"])
    parser.add_argument("--biases", default="0,1,2,4")
    parser.add_argument("--steps", type=int, default=20, help="batches of 128 per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cuda-graphs", action="store_true", help="Recipe.cuda_graphs for every contender")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    biases = [float(b) for b in args.biases.split(",")]
    recipe = Recipe(epochs=args.epochs, batch_size=128, cuda_graphs=args.cuda_graphs)
    train_set, k, k_old = workload(args.arch, args.steps * recipe.batch_size)
    mean, std = channel_stats(train_set.images)
    in_channels = train_set.images.shape[1]
    setup = TrainingSetup(
        train_set=train_set, recipe=recipe, new_mask=new_mask(k, k_old), mean=mean, std=std, seed=0, device=device
    )

    def run(which: str) -> float:
        """Seconds of one whole training call (set-up included)."""
        teachers = teachers_for(args.arch, k, k_old, in_channels)
        nets = [build_net(args.arch, num_classes=k, in_channels=in_channels, seed=1) for _ in biases]
        synchronize(device)
        started = time.perf_counter()
        if which == "single":
            train(
                dataclasses.replace(setup, teachers=teachers),
                net=nets[0],
                method="mpt-kl",
                params=MethodParams(bias=biases[-1]),
            )
        else:
            sweep_recipe = dataclasses.replace(recipe, pack_students="on" if which == "packed" else "off")
            train_students(
                dataclasses.replace(setup, teachers=teachers, recipe=sweep_recipe),
                nets=nets,
                methods=["mpt-kl"] * len(biases),
                params=[MethodParams(bias=b) for b in biases],
            )
        synchronize(device)
        return time.perf_counter() - started

    print(
        f"{args.arch}: {len(train_set)} images x {args.epochs} epochs, batch 128, MPT-KL, b in {biases}; "
        f"cuda_graphs {args.cuda_graphs}; device {device} ({device_name(device)}); "
        f"load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    for which in CONTENDERS:
        run(which)  # warm-up
    times: dict[str, list[float]] = {which: [] for which in CONTENDERS}
    for repeat in range(args.repeats):
        for which in CONTENDERS if repeat % 2 == 0 else CONTENDERS[::-1]:
            times[which].append(run(which))
            print(f"  repeat {repeat + 1} {which:>12}: {times[which][-1]:.2f} s", flush=True)
    one = statistics.median(times["single"])
    for which in CONTENDERS[1:]:
        median = statistics.median(times[which])
        pairs = ", ".join(f"{t / o:.2f}" for t, o in zip(times[which], times["single"], strict=True))
        print(
            f"{len(biases)} students {which}: {median:.2f} s, {median / one:.2f}x one run of {one:.2f} s "
            f"(separate runs: {len(biases)}.00x; per repeat: {pairs})"
        )
    packed, side_by_side = statistics.median(times["packed"]), statistics.median(times["side by side"])
    print(f"packed / side by side: {packed / side_by_side:.2f}x; load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
