"""Loss terms of the alignment-style multimodal backbones (LATTICE, BM3, MGCN, AlignRec) in MMRec's forms."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from raymmrec.recsys.modal_branches import info_nce


def cosine_info_nce(anchors: torch.Tensor, candidates: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """In-batch cosine InfoNCE, one direction: row r of `anchors` should pick row r of `candidates`.

    MMRec's MGCN / AlignRec write -log(exp(c_rr/τ) / Σ_c exp(c_rc/τ)); the cross-entropy form is the same
    value without overflow. Duplicate rows stay as (false) negatives, as there.
    """
    return info_nce(F.normalize(anchors, dim=1), F.normalize(candidates, dim=1), temperature)


def cosine_alignment(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − mean row-wise cosine similarity (BM3's terms, AlignRec's user–item alignment)."""
    return 1.0 - F.cosine_similarity(online, target, dim=-1).mean()


def half_squared_l2(*embeddings: torch.Tensor, divisor: int) -> torch.Tensor:
    """½ Σ‖X‖_F² / divisor: the L2 term of LATTICE / MGCN / AlignRec (divisor = configured batch size)."""
    return sum(0.5 * e.pow(2).sum() for e in embeddings) / divisor


def similarity_regulariser(embeddings: torch.Tensor, target_similarity: torch.Tensor,
                           cosine: bool = False) -> torch.Tensor:
    """‖sim(E) − sg(target)‖_F / rows: AlignRec's REG, sim a raw inner product (code) or cosine (paper Eq. 11)."""
    e = F.normalize(embeddings, dim=1) if cosine else embeddings
    return torch.linalg.vector_norm(e @ e.T - target_similarity.detach()) / len(e)
