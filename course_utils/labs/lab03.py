"""Checks for lab 03: convolution and max pooling by hand, then a CNN to a target accuracy.

Every check draws fresh random sizes and values (so a hard-coded answer fails) and compares with
an independent reference: ``torch.nn.functional.conv2d`` / ``max_pool2d`` in float64 for the
layers, the real digits test set for the trained network (trained by the check, on the digits in a secret
order with the ten classes secretly renamed, as lab 02 q4 does: a memorised or pretrained answer fails).

    from course_utils.labs import lab03 as check
    check.q1(conv2d_single); check.q2(conv_output_size); check.q3(conv2d); check.q4(max_pool2d)
    check.q5(train_cnn)
"""
from __future__ import annotations

import sys

import numpy as np

from course_utils.labs import Wrong, as_array, call, exercise, expect_close, rng

TARGET_ACCURACY = 0.97  # q5: test accuracy the CNN must reach on the digits (28×28)


def reference_conv2d(x, w, b=None, stride=1, padding=0):
    """(C_in, H, W) * (C_out, C_in, kh, kw) -> (C_out, H_out, W_out), by torch in float64."""
    import torch
    import torch.nn.functional as F
    out = F.conv2d(torch.tensor(np.asarray(x, dtype=np.float64))[None],
                   torch.tensor(np.asarray(w, dtype=np.float64)),
                   None if b is None else torch.tensor(np.asarray(b, dtype=np.float64)),
                   stride=stride, padding=padding)
    return out[0].numpy()


def reference_max_pool2d(x, size, stride):
    import torch
    import torch.nn.functional as F
    return F.max_pool2d(torch.tensor(np.asarray(x, dtype=np.float64))[None], size, stride)[0].numpy()


def _flipped(kernel):
    return np.ascontiguousarray(np.asarray(kernel)[..., ::-1, ::-1])


def _same_values(got, ref):
    return got.shape == ref.shape and np.all(np.isfinite(got)) and np.allclose(got, ref, rtol=1e-4, atol=1e-5)


# --- q1: one channel, stride 1, no padding -------------------------------------------------------

@exercise("q1 conv2d_single", hint=(
    "slide the kernel over the image without letting it stick out; at each position, one output number "
    "summarises how well the patch under the kernel matches it — and a camera's 8-bit pixels overflow",
    "output (i, j) is the sum of the element-wise product of the kernel with the kh × kw patch whose top-left "
    "corner is at row i, column j; there are H − kh + 1 by W − kw + 1 positions; make the output a float array"))
def q1(conv2d_single):
    g = rng()
    what = "conv2d_single(image, kernel)"
    for trial in range(4):
        kh, kw = int(g.integers(2, 5)), int(g.integers(2, 5))
        oh = int(g.integers(3, 8))
        ow = oh + int(g.integers(1, 4))  # a non-square output, so swapped axes show up
        h, w = oh + kh - 1, ow + kw - 1
        if trial == 0:  # an 8-bit image, as a camera stores it: the output must not stay uint8
            image, kernel = g.integers(0, 256, size=(h, w)).astype(np.uint8), g.normal(size=(kh, kw))
        else:
            image, kernel = g.normal(size=(h, w)), g.normal(size=(kh, kw))
        ref = reference_conv2d(image[None], kernel[None, None])[0]
        got = as_array(call(conv2d_single, image.copy(), kernel.copy(), what=what), what)
        if got.shape == ref.T.shape and got.shape != ref.shape:
            raise Wrong(f"the output has shape {got.shape}, expected {ref.shape}: rows and columns are swapped")
        if got.shape != ref.shape:
            raise Wrong(f"a {image.shape} image and a {kernel.shape} kernel should give shape {ref.shape}, "
                        f"got shape {got.shape} (the kernel must fit entirely inside the image)")
        if _same_values(got, reference_conv2d(image[None], _flipped(kernel)[None, None])[0]):
            raise Wrong("you flipped the kernel (textbook convolution); deep-learning conv2d does not flip it")
        if trial == 0 and np.issubdtype(got.dtype, np.integer):
            raise Wrong(f"for a uint8 image the output has dtype {got.dtype}: products and sums were "
                        "truncated — make the output a float array")
        expect_close(got, ref, what, rtol=1e-4, atol=1e-5)
    return "matches torch conv2d on random images and kernels (uint8 included)"


# --- q2: the output size -------------------------------------------------------------------------

@exercise("q2 conv_output_size", hint=(
    "count the positions: padding widens the input on both sides, the first position always fits, and "
    "each further one is `stride` pixels on and must still fit entirely",
    "the padded width is n + 2·padding; after the first position there are as many further positions as "
    "whole strides fit in the room left (padded width − k); count with integer division and return an int"))
