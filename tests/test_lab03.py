"""Lab 03 (convolution): the reference solution passes, the starter does not, wrong answers are caught."""
import numpy as np
import pytest

from course_utils.labs import lab03 as check
from tests.helpers import ROOT, failed, notebook_namespace

LAB = ROOT / "labs" / "lab03_convolution"


@pytest.fixture(scope="module")
def solution():
    return notebook_namespace(LAB / "solution.ipynb", skip=("check.q", "_ok:"))


@pytest.fixture(scope="module")
def starter():
    return notebook_namespace(LAB / "starter.ipynb", skip=("check.q", "_ok:"))


def passed(capsys, result):
    out = capsys.readouterr().out
    assert result and out.startswith("✔") and out.count("\n") == 1, out


@pytest.mark.parametrize("name, fn", [("q1", "conv2d_single"), ("q2", "conv_output_size"), ("q3", "conv2d"),
                                      ("q4", "max_pool2d"), ("q5", "train_cnn")])
def test_solution_passes_and_starter_is_not_done(solution, starter, capsys, name, fn):
    passed(capsys, getattr(check, name)(solution[fn]))
    failed(capsys, getattr(check, name)(starter[fn]), "not done yet")


def test_solution_passes_repeatedly_on_fresh_inputs(solution):
    for _ in range(5):
        assert check.q1(solution["conv2d_single"]) and check.q2(solution["conv_output_size"])
        assert check.q3(solution["conv2d"]) and check.q4(solution["max_pool2d"])


def test_not_a_function_or_bad_outputs_give_one_line(capsys):
    failed(capsys, check.q1(42), "expected")
    failed(capsys, check.q1(lambda image, kernel: None), "None")
    failed(capsys, check.q1(lambda image, kernel: "feature map"), "expected numbers")
    failed(capsys, check.q1(lambda image, kernel: np.zeros((2, 2))), "shape")
    failed(capsys, check.q1(lambda image, kernel: 1 / 0), "ZeroDivisionError")
    failed(capsys, check.q3(lambda x, w, b, s, p: np.full((w.shape[0], 1, 1), np.nan)), "shape")
    failed(capsys, check.q4(lambda x, size, stride=None: np.full(x[:, ::size, ::size].shape, np.nan)))


# --- q1: conv2d_single ---------------------------------------------------------------------------

def test_q1_rejects_flipped_kernel_uint8_output_and_full_size(solution, capsys):
    good = solution["conv2d_single"]
    failed(capsys, check.q1(lambda im, k: good(im, k[::-1, ::-1])), "flipped the kernel")
    failed(capsys, check.q1(lambda im, k: good(im, k).astype(im.dtype)), "uint8")
    failed(capsys, check.q1(lambda im, k: good(im, k).T), "swapped")

    def off_by_one(image, kernel):  # the range stops one position early
        return good(image, kernel)[:-1, :-1]
    failed(capsys, check.q1(off_by_one), "should give")
    failed(capsys, check.q1(lambda im, k: np.full_like(good(im, k), np.nan)), "NaN")


def test_q1_rejects_hard_coded_answer(solution, capsys):
    g = np.random.default_rng(0)
    image, kernel = g.normal(size=(7, 7)), g.normal(size=(3, 3))
    frozen = solution["conv2d_single"](image, kernel)
    failed(capsys, check.q1(lambda im, k: frozen))


# --- q2: conv_output_size ------------------------------------------------------------------------

