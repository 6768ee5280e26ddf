"""Lab 05 checks: the reference passes, stubs are "not done yet", wrong losses and bad generators fail."""
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
    for q in (check.q1, check.q2, check.q3):
        ok, line = check_line(capsys, q, stub)
        assert not ok and "not done yet" in line


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


def test_q3_target_itself_passes(capsys):
    ok, line = check_line(capsys, check.q3, lambda n: check.sample_target(n))
    assert ok and line.startswith("✔ Q3")


def test_q3_slightly_blurred_target_passes(capsys):
    g = np.random.default_rng(0)
    ok, line = check_line(capsys, check.q3, lambda n: check.sample_target(n) + 0.1 * g.normal(size=(n, 2)))
    assert ok, line


def untrained_generator(n):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 2))
    with torch.no_grad():
        return net(torch.randn(n, 2)).numpy()


def collapsed_generator(n):  # every sample on one mode, looking perfectly real
    return (check.CENTRES[0] + check.STD * np.random.default_rng(1).normal(size=(n, 2))).astype(np.float32)


def five_of_six(n):
    s = check.sample_target(3 * n, seed=2)
    return s[np.linalg.norm(s - check.CENTRES[0], axis=1) > 1.0][:n]


def gaussian_with_target_moments(n):  # same mean and covariance as the ring, no modes
    t = check.sample_target(20000, seed=3)
    return np.random.default_rng(4).multivariate_normal(t.mean(0), np.cov(t, rowvar=False), size=n)


@pytest.mark.parametrize("generator, words", [
    (untrained_generator, "is the generator trained?"), (collapsed_generator, "mode collapse"), (five_of_six, "5 of 6"),
    (gaussian_with_target_moments, "modes"), (lambda n: 2.5 * check.sample_target(n), "modes"),
])
def test_q3_bad_generators_fail(capsys, generator, words):
    ok, line = check_line(capsys, check.q3, generator)
    assert not ok and words in line, line


def test_q3_unbalanced_generator_fails_on_distance(capsys):
    def unbalanced(n):  # 40 % of the samples on mode 0, the rest shared by the other five: every mode covered
        k = int(0.4 * n)
        rest = check.sample_target(3 * n, seed=6)
        rest = rest[np.linalg.norm(rest - check.CENTRES[0], axis=1) > 1.0][:n - k]
        return np.concatenate([collapsed_generator(k), rest])
    ok, line = check_line(capsys, check.q3, unbalanced)
    assert not ok and "energy distance" in line, line


def test_q3_noisy_generator_fails_between_modes(capsys):
    def noisy(n):  # 40 % of the samples spread uniformly over the square
        k = int(0.4 * n)
        return np.concatenate([check.sample_target(n - k), np.random.default_rng(7).uniform(-3, 3, (k, 2))])
    ok, line = check_line(capsys, check.q3, noisy)
    assert not ok and "between the modes" in line, line


@pytest.mark.parametrize("answer, words", [
    (lambda n: np.zeros((n, 3)), "shape"), (lambda n: np.zeros(n), "shape"),
    (lambda n: np.full((n, 2), np.nan), "NaN"), (lambda n: None, "None"), (lambda: 0, "TypeError"),
])
def test_q3_bad_outputs_give_one_line(capsys, answer, words):
    ok, line = check_line(capsys, check.q3, answer)
    assert not ok and words in line


def test_energy_distance_separates_distributions():
    a, b = check.sample_target(1000, seed=1), check.sample_target(1000, seed=2)
    assert check.energy_distance(a, b) < 0.01 < check.energy_distance(a, collapsed_generator(1000))
    assert np.isclose(check.mode_shares(a).sum(), 1.0, atol=0.01)
