"""Multi-step fine-tuning (`nas.train.finetune`) and DREAM's fine-tuning actions (`nas.search.dream.finetune`).

Every frozen-weight check is exact (np.array_equal): a frozen weight's
update is replaced by 0, so its value cannot move by any rounding. The one
check with a tolerance is the optimiser-level trajectory under plain SGD,
where a float32 step of lr * step_lr * gradient is compared with its float64
value (relative error below 1e-6 for these few steps of float32 arithmetic).

The step-by-step checks drive the trainer's own compiled epoch program
(`nas.train.loop._programs`, the program `train` runs) one epoch at a
time, because `train` returns the best epoch's weights, not each epoch's.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nas.checkpoint import save_model
from nas.compile import init_variables, to_flax
from nas.data import Dataset
from nas.ir import cnn
from nas.search.dream import ACTIONS, ActionError, get_action
from nas.search.dream import finetune as dream_ft
from nas.train import FineTuneConfig, OptimizerConfig, ScheduleConfig, TrainConfig, TrainConfigError, train, \
    train_population
from nas.train import finetune as ft
from nas.train import loop
from nas.train.optim import make_optimizer

EPOCH_STEPS = 9  # digits: 1257 training examples // batch 128
BASE = TrainConfig(epochs=2, batch_size=128, feedback=False,
                   optimizer=OptimizerConfig(name="adam", learning_rate=1e-2, weight_decay=1e-3))
FINE_TUNING_NAMES = {"pretrained=True", "two_step=True", "two_step=False", "three_step=True", "three_step=False",
                     "step_epochs=0.1", "step_epochs=0.2", "step_epochs=0.3", "step_epochs=0.4", "step_epochs=0.5",
                     "step_lr=1", "step_lr=0.1", "step_lr=0.01", "freeze=all", "freeze=no", "freeze=bn"}


def _arch(input_shape=(8, 8, 1), classes=10, head="gap"):
    return cnn([4, 4], classes, input_shape=input_shape, batchnorm=True, head=head)


BODY = ("conv1", "bn1", "conv2", "bn2")  # _arch's nodes with weights but the head, in topological order


def _with(config: TrainConfig, **finetune) -> TrainConfig:
    return dataclasses.replace(config, finetune=FineTuneConfig(**finetune))


def _leaves(variables, node_id):
    out = jax.tree.leaves(variables["params"][node_id])
    if node_id in variables.get("batch_stats", {}):
        out += jax.tree.leaves(variables["batch_stats"][node_id])
    return [np.asarray(a) for a in out]


def _same(a, b, node_id) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_leaves(a, node_id), _leaves(b, node_id)))


def _moved(a, b, node_id) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(_leaves(a, node_id), _leaves(b, node_id)))


@pytest.fixture(scope="module")
def start(digits):
    """Non-trivial starting weights (BatchNorm statistics away from 0 and 1): one epoch of plain training."""
    return train(_arch(), digits, dataclasses.replace(BASE, epochs=1)).variables


def _epoch_states(arch, data, config, variables):
    """The weights after each epoch of the trainer's own program (single candidate)."""
    splits = loop.to_device(data)
    steps = splits.x_train.shape[0] // config.batch_size
    module = to_flax(arch, input_shape=data.input_shape)
    shared = config.shared_part()
    epoch_fn, _ = loop._programs(module, shared[:4] + (config.feedback, config.finetune), data.task, steps,
                                 min(config.eval_batch_size, splits.x_val.shape[0]), None)
    state = loop._initial_state(module, [config], [variables], data.input_shape, steps)
    out = []
    for _ in range(config.epochs):
        state, _ = epoch_fn(state, splits.x_train, splits.y_train)
        host = jax.device_get(state)
        out.append({"params": jax.tree.map(lambda a: a[0], host.params),
                    "batch_stats": jax.tree.map(lambda a: a[0], host.batch_stats)})
    return out


