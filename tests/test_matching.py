"""Manas's intents and model matching (section 4.2-4.3): G-means with Anderson-Darling, the filter.

The Anderson-Darling statistic is checked against scipy's, G-means against
well-separated Gaussian blobs, matching against a hand-built zoo of MNIST-,
CIFAR-, ImageNet- and cats-vs-dogs-style models, and the filter (eq. 10)
against a worked similarity matrix and a cluster with one dominant architecture.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import scipy.stats

from nas.ir import Arch, Attrs, Node, cnn, mlp
from nas.mining.intent import Intent
from nas.search.manas.gmeans import (
    CRITICAL_VALUES, adjusted_anderson_darling, anderson_darling, critical_value, gmeans, kmeans, looks_gaussian,
)
from nas.search.manas.graph_similarity import (
    architecture_classes, most_common_architecture, same_architecture, similarity_matrix, trainable_graph,
)
from nas.search.manas.matching import IntentError, MatchError, arch_intent, dataset_intent, match, shape_intent
from tests.arch_helpers import chain as _chain


# ====================================================================== helpers
def _keras_cnn(widths=(32, 64), dense=128, classes=10, shape=(28, 28, 1), activation="relu", dropout=None,
               name="keras-cnn") -> Arch:
    """Keras's MNIST CNN family: (conv-act) x n, pool, [dropout], flatten, dense-act, dense-softmax."""
    nodes = [("in", "Input", {"shape": list(shape)})]
    for i, width in enumerate(widths):
        nodes += [(f"conv{i}", "Conv2D", {"filters": width, "kernel_size": 3}), (f"act{i}", "Activation",
                                                                                 {"fn": activation})]
    nodes.append(("pool", "MaxPool2D", {"pool_size": 2}))
    if dropout:
        nodes.append(("drop", "Dropout", {"rate": dropout}))
    nodes += [("flatten", "Flatten", {}), ("fc", "Dense", {"units": dense}), ("fc_act", "Activation", {"fn": "relu"}),
              ("out", "Dense", {"units": classes}), ("softmax", "Activation", {"fn": "softmax"})]
    return _chain(*nodes, name=name)


def _blobs(k: int, seed: int, n: int = 100) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.array([[0, 0], [12, 0], [0, 12], [12, 12]])[:k]
    return np.concatenate([rng.normal(m, 1.0, size=(n, 2)) for m in means])


# ====================================================================== Anderson-Darling
@pytest.mark.parametrize("n", [8, 25, 200, 2000])
@pytest.mark.parametrize("seed", [0, 1])
def test_anderson_darling_statistic_equals_scipys(n, seed):
    rng = np.random.default_rng(seed)
    for sample in (rng.normal(3.0, 2.0, n), rng.exponential(1.0, n), rng.uniform(-1, 1, n)):
        expected = scipy.stats.anderson(sample, "norm", method="interpolate").statistic
        assert anderson_darling(sample) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert adjusted_anderson_darling(sample) == pytest.approx(expected * (1 + 4 / n - 25 / n**2), rel=1e-9)


@pytest.mark.parametrize("alpha", [0.10, 0.05, 0.01])
def test_critical_values_reject_normal_samples_at_most_alpha_of_the_time(alpha):
    # With G-means's adjustment, Stephens's 1974 values reject normal samples of
    # 40 at about the nominal rate: within sampling error of alpha, not far below.
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(4000, 40))
    rate = np.mean([not looks_gaussian(s, alpha) for s in samples])
    assert 0.5 * alpha < rate < alpha + 3 * math.sqrt(alpha / len(samples))


def test_only_tabulated_levels_have_critical_values():
    assert critical_value(0.0001) == 1.8692  # G-means's alpha, as the G-means paper tabulates it
    values = [critical_value(a) for a in sorted(CRITICAL_VALUES, reverse=True)]
    assert values == sorted(values)
    with pytest.raises(ValueError, match="tabulated levels"):
        critical_value(0.001)


def test_normal_samples_pass_and_bimodal_samples_fail():
    rng = np.random.default_rng(0)
    passed = sum(looks_gaussian(rng.normal(size=200)) for _ in range(50))
    assert passed == 50  # alpha = 1e-4: a false rejection in 50 tries would be a 1-in-200 event
    bimodal = np.concatenate([rng.normal(-3, 1, 100), rng.normal(3, 1, 100)])
    assert not looks_gaussian(bimodal)


# ====================================================================== G-means
@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("seed", range(5))
def test_gmeans_finds_the_number_of_well_separated_blobs(k, seed):
    x = _blobs(k, seed)
    before = x.copy()
    result = gmeans(x)
    assert result.k == k
    # each blob is one cluster
    labels = result.labels.reshape(k, -1)
    assert all(len(set(row)) == 1 for row in labels) and len({row[0] for row in labels}) == k
    np.testing.assert_array_equal(x, before)


