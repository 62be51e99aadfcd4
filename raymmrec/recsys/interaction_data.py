"""InteractionData: the train / valid / test interactions, item features and graphs every backbone trains on."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp
import torch

from raymmrec.data import schema
from raymmrec.errors import DataError
from raymmrec.feature_sets import feature_set_folder, load_feature_set, load_npy, mmrec_feature_files, modality_order
from raymmrec.recsys.approximate_knn import KnnMethod, item_topk
from raymmrec.recsys.graphs import AdjacencyNorm, knn_from_topk, normalized_adjacency, to_torch_csr
from raymmrec.recsys.knn_cache import load_topk, save_topk, topk_cache_file

SPLITS = ("train", "valid", "test")
COLD_ITEM_MAX_TRAIN = 4          # "cold" = fewer than 5 training interactions
def _checked_features(arr: np.ndarray, source: str, n_items: int) -> np.ndarray:
    """Float32 items × dim with every value finite, or a one-line DataError naming the file and row."""
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] == 0 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"feature file '{source}': expected a 2-D numeric array (items × dim), got shape {arr.shape}")
    if arr.shape[0] != n_items:
        raise DataError(f"feature file '{source}': {arr.shape[0]} rows, expected one per item ({n_items})")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise DataError(f"feature file '{source}': row {int(np.argmax(bad))} holds NaN or inf "
                        f"({int(bad.sum())} such rows); fill or drop them before training")
    return arr


@dataclass
class InteractionData:
    """User × item CSR matrices per split (values = multiplicities), item features, and derived graphs.

    Only numpy arrays live inside, so `put()` ships it through the Ray object store once and every
    trial `resolve`s the same zero-copy buffers. Derived tensors (adjacencies, masks) are cached per process.
    """

    n_users: int
    n_items: int
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    features: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = ""
    feature_set: str | None = None
    source: str = ""
    feature_files: dict[str, str] = field(default_factory=dict)   # modality → file, for error messages
    item_graphs: dict = field(default_factory=dict, repr=False, compare=False)  # kNN graphs, shipped with the data
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = self.source or self.name or "interaction data"
        for split in SPLITS:
            m = getattr(self, split)
            if m.shape != (self.n_users, self.n_items):
                raise DataError(f"{where}: split '{split}' has shape {m.shape}, expected {(self.n_users, self.n_items)}")
            if m.nnz == 0:
                raise DataError(f"{where}: split '{split}' is empty (no interactions); every split needs at least one")
        for modality, arr in self.features.items():
            label = self.feature_files.get(modality, f"modality '{modality}'")
            self.features[modality] = _checked_features(arr, label, self.n_items)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_arrays(cls, users: np.ndarray, items: np.ndarray, splits: np.ndarray, n_users: int | None = None,
                    n_items: int | None = None, features: Mapping[str, np.ndarray] | None = None,
                    name: str = "", feature_set: str | None = None, source: str = "",
                    feature_files: Mapping[str, str] | None = None) -> "InteractionData":
        """Build from parallel (user, item, split) arrays; split uses TRAIN=0 / VALID=1 / TEST=2."""
        where = source or name or "interactions"
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        splits = np.asarray(splits, dtype=np.int64)
        if not len(users) == len(items) == len(splits):
            raise DataError(f"{where}: user, item and split columns differ in length")
        if len(users) == 0:
            raise DataError(f"{where}: no interactions")
        if users.min() < 0 or items.min() < 0:
            raise DataError(f"{where}: user and item ids must be non-negative (0-based contiguous)")
        bad_split = ~np.isin(splits, (schema.TRAIN, schema.VALID, schema.TEST))
        if bad_split.any():
            raise DataError(f"{where}: row {int(np.argmax(bad_split))} has split {int(splits[bad_split][0])}, "
                            f"expected 0 (train), 1 (valid) or 2 (test)")
        n_users = int(users.max()) + 1 if n_users is None else int(n_users)
        n_items = int(items.max()) + 1 if n_items is None else int(n_items)
        if users.max() >= n_users or items.max() >= n_items:
            raise DataError(f"{where}: ids exceed the declared counts ({n_users} users, {n_items} items)")
        is_train = splits == schema.TRAIN
        # Validation / test rows of users unseen in training cannot be ranked (MMRec drops them too).
        has_train = np.zeros(n_users, dtype=bool)
        has_train[users[is_train]] = True
        keep = is_train | has_train[users]

        def matrix(code: int) -> sp.csr_matrix:
            sel = keep & (splits == code)
            m = sp.csr_matrix((np.ones(int(sel.sum()), dtype=np.int32), (users[sel], items[sel])),
                              shape=(n_users, n_items), dtype=np.int32)
            m.sum_duplicates()
            return m

        return cls(n_users=n_users, n_items=n_items, train=matrix(schema.TRAIN), valid=matrix(schema.VALID),
                   test=matrix(schema.TEST), features=dict(features or {}), name=name,
                   feature_set=feature_set, source=source, feature_files=dict(feature_files or {}))

    @classmethod
    def from_dataset_dir(cls, path: str | Path, features: str | None = "raw") -> "InteractionData":
        """Load a prepared dataset dir and the feature set `features` (None: no features)."""
        ds = schema.DatasetDir.at(path)
        table = schema.read_table(ds.interactions, schema.INTERACTIONS_SCHEMA, columns=["user", "item", "split"])
        n_items = pq.read_metadata(ds.items).num_rows
        n_users = pq.read_metadata(ds.users).num_rows if ds.users.is_file() else None
        feats, files = None, None
        if features:
            folder = feature_set_folder(ds.root, features)
            if not folder.is_dir():
                known = ", ".join(ds.feature_sets()) or "none"
                raise DataError(f"dataset dir '{ds.root}' has no feature set '{features}' (available: {known}), "
                                f"and it is no feature-set folder")
            feats, files = load_feature_set(folder)
        return cls.from_arrays(table["user"].to_numpy(), table["item"].to_numpy(), table["split"].to_numpy(),
                               n_users=n_users, n_items=n_items, features=feats, name=ds.root.name,
                               feature_set=features or None, source=str(ds.root), feature_files=files)

    @classmethod
    def from_mmrec_folder(cls, path: str | Path) -> "InteractionData":
        """Load an MMRec dataset folder as-is: `<name>.inter` (TSV, x_label split) + every `<modality>_feat.npy`."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        root = Path(path)
        inters = sorted(root.glob("*.inter"))
        if len(inters) != 1:
            raise DataError(f"MMRec folder '{root}': expected exactly one <name>.inter file, found {len(inters)}")
        try:
            table = pacsv.read_csv(inters[0], parse_options=pacsv.ParseOptions(delimiter="\t"),
                                   convert_options=pacsv.ConvertOptions(
                                       include_columns=["userID", "itemID", "x_label"],
                                       # integers or a clear error: a column appended after a Windows line end
                                       # starts a new row of text, which would otherwise surface as a bare ValueError
                                       column_types={c: pa.int64() for c in ("userID", "itemID", "x_label")}))
        except Exception as exc:  # pyarrow raises several types for malformed text
            raise DataError(f"'{inters[0]}': cannot read as TSV with columns userID, itemID, x_label ({exc})") from None
        found = mmrec_feature_files(root)         # every <modality>_feat.npy, e.g. TikTok's audio
        files = {m: str(found[m]) for m in modality_order(list(found))}
        feats = {m: load_npy(Path(f)) for m, f in files.items()}
        users, items = table["userID"].to_numpy(), table["itemID"].to_numpy()
        # MMRec counts ids over all three splits.
        return cls.from_arrays(users, items, table["x_label"].to_numpy(), features=feats, name=inters[0].stem,
                               feature_set="mmrec" if feats else None, source=str(root), feature_files=files)

    @classmethod
    def load(cls, path: str | Path, features: str | None = "raw") -> "InteractionData":
        """A dataset dir (interactions.parquet) or an MMRec folder (<name>.inter), detected from its files."""
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"data path '{root}' does not exist")
        if (root / schema.INTERACTIONS_FILE).is_file():
            return cls.from_dataset_dir(root, features)
        if any(root.glob("*.inter")):
            return cls.from_mmrec_folder(root)
        raise DataError(f"'{root}' is neither a dataset dir ({schema.INTERACTIONS_FILE}) nor an MMRec folder (*.inter)")

    # ---------------------------------------------------------------- Ray object store
    def put(self) -> Any:
        """Place this dataset in the Ray object store once; trials call `InteractionData.resolve(ref)`."""
        import ray

        return ray.put(self)

    @staticmethod
    def resolve(data: "InteractionData | Any") -> "InteractionData":
        """The dataset itself, fetched from the object store when given an ObjectRef."""
        if isinstance(data, InteractionData):
            return data
        import ray

        got = ray.get(data)
        if not isinstance(got, InteractionData):
            raise TypeError(f"expected an InteractionData object ref, got {type(got).__name__}")
        return got

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    # ---------------------------------------------------------------- derived views
    def split(self, name: str) -> sp.csr_matrix:
        """The CSR matrix of split `name` (train / valid / test)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def _cached(self, key: Any, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def train_item_counts(self) -> np.ndarray:
        """Training interactions per item (with multiplicity)."""
        return self._cached("item_counts", lambda: np.asarray(self.train.sum(axis=0)).ravel().astype(np.int64))

    @property
    def cold_items(self) -> np.ndarray:
        """Boolean mask of items with fewer than 5 training interactions."""
        return self.train_item_counts <= COLD_ITEM_MAX_TRAIN

    @property
    def train_item_pool(self) -> np.ndarray:
        """Sorted distinct items of the training split: the negative-sampling pool."""
        return self._cached("pool", lambda: np.flatnonzero(self.train_item_counts > 0))

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) of every training interaction, duplicates repeated: the BPR positives."""
        def build():
            t = self.train
            users = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(t.indptr))
            reps = t.data.astype(np.int64)
            return np.repeat(users, reps), np.repeat(t.indices.astype(np.int64), reps)
        return self._cached("pairs", build)

    @property
    def n_train(self) -> int:
        """Number of training interactions (with multiplicity)."""
        return int(self.train.data.sum())

    def adjacency(self, norm: AdjacencyNorm = "sym", eps: float = 1e-7) -> torch.Tensor:
        """Normalised (n_users + n_items)² training adjacency as torch sparse CSR (cached)."""
        return self._cached(("adj", norm, eps), lambda: to_torch_csr(normalized_adjacency(self.train, norm, eps)))

    def knn_graph(self, modality: str, k: int, weighted: bool = False, block_rows: int = 2048,
                  method: KnnMethod = "exact") -> sp.csr_matrix:
        """The normalised cosine top-k graph of one modality's raw features (KNN-bin / KNN-w), built once;
        `modality` may join several with '+' for the graph of their concatenated unit-norm rows;
        `method` 'faiss' finds the neighbours approximately (approximate_knn).

        Unlike other derived data it travels with the object (`put` after calling this and every trial
        reuses it), because at Electronics size it is the most expensive thing a trial builds.
        """
        key = (modality, int(k), bool(weighted)) + (() if method == "exact" else (method,))
        if key not in self.item_graphs:
            self.item_graphs[key] = knn_from_topk(*self._topk(modality, int(k), block_rows, method),
                                                  weighted=weighted)
        return self.item_graphs[key]

    def _topk(self, modality: str, k: int, block_rows: int, method: KnnMethod) -> tuple[np.ndarray, np.ndarray]:
        # KNN-bin and KNN-w share one neighbour search, and a feature file's lists are cached on disk
        # (knn_cache) so later runs on the same file skip it.
        parts = modality.split("+")
        arrays = [self.modality_features(m) for m in parts]      # unknown names fail here, before any I/O
        files = [self.feature_files.get(m) for m in parts]
        file = topk_cache_file(files, k, method) if all(files) else None
        found = load_topk(file, self.n_items, k)
        if found is None:
            # several modalities: the concatenation of unit rows, so every one weighs the same in the cosine
            # (built only on a cache miss: at Electronics size it is a 1 GB copy)
            features = arrays[0] if len(arrays) == 1 else np.concatenate(
                [x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
                 for x in (np.asarray(a, np.float32) for a in arrays)], axis=1)
            found = item_topk(features, k, method, block_rows)
            save_topk(file, *found)
        return found

    def modality_features(self, modality: str) -> np.ndarray:
        """The feature matrix of one modality, with an error naming those present."""
        if modality not in self.features:
            known = ", ".join(self.features) or "none"
            raise DataError(f"no '{modality}' features in {self.source or self.name} (modalities: {known})")
        return self.features[modality]

    def summary(self) -> dict[str, Any]:
        """Counts a person reads: users, items, interactions per split, density, cold items, features."""
        return {
            "name": self.name, "n_users": self.n_users, "n_items": self.n_items,
            "n_train": self.n_train, "n_valid": int(self.valid.data.sum()), "n_test": int(self.test.data.sum()),
            "density": round(self.train.nnz / (self.n_users * self.n_items), 6),
            "cold_items": int(self.cold_items.sum()),
            "features": {k: list(v.shape) for k, v in self.features.items()},
        }
