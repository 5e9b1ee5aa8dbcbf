"""Every hot path on whatever device this machine has (CUDA when present, else the CPU), ratios measured in one run.

1. φ: `phi` (images × draws batched, early stop after `mid`) against a naive hook loop (one full forward per draw, no early
   stop) on the same draws, the FLOP limit of early stopping (full-forward FLOPs / encoder+middle FLOPs), and the fraction of
   a dense matmul's FLOP/s that `phi` reaches counting only encoder+middle FLOPs (CPU: fp32 2048² `torch.mm`; CUDA: bf16
   8192² `torch.mm`). On CUDA also φ under bf16 autocast vs fp32 (relative error). `--compile` adds `phi(compile=True)`.
2. `extract_phi` images/s (no workers, then 2 DataLoader workers).
3. Training images/s and fraction of peak: CUDA, the GPU's dense bf16 datasheet rate; CPU, the best measured 3×3-conv rate.
4. Reconstruction latency: 1 target × 4 samples with the default sampler preset; σ-explorer model pass (8 draws).
Usage: python benchmarks/bench_gpu.py [--quick] [--threads 1] [--compile] [--device auto] [--full]
"""
import argparse, json, tempfile, time
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from sparsediff.core import as_device
from sparsediff.unet import UNet, UNetConfig, load_pretrained
from sparsediff.phi import phi, draw_noise, extract_phi, default_rows
from sparsediff.train import TrainConfig, train_step, _autocast, image_flops, peak_flops, conv_peak
from sparsediff.sampler import reconstruct
from sparsediff.widgets import sigma_view, fixed_noise

FIGURES = {}   # every figure printed, by name: written with --json (tools/gpu_check.sh collects them)

def fig(name, value):
    "Record figure `name` and return it."
    FIGURES[name] = float(value); return value

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()

def best(fn, dev, repeats=3):
    "Best wall time of `repeats` calls, in seconds."
    ts = []
    for _ in range(repeats):
        sync(dev); t = time.perf_counter(); fn(); sync(dev); ts.append(time.perf_counter() - t)
    return min(ts)

def mm_rate(dev, n, dtype, reps=5):
    "Dense matmul FLOP/s."
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    a @ b
    return 2 * n**3 * reps / best(lambda: [a @ b for _ in range(reps)], dev)

def flops(fn):
    with FlopCounterMode(display=False) as fc, torch.no_grad(): fn()
    return fc.get_total_flops()

def naive_phi(model, x, sigma, n_noise, generator, batch_size):
    "One full forward per noise draw, a plain hook on `mid`, no early stop (the baseline of bench_phi.py)."
    feats, out = {}, []
    h = model.mid.register_forward_hook(lambda mod, inp, o: feats.__setitem__('mid', o))
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size]; z = draw_noise(xb, n_noise, generator); acc = 0
                for j in range(n_noise): model(xb + sigma * z[:, j]); acc = acc + feats['mid'].float().mean((2, 3))
                out.append(acc / n_noise)
    finally: h.remove()
    return torch.cat(out)