def test_gmeans_is_deterministic_and_handles_degenerate_data():
    x = _blobs(4, 3)
    a, b = gmeans(x), gmeans(x.copy())
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centers, b.centers)
    assert gmeans(np.ones((30, 2))).k == 1  # identical points
    assert gmeans(np.array([[0.0, 0.0], [100.0, 100.0], [0.0, 1.0]])).k == 1  # too few to test
    assert gmeans(_blobs(4, 0), max_k=2).k <= 2
    with pytest.raises(ValueError, match="non-empty"):
        gmeans(np.zeros((0, 2)))


def test_kmeans_drops_empty_centres():
    x = np.array([[0.0], [0.1], [10.0]])
    centers, labels = kmeans(x, np.array([[0.0], [10.0], [1000.0]]))
    assert len(centers) == 2 and labels.tolist() == [0, 0, 1]


# ====================================================================== intents
def test_dataset_intent_from_a_loaded_dataset(digits, digits_regression):
    assert dataset_intent(digits) == Intent(height=8, width=8, channels=1, classes=10, task="classification")
    assert dataset_intent(digits_regression).classes == 1  # one regression output
    assert shape_intent((64,), 3) == Intent(None, None, 64, 3, "classification")  # as model_intent reads shapes
    assert shape_intent((100, 4), 3).height == 100
    with pytest.raises(ValueError, match="classes"):
        shape_intent((8, 8, 1), 0)


def test_arch_intent_reads_input_shape_and_last_dense():
    assert arch_intent(_keras_cnn(shape=(32, 30, 3), classes=7)) == Intent(32, 30, 3, 7)
    with pytest.raises(IntentError, match="no convolutional layer"):
        arch_intent(mlp([8], 3, input_shape=(8, 8, 1)))
    with pytest.raises(IntentError, match="declares no shape"):
        arch_intent(cnn([4], 3))
    no_dense = _chain(("in", "Input", {"shape": [8, 8, 1]}), ("c", "Conv2D", {"filters": 3, "kernel_size": 3}),
                      ("gap", "GlobalAvgPool", {}))
    with pytest.raises(IntentError, match="no Dense layer"):
        arch_intent(no_dense)


# ====================================================================== matching
def _zoo() -> tuple[list[Arch], list[str]]:
    """40 mined-looking models in four groups of ten, with the spread real zoos have."""
    zoo = []
    for k, (size, widths) in enumerate([(28, (32, 64)), (28, (32, 64)), (28, (16, 32)), (28, (32, 32, 64)),
                                        (28, (20,)), (32, (32, 64)), (28, (64, 64)), (28, (32, 64)),
                                        (28, (8, 16)), (27, (32, 64))]):
        zoo.append(("mnist", cnn(widths, 10, input_shape=(size, size, 1), name=f"mnist{k}")))
    for k, (size, widths) in enumerate([(32, (32, 64)), (32, (32, 64, 128)), (32, (16, 32)), (32, (64, 64)),
                                        (32, (32,)), (32, (32, 64)), (30, (32, 64)), (32, (48, 96)),
                                        (32, (32, 64)), (32, (64, 128))]):
        zoo.append(("cifar", cnn(widths, 10, input_shape=(size, size, 3), name=f"cifar{k}")))
    for k, size in enumerate([224, 224, 224, 227, 224, 299, 224, 224, 224, 224]):
        zoo.append(("imagenet", cnn((64, 128, 256), 1000, input_shape=(size, size, 3), name=f"imagenet{k}")))
    for k, size in enumerate([64, 64, 150, 128, 64, 100, 64, 150, 224, 64]):
        zoo.append(("catsdogs", cnn((32, 64), 2, input_shape=(size, size, 3), name=f"catsdogs{k}")))
    return [a for _, a in zoo], [g for g, _ in zoo]


@pytest.mark.parametrize("shape, classes, group", [
    ((32, 32, 3), 10, "cifar"),
    ((28, 28, 1), 10, "mnist"),
    ((224, 224, 3), 1000, "imagenet"),
])
def test_matching_picks_the_cluster_of_the_closest_model(shape, classes, group):
    archs, groups = _zoo()
    result = match(shape_intent(shape, classes), archs)
    assert groups[result.closest_index] == group
    assert archs[result.closest_index].input_node.attrs["shape"] == shape  # delta_o = delta_s = 0
    assert result.closest_index in result.cluster_indices
    assert {groups[i] for i in result.cluster_indices} == {group}
    assert len(result.cluster) >= 5 and not result.filtered and result.selected == result.cluster
    assert result.num_clusters > 1 and result.delta_i == 0
    assert all(result.intents[i].channels == shape[2] for i in result.cluster_indices)