# ------------------------------------------------------------------ the spec
def test_the_spec_checks_its_fields_by_config_path():
    assert not FineTuneConfig().enabled and TrainConfig().finetune == FineTuneConfig()
    for field, value, match in [("steps", 4, "train.finetune.steps"), ("step_fraction", 0.6, "step_fraction"),
                                ("step_fraction", 0.0, "step_fraction"), ("step_lr", 0.0, "step_lr"),
                                ("step_lr", 2.0, "step_lr"), ("freeze", "some", "train.finetune.freeze"),
                                ("body", "conv1", "train.finetune.body"), ("body", ("a", "a"), "body")]:
        with pytest.raises(TrainConfigError, match=match):
            FineTuneConfig(**{field: value})
    with pytest.raises(TrainConfigError, match="last step"):  # three steps of half the run leave none
        FineTuneConfig(body=("a",), steps=3, step_fraction=0.5)
    assert FineTuneConfig(body=["a", "b"]).body == ("a", "b")
    # Part of what a population shares, so of the compiled program's key.
    assert _with(BASE, body=BODY).shared_part() != BASE.shared_part()


def test_the_plan_follows_the_steps_and_freeze():
    arch = _arch()
    assert ft.body_halves(FineTuneConfig(body=BODY), arch) == (("conv1", "bn1"), ("conv2", "bn2"))
    assert ft.plan(FineTuneConfig(), arch, 100) is None
    assert ft.plan(FineTuneConfig(body=BODY), arch, 100).trainable == {}  # nothing frozen: no masks at all
    bn = ft.plan(FineTuneConfig(body=BODY, freeze="bn"), arch, 100)
    assert bn.trainable == {"bn1": (False,), "bn2": (False,)} and bn.batchnorm == {"bn1", "bn2"}
    three = ft.plan(FineTuneConfig(body=BODY, steps=3, step_fraction=0.3, step_lr=0.1), arch, 100)
    assert three.boundaries == (30, 60) and three.lr_factors == pytest.approx((1, 0.1, 0.01))
    assert three.trainable["conv1"] == (False, False, True) and three.trainable["bn2"] == (False, True, True)
    assert [three.step_at(c) for c in (0, 29, 30, 59, 60, 99)] == [0, 0, 1, 1, 2, 2]
    frozen = ft.plan(FineTuneConfig(body=BODY, steps=3, step_fraction=0.3, freeze="all"), arch, 100)
    assert all(v == (False, False, False) for v in frozen.trainable.values())  # thawing never reverses
    with pytest.raises(ValueError, match="names no node with weights"):
        ft.plan(FineTuneConfig(body=("gap1",)), arch, 100)


def test_the_optimizer_masks_and_scales_each_step_exactly():
    """Plain SGD with weight decay on constant gradients: frozen steps give exactly 0, later steps lr * step_lr."""
    arch = _arch()
    fine_tune = ft.plan(FineTuneConfig(body=BODY, steps=2, step_fraction=0.5, step_lr=0.1), arch, 4)
    assert fine_tune.boundaries == (2,)
    tx = make_optimizer(OptimizerConfig(name="sgd", learning_rate=0.1, momentum=0.0, weight_decay=0.5),
                        ScheduleConfig(), 4, finetune=fine_tune)
    params = {"conv1": {"kernel": jnp.ones(3)}, "head": {"kernel": jnp.ones(3)}}
    grads = jax.tree.map(jnp.ones_like, params)
    state = tx.init(params)
    trajectory = []
    for _ in range(4):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append({k: float(v["kernel"][0]) for k, v in params.items()})
    body = [t["conv1"] for t in trajectory]
    assert body[:2] == [1.0, 1.0]  # frozen despite the weight decay
    expected, p = [], 1.0
    for step in range(2):  # step 2: lr * step_lr * (g + wd * p)
        p -= 0.1 * 0.1 * (1 + 0.5 * p)
        expected.append(p)
    np.testing.assert_allclose(body[2:], expected, rtol=1e-6)
    assert trajectory[0]["head"] == pytest.approx(1 - 0.1 * 1.5, rel=1e-6)  # the head trains at lr in step 1


# ------------------------------------------------------------------ the trainer
def test_off_and_nothing_frozen_train_exactly_as_before(digits, start):
    """No fine-tuning builds the optimiser chain of before; a body with nothing frozen changes no number."""
    o, s = BASE.optimizer, BASE.schedule
    plain_state = make_optimizer(o, s, 18).init(start["params"])
    assert jax.tree.structure(plain_state) == jax.tree.structure(
        make_optimizer(o, s, 18, finetune=ft.plan(FineTuneConfig(), _arch(), 18)).init(start["params"]))
    off = train(_arch(), digits, BASE, variables=start)
    nothing_frozen = train(_arch(), digits, _with(BASE, body=BODY), variables=start)

    def numbers(result):
        return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in result.history]
    assert numbers(off) == numbers(nothing_frozen) and off.best_epoch == nothing_frozen.best_epoch
    for a, b in zip(jax.tree.leaves(off.variables), jax.tree.leaves(nothing_frozen.variables)):
        assert np.array_equal(a, b)


