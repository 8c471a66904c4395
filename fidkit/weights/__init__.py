"""The weights manager: finds, downloads, verifies and converts network weights to fidkit's canonical form.

A canonical weights file is an ``.npz`` of named float32 arrays (``f"{node}.{param}"``, PyTorch layouts),
with no framework in it. Its digest is the SHA-256 of its *content* (sorted names, dtypes, shapes and
bytes), not of the zip, so the same network converted from pytorch-fid's ``.pth`` and from TensorFlow's
``.tgz`` has one digest when the conversion is exact.

Lookup order for a registered file name: an explicit path (``weights=`` / ``--weights``), the folders in
``$FIDKIT_WEIGHTS_DIR`` (``os.pathsep``-separated), files bundled in the package, fidkit's cache
(``$FIDKIT_HOME/weights``, default the platform user cache dir), the torch hub checkpoint folder
(``$TORCH_HOME/hub/checkpoints``, where pytorch-fid and torch-fidelity users already have the file), then a
download into fidkit's cache (skipped when ``$FIDKIT_OFFLINE`` is set; a broken transfer is resumed with an
HTTP Range request). Among an extractor's files, those whose converter can run in this install are tried
first. Converted files are cached under ``$FIDKIT_HOME/weights/canonical/<source sha256>.npz``. A damaged
file (empty, truncated, not a zip or tar archive) is reported as a `WeightsError` naming it, on every route.

Modules, each below the next: ``formats`` (file formats, and what is wrong with a file), ``files`` (the
published files, their pins and sizes), ``cache`` (where files are looked for, downloads, locks),
``canonical`` (the canonical ``.npz``, its digest, conversion), ``resolve`` (an extractor's weights) and
``cli`` (``fidkit weights``). None imports the extractor registry, the pipeline or the CLI; a converter is
imported by name, with its framework, only when a file is converted.
"""

from __future__ import annotations

from .cache import (
    cache_dir,
    canonical_dir,
    download,
    fidkit_home,
    find_local,
    search_dirs,
    torch_hub_checkpoints,
)
from .canonical import canonical_digest, convert, load_canonical, save_canonical, to_canonical
from .cli import add_cli
from .files import TF2015_SCOPES, WEIGHTS_FILES, WeightsFile, sha256_file
from .formats import FORMATS, damage, detect_format
from .resolve import CanonicalWeights, locate, resolve_weights

__all__ = [
    "FORMATS",
    "TF2015_SCOPES",
    "WEIGHTS_FILES",
    "CanonicalWeights",
    "WeightsFile",
    "add_cli",
    "cache_dir",
    "canonical_dir",
    "canonical_digest",
    "convert",
    "damage",
    "detect_format",
    "download",
    "fidkit_home",
    "find_local",
    "load_canonical",
    "locate",
    "resolve_weights",
    "save_canonical",
    "search_dirs",
    "sha256_file",
    "to_canonical",
    "torch_hub_checkpoints",
]
