"""The shared model (ctrops_common.ml.TabularSeqModel) on CUDA vs CPU: training-step throughput.

Optional device check of the model class alone (bench/trainer_device.py checks the trainer). Synthetic
tensors shaped like the 60k file after the 128-token window: 112 tabular features,
batches of 4096, right-padded sequences with the output gathered at each row's last step.
Usage: PYTHONPATH=libs/common/src python3 bench/model_cuda.py
"""

from __future__ import annotations

import time

import torch

from ctrops_common.ml import TabularSeqModel


def steps_per_s(device: str, batch: int = 4096, length: int = 128, features: int = 112, steps: int = 20) -> float:
    torch.manual_seed(0)
    model = TabularSeqModel(features, 64, [256, 128], 0.2).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, features, device=device)
    seq = torch.rand(batch, length, device=device)
    lengths = torch.randint(1, length + 1, (batch,), device=device)
    y = (torch.rand(batch, device=device) < 0.3).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for i in range(steps + 3):
        if i == 3:  # warm-up done (cuDNN plans, allocator)
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x, seq, lengths), y)
        loss.backward()
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    cpu = steps_per_s("cpu", steps=5)
    print(f"cpu : {cpu:,.0f} training samples/s (batch 4096, window 128)")
    if torch.cuda.is_available():
        gpu = steps_per_s("cuda")
        print(f"cuda ({torch.cuda.get_device_name(0)}): {gpu:,.0f} training samples/s, {gpu / cpu:.1f}x the CPU")
    else:
        print("cuda: not available")


if __name__ == "__main__":
    main()
