"""Optimisation pieces: the optimizer, the LR schedule, EMA weights, the epoch sampler."""

from __future__ import annotations

import math
from copy import deepcopy

import torch
from torch import nn

from detect.errors import DetectError


def lr_factor(progress: float, lrf: float) -> float:
    """Cosine from 1 at progress 0 to `lrf` at progress 1 (clamped; SGDR, Loshchilov and Hutter
    2017, without restarts)."""
    p = min(max(progress, 0.0), 1.0)
    return lrf + (1 - lrf) * 0.5 * (1 + math.cos(math.pi * p))


def warmup_factor(iteration: int, warmup_iters: int) -> float:
    """Linear ramp from ~0 to 1 over the first `warmup_iters` steps."""
    return 1.0 if warmup_iters <= 0 else min(1.0, (iteration + 1) / warmup_iters)


class ModelEMA:
    """Exponential moving average of a model's weights and buffers (YOLOv5's ModelEMA).

    decay(updates) = decay * (1 - exp(-updates / tau)): near 0 at first so the average follows
    the fast-changing early weights, then up to `decay`.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0) -> None:
        self.ema = deepcopy(unwrap(model)).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = unwrap(model).state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under a DDP wrapper."""
    return getattr(model, "module", model)


def build_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """AdamW (`momentum` is beta1) or SGD with Nesterov momentum; weight decay on conv and
    linear weights only: decaying BatchNorm scales or biases hurts (YOLOv5's three groups,
    here two). Raises DetectError for another name."""
    decay, no_decay = [], []
    for m in model.modules():
        for pname, p in m.named_parameters(recurse=False):
            is_weight = pname == "weight" and not isinstance(m, nn.modules.batchnorm._BatchNorm)
            (decay if is_weight else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    raise DetectError(f"unknown optimizer {name!r} (use adamw or sgd)")


class EpochSampler(torch.utils.data.Sampler):
    """A shuffled order per (seed, epoch), sharded over DDP ranks, optionally skipping a prefix.

    Same order as torch's DistributedSampler (padded so every rank gets the same count), but
    with `start` so a run resumed mid-epoch sees exactly the batches it had not seen yet.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch, self.start = 0, 0
        self.per_rank = math.ceil(n / world)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        idx = torch.randperm(self.n, generator=g).tolist()
        idx += idx[: self.per_rank * self.world - self.n]  # pad to a multiple of world
        return iter(idx[self.rank :: self.world][self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start
