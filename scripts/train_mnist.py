"""Trains fidkit's MNIST classifier on CPU and writes fidkit/data/fidkit-mnist-v1.npz plus its .json sidecar.

    python scripts/train_mnist.py --data ../shared/data/mnist

Deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)``, a fixed thread count and a
seeded shuffle, so the same seed, thread count and torch version give the same weights bit for bit
(tests/test_mnist.py checks this on a short run). The weights file is written with fixed zip
timestamps, so its SHA-256 depends only on the arrays. The architecture is `fidkit.archs.mnist.mnist_v1`;
the torch module below names its parameters after the graph's nodes, and the script checks the names
and shapes against the graph before writing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shlex
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fidkit.archs.mnist import (
    BN_EPS,
    FEATURE_DIM,
    LUMA_RGB,
    MNIST_MEAN,
    MNIST_STD,
    NUM_CLASSES,
    mnist_v1,
)
from fidkit.mnist_data import load_mnist

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "fidkit" / "data" / "fidkit-mnist-v1.npz"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist"


class MnistNet(nn.Module):
    """The torch twin of `fidkit.archs.mnist.mnist_v1`: forward returns (features, logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.gray = nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.gray.weight.copy_(torch.tensor(LUMA_RGB).view(1, 3, 1, 1))
        self.gray.weight.requires_grad_(False)
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(32, eps=BN_EPS)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, eps=BN_EPS)
        self.fc1 = nn.Linear(64 * 7 * 7, FEATURE_DIM)
        self.fc2 = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (features, logits) of float32 NCHW RGB images on the 0..255 scale, 28x28."""
        x = (x - MNIST_MEAN * 255.0) / (MNIST_STD * 255.0)  # the runtime's normalisation
        x = self.gray(x)
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        feats = self.fc1(torch.flatten(x, 1))
        return feats, self.fc2(torch.relu(feats))


def canonical_arrays(model: MnistNet) -> dict[str, np.ndarray]:
    """Returns the model's parameters and buffers as float32 arrays named as mnist_v1() reads them."""
    state = {k: v.detach().cpu().numpy().astype(np.float32)
             for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    expected = mnist_v1().param_shapes()
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        raise SystemExit(f"train_mnist: torch parameters {found} do not match the graph's {expected}")
    return state


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Returns an .npz archive of ``arrays`` with sorted members and fixed timestamps (reproducible bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to a temp file beside ``path`` and renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _as_input(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32))[:, None]
    return x.expand(-1, 3, -1, -1).contiguous()


def train(images: np.ndarray, labels: np.ndarray, *, seed: int = 0, epochs: int = 3,
          batch_size: int = 128, lr: float = 2e-3, max_steps: int | None = None,
          threads: int = 2, deterministic: bool = True) -> MnistNet:
    """Returns the model trained with Adam and a one-cycle schedule; deterministic for fixed arguments.

    ``deterministic=False`` skips ``torch.use_deterministic_algorithms``, which imports torch._inductor
    (seconds); the CPU kernels this network uses are deterministic either way.
    """
    torch.set_num_threads(threads)
    if deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = MnistNet()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    steps_per_epoch = len(images) // batch_size
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = _as_input(images), torch.from_numpy(labels.astype(np.int64))
    model.train()
    step = 0
    while step < total:
        order = torch.randperm(len(images), generator=gen)
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[b * batch_size:(b + 1) * batch_size]
            _, logits = model(x_all[idx])
            loss = nn.functional.cross_entropy(logits, y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 100 == 0:
                print(f"step {step}/{total} loss {loss.item():.4f}", file=sys.stderr, flush=True)
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: MnistNet, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Returns the fraction of ``images`` the model classifies as ``labels``."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        _, logits = model(_as_input(images[i:i + batch_size]))
        correct += int((logits.argmax(1).numpy() == labels[i:i + batch_size]).sum())
    return correct / len(images)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with the four MNIST IDX files")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="weights file to write (.npz); .json beside it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-steps", type=int, default=None, help="stop early (reproducibility checks)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    x_train, y_train = load_mnist("train", args.data)
    x_test, y_test = load_mnist("test", args.data)
    t0 = time.perf_counter()
    model = train(x_train, y_train, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                  lr=args.lr, max_steps=args.max_steps, threads=args.threads)
    seconds = time.perf_counter() - t0
    acc = accuracy(model, x_test, y_test)
    data = npz_bytes(canonical_arrays(model))
    out = Path(args.out)
    write_atomic(out, data)
    cmd = "python scripts/train_mnist.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    meta = {
        "name": "fidkit-mnist-v1",
        "file": out.name,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "test_accuracy": acc,
        "test_images": int(len(y_test)),
        "training_command": cmd.strip(),
        "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "max_steps": args.max_steps, "threads": args.threads,
        "torch_version": torch.__version__, "train_seconds": round(seconds, 1),
        "architecture": "fidkit.archs.mnist:mnist_v1",
        "features": "fc1 (128, before relu)", "logits": "fc2 (10)",
    }
    write_atomic(out.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