@pytest.mark.parametrize("wrong, message", [
    (lambda n, k, s, p: (n + 2 * p - k) // s, "off by one"),          # forgot the + 1
    (lambda n, k, s, p: (n + p - k) // s + 1, "for n="),               # padding on one side only
    (lambda n, k, s, p: (n + 2 * p - k) / s + 1, "integer division"),   # true division
    (lambda n, k, s, p: n - k + 1, "for n="),                           # ignores stride and padding (off by one or worse)
    (lambda n, k, s, p: "28", "expected an int"),
])
def test_q2_rejects_plausible_mistakes(capsys, wrong, message):
    failed(capsys, check.q2(wrong), message)


# --- q3: conv2d ----------------------------------------------------------------------------------

def test_q3_rejects_plausible_mistakes(solution, capsys):
    good = solution["conv2d"]
    failed(capsys, check.q3(lambda x, w, b, s=1, p=0: good(x, w[..., ::-1, ::-1], b, s, p)), "flipped the kernel")
    failed(capsys, check.q3(lambda x, w, b, s=1, p=0: good(x, w, 0 * b, s, p)), "bias is missing")
    failed(capsys, check.q3(lambda x, w, b, s=1, p=0: good(x, w, b, 1, p)), "stride")
    failed(capsys, check.q3(lambda x, w, b, s=1, p=0: good(x, w, b, s, 0)), "padding is missing")

    def padding_off_by_one(x, w, b, s=1, p=0):  # p - 1 zeros on each side
        return good(x, w, b, s, max(p - 1, 0))
    failed(capsys, check.q3(padding_off_by_one), "padding")

    def one_sided_padding(x, w, b, s=1, p=0):  # pads only before, not after
        return good(np.pad(x, ((0, 0), (p, 0), (p, 0))), w, b, s, 0)
    failed(capsys, check.q3(one_sided_padding), "padding")

    def first_kernel_only(x, w, b, s=1, p=0):
        return good(x, np.repeat(w[:1], len(w), axis=0), b, s, p)
    failed(capsys, check.q3(first_kernel_only))


# --- q4: max_pool2d ------------------------------------------------------------------------------

def test_q4_rejects_plausible_mistakes(solution, capsys):
    good = solution["max_pool2d"]
    import torch

    def average(x, size, stride=None):
        return torch.nn.functional.avg_pool2d(torch.tensor(x)[None], size, stride or size)[0].numpy()
    failed(capsys, check.q4(average), "average pooling")
    failed(capsys, check.q4(lambda x, size, stride=None: good(x, size, size)), "shape")   # stride ignored
    failed(capsys, check.q4(lambda x, size, stride=None: good(x, size, stride).min() + 0 * good(x, size, stride)))

    def no_default(x, size, stride):  # stride has no default: max_pool2d(x, 2) fails
        return good(x, size, stride)
    failed(capsys, check.q4(no_default), "TypeError")


# --- q5: the CNN ---------------------------------------------------------------------------------

def test_q5_rejects_a_non_cnn_an_untrained_cnn_and_bad_returns(capsys):
    import torch
    from torch import nn

    failed(capsys, check.q5(lambda x, y: None), "forget")
    failed(capsys, check.q5(lambda x, y: "model"), "return the trained")
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    failed(capsys, check.q5(lambda x, y: mlp), "no convolution layer")
    torch.manual_seed(0)
    untrained = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    failed(capsys, check.q5(lambda x, y: untrained), "test accuracy")
    wrong_out = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 3))
    failed(capsys, check.q5(lambda x, y: wrong_out), "(360, 10)")
    wrong_in = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    failed(capsys, check.q5(lambda x, y: wrong_in), "failed on a")


def test_q5_handles_keras_models(capsys):
    import course_utils  # noqa: F401  (before TensorFlow: loads triton first)
    import keras

    def conv_net():
        return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                                 keras.layers.Dense(10)])
    failed(capsys, check.q5(lambda x, y: conv_net()), "test accuracy")   # untrained: about 10 %
    dense = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    failed(capsys, check.q5(lambda x, y: dense), "no convolution layer")
    wrong_out = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                                  keras.layers.Dense(3)])
    failed(capsys, check.q5(lambda x, y: wrong_out), "(360, 10)")


def test_q5_keras_solution_passes(solution, capsys):
    passed(capsys, check.q5(solution["train_cnn_keras"]))


class Memorised:
    """The test set's true labels stored by image (answers looked up, nothing learnt), behind a conv layer."""

    def __new__(cls):
        import torch
        from torch import nn
        from course_utils.data import digits

        d = digits(28)
        table = {np.asarray(x, dtype=np.float32).tobytes(): int(y) for x, y in zip(d.x_test, d.y_test)}

        class Lookup(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 1, 3)  # so that it "is a CNN"

            def forward(self, x):
                labels = [table.get(img[0].numpy().astype(np.float32).tobytes(), 0) for img in x]
                return nn.functional.one_hot(torch.tensor(labels), 10).float()
        return Lookup()


