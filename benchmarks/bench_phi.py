"""φ speed against a naive hook loop, and flat memory when streaming a large dataset to disk.

1. φ of 1,024 random 32×32 images × 8 noise draws (σ = 0.1) with the width/4 UNet, two ways on the same draws:
   `sparsediff.phi.phi` (images × draws in one batch, early stop after `mid`) and a naive baseline
   (one full forward pass per noise draw with a plain forward hook on `mid`, no early stop), both with
   256 rows per forward pass, timed alternately; prints the speed ratio and the max abs difference.
2. `extract_phi` over a lazy dataset of 10,000 and 50,000 random images (built per item, the dataset
   holds nothing), each in a fresh subprocess; prints the peak RSS growth during extraction and the RSS
   after 10k vs 50k images of the 50k run. (σ = 0.1, 1 draw: this part measures memory, not speed.)
Usage: python benchmarks/bench_phi.py [--quick] [--threads 1]
"""
import argparse, json, os, subprocess, sys, tempfile, time
import torch
from sparsediff.phi import phi, draw_noise, extract_phi
from sparsediff.unet import UNet, UNetConfig, load_pretrained, list_pretrained

def get_model():
    "The shipped width/4 model if there is one, else a random-init width/4 UNet."
    if 'default' in list_pretrained():
        m = load_pretrained()
        if tuple(m.cfg.widths) == UNetConfig.scaled(4).widths: return m.eval(), 'pretrained default (width/4)'
    torch.manual_seed(0)
    return UNet(UNetConfig.scaled(4)).eval(), 'random init width/4'

def naive_phi(model, x, sigma, n_noise, generator, batch_size):
    "One full forward per noise draw, a plain hook on `mid`, no batching over draws, no early stop."
    feats = {}
    h = model.mid.register_forward_hook(lambda mod, inp, out: feats.__setitem__('mid', out))
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size]
                z = draw_noise(xb, n_noise, generator)  # same draws, same order as phi
                acc = 0
                for j in range(n_noise):
                    model(xb + sigma * z[:, j])
                    acc = acc + feats['mid'].mean((2, 3))
                out.append(acc / n_noise)
    finally: h.remove()
    return torch.cat(out)

class RandomImages(torch.utils.data.Dataset):
    "N random 32×32 RGB images made on demand from their index; holds no data."
    def __init__(self, n): self.n, self.name = n, f'random-{n}'
    def __len__(self): return self.n
    def __getitem__(self, i): return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)), i % 10

def rss_mb(field='VmRSS'):
    "Resident memory (or its peak, VmHWM) of this process in MB, from /proc."
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'): return int(line.split()[1]) / 1024

def stream(n, threads):
    "Child process: extract φ for n lazy images, report memory (MB) as JSON."
    torch.set_num_threads(threads)
    model, _ = get_model()
    with tempfile.TemporaryDirectory() as d:  # warm the allocator so the baseline is steady
        extract_phi(model, RandomImages(600), d, sigmas=(0.1,), n_noise=1, progress=False)
    trace = []
    with tempfile.TemporaryDirectory() as d:
        base = rss_mb()
        open('/proc/self/clear_refs', 'w').write('5')  # reset the peak (VmHWM) to the current RSS (Linux)
        t = time.perf_counter()
        st = extract_phi(model, RandomImages(n), d, sigmas=(0.1,), n_noise=1, chunk=512, batch_size=256, progress=False,
                         callback=lambda done, total: trace.append((min(n, done * 512), rss_mb())))
        secs, peak = time.perf_counter() - t, rss_mb('VmHWM')
        assert st.complete and len(st) == n
        cut = max(512, n // 5)
        print(json.dumps(dict(n=n, secs=secs, base=base, peak=peak, cut=cut,
                              rss_first=max(r for k, r in trace if k <= cut), rss_rest=max(r for k, r in trace if k > cut),
                              files_mb=sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)) / 2**20)))

def speed(n_img, n_noise, threads, repeats):
    "Part 1: phi vs the naive loop on the same draws."
    torch.set_num_threads(threads)
    model, what = get_model()
    x = torch.rand(n_img, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    phi(model, x[:32], 0.1, n_noise=n_noise); naive_phi(model, x[:32], 0.1, n_noise, None, 256)  # warm-up
    t_new, t_old = [], []
    for _ in range(repeats):
        t = time.perf_counter(); f_old = naive_phi(model, x, 0.1, n_noise, torch.Generator().manual_seed(1), 256); t_old.append(time.perf_counter() - t)
        t = time.perf_counter(); f_new = phi(model, x, 0.1, n_noise=n_noise, generator=torch.Generator().manual_seed(1), batch_size=256); t_new.append(time.perf_counter() - t)
    rows = n_img * n_noise
    print(f'model: {what}; {n_img} images × {n_noise} draws = {rows} rows, {threads} thread(s), best of {repeats}')
    print(f'naive (full forward per draw, hook):  {min(t_old):7.2f} s  ({rows / min(t_old):6.0f} rows/s)')
    print(f'phi (batched draws, early stop):      {min(t_new):7.2f} s  ({rows / min(t_new):6.0f} rows/s)')
    print(f'speed ratio naive/phi: {min(t_old) / min(t_new):.2f}x   max |Δφ|: {(f_new - f_old).abs().max().item():.2e}')

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--stream', type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.stream: return stream(a.stream, a.threads)
    speed(128 if a.quick else 1024, 8, a.threads, 1 if a.quick else 2)
    sizes = (2_000, 6_000) if a.quick else (10_000, 50_000)
    res = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, '--stream', str(n), '--threads', str(a.threads)], stdout=subprocess.PIPE, text=True, check=True)
        res.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in res:
        print(f"extract_phi N={r['n']:>6}: {r['secs']:6.1f} s ({r['n'] / r['secs']:5.0f} img/s), RSS before {r['base']:6.1f} MB, "
              f"peak RSS {r['peak']:6.1f} MB (growth {r['peak'] - r['base']:5.1f} MB), files on disk {r['files_mb']:5.1f} MB")
    small, big = res
    print(f"memory flat in N: peak RSS {small['peak']:.1f} MB at N={small['n']} vs {big['peak']:.1f} MB at N={big['n']} "
          f"(ratio {big['peak'] / small['peak']:.3f}); within the N={big['n']} run, max RSS over the first {big['cut']} images "
          f"{big['rss_first']:.1f} MB vs over the rest {big['rss_rest']:.1f} MB")

if __name__ == '__main__': main()
