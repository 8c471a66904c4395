"""A small DCGAN on MNIST, in Keras 3 on any backend, logging FID and KID every epoch with fidkit.

    KERAS_BACKEND=jax python examples/keras_dcgan_mnist.py                    # 10 epochs, ~6 min on 2 cores
    KERAS_BACKEND=torch python examples/keras_dcgan_mnist.py --epochs 1 --steps 5 --num-samples 200   # CI

`fidkit.integrations.keras.FIDCallback` scores ``--num-samples`` images of the generator at the end of
every epoch against the shipped MNIST test digits, with the shipped MNIST extractor (``mnist``) on the
fidkit runtime of the Keras backend; the values go into ``logs``, so the progress bar, ``History`` and
``CSVLogger`` show them. The generator's noise is the same at every evaluation (seed 0), so the curve
follows the weights, not the draw. Writes into ``--out``: ``fid_per_epoch.png`` (matplotlib),
``log.csv`` and ``samples.png``. Measured (jax, 2 busy cores, ``--epochs 4 --num-samples 2000``): 35 s
per epoch; FID 3615, 1523, 1053, 852 and KID 7179, 5367, 3382, 2695 after epochs 1-4, and the samples are
recognisable digits.

Training data: the shipped 10,000 test digits (``fidkit.load_mnist()``), which are also the reference,
or the 60,000 training digits with ``--mnist-root DIR`` (a folder holding the MNIST IDX files). MNIST
FIDs are in the MNIST classifier's units, not Inception's (docs/mnist.md).

The GAN is one Keras model trained by ``fit`` with one loss and one optimizer, written only with
``keras.ops`` so that it runs unchanged on jax, tensorflow and torch: with D(x) the discriminator's
logit, x the real and G(z) the generated images, sg = ``stop_gradient`` and s = softplus,

    L = s(-D(x)) + s(D(sg G(z)))  +  s(-D(G(z))) - s(-D(sg G(z)))

The first two terms are the discriminator's loss (no gradient reaches G); the last two are equal in
value, so L equals the discriminator's loss, and their gradients with respect to D's weights cancel,
while G receives the gradient of the non-saturating generator loss s(-D(G(z))) (Goodfellow et al. 2014).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
import warnings

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=None, help="steps per epoch (default: the whole data set)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--latent", type=int, default=64, help="noise dimension")
    p.add_argument("--num-samples", type=int, default=5000, help="generated images scored per epoch")
    p.add_argument("--mnist-root", default=None, help="train on the 60k training digits in this folder")
    p.add_argument("--out", default="keras_dcgan_mnist_out")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def build_gan(keras, latent: int):
    ops, layers = keras.ops, keras.layers
    generator = keras.Sequential([
        keras.Input((latent,)),
        layers.Dense(7 * 7 * 64, use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(0.2),
        layers.Reshape((7, 7, 64)),
        layers.Conv2DTranspose(32, 4, strides=2, padding="same", use_bias=False),
        layers.BatchNormalization(), layers.LeakyReLU(0.2),
        layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh"),   # 28x28x1 in [-1, 1]
    ], name="generator")
    discriminator = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 4, strides=2, padding="same"), layers.LeakyReLU(0.2),
        layers.Conv2D(64, 4, strides=2, padding="same"), layers.LeakyReLU(0.2),
        layers.Flatten(), layers.Dense(1),                                               # a logit
    ], name="discriminator")

    class GAN(keras.Model):
        def __init__(self):
            super().__init__()
            self.generator, self.discriminator = generator, discriminator

        def call(self, inputs, training=False):
            real, z = inputs
            fake = self.generator(z, training=training)
            d = self.discriminator
            return d(real, training=training), d(ops.stop_gradient(fake), training=training), \
                d(fake, training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            d_real, d_fake_detached, d_fake = y_pred
            sp = ops.softplus
            return ops.mean(sp(-d_real) + sp(d_fake_detached) + sp(-d_fake) - sp(-d_fake_detached))

    return GAN()


def batches(keras, images: np.ndarray, batch_size: int, latent: int, seed: int):
    """Returns a PyDataset of ((real in [-1, 1], noise),) batches, shuffled each epoch."""

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(images))

        def __len__(self):
            return len(images) // batch_size

        def __getitem__(self, i):
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            real = (images[idx, :, :, None] / 127.5 - 1.0).astype("float32")
            z = self.rng.standard_normal((batch_size, latent), dtype=np.float32)
            return ((real, z),)

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(images))

    return Batches()


def main() -> None:
    args = parse_args()
    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("this example saves plots with matplotlib: pip install matplotlib")
    import keras

    import fidkit
    from fidkit.integrations.keras import FIDCallback

    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    test_digits, _ = fidkit.load_mnist()
    train = fidkit.load_mnist("train", args.mnist_root)[0] if args.mnist_root else test_digits

    gan = build_gan(keras, args.latent)
    gan.compile(optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    fid_cb = FIDCallback(
        reference=test_digits,                   # features computed once, before the first epoch
        sample_fn=gan.generator, latent_shape=(args.latent,),
        num_samples=args.num_samples, metrics=("fid", "kid"), extractor="mnist",
        seed=args.seed, value_range=(-1, 1))
    callbacks = [fid_cb, keras.callbacks.CSVLogger(os.path.join(args.out, "log.csv"))]  # fidkit first
    print(f"keras {keras.__version__} on {keras.backend.backend()}; fidkit extractor "
          f"{fid_cb.extractor.name} on {fid_cb.extractor.runtime}")
    t0 = time.time()
    with warnings.catch_warnings():              # fewer than 10,000 samples in short runs: intended
        warnings.simplefilter("ignore", fidkit.FidkitWarning)
        history = gan.fit(batches(keras, train, args.batch_size, args.latent, args.seed),
                          epochs=args.epochs, steps_per_epoch=args.steps, callbacks=callbacks, verbose=2)
    print(f"trained {args.epochs} epoch(s) in {time.time() - t0:.0f} s")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fid = history.history["fid"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(1, len(fid) + 1), fid, marker="o")
    ax.set(xlabel="epoch", ylabel="FID (MNIST extractor)", yscale="log",
           title=f"DCGAN on MNIST, {args.num_samples} samples per epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "fid_per_epoch.png"), dpi=120)

    z = np.random.default_rng(args.seed).standard_normal((64, args.latent), dtype=np.float32)
    grid = gan.generator.predict(z, verbose=0)[..., 0].reshape(8, 8, 28, 28).transpose(0, 2, 1, 3)
    plt.imsave(os.path.join(args.out, "samples.png"), grid.reshape(8 * 28, 8 * 28), cmap="gray")
    for epoch, (f, k) in enumerate(zip(fid, history.history["kid"], strict=True), 1):
        print(f"epoch {epoch}: FID {f:.2f}  KID {k:.2f}")
    print(f"wrote {args.out}/fid_per_epoch.png, log.csv, samples.png")


if __name__ == "__main__":
    main()
