"""A plain PyTorch encoder-decoder on encdec_fast's task: the yardstick for its training time.

The tutorial's partial echo (values 0..99, windows of 5, echo the oldest 2), trained the way a
PyTorch user would write it without a framework: an LSTM encoder, its last state repeated for
each echoed position, an LSTM decoder and a linear read-out; batches of 256 fresh random
windows; Adam at 0.01. Every 50 updates it scores 20,000 validation windows and stops once
99.9% are echoed exactly; training time includes those checks, as echo's does. Prints one
JSON line: train_seconds, and eval_acc and eval_exact on 20,000 more held-out windows. Exits 1
if the target is not met within --max-updates: that is no training time to compare.

    pip install -e ".[peer]"          # or any CPU build of torch
    python benchmarks/torch_peer.py
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

N_UNIQUE, N_IN, N_OUT = 100, 5, 2


class EncoderDecoder(nn.Module):
    def __init__(self, units: int):
        super().__init__()
        self.encoder = nn.LSTM(N_UNIQUE, units, batch_first=True)
        self.decoder = nn.LSTM(units, units, batch_first=True)
        self.readout = nn.Linear(units, N_UNIQUE)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Integer windows [batch, N_IN] -> logits [batch, N_OUT, N_UNIQUE]."""
        one_hot = nn.functional.one_hot(windows, N_UNIQUE).float()
        _, (summary, _) = self.encoder(one_hot)
        repeated = summary[-1].unsqueeze(1).expand(-1, N_OUT, -1)
        decoded, _ = self.decoder(repeated)
        return self.readout(decoded)


def random_windows(generator: torch.Generator, count: int) -> torch.Tensor:
    # Windows of a sequence of uniform random values are themselves uniform random windows.
    return torch.randint(0, N_UNIQUE, (count, N_IN), generator=generator)


@torch.no_grad()
def exact_and_acc(model: nn.Module, windows: torch.Tensor) -> tuple[float, float]:
    right = model(windows).argmax(-1) == windows[:, :N_OUT]
    return right.all(-1).float().mean().item(), right.float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--target-exact", type=float, default=0.999)
    parser.add_argument(
        "--check-every", type=int, default=50, help="updates between validation checks"
    )
    parser.add_argument("--max-updates", type=int, default=20000)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    validation, test = random_windows(generator, 20000), random_windows(generator, 20000)
    model = EncoderDecoder(args.units)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    loss_of = nn.CrossEntropyLoss()

    start = time.perf_counter()
    updates, reached = 0, False
    while not reached and updates < args.max_updates:
        windows = random_windows(generator, args.batch_size)
        loss = loss_of(model(windows).reshape(-1, N_UNIQUE), windows[:, :N_OUT].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        updates += 1
        if updates % args.check_every == 0:
            reached = exact_and_acc(model, validation)[0] >= args.target_exact
    train_seconds = time.perf_counter() - start
    if not reached:
        raise SystemExit(f"--target-exact={args.target_exact}: not met in {updates} updates")

    eval_exact, eval_acc = exact_and_acc(model, test)
    print(
        json.dumps(
            {
                "train_seconds": train_seconds,
                "eval_acc": eval_acc,
                "eval_exact": eval_exact,
                "updates": updates,
            }
        )
    )


if __name__ == "__main__":
    main()
