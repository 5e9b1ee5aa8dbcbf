"""Analyses over φ stores larger than memory (issue 24), on synthetic 512-d φ, each measurement in a fresh process.
1. `sparsediff report --store STORE` on real φ stores of 100k, 300k and 1M rows — written by `extract_phi` from a toy network whose
   'mid' block is a 1×1 convolution to 512 channels and a ReLU, on 2×2 images of 10 classes — and its peak RSS at each size.
   Target: peak RSS flat (largest / smallest within 1.20) while the data grow 10×.
2. KMeans with k = 10,000 on 1M × 512 rows read from a memory-mapped array in blocks (`scale.streaming_kmeans`). Target: < 30 min.
Usage: python benchmarks/bench_store_scale.py [--sizes 100000,300000,1000000] [--k 10000] [--skip-kmeans] [--folder /big/disk]
       python benchmarks/bench_store_scale.py --sizes 2000,8000 --k 50        (a check that it runs, seconds)"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

CHANNELS, CLASSES = 512, 10

def toy_images(n: int, seed: int = 0):
    "An `.images`/`.labels` set of n 1×2×2 images in [0, 1]: 10 class means plus noise, so φ has class structure to find."
    import torch
    from types import SimpleNamespace
    g = torch.Generator().manual_seed(seed)
    means, y = torch.rand(CLASSES, 1, 2, 2, generator=g), torch.randint(CLASSES, (n,), generator=g)
    x = (means[y] + 0.15 * torch.randn(n, 1, 2, 2, generator=g)).clamp(0, 1)            # (n, 1, 2, 2)
    return SimpleNamespace(images=x, labels=y.numpy(), classes=[str(c) for c in range(CLASSES)], name=f'toy-{n}')

def toy_network(seed: int = 0):
    "A network whose block 'mid' maps a 1-channel image to 512 rectified channels."
    import torch
    from torch import nn
    torch.manual_seed(seed)
    class Toy(nn.Module):
        def __init__(self): super().__init__(); self.mid = nn.Sequential(nn.Conv2d(1, CHANNELS, 1), nn.ReLU())
        def forward(self, x): return self.mid(x)
    return Toy().eval()

def write_store(folder: Path, n: int) -> Path:
    "A complete φ store of n rows × 512 channels at one σ, written by `extract_phi` (never all of φ in memory)."
    from sparsediff.phi import extract_phi
    extract_phi(toy_network(), toy_images(n), folder, sigmas=(0.1,), n_noise=1, chunk=65536, progress=False)
    return folder

def peak_rss_mb(cmd: list) -> tuple:
    "(peak RSS in MB, wall seconds) of a command run in a fresh wrapper process, so only this command counts."
    probe = ('import resource, subprocess, sys, time; t = time.perf_counter(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); '
             'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.perf_counter() - t)')
    r = subprocess.run([sys.executable, '-c', probe, *cmd], capture_output=True, text=True)
    if r.returncode: raise SystemExit(f'{" ".join(cmd[:5])} … failed:\n{r.stderr[-3000:]}')
    mb, s = map(float, r.stdout.split()); return mb, s

def kmeans_child(n: int, k: int, block: int):
    "In a fresh process: KMeans k on an (n, 512) memory-mapped array of rectified Gaussian rows; print seconds and peak RSS as JSON."
    from sparsediff.scale import streaming_kmeans, has_faiss
    with tempfile.TemporaryDirectory(dir=os.environ.get('BENCH_FOLDER')) as d:
        a = np.lib.format.open_memmap(Path(d)/'phi.npy', mode='w+', dtype=np.float32, shape=(n, CHANNELS)); rng = np.random.default_rng(0)
        for i0 in range(0, n, block): a[i0:i0 + block] = np.maximum(rng.standard_normal((min(block, n - i0), CHANNELS), dtype=np.float32), 0)
        a.flush(); del a
        a = np.load(Path(d)/'phi.npy', mmap_mode='r')
        t = time.perf_counter(); lab, cent = streaming_kmeans(a, k, block=block); s = time.perf_counter() - t
        print(json.dumps(dict(n=n, k=k, seconds=s, clusters_used=int(len(np.unique(lab))), backend='faiss' if has_faiss() else 'scikit-learn MiniBatchKMeans',
                              peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', default='100000,300000,1000000'); ap.add_argument('--k', type=int, default=10_000)
    ap.add_argument('--block', type=int, default=65536); ap.add_argument('--folder', default=None, help='where the temporary stores go')
    ap.add_argument('--skip-kmeans', action='store_true'); ap.add_argument('--kmeans-child', type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.kmeans_child: return kmeans_child(a.kmeans_child, a.k, a.block)
    sizes, peaks = [int(s) for s in a.sizes.split(',')], []
    print(f'{os.cpu_count()} CPU cores; torch threads default', flush=True)
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=a.folder) as d:
            t = time.perf_counter(); st = write_store(Path(d)/'store', n); made = time.perf_counter() - t
            mb, s = peak_rss_mb([sys.executable, '-m', 'sparsediff.cli', 'report', '--store', str(st), '--out', str(Path(d)/'report'), '--quiet'])
            peaks.append(mb)
            print(f'N {n:>9,} × {CHANNELS}: store ({n * CHANNELS * 4 / 1e6:,.0f} MB of φ) written in {made:.0f} s; '
                  f'report --store {s:.0f} s, peak RSS {mb:.0f} MB', flush=True)
    print(f'report --store peak RSS, largest / smallest N: {max(peaks) / min(peaks):.2f} (target ≤ 1.20) while the data grow '
          f'{max(sizes) / min(sizes):.0f}×', flush=True)
    if a.skip_kmeans: return
    r = subprocess.run([sys.executable, __file__, '--kmeans-child', str(max(sizes)), '--k', str(a.k), '--block', str(a.block)],
                       capture_output=True, text=True, env={**os.environ, **({'BENCH_FOLDER': a.folder} if a.folder else {})})
    if r.returncode: raise SystemExit(f'KMeans failed:\n{r.stderr[-3000:]}')
    km = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"KMeans k = {km['k']:,} on {km['n']:,} × {CHANNELS} ({km['backend']}): {km['seconds'] / 60:.1f} min (target < 30), "
          f"{km['clusters_used']:,} clusters used, peak RSS {km['peak_rss_mb']:.0f} MB")

if __name__ == '__main__': main()