def q2(conv_output_size):
    g = rng()
    what = "conv_output_size(n, k, stride, padding)"
    for _ in range(30):
        k, stride, padding = int(g.integers(1, 6)), int(g.integers(1, 4)), int(g.integers(0, 3))
        n = int(g.integers(max(k - 2 * padding, 1), 30))
        ref = (n + 2 * padding - k) // stride + 1
        got = call(conv_output_size, n, k, stride, padding, what=what)
        if hasattr(got, "numpy") and callable(got.numpy) and not hasattr(got, "detach"):  # a TF tensor
            got = got.numpy()
        if hasattr(got, "item") and tuple(getattr(got, "shape", (0,))) == ():  # a 0-d array or tensor: its number
            got = got.item()
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, np.integer, float, np.floating)):
            raise Wrong(f"{what} returned a {type(got).__name__}, expected an int")
        if isinstance(got, (float, np.floating)) and not np.isfinite(got):
            raise Wrong(f"{what} returned {got} for n={n}, k={k}, stride={stride}, padding={padding}, "
                        "expected an int")
        if isinstance(got, (float, np.floating)) and got != int(got):
            raise Wrong(f"{what} returned {got} for n={n}, k={k}, stride={stride}, padding={padding}: "
                        "use integer division //")
        if got != ref:
            if got == ref - 1 or got == ref + 1:
                raise Wrong(f"off by one for n={n}, k={k}, stride={stride}, padding={padding}: "
                            f"got {got}, expected {ref}")
            raise Wrong(f"wrong for n={n}, k={k}, stride={stride}, padding={padding}: got {got}, expected {ref}")
    return "correct for 30 random sizes, strides and paddings"


# --- q3: channels, bias, stride and padding ------------------------------------------------------

@exercise("q3 conv2d", hint=(
    "each output channel has its own kernel that spans ALL input channels at once, plus its own bias; "
    "padding adds zeros around the borders, stride makes the window jump",
    "pad only the two spatial axes with `padding` zeros on each side (NumPy's pad); output (o, i, j) sums kernel o "
    "times the C_in × kh × kw block starting at row i·stride, column j·stride, plus bias o; sizes from q2"))
def q3(conv2d):
    g = rng()
    what = "conv2d(x, w, b, stride, padding)"
    cases = [(1, 0), (2, 0), (1, 1), (int(g.integers(2, 4)), int(g.integers(1, 3)))]
    for stride, padding in cases:
        c_in, c_out = int(g.integers(2, 4)), int(g.integers(2, 5))
        h, w_ = int(g.integers(6, 13)), int(g.integers(6, 13))
        kh, kw = int(g.integers(2, 5)), int(g.integers(2, 5))
        x, w = g.normal(size=(c_in, h, w_)), g.normal(size=(c_out, c_in, kh, kw))
        b = g.normal(size=c_out)
        ref = reference_conv2d(x, w, b, stride, padding)
        got = as_array(call(conv2d, x.copy(), w.copy(), b.copy(), stride, padding, what=what), what)
        setting = f"(stride={stride}, padding={padding}, x {x.shape}, w {w.shape})"
        if got.shape != ref.shape:
            hint = ""
            if padding and got.shape == reference_conv2d(x, w, b, stride, 0).shape:
                hint = ": the padding is missing"
            elif padding and got.shape[0] == ref.shape[0]:
                hint = ": check the padding (p zeros on EACH side) and the size formula of q2"
            elif stride > 1 and got.shape == reference_conv2d(x, w, b, 1, padding).shape:
                hint = ": the stride is ignored"
            raise Wrong(f"output has shape {got.shape}, expected {ref.shape} {setting}{hint}")
        if not np.all(np.isfinite(got)):
            raise Wrong(f"output contains NaN or inf {setting}")
        if _same_values(got, reference_conv2d(x, _flipped(w), b, stride, padding)):
            raise Wrong("you flipped the kernel (textbook convolution); deep-learning conv2d does not flip it")
        if _same_values(got, reference_conv2d(x, w, None, stride, padding)):
            raise Wrong("the bias is missing: add b[o] to every position of output channel o")
        if _same_values(got[:1], ref[:1]) and not _same_values(got, ref):
            raise Wrong("output channel 0 is right but others are not: use kernel w[o] for channel o")
        expect_close(got, ref, f"the output {setting}", rtol=1e-4, atol=1e-5)
    return "matches torch conv2d with channels, bias, stride and padding on random inputs"


# --- q4: max pooling -----------------------------------------------------------------------------

@exercise("q4 max_pool2d", hint=(
    "pooling is a convolution-shaped loop that keeps the largest value of each window instead of a "
    "weighted sum, channel by channel; when no stride is given the windows do not overlap",
    "for each channel, output (i, j) is the maximum of the size × size window starting at row i·stride, "
    "column j·stride; without a stride the windows are `size` apart; the output size is q2's with "
    "padding 0"))
