"""DREAM's condition classifier: each condition provoked by a real training run on digits.

Each run is a few epochs of a small MLP on scikit-learn's digits (1257
training examples), seconds on a CPU.
"""

import dataclasses
import math

import jax
import pytest

from nas.compile import init_variables, to_flax
from nas.ir import cnn, mlp
from nas.search.dream import Condition, FeedbackError, Thresholds, classify, format_condition, load_thresholds, \
    parse_condition
from nas.search.dream.conditions import architecture_family
from nas.search.dream.conf_files import conf_path, load_yaml
from nas.train import OptimizerConfig, TrainConfig, train

# Four epochs: the slow-convergence test needs k = 3 epoch-to-epoch changes.
BASE = TrainConfig(epochs=4, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def thresholds():
    return load_thresholds()


def _condition(arch, digits, config, thresholds, variables=None) -> Condition:
    result = train(arch, digits, config, variables=variables)
    return classify(arch, result.history, result.feedback, thresholds, input_shape=digits.input_shape)


# ------------------------------------------------------------------ thresholds live in conf/
def test_thresholds_are_the_yaml_and_only_the_yaml():
    doc = load_yaml(conf_path("dream", "default"))["thresholds"]
    loaded = load_thresholds()
    assert loaded.to_dict() == {k: pytest.approx(v) for k, v in doc.items()}
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(Thresholds))  # no second copy in code


def test_bad_thresholds_name_the_file_and_key(tmp_path):
    path = tmp_path / "dream.yaml"
    path.write_text("thresholds:\n  slow_convergence_delta: 0.01\n  slow_convergence_epochs: 0\n"
                    "  vanishing_ratio: 1.0e-3\n  exploding_ratio: 70\n  dying_relu_fraction: 0.7\n")
    with pytest.raises(ValueError, match=rf"{path}.*slow_convergence_epochs must be an integer >= 1"):
        load_thresholds(str(path))
    path.write_text("thresholds:\n  slow_convergence_delta: 0.01\n")
    with pytest.raises(ValueError, match="missing"):
        load_thresholds(str(path))


# ------------------------------------------------------------------ names
def test_condition_names_round_trip_and_refuse_unknown_codes():
    for text in ("OA-NC-NG-NW", "RA-SC-DG-NW", "MA-SC-EG-EW", "NC-NG-NW"):
        assert format_condition(parse_condition(text)) == text
    assert parse_condition("NC-NG-NW").A is None
    with pytest.raises(ValueError, match="G must be one of"):
        parse_condition("OA-NC-XG-NW")
    with pytest.raises(ValueError, match="A-C-G-W"):
        parse_condition("OA-NC")


def test_families_are_read_from_the_ir():
    from nas.search.dream import get_action

    assert architecture_family(mlp([8], 3)) == "MA"
    plain = cnn([8, 8], 3, input_shape=(8, 8, 1))
    assert architecture_family(plain) == "OA"
    residual, _ = get_action("block_type=residual")(plain, TrainConfig())
    assert architecture_family(residual) == "RA"


# ------------------------------------------------------------------ real runs
def test_normal_run_is_nc_ng_nw(digits, thresholds):
    condition = _condition(mlp([64], 10), digits, BASE, thresholds)
    assert condition.name == "MA-NC-NG-NW" and condition.normal, condition.evidence
    assert condition.evidence.first_layer == "dense1" and condition.evidence.last_layer == "head"


def test_deep_sigmoid_mlp_with_tiny_init_has_vanishing_gradients(digits, thresholds):
    # random_normal: std 0.05, so each sigmoid layer scales the backward signal by about 0.25 * 0.05 * sqrt(32).
    arch = mlp([32] * 6, 10, activation="sigmoid", kernel_init="random_normal")
    condition = _condition(arch, digits, BASE, thresholds)
    assert condition.G == "VG", condition.evidence
    assert condition.evidence.gradient_ratio < thresholds.vanishing_ratio


def test_huge_learning_rate_explodes_gradients_then_weights(digits, thresholds):
    config = dataclasses.replace(BASE, optimizer=OptimizerConfig(name="sgd", learning_rate=1e4))
    condition = _condition(mlp([32, 32], 10), digits, config, thresholds)
    assert (condition.G, condition.W) == ("EG", "EW"), condition.evidence
    assert condition.evidence.nonfinite_gradients and condition.evidence.nonfinite_weights


def test_relu_net_with_large_negative_biases_has_dying_relus(digits, thresholds):
    arch = mlp([32, 32], 10, input_shape=digits.input_shape)
    variables = init_variables(to_flax(arch), jax.random.PRNGKey(0), digits.input_shape)
    shifted = {name: dict(layer, bias=layer["bias"] - 10.0) if name != "head" else layer
               for name, layer in variables["params"].items()}
    condition = _condition(arch, digits, BASE, thresholds, variables={"params": shifted})
    assert condition.G == "DG", condition.evidence
    assert condition.evidence.dead_fraction >= thresholds.dying_relu_fraction


def test_tiny_learning_rate_converges_slowly(digits, thresholds):
    config = dataclasses.replace(BASE, optimizer=OptimizerConfig(learning_rate=1e-7))
    condition = _condition(mlp([32], 10), digits, config, thresholds)
    assert condition.C == "SC", condition.evidence
    assert len(condition.evidence.changes) == thresholds.slow_convergence_epochs
    assert all(c < thresholds.slow_convergence_delta for c in condition.evidence.changes)


def test_dead_fraction_counts_zero_gradients_not_only_inactive_units(digits):
    # Max pooling passes gradient to one cell of each 2x2 window: the cells it drops are active
    # units with zero gradient, which the inactive-unit count (the sown value) misses.
    arch = cnn([8], 10, downsample_after=(0,), input_shape=digits.input_shape)
    result = train(arch, digits, dataclasses.replace(BASE, epochs=1))
    assert result.feedback[-1]["dead_relu"]["act1"] > 0


# ------------------------------------------------------------------ the rules on given rows
def _rows(norms, dead=None, accuracies=(0.5, 0.6)):
    history = [{"epoch": i + 1, "val_accuracy": a} for i, a in enumerate(accuracies)]
    feedback = [{"epoch": len(accuracies), "grad_norm": norms, "dead_relu": dead or {}, "nonfinite": False,
                 "nonfinite_weights": False}]
    return history, feedback


def test_gradient_ratio_uses_first_and_last_weight_layers(thresholds):
    arch = mlp([8, 8], 3, input_shape=(4,), batchnorm=True)
    for first, expected in ((100.0, "EG"), (1e-5, "VG"), (1.0, "NG")):
        history, feedback = _rows({"dense1": first, "bn1": 1e9, "dense2": 1.0, "bn2": 1e-9, "head": 1.0})
        condition = classify(arch, history, feedback, thresholds)
        assert condition.G == expected and condition.evidence.gradient_ratio == pytest.approx(first)
        assert (condition.evidence.first_layer, condition.evidence.last_layer) == ("dense1", "head")


def test_classify_needs_feedback(thresholds):
    arch = mlp([8], 3, input_shape=(4,))
    with pytest.raises(FeedbackError, match="no feedback rows"):
        classify(arch, [], [], thresholds)
    history, feedback = _rows({})
    with pytest.raises(FeedbackError, match="train.feedback=false"):
        classify(arch, history, feedback, thresholds)
    assert math.isfinite(thresholds.exploding_ratio)
