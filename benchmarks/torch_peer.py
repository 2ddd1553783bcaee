"""A plain PyTorch encoder-decoder on encdec_fast's task: the yardstick for its training time.

The tutorial's partial echo (values 0..99, windows of 5, echo the oldest 2), trained the way a
PyTorch user would write it without a framework: an LSTM encoder, its last state repeated for
each echoed position, an LSTM decoder and a linear read-out, Adam. Its defaults are
encdec_fast's settings (32 units, batches of 84 windows, learning rate 0.03), on echo's own
data: the same seeded streams (echo.data), so that for one seed both train on the same windows
in the same order, check the same validation windows and are scored on the same test windows.
Its stopping rule is echo's too: after every --check-every sequences (encdec_fast's
trainer.log_every, whatever the batch size), it asks whether the
validation windows reach --target-exact (scoring their first fifth alone when that already
rules it out), and it scores all of them whenever it passes a multiple of --validate-every
sequences. Training time includes those checks, as echo's does.

Prints one JSON line: train_seconds, val_exact, eval_acc and eval_exact, updates and
epochs_to_target (sequences trained when the target was met, null if it was not).

    pip install -e ".[peer]"          # or any CPU build of torch
    python benchmarks/torch_peer.py --seed 2 --batch-size 168
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from echo import data
from echo.config import DataConfig, windows_per_sequence

TASK = DataConfig(n_unique=100, length=25, n_in=5, n_out=2, pad_incomplete=False)
WINDOWS = windows_per_sequence(TASK)


class EncoderDecoder(nn.Module):
    def __init__(self, units: int):
        super().__init__()
        self.encoder = nn.LSTM(TASK.n_unique, units, batch_first=True)
        self.decoder = nn.LSTM(units, units, batch_first=True)
        self.readout = nn.Linear(units, TASK.n_unique)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Integer windows [batch, n_in] -> logits [batch, n_out, n_unique]."""
        one_hot = nn.functional.one_hot(windows, TASK.n_unique).float()
        _, (summary, _) = self.encoder(one_hot)
        repeated = summary[-1].unsqueeze(1).expand(-1, TASK.n_out, -1)
        decoded, _ = self.decoder(repeated)
        return self.readout(decoded)


def flat(X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of whole sequences [sequences, windows, n] as long tensors [windows, n]."""
    as_tensor = lambda a: torch.from_numpy(a.reshape(-1, a.shape[-1]).astype(np.int64))  # noqa: E731
    return as_tensor(X), as_tensor(y)


@torch.no_grad()
def misses(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[int, float]:
    """Windows not echoed wholly right, and the fraction of values echoed right."""
    right = model(X).argmax(-1) == y
    return int((~right.all(-1)).sum()), right.float().mean().item()


def reaches(model: nn.Module, X: torch.Tensor, y: torch.Tensor, target: float) -> bool:
    """Whether validation's exact echoes reach `target`: its first fifth alone when that
    already rules it out, as echo's check does."""
    part = len(X) // 5 // WINDOWS * WINDOWS
    if part and (len(X) - misses(model, X[:part], y[:part])[0]) / len(X) < target:
        return False
    return 1 - misses(model, X, y)[0] / len(X) >= target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument(
        "--batch-size", type=int, default=84, help=f"windows per update, a multiple of {WINDOWS}"
    )
    parser.add_argument("--learning-rate", type=float, default=0.03)
    parser.add_argument("--target-exact", type=float, default=0.999)
    parser.add_argument(
        "--eval-sequences", type=int, default=500, help="validation and test sequences each"
    )
    parser.add_argument(
        "--check-every", type=int, default=240, help="sequences between checks, as log_every"
    )
    parser.add_argument("--validate-every", type=int, default=500, help="sequences")
    parser.add_argument("--max-sequences", type=int, default=20000)
    args = parser.parse_args()
    if args.batch_size % WINDOWS:
        parser.error(f"--batch-size={args.batch_size}: must be a multiple of {WINDOWS}")

    torch.manual_seed(args.seed)
    streams = data.streams(args.seed)
    val_X, val_y = flat(*data.sample_windows(streams["validation"], args.eval_sequences, TASK))
    model = EncoderDecoder(args.units)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    loss_of = nn.CrossEntropyLoss()
    per_update = args.batch_size // WINDOWS  # sequences per update

    start = time.perf_counter()
    sequences, reached = 0, None
    while reached is None and sequences < args.max_sequences:
        # One check period's sequences drawn at once, as echo draws one compiled call's.
        period = min(args.check_every, args.max_sequences - sequences)
        updates = period // per_update
        if updates == 0:  # fewer sequences left than one batch holds
            break
        X, y = flat(*data.sample_windows(streams["train"], updates * per_update, TASK))
        for batch in range(updates):
            rows = slice(batch * args.batch_size, (batch + 1) * args.batch_size)
            loss = loss_of(model(X[rows]).reshape(-1, TASK.n_unique), y[rows].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        before, sequences = sequences, sequences + updates * per_update
        if sequences // args.validate_every > before // args.validate_every:
            misses(model, val_X, val_y)  # echo scores all of validation here, for its curve
        if reaches(model, val_X, val_y, args.target_exact):
            reached = sequences
    train_seconds = time.perf_counter() - start

    test_X, test_y = flat(*data.sample_windows(streams["test"], args.eval_sequences, TASK))
    test_misses, eval_acc = misses(model, test_X, test_y)
    print(
        json.dumps(
            {
                "train_seconds": train_seconds,
                "val_exact": 1 - misses(model, val_X, val_y)[0] / len(val_X),
                "eval_acc": eval_acc,
                "eval_exact": 1 - test_misses / len(test_X),
                "updates": sequences // per_update,
                "epochs_to_target": reached,
            }
        )
    )


if __name__ == "__main__":
    main()
