"""What every training process needs, imported once by the trainer's fork server.

Training processes are forked from a small server process (``multiprocessing``'s
``forkserver``) that the trainer starts at its first training. The server imports this
module once; every training process after it starts with torch, LightGBM and the training
code already loaded instead of importing them again (about 3.5 CPU-seconds and as many
seconds of wall time per attempt on a 2-core machine). The server is single-threaded and
never trains, so forking it is as safe as spawning: no lock is held, CUDA is never touched.

``OMP_WAIT_POLICY`` is read once, when torch loads OpenMP, so it is set before the import:
idle OpenMP threads must sleep, not spin, on shared cores. Thread counts are per process:
each training process calls ``torch.set_num_threads`` with its job's value.
"""

from __future__ import annotations

import os

os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import torch  # noqa: E402,F401

from ctrops_common.events import TrainingConfig  # noqa: E402,F401
from ctrops_common.ml import save_model  # noqa: E402,F401

from . import challenger, data, promotion, summary, training  # noqa: E402,F401
