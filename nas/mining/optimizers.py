"""The optimizer table: Keras optimizer constructors and names -> plain dicts.

Manas trains a selected model with the optimizer its author chose (section
4.1), so the miner keeps the optimizer of ``model.compile``: its type and the
arguments the source gives, under Keras 2 names (``lr`` -> ``learning_rate``).
Arguments the source omits are left out (they are Keras's defaults). A value
that cannot be computed statically is ``{"unresolved": "<source text>"}``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from nas.mining.values import KerasObject, Unresolved, render, unresolved_in

# Positional parameters of standalone Keras 2 (also Keras 1's order after lr).
_KERAS_POSITIONAL: Mapping[str, tuple[str, ...]] = {
    "SGD": ("learning_rate", "momentum", "decay", "nesterov"),
    "Adam": ("learning_rate", "beta_1", "beta_2", "epsilon", "decay", "amsgrad"),
    "RMSprop": ("learning_rate", "rho", "epsilon", "decay"),
    "Adagrad": ("learning_rate", "epsilon", "decay"),
    "Adadelta": ("learning_rate", "rho", "epsilon", "decay"),
    "Adamax": ("learning_rate", "beta_1", "beta_2", "epsilon", "decay"),
    "Nadam": ("learning_rate", "beta_1", "beta_2", "epsilon", "schedule_decay"),
    "Ftrl": ("learning_rate",),
    "AdamW": ("learning_rate", "weight_decay"),
}
# tf.keras (optimizer_v2) orders differ after the learning rate.
_TF_POSITIONAL: Mapping[str, tuple[str, ...]] = {
    **_KERAS_POSITIONAL,
    "SGD": ("learning_rate", "momentum", "nesterov"),
    "Adam": ("learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad"),
    "RMSprop": ("learning_rate", "rho", "momentum", "epsilon", "centered"),
    "Adagrad": ("learning_rate", "initial_accumulator_value", "epsilon"),
    "Adadelta": ("learning_rate", "rho", "epsilon"),
    "Adamax": ("learning_rate", "beta_1", "beta_2", "epsilon"),
    "Nadam": ("learning_rate", "beta_1", "beta_2", "epsilon"),
}
OPTIMIZER_TYPES = tuple(_KERAS_POSITIONAL)
# Keras's string identifiers and lower-case constructor aliases.
_BY_NAME: Mapping[str, str] = {name.lower(): name for name in OPTIMIZER_TYPES}
RENAMED_ARGUMENTS = {"lr": "learning_rate"}  # Keras 2.0-2.2 names -> 2.3 (which accepts both)
_IGNORED = frozenset({"name"})


def optimizer_type(name: str) -> str | None:
    """The optimizer type for a class name or string identifier (``'rmsprop'`` -> ``'RMSprop'``), or None."""
    if not isinstance(name, str):
        return None
    return name if name in _KERAS_POSITIONAL else _BY_NAME.get(name.lower())


def _value(value: Any) -> Any:
    if unresolved_in(value) or isinstance(value, KerasObject):
        return {"unresolved": render(value)}
    if isinstance(value, (tuple, list)):
        return [_value(v) for v in value]  # unresolved_in bounds the nesting
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {"unresolved": render(value)}


def translate_optimizer(name: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
                        flavour: str = "keras") -> dict[str, Any]:
    """The optimizer dict of a constructor call such as ``SGD(lr=0.01, momentum=0.9)``.

    Args:
      name: the constructor's name (``SGD``, ``Adam``, ``adam``...).
      args: evaluated positional arguments.
      kwargs: evaluated keyword arguments.
      flavour: ``"keras"`` or ``"tf"``: tf.keras orders positional arguments differently.
    Returns:
      ``{"type": ..., **arguments}``; positional arguments past the known
      parameters are kept as ``"arg<i>"``.
    """
    kind = optimizer_type(name) or name
    table = _TF_POSITIONAL if flavour == "tf" else _KERAS_POSITIONAL
    names = table.get(kind, ("learning_rate",))
    config: dict[str, Any] = {"type": kind}
    for i, value in enumerate(args):
        config[names[i] if i < len(names) else f"arg{i}"] = _value(value)
    for key, value in (kwargs or {}).items():
        if key not in _IGNORED:
            config[RENAMED_ARGUMENTS.get(key, key)] = _value(value)
    return config


def optimizer_from_value(value: Any) -> dict[str, Any] | None:
    """The optimizer dict for ``compile(optimizer=value)`` when value is not a constructor call.

    Args:
      value: a string identifier, None, an `Unresolved` marker or anything else.
    Returns:
      ``{"type": ...}`` for a known identifier, None for None, and
      ``{"unresolved": text}`` for anything the miner cannot read.
    """
    if value is None:
        return None
    if isinstance(value, str) and optimizer_type(value):
        return {"type": optimizer_type(value)}
    if isinstance(value, Unresolved):
        return {"unresolved": value.expr}
    return {"unresolved": render(value)}
