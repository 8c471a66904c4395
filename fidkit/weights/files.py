"""The published weights files fidkit knows: where each comes from, how it is checked (SHA-256, size) and how it
is converted; plus the one table of names a converter needs (the 2015 TensorFlow graph's scopes).

Everything here is data or a pure function of it: nothing is downloaded, cached or converted in this module.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..errors import WeightsError
from .formats import FORMATS

_CHUNK = 1 << 20

#: The framework module each converter runtime imports. The weights package sits below the extractor
#: registry (which imports it), so it keeps its own two-entry table rather than reading
#: ``fidkit.registry.RUNTIME_MODULES``; the names agree with it.
FRAMEWORKS: Mapping[str, str] = MappingProxyType({"torch": "torch", "tf": "tensorflow"})


@dataclass(frozen=True)
class WeightsFile:
    """A published weights file: where it comes from, how to check it and how to convert it.

    ``sha256`` is the full digest where a source publishes one; ``sha256_prefix`` the torch hub prefix in
    the file name (checked only when no full digest is known); ``converter`` is ``"module:function"``
    (path -> canonical arrays) and ``runtime`` the fidkit runtime whose framework it imports.
    """

    name: str
    url: str | None
    sha256: str | None
    sha256_prefix: str | None
    format: str
    converter: str | None
    runtime: str | None
    bundled: bool = False
    note: str = ""
    #: Digest of the canonical content once converted, where known: lets an already converted ``.npz``
    #: passed explicitly count as official, and checks the converter on the real file.
    canonical_digest: str | None = None
    #: Published size in bytes, checked before the digest: a truncated or different file fails at once with
    #: a clear message, and a file with no published digest (TensorFlow's ``.tgz``) is still checked.
    size: int | None = None
    #: Other tools' download folders where the file may already lie, as (label, folder; ``~`` expanded),
    #: searched after fidkit's cache: openai/CLIP and open_clip keep OpenAI's archives in ``~/.cache/clip``.
    also_in: tuple[tuple[str, str], ...] = ()


def _entry(name: str, url: str | None, fmt: str, *, sha256: str | None = None,
           sha256_prefix: str | None = None, size: int | None = None, bundled: bool = False,
           note: str = "", also_in: tuple[tuple[str, str], ...] = ()) -> WeightsFile:
    converter, runtime = FORMATS[fmt]
    return WeightsFile(name, url, sha256, sha256_prefix, fmt, converter, runtime, bundled, note, size=size,
                       also_in=also_in)


_DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2"
#: SHA-256 of the DINOv2 torch hub checkpoints, pinned with their official URLs as the download check of
#: finegrain-ai/refiners scripts/conversion/convert_dinov2.py (its "facebook/github_dinov2" mirror of these
#: files); each value is also pinned against dl.fbaipublicfiles.com by three or more unrelated public
#: projects (found by full-text code search; sizes beside them where they give one). Meta publishes none.
_DINOV2_SHA256 = {
    "vits14": "b938bf1bc15cd2ec0feacfe3a1bb553fe8ea9ca46a7e1d8d00217f29aef60cd9",
    "vits14_reg4": "f433177089a681826f849f194ece3bb48f4d63fb38d32fc837e3dc7a4e5641fb",
    "vitb14": "0b8b82f85de91b424aded121c7e1dcc2b7bc6d0adeea651bf73a13307fad8c73",
    "vitb14_reg4": "73182a088cf94833c94b1666d1c99e02fe87e2007bff57b564fb6206e25dba71",
    "vitl14": "d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428",
    "vitl14_reg4": "36e4deffbaef061a2576705b0c36f93621e2ae20bf6274694821b0b492551b51",
    "vitg14": "baf8467e50af277596bbbafa06887c177ee899ab46033649c383577d7e9309d3",
    "vitg14_reg4": "746ecb8c6301c645c5c855be91687d274587d6e48fdaec4a729753160b34a283",
}
#: Sizes that two or more of those projects record (the others are left unchecked: the digest decides).
_DINOV2_SIZE = {"vits14": 88_283_115, "vitb14_reg4": 346_393_545, "vitl14": 1_217_586_395,
                "vitl14_reg4": 1_217_607_321, "vitg14": 4_546_108_579}


def _dinov2_entry(model: str) -> WeightsFile:
    arch, _, reg = model.partition("_")
    name = f"dinov2_{model}_pretrain.pth"
    size_note = (f"size {_DINOV2_SIZE[model]:,} bytes as two or more of those projects record it"
                 if model in _DINOV2_SIZE else "no size with two sources, so none is checked")
    return _entry(name, f"{_DINOV2_URL}/dinov2_{arch}/{name}", "torch-state-dict",
                  sha256=_DINOV2_SHA256[model], size=_DINOV2_SIZE.get(model),
                  note=f"facebookresearch/dinov2 torch hub backbone dinov2_{arch}{'_reg' if reg else ''} "
                       f"(dinov2/hub/backbones.py: _DINOV2_BASE_URL/<model>/<model>_pretrain.pth; timm's "
                       f"pretrained_cfg url is the same). SHA-256 pinned by finegrain-ai/refiners "
                       f"scripts/conversion/convert_dinov2.py and by three or more other projects; "
                       f"{size_note}")


#: The DINOv2 hub checkpoints, by file name (part of `WEIGHTS_FILES`; their digests' sources are rows of
#: tests/weights_keys/README.md, checked by test_registered_digests_match_the_readme).
DINOV2_WEIGHTS_FILES: Mapping[str, WeightsFile] = MappingProxyType(
    {e.name: e for e in (_dinov2_entry(m) for m in _DINOV2_SHA256)})

_CLIP_URL = "https://openaipublic.azureedge.net/clip/models"
#: openai/CLIP's and open_clip's download folder (``clip.clip._download``'s default root).
_CLIP_CACHE = (("clip cache", "~/.cache/clip"),)


def _openai_clip_entry(name: str, model: str, sha256: str, size: int) -> WeightsFile:
    return _entry(name, f"{_CLIP_URL}/{sha256}/{name}", "torchscript", sha256=sha256, size=size,
                  also_in=_CLIP_CACHE,
                  note=f"OpenAI's CLIP archive {model!r} (openai/CLIP clip/clip.py _MODELS; the same URL in "
                       f"open_clip's pretrained table and scenic's CHECKPOINTS_TORCH, which CMMD loads): a "
                       f"TorchScript module of the whole CLIP model, weights mostly float16. SHA-256 published "
                       f"by OpenAI as the URL's second-to-last path segment, which clip.py's _download checks "
                       f"(expected_sha256 = url.split('/')[-2]); size {size:,} bytes as several unrelated "
                       f"projects record it")


#: OpenAI's CLIP archives, by file name (part of `WEIGHTS_FILES`; sources in tests/weights_keys/README.md).
#: Hugging Face's openai/clip-vit-large-patch14-336 safetensors is not registered: its Git LFS pointer holds
#: its SHA-256 and size, but no public copy of either was found, and fidkit registers no download it cannot
#: check. Passed with --weights it converts (format "safetensors") and runs as unofficial weights, with a
#: warning naming its SHA-256 and canonical digest.
CLIP_WEIGHTS_FILES: Mapping[str, WeightsFile] = MappingProxyType({e.name: e for e in (
    _openai_clip_entry("ViT-B-32.pt", "ViT-B/32",
                       "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", 353_976_522),
    _openai_clip_entry("ViT-L-14-336px.pt", "ViT-L/14@336px",
                       "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", 934_088_680),
)})

#: The registered weights files, by file name. No upstream project publishes a digest of its Inception file
#: beside the download; the full SHA-256s and sizes below are the values that other public projects pin or
#: record for these exact URLs. Every digest was found in more than one independent place and agrees with
#: the torch hub prefix in the file name (``load_state_dict_from_url`` does not check that prefix by default,
#: so nothing upstream does). ``note`` says where each value comes from and when a size has one source only;
#: tests/weights_keys/README.md lists the sources. The ``.tgz`` has a published size but no published digest.
WEIGHTS_FILES: Mapping[str, WeightsFile] = MappingProxyType({f.name: f for f in (
    _entry("pt_inception-2015-12-05-6726825d.pth",
           "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
           "pt_inception-2015-12-05-6726825d.pth",
           "torch-state-dict", sha256_prefix="6726825d",
           sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", size=95_628_359,
           note="pytorch-fid FID_WEIGHTS_URL (src/pytorch_fid/inception.py). SHA-256 pinned as the download "
                "check in snap-research/discoscene models/inception_model.py (genforce code) and recorded, "
                "with the size, by several unrelated projects; SHA-1 bd836944fd6db519dfd8d924aa457f5b3c8357ff "
                "in mlcommons/training stable_diffusion/scripts/checkpoints/download_inception.sh"),
    _entry("weights-inception-2015-12-05-6726825d.pth",
           "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
           "weights-inception-2015-12-05-6726825d.pth",
           "torch-state-dict", sha256_prefix="6726825d",
           sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", size=95_628_359,
           note="torch-fidelity URL_INCEPTION_V3 (torch_fidelity/feature_extractor_inceptionv3.py). The same "
                "bytes as pytorch-fid's file: projects that pin torch-fidelity's v0.2.0 asset record the same "
                "SHA-256 (no repository of torch-fidelity's own publishes it)"),
    _entry("inception-2015-12-05.pt",
           "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
           "inception-2015-12-05.pt",
           "torchscript",
           sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
           note="NVIDIA's TorchScript (stylegan2-ada-pytorch metrics, clean-fid downloads_helper.py). SHA-256 "
                "pinned as the download check in crowsonkb/k-diffusion k_diffusion/evaluation.py and recorded "
                "by several other projects. Its exact size (95,607,719 bytes) has one source only, so it is "
                "not checked: a wrong size would refuse the real file, and the digest decides anyway"),
    _entry("vgg16.pt",
           "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
           "torchscript",
           sha256="b437eb095feaeb0b83eb3fa11200ebca4548ee39a07fb944a417ddc516cc07c3",
           note="NVIDIA's TorchScript VGG16 of StyleGAN's precision/recall and perceptual path length "
                "(stylegan2-ada-pytorch metrics/precision_recall.py; stylegan3 fetches the same network as "
                "metrics/vgg16.pkl from NGC). SHA-256 pinned as the download check in snap-research/discoscene "
                "models/perceptual_model.py (genforce code) and in one unrelated project's run script; NVIDIA "
                "publishes none. No size with two sources"),
    _entry("vgg16-397923af.pth",
           "https://download.pytorch.org/models/vgg16-397923af.pth",
           "torch-state-dict", sha256_prefix="397923af",
           sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", size=553_433_881,
           note="torchvision VGG16_Weights.IMAGENET1K_V1 (torchvision/models/vgg.py), which torch-fidelity's "
                "'vgg16' feature extractor loads (torch_fidelity/utils_torchvision.py). SHA-256 pinned as the "
                "download check in snap-research/discoscene models/perceptual_model.py (genforce code) and by "
                "several unrelated projects; size recorded with it by two or more of them"),
    _entry("inception-2015-12-05.tgz",
           "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz",
           "tf-graphdef-tgz", size=88_931_400,
           note="TensorFlow's classify_image_graph_def.pb archive (bioinf-jku/TTUR fid.py). No digest is "
                "published; the size is the server's Content-Length, quoted in "
                "https://github.com/BartyzalRadek/Multi-label-Inception-net/issues/13, and what "
                "TensorFlow's classify_image.py prints after downloading it"),
    _entry("inception_v3_google-0cc3c7bd.pth",
           "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
           "torch-state-dict", sha256_prefix="0cc3c7bd",
           sha256="0cc3c7bd75056d25e46cba549dc184522069b81e9787eff6df84f397bd52a5ef", size=108_949_747,
           note="torchvision Inception_V3_Weights.IMAGENET1K_V1 (torchvision/models/inception.py; its meta "
                "_file_size 103.903 MiB agrees with the size). SHA-256 recorded by several unrelated projects; "
                "size also the Content-Length shown in pytorch-ignite/pytorch-ignite.ai "
                "src/blog/2021-08-11-GAN-evaluation-using-FID-and-IS.md"),
    *DINOV2_WEIGHTS_FILES.values(),
    *CLIP_WEIGHTS_FILES.values(),
    _entry("fidkit-mnist-v1.npz", None, "canonical-npz", bundled=True,
           note="shipped in fidkit/data; its SHA-256 is read from the fidkit-mnist-v1.json sidecar that "
                "scripts/train_mnist.py writes beside it"),
)})


def _tf2015_scopes() -> dict[str, str]:
    conv = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
    block_a = {"conv": "branch1x1", "tower/conv": "branch5x5_1", "tower/conv_1": "branch5x5_2",
               "tower_1/conv": "branch3x3dbl_1", "tower_1/conv_1": "branch3x3dbl_2",
               "tower_1/conv_2": "branch3x3dbl_3", "tower_2/conv": "branch_pool"}
    block_b = {"conv": "branch3x3", "tower/conv": "branch3x3dbl_1", "tower/conv_1": "branch3x3dbl_2",
               "tower/conv_2": "branch3x3dbl_3"}
    block_c = {"conv": "branch1x1", "tower/conv": "branch7x7_1", "tower/conv_1": "branch7x7_2",
               "tower/conv_2": "branch7x7_3", **{f"tower_1/{c}": f"branch7x7dbl_{i + 1}" for i, c in
                                                 enumerate(("conv", "conv_1", "conv_2", "conv_3", "conv_4"))},
               "tower_2/conv": "branch_pool"}
    block_d = {"tower/conv": "branch3x3_1", "tower/conv_1": "branch3x3_2",
               **{f"tower_1/{c}": f"branch7x7x3_{i + 1}" for i, c in
                  enumerate(("conv", "conv_1", "conv_2", "conv_3"))}}
    block_e = {"conv": "branch1x1", "tower/conv": "branch3x3_1", "tower/mixed/conv": "branch3x3_2a",
               "tower/mixed/conv_1": "branch3x3_2b", "tower_1/conv": "branch3x3dbl_1",
               "tower_1/conv_1": "branch3x3dbl_2", "tower_1/mixed/conv": "branch3x3dbl_3a",
               "tower_1/mixed/conv_1": "branch3x3dbl_3b", "tower_2/conv": "branch_pool"}
    blocks = [("mixed", "Mixed_5b", block_a), ("mixed_1", "Mixed_5c", block_a), ("mixed_2", "Mixed_5d", block_a),
              ("mixed_3", "Mixed_6a", block_b), ("mixed_4", "Mixed_6b", block_c),
              ("mixed_5", "Mixed_6c", block_c), ("mixed_6", "Mixed_6d", block_c),
              ("mixed_7", "Mixed_6e", block_c), ("mixed_8", "Mixed_7a", block_d),
              ("mixed_9", "Mixed_7b", block_e), ("mixed_10", "Mixed_7c", block_e)]
    out = dict(conv)
    for tf_block, pt_block, table in blocks:
        out.update({f"{tf_block}/{k}": f"{pt_block}.{v}" for k, v in table.items()})
    return out


#: The 2015 TensorFlow graph's conv scopes (``<scope>/conv2d_params``, ``<scope>/batchnorm/beta`` ...) and
#: the canonical (pytorch-fid) conv-block name each maps to, e.g. ``mixed_9/tower/mixed/conv`` ->
#: ``Mixed_7b.branch3x3_2a``. The pairs are those of torch-fidelity's and pytorch-fid's TF converters;
#: the classifier is ``softmax/weights`` (in, out) and ``softmax/biases`` -> ``fc.weight`` / ``fc.bias``.
TF2015_SCOPES: Mapping[str, str] = MappingProxyType(_tf2015_scopes())


def runtime_installed(runtime: str) -> bool:
    """Returns whether the framework of converter runtime ``runtime`` (a key of `FRAMEWORKS`) can be imported,
    without importing it."""
    return importlib.util.find_spec(FRAMEWORKS[runtime]) is not None


def _bundled_dir() -> Path:
    """Returns the folder of the weights files shipped inside the package (``fidkit/data``)."""
    return Path(__file__).resolve().parent.parent / "data"


def _read_json(path: Path) -> dict:
    """Returns the JSON object in ``path``, or ``{}`` when it is missing, unreadable or not an object."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Returns the hex SHA-256 of a file's bytes.

    Raises `WeightsError` naming the file when it cannot be read (missing, a folder, no permission).
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot be read ({exc.strerror or exc}); expected a readable weights "
                           f"file") from None
    return h.hexdigest()


