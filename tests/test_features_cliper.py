"""CLIPER prompts, similarity weights (Eq. 2) and the four fusions; text truncation to the encoder's context."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raymmrec.features.cliper import fuse_views, fusion_dim, fusion_mlp, view_similarities, view_weights
from raymmrec.item_text import VIEWS, cliper_views, joined_text


def test_views_fill_templates_and_drop_missing_fields():
    row = {"title": "Soft Bottle", "brand": None, "categories": ["Baby", "Feeding", "Bottles"],
           "description": "Holds\n250 ml."}
    views = dict(zip(VIEWS, cliper_views(row)))
    assert views["title"] == "The product title is Soft Bottle."
    assert views["brand"] is None                        # dropped, not filled with '' or 'Missing'
    assert views["categories"] == "The product categories are Baby Feeding Bottles."
    assert views["description"] == "The product description is Holds 250 ml."
    assert views["global"] == ("The product descriptions are The product title is Soft Bottle. The product "
                               "categories are Baby Feeding Bottles. The product description is Holds 250 ml.")
    empty = cliper_views({"title": " ", "brand": "x", "categories": [], "description": None})
    assert empty == [None] * len(VIEWS)                  # 1-character fields count as missing, as in CLIPER
    assert joined_text({"title": None, "brand": "", "description": None}, ("title", "brand", "description")) is None


def test_similarities_are_cosines():
    rng = np.random.default_rng(0)
    views, image = rng.normal(size=(3, 5, 8)), rng.normal(size=(3, 8))
    sims = view_similarities(views, image)
    i, j = 2, 3
    expected = views[i, j] @ image[i] / np.linalg.norm(views[i, j]) / np.linalg.norm(image[i])
    assert sims[i, j] == pytest.approx(expected, rel=1e-5)


def test_sa_weights_sum_to_one_follow_similarities_and_mask_missing_views():
    sims = np.array([[0.30, 0.10, 0.20, 0.05, 0.25],
                     [0.30, 0.90, 0.20, 0.05, 0.25]], np.float32)
    present = np.array([[1, 1, 1, 1, 1], [1, 0, 1, 1, 1]], bool)   # item 1 has no brand
    w = view_weights(sims, present, tau=0.1)
    assert np.allclose(w.sum(axis=1), 1.0)
    assert list(np.argsort(-w[0])) == list(np.argsort(-sims[0]))     # weights follow the similarities
    assert w[1, 1] == 0.0                                           # the missing view is out of the softmax
    logits = sims[1, [0, 2, 3, 4]] / 0.1
    expected = np.exp(logits) / np.exp(logits).sum()
    assert np.allclose(w[1, [0, 2, 3, 4]], expected, atol=1e-6)
    # a lower temperature sharpens the same ranking
    assert view_weights(sims, present, tau=0.05)[0].max() > w[0].max()


def test_items_without_image_weigh_views_equally_and_without_text_get_zero():
    sims = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.4]], np.float32)
    present = np.array([[1, 1, 0], [0, 0, 0]], bool)
    w = view_weights(sims, present, tau=0.1, image_ok=np.array([False, True]))
    assert np.allclose(w[0], [0.5, 0.5, 0.0])
    assert np.all(w[1] == 0.0)


def test_fusions():
    rng = np.random.default_rng(1)
    n, c, d = 4, 5, 6
    views = rng.normal(size=(n, c, d)).astype(np.float32)
    present = np.ones((n, c), bool)
    present[0, 1] = False
    w = view_weights(rng.normal(size=(n, c)).astype(np.float32), present, 0.1)
    sa = fuse_views(views, w, present, "sa")
    assert np.allclose(sa[2], (views[2] * w[2][:, None]).sum(axis=0), atol=1e-5)
    total = fuse_views(views, w, present, "sum")
    assert np.allclose(total[0], views[0, [0, 2, 3, 4]].sum(axis=0), atol=1e-5)   # missing view adds nothing
    cat = fuse_views(views, w, present, "concat")
    assert cat.shape == (n, fusion_dim("concat", c, d)) == (n, c * d)
    assert np.all(cat[0, d:2 * d] == 0) and np.allclose(cat[1, :d], views[1, 0])
    mlp = fuse_views(views, w, present, "mlp", fusion_mlp(c, d, seed=3))
    again = fuse_views(views, w, present, "mlp", fusion_mlp(c, d, seed=3))
    assert mlp.shape == (n, d) and np.array_equal(mlp, again)                     # seeded: reproducible
    assert (mlp < 0).any() and np.all(mlp[mlp < 0] > -0.05 * np.abs(mlp).max())  # LeakyReLU slope 0.01


def test_mlp_fusion_is_leaky_relu_of_a_linear_map_of_the_concatenated_views():
    # 2 items, 2 views of dimension 2; item 0 lacks its second view (it enters the concatenation as zeros)
    views = np.array([[[1.0, -2.0], [3.0, 4.0]],
                      [[2.0, 1.0], [-1.0, 3.0]]], np.float32)
    present = np.array([[True, False], [True, True]])
    mlp = fusion_mlp(2, 2, seed=0)
    linear = mlp[0]
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 2.0, 1.0, 0.0]]))
        linear.bias.copy_(torch.tensor([0.5, -1.0]))
    # item 0: concat [1, -2, 0, 0] → [1 - 2 + 0.5, -4 - 1] = [-0.5, -5] → LeakyReLU(0.01) → [-0.005, -0.05]
    # item 1: concat [2, 1, -1, 3] → [2 + 1 + 0.5, 2 - 1 - 1] = [3.5, 0] → [3.5, 0]
    expected = np.array([[-0.005, -0.05], [3.5, 0.0]], np.float32)
    got = fuse_views(views, np.full((2, 2), 0.5, np.float32), present, "mlp", mlp)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_prompts_are_truncated_to_the_encoder_context():
    from raymmrec.encoders import ClipConfig, EncoderConfig, create_preprocess

    long_row = {"title": "Bottle", "description": " ".join(["word"] * 400)}
    text = cliper_views(long_row)[3]
    for long_text, ctx in ((False, 77), (True, 248)):
        tok = create_preprocess(EncoderConfig(kind="clip", clip=ClipConfig(long_text=long_text))).tokenizer
        ids = tok([text])
        assert ids.shape == (1, ctx)
        assert int(ids[0, -1]) == tok.eot_id                 # cut to the context, end-of-text kept
