"""The Inception v3 graphs: the 2015 TensorFlow network that defines FID and IS, and torchvision's.

Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016
(arXiv:1512.00567). FID: Heusel et al., NeurIPS 2017 (arXiv:1706.08500). IS: Salimans et al., NeurIPS 2016
(arXiv:1606.03498).

Node names are chosen so that the canonical parameter names ``f"{node}.{param}"`` are exactly the
``state_dict`` keys of pytorch-fid's ``FIDInceptionV3`` / torch-fidelity's ``FeatureExtractorInceptionV3``
(`inception_tf2015`) and of torchvision's ``inception_v3`` without ``AuxLogits`` (`inception_torchvision`),
e.g. ``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, ``fc.weight``. A state dict of
either library, as numpy float32 arrays, is therefore a canonical weights file.

The 2015 graph differs from torchvision's in its mixed blocks, as TensorFlow computed them: average pools
exclude the zero padding from the mean (``count_include_pad=False``), the last block (``Mixed_7c``) max-pools
its pool branch, and the classifier has 1008 classes. Its ``logits`` are ``features @ fc.weight.T``
*without* ``fc.bias`` by default: the original Inception Score code (openai/improved-gan) rebuilds the
softmax from ``pool_3`` and the weight of ``softmax/logits/MatMul`` alone, dropping the bias, and
torch-fidelity's ``logits_unbiased`` (its IS default) reproduces that; pass ``logits_bias=True`` for the
graph's own biased logits. torchvision's logits use its fc bias (it is part of the trained classifier).
"""

from __future__ import annotations

from .spec import Graph, GraphBuilder, Padding

#: BatchNorm epsilon of every Inception conv block (TF's 0.001, kept by pytorch-fid and torchvision).
BN_EPS = 1e-3

#: torchvision's ``transform_input``: maps ImageNet-normalized input back to the (x - 0.5) / 0.5 scale the
#: Google weights were trained on, per channel.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _pad(ph: int, pw: int) -> Padding:
    return ((ph, ph), (pw, pw))