def test_freeze_all_keeps_every_body_weight_and_statistic(digits, start):
    result = train(_arch(), digits, _with(BASE, body=BODY, freeze="all"), variables=start)
    assert result.best_epoch >= 1
    for node_id in BODY:
        assert _same(result.variables, start, node_id), node_id
    assert _moved(result.variables, start, "head") > 1e-3


def test_two_steps_freeze_the_body_for_the_first_fraction_then_thaw_it(digits, start):
    config = _with(BASE, body=BODY, steps=2, step_fraction=0.5)
    first, second = _epoch_states(_arch(), digits, config, start)  # the boundary falls at epoch 1's end
    assert ft.plan(config.finetune, _arch(), 2 * EPOCH_STEPS).boundaries == (EPOCH_STEPS,)
    for node_id in BODY:
        assert _same(first, start, node_id), node_id
        assert _moved(second, first, node_id) > 1e-4, node_id
    assert _moved(first, start, "head") > 1e-3
    # step_lr scales the second step: at 0.01 the body moves about a hundredth as far (Adam's step ~ lr).
    slow = _epoch_states(_arch(), digits, dataclasses.replace(
        config, finetune=dataclasses.replace(config.finetune, step_lr=0.01)), start)
    for node_id in ("conv1", "conv2"):
        assert _moved(slow[1], slow[0], node_id) < 0.05 * _moved(second, first, node_id), node_id
    # The public trainer's history agrees: epoch 1 is the head-only run's epoch 1, number for number, and
    # the second step's learning rate is lr * step_lr.
    two = train(_arch(), digits, dataclasses.replace(
        config, finetune=dataclasses.replace(config.finetune, step_lr=0.01)), variables=start)
    head_only = train(_arch(), digits, _with(BASE, body=BODY, freeze="all"), variables=start)
    assert two.history[0]["train_loss"] == head_only.history[0]["train_loss"]
    assert two.history[0]["val_loss"] == head_only.history[0]["val_loss"]
    assert two.history[1]["train_loss"] != head_only.history[1]["train_loss"]
    assert [row["lr"] for row in two.history] == pytest.approx([1e-2, 1e-4])


def test_three_steps_thaw_the_later_half_first(digits, start):
    config = dataclasses.replace(_with(BASE, body=BODY, steps=3, step_fraction=1 / 3), epochs=3)
    assert ft.plan(config.finetune, _arch(), 3 * EPOCH_STEPS).boundaries == (EPOCH_STEPS, 2 * EPOCH_STEPS)
    first, second, third = _epoch_states(_arch(), digits, config, start)
    for node_id in BODY:
        assert _same(first, start, node_id), node_id
    for node_id in ("conv1", "bn1"):  # the earlier half: only in step 3
        assert _same(second, first, node_id), node_id
        assert _moved(third, second, node_id) > 1e-4, node_id
    for node_id in ("conv2", "bn2"):  # the later half: from step 2
        assert _moved(second, first, node_id) > 1e-4, node_id


def test_a_population_of_two_learning_rates_fine_tunes_with_frozen_batchnorm(digits, start):
    configs = [_with(dataclasses.replace(BASE, optimizer=dataclasses.replace(BASE.optimizer, learning_rate=lr)),
                     body=BODY, freeze="bn") for lr in (1e-2, 1e-3)]
    results = train_population(_arch(), digits, configs, variables=[start, start])
    for r in results:
        assert r.best_epoch >= 1
        assert _same(r.variables, start, "bn1") and _same(r.variables, start, "bn2")
        assert _moved(r.variables, start, "conv1") > 1e-5 and _moved(r.variables, start, "head") > 1e-4
    assert _moved(results[0].variables, results[1].variables, "conv2") > 1e-5
    with pytest.raises(ValueError, match="may differ only"):
        train_population(_arch(), digits, [configs[0], _with(BASE, body=BODY)], variables=[start, start])


