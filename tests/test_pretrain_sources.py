"""Pair sources through Ray Data: raw JSONL (Amazon 2014 / 2023 styles) and WebDataset shards; bad images counted."""
from __future__ import annotations

import base64
import io
import json
import tarfile
import time

import pytest
from PIL import Image

from raymmrec.encoders import EncoderConfig, create_preprocess
from raymmrec.errors import DataError
from raymmrec.pretrain.pairs import MaskSpec, PairDataConfig, create_drop_counter, detect_format, pair_dataset


RED, GREEN, BLUE = 0, 1, 2      # colour channels


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


def _collect(ds) -> list[tuple[list[int], int]]:
    """Each surviving pair as (its token ids, the dominant colour channel of its image)."""
    pairs = []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        colour = batch["pixels"].mean(axis=(2, 3)).argmax(axis=1)
        pairs.extend(zip(batch["tokens"].tolist(), colour.tolist()))
    return pairs


def _who(pairs, encoder: EncoderConfig, names: dict[str, str]) -> list[tuple[str, int]]:
    """Name each pair by the record whose words its tokens hold (`names`: record → words), with its colour."""
    tok = create_preprocess(encoder).tokenizer
    special = set(tok([""])[0].tolist())
    words = {name: set(tok([text])[0].tolist()) - special for name, text in names.items()}
    out = []
    for tokens, colour in pairs:
        hits = [name for name, ids in words.items() if ids <= set(tokens)]
        assert len(hits) == 1, (hits, tokens)
        out.append((hits[0], colour))
    return sorted(out)


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
    pairs = _collect(pair_dataset(PairDataConfig(source=str(tmp_path / "meta.jsonl")), EncoderConfig(), masks,
                                  counter="test-drops-jsonl"))
    # A (red, by path) and C (blue, inline base64) survive; B undecodable, D without image, 1 malformed line
    names = {"A": "Red rattle", "B": "Broken", "C": "Blue cup", "D": "No picture"}
    assert _who(pairs, EncoderConfig(), names) == [("A", RED), ("C", BLUE)]
    assert _totals(counter) == {"undecodable_images": 1, "missing_images": 1}

    counter = create_drop_counter("test-drops-tar")
    clip = EncoderConfig(kind="clip")
    pairs = _collect(pair_dataset(PairDataConfig(source=str(shards), repeat=2), clip, None, counter="test-drops-tar"))
    # s1 (green, txt) and s3 (json title), read twice; s2's garbage image drops it both times
    who = _who(pairs, clip, {"s1": "green ball", "s2": "bad", "s3": "Dark mat"})
    assert [name for name, _ in who] == ["s1", "s1", "s3", "s3"] and who[0][1] == GREEN
    assert _totals(counter) == {"undecodable_images": 2}


def test_unknown_source_is_a_one_line_data_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no items.parquet, .jsonl"):
        detect_format(str(tmp_path))


def _pairs_out(source) -> int:
    cfg = PairDataConfig(source=str(source), preprocess_cpus=0.5, augment=False)
    return sum(len(b["tokens"]) for b in pair_dataset(cfg, EncoderConfig(), None).iter_batches(batch_size=None))


def test_every_source_streams_when_no_whole_cpu_is_free(ray_local, tmp_path, synth_dir):
    # Fractional trainers hold 1.5 of the 2 CPUs: every data task, the read of each format included, must fit in
    # data.preprocess_cpus (a whole-CPU read task waits for ever, as it did after a lost node moved the trainers).
    import pyarrow.parquet as pq
    from ray.util.placement_group import placement_group, remove_placement_group

    _write_jsonl(tmp_path)
    shards = tmp_path / "shards"
    shards.mkdir()
    _write_tar(shards / "part-000.tar")
    trainers = placement_group([{"CPU": 0.75}, {"CPU": 0.75}])
    ray_local.get(trainers.ready(), timeout=60)
    try:
        counts = [_pairs_out(source) for source in (synth_dir, tmp_path / "meta.jsonl", shards)]
    finally:
        remove_placement_group(trainers)
    assert counts == [pq.read_metadata(synth_dir / "items.parquet").num_rows, 2, 2]
