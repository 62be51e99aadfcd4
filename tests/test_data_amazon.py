import gzip
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pyarrow.parquet as pq
import pytest

from raymmrec.data.prepare import PrepareConfig, prepare
from raymmrec.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
USERS = [f"A{u:03d}XYZ" for u in range(10)]
ASINS = [f"B000{i:04d}" for i in range(6)]


def _reviews_2018(path: Path) -> None:
    """10 users x 6 items, half strict JSON and half Python-literal lines, one malformed, one without user."""
    lines = []
    for u, user in enumerate(USERS):
        for i, asin in enumerate(ASINS):
            rec = {"reviewerID": user, "asin": asin, "overall": float(1 + (u + i) % 5),
                   "unixReviewTime": 1_400_000_000 + 86_400 * (u * 6 + i), "reviewText": "it's \"fine\"",
                   "verified": True}
            lines.append(json.dumps(rec) if (u + i) % 2 else repr(rec))
    lines.insert(7, '{"reviewerID": "broken", "asin": ')
    lines.insert(20, json.dumps({"asin": ASINS[0], "overall": 5.0, "unixReviewTime": 1}))
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


def _meta_2018(path: Path) -> None:
    lines = [repr({"asin": ASINS[0], "title": "Soft blanket", "brand": "Cozy", "categories": [["Baby", "Bedding"]],
                   "description": "A soft blanket.", "price": 19.99, "imUrl": "http://x/0.jpg"})]
    for i, asin in enumerate(ASINS[1:], 1):
        lines.append(json.dumps({"asin": asin, "title": f"Item {i}", "brand": "Acme", "category": ["Baby", "Toys"],
                                 "description": ["Line one.", "Line two."], "price": f"${i}.50",
                                 "imageURLHighRes": [f"http://x/{i}.jpg"]}))
    lines.append(json.dumps({"asin": "B999", "title": "not in reviews"}))
    lines.append("{not json")
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture()
def amazon2018(tmp_path):
    reviews, meta = tmp_path / "reviews_Baby.json.gz", tmp_path / "meta_Baby.json.gz"
    _reviews_2018(reviews)
    _meta_2018(meta)
    return reviews, meta


def test_amazon2018_gzip_strict_and_python_literal_lines(amazon2018, tmp_path, mlflow_store):
    reviews, meta = amazon2018
    cfg = PrepareConfig(source="amazon2018", reviews=str(reviews), meta=str(meta), out=str(tmp_path / "ds"),
                        chunk_bytes=2000, progress=False, tracking=mlflow_store)
    ds = prepare(cfg)
    stats = ds.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (10, 6, 60)
    assert stats["skipped"] == {"reviews.malformed": 1, "reviews.missing_user_or_item": 1, "meta.malformed": 1}
    items = pq.read_table(ds.items).to_pylist()
    by_asin = {r["asin"]: r for r in items}
    assert by_asin[ASINS[0]]["title"] == "Soft blanket" and by_asin[ASINS[0]]["categories"] == ["Baby", "Bedding"]
    assert by_asin[ASINS[0]]["price"] == pytest.approx(19.99) and by_asin[ASINS[0]]["image"] == "http://x/0.jpg"
    assert by_asin[ASINS[2]]["description"] == "Line one. Line two." and by_asin[ASINS[2]]["price"] == 2.5
    assert all(r["image_ok"] is None for r in items)        # URLs are not fetched here
    users = pq.read_table(ds.users).column("user_id").to_pylist()
    inter = pq.read_table(ds.interactions).to_pandas()
    assert set(users) == set(USERS)
    assert inter.timestamp.min() == 1_400_000_000
    assert (ds.features("raw") / "text.npy").is_file() and not (ds.features("raw") / "image.npy").exists()
    run = mlflow.search_runs(experiment_names=["test"]).iloc[0]
    assert run["metrics.skipped.reviews.malformed"] == 1 and run["metrics.skipped.meta.malformed"] == 1
    assert run["metrics.interactions"] == 60 and run["params.source"] == "amazon2018"


