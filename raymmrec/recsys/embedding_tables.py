"""Parameter tables shared by the multimodal backbones: xavier-initialised ID tables, trainable feature copies."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn


def xavier_uniform_table(rows: int, dim: int) -> nn.Parameter:
    """A rows × dim table with xavier_uniform on the whole table (bound sqrt(6 / (rows + dim)), as MMRec)."""
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(rows, dim)))


def trainable_feature_tables(features: Mapping[str, np.ndarray]) -> nn.ParameterDict:
    """Trainable copies of the raw item features, one per modality (MMRec's from_pretrained(freeze=False))."""
    return nn.ParameterDict({m: nn.Parameter(torch.from_numpy(np.array(f, dtype=np.float32)))
                             for m, f in features.items()})