# ------------------------------------------------------------------ transfer
def _problem(digits, size: int, classes: int, channels: int = 1) -> Dataset:
    """Digits 0..classes-1, each pixel repeated to size x size (x channels): another image problem."""
    def part(x, y, n):
        keep = np.flatnonzero(y < classes)[:n]
        factor = size // x.shape[1]
        images = np.repeat(np.repeat(x[keep], factor, axis=1), factor, axis=2)
        return np.repeat(images, channels, axis=3).astype(np.float32), y[keep].astype(np.int32)
    xt, yt = part(digits.x_train, digits.y_train, 96)
    xv, yv = part(digits.x_val, digits.y_val, 32)
    xs, ys = part(digits.x_test, digits.y_test, 32)
    return Dataset("digits-up", "classification", (size, size, channels), classes, xt, yt, xv, yv, xs, ys,
                   np.zeros(channels, np.float32), np.ones(channels, np.float32))


@pytest.fixture(scope="module")
def checkpoints(digits, start, tmp_path_factory):
    """A GAP CNN and a Flatten CNN trained on digits (8x8x1), saved as models of this framework."""
    folder = tmp_path_factory.mktemp("pretrained")
    gap = save_model(str(folder / "gap"), _arch(), start, {"input_shape": [8, 8, 1]})
    flat_arch = _arch(head="flatten")
    flat_vars = init_variables(to_flax(flat_arch), jax.random.key(0), (8, 8, 1))
    flat = save_model(str(folder / "flat"), flat_arch, flat_vars, {"input_shape": [8, 8, 1]})
    return {"gap": gap, "flat": flat}


def test_a_gap_cnn_transfers_to_larger_images_and_fewer_classes(checkpoints, start):
    pretrained = dream_ft.load_pretrained(checkpoints["gap"])
    assert pretrained.input_shape == (8, 8, 1) and pretrained.num_outputs == 10
    arch, variables, body = dream_ft.transfer(pretrained, None, (16, 16, 1), 3, jax.random.key(1))
    assert body == BODY
    assert arch.input_node.attrs["shape"] == (16, 16, 1) and arch.output_shape() == (3,)
    for node_id in BODY:
        assert _same(variables, start, node_id), node_id  # copied exactly
    assert variables["params"]["head"]["kernel"].shape == (4, 3)
    # Into an edited arch (a later action's child): what matches is copied, the rest stays fresh.
    wider = arch.replace_nodes([n.replace(attrs=n.attrs.replace(filters=8)) if n.id == "conv2" else n
                                for n in arch.nodes])
    _, wider_vars, wider_body = dream_ft.transfer(pretrained, wider, (16, 16, 1), 3, jax.random.key(1))
    assert wider_body == ("conv1", "bn1") and _same(wider_vars, start, "conv1")
    settings, _ = dream_ft.retransfer(wider, _with(BASE, body=BODY, steps=2), pretrained, jax.random.key(1))
    assert settings.finetune.body == ("conv1", "bn1") and settings.finetune.steps == 2


def test_transfer_refuses_what_cannot_fit_naming_why(checkpoints, tmp_path):
    # Flatten straight into the head: the head is new anyway, so the conv body transfers to any size.
    flat = dream_ft.load_pretrained(checkpoints["flat"])
    arch, variables, body = dream_ft.transfer(flat, None, (16, 16, 1), 3, jax.random.key(0))
    assert body == BODY and variables["params"]["head"]["kernel"].shape == (4 * 8 * 8, 3)
    gap = dream_ft.load_pretrained(checkpoints["gap"])
    with pytest.raises(ValueError, match="input channels"):
        dream_ft.transfer(gap, None, (16, 16, 3), 3, jax.random.key(0))
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match=str(missing)):
        dream_ft.load_pretrained(missing)


def test_a_flatten_dense_model_to_another_image_size_is_refused(digits, tmp_path):
    arch = cnn([4], 10, input_shape=(8, 8, 1), head="flatten", dense=(8,))
    variables = init_variables(to_flax(arch), jax.random.key(0), (8, 8, 1))
    pretrained = dream_ft.load_pretrained(save_model(str(tmp_path / "m"), arch, variables, {}))
    with pytest.raises(dream_ft.TransferError, match=r"Dense 'dense\d+'.*image size through Flatten"):
        dream_ft.transfer(pretrained, None, (16, 16, 1), 3, jax.random.key(0))


