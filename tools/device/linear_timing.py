"""cuBLAS's bf16 linear (torch.nn.functional.linear) time and bandwidth for the
Llama-3.2-1B projections at 1 and 64 rows, on the first CUDA device: the
reference for udaci's decode-step kernels (tools/device/gpu_check.sh,
UDACI_GPU_CHECK_PROFILE=1)."""
import torch
import torch.nn.functional as F

SHAPES = [(2048, 2048), (512, 2048), (8192, 2048), (2048, 8192), (128256, 2048)]
for out_f, in_f in SHAPES:
    w = torch.randn(out_f, in_f, device="cuda", dtype=torch.bfloat16)
    for m in (1, 64):
        x = torch.randn(m, in_f, device="cuda", dtype=torch.bfloat16)
        for _ in range(10):
            F.linear(x, w)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(200):
            F.linear(x, w)
        end.record()
        torch.cuda.synchronize()
        us = start.elapsed_time(end) / 200 * 1000
        print(f"linear bf16 m={m} [{out_f}x{in_f}]: {us:.1f} us, {w.numel() * 2 / us / 1e3:.0f} GB/s")
