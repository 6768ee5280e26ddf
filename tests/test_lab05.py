"""Lab 05 checks: the reference passes, stubs are "not done yet", wrong losses and bad generators fail."""
from functools import partial

import numpy as np
import pytest
import torch

from course_utils.labs import lab05 as check
from tests.helpers import check_line, stub

bce = torch.nn.functional.binary_cross_entropy_with_logits


def discriminator_loss(real, fake):
    return bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))


def generator_loss(fake):
    return bce(fake, torch.ones_like(fake))


def test_references_pass(capsys):
    for _ in range(3):
        assert check_line(capsys, check.q1, discriminator_loss)[0]
        assert check_line(capsys, check.q2, generator_loss)[0]


def test_stubs_are_not_done_yet(capsys):
    for q in (check.q1, check.q2):
        ok, line = check_line(capsys, q, stub)
        assert not ok and "not done yet" in line and "hint:" not in line


@pytest.mark.parametrize("wrong, words", [
    (lambda r, f: discriminator_loss(f, r), "swapped"),
    (lambda r, f: bce(r, torch.ones_like(r), reduction="sum") + bce(f, torch.zeros_like(f), reduction="sum"), "mean"),
    (lambda r, f: discriminator_loss(r, f) / 2, "half"),
    (lambda r, f: bce(r, torch.ones_like(r)), "off by"),                                  # fake term missing
    (lambda r, f: torch.nn.functional.binary_cross_entropy(torch.sigmoid(torch.sigmoid(r)), torch.ones_like(r))
     + torch.nn.functional.binary_cross_entropy(torch.sigmoid(torch.sigmoid(f)), torch.zeros_like(f)), "off by"),
    (lambda r, f: bce(r, torch.ones_like(r), reduction="none"), "one number"),
])
def test_q1_wrong_losses_fail(capsys, wrong, words):
    ok, line = check_line(capsys, check.q1, wrong)
    assert not ok and words in line and "hint:" in line


@pytest.mark.parametrize("wrong, words", [
    (lambda f: torch.log(1 - torch.sigmoid(f)).mean(), "saturating"),
    (lambda f: bce(f, torch.zeros_like(f)), "labelled the fakes 0"),
    (lambda f: -bce(f, torch.zeros_like(f)), "saturating"),
])
def test_q2_wrong_losses_fail(capsys, wrong, words):
    ok, line = check_line(capsys, check.q2, wrong)
    assert not ok and words in line


@pytest.mark.parametrize("answer, words", [
    (lambda *a: None, "None"), (lambda *a: "loss", "expected numbers"), (lambda *a: torch.tensor(float("nan")), "NaN"),
    (lambda *a: 1 / 0, "ZeroDivisionError"), ([1, 2], "function"),
])
def test_losses_bad_values_give_one_line(capsys, answer, words):
    for q in (check.q1, check.q2):
        ok, line = check_line(capsys, q, answer)
        assert not ok and words in line


# --- q3: the generator network, fed the check's own noise -------------------------------------------

class Mapped(torch.nn.Module):
    """A deterministic map of the noise with one weight (scale): a test double for a generator network."""

    def __init__(self, fn, noise_dim=3):
        super().__init__()
        self.fn, self.scale, self.noise_dim = fn, torch.nn.Parameter(torch.ones(())), noise_dim

    def forward(self, z):
        return self.scale * self.fn(z)


def ring_map(z, modes=check.MODES, weights=None):
    """Noise (n, 3) -> the ring: z0 picks a mode (equal shares unless `weights`), (z1, z2) the offset."""
    u = 0.5 * (1 + torch.erf(z[:, 0] / 2 ** 0.5))
    edges = torch.tensor(np.cumsum(weights if weights is not None else np.ones(modes) / modes), dtype=z.dtype)
    k = torch.bucketize(u, edges[:-1].contiguous())
    centres = torch.tensor(check.CENTRES, dtype=z.dtype)
    return centres[k] + check.STD * z[:, 1:3]


def q3(generator, noise_dim=3):
    return check.q3(generator, noise_dim=noise_dim)


def test_q3_a_generator_network_that_maps_noise_onto_the_ring_passes(capsys):
    ok, line = check_line(capsys, q3, Mapped(ring_map))
    assert ok and line.startswith("✔ Q3"), line
    blurred = Mapped(lambda z: ring_map(z) + 0.1 * z[:, 1:3].flip(1))
    assert check_line(capsys, q3, blurred)[0]