class _Inception:
    """Appends the Inception v3 blocks to a builder; ``tf2015`` picks the 2015 TF variant of the mixed blocks."""

    def __init__(self, b: GraphBuilder, tf2015: bool) -> None:
        self.b = b
        self.tf2015 = tf2015

    def conv(self, name: str, x: str, cin: int, cout: int, kernel: tuple[int, int],
             stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)) -> str:
        """Conv (no bias) -> BatchNorm -> ReLU, named like torchvision's ``BasicConv2d``."""
        b = self.b
        y = b.conv2d(f"{name}.conv", x, cin, cout, kernel, stride, _pad(*padding), bias=False)
        y = b.batchnorm(f"{name}.bn", y, cout, BN_EPS)
        return b.relu(f"{name}.relu", y)

    def pool_branch(self, name: str, x: str, use_max: bool = False) -> str:
        """The 3x3 stride-1 pool that feeds a mixed block's ``branch_pool`` conv."""
        if use_max:
            return self.b.maxpool2d(f"{name}.maxpool", x, (3, 3), (1, 1), _pad(1, 1))
        return self.b.avgpool2d(f"{name}.avgpool", x, (3, 3), (1, 1), _pad(1, 1),
                                count_include_pad=not self.tf2015)

    def block_a(self, name: str, x: str, cin: int, pool_features: int) -> str:
        b1 = self.conv(f"{name}.branch1x1", x, cin, 64, (1, 1))
        b5 = self.conv(f"{name}.branch5x5_1", x, cin, 48, (1, 1))
        b5 = self.conv(f"{name}.branch5x5_2", b5, 48, 64, (5, 5), padding=(2, 2))
        b3 = self.conv(f"{name}.branch3x3dbl_1", x, cin, 64, (1, 1))
        b3 = self.conv(f"{name}.branch3x3dbl_2", b3, 64, 96, (3, 3), padding=(1, 1))
        b3 = self.conv(f"{name}.branch3x3dbl_3", b3, 96, 96, (3, 3), padding=(1, 1))
        bp = self.pool_branch(f"{name}.branch_pool", x)
        bp = self.conv(f"{name}.branch_pool", bp, cin, pool_features, (1, 1))
        return self.b.concat(f"{name}.concat", [b1, b5, b3, bp])

    def block_b(self, name: str, x: str, cin: int) -> str:
        b3 = self.conv(f"{name}.branch3x3", x, cin, 384, (3, 3), stride=(2, 2))
        bd = self.conv(f"{name}.branch3x3dbl_1", x, cin, 64, (1, 1))
        bd = self.conv(f"{name}.branch3x3dbl_2", bd, 64, 96, (3, 3), padding=(1, 1))
        bd = self.conv(f"{name}.branch3x3dbl_3", bd, 96, 96, (3, 3), stride=(2, 2))
        bp = self.b.maxpool2d(f"{name}.branch_pool.maxpool", x, (3, 3), (2, 2))
        return self.b.concat(f"{name}.concat", [b3, bd, bp])

    def block_c(self, name: str, x: str, cin: int, c7: int) -> str:
        b1 = self.conv(f"{name}.branch1x1", x, cin, 192, (1, 1))
        b7 = self.conv(f"{name}.branch7x7_1", x, cin, c7, (1, 1))
        b7 = self.conv(f"{name}.branch7x7_2", b7, c7, c7, (1, 7), padding=(0, 3))
        b7 = self.conv(f"{name}.branch7x7_3", b7, c7, 192, (7, 1), padding=(3, 0))
        bd = self.conv(f"{name}.branch7x7dbl_1", x, cin, c7, (1, 1))
        bd = self.conv(f"{name}.branch7x7dbl_2", bd, c7, c7, (7, 1), padding=(3, 0))
        bd = self.conv(f"{name}.branch7x7dbl_3", bd, c7, c7, (1, 7), padding=(0, 3))
        bd = self.conv(f"{name}.branch7x7dbl_4", bd, c7, c7, (7, 1), padding=(3, 0))
        bd = self.conv(f"{name}.branch7x7dbl_5", bd, c7, 192, (1, 7), padding=(0, 3))
        bp = self.pool_branch(f"{name}.branch_pool", x)
        bp = self.conv(f"{name}.branch_pool", bp, cin, 192, (1, 1))
        return self.b.concat(f"{name}.concat", [b1, b7, bd, bp])

    def block_d(self, name: str, x: str, cin: int) -> str:
        b3 = self.conv(f"{name}.branch3x3_1", x, cin, 192, (1, 1))
        b3 = self.conv(f"{name}.branch3x3_2", b3, 192, 320, (3, 3), stride=(2, 2))
        b7 = self.conv(f"{name}.branch7x7x3_1", x, cin, 192, (1, 1))
        b7 = self.conv(f"{name}.branch7x7x3_2", b7, 192, 192, (1, 7), padding=(0, 3))
        b7 = self.conv(f"{name}.branch7x7x3_3", b7, 192, 192, (7, 1), padding=(3, 0))
        b7 = self.conv(f"{name}.branch7x7x3_4", b7, 192, 192, (3, 3), stride=(2, 2))
        bp = self.b.maxpool2d(f"{name}.branch_pool.maxpool", x, (3, 3), (2, 2))
        return self.b.concat(f"{name}.concat", [b3, b7, bp])

    def block_e(self, name: str, x: str, cin: int, max_pool: bool) -> str:
        b1 = self.conv(f"{name}.branch1x1", x, cin, 320, (1, 1))
        b3 = self.conv(f"{name}.branch3x3_1", x, cin, 384, (1, 1))
        b3a = self.conv(f"{name}.branch3x3_2a", b3, 384, 384, (1, 3), padding=(0, 1))
        b3b = self.conv(f"{name}.branch3x3_2b", b3, 384, 384, (3, 1), padding=(1, 0))
        bd = self.conv(f"{name}.branch3x3dbl_1", x, cin, 448, (1, 1))
        bd = self.conv(f"{name}.branch3x3dbl_2", bd, 448, 384, (3, 3), padding=(1, 1))
        bda = self.conv(f"{name}.branch3x3dbl_3a", bd, 384, 384, (1, 3), padding=(0, 1))
        bdb = self.conv(f"{name}.branch3x3dbl_3b", bd, 384, 384, (3, 1), padding=(1, 0))
        bp = self.pool_branch(f"{name}.branch_pool", x, use_max=max_pool)
        bp = self.conv(f"{name}.branch_pool", bp, cin, 192, (1, 1))
        return self.b.concat(f"{name}.concat", [b1, b3a, b3b, bda, bdb, bp])

    def trunk(self, x: str) -> str:
        """Returns the 2048-channel output of Mixed_7c, from the 299x299 input node ``x``."""
        b = self.b
        x = self.conv("Conv2d_1a_3x3", x, 3, 32, (3, 3), stride=(2, 2))
        x = self.conv("Conv2d_2a_3x3", x, 32, 32, (3, 3))
        x = self.conv("Conv2d_2b_3x3", x, 32, 64, (3, 3), padding=(1, 1))
        x = b.maxpool2d("maxpool1", x, (3, 3), (2, 2))
        x = self.conv("Conv2d_3b_1x1", x, 64, 80, (1, 1))
        x = self.conv("Conv2d_4a_3x3", x, 80, 192, (3, 3))
        x = b.maxpool2d("maxpool2", x, (3, 3), (2, 2))
        x = self.block_a("Mixed_5b", x, 192, 32)
        x = self.block_a("Mixed_5c", x, 256, 64)
        x = self.block_a("Mixed_5d", x, 288, 64)
        x = self.block_b("Mixed_6a", x, 288)
        x = self.block_c("Mixed_6b", x, 768, 128)
        x = self.block_c("Mixed_6c", x, 768, 160)
        x = self.block_c("Mixed_6d", x, 768, 160)
        x = self.block_c("Mixed_6e", x, 768, 192)
        x = self.block_d("Mixed_7a", x, 768)
        x = self.block_e("Mixed_7b", x, 1280, max_pool=False)
        return self.block_e("Mixed_7c", x, 2048, max_pool=self.tf2015)


