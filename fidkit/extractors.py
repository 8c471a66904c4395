"""The built-in extractors, declared in one place; everything else looks them up by name."""

from __future__ import annotations

from .archs.inception import SPATIAL_DIM
from .registry import ExtractorSpec, register_extractor

#: The generic graph interpreters: every built-in network is a `fidkit.archs.spec.Graph`.
GRAPH_BUILDERS = {rt: f"fidkit.backends.{rt}:network" for rt in ("torch", "jax", "tf", "numpy")}

register_extractor(ExtractorSpec(
    name="inception-tf2015",
    feature_dim=2048,
    logits_dim=1008,
    input_size=(299, 299),
    policy="legacy-tensorflow",
    builders=GRAPH_BUILDERS,
    weights=("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth",
             "inception-2015-12-05.pt", "inception-2015-12-05.tgz"),
    arch="fidkit.archs.inception:inception_tf2015",
    description="The 2015 TensorFlow Inception graph that defines FID and IS (TTUR, pytorch-fid, "
                "torch-fidelity, clean-fid): 2048-d pool3 features, 1008 logits = pool3 @ fc.weight.T "
                "without fc.bias, as the original IS code and torch-fidelity's logits_unbiased.",
    # sFID's spatial features (fidkit.archs.inception.SPATIAL_NODE): 17 x 17 x 7 of mixed_6/conv
    extra={"outputs": {"spatial": SPATIAL_DIM}},
))

register_extractor(ExtractorSpec(
    name="inception-torchvision",
    feature_dim=2048,
    logits_dim=1000,
    input_size=(299, 299),
    policy="torchvision",
    builders=GRAPH_BUILDERS,
    weights=("inception_v3_google-0cc3c7bd.pth",),
    arch="fidkit.archs.inception:inception_torchvision",
    description="torchvision's Inception v3 (IMAGENET1K_V1): 2048-d pool features, 1000 logits.",
))

register_extractor(ExtractorSpec(
    name="mnist",
    feature_dim=128,
    logits_dim=10,
    input_size=(28, 28),
    policy="mnist",
    builders=GRAPH_BUILDERS,
    weights=("fidkit-mnist-v1.npz",),
    arch="fidkit.archs.mnist:mnist_v1",
    description="fidkit's own MNIST classifier fidkit-mnist-v1 (99.21% test accuracy), trained by "
                "scripts/train_mnist.py and shipped with the package, the offline default: 128-d fc1 "
                "embedding (before its ReLU) for FID/KID/PR, 10 logits for IS; colour input is "
                "converted to BT.601 luminance inside the network (docs/mnist.md).",
))

#: DINOv2 backbones (torch hub facebookresearch/dinov2): their features are the final LayerNorm's class token.
#: Each names its hub file ``dinov2_<model>[_reg4]_pretrain.pth`` (``fidkit.weights.files.DINOV2_WEIGHTS_FILES``).
_DINOV2 = {"vits14": ("ViT-S/14", 384), "vitb14": ("ViT-B/14", 768), "vitl14": ("ViT-L/14", 1024),
           "vitg14": ("ViT-g/14", 1536)}
for _model, (_label, _dim) in _DINOV2.items():
    for _reg in (False, True):
        _name = f"dinov2-{_model}{'-reg' if _reg else ''}"
        register_extractor(ExtractorSpec(
            name=_name,
            feature_dim=_dim,
            logits_dim=None,
            input_size=(224, 224),
            policy="dgm-eval",
            builders=GRAPH_BUILDERS,
            weights=(f"dinov2_{_model}{'_reg4' if _reg else ''}_pretrain.pth",),
            arch=f"fidkit.archs.dinov2:dinov2_{_model}{'_reg' if _reg else ''}",
            description=(f"DINOv2 {_label}{' with 4 registers' if _reg else ''} (torch hub dinov2_{_model}"
                         f"{'_reg' if _reg else ''}, LVD-142M): {_dim}-d class token of the final LayerNorm at "
                         f"224 x 224, position embeddings interpolated as the hub model does"
                         + (" (FD_DINOv2 of dgm-eval and EDM2)" if _model == "vitl14" and not _reg else "")
                         + "; no logits."),
        ))

register_extractor(ExtractorSpec(
    name="clip-vitb32",
    feature_dim=512,
    logits_dim=None,
    input_size=(224, 224),
    policy="clip",
    builders=GRAPH_BUILDERS,
    weights=("ViT-B-32.pt",),
    arch="fidkit.archs.clip:clip_vitb32",
    description="OpenAI CLIP ViT-B/32 image encoder (openai/CLIP 'ViT-B/32'): clean-fid's CLIP-FID features "
                "(model_name='clip_vit_b_32'), model.encode_image at 224 x 224 after CLIP's own preprocessing "
                "(the 'clip' policy): the 512-d projected class token, not normalised; no logits. Computed in "
                "float32, as clean-fid on a CPU (on a GPU, openai/CLIP's load keeps the model in float16).",
))

register_extractor(ExtractorSpec(
    name="clip-vitl14-336",
    feature_dim=768,
    logits_dim=None,
    input_size=(336, 336),
    policy="cmmd",
    builders=GRAPH_BUILDERS,
    weights=("ViT-L-14-336px.pt",),
    arch="fidkit.archs.clip:clip_vitl14_336",
    description="OpenAI CLIP ViT-L/14@336px image encoder (openai/CLIP 'ViT-L/14@336px', Hugging Face "
                "openai/clip-vit-large-patch14-336): CMMD's embedding, the 768-d projected class token "
                "L2-normalised, at 336 x 336 after CMMD's centre-square crop and Pillow bicubic resize (the "
                "'cmmd' policy); no logits. Hugging Face's safetensors of the same weights (unpinned) converts "
                "when passed with --weights.",
))

register_extractor(ExtractorSpec(
    name="vgg16-nvidia",
    feature_dim=4096,
    logits_dim=1000,
    input_size=(224, 224),
    policy="vgg16-tf1",
    builders=GRAPH_BUILDERS,
    weights=("vgg16.pt",),
    arch="fidkit.archs.vgg16:vgg16_nvidia",
    description="NVIDIA's VGG16 (vgg16.pt) of StyleGAN2-ADA / StyleGAN3 precision/recall (pr50k3_full, "
                "Kynkäänniemi et al. 2019): 4096-d ReLU(fc2) features at 224 x 224 after the TF1-bilinear "
                "resize and ImageNet normalisation of the 'vgg16-tf1' policy, 1000 logits (fc3).",
))

register_extractor(ExtractorSpec(
    name="vgg16-torchvision",
    feature_dim=4096,
    logits_dim=1000,
    input_size=(224, 224),
    policy="vgg16-tf1",
    builders=GRAPH_BUILDERS,
    weights=("vgg16-397923af.pth",),
    arch="fidkit.archs.vgg16:vgg16_torchvision",
    description="torchvision's VGG16 (IMAGENET1K_V1) as torch-fidelity's 'vgg16' feature extractor runs it, its "
                "default precision/recall feature space: 4096-d ReLU(fc2) ('fc2_relu') at 224 x 224 after the "
                "TF1-bilinear resize and ImageNet normalisation of the 'vgg16-tf1' policy, 1000 logits (fc3).",
))