def untrained_generator():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 2))


def test_q3_noise_size_is_read_from_the_first_layer(capsys):
    ok, line = check_line(capsys, check.q3, untrained_generator())   # no noise_dim: 2 from nn.Linear(2, 64)
    assert not ok and "is the generator trained?" in line, line


def test_q3_the_targets_own_sampler_fails_in_every_disguise(capsys):
    """The old shortcut: `generate` returning samples drawn from the target itself."""
    ok, line = check_line(capsys, check.q3, lambda n: check.sample_target(n))
    assert not ok and "NETWORK" in line, line

    class Sampler(torch.nn.Module):  # a module with no weights that samples the target
        def forward(self, z):
            return torch.tensor(check.sample_target(len(z)))
    ok, line = check_line(capsys, q3, Sampler())
    assert not ok and "no trainable weights" in line, line

    class SamplerWithWeights(Sampler):  # ... with a decorative layer
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)
    ok, line = check_line(capsys, q3, SamplerWithWeights())
    assert not ok and "same noise" in line, line

    class SeededSampler(SamplerWithWeights):  # the same samples every call: ignores the noise
        def forward(self, z):
            return torch.tensor(check.sample_target(len(z), seed=0))
    ok, line = check_line(capsys, q3, SeededSampler())
    assert not ok and "ignores its input" in line, line

    class RuleWithDecorativeWeights(SamplerWithWeights):  # a perfect hand-written map; the weights do nothing
        def forward(self, z):
            return ring_map(z)
    ok, line = check_line(capsys, q3, RuleWithDecorativeWeights())
    assert not ok and "weights change" in line, line


def five_of_six(z):
    return ring_map(z, weights=np.array([0, 1, 1, 1, 1, 1]) / 5)


def unbalanced(z):  # 40 % of the samples on mode 0, the rest shared by the other five: every mode covered
    return ring_map(z, weights=np.array([0.4] + [0.12] * 5))


def noisy(z):  # 40 % of the samples spread uniformly over the square
    u = 0.5 * (1 + torch.erf(z[:, 0:1] / 2 ** 0.5))
    spread = 6 * (0.5 * (1 + torch.erf(z[:, 1:3] / 2 ** 0.5))) - 3
    return torch.where(torch.frac(50 * u) < 0.4, spread, ring_map(z))   # a choice independent of the mode


t = check.sample_target(20000, seed=3)
chol = torch.tensor(np.linalg.cholesky(np.cov(t, rowvar=False)), dtype=torch.float32)
mean = torch.tensor(t.mean(0))


@pytest.mark.parametrize("generator, words", [
    (Mapped(lambda z: torch.tensor(check.CENTRES[0], dtype=z.dtype) + check.STD * z[:, :2]), "mode collapse"),
    (Mapped(five_of_six), "5 of 6"),
    (Mapped(lambda z: mean + z[:, :2] @ chol.T), "modes"),         # the ring's mean and covariance, no modes
    (Mapped(lambda z: 2.5 * ring_map(z)), "modes"),
    (Mapped(unbalanced), "energy distance"),
    (Mapped(noisy), "between the modes"),
])
def test_q3_bad_generators_fail(capsys, generator, words):
    ok, line = check_line(capsys, q3, generator)
    assert not ok and words in line, line


def test_q3_restores_the_weights_and_the_training_mode(capsys):
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    before = [p.detach().clone() for p in net.parameters()]
    check_line(capsys, check.q3, net)
    assert net.training and all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


BAD_VALUES = [None, float("nan"), float("inf"), 1e308, "text", object(), np.zeros((2, 3)), np.array(["a", "b"]),
              np.zeros(3, dtype=complex), [1, [2, 3]], {"x": 1}, torch.zeros(2, dtype=torch.int64),
              torch.full((2000, 2), float("nan")), torch.full((2000, 2), 1e38), np.zeros((2000, 3))]


