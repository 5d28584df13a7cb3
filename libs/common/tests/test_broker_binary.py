"""The broker binary on a fresh machine: several processes resolving it at once all get one they can run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RESOLVE_AND_RUN = """
import subprocess, sys
from ctrops_common.broker import broker_binary
for _ in range(3):  # resolve again while the others are still copying, as a later broker start would
    path = broker_binary()
    subprocess.run([path, "--version"], check=True, capture_output=True)
print(path)
"""


def test_processes_resolving_the_binary_at_once_on_a_fresh_home_can_all_run_it(tmp_path: Path) -> None:
    # A new home: ~/.calfkit/bin does not exist yet, as on a fresh machine or CI clone.
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("CALF_TANSU_BIN", None)
    processes = [subprocess.Popen([sys.executable, "-c", RESOLVE_AND_RUN], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    assert [rc for rc, _, _ in results] == [0] * 6, [err[-600:] for _, _, err in results]
    paths = {out.strip() for _, out, _ in results}
    assert len(paths) == 1
    (path,) = paths
    assert Path(path).parent == tmp_path / ".calfkit" / "bin" and os.access(path, os.X_OK)
    assert not [p.name for p in Path(path).parent.iterdir() if p.name.endswith(".tmp")]
