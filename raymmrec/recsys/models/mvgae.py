"""MVGAE (Yi & Chen, IEEE TMM'21) as MMRec implements it: one variational GCN encoder per modality and one on
fixed random item vectors (the collaborative view), fused by products of Gaussian experts.

Branch b (any number of modalities, plus the collaborative one): x = nrm([P_b; MLP_b(f_b)]) with P_b a FIXED
random user table (MMRec never registers it, so it is never trained; here a buffer), conv(x) = nrm(mean over
{i} ∪ N(i) of xW + b), dropout 0.1; n_layers × (x = LReLU(g(LReLU(conv(x))))), then μ = g₄(LReLU(conv₄ x))
+ LReLU(W₄x), log σ² likewise. Fusion: PoE over the modalities, then PoE with the collaborative branch.
Scores: σ(μ_u)·σ(μ_i). Loss over the fused and each branch's latent z = μ + 0.1·ε·σ (training):
−Σ log₂ σ(σ(z_u·z_i⁺) − σ(max_j z_u·z_j⁻)) with j over the batch's negatives, + β·KL(μ, log σ²).

MMRec's training loss indexes the batch's items as node ids (user rows); here items are item nodes, as at
its evaluation. The linear maps MMRec computes and discards (non-concat layers) are left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.recsys.graphs import normalized_adjacency, sparse_mm
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.modal_branches import mmrec_modality_order
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch
from raymmrec.recsys.sparse_item_graphs import register_csr_pair

LATENT = 128            # MMRec's dim_latent
MAX_LOGVAR = 10.0
CONV_DROPOUT = 0.1
NOISE_SCALE = 0.1       # MMRec's reparametrisation: μ + ε · 0.1 · σ
COLLABORATIVE = "collaborative"


@dataclass
class MVGAEConfig(ModelConfig):
    """MVGAE hyper-parameters (MMRec's MVGAE.yaml); beta weighs the KL terms."""

    n_layers: int = 1
    beta: float = 0.01

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"beta": {"grid": [0.01, 0.1, 1.0]}}


