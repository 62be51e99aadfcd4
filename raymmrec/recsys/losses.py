"""Loss terms shared by the backbones, in MMRec's exact forms (ALGORITHMS.md §1.8)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from raymmrec.recsys.sampling import Batch


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """MMRec's BPRLoss: -mean log(1e-10 + σ(s⁺ - s⁻))."""
    return -torch.log(1e-10 + torch.sigmoid(pos_scores - neg_scores)).mean()


def bpr_logsigmoid_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """The variant most graph models write themselves: -mean log σ(s⁺ - s⁻)."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def emb_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's EmbLoss: sum of (non-squared) Frobenius norms divided by the rows of the last argument."""
    total = sum(torch.linalg.vector_norm(e) for e in embeddings)
    return total / embeddings[-1].shape[0]


def dot_scores(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Row-wise inner products of matching user and item rows."""
    return (users * items).sum(dim=1)


def stacked_bpr_with_id_reg(rep: torch.Tensor, id_embedding: torch.Tensor, batch: Batch,
                            n_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MMGCN / GRCN: log-sigmoid BPR on a [users; items] representation, and their ID-embedding mean-square term."""
    u = rep[batch.users]
    pos, neg = rep[batch.pos_items + n_users], rep[batch.neg_items + n_users]
    items = torch.cat([batch.pos_items, batch.neg_items]) + n_users
    reg = id_embedding[batch.users].pow(2).mean() + id_embedding[items].pow(2).mean()
    return bpr_logsigmoid_loss(dot_scores(u, pos), dot_scores(u, neg)), reg
