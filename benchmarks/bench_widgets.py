"""σ-slider redraw latency of the σ explorer on the CPU with the shipped model, against the 150 ms budget per move.

A move is `explorer.sigma.value = s`, exactly what a slider event runs in the kernel: one batched forward pass of
`n_noise` noisy copies through the whole UNet with every block reduced to its spatial mean, PR per block, and the
`FigureWidget` update (two 32×32 images, 128 φ bars, 7 PR bars, titles) serialized for the browser.
Measured side by side in one run:
1. new σ values, walking the slider one step (0.01) at a time as a drag does, over several images;
2. the same values again (moving back: served from the cache);
3. the two parts of a new move separately: `sigma_view` (the model) and the figure update.
Prints median and p95 in ms and their ratio to the 150 ms target (below 1 is within budget).
Usage: python benchmarks/bench_widgets.py [--quick] [--threads 1] [--n-noise 8]
"""
import argparse, time
import numpy as np
import torch
from sparsediff.data import load_mnist
from sparsediff.unet import load_pretrained
from sparsediff.widgets import SigmaExplorer, sigma_view, fixed_noise

TARGET_MS = 150.0

def stats(ms) -> str:
    "Median and p95 of a list of milliseconds, with their ratio to the target."
    med, p95 = np.median(ms), np.percentile(ms, 95)
    return f'median {med:7.1f} ms  p95 {p95:7.1f} ms  ratio to {TARGET_MS:.0f} ms: {med / TARGET_MS:.2f} (median) {p95 / TARGET_MS:.2f} (p95)  n={len(ms)}'

def timed(fn) -> float:
    t0 = time.perf_counter(); fn(); return (time.perf_counter() - t0) * 1000

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='a smoke run: few moves')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (1 by default: a shared machine)')
    ap.add_argument('--n-noise', type=int, default=8, help='noise draws per view (the explorer default is 8)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_pretrained(device='cpu')
    data = load_mnist('test').subset(range(0, 1000, 10))
    images = [0, 17, 42] if not args.quick else [0]
    steps = np.round(np.arange(0.01, 1.0001, 0.01), 2) if not args.quick else np.round(np.arange(0.21, 0.31, 0.01), 2)
    ex = SigmaExplorer(model, data, sigma=0.2, n_noise=args.n_noise, device='cpu')
    for s in (0.5, 0.6, 0.2): ex.sigma.value = float(s)           # warm-up (allocator, first figure messages)
    ex.cache.clear()

    new, back, compute, redraw = [], [], [], []
    for i in images:
        ex.image.value = i
        for s in steps: new.append(timed(lambda: setattr(ex.sigma, 'value', float(s))))
        for s in steps[::-1]: back.append(timed(lambda: setattr(ex.sigma, 'value', float(s))))
        x = data.images[i]; z = fixed_noise(x, args.n_noise, 0, i)
        for s in steps[::max(1, len(steps) // 10)]:
            compute.append(timed(lambda: sigma_view(model, x, z, float(s))))
            ex.cache.pop((i, round(float(s), 6)), None)
            total = timed(lambda: setattr(ex.sigma, 'value', float(s)))
            redraw.append(max(total - compute[-1], 0.0))
            ex.sigma.value = float(steps[0])

    n_params = sum(p.numel() for p in model.parameters())
    print(f'σ explorer redraw latency: shipped model ({n_params / 1e6:.2f}M parameters, widths {model.cfg.widths}), CPU, '
          f'{torch.get_num_threads()} thread(s), n_noise={args.n_noise}, 32×32 images')
    print(f'  new σ (drag step by step)  {stats(new)}')
    print(f'  moving back (cached)       {stats(back)}')
    print(f'    of a new σ: model pass   {stats(compute)}')
    print(f'    of a new σ: figure update (total − model)  median {np.median(redraw):.1f} ms')
    print(f'  cached / new (median): {np.median(back) / np.median(new):.3f}')
    ok = np.percentile(new, 95) <= TARGET_MS
    print(f'  {"within" if ok else "OVER"} the {TARGET_MS:.0f} ms budget at p95')

if __name__ == '__main__':
    main()
