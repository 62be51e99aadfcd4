import numpy as np

from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.sampling import BPRSampler, sample_negatives
from recsys_planted import tiny_data


def test_negatives_are_training_items_outside_the_users_train_set():
    data = tiny_data()
    train = data.train.toarray() > 0
    pool = set(data.train_item_pool.tolist())
    held_out_only = set(np.flatnonzero((data.valid + data.test).toarray().sum(0))) - pool
    sampler = BPRSampler(data, batch_size=100, seed=3)
    for _ in range(3):
        for b in sampler.epoch():
            u, n = b.users.numpy(), b.neg_items.numpy()
            assert not train[u, n].any()
            assert set(n.tolist()) <= pool
            assert not set(n.tolist()) & held_out_only


def test_dense_user_forces_redraws():
    # User 0 has trained on 9 of the 10 pool items: every negative must be item 9.
    users = [0] * 9 + [1] + [0, 0]
    items = list(range(9)) + [9, 9, 9]
    data = InteractionData.from_arrays(users, items, [0] * 10 + [1, 2], n_users=2, n_items=12)
    neg = sample_negatives(np.zeros(500, dtype=np.int64), data, np.random.default_rng(0))
    assert set(neg.tolist()) == {9}


def test_epoch_covers_every_positive_once_in_shuffled_batches():
    data = tiny_data()
    users, items = data.train_pairs()
    assert len(users) == data.n_train
    sampler = BPRSampler(data, batch_size=128, seed=1)
    batches = list(sampler.epoch())
    assert [len(b) for b in batches[:-1]] == [128] * (len(batches) - 1) and len(batches) == len(sampler)
    got = np.concatenate([b.users.numpy() * data.n_items + b.pos_items.numpy() for b in batches])
    assert np.array_equal(np.sort(got), np.sort(users * data.n_items + items))
    again = np.concatenate([b.users.numpy() for b in sampler.epoch()])
    assert not np.array_equal(again, np.concatenate([b.users.numpy() for b in batches]))


def test_state_dict_replays_the_same_batches():
    data = tiny_data()
    a = BPRSampler(data, batch_size=256, seed=5)
    list(a.epoch())
    state = a.state_dict()
    first = [b.neg_items.numpy() for b in a.epoch()]
    b = BPRSampler(data, batch_size=256, seed=99)
    b.load_state_dict(state)
    second = [x.neg_items.numpy() for x in b.epoch()]
    assert all(np.array_equal(x, y) for x, y in zip(first, second))


def test_no_negatives_when_the_model_samples_none():
    batch = next(BPRSampler(tiny_data(), negatives=False).epoch())
    assert batch.neg_items is None