#: sFID's tensor (Nash et al., "Generating Images with Sparse Representations", ICML 2021, as the ADM
#: evaluator computes it: openai/guided-diffusion evaluations/evaluator.py, ``FID_SPATIAL_NAME =
#: "mixed_6/conv:0"`` then ``spatial[..., :7]`` reshaped to (N, -1) in NHWC order). In the 2015 graph,
#: ``mixed_6`` is the third 17x17 block (``Mixed_6d``: `fidkit.weights.files.TF2015_SCOPES`) and the op
#: named ``mixed_6/conv`` is the ReLU after its 1x1 branch's conv and batchnorm (the graph lists
#: ``mixed_6/conv/Conv2D``, ``mixed_6/conv/batchnorm``, then ``mixed_6/conv``): (N, 17, 17, 192).
SPATIAL_NODE = "Mixed_6d.branch1x1.relu"
#: The channels of `SPATIAL_NODE` sFID keeps (the first 7) and the resulting dimension 17 x 17 x 7.
SPATIAL_CHANNELS = 7
SPATIAL_DIM = 17 * 17 * SPATIAL_CHANNELS


def inception_tf2015(logits_bias: bool = False) -> Graph:
    """Returns the graph of the 2015 TF Inception (FID/IS network): 2048-d pool3 features, 1008 logits,
    and sFID's 2023-d ``spatial`` features.

    Input: 299x299 RGB scaled to [-1, 1] (the ``legacy-tensorflow`` policy does ``(x - 128) / 128``).
    ``logits`` omit ``fc.bias`` unless ``logits_bias`` (see the module docstring). ``spatial`` is
    `SPATIAL_NODE`'s first `SPATIAL_CHANNELS` channels flattened in (H, W, C) order, the ADM evaluator's
    ``mixed_6/conv:0[..., :7]`` (see `SPATIAL_NODE`).
    """
    b = GraphBuilder("inception-tf2015", channels=3)
    net = _Inception(b, tf2015=True)
    pool = b.flatten("pool3", b.global_avgpool("avgpool", net.trunk("input")))
    fc = b.dense("fc", pool, 2048, 1008, bias=logits_bias)
    spatial = b.flatten_hwc("spatial", SPATIAL_NODE, SPATIAL_CHANNELS)
    return b.build(features=pool, logits=fc, spatial=spatial)


def inception_torchvision() -> Graph:
    """Returns the graph of torchvision's ``inception_v3`` (IMAGENET1K_V1): 2048-d pool features, 1000 logits.

    Input: 299x299 RGB normalized with the ImageNet mean/std (the ``torchvision`` policy); the first node is
    torchvision's ``transform_input``, which the IMAGENET1K_V1 weights enable. ``AuxLogits`` is omitted (it
    only runs in training mode).
    """
    b = GraphBuilder("inception-torchvision", channels=3)
    scale = tuple(s / 0.5 for s in _IMAGENET_STD)
    shift = tuple((m - 0.5) / 0.5 for m in _IMAGENET_MEAN)
    x = b.channel_affine("transform_input", "input", scale, shift)
    net = _Inception(b, tf2015=False)
    pool = b.flatten("pool", b.global_avgpool("avgpool", net.trunk(x)))
    fc = b.dense("fc", pool, 2048, 1000, bias=True)
    return b.build(features=pool, logits=fc)