class Returns(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value, self.layer = value, torch.nn.Linear(2, 2)

    def forward(self, z):
        if isinstance(self.value, str) and self.value == "RAISE":
            raise ValueError("boom")
        return self.value


@pytest.mark.parametrize("value", BAD_VALUES + ["RAISE"], ids=repr)
def test_every_check_answers_any_return_value_in_one_line(capsys, value):
    """None, NaN, inf, huge, strings, objects, wrong shapes/dtypes, exceptions: one ✘ line each."""
    def fn(*args):
        if isinstance(value, str) and value == "RAISE":
            raise ValueError("boom")
        return value
    for q, answer in ((check.q1, fn), (check.q2, fn), (check.q3, Returns(value)), (check.q3, value)):
        ok, line = check_line(capsys, q, answer)
        assert not ok and line.startswith("✘") and "could not be checked" not in line, line


# --- Keras / TensorFlow answers ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tf():
    import course_utils  # noqa: F401  (before TensorFlow: loads triton first)
    import tensorflow
    return tensorflow


def test_keras_losses_pass_and_wrong_ones_fail(capsys, tf):
    import keras
    kbce = keras.losses.BinaryCrossentropy(from_logits=True)
    d_loss = lambda r, f: kbce(tf.ones_like(r), r) + kbce(tf.zeros_like(f), f)  # noqa: E731
    g_loss = lambda f: kbce(tf.ones_like(f), f)  # noqa: E731
    assert check_line(capsys, partial(check.q1, framework="keras"), d_loss)[0]
    assert check_line(capsys, partial(check.q2, framework="keras"), g_loss)[0]
    ok, line = check_line(capsys, partial(check.q1, framework="keras"), lambda r, f: d_loss(f, r))
    assert not ok and "swapped" in line
    ok, line = check_line(capsys, partial(check.q2, framework="keras"), lambda f: kbce(tf.zeros_like(f), f))
    assert not ok and "labelled the fakes 0" in line
    ok, line = check_line(capsys, check.q1, d_loss)          # keras loss, torch tensors: a clean ✘, no traceback
    assert line.startswith("✔") or "raised" in line


def test_keras_generators(capsys, tf):
    import keras

    class RingLayer(keras.layers.Layer):  # the noise-to-ring map with one weight, as a Keras model
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(), initializer="ones")

        def call(self, z):
            u = 0.5 * (1 + tf.math.erf(z[:, 0] / 2 ** 0.5))
            k = tf.minimum(tf.cast(u * check.MODES, tf.int32), check.MODES - 1)
            return self.scale * (tf.gather(tf.constant(check.CENTRES, tf.float32), k) + check.STD * z[:, 1:3])

    model = keras.Sequential([keras.Input((3,)), RingLayer()])
    ok, line = check_line(capsys, check.q3, model)            # noise size 3 from the model's input
    assert ok, line
    assert np.isclose(float(model.layers[0].scale.numpy()), 1.0)   # weights restored after the nudge
    untrained = keras.Sequential([keras.Input((2,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    ok, line = check_line(capsys, check.q3, untrained)
    assert not ok and "modes" in line

    class Sampling(keras.layers.Layer):  # draws fresh target samples inside the model
        def build(self, input_shape):
            self.w = self.add_weight(shape=(), initializer="ones")

        def call(self, z):
            return self.w * tf.random.shuffle(tf.constant(check.sample_target(2000)))
    ok, line = check_line(capsys, partial(check.q3, noise_dim=2), keras.Sequential([keras.Input((2,)), Sampling()]))
    assert not ok and "same noise" in line, line


def test_hints_start_conceptual_and_not_done_shows_no_hint(capsys):
    check.q1.wrong_attempts = 0
    _, first = check_line(capsys, check.q1, lambda r, f: discriminator_loss(f, r))
    _, second = check_line(capsys, check.q1, lambda r, f: discriminator_loss(f, r))
    assert first.split("hint:")[1] != second.split("hint:")[1] and "label 1" in second
    _, not_done = check_line(capsys, check.q3, stub)
    assert "hint:" in not_done or "not done" in not_done


def test_energy_distance_separates_distributions():
    a, b = check.sample_target(1000, seed=1), check.sample_target(1000, seed=2)
    collapsed = check.CENTRES[0] + check.STD * np.random.default_rng(1).normal(size=(1000, 2))
    assert check.energy_distance(a, b) < 0.01 < check.energy_distance(a, collapsed)
    assert np.isclose(check.mode_shares(a).sum(), 1.0, atol=0.01)


def test_q3_with_an_empty_training_log_is_not_done_yet_and_shows_no_hint(capsys):
    ok, line = check_line(capsys, partial(check.q3, losses=[]), untrained_generator())
    assert not ok and "not done yet" in line and "hint" not in line
