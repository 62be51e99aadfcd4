"""The base class of every backbone: what the one trainer needs and nothing more."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from raymmrec.errors import DataError
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.sampling import Batch

SEARCH_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


@dataclasses.dataclass
class ModelConfig:
    """Base of the model config dataclasses: fields are hyper-parameters with MMRec's defaults."""

    embedding_size: int = 64

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        """The hyper-parameter grid of ALGORITHMS.md: {field: {"grid" | "choice": [...]} or {"loguniform": [lo, hi]}}."""
        return {}


class Backbone(nn.Module):
    """A backbone: `loss(batch)` for training, `full_scores(users)` for full-ranking evaluation.

    Subclasses set `Config`, build their parameters from `(config, data)`, implement `loss` and either
    `final_embeddings` (dot-product models; scoring and its per-evaluation cache come for free) or
    `full_scores`. `pre_epoch` runs before each epoch's batches (FREEDOM's edge pruning).
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    uses_negatives: ClassVar[bool] = True      # False: batches carry no negatives (BM3)
    needs_features: ClassVar[bool] = False      # True: refuses data without item features
    learns: ClassVar[bool] = True               # False: scores are built once (ItemKNNCBF): one epoch is all
    name: ClassVar[str] = ""                    # set by @register_model
    # MMRec's per-model yaml: trainer settings the model trains with unless the run sets them (e.g. lr_scheduler),
    # and trainer fields its grid searches (e.g. lr), as `trainer.<field>` keys of the tune space
    trainer_defaults: ClassVar[dict[str, Any]] = {}
    trainer_search_space: ClassVar[dict[str, dict[str, list]]] = {}

    def __init__(self, config: ModelConfig, data: InteractionData) -> None:
        super().__init__()
        self.config = config
        self.n_users = data.n_users
        self.n_items = data.n_items
        self._eval_cache: Any = None

    @classmethod
    def check_data(cls, config: ModelConfig, data: InteractionData) -> None:
        """Raise a one-line DataError when `data` cannot train this model (called before building it)."""
        if cls.needs_features and not data.features:
            raise DataError(f"model '{cls.name}' needs item features, but {data.source or data.name} was loaded "
                            f"without any (pass features=<feature set name>)")

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The optimizer's parameter groups (one at the trainer's lr; end-to-end training adds the encoder's)."""
        return [{"params": list(self.parameters()), "lr": lr}]

    def set_item_features(self, features: dict[str, torch.Tensor]) -> None:
        """Replace the item features read in `loss` / `final_embeddings` (end-to-end training); rows in item order."""
        raise DataError(f"model '{self.name}' does not support paradigm=ete (it does not read its item features "
                        f"at every step; supported: vbpr, mmgcn)")

    def pre_epoch(self, epoch: int) -> None:
        """Per-epoch preprocessing before the training batches (default: none)."""

    def loss(self, batch: Batch) -> torch.Tensor:
        """The scalar training loss of one batch: BPR plus the model's own terms."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss(batch)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) representations whose inner product is the score, in the current train/eval mode."""
        raise NotImplementedError

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of `users` against every item; propagation is computed once per evaluation and cached."""
        if self._eval_cache is None:
            with torch.no_grad():
                self._eval_cache = self.final_embeddings()
        user_e, item_e = self._eval_cache
        return user_e[users] @ item_e.T

    def train(self, mode: bool = True) -> "Backbone":
        # Switching mode (the trainer's model.eval() / model.train()) starts a fresh evaluation cache.
        self._eval_cache = None
        return super().train(mode)

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.parameters()).device
