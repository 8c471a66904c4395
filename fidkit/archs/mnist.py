"""fidkit's MNIST classifier as a framework-free graph: the network behind the ``mnist`` extractor.

The weights (``fidkit/data/fidkit-mnist-v1.npz``) are trained by ``scripts/train_mnist.py``; their size,
SHA-256 and test accuracy are in ``fidkit-mnist-v1.json`` beside them.

Input: float32 RGB, resized to 28x28 by the ``mnist`` resize policy and normalised by the runtime
with that policy's mean 0.1307*255 and std 0.3081*255 on every channel (the MNIST training set's
pixel mean and standard deviation on the 0..1 scale, times 255).

1. ``gray``: a fixed 1x1 convolution 3 -> 1 with weights (0.299, 0.587, 0.114), the ITU-R BT.601-2
   luma of PIL's ``convert("L")``. They sum to 1 (exactly in float32, to 1 ulp in float64), so a
   grayscale image replicated on three channels passes through unchanged up to rounding, and luma
   commutes with the per-channel normalisation.
   Stored in the weights file like any other parameter.
2. conv 5x5 (32) - batchnorm - relu - maxpool 2, conv 3x3 (64) - batchnorm - relu - maxpool 2:
   (64, 7, 7).
3. ``fc1``: dense 3136 -> 128, **the features** (taken before its relu); relu; ``fc2``: dense
   128 -> 10, **the logits**.

Why 128 features, before the relu: 128 is wide enough to keep within-class variation (style, stroke
width, slant) that 10 logits discard, and small enough that the 128x128 covariance is well estimated
from 10,000 images (n/d ~ 80) so the noise floor stays low. Taking them before the relu keeps every
unit's full range: after it, units that are dead on some digits put point masses at zero into the
covariance and can make it singular.
"""

from __future__ import annotations

from ..archs.spec import Graph, GraphBuilder, same_padding

#: ITU-R BT.601-2 luma weights (R, G, B): PIL's ``Image.convert("L")``.
LUMA_RGB = (0.299, 0.587, 0.114)
#: MNIST training-set pixel mean and standard deviation on the 0..1 scale.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
#: Width of the embedding used as features.
FEATURE_DIM = 128
NUM_CLASSES = 10
BN_EPS = 1e-5


def mnist_v1() -> Graph:
    """Returns the graph of fidkit-mnist-v1: outputs 'features' (N, 128) and 'logits' (N, 10)."""
    g = GraphBuilder("fidkit-mnist-v1", channels=3)
    x = g.conv2d("gray", "input", 3, 1, (1, 1))
    x = g.conv2d("conv1", x, 1, 32, (5, 5), padding=same_padding((5, 5)))
    x = g.batchnorm("bn1", x, 32, BN_EPS)
    x = g.relu("relu1", x)
    x = g.maxpool2d("pool1", x, (2, 2), (2, 2))
    x = g.conv2d("conv2", x, 32, 64, (3, 3), padding=same_padding((3, 3)))
    x = g.batchnorm("bn2", x, 64, BN_EPS)
    x = g.relu("relu2", x)
    x = g.maxpool2d("pool2", x, (2, 2), (2, 2))
    x = g.flatten("flatten", x)
    feats = g.dense("fc1", x, 64 * 7 * 7, FEATURE_DIM)
    x = g.relu("relu3", feats)
    logits = g.dense("fc2", x, FEATURE_DIM, NUM_CLASSES)
    return g.build(features=feats, logits=logits)
