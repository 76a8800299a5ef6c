"""NCEvolve (NeuNetS s4.1.1) and the AutoKeras-style greedy baseline on the strategy contract.

The paper's claim is that a mutation "does not change the fitness of an
individual": a child's validation accuracy before any training equals its
parent's. Checked through the engine: children's inherited weights against
their parents' checkpoints.
"""

import dataclasses

import jax
import numpy as np
import pytest

from nas.checkpoint import load_model
from nas.compile import init_variables, to_flax
from nas.search import INHERIT, Budget, Posed, Problem, Trained, TrialResult, run_search
from nas.search.autokeras_greedy import AUTOKERAS_GREEDY, GreedySpace
from nas.search.ncevolve import (MUTATIONS, NCEVOLVE, NcEvolveSpace, cell_structure, global_id, mutate, template,
                                 tournament)
from nas.store import SqliteTrialStore
from nas.train import TrainConfig, evaluate

BASE = TrainConfig(epochs=1, batch_size=64)
TINY = NcEvolveSpace(cells=2, widths=(4, 6), dense_units=8, population_size=2, initial_epochs=2, epochs=1,
                     learning_rate=3e-3)
IMAGES = Problem((8, 8, 1), 10)


def _variables(arch, shape, seed=0):
    return init_variables(to_flax(arch), jax.random.key(seed), shape)


def _close(child, parent, examples):
    """A mutation keeps the function up to float32 rounding: measured logits differ by <= 3.6e-7
    (logits <= 0.6 at initialisation), and the smallest top-2 logit margin on digits' validation
    split is 1.1e-4, so a near-tie can flip one prediction on another CPU, two almost never."""
    assert child["loss"] == pytest.approx(parent["loss"], abs=1e-5)
    assert abs(child["accuracy"] - parent["accuracy"]) <= 1 / examples + 1e-9


# ------------------------------------------------------------------ mutations
@pytest.mark.parametrize("name", MUTATIONS)
def test_each_mutation_keeps_the_function_and_every_cell_identical(digits, name):
    space = NcEvolveSpace(cells=2, widths=(6,), dense_units=8, mutations=(name,))
    arch = template(space, Problem.of(digits), 6)
    variables = _variables(arch, digits.input_shape)
    x, y = digits.x_val[:300], digits.y_val[:300]
    before = evaluate(arch, variables, x, y)
    child, child_vars, record = mutate(arch, variables, space, np.random.default_rng(1))
    _close(evaluate(child, child_vars, x, y), before, len(y))
    assert record["op"] == name and child.structural_hash() != arch.structural_hash()
    assert cell_structure(child, 1) == cell_structure(child, 2)
    grown = len(cell_structure(child, 1)) - len(cell_structure(arch, 1))
    # insert: conv + ReLU; branch: two convs + concat + the inserted conv; skip: conv + ReLU + 1x1 + Add
    assert grown == {"insert_conv": 2, "branch_insert": 3, "insert_skip": 4}.get(name, 0)
    for local, _, _ in cell_structure(child, 1):  # same widths, kernels and splits in both cells
        assert child.node(global_id(local, 1)).attrs == child.node(global_id(local, 2)).attrs
    assert set(variables["params"]) <= set(child_vars["params"]) | {"c1_conv1", "c2_conv1"}


def test_tournament_returns_the_fittest_of_its_sample():
    population = [Trained(t, None, float(v), None) for t, v in enumerate([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])]
    for seed in range(20):
        picked = tournament(population, 0.3, np.random.default_rng(seed))
        sample = np.random.default_rng(seed).choice(10, size=3, replace=False)
        assert picked.objective == min(population[i].objective for i in sample)
        assert picked.trial == min(i for i in sample if population[i].objective == picked.objective)
    assert tournament(population, 1.0, np.random.default_rng(0)).trial == 1  # ties: the oldest


# ------------------------------------------------------------------ strategies without training
def _drive(strategy, posed, seed, objective, generations, batch=2):
    """Runs ask/tell with synthetic objectives; children report their inherited weights as trained."""
    state, log = strategy.init(posed, seed), []
    for _ in range(generations):
        state, cands = strategy.ask(state, batch)
        assert cands
        log.append(cands)
        results = []
        for c in cands:
            variables = c.variables if c.start == INHERIT else _variables(c.arch, posed.problem.input_shape, c.trial)
            results.append(TrialResult(c.trial, "done", 0.0, 0.0, 1.0, 0, 1, objective(c), variables))
        state = strategy.tell(state, results)
    return state, log


def _flat(batches):
    return [c for batch in batches for c in batch]


def test_ncevolve_proposals_are_a_function_of_the_seed():
    space = Posed(TINY, IMAGES)
    f = lambda c: float(c.arch.num_params() % 7)  # noqa: E731
    a, b, other = (_flat(_drive(NCEVOLVE, space, seed, f, 3)[1]) for seed in (5, 5, 6))
    assert [(c.arch.structural_hash(), dict(c.choices), c.parent) for c in a] == \
           [(c.arch.structural_hash(), dict(c.choices), c.parent) for c in b]
    assert [c.start for c in a] == ["fresh"] * 2 + ["inherit"] * 4
    assert [c.choices for c in a[2:]] != [c.choices for c in other[2:]]
    for c in a[2:]:
        assert cell_structure(c.arch, 1) == cell_structure(c.arch, 2)


