"""``lab`` imports without Textual, Mininet or Scapy, and never imports topologies/tui/exercises."""

from __future__ import annotations

import subprocess
import sys

BLOCK = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'textual', 'mininet', 'scapy', 'tui', 'exercises', 'topologies'}:
            raise ImportError(f'blocked: {name}')
sys.meta_path.insert(0, Blocker())
import pkgutil, importlib, lab
for mod in pkgutil.walk_packages(lab.__path__, 'lab.'):
    importlib.import_module(mod.name)
print('ok')
"""


def test_lab_imports_without_optional_packages() -> None:
    proc = subprocess.run([sys.executable, "-c", BLOCK], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
