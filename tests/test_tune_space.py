import pytest
from ray import tune

from raymmrec.errors import ConfigError
from raymmrec.tune.algorithms import SearchConfig, check_search_config
from raymmrec.tune.search import TuneBackbonesConfig, resolve_spaces
from raymmrec.tune.space import expected_trials, model_space, split_params, tune_space
from raymmrec.tune.trial import PRUNED, stop_reason, tune_record


def test_models_bring_their_own_space_and_yaml_replaces_it():
    spaces = resolve_spaces(TuneBackbonesConfig(models=["BPR", "lightgcn"],
                                                spaces={"lightgcn": {"n_layers": {"grid": [1, 2]}}}))
    assert spaces["bpr"] == {"reg_weight": {"grid": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]}}
    assert spaces["lightgcn"] == {"n_layers": {"grid": [1, 2]}}


def test_a_models_trainer_grid_joins_its_space_as_trainer_keys():
    # MMRec's LATTICE yaml searches learning_rate next to reg_weight: 4 x 4 trials
    space = model_space("lattice")
    assert space["trainer.lr"] == {"grid": [1e-4, 5e-4, 1e-3, 5e-3]} and "reg_weight" in space
    assert expected_trials(space, "grid", 1) == 16
    assert "trainer.lr" not in model_space("lattice", {"reg_weight": {"grid": [0.0]}})   # YAML replaces it all


def test_grid_algorithm_crosses_grids_and_samples_the_rest():
    space = model_space("lightgcn", {"n_layers": {"grid": [1, 2, 3]}, "reg_weight": {"loguniform": [1e-6, 1e-2]},
                                     "trainer.lr": {"choice": [0.01, 0.001]}, "embedding_size": {"randint": [8, 16]}})
    grid = tune_space(space, "grid")
    assert sorted(grid["n_layers"]["grid_search"]) == [1, 2, 3]
    assert tune_space(space, "grid", seed=0)["n_layers"] == grid["n_layers"]       # seeded order
    assert isinstance(grid["reg_weight"], tune.search.sample.Float)
    assert grid["reg_weight"].lower == 1e-6 and grid["reg_weight"].upper == 1e-2
    assert grid["trainer.lr"].categories == [0.01, 0.001]
    assert grid["embedding_size"].lower == 8 and grid["embedding_size"].upper == 17   # YAML bounds are inclusive
    assert expected_trials(space, "grid", 2) == 6
    # Other algorithms sample the grid values too; num_samples is the trial count.
    assert tune_space(space, "random")["n_layers"].categories == [1, 2, 3]
    assert expected_trials(space, "random", 5) == 5


def test_fixed_params_leave_the_space_and_trainer_keys_split_off():
    space = model_space("lightgcn", None, {"n_layers": 2})
    assert list(space) == ["reg_weight"]
    assert split_params({"n_layers": 2, "trainer.lr": 0.1}) == ({"n_layers": 2}, {"lr": 0.1})


@pytest.mark.parametrize("override, message", [
    ({"nope": {"grid": [1]}}, "'nope' is not a config field"),
    ({"n_layers": {"grid": [1.5]}}, "n_layers"),
    ({"reg_weight": {"loguniform": [0, 1]}}, "needs low > 0"),
    ({"reg_weight": {"uniform": [1, 0.5]}}, "needs low < high"),
    ({"reg_weight": {"sometimes": [1]}}, "expected one of"),
    ({"trainer.lr": {"grid": ["fast"]}}, "trainer.lr"),
    ({"trainer.nope": {"grid": [1]}}, "'nope' is not a config field"),
])
def test_bad_spaces_fail_before_any_trial(override, message):
    with pytest.raises(ConfigError, match=message):
        model_space("lightgcn", override)


def test_unknown_models_and_sections_are_named():
    with pytest.raises(ConfigError, match="unknown model 'mystery'.*known models: .*bpr"):
        resolve_spaces(TuneBackbonesConfig(models=["mystery"]))
    with pytest.raises(ConfigError, match="spaces.vbpr: model 'vbpr' is not in models"):
        resolve_spaces(TuneBackbonesConfig(models=["bpr"], spaces={"vbpr": {}}))


def test_search_config_checks_and_missing_optional_searchers(monkeypatch):
    with pytest.raises(ConfigError, match="grace_period"):
        check_search_config(SearchConfig(grace_period=30), max_epochs=10)
    with pytest.raises(ConfigError, match="reduction_factor"):
        check_search_config(SearchConfig(reduction_factor=1.0), max_epochs=10)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(ConfigError, match="'optuna' package, which is not installed"):
        check_search_config(SearchConfig(algorithm="optuna"), max_epochs=10)


def test_stop_reasons_and_the_reported_metric():
    record = {"epoch": 3, "best_valid": -1.0, "should_stop": False, "stop_reason": None, "checkpoint_dir": "/x"}
    reported = tune_record(record, "recall@20")
    assert reported["best/valid/recall@20"] == 0.0 and "checkpoint_dir" not in reported
    assert stop_reason(reported) == PRUNED
    assert stop_reason({**reported, "should_stop": True, "stop_reason": "early_stopped"}) == "early_stopped"
    assert stop_reason({}) == "no_result"
