"""SMORE (Ong & Khong, WSDM'25) as MMRec implements it: spectrum-domain modality denoising and fusion, item–item
views on frozen KNN-w graphs plus a max-pooled fusion graph, fusion-guided attention and preference gates.

Generalised from MMRec's (image, text) pair to any M modalities: one projection, complex filter, purifier
gate, item graph, attention query and preference gate per modality; the fusion spectrum is the product of
the M modality spectra times its own filter; the fusion graph is the entry-wise max over the M graphs'
edges (MMRec's -inf fill); the side embedding is the mean of the M modality parts and the fusion part.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from raymmrec.recsys.embedding_tables import trainable_feature_tables, xavier_uniform_table
from raymmrec.recsys.graphs import lightgcn_propagate, sparse_mm
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.modal_branches import mmrec_modality_order
from raymmrec.recsys.models.mgcn import gate
from raymmrec.recsys.backbone import ModelConfig
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.side_content import SideContentBackbone
from raymmrec.recsys.sparse_item_graphs import register_csr_pair, user_item_block



@dataclass
class SMOREConfig(ModelConfig):
    """SMORE hyper-parameters; `image` uses image_knn_k, every other modality text_knn_k."""

    n_ui_layers: int = 3
    n_layers: int = 1               # item-graph propagations
    image_knn_k: int = 10
    text_knn_k: int = 10
    reg_weight: float = 1e-5
    cl_loss: float = 0.01
    dropout_rate: float = 0.0       # on the preference gates
    knn_block_rows: int = 2048

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"n_ui_layers": {"grid": [3, 4]}, "image_knn_k": {"grid": [10, 15, 20, 40]},
                "text_knn_k": {"grid": [10, 15, 20, 40]}, "reg_weight": {"grid": [1e-5, 1e-4]},
                "dropout_rate": {"grid": [0.0, 0.1]}}


def max_pool_graphs(graphs: list[sp.spmatrix]) -> sp.csr_matrix:
    """Entry-wise max over the union of the graphs' stored entries (an entry absent from a graph is not 0)."""
    coo = [sp.coo_matrix(g) for g in graphs]
    n = coo[0].shape[0]
    keys = np.concatenate([c.row.astype(np.int64) * n + c.col for c in coo])
    vals = np.concatenate([c.data for c in coo])
    order = np.lexsort((vals, keys))          # by key, then value: the last of each key is its max
    keys, vals = keys[order], vals[order]
    last = np.flatnonzero(np.r_[keys[1:] != keys[:-1], True])
    rows, cols = np.divmod(keys[last], n)
    return sp.csr_matrix((vals[last].astype(np.float32), (rows, cols)), shape=(n, n))


def complex_filter(d: int) -> nn.Parameter:
    """A learnable spectrum filter over rfft's d//2 + 1 frequencies, as (real, imaginary) pairs."""
    return nn.Parameter(torch.randn(1, d // 2 + 1, 2))


def query(d: int) -> nn.Sequential:
    """Linear → tanh → Linear (no bias), d → d: the fusion-guided attention logits."""
    return nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d, bias=False))


@register_model("smore")
class SMORE(SideContentBackbone):
    """LightGCN content view plus spectrum-filtered modality and fusion item–item views, gated by preference."""

    Config = SMOREConfig
    needs_features = True
    trainer_defaults: ClassVar[dict[str, Any]] = {"lr_scheduler": [0.96, 50.0]}

    def __init__(self, config: SMOREConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.modalities = mmrec_modality_order(data.features)
        self.user_embedding = xavier_uniform_table(self.n_users, d)
        self.item_embedding = xavier_uniform_table(self.n_items, d)
        self.feature_tables = trainable_feature_tables(data.features)   # the graphs use the originals
        self.projections = nn.ModuleDict({m: nn.Linear(data.features[m].shape[1], d) for m in self.modalities})
        self.filters = nn.ParameterDict({m: complex_filter(d) for m in self.modalities})
        self.fusion_filter = complex_filter(d)
        self.purifiers = nn.ModuleDict({m: gate(d) for m in self.modalities})
        self.fusion_purifier = gate(d)
        self.queries = nn.ModuleDict({m: query(d) for m in self.modalities})
        self.preferences = nn.ModuleDict({m: gate(d) for m in self.modalities})
        self.fusion_preference = gate(d)
        self.dropout = nn.Dropout(config.dropout_rate)
        graphs = {m: data.knn_graph(m, config.image_knn_k if m == "image" else config.text_knn_k, weighted=True,
                                    block_rows=config.knn_block_rows) for m in self.modalities}
        for m, g in graphs.items():
            register_csr_pair(self, f"item_adj_{m}", g)
        register_csr_pair(self, "fusion_adj", max_pool_graphs(list(graphs.values())))
        self.register_buffer("adj", data.adjacency("sym_prime"), persistent=False)
        register_csr_pair(self, "r_adj", user_item_block(data.train, "sym_prime"))

    def _spectrum(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-modality denoised features and the cross-modal fusion, filtered in the frequency domain."""
        d = self.config.embedding_size
        spectra = [torch.fft.rfft(self.projections[m](self.feature_tables[m]), dim=1, norm="ortho")
                   for m in self.modalities]
        convs = [torch.fft.irfft(s * torch.view_as_complex(self.filters[m]), n=d, dim=1, norm="ortho")
                 for m, s in zip(self.modalities, spectra)]
        product = spectra[0]
        for s in spectra[1:]:
            product = product * s
        fusion = torch.fft.irfft(product * torch.view_as_complex(self.fusion_filter), n=d, dim=1, norm="ortho")
        return convs, fusion

    def _item_view(self, x: torch.Tensor, graph: str) -> torch.Tensor:
        """[R̂ x; x] after n_layers propagations of x over item graph `graph`."""
        for _ in range(self.config.n_layers):
            x = sparse_mm(getattr(self, graph), x, getattr(self, f"{graph}_t"))
        return torch.cat([sparse_mm(self.r_adj, x, self.r_adj_t), x])

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(side, content) embeddings over [users; items]."""
        convs, fusion_conv = self._spectrum()
        ids = self.item_embedding
        views = [self._item_view(ids * self.purifiers[m](c), f"item_adj_{m}") for m, c in zip(self.modalities, convs)]
        fusion = self._item_view(ids * self.fusion_purifier(fusion_conv), "fusion_adj")
        content = lightgcn_propagate(self.adj, torch.cat([self.user_embedding, ids]), self.config.n_ui_layers)
        parts = [self.dropout(self.preferences[m](content)) * torch.softmax(self.queries[m](fusion), dim=-1) * v
                 for m, v in zip(self.modalities, views)]
        parts.append(self.dropout(self.fusion_preference(content)) * fusion)
        return torch.stack(parts).mean(dim=0), content
