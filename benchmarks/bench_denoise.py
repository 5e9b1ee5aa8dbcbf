"""Denoising quality of the shipped model vs scikit-image's classical denoisers on held-out images.

Prints PSNR (dB) per σ for the noisy input, the model, TV (Chambolle), NL-means and wavelet shrinkage
(when PyWavelets is installed), each classical method with its parameter tuned per σ on a separate
validation set (oracle σ given), and the margin model − best classical method, all in one run.
Usage: python benchmarks/bench_denoise.py [--quick] [--model NAME|PATH]
"""
import argparse, time
import numpy as np, torch
from skimage.restoration import denoise_tv_chambolle, denoise_nl_means
from sparsediff.unet import load_pretrained
from sparsediff.data import load_crops, load_mnist
from sparsediff.train import add_noise
from sparsediff.core import psnr

SIGMAS = (0.05, 0.1, 0.2, 0.4)

def held_out(n_photos, n_digits, seed):
    "Held-out crops of the pictures' right 30% plus MNIST test digits, (N, 3, 32, 32)."
    return torch.cat([load_crops(split='test', n=n_photos, seed=seed).images, load_mnist('test').images[seed % 7::7][:n_digits]])

def classical(name, y, sigma, param):
    "Denoise one (H, W, C) image with a scikit-image method."
    if name == 'tv': return denoise_tv_chambolle(y, weight=param * sigma, channel_axis=-1)
    if name == 'nl_means': return denoise_nl_means(y, h=param * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=-1)
    if name == 'wavelet':
        from skimage.restoration import denoise_wavelet
        return denoise_wavelet(y, sigma=param * sigma, channel_axis=-1, rescale_sigma=True)
    raise ValueError(name)

def run_classical(name, x, sigma, param, seed=0):
    "Mean PSNR of a classical method over a batch."
    y = add_noise(x, sigma, generator=torch.Generator().manual_seed(seed))
    out = np.stack([classical(name, yi.permute(1, 2, 0).numpy().astype(np.float64), sigma, param) for yi in y])
    return psnr(torch.from_numpy(out).permute(0, 3, 1, 2).float().clamp(0, 1), x).mean().item()

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true'); ap.add_argument('--model', default='default')
    a = ap.parse_args()
    torch.set_num_threads(1)
    n = (40, 10) if a.quick else (300, 100)
    test, val = held_out(*n, seed=0), held_out(n[0] // 4, n[1] // 4, seed=1)
    model = load_pretrained(a.model)
    methods = {'tv': (0.3, 0.5, 0.8, 1.2), 'nl_means': (0.6, 0.8, 1.0, 1.2)}
    try:
        import pywt  # noqa
        methods['wavelet'] = (0.7, 1.0, 1.3)
    except ImportError: print('PyWavelets not installed: wavelet baseline skipped (pip install PyWavelets)')
    rows = []
    for s in SIGMAS:
        g = torch.Generator().manual_seed(0)
        y = add_noise(test, s, generator=g)
        with torch.no_grad(): m = psnr(model(y).clamp(0, 1), test).mean().item()
        row = {'sigma': s, 'noisy': psnr(y, test).mean().item(), 'model': m}
        for name, grid in methods.items():
            best = max(grid, key=lambda p: run_classical(name, val, s, p, seed=1))   # tuned on validation images
            row[name] = run_classical(name, test, s, best, seed=0); row[name + '_param'] = best
        row['margin_vs_best_classical_dB'] = m - max(row[k] for k in methods)
        rows.append(row); print({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    import pandas as pd
    df = pd.DataFrame(rows)
    print(f'\nheld-out images: {len(test)} ({n[0]} photo/texture crops + {n[1]} MNIST digits), 32x32 RGB')
    print(df[['sigma', 'noisy', 'model', *methods, 'margin_vs_best_classical_dB']].round(2).to_string(index=False))
    print('model beats every classical method at every σ:', bool((df.margin_vs_best_classical_dB > 0).all()))

if __name__ == '__main__': main()
