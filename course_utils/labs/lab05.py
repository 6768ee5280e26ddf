"""Checks for lab 05 — the GAN losses and a GAN on a 2-D distribution.

    from course_utils.labs import lab05 as check
    check.q1(discriminator_loss)   # BCE: real -> 1, fake -> 0, from logits
    check.q2(generator_loss)       # the non-saturating generator loss, from logits
    check.q3(generate)             # your generator's samples are close to the target distribution

The target (``sample_target``) is a ring of 6 Gaussians (radius 2, standard deviation 0.1).
Q3 compares 2,000 of your samples with 2,000 fresh target samples: every mode must receive at
least 40 % of its fair share, 70 % of all samples must lie near a mode, and the energy distance (a two-sample distance that is 0 only for
equal distributions) must be below ``ENERGY_TOL``. An untrained or collapsed generator fails both.
"""
from __future__ import annotations

import numpy as np

from course_utils.labs import Wrong, as_array, call, exercise, expect_close, rng

MODES, RADIUS, STD = 6, 2.0, 0.1
CENTRES = np.array([[RADIUS * np.cos(2 * np.pi * k / MODES), RADIUS * np.sin(2 * np.pi * k / MODES)]
                    for k in range(MODES)])
ENERGY_TOL = 0.06   # target vs target ~0.002; a trained GAN 0.01-0.04; one mode missing ~0.1
N_CHECK = 2000
ON_MODES = 0.7     # share of samples within 4 std of some centre (target: ~100 %)


def sample_target(n: int, seed: int | None = None) -> np.ndarray:
    """``n`` samples (float32, shape (n, 2)) of the ring of 6 Gaussians."""
    g = np.random.default_rng(seed)
    return (CENTRES[g.integers(0, MODES, n)] + STD * g.normal(size=(n, 2))).astype(np.float32)


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """2 E|A-B| - E|A-A'| - E|B-B'| for two samples of 2-D points (0 for identical distributions)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)

    def mean_dist(x, y):
        return float(np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)).mean())

    return 2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)


def mode_shares(samples: np.ndarray) -> np.ndarray:
    """Fraction of the samples within 4 standard deviations of each centre, shape (MODES,)."""
    d = np.sqrt(((np.asarray(samples)[:, None, :] - CENTRES[None]) ** 2).sum(-1))
    near = d.min(axis=1) < 4 * STD
    return np.bincount(d.argmin(axis=1)[near], minlength=MODES) / len(samples)


def _torch():
    import torch
    return torch


def _logits(g, n):
    torch = _torch()
    return torch.tensor(g.normal(scale=2.0, size=(n, 1)).astype(np.float32))


def _softplus(x):
    return np.logaddexp(0.0, x)


@exercise("Q1 discriminator loss", hint="binary cross-entropy from logits, averaged: real logits against "
          "label 1 plus fake logits against label 0 (nn.functional.binary_cross_entropy_with_logits)")
def q1(discriminator_loss):
    g = rng()
    n = int(g.integers(3, 40))
    real, fake = _logits(g, n), _logits(g, n)
    r, f = real.numpy().astype(np.float64), fake.numpy().astype(np.float64)
    ref = _softplus(-r).mean() + _softplus(f).mean()
    got = as_array(call(discriminator_loss, real, fake, what="discriminator_loss"), "discriminator_loss")
    if got.size != 1:
        raise Wrong(f"discriminator_loss returned shape {got.shape}, expected one number (take the mean)")
    got = got.reshape(())
    if np.isfinite(got) and not np.isclose(got, ref, rtol=1e-4, atol=1e-5):
        if np.isclose(got, _softplus(r).mean() + _softplus(-f).mean(), rtol=1e-4, atol=1e-5):
            raise Wrong("the labels are swapped: real samples should be labelled 1, fakes 0")
        if np.isclose(got, _softplus(-r).sum() + _softplus(f).sum(), rtol=1e-4, atol=1e-5):
            raise Wrong("you summed over the batch; take the mean")
        if np.isclose(got, 0.5 * ref, rtol=1e-4, atol=1e-5):
            raise Wrong("this is half the expected value: add the two terms, do not average them")
    expect_close(got, ref, "discriminator_loss", rtol=1e-4, atol=1e-5)
    return "matches the binary cross-entropy on hidden random logits"


@exercise("Q2 generator loss", hint="the non-saturating loss: binary cross-entropy of the fake logits "
          "against label 1, i.e. mean(-log sigmoid(logit))")
def q2(generator_loss):
    g = rng()
    fake = _logits(g, int(g.integers(3, 40)))
    f = fake.numpy().astype(np.float64)
    ref = _softplus(-f).mean()
    got = as_array(call(generator_loss, fake, what="generator_loss"), "generator_loss")
    if got.size != 1:
        raise Wrong(f"generator_loss returned shape {got.shape}, expected one number (take the mean)")
    got = got.reshape(())
    if np.isfinite(got) and not np.isclose(got, ref, rtol=1e-4, atol=1e-5):
        if np.isclose(got, -_softplus(f).mean(), rtol=1e-4, atol=1e-5):
            raise Wrong("this is the saturating loss mean(log(1 - D(G(z)))); use -log D(G(z)) instead")
        if np.isclose(got, _softplus(f).mean(), rtol=1e-4, atol=1e-5):
            raise Wrong("you labelled the fakes 0: the generator wants them called real (label 1)")
    expect_close(got, ref, "generator_loss", rtol=1e-4, atol=1e-5)
    return "matches the non-saturating loss on hidden random logits"


@exercise("Q3 GAN on the ring", hint="train longer; use Adam(lr=1e-3, betas=(0.5, 0.999)) for both networks; "
          "if the samples bunch together (mode collapse), add the minibatch-std feature of lesson 08")
def q3(generate):
    samples = as_array(call(generate, N_CHECK, what="generate"), "generate")
    if samples.shape != (N_CHECK, 2):
        raise Wrong(f"generate({N_CHECK}) returned shape {samples.shape}, expected ({N_CHECK}, 2)")
    if not np.all(np.isfinite(samples.astype(np.float64))):
        raise Wrong("generate returned NaN or inf")
    target = sample_target(N_CHECK, seed=int(rng().integers(2**31)))
    shares = mode_shares(samples)
    covered = int((shares >= 0.4 / MODES).sum())
    dist = energy_distance(samples, target)
    if covered < MODES:
        why = (" — mode collapse?" if covered <= 2 and shares.sum() > 0.5 else
               " — is the generator trained?" if shares.sum() < 0.1 else "")
        raise Wrong(f"only {covered} of {MODES} modes get at least 40 % of their share of samples "
                    f"(energy distance {dist:.3f}){why}")
    on_modes = float(shares.sum())
    if on_modes < ON_MODES:
        raise Wrong(f"only {on_modes:.0%} of the samples lie within {4 * STD:g} of a mode (need {ON_MODES:.0%}): "
                    "too many samples between the modes")
    if dist > ENERGY_TOL:
        raise Wrong(f"energy distance to the target {dist:.3f} > {ENERGY_TOL}: samples too spread or misplaced")
    return f"all {MODES} modes covered, {ON_MODES:.0%}+ of samples on a mode, energy distance < {ENERGY_TOL} to fresh target samples"
