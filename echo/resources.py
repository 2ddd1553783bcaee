"""Will a run fit in memory? An estimate from the config alone, before anything is created.

The estimate adds what grows with the config to what every run's process holds anyway:
- the validation and test windows, and their echoes;
- the weights, with Adam's two moments and a gradient each;
- the activations of one training batch (kept for the backward pass), and of one prediction
  batch: a stateless model predicts all the windows of a set at once.
It is rough by design (frameworks keep buffers of their own), so runs are refused only when the
estimate is over the memory there is: at the limit, a run is tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from echo.config import ConfigError, EchoConfig, ModelKind, Representation, windows_per_sequence

FLOAT = INT = 4  # bytes of a float32, an int32
# Resident memory of a run's process before its config matters (TensorFlow, Keras, MLflow and
# their start-up): 926 MB after a debug=tiny run, by `python benchmarks/memory_runs.py`.
PROCESS_BYTES = 900 * 2**20
# Per timestep of an LSTM and per unit: four gates, the cell and the output, each kept for the
# backward pass.
LSTM_VALUES_PER_UNIT = 6


@dataclass(frozen=True)
class Part:
    what: str  # what the memory holds
    key: str  # the config key that makes it large
    bytes: int


@dataclass(frozen=True)
class Estimate:
    parts: list[Part]

    @property
    def total(self) -> int:
        return PROCESS_BYTES + sum(part.bytes for part in self.parts)


def lstm_weights(inputs: int, units: int) -> int:
    return 4 * (units * (inputs + units) + units)


def weights(cfg: EchoConfig) -> int:
    """How many weights the model `cfg` describes has (models.build_model's layers)."""
    d, m = cfg.data, cfg.model
    width = 1 if m.representation == Representation.linear else d.n_unique
    dense_out = width if m.kind not in (ModelKind.one_to_one, ModelKind.many_to_one) else 0
    if m.kind == ModelKind.seq2seq:
        return lstm_weights(width, m.units) + (m.units + 1) * width
    if m.kind == ModelKind.encdec:
        return lstm_weights(width, m.units) + lstm_weights(m.units, m.units) + (m.units + 1) * width
    if m.kind == ModelKind.attention:
        recurrent = lstm_weights(width, m.units) + lstm_weights(m.units, m.units)
        return recurrent + (2 * m.units + 1) * width
    inputs = d.n_in * width if m.kind == ModelKind.one_to_one else width
    return lstm_weights(inputs, m.units) + (m.units + 1) * d.n_out * width + dense_out


def activations_per_window(cfg: EchoConfig) -> int:
    """Values one window keeps through a forward pass: its encoded inputs, every LSTM step's
    gates and states (two LSTMs at most), and its outputs."""
    d, m = cfg.data, cfg.model
    width = 1 if m.representation == Representation.linear else d.n_unique
    layers = 1 if m.kind in (ModelKind.seq2seq, ModelKind.one_to_one, ModelKind.many_to_one) else 2
    recurrent = layers * max(d.n_in, d.n_out) * m.units * LSTM_VALUES_PER_UNIT
    return d.n_in * width + recurrent + d.n_out * width


def estimate(cfg: EchoConfig) -> Estimate:
    d, m, t = cfg.data, cfg.model, cfg.trainer
    windows = t.eval_sequences * windows_per_sequence(d)
    # A stateful model predicts a batch at a time; a stateless one, a whole set at once.
    predicted = t.batch_size if m.stateful else windows
    wide = "data.n_unique" if d.n_unique > m.units else "model.units"
    return Estimate(
        [
            Part(
                "the validation and test windows",
                "trainer.eval_sequences",
                2 * windows * (d.n_in + 2 * d.n_out) * INT,
            ),
            Part("the weights and optimizer", wide, 4 * weights(cfg) * FLOAT),
            Part(
                "the activations",
                "trainer.eval_sequences" if predicted > 2 * t.batch_size else wide,
                (2 * t.batch_size + predicted) * activations_per_window(cfg) * FLOAT,
            ),
            Part(
                "the windows of one training call",
                "trainer.log_every",
                t.log_every * windows_per_sequence(d) * (d.n_in + d.n_out) * INT,
            ),
        ]
    )


def available_bytes() -> int:
    """Memory this process may still take: the machine's available memory, or its cgroup's
    limit when that is lower."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    available = int(info["MemAvailable"].split()[0]) * 1024
    limit = Path("/sys/fs/cgroup/memory.max")
    if limit.exists() and limit.read_text().strip().isdigit():
        available = min(available, int(limit.read_text()))
    return available


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    raise AssertionError


def check_fits(cfg: EchoConfig, at_once: int = 1, limit: int | None = None) -> Estimate:
    """Raise ConfigError when `at_once` runs of `cfg` would need more memory than `limit`
    (by default, what this machine has available), naming the key behind the largest part."""
    found = estimate(cfg)
    limit = available_bytes() if limit is None else limit
    if found.total * at_once <= limit:
        return found
    largest = max(found.parts, key=lambda part: part.bytes)
    runs = f"{at_once} runs at once need" if at_once > 1 else "the run needs"
    raise ConfigError(
        largest.key,
        attrgetter(largest.key)(cfg),
        f"{runs} about {size(found.total * at_once)} of memory, most of it for "
        f"{largest.what}; {size(limit)} is available",
    )
