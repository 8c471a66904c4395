"""The core never imports a framework: importing fidkit and using the core works with them blocked."""

from __future__ import annotations

import json
import subprocess
import sys

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('torch', 'tensorflow', 'jax', 'jaxlib', 'keras'):
            raise ImportError('blocked framework import: ' + name)
sys.meta_path.insert(0, Block())
"""


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_fidkit_imports_no_framework() -> None:
    res = _run("""
import json, pkgutil, importlib, fidkit
core = [m.name for m in pkgutil.walk_packages(fidkit.__path__, 'fidkit.') if '.backends.' not in m.name + '.'
        or m.name.startswith('fidkit.backends.numpy')]
for name in core:
    importlib.import_module(name)
print(json.dumps({'modules': core, 'extractors': fidkit.available_extractors(),
                  'loaded': sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'jax'))}))
""")
    assert res["loaded"] == []
    assert "mnist" in res["extractors"]
    assert "fidkit.registry" in res["modules"]
