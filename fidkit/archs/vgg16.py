"""VGG16 (Simonyan & Zisserman, ICLR 2015) as a framework-free graph: the network behind ``vgg16-nvidia``.

``vgg16-nvidia`` is the feature network of StyleGAN's precision/recall (Kynkäänniemi et al., NeurIPS 2019,
"Improved precision and recall metric"; NVlabs/stylegan2-ada-pytorch and stylegan3
``metrics/precision_recall.py``, ``pr50k3_full``): NVIDIA's TorchScript ``vgg16.pt``, a port of the VGG16
that Kynkäänniemi et al. used in TensorFlow, called as ``detector(images, return_features=True)`` on uint8
NCHW images. What that module computes, as genforce's re-implementation of the same file documents it
(snap-research/discoscene and genforce ``models/perceptual_model.py``, ``align_tf_resize=True``; the file's
own TorchScript code is not published as text):

1. resize to 224 x 224 with TensorFlow 1's ``resize_bilinear`` semantics (source pixel ``i * in / out``,
   no half-pixel centres, no antialiasing, borders replicated), as ``F.affine_grid`` + ``F.grid_sample``
   with a shifted affine grid; on the 0..255 float values (no rounding after the resize);
2. ``x / 255`` and the ImageNet mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225);
3. thirteen 3x3 convolutions (padding 1, bias) with ReLU, a 2x2 max-pool after blocks of 2, 2, 3, 3, 3:
   (512, 7, 7);
4. flatten in (C, H, W) order, ``fc1`` 25088 -> 4096 + ReLU, ``fc2`` 4096 -> 4096 + ReLU: **the
   features**, 4096-d (dropout is inactive at inference); ``fc3`` 4096 -> 1000: the logits.

Steps 1-2 are fidkit's ``vgg16-tf1`` resize policy (`fidkit.resize`); this module is steps 3-4. The
canonical parameter names are torchvision's ``vgg16`` names (``features.<i>``, ``classifier.<i>``), so a
torchvision VGG16 state dict is a canonical weights file: ``vgg16-torchvision`` is torchvision's ImageNet
VGG16 as torch-fidelity's 'vgg16' extractor runs it (the same resize and normalisation). NVIDIA's archive
names them ``layers.conv1`` ... ``layers.conv13``, ``layers.fc1`` ... ``layers.fc3``
(`fidkit.backends.torch.convert`), and also holds the five LPIPS channel weights ``lpips0`` ... ``lpips4``,
which the features do not read.
"""

from __future__ import annotations

from collections.abc import Sequence

from .spec import Graph, GraphBuilder, same_padding

#: VGG16's configuration "D": conv widths, "M" a 2x2 max-pool (torchvision ``cfgs["D"]``).
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                    512, 512, 512, "M")
#: Input side the weights were trained at; the ``vgg16-nvidia`` extractor always resizes to it.
INPUT_SIZE = 224
FEATURE_DIM = 4096
NUM_CLASSES = 1000


def _features_indices(cfg: Sequence[int | str]) -> list[tuple[str, int]]:
    """Returns ("conv" | "pool", torchvision ``features`` index) per entry of ``cfg`` (a conv adds conv and
    ReLU modules, a pool one module)."""
    out, i = [], 0
    for layer in cfg:
        out.append(("pool" if layer == "M" else "conv", i))
        i += 1 if layer == "M" else 2
    return out


def conv_names(cfg: Sequence[int | str] = VGG16_CFG) -> list[str]:
    """Returns the canonical names (``features.<i>``) of the convolutions of ``cfg``, in order."""
    return [f"features.{i}" for kind, i in _features_indices(cfg) if kind == "conv"]


def vgg_graph(name: str, cfg: Sequence[int | str] = VGG16_CFG, *, size: int = INPUT_SIZE,
              hidden: int = FEATURE_DIM, classes: int = NUM_CLASSES) -> Graph:
    """Returns a VGG graph (outputs 'features' = ReLU(fc2), (N, hidden); 'logits' = fc3, (N, classes)).

    ``cfg`` lists conv widths and ``"M"`` max-pools (torchvision's ``make_layers`` convention), ``size``
    the square input side; the classifier's input is (last width) x (size / 32)^2 in (C, H, W) order, i.e.
    no adaptive pooling (torchvision's ``AdaptiveAvgPool2d((7, 7))`` is the identity at 224). Smaller
    ``cfg``/``size``/``hidden`` give the same network at test scale. Raises ValueError when ``size`` does
    not survive the pools.
    """
    pools = sum(1 for layer in cfg if layer == "M")
    side = size
    for _ in range(pools):
        side //= 2
    if side < 1:
        raise ValueError(f"vgg_graph: input side {size} vanishes after {pools} 2x2 pools")
    g = GraphBuilder(name, channels=3)
    x, channels = "input", 3
    for (kind, i), layer in zip(_features_indices(cfg), cfg, strict=True):
        if kind == "pool":
            x = g.maxpool2d(f"features.{i}", x, (2, 2), (2, 2))
            continue
        assert isinstance(layer, int)
        x = g.conv2d(f"features.{i}", x, channels, layer, (3, 3), padding=same_padding((3, 3)), bias=True)
        x = g.relu(f"features.{i + 1}", x)
        channels = layer
    x = g.flatten("flatten", x)
    x = g.dense("classifier.0", x, channels * side * side, hidden)
    x = g.relu("classifier.1", x)
    x = g.dense("classifier.3", x, hidden, hidden)
    feats = g.relu("classifier.4", x)
    logits = g.dense("classifier.6", feats, hidden, classes)
    return g.build(features=feats, logits=logits)


def vgg16_nvidia() -> Graph:
    """Returns NVIDIA's VGG16 of StyleGAN's precision/recall at 224 x 224: 4096-d ReLU(fc2) features, 1000
    logits (fc3)."""
    return vgg_graph("vgg16-nvidia")


def vgg16_torchvision() -> Graph:
    """Returns torchvision's ``vgg16`` (IMAGENET1K_V1, ``vgg16-397923af.pth``) at 224 x 224 as torch-fidelity's
    'vgg16' feature extractor runs it: 4096-d ReLU(fc2) features ('fc2_relu', its precision/recall feature
    space), 1000 logits (fc3). The same graph as `vgg16_nvidia`; only the weights differ."""
    return vgg_graph("vgg16-torchvision")
