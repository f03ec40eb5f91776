"""Bad input, tried systematically: property-based tests over space definitions, study configs and CLI options.

The property everywhere: input is either accepted, or rejected with one
:class:`~nas_core.errors.NasError` whose message is a single line naming the offending field
(and, where there is one, its value). No other exception type escapes.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import math
import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nas_core.errors import ConfigError, NasError
from nas_core.space import SearchSpace
from nas_core.study import StudyConfig

#: examples per property (raise with NAS_HYPOTHESIS_EXAMPLES=1000 for a deeper search)
EXAMPLES = int(os.environ.get("NAS_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- values --------------------------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 100), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["3", "x\ny", "", "relu", "-1", "1e400", "nan"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=8)
odd_objects = st.sampled_from([datetime.date(2020, 1, 1), b"bytes", {1, 2}, object(), float("inf"), (1, 2), 1j])
anything = st.one_of(json_values, odd_objects)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and len(text.splitlines()) == 1, repr(text)
    return text


# -- space definitions ------------------------------------------------------------------------------------
names = st.one_of(st.sampled_from(["a", "b", "c", "k", "blocks"]), st.text(max_size=4), st.integers(), st.none())
DIM_TYPES = ["categorical", "integer", "float", "repeat"]


def dimension(children):
    optional = {"choices": st.one_of(st.lists(json_values, max_size=4), json_values),
                "low": st.one_of(st.integers(-5, 20), scalars), "high": st.one_of(st.integers(-5, 40), scalars),
                "step": st.one_of(st.integers(-1, 5), st.floats(-1, 5), scalars), "log": st.one_of(st.booleans(), scalars),
                "when": st.one_of(st.dictionaries(names.filter(lambda n: isinstance(n, str)), st.lists(json_values,
                                                                                                     max_size=3),
                                                  max_size=2), json_values),
                "min_count": st.one_of(st.integers(-1, 3), scalars), "max_count": st.one_of(st.integers(-1, 4), scalars),
                "block": st.one_of(st.lists(children, max_size=3), json_values),
                "extra": json_values}
    return st.fixed_dictionaries({"type": st.one_of(st.sampled_from(DIM_TYPES), scalars), "name": names},
                                 optional=optional)


dimensions = st.recursive(st.just({"type": "categorical", "name": "leaf", "choices": [1, 2]}),
                          lambda children: dimension(children), max_leaves=6)
space_defs = st.one_of(
    st.fixed_dictionaries({"dimensions": st.lists(dimensions, max_size=4)},
                          optional={"name": st.one_of(st.text(max_size=6), scalars), "other": json_values}),
    json_values)


@SETTINGS
@given(space_defs)
def test_space_definitions_are_accepted_or_rejected_in_one_line(d):
    try:
        space = SearchSpace.from_dict(d)
    except ConfigError as exc:
        one_line(exc)
        return
    again = SearchSpace.from_json(space.to_json())  # an accepted space round-trips exactly
    assert again.to_dict() == space.to_dict()


VALID_SPACE = {"name": "s", "dimensions": [
    {"type": "categorical", "name": "act", "choices": ["relu", "tanh"]},
    {"type": "integer", "name": "width", "low": 8, "high": 64, "step": 8},
    {"type": "float", "name": "drop", "low": 0.0, "high": 0.5},
    {"type": "repeat", "name": "stages", "min_count": 1, "max_count": 3,
     "block": [{"type": "categorical", "name": "k", "choices": [3, 5]}]},
]}
BAD_FIELD_VALUES = {
    "choices": st.one_of(st.just([]), st.just([1, 1]), st.just([float("nan")]), scalars.filter(
        lambda v: not isinstance(v, list))),
    "low": st.one_of(st.text(max_size=3), st.none(), st.just(float("nan")), st.just(True), st.just(1000)),
    "high": st.one_of(st.text(max_size=3), st.none(), st.just(float("inf")), st.just(-1000)),
    "step": st.one_of(st.just(0), st.just(-2), st.text(min_size=1, max_size=3), st.just(None).map(lambda _: [1])),
    "min_count": st.one_of(st.just(-1), st.just(9), st.text(min_size=1, max_size=3), st.just(1.5)),
    "max_count": st.one_of(st.just(0), st.text(min_size=1, max_size=3), st.just(None)),
    "when": st.one_of(st.just({"nope": [1]}), st.just({"act": []}), st.just("act"), st.just({"a": [1], "b": [2]})),
    "type": st.one_of(st.just("tensor"), st.integers(), st.none()),
}
FIELDS_OF = {"categorical": ["choices", "when", "type"], "integer": ["low", "high", "step", "when", "type"],
             "float": ["low", "high", "step", "when", "type"],
             "repeat": ["min_count", "max_count", "when", "type"]}


@SETTINGS
@given(st.data())
def test_one_bad_field_of_a_space_is_named_in_the_message(data):
    i = data.draw(st.integers(0, len(VALID_SPACE["dimensions"]) - 1))
    dim = dict(VALID_SPACE["dimensions"][i])
    fld = data.draw(st.sampled_from(FIELDS_OF[dim["type"]]))
    value = data.draw(BAD_FIELD_VALUES[fld])
    dim[fld] = value
    d = {**VALID_SPACE, "dimensions": [*VALID_SPACE["dimensions"][:i], dim, *VALID_SPACE["dimensions"][i + 1:]]}
    if fld in ("step", "low", "high") and dim["type"] == "float" and isinstance(value, (int, float)) \
            and not isinstance(value, bool) and math.isfinite(value) and fld != "step":
        assume(False)  # a finite float bound may well be valid
    with pytest.raises(ConfigError) as info:
        SearchSpace.from_dict(d)
    msg = one_line(info.value)
    assert dim["name"] in msg, msg  # the dimension that is wrong ...
    if fld not in ("type", "when", "choices"):  # ... and the field (bounds and counts are named)
        assert fld in msg or fld.split("_")[0] in msg, msg


# -- study configs -----------------------------------------------------------------------------------------
FIELDS = ["space", "budget", "strategy", "strategy_options", "objectives", "constraints", "seed", "target",
          "task_options", "fidelity", "executor", "workers", "time_limit_s", "max_time_s", "name", "restrict",
          "max_retries", "retry_on", "ray_address"]
BASE = {"space": "digits/cnn", "budget": 3}


@SETTINGS
@given(st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6), st.integers()), anything,
                       max_size=6))
def test_study_configs_are_accepted_or_rejected_in_one_line(d):
    try:
        cfg = StudyConfig.from_dict(d)
    except ConfigError as exc:
        one_line(exc)
        return
    stored = json.loads(json.dumps(cfg.to_dict()))  # an accepted config is stored as JSON and reads back the same
    assert StudyConfig.from_dict(stored) == cfg


@SETTINGS
@given(st.sampled_from(FIELDS), anything)
def test_one_bad_config_field_is_named_with_its_value(fld, value):
    try:
        StudyConfig.from_dict({**BASE, fld: value})
    except ConfigError as exc:
        msg = one_line(exc)
        label = {"executor": "executor", "ray_address": "ray_address"}.get(fld, fld)
        assert label in msg, msg
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and len(repr(value)) < 40:
            assert repr(value) in msg or str(value) in msg, msg


# -- CLI options ------------------------------------------------------------------------------------------
class Accepted(Exception):
    pass


def _accept(config, out_dir, **_):
    from nas_core.study import build

    build(config)  # every check a real run makes before it writes anything
    raise Accepted


opt_text = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                             max_size=8),
                     st.sampled_from(["0", "-1", "3", "1.5", "nan", "inf", "1e309", "[1, 2]", "{a: 1}", ": :", "'",
                                      "!!python/object:os.system", "ray", "process", "died,error", "digits/cortex-m4",
                                      "params<=100", "val_accuracy:max", "epochs=2", "epochs=abc", "=3", "x"]))
# not -h/--help (help is not bad input) nor -v/--verbose (which asks for tracebacks)
opt_text = opt_text.filter(lambda s: s not in ("-v", "--verbose") and not s.startswith(("-h", "--h")))
OPTIONS = ["--budget", "--seed", "--workers", "--time-limit", "--max-time", "--executor", "--strategy", "--target",
           "--objective", "--constraint", "--option", "--strategy-option", "--fidelity", "--max-retries",
           "--retry-on", "--address", "--name", "--epochs", "--bogus-flag"]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(space=st.one_of(st.just("digits/cnn"), opt_text.filter(lambda s: not s.startswith("-"))),
       opts=st.lists(st.tuples(st.sampled_from(OPTIONS), opt_text), max_size=4))
def test_cli_run_options_are_accepted_or_one_error_line(space, opts, monkeypatch, tmp_path):
    from nas_core import cli, study

    monkeypatch.setattr(study, "run_study", _accept)
    argv = ["run", space, "--out", str(tmp_path / "o")]
    for flag, value in opts:
        argv += [flag, value]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except Accepted:
            return
    lines = [l for l in err.getvalue().splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, err.getvalue())
    assert "Traceback" not in err.getvalue()


yaml_text = st.one_of(
    st.text(max_size=40),
    st.dictionaries(st.sampled_from(FIELDS + ["out", "bogus"]), json_values, max_size=4).map(json.dumps),
    st.sampled_from(["space: digits/cnn\nbudget: [1", "!!python/object/apply:os.system ['true']", "- a\n- b",
                     "space: digits/cnn\nout: 5", "space: digits/cnn\nbudget: 2020-01-01",
                     "space: digits/cnn\ntask_options: {epochs: 2020-01-01}", "\x07\x08", "a: &x [*x]"]))


@settings(max_examples=max(10, EXAMPLES * 2 // 3), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(text=yaml_text)
def test_cli_config_files_are_accepted_or_one_error_line(text, monkeypatch, tmp_path):
    from nas_core import cli, study

    monkeypatch.setattr(study, "run_study", _accept)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = cli.main(["run", "--config", str(path), "--out", str(tmp_path / "o")])
        except Accepted:
            return
    lines = [l for l in err.getvalue().splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (text, err.getvalue())


@SETTINGS
@given(st.lists(st.sampled_from(["--trial", "--format", "--quantize", "--budget", "-q"]) | opt_text, max_size=5))
def test_cli_export_and_resume_arguments_are_one_error_line(args):
    from nas_core import cli

    for command in (["export", "/nonexistent/study"], ["resume", "/nonexistent/study"], ["report", "/nonexistent"]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main([*command, *args])
        lines = [l for l in err.getvalue().splitlines() if l.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (command, args, err.getvalue())


def test_errors_are_nas_errors_with_one_line():
    with pytest.raises(NasError) as info:
        StudyConfig.from_dict({"space": "a\nb", "budget": "x\ny"})
    assert "\n" not in str(info.value)
