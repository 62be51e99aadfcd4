"""Real MMRec folders (TikTok's) come with Windows line ends; ids must still read as integers, or fail clearly."""
import numpy as np
import pytest

from raymmrec.errors import DataError
from raymmrec.recsys.interaction_data import InteractionData

ROWS = [(0, 1, 0), (0, 2, 0), (1, 0, 0), (1, 2, 1), (0, 0, 2), (2, 1, 0), (2, 0, 2)]


def _folder(tmp_path, name, text):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "x.inter").write_bytes(text.encode())
    np.save(folder / "image_feat.npy", np.eye(3, dtype=np.float32))
    return folder


def test_crlf_inter_reads_like_lf(tmp_path):
    lines = ["userID\titemID\tx_label"] + ["\t".join(map(str, r)) for r in ROWS]
    lf = InteractionData.from_mmrec_folder(_folder(tmp_path, "lf", "\n".join(lines) + "\n"))
    crlf = InteractionData.from_mmrec_folder(_folder(tmp_path, "crlf", "\r\n".join(lines) + "\r\n"))
    for split in ("train", "valid", "test"):
        assert (getattr(lf, split) != getattr(crlf, split)).nnz == 0
    assert crlf.train.nnz == 4 and crlf.test.nnz == 2


def test_columns_appended_after_a_carriage_return_fail_with_the_file_named(tmp_path):
    # what `awk '{print $0 "\t1\t0"}'` makes of a CRLF file: the \r lands mid-row and splits it in two
    lines = ["userID\titemID\tx_label\r\trating\ttimestamp"] + ["\t".join(map(str, r)) + "\r\t1\t0" for r in ROWS]
    folder = _folder(tmp_path, "broken", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"x\.inter"):
        InteractionData.from_mmrec_folder(folder)
