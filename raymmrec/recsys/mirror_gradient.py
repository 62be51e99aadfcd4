"""Mirror Gradient (Zhong et al., WWW 2024; MMRec's trainer with mg=True): every `beta`-th batch takes a step
on alpha1 · loss, recomputes the loss of the same batch at the new weights, and takes a second step on
−alpha2 · loss; the mirrored step pushes training towards flat minima (robust to noisy multimodal inputs)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from raymmrec.errors import ConfigError

# MMRec's configs/mg.yaml grid, as trainer fields for a tune space (fixed: trainer.mirror_gradient=true)
SEARCH_SPACE = {"trainer.mg_alpha1": {"grid": [1.0]}, "trainer.mg_alpha2": {"grid": [0.1, 0.2, 0.3]},
                "trainer.mg_beta": {"grid": [3]}}


@dataclass(frozen=True)
class MirrorGradient:
    """The two step sizes and the period (in batches) of the mirrored steps."""

    alpha1: float = 1.0
    alpha2: float = 0.1
    beta: int = 3

    @classmethod
    def from_trainer(cls, cfg: Any) -> "MirrorGradient | None":
        """The trainer config's Mirror Gradient (mirror_gradient, mg_alpha1, mg_alpha2, mg_beta); None when off."""
        if not cfg.mirror_gradient:
            return None
        if cfg.mg_beta < 1:
            raise ConfigError(f"trainer.mg_beta must be at least 1 (mirror every beta-th batch), got {cfg.mg_beta}")
        return cls(float(cfg.mg_alpha1), float(cfg.mg_alpha2), int(cfg.mg_beta))

    def applies(self, batch_index: int) -> bool:
        """Whether batch `batch_index` (0-based within the epoch) takes the mirrored pair of steps."""
        return batch_index % self.beta == 0

    def step(self, loss: torch.Tensor, recompute: Callable[[], torch.Tensor],
             optimizer: torch.optim.Optimizer) -> bool:
        """Step on alpha1 · `loss`, then on −alpha2 · `recompute()`; False (no second step) when that is not finite."""
        (self.alpha1 * loss).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        second = recompute()
        if not math.isfinite(second.item()):
            return False
        (-self.alpha2 * second).backward()
        optimizer.step()
        return True
