"""Small models and data for fast tests."""

import torch

from overthink_lib.data import ImageSet

TINY = dict(n_blocks=3, step_mode="even", step=1, base=1, channels=4, growth=2, head_channels=8)


def tiny_spec(num_classes=10, in_channels=1, **kw):
    return {"name": "msdnet_cifar", "kwargs": {"num_classes": num_classes, "in_channels": in_channels, **TINY, **kw}}


def random_set(n=96, classes=10, channels=1, size=16, seed=0, split="train"):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    # make the task learnable: brighten a class-dependent row band
    for c in range(classes):
        images[labels == c, :, c % size, :] = 255
    return ImageSet(
        "random",
        split,
        images,
        labels,
        torch.arange(n),
        classes,
        (0.5,) * channels,
        (0.25,) * channels,
        {"pad": 1, "flip": True},
        {},
        {"seed": seed},
    )
