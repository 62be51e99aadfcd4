import numpy as np
import pyarrow.parquet as pq
import pytest

from raymmrec.data.mmrec import export_mmrec, import_mmrec
from raymmrec.data.prepare import PrepareConfig, prepare
from raymmrec.data.synth import SynthConfig, generate_dataset
from raymmrec.errors import DataError
from raymmrec.tracking import TrackingConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate_dataset(SynthConfig(size="tiny", seed=5), tmp_path_factory.mktemp("mmrec") / "tiny")


def test_export_writes_mmrec_folder_format(tiny, tmp_path):
    folder = export_mmrec(tiny, tmp_path / "baby", "baby", feature_set="raw")
    lines = (folder / "baby.inter").read_text().splitlines()
    assert lines[0] == "userID\titemID\trating\ttimestamp\tx_label"
    assert len(lines) - 1 == tiny.stats()["interactions"]
    user, item, _, _, label = lines[1].split("\t")
    assert int(label) in (0, 1, 2)
    image = np.load(folder / "image_feat.npy")
    assert image.dtype == np.float32 and image.shape[0] == tiny.stats()["items"]
    assert (folder / "i_id_mapping.csv").read_text().splitlines()[0] == "asin\titemID"
    assert (folder / "u_id_mapping.csv").read_text().splitlines()[0] == "user_id\tuserID"


def test_import_export_round_trip(tiny, tmp_path):
    folder = export_mmrec(tiny, tmp_path / "export", "tiny")
    ds = prepare(PrepareConfig(source="mmrec", folder=str(folder), out=str(tmp_path / "imported"),
                               export_mmrec=str(tmp_path / "again"), export_features="mmrec",
                               tracking=TrackingConfig(enabled=False)))
    assert pq.read_table(ds.interactions).equals(pq.read_table(tiny.interactions))
    for modality in ("image", "text"):
        assert np.array_equal(np.load(ds.features("mmrec") / f"{modality}.npy"),
                              np.load(tiny.features("raw") / f"{modality}.npy"))
    assert pq.read_table(ds.items).column("asin").equals(pq.read_table(tiny.items).column("asin"))
    assert pq.read_table(ds.users).equals(pq.read_table(tiny.users))
    assert ds.stats()["splits"] == tiny.stats()["splits"]
    # Exported again from the imported dir: the same files.
    for name in ("tiny.inter", "image_feat.npy", "text_feat.npy", "i_id_mapping.csv", "u_id_mapping.csv"):
        again = tmp_path / "again" / (name.replace("tiny", "imported"))
        assert again.read_bytes() == (folder / name).read_bytes(), name


def _folder(tmp_path, inter: str, n_items: int = 3):
    folder = tmp_path / "f"
    folder.mkdir(exist_ok=True)
    (folder / "x.inter").write_text(inter)
    np.save(folder / "image_feat.npy", np.ones((n_items, 4)))
    return folder


def test_unknown_column_is_named(tmp_path):
    folder = _folder(tmp_path, "userID\titemID\tscore\tx_label\n0\t0\t1\t0\n")
    with pytest.raises(DataError, match="unknown column 'score'"):
        import_mmrec(folder, tmp_path / "out")


def test_feature_rows_must_match_items(tmp_path):
    folder = _folder(tmp_path, "userID\titemID\tx_label\n0\t0\t0\n0\t1\t1\n0\t2\t2\n", n_items=5)
    with pytest.raises(DataError, match=r"image_feat.npy': expected 3 rows"):
        import_mmrec(folder, tmp_path / "out")


def test_bad_rows_are_counted_and_skipped_bad_labels_rejected(tmp_path):
    folder = _folder(tmp_path, "userID\titemID\tx_label\n0\t0\t0\n0\t1\n1\t1\t1\n1\t2\t2\n")
    ds, stats = import_mmrec(folder, tmp_path / "out")
    assert stats["interactions"] == 3 and stats["skipped"] == {"inter.wrong_field_count": 1}
    bad = _folder(tmp_path, "userID\titemID\tx_label\n0\t0\t0\n0\t1\t7\n0\t2\t2\n")
    with pytest.raises(DataError, match="line 3: x_label must be 0, 1 or 2, got 7"):
        import_mmrec(bad, tmp_path / "out2")
    with pytest.raises(DataError, match="expected exactly one .inter file"):
        import_mmrec(tmp_path, tmp_path / "out3")


def test_every_feat_file_of_a_folder_is_a_modality_every_backbone_reads(tmp_path):
    """TikTok ships audio_feat.npy beside image_feat.npy: import, export and training all see `audio`."""
    import torch

    from raymmrec.recsys.interaction_data import InteractionData
    from raymmrec.recsys.registry import build_model, get_model, model_names
    from raymmrec.recsys.sampling import BPRSampler
    from recsys_planted import planted, write_mmrec_folder

    p = planted()
    folder = write_mmrec_folder(p, tmp_path / "tiktokish")
    (folder / "text_feat.npy").unlink()                          # TikTok's set: image and audio only
    audio = np.random.default_rng(1).standard_normal((p.n_items, 12)).astype(np.float32)
    np.save(folder / "audio_feat.npy", audio)
    data = InteractionData.load(folder)
    assert sorted(data.features) == ["audio", "image"] and data.features["audio"].shape == (p.n_items, 12)
    ds, _ = import_mmrec(folder, tmp_path / "imported")
    assert np.array_equal(np.load(ds.features("mmrec") / "audio.npy"), audio)
    again = export_mmrec(ds, tmp_path / "again", "again", feature_set="mmrec")
    assert sorted(f.name for f in again.glob("*_feat.npy")) == ["audio_feat.npy", "image_feat.npy"]

    shifted = InteractionData.from_arrays(p.users, p.items, p.splits, p.n_users, p.n_items,
                                          {**data.features, "audio": audio[::-1].copy()})
    multimodal = [m for m in model_names() if get_model(m).model_cls.needs_features]
    assert {"vbpr", "freedom", "lattice", "bm3", "mgcn", "alignrec"} <= set(multimodal)

    def first_loss(name, d):
        torch.manual_seed(0)
        model = build_model(name, {}, d)
        model.train()
        model.pre_epoch(1)
        torch.manual_seed(1)
        if not model.learns:             # ItemKNNCBF: no loss, its scores read the features
            model.eval()
            return float(model.full_scores(torch.arange(d.n_users)).sum())
        batch = next(BPRSampler(d, batch_size=64, negatives=model.uses_negatives, seed=0).epoch())
        return float(model.loss(batch).detach())

    for name in multimodal:
        base = first_loss(name, data)
        assert np.isfinite(base), name
        assert first_loss(name, shifted) != base, f"{name} does not read the audio modality"