def q4(max_pool2d):
    g = rng()
    what = "max_pool2d(x, size, stride)"
    for size, stride in [(2, 2), (3, 3), (2, 1), (3, 2)]:
        c, h, w = int(g.integers(1, 4)), int(g.integers(5, 12)), int(g.integers(5, 12))
        x = g.normal(size=(c, h, w))
        ref = reference_max_pool2d(x, size, stride)
        got = as_array(call(max_pool2d, x.copy(), size, stride, what=what), what)
        setting = f"(size={size}, stride={stride}, x {x.shape})"
        if got.shape != ref.shape:
            raise Wrong(f"output has shape {got.shape}, expected {ref.shape} {setting}")
        if not np.all(np.isfinite(got)):
            raise Wrong(f"output contains NaN or inf {setting}")
        import torch
        avg = torch.nn.functional.avg_pool2d(torch.tensor(x)[None], size, stride)[0].numpy()
        if _same_values(got, avg):
            raise Wrong("that is average pooling: take the max of each window")
        expect_close(got, ref, f"the output {setting}")
    default = call(max_pool2d, x.copy(), 2, what="max_pool2d(x, 2)")
    expect_close(default, reference_max_pool2d(x, 2, 2), "max_pool2d(x, 2) (stride defaulting to size)")
    return "matches torch max_pool2d for several window sizes and strides"


# --- q5: a CNN to a target accuracy ------------------------------------------------------------

def _is_torch(model) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _has_conv(model) -> bool:
    if _is_torch(model):
        import torch
        return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())

    def walk(layer):
        yield layer
        for sub in getattr(layer, "layers", None) or []:
            yield from walk(sub)
    return any("Conv" in type(layer).__name__ for layer in walk(model))


def _predict(model, x):
    """Class scores (N, 10) from a torch module (input N×1×28×28) or a Keras model (N×28×28×1)."""
    if _is_torch(model):
        import torch
        model.eval()
        with torch.no_grad():
            return model(torch.tensor(x[:, None], dtype=torch.float32))
    if hasattr(model, "predict"):
        return model.predict(x[..., None].astype(np.float32), verbose=0)
    raise Wrong(f"train_cnn returned a {type(model).__name__}: return the trained torch.nn.Module or keras.Model")


@exercise("q5 CNN on the digits", hint=(
    "the check trains YOUR function on the training digits with the ten classes secretly renamed, so the "
    "network must learn from the labels it is given; convolutions with pooling see strokes wherever they are",
    "two conv → ReLU → max-pool blocks, flatten, a dense layer; Adam, 10–30 epochs, trained on exactly the "
    f"(x_train, y_train) passed in; random shifts of 1–2 pixels help reach {TARGET_ACCURACY}"))
def q5(train_cnn):
    from course_utils.data import digits
    d = digits(28)
    g = rng()
    order = g.permutation(len(d.x_train))  # a secret order and secretly renamed classes: a network
    rename = _renaming(g)                   # trained (or answers stored) for the usual labels fails
    model = call(train_cnn, np.array(d.x_train[order]), rename[np.asarray(d.y_train)[order]],
                 what="train_cnn(x_train, y_train)")
    if model is None:
        raise Wrong("train_cnn returned None — did you forget `return model`?")
    if not (_is_torch(model) or hasattr(model, "predict")):
        raise Wrong(f"train_cnn returned a {type(model).__name__}: return the trained torch.nn.Module or keras.Model")
    if not _has_conv(model):
        raise Wrong("the model has no convolution layer: this exercise asks for a CNN")
    test = g.permutation(len(d.x_test))
    try:
        scores = as_array(_predict(model, np.array(d.x_test[test])), "the model")
    except Wrong:
        raise
    except Exception as err:
        raise Wrong(f"the model failed on a (N, 28, 28) batch of digits: {type(err).__name__}: "
                    f"{str(err).splitlines()[0] if str(err) else ''}") from err
    if scores.shape != (len(test), 10):
        raise Wrong(f"the model's output has shape {scores.shape}, expected ({len(test)}, 10): one score per class")
    if not np.all(np.isfinite(scores)):
        raise Wrong("the model's output contains NaN or inf: lower the learning rate")
    predicted = scores.argmax(axis=1)
    accuracy = float((predicted == rename[np.asarray(d.y_test)[test]]).mean())
    if accuracy < TARGET_ACCURACY:
        usual = float((predicted == np.asarray(d.y_test)[test]).mean())
        if usual >= TARGET_ACCURACY:
            raise Wrong(f"test accuracy {accuracy:.3f} < {TARGET_ACCURACY} with the labels the check trained on, "
                        f"but {usual:.3f} with the usual digit names: the model did not learn from the "
                        "(x_train, y_train) it was given")
        raise Wrong(f"test accuracy {accuracy:.3f} < {TARGET_ACCURACY}")
    return f"test accuracy >= {TARGET_ACCURACY} (trained by the check on the digits in a secret order, classes renamed)"


def _renaming(g: np.random.Generator) -> np.ndarray:
    """A random renaming of the ten classes that moves at least eight of them."""
    while True:
        rename = g.permutation(10)
        if (rename != np.arange(10)).sum() >= 8:
            return rename
