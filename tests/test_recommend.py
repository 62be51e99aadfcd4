import numpy as np
import pytest
import torch

from raymmrec.data.synth import SynthConfig, generate_dataset
from raymmrec.errors import ConfigError, DataError
from raymmrec.recommendations import RecommendConfig, read_recommendations, write_recommendations
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.trainer import TrainerConfig, load_trained_model, train_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    # 'small', not 'tiny': tiny has ~80 cold items and ~20 users with a cold target, too few to tell signal from luck
    ds = generate_dataset(SynthConfig(size="small", seed=3), root / "data")
    data = InteractionData.load(ds.root, "raw")
    res = train_model("vbpr", {}, TrainerConfig(epochs=4, batch_size=256, patience=5), data,
                      checkpoint_dir=root / "ckpt")
    return ds.root, res.best_checkpoint, data


def test_recommendations_exclude_train_and_match_model_scores(trained, ray_local, mlflow_store, tmp_path):
    data_dir, ckpt, data = trained
    out = write_recommendations(RecommendConfig(data=str(data_dir), checkpoint=ckpt, k=5, cold_k=3, output=str(tmp_path / "recs"),
                                    batch_users=64, tracking=mlflow_store), out=lambda s: None)
    table = read_recommendations(out)
    assert table.num_rows == data.n_users
    assert table["user"].to_pylist() == list(range(data.n_users))
    model = load_trained_model(ckpt, data)
    with torch.no_grad():
        scores = model.full_scores(torch.arange(data.n_users)).numpy()
    cold = set(np.flatnonzero(data.cold_items))
    for row in table.to_pylist():
        u, items = row["user"], row["items"]
        train_items = set(data.train[u].indices)
        assert len(items) == 5 and not (set(items) & train_items)
        expected = sorted(set(range(data.n_items)) - train_items, key=lambda i: -scores[u, i])[:5]
        np.testing.assert_allclose(sorted(scores[u, items])[::-1], scores[u, expected], rtol=1e-5)
        assert row["scores"] == sorted(row["scores"], reverse=True)
        assert set(row["cold_items"]) <= cold and not (set(row["cold_items"]) & train_items)
        assert row["cold_scores"] == sorted(row["cold_scores"], reverse=True)


def test_cold_start_list_finds_held_out_cold_items_better_than_chance(trained, ray_local, mlflow_store, tmp_path):
    data_dir, ckpt, data = trained
    k = 10
    out = write_recommendations(RecommendConfig(data=str(data_dir), checkpoint=ckpt, k=5, cold_k=k, output=str(tmp_path / "r"),
                                    tracking=mlflow_store), out=lambda s: None)
    table = read_recommendations(out).to_pylist()
    cold = data.cold_items
    held = (data.valid + data.test).tocsr()
    hits = chance = 0.0
    for row in table:
        u = row["user"]
        targets = [i for i in held[u].indices if cold[i] and i not in set(data.train[u].indices)]
        if not targets:
            continue
        hits += len(set(row["cold_items"]) & set(targets)) / len(targets)
        chance += min(k / max(int(cold.sum()) - len(set(data.train[u].indices) & set(np.flatnonzero(cold))), 1), 1.0)
    assert chance > 0
    assert hits > 4 * chance          # the planted clusters make content a strong cold-start signal


def test_recommend_bad_input(trained, tmp_path):
    data_dir, _, _ = trained
    with pytest.raises(ConfigError, match="checkpoint"):
        write_recommendations(RecommendConfig(data=str(data_dir)))
    with pytest.raises(DataError, match="does not exist"):
        write_recommendations(RecommendConfig(data=str(data_dir), checkpoint=str(tmp_path / "none.pt")))
