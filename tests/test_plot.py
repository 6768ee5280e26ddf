import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from course_utils.plot import curves, image_grid  # noqa: E402


def test_curves_draws_one_line_per_series_with_labels():
    plt.close("all")
    assert curves({"a": [3, 2, 1], "b": [4, 3]}, title="T", ylabel="loss (nats)", logy=True) is None
    ax = plt.gcf().axes[0]
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    assert ax.get_title() == "T" and ax.get_ylabel() == "loss (nats)" and ax.get_yscale() == "log"
    assert list(ax.lines[1].get_xdata()) == [1, 2]


def test_image_grid_accepts_channels_first_tensors_and_labels():
    plt.close("all")
    image_grid(torch.rand(10, 1, 8, 8), labels=list(range(10)), ncols=4, title="digits")
    fig = plt.gcf()
    assert len(fig.axes) == 12  # 3 rows × 4 columns, the last two blank
    assert [ax.get_title() for ax in fig.axes[:3]] == ["0", "1", "2"]
    assert fig.axes[0].images[0].get_array().shape == (8, 8)


def test_image_grid_rgb_images():
    plt.close("all")
    image_grid(np.random.rand(3, 32, 32, 3))
    assert plt.gcf().axes[0].images[0].get_array().shape == (32, 32, 3)
