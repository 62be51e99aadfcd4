"""MMGCF (MMRec's mmgcf.py): LightGCN on a degree-pruned user–item graph, its item embeddings late-fused with
projected frozen modality features (mean | sum | concat; weighting equal | alpha | normalized)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.errors import ConfigError
from raymmrec.recsys.edge_pruning import DegreePrunedGraph
from raymmrec.recsys.graphs import lightgcn_propagate
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.modal_branches import mmrec_modality_order
from raymmrec.recsys.losses import bpr_logsigmoid_loss, dot_scores
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch


@dataclass
class MMGCFConfig(ModelConfig):
    """MMGCF hyper-parameters (MMRec's MMGCF.yaml); dropout is the share of training edges pruned each epoch."""

    feat_embed_dim: int = 64          # must equal embedding_size unless fusion_mode is concat
    n_ui_layers: int = 2
    reg_weight: float = 1e-3
    fusion_mode: Literal["mean", "sum", "concat"] = "mean"
    weighting: Literal["equal", "alpha", "normalized"] = "equal"
    dropout: float = 0.5

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"n_ui_layers": {"grid": [1, 2, 3]}, "reg_weight": {"grid": [1e-1, 1e-2, 1e-3, 1e-4]},
                "fusion_mode": {"grid": ["mean", "sum", "concat"]},
                "weighting": {"grid": ["equal", "alpha", "normalized"]}, "dropout": {"grid": [0.2, 0.5, 0.8]}}


@register_model("mmgcf")
class MMGCF(DegreePrunedGraph, Backbone):
    """Users: LightGCN. Items: fuse(LightGCN item, W_m f_m for each modality m). Log-sigmoid BPR + ID L2."""

    Config = MMGCFConfig
    needs_features = True

    def __init__(self, config: MMGCFConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d, f = config.embedding_size, config.feat_embed_dim
        if config.fusion_mode != "concat" and d != f:
            raise ConfigError(f"mmgcf: fusion_mode '{config.fusion_mode}' adds embeddings element-wise, so "
                              f"feat_embed_dim ({f}) must equal embedding_size ({d}); or use fusion_mode=concat")
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        self.modalities = mmrec_modality_order(data.features)       # MMRec concatenates [image, text]
        for m, feats in data.features.items():
            self.register_buffer(f"features_{m}", torch.as_tensor(feats, dtype=torch.float32), persistent=False)
        self.projections = nn.ModuleDict({m: nn.Linear(x.shape[1], f) for m, x in data.features.items()})
        n_mod = len(self.modalities)
        if config.weighting == "alpha":
            self.mm_alpha = nn.Parameter(torch.tensor(0.0))      # sigmoid(0) = ½: ID and modalities start level
        if config.fusion_mode == "concat":
            # alpha / normalized: one layer over [id, m1..mM]; equal: modalities first (when several), then [id, mm]
            self.all_concat = nn.Linear(d + n_mod * f, d)
            self.mm_concat = nn.Linear(n_mod * f, f) if n_mod > 1 else None
            self.id_mm_concat = nn.Linear(d + f, d)
        self.init_pruned_graph(data)

    def _fuse(self, tensors: list[torch.Tensor], concat: nn.Module | None) -> torch.Tensor:
        if self.config.fusion_mode == "mean":
            return torch.stack(tensors).mean(dim=0)
        if self.config.fusion_mode == "sum":
            return torch.stack(tensors).sum(dim=0)
        return concat(torch.cat(tensors, dim=-1))

    def _fused_items(self, item_emb: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Item rows `ids` (all when None) of the fused item embeddings; every step is row-wise."""
        feats = [self.projections[m](getattr(self, f"features_{m}") if ids is None
                                     else getattr(self, f"features_{m}")[ids]) for m in self.modalities]
        weighting = self.config.weighting
        if weighting == "alpha":
            alpha = torch.sigmoid(self.mm_alpha)
            parts = [item_emb * alpha] + [x * (1.0 - alpha) for x in feats]
            return self._fuse(parts, getattr(self, "all_concat", None))
        if weighting == "normalized":
            parts = [F.normalize(item_emb) * len(feats)] + [F.normalize(x) for x in feats]
            return self._fuse(parts, getattr(self, "all_concat", None))
        mm = feats[0] if len(feats) == 1 else self._fuse(feats, getattr(self, "mm_concat", None))
        return self._fuse([item_emb, mm], getattr(self, "id_mm_concat", None))

    def _propagate(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])
        out = lightgcn_propagate(adj, ego, self.config.n_ui_layers)
        return out[: self.n_users], out[self.n_users:]

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self._propagate(self.norm_adj)
        return users, self._fused_items(items)

    def loss(self, batch: Batch) -> torch.Tensor:
        users, items = self._propagate(self.training_adj())
        # fusing only the batch's distinct items equals MMRec's fusion of the whole table (it is row-wise)
        ids, inverse = torch.unique(torch.cat([batch.pos_items, batch.neg_items]), return_inverse=True)
        fused = self._fused_items(items[ids], ids)
        pos, neg = fused[inverse[: len(batch)]], fused[inverse[len(batch):]]
        u = users[batch.users]
        reg = (self.user_embedding.weight[batch.users].pow(2).sum()
               + self.item_id_embedding.weight[batch.pos_items].pow(2).sum()
               + self.item_id_embedding.weight[batch.neg_items].pow(2).sum()) / (2 * len(batch))
        return bpr_logsigmoid_loss(dot_scores(u, pos), dot_scores(u, neg)) + self.config.reg_weight * reg
