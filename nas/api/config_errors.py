"""Hydra's and OmegaConf's config errors as one line that names the key, what it accepts and what it got.

Hydra reports a value its schema (`nas.api.schema`) refuses as
``Error merging override train.epochs=abc`` followed by OmegaConf's
``Value 'abc' of type 'str' could not be converted to Integer``, a
``full_key`` line and the schema's class name. The key's spec knows the
whole rule (``train.epochs must be an integer >= 1``), so where a spec owns
the key its message is used; otherwise the schema's field type is described.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from hydra.errors import ConfigCompositionException, OverrideParseException
from omegaconf.errors import (
    ConfigAttributeError, ConfigKeyError, InterpolationToMissingValueError, MissingMandatoryValue, OmegaConfBaseException, ValidationError,
)

from nas.api.schema import SPEC_OF_KEY_PREFIX
from nas.train.errors import TrainConfigError

# What Hydra raises while composing a config.
COMPOSE_ERRORS: tuple[type[BaseException], ...] = (
    ConfigCompositionException, OverrideParseException, OmegaConfBaseException)
# What OmegaConf raises when a task reads a setting nobody set (``checkpoint: ???``); any other
# OmegaConf error inside a task is the code reading a key wrongly, a bug with its traceback.
UNSET_ERRORS: tuple[type[BaseException], ...] = (MissingMandatoryValue, InterpolationToMissingValueError)


def _describe_type(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return "null or " + _describe_type(inner[0]) if len(inner) == 1 else "a value"
    if typing.get_origin(annotation) in (list, typing.List):
        return "a list, e.g. [1, 2]"
    if typing.get_origin(annotation) in (dict, typing.Dict):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(annotation, "a value")


def _field_type(error: OmegaConfBaseException) -> Any:
    schema = getattr(error, "object_type", None)
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        return None
    return typing.get_type_hints(schema).get(str(getattr(error, "key", "")))


def _spec_message(key: str, value: Any) -> str | None:
    """The message of the spec that owns `key` (``train.epochs`` -> TrainConfig), given `value`."""
    prefix, _, field = key.partition(".")
    spec = SPEC_OF_KEY_PREFIX.get(prefix)
    if spec is None or "." in field or field not in {f.name for f in dataclasses.fields(spec)}:
        return None
    try:
        spec(**{field: value})
    except TrainConfigError as exc:
        return str(exc) if exc.key == key else None
    return None


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def describe(exc: BaseException) -> str:
    """One line for a config error: the key, what it accepts, what was given."""
    cause = exc.__cause__ if isinstance(exc, ConfigCompositionException) else exc
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None) or getattr(cause, "key", None) or "?"
        if isinstance(cause, MissingMandatoryValue):
            return f"{key} is not set (???); pass {key}=<value>"
        if isinstance(cause, InterpolationToMissingValueError):  # data.name: npz:${.path} without data.path
            missing = str(cause.msg).rpartition("Missing mandatory value:")[2].split()
            needed = missing[0] if missing else "the value it refers to"
            return f"{needed} is not set (???; {key} needs it); pass {needed}=<value>"
        if isinstance(cause, ValidationError):
            value = getattr(cause, "value", None)
            if value is None:
                return f"{key} must not be null; give it a value"
            message = _spec_message(str(key), value)
            if message is not None:
                return message
            return f"{key} must be {_describe_type(_field_type(cause))}, got {value!r} ({type(value).__name__})"
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
            schema = getattr(cause, "object_type", None)
            known = (f"; {key.rpartition('.')[0] or 'the config'} has {sorted(f.name for f in dataclasses.fields(schema))}"
                     if isinstance(schema, type) and dataclasses.is_dataclass(schema) else "")
            return f"{key}: no such setting{known}"
        return f"{key}: {_one_line(str(getattr(cause, 'msg', cause)).split('full_key:')[0])}"
    # Hydra appends its search path to a missing config file's message: not the user's concern.
    return _one_line(str(exc).split("Config search path")[0])
