from dataclasses import dataclass, field
from typing import Literal

import pytest

from raymmrec.config import config_hash, load_config
from raymmrec.errors import ConfigError


@dataclass
class Inner:
    lr: float = 1e-3
    layers: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class Outer:
    name: str = "x"
    epochs: int = 3
    mode: Literal["a", "b"] = "a"
    seed: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_defaults_yaml_and_overrides(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("epochs: 7\ninner:\n  lr: 0.5\n")
    cfg = load_config(Outer, ["--config", str(y), "inner.layers=[3,4]", "mode=b", "inner.lr=2"])
    assert load_config(Outer, ["inner.lr=1e-3"]).inner.lr == 1e-3
    assert cfg.epochs == 7 and cfg.mode == "b"
    assert cfg.inner.layers == [3, 4] and cfg.inner.lr == 2.0 and isinstance(cfg.inner.lr, float)
    assert cfg.seed is None


@pytest.mark.parametrize("arg, key", [
    ("epoch=3", "epoch"), ("inner.lrr=1", "inner.lrr"), ("epochs=abc", "epochs"),
    ("mode=c", "mode"), ("inner.layers=[1,x]", "inner.layers[1]"), ("inner=5", "inner"),
])
def test_bad_keys_and_types_name_the_key(arg, key):
    with pytest.raises(ConfigError) as exc:
        load_config(Outer, [arg])
    assert f"'{key}'" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_and_malformed_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, ["--config", str(tmp_path / "nope.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, ["--config", str(bad)])


def test_config_hash_changes_with_content():
    assert config_hash(Outer()) == config_hash(Outer())
    assert config_hash(Outer()) != config_hash(Outer(epochs=4))
