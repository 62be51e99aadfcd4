"""Backbones scored by content + side embeddings over [users; items] and trained as MMRec's MGCN is (MGCN, SMORE)."""
from __future__ import annotations

import torch

from raymmrec.recsys.alignment_losses import cosine_info_nce, half_squared_l2
from raymmrec.recsys.losses import bpr_logsigmoid_loss, dot_scores
from raymmrec.recsys.backbone import Backbone
from raymmrec.recsys.sampling import Batch

NCE_TEMPERATURE = 0.2   # hard-coded in MMRec's MGCN / SMORE calculate_loss (MGCN's `tau = 0.5` is unused)


class SideContentBackbone(Backbone):
    """Subclasses implement `_forward() -> (side, content)`; the config has reg_weight and cl_loss.

    Loss: BPR on content + side, reg_weight · ½‖u, i⁺, i⁻‖² / batch size, and cl_loss · the cosine InfoNCE of
    side against content for the batch's positive items and for its users (τ = 0.2).
    """

    _batch_rows = 0

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        side, content = self._forward()
        out = content + side
        return out[: self.n_users], out[self.n_users:]

    def loss(self, batch: Batch) -> torch.Tensor:
        side, content = self._forward()
        out = content + side
        users, items = batch.users, batch.pos_items + self.n_users
        u, p, n = out[users], out[items], out[batch.neg_items + self.n_users]
        # MMRec divides by the configured batch size, also for the short last batch: the largest seen.
        self._batch_rows = max(self._batch_rows, len(batch))
        cl = (cosine_info_nce(side[items], content[items], NCE_TEMPERATURE)
              + cosine_info_nce(side[users], content[users], NCE_TEMPERATURE))
        return (bpr_logsigmoid_loss(dot_scores(u, p), dot_scores(u, n))
                + self.config.reg_weight * half_squared_l2(u, p, n, divisor=self._batch_rows)
                + self.config.cl_loss * cl)