def test_amazon2023_jsonl(tmp_path, mlflow_store):
    reviews, meta = tmp_path / "Baby_Products.jsonl", tmp_path / "meta_Baby_Products.jsonl.gz"
    with open(reviews, "w") as f:
        for u, user in enumerate(USERS):
            for i, asin in enumerate(ASINS):
                f.write(json.dumps({"rating": 4.0, "title": "t", "text": "x", "images": [], "asin": f"V{i}",
                                    "parent_asin": asin, "user_id": user,
                                    "timestamp": 1_600_000_000_000 + 1000 * (u * 6 + i),
                                    "helpful_vote": 0, "verified_purchase": True}) + "\n")
    with gzip.open(meta, "wt") as f:
        for i, asin in enumerate(ASINS):
            f.write(json.dumps({"main_category": "Baby", "title": f"Bottle {i}", "store": "Nuby", "price": None,
                                "categories": [] if i == 0 else ["Baby Products", "Feeding"],
                                "description": [], "details": {}, "parent_asin": asin,
                                "images": [{"thumb": "https://m/t.jpg", "large": f"https://m/L{i}.jpg", "hi_res": None,
                                            "variant": "MAIN"}]}) + "\n")
    ds = prepare(PrepareConfig(source="amazon2023", reviews=str(reviews), meta=str(meta), out=str(tmp_path / "ds"),
                               split="chronological", progress=False, tracking=mlflow_store))
    stats = ds.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (10, 6, 60) and stats["skipped"] == {}
    items = {r["asin"]: r for r in pq.read_table(ds.items).to_pylist()}
    assert items[ASINS[0]]["categories"] == ["Baby"] and items[ASINS[1]]["categories"] == ["Baby Products", "Feeding"]
    assert items[ASINS[3]]["brand"] == "Nuby" and items[ASINS[3]]["image"] == "https://m/L3.jpg"
    assert items[ASINS[3]]["price"] is None and items[ASINS[3]]["description"] is None
    inter = pq.read_table(ds.interactions).to_pandas()
    assert inter.timestamp.min() == 1_600_000_000     # milliseconds → seconds
    last = inter.sort_values("timestamp").groupby("user").tail(1)
    assert (last.split == 2).all()                     # chronological: each user's latest row is test


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="reviews file '.*nope.json.gz' does not exist"):
        prepare(PrepareConfig(source="amazon2018", reviews=str(tmp_path / "nope.json.gz"), out=str(tmp_path / "d"),
                              tracking=_off()))


def _off():
    from raymmrec.tracking import TrackingConfig
    return TrackingConfig(enabled=False)


def test_wrong_format_names_the_fields_and_suggests_the_source(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text(json.dumps({"user_id": "u", "parent_asin": "p", "rating": 5.0, "timestamp": 1}) + "\n")
    with pytest.raises(DataError, match=r"no record has the amazon2018 fields 'reviewerID' and 'asin' .*"
                                        r"looks like source=amazon2023"):
        prepare(PrepareConfig(source="amazon2018", reviews=str(path), out=str(tmp_path / "d"), tracking=_off()))


def test_all_malformed_lines_is_an_error_naming_the_first_bad_line(tmp_path):
    path = tmp_path / "reviews.json"
    path.write_text("\n{oops\n[1, 2]\n")
    with pytest.raises(DataError, match="no line is a JSON object or Python-literal dict.*line 2"):
        prepare(PrepareConfig(source="amazon2018", reviews=str(path), out=str(tmp_path / "d"), tracking=_off()))


def test_undecodable_images_are_counted_and_flagged(amazon2018, tmp_path):
    from PIL import Image

    reviews, meta = amazon2018
    images = tmp_path / "images"
    images.mkdir()
    for i, asin in enumerate(ASINS[:4]):
        Image.new("RGB", (20, 20), (40 * i, 90, 200)).save(images / f"{asin}.jpg")
    (images / f"{ASINS[4]}.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    ds = prepare(PrepareConfig(source="amazon2018", reviews=str(reviews), meta=str(meta), images=str(images),
                               out=str(tmp_path / "ds"), progress=False, tracking=_off()))
    items = {r["asin"]: r for r in pq.read_table(ds.items).to_pylist()}
    assert [items[a]["image_ok"] for a in ASINS] == [True, True, True, True, False, None]
    stats = ds.stats()
    assert stats["image_undecodable"] == 1 and stats["skipped"]["images.undecodable"] == 1
    image = np.load(ds.features("raw") / "image.npy")
    assert image.shape[0] == 6 and np.allclose(image[-1], image[:4].mean(axis=0))