def test_ncevolve_waits_for_pending_results_and_caps_the_population():
    space = Posed(TINY, IMAGES)
    state = NCEVOLVE.init(space, 0)
    state, first = NCEVOLVE.ask(state, 5)
    assert len(first) == 2  # the initial population only
    state, more = NCEVOLVE.ask(state, 2)
    assert more == []  # children need the told population
    capped = Posed(dataclasses.replace(TINY, max_population=2), IMAGES)
    state, _ = _drive(NCEVOLVE, capped, 0, lambda c: float(c.trial), 3)
    assert [ind.trial for ind in state.population] == [0, 1]  # later (worse) children left


def test_greedy_always_morphs_the_best_so_far():
    space = Posed(GreedySpace(channels=(4, 6), dense=(8,), children=2), IMAGES)
    values = [0.5, 0.7, 0.4, 0.6, 0.3, 0.9, 0.8, 0.2, 0.35]
    _, batches = _drive(AUTOKERAS_GREEDY, space, 0, lambda c: values[c.trial], 5)
    assert [len(b) for b in batches] == [1, 2, 2, 2, 2] and batches[0][0].start == "fresh"
    told = [0]
    for batch in batches[1:]:
        incumbent = min(told, key=lambda t: (values[t], t))
        for c in batch:
            assert c.start == INHERIT and c.parent == incumbent
            assert c.choices["morph"] in ("widen_filters", "widen_dense", "insert_conv", "insert_skip")
        told += [c.trial for c in batch]
    assert [c.parent for b in batches[1:] for c in b] == [0, 0, 2, 2, 4, 4, 4, 4]


def test_greedy_mlp_morphs_dense_layers(digits):
    space = Posed(GreedySpace(family="mlp", hidden=(16,)), Problem((64,), 10))
    log = _flat(_drive(AUTOKERAS_GREEDY, space, 0, lambda c: 1.0 / (c.trial + 1), 5, batch=1)[1])
    x, y = digits.x_val[:200].reshape(200, -1), digits.y_val[:200]
    ops = set()
    for parent, child in zip(log, log[1:]):
        assert child.parent == parent.trial
        pv = parent.variables if parent.start == INHERIT else _variables(parent.arch, (64,), parent.trial)
        _close(evaluate(child.arch, child.variables, x, y), evaluate(parent.arch, pv, x, y), len(y))
        ops.add(child.choices["morph"])
    assert ops <= {"widen_dense", "insert_dense"}


# ------------------------------------------------------------------ through the engine
def _search(strategy, space, digits, run_dir, max_trials, batch):
    store = SqliteTrialStore.in_run_dir(run_dir)
    run = store.open_run({"test": strategy.name}, {"name": "digits"}, strategy.name, 0)
    try:
        return run_search(strategy, Posed(space, Problem.of(digits)), 0, digits, BASE,
                          Budget(max_trials=max_trials, batch=batch), store, run, run_dir=str(run_dir))
    finally:
        store.close()


@pytest.mark.parametrize("strategy,space,trials,batch", [
    # NeuNetS starts from a single individual: trials 1-2 are its children, 3-4 grandchildren or siblings
    (NCEVOLVE, dataclasses.replace(TINY, population_size=1), 5, 2),
    (AUTOKERAS_GREEDY, GreedySpace(channels=(4, 6), dense=(8,), initial_epochs=2, epochs=1), 2, 1),
])
def test_a_child_before_training_scores_what_its_trained_parent_scored(digits, tmp_path, strategy, space, trials,
                                                                       batch):
    outcome = _search(strategy, space, digits, tmp_path, trials, batch)
    assert len(outcome.results) == trials and all(r.ok for r in outcome.results)
    children = [c for c in outcome.candidates if c.start == INHERIT]
    assert len(children) == trials - 1
    parents = {}
    for child in children:
        if child.parent not in parents:  # the trained parent as the engine checkpointed it
            parent_arch, parent_vars, _ = load_model(outcome.checkpoints[child.parent])
            assert parent_arch.structural_hash() == outcome.candidate(child.parent).arch.structural_hash()
            parents[child.parent] = evaluate(parent_arch, parent_vars, digits.x_val, digits.y_val)
        _close(evaluate(child.arch, child.variables, digits.x_val, digits.y_val), parents[child.parent],
               len(digits.y_val))
        if strategy is NCEVOLVE:
            assert cell_structure(child.arch, 1) == cell_structure(child.arch, 2)
    if strategy is NCEVOLVE:  # a grandchild: a morph of morphed, trained weights
        assert any(outcome.candidate(c.parent).start == INHERIT for c in children)
