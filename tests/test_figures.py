"""Notebook 04's figures, drawn by spanlib.reporting.figures (the notebook only calls them)."""

from __future__ import annotations

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")


def test_distribution_and_bali_figures():
    import matplotlib.pyplot as plt

    from spanlib.reporting.figures import plot_bali_fields, plot_distributions

    fig = plot_distributions(sigma=1.5, d=0.2, df=3.0)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("GED d=0.2" in t for t in titles) and any("Student-t df=3" in t for t in titles)
    assert len(fig.axes[0].get_lines()) == 3 and fig.axes[0].get_yscale() == "log"
    plt.close(fig)
    fig = plot_bali_fields(radius=3)
    titles = [ax.get_title() for ax in fig.axes]
    assert "B_u (x offset), R = 3" in titles and "offsets to the landmark" in titles
    plt.close(fig)


def test_model_view_has_two_rows_and_readable_text():
    import matplotlib.pyplot as plt

    from spanlib.config.schemes import get_scheme
    from spanlib.reporting.figures import draw_model_view

    k, size = 68, 64
    rng = np.random.default_rng(0)
    gt = rng.uniform(8, 56, size=(k, 2))
    view = {"crop": np.zeros((size, size, 3), np.uint8), "gt": gt, "heatmaps": torch.rand(k, 16, 16),
            "offsets": torch.zeros(2, k, 16, 16), "input_size": size, "scheme": get_scheme(68)}
    fig = draw_model_view(view, landmark=30, radius=2, title="t")
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    bar = next(ax for ax in axes if ax.get_xlabel() == "landmark")
    assert len(axes) == 5 and all(bar.get_position().y1 < ax.get_position().y0 for ax in axes if ax is not bar)  # the errors: a row of their own
    assert min(ax.title.get_fontsize() for ax in axes if ax.get_title()) >= 10
    plt.close(fig)