def test_channel_filter_keeps_only_models_with_the_datasets_channels():
    archs, groups = _zoo()
    result = match(shape_intent((28, 28, 1), 10), archs)
    assert result.num_candidates == groups.count("mnist")
    # A 3-channel 28x28 dataset never matches the (closer-sized) grayscale models.
    result = match(shape_intent((28, 28, 3), 10), archs)
    assert "mnist" not in {groups[i] for i in result.cluster_indices}
    assert groups[result.closest_index] == "cifar"
    # No model has 4 channels: the closest channel count (3) is kept, and said so.
    result = match(shape_intent((32, 32, 4), 10), archs)
    assert result.delta_i == 1 and "delta_i = 1" in result.reason
    assert {groups[i] for i in result.cluster_indices} == {"cifar"}


def test_closest_model_ranks_outputs_before_size():
    # delta_o takes precedence over delta_s (eq. 6): a 10-class model 100 pixels off beats
    # a 2-class model of exactly the right size.
    models = [cnn((8,), 2, input_shape=(64, 64, 3)), cnn((8,), 10, input_shape=(164, 64, 3))]
    result = match(shape_intent((64, 64, 3), 10), models)
    assert result.closest_index == 1


def test_models_of_another_task_are_not_matched():
    class Mined:
        def __init__(self, arch, task):
            self.arch, self.intent = arch, Intent(None, None, None, None, task)

    # The regression model has the dataset's exact size, the classifiers are 4-12 pixels off.
    regression = Mined(cnn((8,), 1, input_shape=(8, 8, 1)), "regression")
    classifiers = [Mined(cnn((8,), 10, input_shape=(8 + d, 8 + d, 1)), "classification") for d in (4, 8, 12)]
    unknown = Mined(cnn((8,), 10, input_shape=(40, 40, 1)), "unknown")
    result = match(shape_intent((8, 8, 1), 10), [regression, *classifiers, unknown])
    assert 0 not in result.cluster_indices and result.closest_index == 1
    assert "1 model(s) of another task left out" in result.reason
    assert result.intents[0].task == "regression" and result.intents[4].task == "unknown"
    for_regression = match(shape_intent((8, 8, 1), 1, task="regression"), [regression, *classifiers])
    assert for_regression.selected_indices == (0,)


def test_matching_accepts_records_and_skips_models_without_intent():
    class Mined:
        def __init__(self, arch, optimizer):
            self.arch, self.optimizer = arch, optimizer

    archs, _ = _zoo()
    records = [Mined(a, {"type": "SGD"}) for a in archs] + [Mined(cnn([4], 3), None),
                                                          Mined(mlp([4], 10, input_shape=(8, 8, 1)), None),
                                                          Mined(None, None)]
    result = match(shape_intent((32, 32, 3), 10), records)
    assert all(isinstance(r, Mined) for r in result.selected)
    assert [i for i, _ in result.skipped] == [40, 41, 42] and "3 model(s) skipped" in result.reason
    assert result.intents[40] is None and "no IR architecture" in result.skipped[2][1]


def test_matching_refuses_flat_data_and_empty_zoos():
    with pytest.raises(MatchError, match="image data"):
        match(shape_intent((64,), 10), _zoo()[0])
    with pytest.raises(MatchError, match="usable intent"):
        match(shape_intent((8, 8, 1), 10), [mlp([4], 10, input_shape=(8, 8, 1))])


# ====================================================================== the filter (eq. 10)
def test_similarity_matrix_of_a_chain_is_the_worked_cosines():
    # conv32 -> conv64 -> dense10: rows (0,32,0), (32,0,64), (0,64,0).
    arch = _chain(("in", "Input", {"shape": [8, 8, 1]}), ("c1", "Conv2D", {"filters": 32, "kernel_size": 3}),
                  ("a1", "Activation", {"fn": "relu"}), ("bn", "BatchNorm", {}),
                  ("c2", "Conv2D", {"filters": 64, "kernel_size": 3}), ("gap", "GlobalAvgPool", {}),
                  ("d", "Dense", {"units": 10}))
    graph = trainable_graph(arch)
    assert graph.layers == ("c1", "c2", "d")  # BatchNorm and activations are not vertices
    np.testing.assert_array_equal(graph.weights, [[0, 32, 0], [32, 0, 64], [0, 64, 0]])
    np.testing.assert_allclose(similarity_matrix(graph, graph), [[1, 0, 1], [0, 1, 0], [1, 0, 1]], atol=1e-12)
    other = trainable_graph(_chain(("in", "Input", {"shape": [8, 8, 1]}),
                                   ("c1", "Conv2D", {"filters": 32, "kernel_size": 3}),
                                   ("c2", "Conv2D", {"filters": 32, "kernel_size": 3}),
                                   ("d", "Dense", {"units": 10})))
    # vertex c2 of the first, (32, 0, 64), against each vertex of the second, (0,32,0), (32,0,32), (0,32,0)
    cosine = (32 * 32 + 64 * 32) / (math.hypot(32, 64) * math.hypot(32, 32))
    np.testing.assert_allclose(similarity_matrix(graph, other)[1], [0, cosine, 0], atol=1e-12)
    assert not same_architecture(graph, other)


