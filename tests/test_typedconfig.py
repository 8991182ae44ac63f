"""The one typed-config reader (``gpsnet.typedconfig``) of ``--set``, the data layer's and the other Python
layers' param_str, and the layers' defaults taken from ``NetConfig`` only (issue 21)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import pytest

from gpsnet.data.batch import BatchParams
from gpsnet.nets.config import DEFAULT_CONFIG, NetConfig, override
from gpsnet.typedconfig import convert, json_object, make


@dataclass(frozen=True)
class Example:
    name: str
    count: int = 1
    ratio: float = 0.5
    flag: bool = False
    sizes: tuple[float, ...] = (1.0,)
    pair: tuple[int, int] = (0, 0)


def test_strings_and_json_values_convert_alike():
    from_text = make(Example, {"name": "a", "count": "3", "ratio": "2", "flag": "yes", "sizes": "1,2.5",
                               "pair": "4, 5"}, "text")
    from_json = make(Example, {"name": "a", "count": 3.0, "ratio": 2, "flag": True, "sizes": [1, 2.5],
                               "pair": [4, 5]}, "json")
    assert from_text == from_json == Example("a", 3, 2.0, True, (1.0, 2.5), (4, 5))
    assert isinstance(from_json.ratio, float) and isinstance(from_json.count, int)


@pytest.mark.parametrize("key, value, why", [("count", 2.5, "an integer"), ("count", True, "an integer"),
                                             ("flag", "false-ish", "a boolean"), ("ratio", "x", "a number"),
                                             ("pair", [1, 2, 3], "2 comma-separated values"),
                                             ("name", 7, "a string"), ("sizes", 3, "a list")])
def test_a_bad_value_is_named_with_its_key(key, value, why):
    with pytest.raises(ValueError, match=rf"^where: {key} = .*expected {why}"):
        make(Example, {"name": "a", key: value}, "where")


def test_unknown_and_missing_keys_are_named():
    with pytest.raises(ValueError, match=r"^where: unknown keys \['cuont'\] \(known: \['count', "):
        make(Example, {"name": "a", "cuont": 2}, "where")
    with pytest.raises(ValueError, match=r"^where: 'name' required"):
        make(Example, {}, "where")
    with pytest.raises(ValueError, match="not valid JSON"):
        json_object("{x", "where")
    assert json_object("  ", "where") == {}


def test_a_false_string_is_false_in_a_param_str_as_on_the_command_line():
    # BatchParams.from_dict used bool(value): "false" read as True
    assert BatchParams.from_dict({"root": "r", "mirror": "false"}).mirror is False
    assert override(NetConfig.tiny(), ["dropout=false"]).dropout is False
    with pytest.raises(ValueError, match="size = 193.5: expected an integer"):   # int() truncated it
        BatchParams.from_dict({"root": "r", "size": 193.5})
    assert convert(bool, "on") is True


def test_the_layers_defaults_are_netconfigs():
    from gpsnet.layers._common import SamplingParams
    from gpsnet.layers.anchor_target import AnchorParams
    from gpsnet.layers.mask_target import MaskTargetParams
    assert DEFAULT_CONFIG == NetConfig.full()
    for params in (AnchorParams(), MaskTargetParams(), SamplingParams(), BatchParams("r")):
        shared = [f.name for f in fields(params) if f.name in {g.name for g in fields(NetConfig)}]
        assert shared, params
        for name in shared:
            assert getattr(params, name) == getattr(DEFAULT_CONFIG, name), (params, name)
