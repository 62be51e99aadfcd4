"""A random search over listed values never trains the same config twice (issue 14, bug 5)."""
from raymmrec.tune.algorithms import SearchConfig, make_search_alg
from raymmrec.tune.space import distinct_draws, expected_trials, model_space, tune_space

SMALL = {"dropout": {"grid": [0.8, 0.9]}, "reg_weight": {"grid": [0.0, 1e-5, 1e-4]}}


def test_random_search_of_a_small_discrete_space_draws_without_replacement():
    space = model_space("freedom", SMALL)
    assert expected_trials(space, "random", 4) == 4
    assert expected_trials(space, "random", 50) == 6            # never more than the space holds
    draws = distinct_draws(space, "random", 6, seed=3)
    assert sorted((d["dropout"], d["reg_weight"]) for d in draws) == sorted(
        (a, b) for a in (0.8, 0.9) for b in (0.0, 1e-5, 1e-4))
    assert distinct_draws(space, "random", 4, seed=3) == distinct_draws(space, "random", 4, seed=3)   # seeded
    # a continuous dimension keeps plain sampling; the grid algorithm keeps crossing
    assert distinct_draws({**space, "reg_weight": {"loguniform": [1e-6, 1e-2]}}, "random", 4) is None
    assert expected_trials(space, "grid", 1) == 6


def test_the_search_algorithm_hands_tune_exactly_the_drawn_configs():
    from ray.tune.experiment import Experiment

    space = model_space("freedom", SMALL)
    cfg = SearchConfig(algorithm="random", num_samples=6, seed=1)
    points = distinct_draws(space, "random", cfg.num_samples, cfg.seed)
    alg = make_search_alg(cfg, "best/valid/recall@20", points)
    alg.add_configurations([Experiment("distinct", run=lambda config: None, config=tune_space(space, "random", 1),
                                       num_samples=len(points))])
    seen = [alg.next_trial().config for _ in points]
    assert len({(c["dropout"], c["reg_weight"]) for c in seen}) == 6
