"""σ-slider redraw latency of the σ explorer on the CPU with the shipped model, against the 15 ms target per move.

A move is `explorer.sigma.value = s`, exactly what a slider event runs in the kernel: a batched forward pass of `n_noise`
noisy copies (encoder and middle block for every draw, the decoder for the draw shown), PR per block, two PNGs, and the
`FigureWidget` update (two 32×32 images, 128 φ bars, 7 PR bars, titles) serialized for the browser.
Measured side by side in one run, walking the slider one step (0.01) at a time as a drag does, over several images:
1. a new σ with nothing computed ahead (`prefetch=0`): the whole cost of one redraw;
2. a drag at a hand's pace (one slider event every `--gap` ms, 40 ms = 25 events/s) with the explorer's default
   `prefetch=2`: the views next to σ are computed in a background thread between events;
3. the same values again (moving back: served from the cache);
4. the parts: `sigma_view` decoding only the draw shown vs decoding all draws (the earlier path), and the figure update.
Prints medians and p95 in ms and their ratio to the 15 ms target (below 1 meets it).
Usage: python benchmarks/bench_widgets.py [--quick] [--threads 1] [--n-noise 8] [--gap 40]
"""
import argparse, time
import numpy as np
import torch
from sparsediff.data import load_mnist
from sparsediff.unet import load_pretrained
from sparsediff.widgets import SigmaExplorer, sigma_view, fixed_noise

TARGET_MS = 15.0

def stats(ms) -> str:
    "Median and p95 of a list of milliseconds, with their ratio to the target."
    med, p95 = np.median(ms), np.percentile(ms, 95)
    return f'median {med:6.1f} ms  p95 {p95:6.1f} ms  ratio to {TARGET_MS:.0f} ms: {med / TARGET_MS:5.2f} (median) {p95 / TARGET_MS:5.2f} (p95)  n={len(ms)}'

def timed(fn) -> float:
    t0 = time.perf_counter(); fn(); return (time.perf_counter() - t0) * 1000

def drag(ex, images, steps, gap_ms=0.0) -> list:
    "Latency of each move of a drag over `steps` on each image, one move every `gap_ms` (0: back to back)."
    out = []
    for i in images:
        ex.image.value = i
        for s in steps:
            t0 = time.perf_counter()
            ex.sigma.value = float(s)
            out.append((time.perf_counter() - t0) * 1000)
            rest = gap_ms / 1000 - (time.perf_counter() - t0)
            if rest > 0: time.sleep(rest)
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='a smoke run: few moves')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads per thread of work (1 by default: a shared machine)')
    ap.add_argument('--n-noise', type=int, default=8, help='noise draws per view (the explorer default is 8)')
    ap.add_argument('--gap', type=float, default=40.0, help='ms between slider events in the hand-paced drag')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_pretrained(device='cpu')
    data = load_mnist('test').subset(range(0, 1000, 10))
    images = [0, 17, 42] if not args.quick else [0]
    steps = np.round(np.arange(0.01, 1.0001, 0.01), 2) if not args.quick else np.round(np.arange(0.21, 0.31, 0.01), 2)
    cold = SigmaExplorer(model, data, sigma=0.2, n_noise=args.n_noise, device='cpu', prefetch=0)
    ahead = SigmaExplorer(model, data, sigma=0.2, n_noise=args.n_noise, device='cpu')
    for ex in (cold, ahead):
        for s in (0.5, 0.6, 0.2): ex.sigma.value = float(s)      # warm-up (allocator, first figure messages)
        ex.wait_prefetch()
        ex.cache.clear()

    new = drag(cold, images, steps)
    back = drag(cold, images, steps[::-1])
    paced = drag(ahead, images, steps, args.gap)
    first, full, redraw = [], [], []
    for i in images:
        x = data.images[i]; z = fixed_noise(x, args.n_noise, 0, i)
        for s in steps[::max(1, len(steps) // 10)]:
            first.append(timed(lambda: sigma_view(model, x, z, float(s))))
            full.append(timed(lambda: sigma_view(model, x, z, float(s), decode_all=True)))
            cold.view(i, float(s)); cold.image.value = i
            cold.sigma.value = float(steps[0]) if float(s) != float(steps[0]) else float(steps[1])
            redraw.append(timed(lambda: setattr(cold.sigma, 'value', float(s))))   # served from the cache: the figure update alone

    n_params = sum(p.numel() for p in model.parameters())
    print(f'σ explorer redraw latency: shipped model ({n_params / 1e6:.2f}M parameters, widths {model.cfg.widths}), CPU, '
          f'{torch.get_num_threads()} thread(s) per thread of work, n_noise={args.n_noise}, 32×32 images, target {TARGET_MS:.0f} ms')
    print(f'  1. new σ, nothing ahead (prefetch=0)        {stats(new)}')
    print(f'  2. drag, one event per {args.gap:.0f} ms, prefetch=2  {stats(paced)}')
    print(f'  3. moving back (cached)                      {stats(back)}')
    print(f'  4. model pass, decoder on the draw shown     {stats(first)}')
    print(f'     model pass, decoder on all {args.n_noise} draws       {stats(full)}   ({np.median(full) / np.median(first):.2f}× the first)')
    print(f'     figure update (a cached view)            {stats(redraw)}')
    for name, ms in (('a new σ', new), ('a hand-paced drag', paced)):
        print(f'  {name}: {"meets" if np.median(ms) <= TARGET_MS else "misses"} the {TARGET_MS:.0f} ms median target')

if __name__ == '__main__':
    main()