def test_job_prints_one_line_error_and_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "prepare_data.py"), "source=amazon2018",
         f"reviews={tmp_path / 'missing.json'}", f"out={tmp_path / 'd'}", "tracking.enabled=false"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: reviews file '{tmp_path / 'missing.json'}' does not exist"]
    bad_key = subprocess.run([sys.executable, str(ROOT / "jobs" / "prepare_data.py"), "kcor=3"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad_key.returncode == 2 and "unknown config key 'kcor'" in bad_key.stderr


def test_reader_counts_faults_with_line_numbers_across_chunks(tmp_path, caplog):
    from raymmrec.data.amazon import read_reviews

    path = tmp_path / "reviews.json"
    ok = {"reviewerID": "u1", "asin": "a1", "overall": 5.0, "unixReviewTime": 10}
    path.write_text("\n".join([
        json.dumps(ok), "", "{'reviewerID': 'u2', 'asin': 'a2', 'overall': 4.0 ",            # lines 1-3
        repr({**ok, "reviewerID": "u3"}), json.dumps({"asin": "a9", "overall": 1.0}),      # lines 4-5
        json.dumps({**ok, "reviewerID": "u1", "asin": "a3"}),                               # line 6
    ]) + "\n")
    table, faults = read_reviews(path, "amazon2018", chunk_bytes=120)
    assert table.column("user_id").to_pylist() == ["u1", "u3", "u1"]
    assert table.column("item_id").to_pylist() == ["a1", "a1", "a3"]
    assert faults.first_rows == {"malformed": [3], "missing_user_or_item": [5]}
    with caplog.at_level("WARNING"):
        faults.warn()
    assert "reviews.json: skipped 1 row(s): malformed (rows 3)" in caplog.text


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1 << 20])
def test_blocks_hold_whole_lines_with_their_numbers(tmp_path, chunk_bytes):
    from raymmrec.data.jsonlines import iter_line_chunks

    lines = [b"a" * 30, b"", b"bb", b"c" * 100, b"d"]
    path = tmp_path / "x.json.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines))           # no newline at the end
    got = [(start + k, line) for start, chunk in iter_line_chunks(path, chunk_bytes) for k, line in enumerate(chunk)]
    assert got == list(enumerate(lines, 1))


def test_a_rating_that_is_not_a_number_is_a_counted_skip(tmp_path):
    from raymmrec.data.amazon import read_reviews

    ok = {"reviewerID": "u1", "asin": "a1", "overall": 5.0, "unixReviewTime": 10}
    lines = [json.dumps(ok), json.dumps({**ok, "overall": "five"}), repr({**ok, "overall": True}),
             json.dumps({**ok, "overall": None}), json.dumps({k: v for k, v in ok.items() if k != "overall"}),
             json.dumps({**ok, "overall": "4.0", "asin": "a2"}), json.dumps({**ok, "overall": 3, "asin": "a3"})]
    path = tmp_path / "reviews.json"
    path.write_text("\n".join(lines) + "\n")
    table, faults = read_reviews(path, "amazon2018", chunk_bytes=64)
    assert table.column("item_id").to_pylist() == ["a1", "a2", "a3"]
    assert table.column("rating").to_pylist() == [5.0, 4.0, 3.0]
    assert faults.counts == {"rating_not_a_number": 4}
    assert faults.first_rows["rating_not_a_number"] == [2, 3, 4, 5]


def test_a_malformed_meta_line_is_counted_whichever_item_it_names(tmp_path):
    from raymmrec.data.amazon import read_meta
    import pyarrow as pa

    path = tmp_path / "meta.json"
    path.write_text("\n".join([
        json.dumps({"asin": "A", "title": "wanted"}), json.dumps({"asin": "Z", "title": "unwanted"}),
        '{"asin": "Z", "title": "cut off',            # an unwanted item, cut: counted as a bad review line is
        '{"asin": "A", "title": ',                    # a wanted one, cut
        "[1, 2]",                                     # parses, but is not a record
    ]) + "\n")
    table, faults = read_meta(path, "amazon2018", pa.array(["A"]))
    assert table.column("title").to_pylist() == ["wanted"]
    assert faults.counts == {"malformed": 3} and faults.first_rows["malformed"] == [3, 4, 5]
