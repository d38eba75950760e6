"""Launched by tests/test_train.py with torchrun (2 processes, gloo on CPU)."""

import sys

import torch
import torch.distributed as dist

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from helpers import random_set, tiny_spec
from overthink_lib.train import TrainConfig, build_model, fit

out = sys.argv[1]
model = build_model(tiny_spec(), init_seed=0)
cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, schedule="constant")
hist = fit(model, random_set(64), random_set(32, seed=1, split="val"), cfg, out_dir=out, progress=False)
flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    same = all(torch.equal(gathered[0], g) for g in gathered)
    print(f"RANKS={dist.get_world_size()} SAME_WEIGHTS={same} EPOCHS={len(hist)}")
dist.destroy_process_group()
