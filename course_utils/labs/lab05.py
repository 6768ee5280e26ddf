"""Checks for lab 05 — the GAN losses and a GAN on a 2-D distribution.

    from course_utils.labs import lab05 as check
    check.q1(discriminator_loss)   # BCE: real -> 1, fake -> 0, from logits (torch tensors in)
    check.q2(generator_loss)       # the non-saturating generator loss, from logits
    check.q1(discriminator_loss, framework="keras")   # the same with TensorFlow tensors in
    check.q3(G)                    # your generator network, fed the check's noise, matches the target

The target (``sample_target``) is a ring of 6 Gaussians (radius 2, standard deviation 0.1).
Q3 takes the generator network itself (an ``nn.Module`` or a ``keras.Model``), feeds it 2,000
noise vectors drawn by the check (standard normal, as many inputs as its first layer takes), and
compares the samples with 2,000 fresh target samples: every mode must receive at least 40 % of
its fair share, 70 % of all samples must lie near a mode, and the energy distance (a two-sample
distance that is 0 only for equal distributions) must be below ``ENERGY_TOL``. The samples must
be a function of the noise and of the weights: the same noise twice gives the same samples,
other noise other samples, nudged weights other samples — so neither the target's own sampler
nor a rule with no trained network can pass. An untrained or collapsed generator fails too.
"""
from __future__ import annotations

import sys

import numpy as np

from course_utils.labs import NotDone, Wrong, as_array, call, exercise, expect_close, rng

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


def _logits(g, n, framework):
    """Random logits (n, 1) as NumPy float64 and as the framework's float32 tensor."""
    if framework not in ("torch", "keras"):
        raise Wrong(f"framework must be 'torch' or 'keras', got {framework!r}")
    values = g.normal(scale=2.0, size=(n, 1)).astype(np.float32)
    if framework == "torch":
        return values.astype(np.float64), _torch().tensor(values)
    import tensorflow as tf
    return values.astype(np.float64), tf.constant(values)


def _softplus(x):
    return np.logaddexp(0.0, x)


@exercise("Q1 discriminator loss", hint=(
    "the discriminator is a binary classifier scored by cross-entropy: which label should a real sample "
    "get, which a fake one? Each batch contributes its own average, and the two parts add up",
    "binary cross-entropy from logits, averaged over each batch: real logits against label 1 plus fake "
    "logits against label 0 (PyTorch's binary_cross_entropy_with_logits; Keras' BinaryCrossentropy "
    "told that it gets logits)"))
def q1(discriminator_loss, framework: str = "torch"):
    g = rng()
    n = int(g.integers(3, 40))
    (r, real), (f, fake) = _logits(g, n, framework), _logits(g, n, framework)
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


@exercise("Q2 generator loss", hint=(
    "the generator wins when the discriminator calls its fakes real; the non-saturating loss rewards "
    "exactly that, and keeps a strong gradient while the discriminator still wins easily",
    "binary cross-entropy of the fake logits against the label the generator WANTS them to get, "
    "averaged over the batch — the same loss as Q1's fake term, with the other label"))
def q2(generator_loss, framework: str = "torch"):
    g = rng()
    f, fake = _logits(g, int(g.integers(3, 40)), framework)
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


def _framework_of(generator) -> str:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(generator, torch.nn.Module):
        return "torch"
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(generator, keras.layers.Layer):
        return "keras"
    if callable(generator):
        raise Wrong("pass your generator NETWORK (the nn.Module or keras.Model), not a sampling function: "
                    "the check feeds it noise of its own")
    raise Wrong(f"expected your generator network (an nn.Module or a keras.Model), got {type(generator).__name__}")


def _noise_dim(generator, framework) -> int:
    if framework == "torch":
        for module in generator.modules():
            if isinstance(getattr(module, "in_features", None), int):
                return module.in_features
    else:
        try:
            shape = generator.inputs[0].shape
            if isinstance(shape[-1], int):
                return shape[-1]
        except Exception:  # a subclassed or unbuilt model has no .inputs
            pass
        for layer in getattr(generator, "layers", []) or [generator]:
            kernel = getattr(layer, "kernel", None)
            if kernel is not None and len(kernel.shape) == 2:
                return int(kernel.shape[0])
    raise Wrong("cannot tell how many noise inputs your generator takes: call check.q3(G, noise_dim=...)")


