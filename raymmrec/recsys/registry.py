"""Model registry: `@register_model("name")` on a Backbone subclass in raymmrec/recsys/models/<name>.py."""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from raymmrec.config import from_dict, to_dict
from raymmrec.errors import ConfigError
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.backbone import SEARCH_KINDS, ModelConfig, Backbone

_REGISTRY: dict[str, "ModelSpec"] = {}
_MODELS_PACKAGE = "raymmrec.recsys.models"


@dataclass(frozen=True)
class ModelSpec:
    """A registered backbone: its name, module class and config dataclass."""

    name: str
    model_cls: type[Backbone]

    @property
    def config_cls(self) -> type[ModelConfig]:
        return self.model_cls.Config

    def make_config(self, overrides: ModelConfig | Mapping[str, Any] | None = None) -> ModelConfig:
        """The model's config: defaults updated with `overrides` (unknown keys and wrong types rejected)."""
        if isinstance(overrides, self.config_cls):
            return overrides
        if dataclasses.is_dataclass(overrides):
            overrides = to_dict(overrides)
        return from_dict(self.config_cls, dict(overrides or {}), prefix=f"{self.name}.")

    def search_space(self) -> dict[str, dict[str, list]]:
        """The config's search space, checked against its fields."""
        return check_search_space(self.config_cls, self.config_cls.search_space(), self.name)

    def build(self, config: ModelConfig | Mapping[str, Any] | None, data: InteractionData) -> Backbone:
        """Check `data` and construct the model."""
        cfg = self.make_config(config)
        self.model_cls.check_data(cfg, data)
        return self.model_cls(cfg, data)


def check_search_space(config_cls: type, space: Mapping[str, Any], owner: str) -> dict[str, dict[str, list]]:
    """Validate {field: {kind: values}} with kind in SEARCH_KINDS and field a config field."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    out = {}
    for key, spec in space.items():
        if key not in fields:
            raise ConfigError(f"search space of '{owner}': '{key}' is not a config field (fields: {', '.join(sorted(fields))})")
        if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in SEARCH_KINDS:
            raise ConfigError(f"search space of '{owner}', key '{key}': expected one of {{{', '.join(SEARCH_KINDS)}}}: "
                              f"[values], got {spec!r}")
        kind, values = next(iter(spec.items()))
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"search space of '{owner}', key '{key}': '{kind}' needs a non-empty list")
        out[key] = {kind: list(values)}
    return out


def register_model(name: str) -> Callable[[type[Backbone]], type[Backbone]]:
    """Class decorator adding a Backbone subclass to the registry under `name`."""
    key = name.lower()    # names are case-insensitive: get_model looks them up lowercased

    def decorator(cls: type[Backbone]) -> type[Backbone]:
        if not (isinstance(cls, type) and issubclass(cls, Backbone)):
            raise TypeError(f"@register_model('{name}') must decorate a Backbone subclass")
        if key in _REGISTRY and _REGISTRY[key].model_cls.__qualname__ != cls.__qualname__:
            raise ValueError(f"model name '{name}' is already registered by {_REGISTRY[key].model_cls.__module__}")
        cls.name = key
        _REGISTRY[key] = ModelSpec(key, cls)
        return cls
    return decorator


def _load_models() -> None:
    importlib.import_module(_MODELS_PACKAGE)


def model_names() -> list[str]:
    """Names of every registered model."""
    _load_models()
    return sorted(_REGISTRY)


def get_model(name: str) -> ModelSpec:
    """The registered model `name`; an unknown name lists the known ones."""
    _load_models()
    key = name.lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown model '{name}' (known models: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[key]


def build_model(name: str, config: ModelConfig | Mapping[str, Any] | None, data: InteractionData) -> Backbone:
    """Construct registered model `name` with `config` (dataclass or overrides) on `data`."""
    return get_model(name).build(config, data)
