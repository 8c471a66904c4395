"""GAN evaluation with PyTorch-Ignite and fidkit: the flow of Ignite's "GAN evaluation using FID and IS"
tutorial, with what moves the number fixed.

    python examples/ignite_gan_eval.py                  # 5 epochs, about a minute on 2 CPU cores
    python examples/ignite_gan_eval.py --epochs 1 --eval-samples 500

A tiny generator (an MLP, noise → 28x28 tanh images) is trained against a tiny discriminator on MNIST
digits; after every epoch an evaluator engine draws ``--eval-samples`` images from fixed noise and
fidkit's ignite metrics score them: FID against real statistics computed once, and the Inception Score
of the generated images. What differs from the tutorial, and why:

* the real side is a `fidkit.Stats` computed once before training, from digits the GAN never sees, and
  passed as ``reference=``; the tutorial pushes real batches through the network every epoch, which
  costs as much as the fake side and makes each epoch's FID use other real images;
* the evaluator draws from the same noise every epoch, so the FID curve moves with the generator only;
* the generator's range is declared (``value_range=(-1, 1)``: tanh) and checked on every batch, instead
  of being rescaled by hand; the resize policy is the extractor's own (for Inception the tutorial resizes
  with PIL bilinear, one of the policies fidkit records, see the README);
* the extractor is fidkit's MNIST classifier (128-d features, 10 logits), so this runs on a CPU in
  seconds: its FIDs are in that classifier's units, not comparable with Inception FIDs (docs/mnist.md).
  With Inception weights at hand, ``--extractor inception-tf2015`` scores the same way;
* every printed score names its extractor, weights and resize policy (the metric's `result()`).

FIDs from a few thousand samples are biased upwards (fidkit warns below 10,000); compare them with each
other, not with published numbers.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

import fidkit
from fidkit.integrations.ignite import FID, InceptionScore

LATENT = 32


def generator() -> torch.nn.Module:
    """Returns an MLP generator: (N, LATENT) noise → (N, 1, 28, 28) images in [-1, 1]."""
    return torch.nn.Sequential(
        torch.nn.Linear(LATENT, 256), torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(256, 784), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 28, 28)))


def discriminator() -> torch.nn.Module:
    """Returns an MLP discriminator: (N, 1, 28, 28) images → (N,) logits."""
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.LeakyReLU(0.2), torch.nn.Linear(256, 1),
        torch.nn.Flatten(0))


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Trains and evaluates; returns the per-epoch history {'fid': [...], 'is': [...]}."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train-images", type=int, default=8000, help="digits the GAN trains on")
    p.add_argument("--reference-images", type=int, default=2000, help="held-out digits for the real side")
    p.add_argument("--eval-samples", type=int, default=2000, help="generated images scored per epoch")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--extractor", default="mnist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (1: tiny models gain nothing from more, and shared machines lose)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)

    digits, _ = fidkit.load_mnist()                                    # (10000, 28, 28) uint8
    if args.train_images + args.reference_images > len(digits):
        p.error(f"--train-images + --reference-images must be at most {len(digits)}")
    train = torch.from_numpy(digits[:args.train_images]).unsqueeze(1).float() / 127.5 - 1.0
    held_out = digits[len(digits) - args.reference_images:]

    # the real side, once: statistics of held-out digits, with their provenance
    t0 = time.perf_counter()
    ex = fidkit.extractor(args.extractor, runtime="torch", device=args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fidkit.FidkitWarning)        # n < 10,000: said above
        real_stats = fidkit.compute_stats(held_out, ex, progress=False)
    print(f"real statistics: {real_stats} in {time.perf_counter() - t0:.1f} s")

    gen, disc = generator().to(dev), discriminator().to(dev)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.5, 0.999))
    bce = torch.nn.BCEWithLogitsLoss()

    def train_step(engine: Engine, real: torch.Tensor) -> dict[str, float]:
        real = real.to(dev)
        z = torch.randn(real.shape[0], LATENT, device=dev)
        fake = gen(z)
        ones, zeros = torch.ones(real.shape[0], device=dev), torch.zeros(real.shape[0], device=dev)
        opt_d.zero_grad()
        loss_d = bce(disc(real), ones) + bce(disc(fake.detach()), zeros)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = bce(disc(fake), ones)
        loss_g.backward()
        opt_g.step()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}

    trainer = Engine(train_step)
    ProgressBar(persist=False).attach(trainer, output_transform=lambda out: out)

    # the evaluator: fixed noise, the same every epoch; its output is the generated batch
    g = torch.Generator().manual_seed(args.seed + 1)
    noise = [torch.randn(min(250, args.eval_samples - lo), LATENT, generator=g)
             for lo in range(0, args.eval_samples, 250)]

    def eval_step(engine: Engine, z: torch.Tensor) -> torch.Tensor:
        gen.eval()
        with torch.no_grad():
            out = gen(z.to(dev))
        gen.train()
        return out

    evaluator = Engine(eval_step)
    fid = FID(ex, reference=real_stats, value_range=(-1, 1), device=dev)
    isc = InceptionScore(ex, value_range=(-1, 1), device=dev)
    fid.attach(evaluator, "fid")
    isc.attach(evaluator, "is")
    history: dict[str, list[float]] = {"fid": [], "is": []}

    @trainer.on(Events.EPOCH_COMPLETED)
    def evaluate(engine: Engine) -> None:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fidkit.FidkitWarning)    # n < 10,000: said above
            evaluator.run(noise, max_epochs=1)
        m = evaluator.state.metrics
        history["fid"].append(m["fid"])
        history["is"].append(m["is"])
        print(f"epoch {engine.state.epoch}: FID {m['fid']:.2f}  IS {m['is']:.3f} ± {isc.result().std:.3f}"
              f"  ({args.eval_samples} samples, {time.perf_counter() - t:.1f} s)")

    loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True)
    t0 = time.perf_counter()
    trainer.run(loader, max_epochs=args.epochs)
    print(f"trained and evaluated {args.epochs} epoch(s) in {time.perf_counter() - t0:.1f} s")
    print(f"last: {fid.result()}")
    print(f"      {isc.result()}")
    print(f"FID by epoch: {np.round(history['fid'], 2).tolist()}")
    return history


if __name__ == "__main__":
    main()