def test_trainable_graph_follows_data_flow_through_merges():
    nodes = (Node("in", "Input", (), Attrs(shape=(8, 8, 3))),
             Node("stem", "Conv2D", ("in",), Attrs(filters=4, kernel_size=3)),
             Node("a", "Conv2D", ("stem",), Attrs(filters=4, kernel_size=3)),
             Node("relu", "Activation", ("a",), Attrs(fn="relu")),
             Node("add", "Add", ("stem", "relu")),
             Node("gap", "GlobalAvgPool", ("add",)),
             Node("head", "Dense", ("gap",), Attrs(units=2)))
    graph = trainable_graph(Arch(nodes, ("in",), ("head",)).validate())
    assert graph.layers == ("stem", "a", "head")
    # head reads both stem (skip) and a (through relu and add); each edge weighs its source's channels
    np.testing.assert_array_equal(graph.weights, [[0, 4, 4], [4, 0, 4], [4, 4, 0]])


def test_equal_similarity_means_same_topology_and_width_ratios():
    base = trainable_graph(_keras_cnn((32, 64), dense=128))
    assert same_architecture(base, trainable_graph(_keras_cnn((32, 64), dense=128, activation="tanh", dropout=0.25)))
    assert same_architecture(base, trainable_graph(_keras_cnn((64, 128), dense=256)))  # all widths doubled
    assert not same_architecture(base, trainable_graph(_keras_cnn((32, 32), dense=128)))
    assert not same_architecture(base, trainable_graph(_keras_cnn((32, 64, 64), dense=128)))


def test_filter_keeps_the_most_common_architecture():
    common = [_keras_cnn((32, 64), activation=a, dropout=d, name=f"common{i}")
              for i, (a, d) in enumerate([("relu", None), ("tanh", None), ("relu", 0.25), ("elu", 0.5),
                                          ("relu", 0.1)])]
    second = [_keras_cnn((16, 32, 64), dropout=d, name=f"second{i}") for i, d in enumerate([None, 0.2, 0.3])]
    rare = [_keras_cnn((32,), name="rare0"), _keras_cnn((8, 64), name="rare1")]
    archs = second[:1] + common[:2] + rare + second[1:] + common[2:]
    names = [a.name for a in archs]
    classes = architecture_classes([trainable_graph(a) for a in archs])
    assert sorted(len(c) for c in classes) == [1, 1, 3, 5]
    kept = most_common_architecture(archs)
    assert {names[i] for i in kept} == {a.name for a in common}

    result = match(shape_intent((28, 28, 1), 10), archs, threshold=4)
    assert result.filtered and len(result.cluster) == len(archs)
    # The filter adds the most common architecture's models to the closest one (here "second0",
    # first of the equally close), which Manas starts from whatever its class.
    assert result.closest_index == 0 and result.selected[0].name == "second0"
    assert {a.name for a in result.selected[1:]} == {a.name for a in common}
    assert "filtered" in result.reason
    unfiltered = match(shape_intent((28, 28, 1), 10), archs, threshold=len(archs))
    assert not unfiltered.filtered and unfiltered.selected == unfiltered.cluster


def test_a_tie_for_the_largest_class_goes_to_the_closest_models_class():
    a = [_keras_cnn((32, 64), name=f"a{i}") for i in range(2)]
    b = [_keras_cnn((16, 32, 64), name=f"b{i}") for i in range(2)]
    archs = a + b
    assert most_common_architecture(archs) == (0, 1)
    assert most_common_architecture(archs, prefer=3) == (2, 3)


@pytest.mark.parametrize("module", ["matching", "gmeans", "graph_similarity", "adapt", "optimizer_translation"])
def test_the_old_mining_paths_say_where_manass_selection_went(module):
    # Manas's search-time selection moved beside its strategy (nas.mining imports only nas.ir and the
    # standard library); the old module paths fail with the new one instead of aliasing it.
    with pytest.raises(ImportError, match=f"moved to nas.search.manas.{module}"):
        importlib.import_module(f"nas.mining.{module}")