# ------------------------------------------------------------------ the actions
def test_every_fine_tuning_action_is_registered_and_needs_a_transferred_model():
    assert {n for n, a in ACTIONS.items() if a.needs_pretrained} == FINE_TUNING_NAMES
    arch = _arch()
    for name in FINE_TUNING_NAMES:
        action = get_action(name)
        assert action.name == name and action.needs_pretrained
        assert (action.init_weights is None) == (name == "pretrained=True")
        assert not action.applicable(arch, BASE)  # not a transferred model
        with pytest.raises(ActionError, match="pre-trained checkpoint|pretrained=True first"):
            action(arch, BASE)
    for action in ACTIONS.values():  # the others are unchanged
        assert action.needs_pretrained == (action.name in FINE_TUNING_NAMES)
    with pytest.raises(ActionError, match="does not start from a pre-trained"):
        get_action("activation=selu").from_pretrained(arch, BASE, None, (8, 8, 1), 10, jax.random.key(0))


def test_settings_actions_change_exactly_their_field():
    transferred = _with(BASE, body=BODY)
    arch = _arch()
    expect = {"two_step=True": dict(steps=2), "three_step=True": dict(steps=3), "freeze=all": dict(freeze="all"),
              "freeze=bn": dict(freeze="bn")}
    for name, change in expect.items():
        _, child = get_action(name)(arch, transferred)
        assert child.finetune == dataclasses.replace(transferred.finetune, **change), name
    for name in ("two_step=False", "three_step=False", "freeze=no", "step_epochs=0.3", "step_lr=0.1"):
        assert not get_action(name).applicable(arch, transferred), name  # one step, nothing frozen
    two = _with(BASE, body=BODY, steps=2)
    assert get_action("two_step=False")(arch, two)[1].finetune.steps == 1
    assert get_action("step_epochs=0.3")(arch, two)[1].finetune.step_fraction == 0.3
    assert get_action("step_lr=0.01")(arch, two)[1].finetune.step_lr == 0.01
    three = _with(BASE, body=BODY, steps=3)
    assert not get_action("step_epochs=0.5").applicable(arch, three)  # would leave the last step no epochs


# What a transferred incumbent needs before an action applies (the defaults are one step, nothing frozen).
PREPARE = {"two_step=False": ["two_step=True"], "three_step=False": ["three_step=True"],
           "freeze=no": ["freeze=all"], "step_epochs=0.2": ["two_step=True", "step_epochs=0.3"],
           "step_lr=1": ["two_step=True", "step_lr=0.1"]}


def _children(pretrained, data, names):
    """(name, arch, settings, variables) of each named action's child of a transferred incumbent."""
    key = jax.random.key(3)
    arch, settings, variables = get_action("pretrained=True").from_pretrained(
        _arch(), BASE, pretrained, data.input_shape, data.num_outputs, key)
    with pytest.raises(ActionError, match="already in effect"):
        get_action("pretrained=True").from_pretrained(arch, settings, pretrained, data.input_shape,
                                                      data.num_outputs, key)
    out = [("pretrained=True", arch, settings, variables)]
    for name in names:
        parent_settings = settings
        prepare = PREPARE.get(name, ["two_step=True"] if name.startswith(("step_epochs", "step_lr")) else [])
        for first in prepare:
            _, parent_settings = get_action(first)(arch, parent_settings)
        child_arch, child_settings, child_vars = get_action(name).from_pretrained(
            arch, parent_settings, pretrained, data.input_shape, data.num_outputs, key)
        assert child_arch == arch and child_settings != parent_settings, name
        out.append((name, child_arch, child_settings, child_vars))
    return out


def _train_children(checkpoints, digits, names):
    data = _problem(digits, 16, 3)
    pretrained = dream_ft.load_pretrained(checkpoints["gap"])
    for name, arch, settings, variables in _children(pretrained, data, names):
        assert settings.finetune.body == BODY, name
        for node_id in BODY:  # every child starts from the checkpoint's weights
            assert np.array_equal(variables["params"][node_id]["kernel" if "conv" in node_id else "scale"],
                                  pretrained.variables["params"][node_id]["kernel" if "conv" in node_id
                                                                          else "scale"]), name
        result = train(arch, data, dataclasses.replace(settings, epochs=2, batch_size=32), variables=variables)
        assert result.epochs == 2 and np.isfinite(result.history[-1]["train_loss"]), name


def test_a_child_of_each_kind_of_fine_tuning_action_trains(checkpoints, digits):
    _train_children(checkpoints, digits, ["three_step=True", "freeze=bn"])


@pytest.mark.slow
def test_every_fine_tuning_action_child_trains(checkpoints, digits):
    _train_children(checkpoints, digits, sorted(FINE_TUNING_NAMES - {"pretrained=True"}))
