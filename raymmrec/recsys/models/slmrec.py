"""SLMRec as MMRec implements it (ALGORITHMS.md §2.9; ssl_task FAC, concat fusion).

Per modality m: m̄ = W_m nrm(f_m) + b. LightGCN (3 layers, mean readout, G-sym with eps 1e-8) over
[E_u; E_i] and over [E_u; m̄] for every modality, all sharing the user table. User = W_U[i_u; m_u…],
item = W_I[i_i; m_i…]. Main loss: in-batch InfoNCE nrm(U_b)·nrm(I⁺_b)ᵀ / temp (negatives unused).
FAC: a = g_id(i_i) against g_0(m⁰_i) in the fine space (d); the coarse space (d/2) is reached through
MMRec's chain d→d→d/2 from a and compared with the last modality. Total main + α(L_fine + L_coarse),
trained with Adam weight decay 1e-4 (applied by the model); MMRec's `reg` is unused and left out.
With more than two modalities each middle modality gets a d-dim level of the chain (SLMRec's audio
level); with one, only the fine level remains (MMRec's kwai branch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.modal_branches import (apply_weight_decay, info_nce, mmrec_modality_order,
                                            shared_user_lightgcn, xavier_linear)
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch


@dataclass
class SLMRecConfig(ModelConfig):
    """SLMRec hyper-parameters (MMRec: recdim = embedding_size, layer_num = n_layers)."""

    n_layers: int = 3
    temp: float = 0.2
    ssl_temp: float = 0.1
    ssl_alpha: float = 0.1
    weight_decay: float = 1e-4

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"ssl_temp": {"grid": [0.1, 0.2, 0.5, 1.0]}, "ssl_alpha": {"grid": [0.01, 0.05, 0.1, 0.5, 1.0]}}


@register_model("slmrec")
class SLMRec(Backbone):
    """Modality LightGCN branches fused linearly; contrastive main loss plus fine-and-coarse alignment."""

    Config = SLMRecConfig
    # MMRec's lr grid: a trainer field, tuned alongside the config's own space.
    trainer_search_space: ClassVar[dict[str, dict[str, list]]] = {"lr": {"grid": [1e-4, 1e-3, 1e-2, 0.1]}}
    needs_features = True
    uses_negatives = False

    def __init__(self, config: SLMRecConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.modalities = mmrec_modality_order(data.features)
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.dense = nn.ModuleDict()
        for m in self.modalities:
            feats = F.normalize(torch.from_numpy(data.features[m]))
            self.register_buffer(f"features_{m}", feats, persistent=False)
            self.dense[m] = xavier_linear(feats.shape[1], d)
        width = d * (len(self.modalities) + 1)
        self.user_fusion = xavier_linear(width, d)
        self.item_fusion = xavier_linear(width, d)
        # FAC heads: id → fine space; id chain → middle levels → coarse space (d/2).
        self.g_id = xavier_linear(d, d)
        self.g_modality = nn.ModuleList([xavier_linear(d, d)])
        self.g_chain = nn.ModuleList()
        if len(self.modalities) > 1:
            n_middle = max(len(self.modalities) - 2, 1)
            self.g_chain.extend(xavier_linear(d, d) for _ in range(n_middle))
            self.g_chain.append(xavier_linear(d, d // 2))
            self.g_modality.extend(xavier_linear(d, d) for _ in range(len(self.modalities) - 2))
            self.g_modality.append(xavier_linear(d, d // 2))
        self.register_buffer("adj", data.adjacency("sym", eps=1e-8), persistent=False)
        apply_weight_decay(self, config.weight_decay)

    def _branches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        inputs = [self.item_embedding] + [self.dense[m](getattr(self, f"features_{m}")) for m in self.modalities]
        return shared_user_lightgcn(self.adj, self.user_embedding, inputs, self.config.n_layers)

    def _fuse(self, branches, users: torch.Tensor | None = None, items: torch.Tensor | None = None):
        u = torch.cat([b[0] if users is None else b[0][users] for b in branches], dim=1)
        i = torch.cat([b[1] if items is None else b[1][items] for b in branches], dim=1)
        return self.user_fusion(u), self.item_fusion(i)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        # MMRec scores σ(uᵀi) (same ranking) with the last training batch's embeddings; this recomputes.
        return self._fuse(self._branches())

    def fac_loss(self, branches, items: torch.Tensor) -> torch.Tensor:
        """Fine-and-coarse alignment of the batch's positive items (no normalisation, as in MMRec)."""
        tau = self.config.ssl_temp
        a = self.g_id(branches[0][1][items])
        loss = info_nce(a, self.g_modality[0](branches[1][1][items]), tau)
        if len(self.g_chain):
            c = a
            for level, layer in enumerate(self.g_chain[:-1], start=1):
                c = layer(c)
                if level < len(self.modalities) - 1:   # a middle modality (none in MMRec's two-modality case)
                    loss = loss + info_nce(c, self.g_modality[level](branches[level + 1][1][items]), tau)
            c = self.g_chain[-1](c)
            loss = loss + info_nce(c, self.g_modality[-1](branches[-1][1][items]), tau)
        return loss

    def loss(self, batch: Batch) -> torch.Tensor:
        branches = self._branches()
        users, items = self._fuse(branches, batch.users, batch.pos_items)
        main = info_nce(F.normalize(users), F.normalize(items), self.config.temp)
        return main + self.config.ssl_alpha * self.fac_loss(branches, batch.pos_items)