def _full_pin(entry: WeightsFile) -> str | None:
    """Returns the full SHA-256 of ``entry``: registered, or for a bundled file its sidecar's ``sha256``."""
    if entry.sha256 or not entry.bundled:
        return entry.sha256
    sha = _read_json(_bundled_dir() / f"{Path(entry.name).stem}.json").get("sha256")
    return sha if isinstance(sha, str) and len(sha) == 64 else None


def _matches_pin(entry: WeightsFile, sha: str) -> bool | None:
    """Returns True/False when ``entry`` is pinned and ``sha`` does/doesn't match; None when unpinned."""
    full = _full_pin(entry)
    if full:
        return sha == full
    if entry.sha256_prefix:
        return sha.startswith(entry.sha256_prefix)
    return None


def _expected(entry: WeightsFile) -> str:
    """Returns the digest ``entry`` is checked against, for messages: the full SHA-256 or the hub prefix."""
    return _full_pin(entry) or f"{entry.sha256_prefix}… (torch hub prefix)"


def _size_mismatch(entry: WeightsFile | None, path: Path) -> str | None:
    """Returns why ``path`` is not ``entry``'s published size, or None when it is or none is published."""
    if entry is None or entry.size is None:
        return None
    have = path.stat().st_size
    if have == entry.size:
        return None
    how = "truncated" if have < entry.size else "longer than published"
    return f"is {have} bytes, expected {entry.size} for {entry.name} ({how}: a broken download or another file)"
