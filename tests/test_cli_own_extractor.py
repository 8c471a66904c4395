"""docs/mnist.md's "Your own model as an extractor", run exactly as documented with a tiny torch model:
``my_fid.py`` in the current folder, ``--extractor my_fid:build`` and ``--extractor path/to/my_fid.py:build``,
options passed to ``build`` or refused in one line, and a wrong attribute named by its file."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime
from PIL import Image

pytestmark = [pytest.mark.torch, pytest.mark.slow]

DOC = Path(__file__).resolve().parents[1] / "docs" / "mnist.md"
FIDKIT = Path(sys.executable).with_name("fidkit")

#: "your module": the one thing the documented my_fid.py leaves to the reader
MY_CLASSIFIER = '''
class MyClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, stride=2)
        self.embedding = torch.nn.Linear(4 * 13 * 13, 8)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x):
        return self.head(torch.relu(self.embedding(torch.relu(self.conv(x)).flatten(1))))
'''


def documented() -> tuple[str, str]:
    """Returns docs/mnist.md's my_fid.py block and its `fidkit score` command line."""
    text = DOC.read_text()
    section = text[text.index("## Your own model as an extractor"):]
    code = re.search(r"```python\n(# my_fid\.py\n.*?)```", section, re.S).group(1)
    command = re.search(r"```bash\n(fidkit score [^\n#]*?)\s*#", section).group(1)
    return code, command


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FIDKIT_OFFLINE": "1"}
    return subprocess.run([str(FIDKIT), *argv], cwd=cwd, capture_output=True, text=True, env=env, timeout=600,
                          check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder as the docs assume: my_fid.py (the documented code), my-classifier.pt, real/ and fake/."""
    require_runtime("torch")
    import torch

    code, _ = documented()
    namespace: dict = {"torch": torch}
    exec(MY_CLASSIFIER, namespace)  # noqa: S102  (the test's own source)
    torch.manual_seed(0)
    torch.save(namespace["MyClassifier"]().state_dict(), tmp_path / "my-classifier.pt")
    digest = hashlib.sha256((tmp_path / "my-classifier.pt").read_bytes()).hexdigest()
    assert "<sha256sum of my-classifier.pt>" in code
    head, _, body = code.partition("from fidkit.adapters import from_torch\n")
    source = head + "from fidkit.adapters import from_torch\n" + MY_CLASSIFIER + body
    (tmp_path / "my_fid.py").write_text(source.replace("<sha256sum of my-classifier.pt>", digest))
    rng = np.random.default_rng(0)
    for side, top in (("real", 256), ("fake", 160)):
        (tmp_path / side).mkdir()
        for i in range(20):
            Image.fromarray(rng.integers(0, top, (28, 28), dtype=np.uint8)).save(tmp_path / side / f"{i:02d}.png")
    return tmp_path


def test_documented_forms_work_as_documented(project: Path) -> None:
    _, command = documented()
    argv = shlex.split(command)[1:] + ["--no-progress"]
    assert argv[:4] == ["score", "real/", "fake/", "--extractor"] and argv[4] == "my_fid:build"
    r = run(argv, project)  # my_fid.py in the current folder, importable as with python -m
    assert r.returncode == 0, r.stderr
    assert "fidkit: extractor my-classifier-v3 on torch (cpu), resize policy mnist" in r.stderr
    for label in ("FID", "KID", "IS", "precision", "recall", "density", "coverage", "95% CI"):
        assert label in r.stdout
    assert "Traceback" not in r.stderr

    # the path form, from another folder's file; --device reaches build(device=...), --resize replaces
    # the built extractor's policy
    (project / "path" / "to").mkdir(parents=True)
    (project / "my_fid.py").rename(project / "path" / "to" / "my_fid.py")
    r = run(["fid", "real/", "fake/", "--extractor", "path/to/my_fid.py:build", "--device", "cpu",
             "--resize", "clean", "--json", "--no-progress"], project)
    assert r.returncode == 0, r.stderr
    assert '"resize_policy": "clean"' in r.stdout and '"extractor": "my-classifier-v3"' in r.stdout


def test_options_build_cannot_take_and_wrong_names_are_one_line_errors(project: Path) -> None:
    runs = [["fid", "real/", "fake/", "--extractor", "my_fid:build", "--weights", "other.pt"],
            ["fid", "real/", "fake/", "--extractor", "my_fid:biuld"],
            ["fid", "real/", "fake/", "--extractor", "my_fid.py:biuld"]]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda argv: run(argv, project), runs))
    for r, needles in zip(results, [("--weights other.pt", "'weights'"), ("'my_fid'", "'biuld'", "build"),
                                    ("my_fid.py", "'biuld'", "build")], strict=True):
        assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr, r.stderr
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("fidkit: "), r.stderr
        for needle in needles:
            assert needle in lines[0], lines[0]
