"""AlignRec's feature-quality protocols: hand-computed targets and ranks, blockwise = one block, real ≫ random."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from raymmrec.features.quality import (QualityConfig, TrainLog, feature_quality, item_cf_targets, masked_features,
                                       quality_report, recall_at, zero_shot_queries)


def _log(users, items, ts, n_users, n_items) -> TrainLog:
    return TrainLog(np.array(users), np.array(items), np.array(ts), n_users, n_items)


def test_item_cf_target_is_the_highest_cosine_co_occurring_item():
    # users: u0 {0,1}, u1 {0,1,2}, u2 {2,3}, u3 {3}; item 4 has no user
    log = _log([0, 0, 1, 1, 1, 2, 2, 3], [0, 1, 0, 1, 2, 2, 3, 3], [0] * 8, 4, 5)
    for block in (1, 2, 1024):
        targets = item_cf_targets(log.matrix(), block)
        # cos(0,1)=1; cos(2,0)=cos(2,1)=cos(2,3)=1/2 → lowest id; 4 co-occurs with nothing
        assert targets.tolist() == [1, 0, 0, 2, -1]


def test_zero_shot_target_is_the_latest_training_item():
    log = _log([0, 0, 0, 1, 2, 2], [5, 3, 4, 1, 2, 0], [10, 30, 20, 5, 7, 7], 3, 6)
    history, target = zero_shot_queries(log)
    assert target.tolist() == [3, -1, 0]          # user 1 has one interaction; user 2's tie goes to the later row
    assert history[0].indices.tolist() == [4, 5] and history[2].indices.tolist() == [2]


def test_recall_ranks_by_cosine_with_exclusions_and_id_tie_break():
    items = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    q = np.array([[1.0, 0.0]], np.float32)
    assert recall_at(q, np.array([2]), items, None, [2, 3], 1) == {2: 0.0, 3: 1.0}
    excl = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 4))
    assert recall_at(q, np.array([2]), items, excl, [2], 1) == {2: 1.0}
    zeros = np.zeros((4, 2), np.float32)          # constant features: target ranked by id, no lucky ties
    assert recall_at(q, np.array([3]), zeros, None, [3, 4], 1) == {3: 0.0, 4: 1.0}


def test_masking_zeroes_a_modality_or_takes_the_single_modality_substitute(tmp_path):
    feats = {"text": np.ones((10, 3), np.float32), "image": np.ones((10, 2), np.float32)}
    masked = masked_features(feats, tmp_path, "vision", 0.5, seed=0)
    assert (masked["image"].sum(axis=1) == 0).sum() == 5 and masked["text"].sum() == 30
    assert feats["image"].sum() == 20                                   # the input is not modified
    (tmp_path / "views").mkdir()
    np.save(tmp_path / "views" / "text_only.npy", np.full((10, 4), 7.0, np.float32))
    unified = masked_features({"fused": np.zeros((10, 4), np.float32)}, tmp_path, "vision", 0.3, seed=0)
    assert (unified["fused"][:, 0] == 7.0).sum() == 3
    assert masked_features({"fused": np.zeros((10, 4), np.float32)}, tmp_path, "text", 0.3, seed=0) is None


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from raymmrec.data.synth import SynthConfig, generate_dataset

    return generate_dataset(SynthConfig(size="tiny", seed=0), tmp_path_factory.mktemp("quality") / "tiny").root


def test_real_content_features_score_far_above_random(tiny_dir):
    from raymmrec.features.random_set import write_random_features
    from raymmrec.recsys.interaction_data import load_feature_set

    log = TrainLog.from_dataset_dir(tiny_dir)
    raw, _ = load_feature_set(tiny_dir / "features" / "raw")
    write_random_features(tiny_dir, "random", {k: v.shape[1] for k, v in raw.items()}, seed=0)
    cfg = QualityConfig(ks=[10, 20, 50])
    real_q = quality_report(tiny_dir, "raw", cfg)
    rand_q = quality_report(tiny_dir, "random", cfg)
    for proto in ("zero_shot", "item_cf"):
        assert real_q[f"{proto}/recall@20"] > 2.5 * rand_q[f"{proto}/recall@20"] + 0.05, proto
    # Half a modality masked: still well above random (a ratio: generator v2's content is item-level, not
    # cluster-level, so absolute recalls are lower than before).
    for proto in ("mask_vision_50/zero_shot", "mask_text_50/zero_shot", "mask_text_50/item_cf"):
        assert real_q[f"{proto}/recall@20"] > 1.8 * rand_q[f"{proto}/recall@20"], proto
    # random features sit near chance (K / n_items)
    assert rand_q["zero_shot/recall@20"] < 3 * 20 / log.n_items
    # blockwise evaluation gives the same numbers as one block
    assert feature_quality(raw, log, QualityConfig(block_size=7, mask_modalities=[])) == \
        {k: v for k, v in real_q.items() if not k.startswith("mask_")}
