"""Draw docs/task.png, the README's picture of the task and of the two encoder-decoders:

    python docs/draw_task.py

The windows and targets come from echo.data's own framing, so the picture is what echo trains on
(n_in=5, n_out=2, on a short sequence); the block diagrams follow echo.models' layers.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a file, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from echo.config import DataConfig  # noqa: E402
from echo.data import frame_windows, generate_sequences  # noqa: E402

OUT = Path(__file__).with_name("task.png")
N_IN, N_OUT, LENGTH = 5, 2, 8
ECHOED, REST, TARGET, LAYER = "#f6c36b", "#e8edf3", "#9fd4a3", "#dfe7f5"


def cell(ax, x, y, text, colour, width=0.9, height=0.9):
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor=colour,
            edgecolor="#55606e",
            linewidth=0.8,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=10)


def arrow(ax, start, end, **style):
    ax.add_patch(
        FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, color="#55606e", **style)
    )


def draw_windows(ax, sequence: np.ndarray) -> None:
    """The sequence on top; below it each window (its n_out oldest values marked) and target."""
    windows, targets = frame_windows(sequence, N_IN, N_OUT)
    ax.text(-0.8, 0, "sequence", ha="right", va="center", fontsize=10, weight="bold")
    for t, value in enumerate(sequence):
        cell(ax, t, 0, str(value), REST)
    target_x = LENGTH + 1.6
    ax.text(-0.8, -1.6, "windows", ha="right", va="center", fontsize=10, weight="bold")
    ax.text(target_x + 0.5, -0.9, "targets", ha="center", va="center", fontsize=10, weight="bold")
    for row, (window, target) in enumerate(zip(windows, targets, strict=True)):
        y = -1.6 - 1.1 * row
        for k, value in enumerate(window):
            cell(ax, row + k, y, str(value), ECHOED if k < N_OUT else REST)
        arrow(ax, (row + N_IN - 0.45, y), (target_x - 0.5, y))
        for k, value in enumerate(target):
            cell(ax, target_x + k, y, str(value), TARGET)
    ax.set_title(
        f"each window of n_in={N_IN} values is echoed by its n_out={N_OUT} oldest",
        fontsize=11,
        loc="left",
    )
    ax.set_xlim(-3.2, target_x + 1.8)
    ax.set_ylim(-1.6 - 1.1 * len(windows) + 0.3, 0.8)


def block(ax, x, y, text, width=2.6, colour=LAYER):
    cell(ax, x, y, text, colour, width=width, height=0.75)


def draw_encdec(ax) -> None:
    """model=encdec: the window is read into one vector, repeated once per echoed value."""
    steps = [
        ("window: 5 values, one-hot", REST),
        ("LSTM encoder\n(last output only)", LAYER),
        (f"RepeatVector x {N_OUT}", LAYER),
        ("LSTM decoder\n(one output per step)", LAYER),
        ("Dense softmax\nper step", LAYER),
        (f"{N_OUT} echoed values", TARGET),
    ]
    for i, (text, colour) in enumerate(steps):
        block(ax, 0, -1.2 * i, text, width=3.2 if i == 0 else 2.6, colour=colour)
        if i:
            arrow(ax, (0, -1.2 * (i - 1) - 0.4), (0, -1.2 * i + 0.4))
    ax.set_title("model=encdec (the tutorial's)", fontsize=11)
    ax.set_xlim(-2.2, 2.2)
    ax.set_ylim(-1.2 * len(steps) + 0.5, 0.6)


def draw_attention(ax) -> None:
    """model=attention: the decoder also attends over every encoder step."""
    block(ax, 0, 0, "window: 5 values, one-hot", width=3.7, colour=REST)
    block(ax, 0, -1.2, "LSTM encoder\n(every step's output)")
    block(ax, -1.3, -2.4, f"RepeatVector x {N_OUT}\nof the last", width=2.3)
    block(ax, -1.3, -3.6, "LSTM decoder", width=2.3)
    block(ax, 0, -4.8, "Attention: decoder steps\nquery the encoder steps", width=3.2)
    block(ax, 0, -6.0, "Dense softmax per step\n(decoder + context)", width=3.2)
    block(ax, 0, -7.2, f"{N_OUT} echoed values", colour=TARGET)
    arrow(ax, (0, -0.4), (0, -0.8))
    arrow(ax, (-0.6, -1.6), (-1.2, -2.0))
    arrow(ax, (-1.3, -2.8), (-1.3, -3.2))
    arrow(ax, (-1.3, -4.0), (-0.7, -4.4))
    arrow(ax, (0.9, -1.6), (1.0, -4.4), connectionstyle="arc3,rad=-0.25")
    ax.text(1.55, -3.0, "all steps", fontsize=9, color="#55606e")
    arrow(ax, (0, -5.2), (0, -5.6))
    arrow(ax, (0, -6.4), (0, -6.8))
    ax.set_title("model=attention (an extension)", fontsize=11)
    ax.set_xlim(-2.8, 2.8)
    ax.set_ylim(-7.7, 0.6)


def main() -> None:
    data = DataConfig(n_unique=100, length=LENGTH, n_in=N_IN, n_out=N_OUT, pad_incomplete=False)
    (sequence,) = generate_sequences(np.random.default_rng(7), 1, data)
    figure = plt.figure(figsize=(10, 8.6), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[0.9, 1.3])
    draw_windows(top.subplots(), sequence)
    for ax, draw in zip(bottom.subplots(1, 2), (draw_encdec, draw_attention), strict=True):
        draw(ax)
    for ax in figure.get_axes():
        ax.set_aspect("equal")
        ax.axis("off")
    figure.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
