"""Training throughput as a fraction of this machine's best 3×3-convolution FLOP/s, measured in one run.

Counts the FLOPs of one training step (forward + backward) of the shipped architecture with
torch's FlopCounterMode, times training steps, then times 3×3 convolutions of UNet-sized shapes on the
same threads (`sparsediff.train.conv_peak`: the best rate is the practical ceiling; a 1024² matmul is not,
convolutions beat it on this CPU) and prints achieved FLOP/s, the best convolution FLOP/s and their ratio,
with the 1024² matmul rate alongside for reference.
Usage: python benchmarks/bench_train_flops.py [--threads N] [--batch 32] [--width-div 4] [--quick]
"""
import argparse, time
import torch, torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from sparsediff.unet import UNet, UNetConfig
from sparsediff.train import TrainConfig, train_step, _autocast, conv_peak

def matmul_flops(n=1024, reps=20):
    "Measured dense fp32 matmul FLOP/s."
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3): a @ b
    t = time.perf_counter()
    for _ in range(reps): a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)

def step_flops(model, x):
    "FLOPs of one forward + backward pass on batch x."
    with FlopCounterMode(display=False) as fc:
        F.mse_loss(model(x), x).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, default=torch.get_num_threads()); ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--width-div', type=int, default=4); ap.add_argument('--quick', action='store_true')
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    model = UNet(UNetConfig.scaled(a.width_div)).to(memory_format=torch.channels_last); model.check_inputs = False
    x = torch.rand(a.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    flops = step_flops(model, x)
    opt = torch.optim.Adam(model.parameters(), 1e-3); cfg = TrainConfig(warmup_steps=1); ac, _ = _autocast(torch.device('cpu'), 'off')
    g = torch.Generator().manual_seed(0); n = 5 if a.quick else 30
    for s in range(3): train_step(model, opt, x, cfg, s, g, ac)
    t = time.perf_counter()
    for s in range(n): train_step(model, opt, x, cfg, s, g, ac)
    dt = (time.perf_counter() - t) / n
    peak, mm = conv_peak(torch.device('cpu')), matmul_flops(reps=5 if a.quick else 20)
    print(f'threads {a.threads}, batch {a.batch}, width/{a.width_div}: {flops/1e9:.2f} GFLOP per step, {dt*1e3:.1f} ms per step, {a.batch/dt:.0f} img/s')
    print(f'achieved {flops/dt/1e9:.1f} GFLOP/s; best 3×3 conv {peak/1e9:.1f} GFLOP/s; ratio {flops/dt/peak:.3f} '
          f'(1024² matmul {mm/1e9:.1f} GFLOP/s, ratio {flops/dt/mm:.3f})')

if __name__ == '__main__': main()
