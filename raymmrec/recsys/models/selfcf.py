"""SelfCF_ed (Zhou et al., TORS 2023; MMRec's selfcfed_lgn.py): negative-free self-supervised CF. A LightGCN
encoder on a randomly edge-dropped graph gives online views; their dropout copies are the targets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.recsys.embedding_tables import xavier_uniform_table
from raymmrec.recsys.graphs import lightgcn_propagate, to_scipy_csr
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch


@dataclass
class SelfCFConfig(ModelConfig):
    """SelfCF_ed hyper-parameters (MMRec's SELFCFED_LGN.yaml); dropout perturbs the target embeddings."""

    n_layers: int = 2
    dropout: float = 0.1
    reg_weight: float = 1e-3
    edge_drop_max: float = 1.0     # each step drops a U(0, edge_drop_max) share of edges (MMRec's fixed drop_ratio)

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"n_layers": {"grid": [1, 2]}, "dropout": {"grid": [0.1, 0.2, 0.5]},
                "reg_weight": {"grid": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 0.0]}}


def _transpose_order(adj: torch.Tensor) -> torch.Tensor:
    """For a CSR matrix with a symmetric pattern: the order of its values that gives its transpose's values."""
    m = to_scipy_csr(adj)
    m.data = np.arange(1, m.nnz + 1, dtype=np.float64)   # from 1: no explicit zero to lose
    t = m.T.tocsr()
    t.sort_indices()
    return torch.from_numpy(t.data.astype(np.int64) - 1)


@register_model("selfcf")
class SelfCF(Backbone):
    """Online u, i from LightGCN; loss −cos(P(u), sg(drop(i)))/2 − cos(P(i), sg(drop(u)))/2 + ½‖u, i‖²;
    score P(u)·i + u·P(i)."""

    Config = SelfCFConfig
    uses_negatives = False

    def __init__(self, config: SelfCFConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.user_embedding = xavier_uniform_table(self.n_users, d)
        self.item_embedding = xavier_uniform_table(self.n_items, d)
        self.predictor = nn.Linear(d, d)
        self.register_buffer("adj", data.adjacency("sym"), persistent=False)
        self.register_buffer("transpose_order", _transpose_order(self.adj), persistent=False)

    def _edge_dropped_adjacency(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Â, Âᵀ) with a random share of Â's entries dropped and the rest scaled by 1/(1 − share)."""
        # the share comes from numpy's generator and the mask from torch's, in MMRec's order, so that
        # equally seeded runs draw the same graph
        share = float(np.random.random()) * self.config.edge_drop_max
        values = self.adj.values()
        keep = (torch.rand(values.shape, device=values.device) + (1.0 - share)).floor()
        values = values * keep * (1.0 / (1.0 - share))
        # entries drop independently, so the graph is no longer symmetric: its transpose (for the backward)
        # has Â's structure with the values permuted
        crow, col = self.adj.crow_indices(), self.adj.col_indices()
        return (torch.sparse_csr_tensor(crow, col, values, size=self.adj.shape, check_invariants=False),
                torch.sparse_csr_tensor(crow, col, values[self.transpose_order], size=self.adj.shape,
                                        check_invariants=False))

    def _encode(self, adj: torch.Tensor, adj_t: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_embedding, self.item_embedding])
        out = lightgcn_propagate(adj, ego, self.config.n_layers, adj_t)
        return out[: self.n_users], out[self.n_users:]

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self._encode(self.adj)
        # [P(u), u] · [i, P(i)] = P(u)·i + u·P(i)
        return torch.cat([self.predictor(users), users], 1), torch.cat([items, self.predictor(items)], 1)

    def loss(self, batch: Batch) -> torch.Tensor:
        users, items = self._encode(*self._edge_dropped_adjacency())
        u, i = users[batch.users], items[batch.pos_items]
        with torch.no_grad():
            u_target = F.dropout(u, self.config.dropout)
            i_target = F.dropout(i, self.config.dropout)
        reg = 0.5 * (u.pow(2).sum() + i.pow(2).sum())
        align = -(F.cosine_similarity(self.predictor(u), i_target, dim=-1).mean()
                  + F.cosine_similarity(self.predictor(i), u_target, dim=-1).mean()) / 2
        return align + self.config.reg_weight * reg
