"""Adapters (issue 23): φ's early stop on a diffusers UNet, and the adapter's overhead on our blind UNet. Ratios are measured side by side in one run.

(a) φ (σ = 0.1) on a random-weight UNet2DModel with google/ddpm-cifar10-32's published config (35.7M parameters) and its DDPMScheduler,
    two ways on the same noisy batch: `sparsediff.phi.phi` through `as_denoiser` (capture `mid`, stop after `mid_block`: the up blocks
    never run) and a naive loop (the full forward pass with a plain forward hook on `mid_block`). Prints the measured speed-up, the
    FLOP limit of stopping after `mid_block` (FlopCounterMode: full forward / forward up to mid) and their ratio (target ≥ 0.9).
(b) Our blind UNet (`load_pretrained('default')`) through `as_denoiser` + `denoise` vs the native call `model(y)`: overhead (target ≤ 5 %).
Both alternate the two ways and keep the median of `--repeats` timings (6× as many for (b)). Usage: python benchmarks/bench_adapters.py [--batch 8] [--repeats 5] [--threads 1]
"""
import argparse, statistics, time
import torch

CIFAR10_DDPM = dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(128, 256, 256, 256),
                    down_block_types=('DownBlock2D', 'AttnDownBlock2D', 'DownBlock2D', 'DownBlock2D'),
                    up_block_types=('UpBlock2D', 'UpBlock2D', 'AttnUpBlock2D', 'UpBlock2D'))   # google/ddpm-cifar10-32's unet/config.json

def alternate(fns: dict, repeats: int) -> dict:
    "Median seconds of each function, timed alternately after one warm-up call each."
    for f in fns.values(): f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}

def flops(fn) -> int:
    "FLOPs of one call of `fn`, counted by torch's FlopCounterMode."
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc, torch.no_grad(): fn()
    return fc.get_total_flops()

def bench_early_stop(batch: int, repeats: int) -> dict:
    "φ with early stop vs the full forward pass with a hook, on the ddpm-cifar10-32 architecture."
    import diffusers
    from sparsediff.adapters import as_denoiser
    from sparsediff.hooks import run_with_cache
    from sparsediff.phi import phi
    torch.manual_seed(0)
    net = diffusers.UNet2DModel(**CIFAR10_DDPM).eval(); D = as_denoiser(net, diffusers.DDPMScheduler())
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sigma = 0.1; t = int(D.timestep(sigma)[0]); a = D.alphas_cumprod[t].float()
    seed = lambda: torch.Generator().manual_seed(1)
    y = x + sigma * torch.randn(x.shape, generator=seed())              # phi's one draw with the same generator
    feats = {}
    def naive():
        h = net.mid_block.register_forward_hook(lambda m, i, o: feats.__setitem__('mid', o.mean((2, 3))))
        try:
            with torch.no_grad(): D(y, sigma)                              # the whole network, up blocks included
        finally: h.remove()
        return feats['mid']
    early = lambda: phi(D, x, sigma, n_noise=1, generator=seed(), batch_size=batch)
    def by_hand():
        "The ideal early stop, written out: conv_in, the down blocks and mid_block called directly, no hooks."
        with torch.no_grad():
            emb = net.time_embedding(net.time_proj(torch.full((batch,), t)).to(y.dtype)); h = net.conv_in(a.sqrt() * (2 * y - 1))
            for b in net.down_blocks: h, _ = b(h, emb)
            return net.mid_block(h, emb).mean((2, 3))
    diff = float(max((naive() - early()).abs().max(), (by_hand() - early()).abs().max()))
    secs = alternate({'naive full forward': naive, 'phi early stop': early, 'stop by hand (ideal)': by_hand}, repeats)
    full = flops(lambda: net(a.sqrt() * (2 * y - 1), t))
    to_mid = flops(lambda: run_with_cache(D, y, 'mid', stop=True, forward_kwargs={'sigma': sigma}))
    speedup, limit = secs['naive full forward'] / secs['phi early stop'], full / to_mid
    return dict(params=sum(p.numel() for p in net.parameters()), secs=secs, speedup=speedup, ideal=secs['naive full forward'] / secs['stop by hand (ideal)'], flops_full=full, flops_to_mid=to_mid,
                limit=limit, fraction=speedup / limit, max_abs_diff=diff)

def bench_overhead(batch: int, repeats: int) -> dict:
    "Our blind UNet through as_denoiser/denoise vs its native call."
    from sparsediff.adapters import as_denoiser, denoise
    from sparsediff.unet import load_pretrained
    net = load_pretrained('default').eval(); D = as_denoiser(net)
    y = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = torch.equal(denoise(D, y, 0.1), net(y))
        secs = alternate({'native model(y)': lambda: net(y), 'denoise(as_denoiser(model), y, σ)': lambda: denoise(D, y, 0.1)}, repeats)
    return dict(secs=secs, same=same, overhead=secs['denoise(as_denoiser(model), y, σ)'] / secs['native model(y)'] - 1)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=8); p.add_argument('--repeats', type=int, default=5); p.add_argument('--threads', type=int, default=1)
    a = p.parse_args(); torch.set_num_threads(a.threads)
    print(f'torch {torch.__version__}, {a.threads} thread(s), batch {a.batch}, median of {a.repeats}')
    e = bench_early_stop(a.batch, a.repeats)
    print(f"(a) ddpm-cifar10-32 architecture ({e['params'] / 1e6:.1f}M parameters, random weights), φ at σ = 0.1:")
    for k, v in e['secs'].items(): print(f'    {k:28s} {v * 1e3:8.1f} ms')
    print(f"    FLOPs: full forward {e['flops_full'] / 1e9:.2f} G, up to mid_block {e['flops_to_mid'] / 1e9:.2f} G -> limit {e['limit']:.2f}x")
    print(f"    measured speed-up {e['speedup']:.2f}x = {e['fraction']:.2f} of the FLOP limit (target >= 0.9); max |Δφ| = {e['max_abs_diff']:.2e}")
    print(f"    the by-hand stop reaches {e['ideal']:.2f}x = {e['ideal'] / e['limit']:.2f} of the FLOP limit (the gap between the two lines is what hooks and φ's bookkeeping cost)")
    o = bench_overhead(a.batch, 6 * a.repeats)                      # cheap: more repeats against the machine's noise
    print('(b) our blind UNet (default), x̂ of a batch:')
    for k, v in o['secs'].items(): print(f'    {k:36s} {v * 1e3:8.1f} ms')
    print(f"    adapter overhead {100 * o['overhead']:+.1f} % (target <= 5 %); identical output: {o['same']}")