def part_phi(name, model, dev, n_img, n_noise, a):
    print(f'\n== φ, {name}: {n_img} images × {n_noise} draws at 32×32 ==')
    x = torch.rand(n_img, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(dev)
    f_enc = flops(lambda: model.encode(x[:2])) / 2; f_full = flops(lambda: model(x[:2])) / 2
    rows, gen = n_img * n_noise, lambda: torch.Generator(device=dev).manual_seed(1)
    bs = default_rows(dev)
    phi(model, x[:64], 0.1, n_noise, amp='off'); naive_phi(model, x[:8], 0.1, n_noise, gen(), bs // n_noise)   # warm-up
    mm = lambda: mm_rate(dev, 2048, torch.float32) if dev.type == 'cpu' else mm_rate(dev, 8192, torch.bfloat16)
    t_naive, t_phi, peak = [], [], []
    for _ in range(a.repeats):   # interleaved, best of each: a shared machine's load hits all three alike
        t_naive.append(best(lambda: naive_phi(model, x, 0.1, n_noise, gen(), bs // n_noise), dev, 1))
        t_phi.append(best(lambda: phi(model, x, 0.1, n_noise, generator=gen(), amp='off'), dev, 1)); peak.append(mm())
    t_naive, t_phi, peak = min(t_naive), min(t_phi), max(peak)
    key = 'phi_full' if name.startswith('full') else 'phi_shipped'
    fig(f'{key}_naive_rows_per_s', rows / t_naive); fig(f'{key}_rows_per_s', rows / t_phi); fig(f'{key}_speedup_vs_naive', t_naive / t_phi)
    fig(f'{key}_frac_of_mm', rows * f_enc / t_phi / peak)
    ref = phi(model, x, 0.1, n_noise, generator=gen(), amp='off')
    print(f'naive hook loop (full forward per draw): {rows / t_naive:10.0f} rows/s')
    print(f'phi, fp32, {bs} rows per pass:          {rows / t_phi:10.0f} rows/s   speed-up {t_naive / t_phi:.2f}x '
          f'(FLOP limit of early stopping {f_full / f_enc:.2f}x)')
    what = 'fp32 2048² mm' if dev.type == 'cpu' else 'bf16 8192² mm'
    print(f'phi encoder+middle FLOP/s {rows * f_enc / t_phi / 1e9:8.1f} G vs {what} {peak / 1e9:8.1f} G: ratio {rows * f_enc / t_phi / peak:.2f}')
    if dev.type == 'cuda':
        t_bf = best(lambda: phi(model, x, 0.1, n_noise, generator=gen(), amp='bf16'), dev, a.repeats)
        fb = phi(model, x, 0.1, n_noise, generator=gen(), amp='bf16')
        rel = ((fb - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-12))
        fig(f'{key}_bf16_rows_per_s', rows / t_bf); fig(f'{key}_bf16_speedup_vs_naive', t_naive / t_bf); fig(f'{key}_bf16_max_rel_err', rel.max())
        print(f'phi, bf16 autocast:                     {rows / t_bf:10.0f} rows/s   speed-up {t_naive / t_bf:.2f}x; '
              f'ratio to {what} {rows * f_enc / t_bf / peak:.2f}; relative error vs fp32: median {rel.median():.2e}, max {rel.max():.2e}')
    if a.compile:
        t0 = time.perf_counter(); phi(model, x[:bs // n_noise], 0.1, n_noise, compile=True); sync(dev); tc = time.perf_counter() - t0
        t_c = best(lambda: phi(model, x, 0.1, n_noise, generator=gen(), compile=True), dev, a.repeats)
        fc = phi(model, x, 0.1, n_noise, generator=gen(), compile=True)
        print(f'phi, compile=True (compiled in {tc:.0f} s): {rows / t_c:10.0f} rows/s   speed-up {t_naive / t_c:.2f}x; ratio to {what} '
              f'{rows * f_enc / t_c / peak:.2f}; max |Δφ| vs eager fp32 {(fc - ref).abs().max():.1e}')

def part_extract(model, dev, n):
    print(f'\n== extract_phi: {n} images, 1 σ, 8 draws ==')
    data = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for workers in (0, 2):
        with tempfile.TemporaryDirectory() as d:
            sync(dev); t = time.perf_counter()
            extract_phi(model, data, d, sigmas=(0.1,), n_noise=8, chunk=512, progress=False, workers=workers); sync(dev)
            print(f'workers={workers}: {fig(f"extract_workers{workers}_img_per_s", n / (time.perf_counter() - t)):8.0f} images/s')

def part_train(name, cfg_model, dev, batch, steps, accumulate=1):
    model = UNet(cfg_model).to(dev).to(memory_format=torch.channels_last); model.check_inputs = False
    cfg = TrainConfig(warmup_steps=1, batch_size=batch, accumulate=accumulate)
    ac, scaler = _autocast(dev, cfg.amp); opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.rand(batch, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    y = (x + 0.1 * torch.randn_like(x)).contiguous(memory_format=torch.channels_last)
    for s in range(2): train_step(model, opt, x, cfg, s, None, ac, scaler, y=y)
    dt = best(lambda: [train_step(model, opt, x, cfg, s, None, ac, scaler, y=y) for s in range(steps)], dev, 2) / steps
    fl, peak = image_flops(model), peak_flops(dev, cfg.amp)
    what = 'dense bf16 datasheet peak' if dev.type == 'cuda' else 'best measured 3×3-conv rate'
    key = 'train_full' if name.startswith('full') else 'train_shipped'
    fig(f'{key}_img_per_s', batch / dt); fig(f'{key}_frac_peak', batch / dt * fl / peak)
    print(f'train {name}, batch {batch} (accumulate {accumulate}), amp {cfg.amp}: {batch / dt:8.0f} images/s, '
          f'{batch / dt * fl / 1e9:8.1f} GFLOP/s = {batch / dt * fl / peak:.3f} of the {what} ({peak / 1e9:.0f} GFLOP/s)')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--compile', action='store_true', help='also time phi(compile=True) (minutes to compile on a CPU)')
    ap.add_argument('--full', action='store_true', help='also the full-width (13M) model for φ and training')
    ap.add_argument('--device', default='auto'); ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--parts', default='phi,extract,train,latency', help='comma-separated subset of phi, extract, train, latency')
    ap.add_argument('--json', default=None, help='also write every figure, with the device, to this JSON file')
    a = ap.parse_args()
    try: run(a)
    finally:
        if a.json:
            dev = as_device(a.device)
            meta = dict(device=torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU', torch=torch.__version__, args=vars(a))
            with open(a.json, 'w') as f: json.dump(dict(meta, figures=FIGURES), f, indent=1)

def run(a):
    "Every part asked for, printing each figure as it comes."
    parts = set(a.parts.split(','))
    torch.set_num_threads(a.threads); dev = as_device(a.device)
    print(f'device: {torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"} ({dev}), torch {torch.__version__}, '
          f'{torch.get_num_threads()} CPU thread(s)')
    shipped = load_pretrained(device=dev)
    gpu = dev.type == 'cuda'
    n_img = (8192 if gpu else 128) if a.quick else (32768 if gpu else 512)
    if 'phi' in parts: part_phi('shipped model (width/4)', shipped, dev, n_img, 8, a)
    if 'phi' in parts and (a.full or gpu):
        torch.manual_seed(0); part_phi('full width (random init)', UNet(UNetConfig()).to(dev).eval(), dev, n_img // (1 if gpu else 4), 8, a)
    if 'extract' in parts: part_extract(shipped, dev, (16384 if gpu else 512) if a.quick else (65536 if gpu else 2048))
    if 'train' in parts: print('\n== training =='); part_train('width/4', UNetConfig.scaled(4), dev, 1024 if gpu else 32, 5 if a.quick else 10)
    if 'train' in parts and (a.full or gpu): part_train('full width', UNetConfig(), dev, 1024 if gpu else 8, 3 if a.quick else 10, accumulate=1)
    if 'train' in parts and not gpu: print(f'(CPU ceilings: best 3×3 conv {conv_peak(dev) / 1e9:.1f} GFLOP/s, fp32 2048² mm {mm_rate(dev, 2048, torch.float32) / 1e9:.1f} GFLOP/s)')
    if 'latency' not in parts: return
    print('\n== latency ==')
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    reconstruct(shipped, x, n_samples=4, seed=0, progress=False)    # warm-up
    t = best(lambda: reconstruct(shipped, x, n_samples=4, seed=0, progress=False), dev, 1 if a.quick else 3)
    print(f'reconstruction, 1 target × 4 samples, default preset: {fig("reconstruct_1x4_s", t):.3f} s')
    xi = x[0].to(dev); z = fixed_noise(xi, 8, 0, 0); ms = []
    for s in np.linspace(0.05, 0.95, 10 if a.quick else 30):
        sync(dev); t0 = time.perf_counter(); sigma_view(shipped, xi, z, float(s)); sync(dev); ms.append((time.perf_counter() - t0) * 1e3)
    print(f'σ explorer model pass (8 draws, all blocks): median {fig("sigma_view_ms", np.median(ms)):.1f} ms (target ≤ 15 ms for a whole redraw)')

if __name__ == '__main__': main()