def test_q5_memorised_or_pretrained_answers_fail_on_renamed_classes(capsys):
    """The old shortcut: answers for the usual digit names, learnt or stored before the check ran."""
    lookup = Memorised()
    out = failed(capsys, check.q5(lambda x, y: lookup), "usual digit names", "did not learn")
    assert "1.000 with the usual" in out
    seen = {}

    def ignores_labels(x, y):  # trains nothing on (x, y): returns the stored model
        seen["y"] = y
        return lookup
    failed(capsys, check.q5(ignores_labels), "did not learn")
    from course_utils.data import digits
    assert not np.array_equal(np.sort(seen["y"]), seen["y"]) and set(seen["y"]) == set(range(10))
    assert not np.array_equal(np.bincount(seen["y"]), np.bincount(digits(28).y_train))   # classes renamed


# --- any return value: one ✘ line, never a traceback -----------------------------------------------

BAD_VALUES = [None, float("nan"), float("inf"), -float("inf"), 1e308, 10 ** 400, "text", object(),
              np.zeros((2, 3)), np.array(["a", "b"]), np.zeros(3, dtype=complex), [1, [2, 3]], {"out": 1},
              np.float64("nan"), np.array(np.nan), True, 3 + 4j]


def raising(*args, **kwargs):
    raise ValueError("boom")


@pytest.mark.parametrize("value", BAD_VALUES + ["RAISE"], ids=repr)
def test_every_check_answers_any_return_value_in_one_line(capsys, value):
    fn = raising if isinstance(value, str) and value == "RAISE" else (lambda *a, **k: value)
    for q in (check.q1, check.q2, check.q3, check.q4):
        out = failed(capsys, q(fn))
        assert "could not be checked" not in out, out


@pytest.mark.parametrize("value", [None, "model", object(), 42, float("nan")], ids=repr)
def test_q5_any_returned_object_gives_one_line(capsys, value):
    out = failed(capsys, check.q5(lambda x, y: value))
    assert "could not be checked" not in out, out


def test_q2_nan_inf_and_arrays(capsys):
    failed(capsys, check.q2(lambda n, k, s, p: float("nan")), "expected an int")
    failed(capsys, check.q2(lambda n, k, s, p: float("inf")), "expected an int")
    import torch
    passed(capsys, check.q2(lambda n, k, s, p: torch.tensor((n + 2 * p - k) // s + 1)))   # a 0-d tensor is a number
    passed(capsys, check.q2(lambda n, k, s, p: np.int64((n + 2 * p - k) // s + 1)))


# --- TensorFlow answers for the layers --------------------------------------------------------------

def test_tensorflow_layers_pass_and_a_flipped_tf_kernel_fails(capsys):
    import course_utils  # noqa: F401  (before TensorFlow: loads triton first)
    import tensorflow as tf

    def conv2d_tf(x, w, b, stride=1, padding=0):
        pads = [[0, 0], [padding, padding], [padding, padding], [0, 0]]
        out = tf.nn.conv2d(x.transpose(1, 2, 0)[None], w.transpose(2, 3, 1, 0), strides=stride, padding=pads)
        return tf.transpose(out[0], (2, 0, 1)) + b[:, None, None]

    def pool_tf(x, size, stride=None):
        return tf.transpose(tf.nn.max_pool2d(x.transpose(1, 2, 0)[None], size, stride or size, "VALID")[0], (2, 0, 1))

    passed(capsys, check.q2(lambda n, k, s, p: tf.constant((n + 2 * p - k) // s + 1)))
    failed(capsys, check.q2(lambda n, k, s, p: tf.constant([1, 2])), "expected an int")
    passed(capsys, check.q1(lambda im, k: conv2d_tf(im[None].astype(np.float64), k[None, None], np.zeros(1))[0]))
    passed(capsys, check.q3(conv2d_tf))
    passed(capsys, check.q4(pool_tf))
    failed(capsys, check.q3(lambda x, w, b, s=1, p=0: conv2d_tf(x, w[..., ::-1, ::-1].copy(), b, s, p)),
           "flipped the kernel")


def test_hints_start_conceptual_and_not_done_shows_no_hint(capsys, solution):
    check.q1.wrong_attempts = 0
    good = solution["conv2d_single"]
    first = failed(capsys, check.q1(lambda im, k: good(im, k[::-1, ::-1])))
    second = failed(capsys, check.q1(lambda im, k: good(im, k[::-1, ::-1])))
    assert first.split("hint:")[1] != second.split("hint:")[1]
    for out in (first, second):
        assert "image[" not in out and "np.zeros" not in out   # no answer code in a hint
    out = failed(capsys, check.q1(lambda *a: (_ for _ in ()).throw(NotImplementedError)), "not done yet")
    assert "hint:" not in out
