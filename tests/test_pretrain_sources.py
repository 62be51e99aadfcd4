"""Pair sources through Ray Data: raw JSONL (Amazon 2014 / 2023 styles) and WebDataset shards; bad images counted."""
from __future__ import annotations

import base64
import io
import json
import tarfile
import time

import pytest
from PIL import Image

from raymmrec.encoders import EncoderConfig
from raymmrec.errors import DataError
from raymmrec.pretrain.pairs import MaskSpec, PairDataConfig, create_drop_counter, detect_format, pair_dataset


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 36), color).save(buf, format="PNG")
    return buf.getvalue()


def _write_jsonl(root):
    (root / "img").mkdir()
    (root / "img" / "a.png").write_bytes(_png((255, 0, 0)))
    (root / "img" / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    lines = [
        # Amazon 2014 meta, written as a Python literal, image by path relative to the file
        repr({"asin": "A", "title": "Red rattle", "brand": "Tiny", "categories": [["Baby", "Toys"]],
              "imUrl": "img/a.png"}),
        json.dumps({"asin": "B", "title": "Broken", "imUrl": "img/bad.jpg"}),
        # Amazon 2023 style: description list, store as brand, inline base64 image
        json.dumps({"parent_asin": "C", "title": "Blue cup", "store": "Cups", "description": ["BPA free", "200 ml"],
                    "image_bytes": base64.b64encode(_png((0, 0, 255))).decode()}),
        json.dumps({"asin": "D", "title": "No picture"}),
        "not a record at all",
    ]
    (root / "meta.jsonl").write_text("\n".join(lines) + "\n")


def _write_tar(path):
    with tarfile.open(path, "w") as tar:
        for key, payload in [("s1", {"png": _png((0, 255, 0)), "txt": b"green ball"}),
                             ("s2", {"jpg": b"garbage", "txt": b"bad"}),
                             ("s3", {"png": _png((9, 9, 9)), "json": json.dumps({"title": "Dark mat"}).encode()})]:
            for ext, data in payload.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _collect(ds):
    rows = 0
    texts = []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        rows += len(batch["tokens"])
        texts.extend(batch["tokens"].tolist())
    return rows, texts


def _totals(counter) -> dict:
    import ray

    for _ in range(50):        # the data tasks report with fire-and-forget calls
        totals = ray.get(counter.totals.remote())
        if sum(totals.values()) >= 2:
            return totals
        time.sleep(0.1)
    return ray.get(counter.totals.remote())


def test_jsonl_and_webdataset_sources(ray_local, tmp_path):
    _write_jsonl(tmp_path)
    shards = tmp_path / "shards"
    shards.mkdir()
    _write_tar(shards / "part-000.tar")
    assert detect_format(str(tmp_path / "meta.jsonl"))[0] == "jsonl"
    assert detect_format(str(shards))[0] == "webdataset"
    assert detect_format(str(tmp_path / "*.jsonl"))[1] == [str(tmp_path / "meta.jsonl")]

    masks = MaskSpec(0.15, 0.4)
    counter = create_drop_counter("test-drops-jsonl")
    rows, _ = _collect(pair_dataset(PairDataConfig(source=str(tmp_path / "meta.jsonl")), EncoderConfig(), masks,
                                    counter="test-drops-jsonl"))
    assert rows == 2                                   # A and C; B undecodable, D without image, 1 malformed line
    assert _totals(counter) == {"undecodable_images": 1, "missing_images": 1}

    counter = create_drop_counter("test-drops-tar")
    rows, _ = _collect(pair_dataset(PairDataConfig(source=str(shards), repeat=2), EncoderConfig(kind="clip"), None,
                                    counter="test-drops-tar"))
    assert rows == 4                                   # s1 and s3, read twice; s2 dropped both times
    assert _totals(counter) == {"undecodable_images": 2}


def test_unknown_source_is_a_one_line_data_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no items.parquet, .jsonl"):
        detect_format(str(tmp_path))