def _weights(generator, framework) -> list:
    if framework == "torch":
        return [p for p in generator.parameters() if p.requires_grad]
    return list(generator.trainable_weights)


def _run(generator, z, framework):
    """Samples G(z) as an array (the generator in inference mode: no dropout, no batch statistics)."""
    if framework == "torch":
        torch = sys.modules["torch"]
        was_training = generator.training
        generator.eval()
        try:
            with torch.no_grad():
                out = call(generator, torch.tensor(z), what="G(z)")
        finally:
            generator.train(was_training)
    else:
        import tensorflow as tf
        out = call(lambda noise: generator(noise, training=False), tf.constant(z), what="G(z)")
    return as_array(out, "G(z)")


def _perturbed(generator, z, framework, g):
    """G(z) with every weight nudged by ~1 %; the weights are restored afterwards."""
    weights = _weights(generator, framework)
    if framework == "torch":
        torch = sys.modules["torch"]
        saved = [w.detach().clone() for w in weights]
        try:
            with torch.no_grad():
                for w in weights:
                    w.add_(torch.tensor(g.normal(size=tuple(w.shape)), dtype=w.dtype) * (0.01 * w.abs().mean() + 1e-3))
            return _run(generator, z, framework)
        finally:
            with torch.no_grad():
                for w, value in zip(weights, saved):
                    w.copy_(value)
    saved = [w.numpy().copy() for w in weights]
    try:
        for w, value in zip(weights, saved):
            w.assign(value + g.normal(size=value.shape).astype(value.dtype) * (0.01 * np.abs(value).mean() + 1e-3))
        return _run(generator, z, framework)
    finally:
        for w, value in zip(weights, saved):
            w.assign(value)


_Q3_HINT = ("the check feeds YOUR generator network its own noise and compares the samples with the target; "
            "a balanced game needs both networks to improve at a similar pace, and a discriminator that "
            "sees a whole batch at once notices when all samples look alike",
            "train longer; Adam with learning rate 1e-3 and β₁ 0.5 for both networks; if the samples bunch "
            "together (mode collapse), add the minibatch-std feature of lesson 08; then hand check.q3 your G")


@exercise("Q3 GAN on the ring", hint=_Q3_HINT)
def q3(generator, noise_dim: int | None = None, losses=None):
    if losses is not None and not len(losses):  # the training loop recorded no step: nothing to grade yet
        raise NotDone
    framework = _framework_of(generator)
    if not _weights(generator, framework):
        raise Wrong("your generator has no trainable weights: it must be a network trained by the GAN game")
    dim = noise_dim if isinstance(noise_dim, int) and noise_dim > 0 else _noise_dim(generator, framework)
    g = rng()
    z = g.normal(size=(N_CHECK, dim)).astype(np.float32)
    samples = _run(generator, z, framework)
    if samples.shape != (N_CHECK, 2):
        raise Wrong(f"G(z) for {N_CHECK} noise vectors of size {dim} has shape {samples.shape}, expected ({N_CHECK}, 2)")
    samples = samples.astype(np.float64)
    if not np.all(np.isfinite(samples)):
        raise Wrong("G(z) contains NaN or inf")
    again = _run(generator, z, framework).astype(np.float64)
    if again.shape != samples.shape or not np.allclose(again, samples, rtol=1e-5, atol=1e-6):
        raise Wrong("G gives different samples for the same noise: the samples must be a function of the "
                    "noise the check feeds in (no random sampling inside the generator)")
    other = _run(generator, g.normal(size=(N_CHECK, dim)).astype(np.float32), framework).astype(np.float64)
    if other.shape == samples.shape and np.allclose(other, samples, rtol=1e-5, atol=1e-6):
        raise Wrong("G gives the same samples for different noise: it ignores its input")
    nudged = _perturbed(generator, z, framework, g).astype(np.float64)
    if nudged.shape == samples.shape and np.allclose(nudged, samples, rtol=1e-6, atol=1e-7):
        raise Wrong("G's samples do not change when its weights change: the samples must come from the network")
    target = sample_target(N_CHECK, seed=int(g.integers(2**62)))
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
    return (f"on the check's own noise: all {MODES} modes covered, {ON_MODES:.0%}+ of samples on a mode, "
            f"energy distance < {ENERGY_TOL} to fresh target samples")