def xavier_normal_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """nn.Linear with a xavier-normal weight (bias keeps PyTorch's default)."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.xavier_normal_(layer.weight)
    return layer


class MeanConv(nn.Module):
    """MMRec's BaseModel with aggr='mean': nrm(mean over self and neighbours of x W + b), dropout 0.1."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(in_dim, out_dim)))
        self.bias = nn.Parameter(torch.empty(out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, adj: torch.Tensor, adj_t: torch.Tensor) -> torch.Tensor:
        out = F.normalize(sparse_mm(adj, x @ self.weight, adj_t) + self.bias, dim=-1)
        return F.dropout(out, CONV_DROPOUT, self.training)


class VariationalBranch(nn.Module):
    """One encoder: (μ, log σ²) over [users; items] from fixed user preferences and one item input."""

    def __init__(self, n_users: int, item_dim: int, d: int, n_layers: int) -> None:
        super().__init__()
        self.register_buffer("preference", nn.init.xavier_normal_(torch.empty(n_users, LATENT)))
        self.projection = xavier_normal_linear(item_dim, LATENT)
        dims = [LATENT] + [d] * n_layers
        self.convs = nn.ModuleList(MeanConv(a, d) for a in dims[:-1])
        self.combines = nn.ModuleList(xavier_normal_linear(d, d) for _ in range(n_layers))
        if n_layers > 1:   # MMRec leaves g_layer2 at PyTorch's default init
            self.combines[1] = nn.Linear(d, d)
        self.mu_conv, self.logvar_conv = MeanConv(dims[-1], d), MeanConv(dims[-1], d)
        self.mu_skip, self.logvar_skip = xavier_normal_linear(dims[-1], d), xavier_normal_linear(dims[-1], d)
        self.mu_out, self.logvar_out = xavier_normal_linear(d, d), xavier_normal_linear(d, d)

    def forward(self, items: torch.Tensor, adj: torch.Tensor, adj_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.normalize(torch.cat([self.preference, self.projection(items)]))
        for conv, combine in zip(self.convs, self.combines):
            x = F.leaky_relu(combine(F.leaky_relu(conv(x, adj, adj_t))))
        mu = self.mu_out(F.leaky_relu(self.mu_conv(x, adj, adj_t))) + F.leaky_relu(self.mu_skip(x))
        logvar = self.logvar_out(F.leaky_relu(self.logvar_conv(x, adj, adj_t))) + F.leaky_relu(self.logvar_skip(x))
        return mu, logvar


def product_of_experts(mus: list[torch.Tensor], logvars: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision-weighted Gaussian fusion (variance + 1e-8 per expert); returns (μ, log σ²)."""
    precisions = [1.0 / (torch.exp(lv) + 1e-8) for lv in logvars]
    total = sum(precisions)
    return sum(m * t for m, t in zip(mus, precisions)) / total, torch.log(1.0 / total)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """−½ mean over nodes of Σ_d (1 + log σ² − μ² − σ²), log σ² clamped at 10."""
    logvar = logvar.clamp(max=MAX_LOGVAR)
    return -0.5 * torch.mean(torch.sum(1 + logvar - mu ** 2 - logvar.exp(), dim=1))


@register_model("mvgae")
class MVGAE(Backbone):
    """Variational modality and collaborative GCN encoders fused by products of experts."""

    Config = MVGAEConfig
    needs_features = True
    trainer_search_space: ClassVar[dict[str, dict[str, list]]] = {"lr": {"grid": [1e-4, 1e-3, 1e-2, 1e-1]}}

    def __init__(self, config: MVGAEConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.modalities = mmrec_modality_order(data.features)
        for m in self.modalities:
            self.register_buffer(f"features_{m}", torch.from_numpy(data.features[m].copy()), persistent=False)
        # MMRec's collaborative input: fixed random item vectors (never registered, never trained)
        self.register_buffer(f"features_{COLLABORATIVE}", nn.init.xavier_normal_(torch.empty(self.n_items, d)))
        self.branches = nn.ModuleDict({b: VariationalBranch(self.n_users, getattr(self, f"features_{b}").shape[1], d,
                                                            config.n_layers)
                                       for b in self.modalities + [COLLABORATIVE]})
        # mean over {i} ∪ N(i): D⁻¹(A + I), not symmetric, so its transpose serves the backward pass
        register_csr_pair(self, "adj", normalized_adjacency(data.train, "rw_self_loop"))

    def _encode(self) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor, torch.Tensor]:
        """Each branch's (μ, log σ²), and the fused (μ, log σ²)."""
        out = {b: branch(getattr(self, f"features_{b}"), self.adj, self.adj_t) for b, branch in self.branches.items()}
        mu, logvar = product_of_experts([out[m][0] for m in self.modalities], [out[m][1] for m in self.modalities])
        c_mu, c_logvar = out[COLLABORATIVE]
        mu, logvar = product_of_experts([mu, c_mu], [logvar, c_logvar])
        return out, mu, logvar

    def _sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * NOISE_SCALE * torch.exp(0.5 * logvar.clamp(max=MAX_LOGVAR))

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        _, mu, _ = self._encode()
        z = torch.sigmoid(mu)
        return z[: self.n_users], z[self.n_users:]

    def _reconstruction(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        z = torch.sigmoid(z)
        u = z[batch.users]
        pos = torch.sigmoid((u * z[batch.pos_items + self.n_users]).sum(1))
        # each user against the hardest of the batch's negatives (MMRec's B × B repeat, as one product)
        neg = torch.sigmoid((u @ z[batch.neg_items + self.n_users].T).max(dim=1).values)
        return -(F.logsigmoid(pos - neg) / math.log(2.0)).sum()

    def loss(self, batch: Batch) -> torch.Tensor:
        branches, mu, logvar = self._encode()
        beta = self.config.beta
        total = self._reconstruction(self._sample(mu, logvar), batch) + beta * kl_divergence(mu, logvar)
        for b_mu, b_logvar in branches.values():
            total = total + self._reconstruction(self._sample(b_mu, b_logvar), batch) + beta * kl_divergence(b_mu, b_logvar)
        return total
