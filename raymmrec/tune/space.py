"""Search spaces: a model's `{field: {kind: values}}` (its config's, or YAML's) checked and turned into Ray Tune domains.

A key `trainer.<field>` tunes a TrainerConfig field (e.g. `trainer.lr`) alongside the model's own.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Mapping

from raymmrec.config import from_dict, to_dict
from raymmrec.errors import ConfigError
from raymmrec.recsys.registry import check_search_space, get_model
from raymmrec.recsys.trainer import TrainerConfig

TRAINER_PREFIX = "trainer."
FEATURES_KEY = "features"     # a trial config's feature set, when a search compares several
Algorithm = Literal["random", "grid", "optuna", "hyperopt"]
Space = dict[str, dict[str, list]]


def model_space(model: str, override: Mapping[str, Any] | None = None,
                fixed: Mapping[str, Any] | None = None) -> Space:
    """The checked search space of `model`: `override` replaces the config's own; `fixed` keys are removed."""
    spec = get_model(model)
    if override is None:
        raw = {**spec.config_cls.search_space(),
               **{TRAINER_PREFIX + k: v for k, v in spec.model_cls.trainer_search_space.items()}}
    else:
        raw = dict(override)
    own = {k: v for k, v in raw.items() if not k.startswith(TRAINER_PREFIX)}
    trainer = {k[len(TRAINER_PREFIX):]: v for k, v in raw.items() if k.startswith(TRAINER_PREFIX)}
    space = check_search_space(spec.config_cls, own, spec.name)
    for key, kind_values in check_search_space(TrainerConfig, trainer, f"{spec.name} (trainer)").items():
        space[TRAINER_PREFIX + key] = kind_values
    for key in fixed or {}:
        space.pop(key, None)
    for key, kind_values in space.items():
        _check_values(spec.name, key, *next(iter(kind_values.items())))
    _check_types(model, space, fixed or {})
    return space


def _check_values(model: str, key: str, kind: str, values: list) -> None:
    where = f"search space of '{model}', key '{key}'"
    if kind in ("uniform", "loguniform", "randint"):
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{where}: '{kind}' needs [low, high] numbers, got {values}")
        lo, hi = values
        if not lo < hi:
            raise ConfigError(f"{where}: '{kind}' needs low < high, got {values}")
        if kind == "loguniform" and lo <= 0:
            raise ConfigError(f"{where}: 'loguniform' needs low > 0, got {values}")
        if kind == "randint" and not (isinstance(lo, int) and isinstance(hi, int)):
            raise ConfigError(f"{where}: 'randint' needs integer bounds, got {values}")


def _check_types(model: str, space: Space, fixed: Mapping[str, Any]) -> None:
    """Every value a trial may draw must build a valid config, so a typo fails now rather than in a trial."""
    spec = get_model(model)
    for key, kind_values in space.items():
        kind, values = next(iter(kind_values.items()))
        probes = values if kind in ("grid", "choice") else values[:1]
        if kind in ("uniform", "loguniform"):
            probes = [float(v) for v in probes]
        for value in probes:
            params, trainer = split_params({**fixed, key: value})
            spec.make_config(params)
            from_dict(TrainerConfig, {**to_dict(TrainerConfig()), **trainer}, prefix="trainer.")


def split_params(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's flat config → (model hyper-parameters, trainer overrides); its feature set is neither."""
    model = {k: v for k, v in config.items() if not k.startswith(TRAINER_PREFIX) and k != FEATURES_KEY}
    trainer = {k[len(TRAINER_PREFIX):]: v for k, v in config.items() if k.startswith(TRAINER_PREFIX)}
    return model, trainer


def tune_space(space: Space, algorithm: Algorithm, seed: int = 0) -> dict[str, Any]:
    """Ray Tune domains: `grid` is an exhaustive grid_search under the grid algorithm and a choice otherwise.

    Grid values are enumerated in a seeded random order: ASHA cannot stop the first trials to reach a rung,
    and a grid written from one extreme to the other (MMRec's reg_weight lists) would hand them the corner.
    """
    import random

    from ray import tune

    out: dict[str, Any] = {}
    for i, (key, kind_values) in enumerate(space.items()):
        kind, values = next(iter(kind_values.items()))
        if kind == "grid" and algorithm == "grid":
            out[key] = tune.grid_search(random.Random(seed * 1000 + i).sample(list(values), len(values)))
        elif kind in ("grid", "choice"):
            out[key] = tune.choice(list(values))
        elif kind == "uniform":
            out[key] = tune.uniform(float(values[0]), float(values[1]))
        elif kind == "loguniform":
            out[key] = tune.loguniform(float(values[0]), float(values[1]))
        else:   # randint: both bounds included, as the YAML reads
            out[key] = tune.randint(int(values[0]), int(values[1]) + 1)
    return out


def expected_trials(space: Space, algorithm: Algorithm, num_samples: int) -> int:
    """How many trials the search runs: num_samples, times the grid's size under the grid algorithm; a random
    search of a space of listed values only runs each config at most once."""
    draws = distinct_draws(space, algorithm, num_samples)
    if draws is not None:
        return len(draws)
    if algorithm != "grid":
        return num_samples
    sizes = [len(v["grid"]) for v in space.values() if "grid" in v]
    return num_samples * math.prod(sizes)


def distinct_draws(space: Space, algorithm: Algorithm, num_samples: int, seed: int = 0) -> list[dict[str, Any]] | None:
    """The configs a random search tries when every key lists its values (grid / choice): min(num_samples, space
    size) of them drawn without replacement, so no config is trained twice; None for any other search."""
    if algorithm != "random" or not space or any(next(iter(v)) not in ("grid", "choice") for v in space.values()):
        return None
    import random

    keys = list(space)
    values = [next(iter(space[k].values())) for k in keys]
    size = math.prod(len(v) for v in values)
    draws = []
    for index in random.Random(seed).sample(range(size), min(num_samples, size)):
        config = {}
        for key, options in zip(keys, values):     # the index in mixed radix: one digit per key
            index, digit = divmod(index, len(options))
            config[key] = options[digit]
        draws.append(config)
    return draws


def full_model_config(model: str, fixed: Mapping[str, Any], sampled: Mapping[str, Any]) -> dict[str, Any]:
    """The complete model config of a trial: defaults, then fixed params, then the sampled ones."""
    params, _ = split_params({**fixed, **sampled})
    return dataclasses.asdict(get_model(model).make_config(params))
