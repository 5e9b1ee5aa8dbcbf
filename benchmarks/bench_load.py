"""Time to load the shipped model (after `import torch`), against the 1-second target, in one run.

Usage: python benchmarks/bench_load.py
"""
import time, statistics
import torch  # imported first: the target is for loading the model, not for starting PyTorch

def main(repeats: int = 5):
    t = time.perf_counter(); from sparsediff.unet import load_pretrained; t_import = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); m = load_pretrained(); times.append(time.perf_counter() - t)
    with torch.no_grad(): m(torch.rand(1, 3, 32, 32))
    print(f'import sparsediff.unet: {t_import*1e3:.0f} ms; load_pretrained(): first {times[0]*1e3:.0f} ms, '
          f'median {statistics.median(times)*1e3:.0f} ms; ratio to the 1 s target {max(times):.3f}')

if __name__ == '__main__': main()
