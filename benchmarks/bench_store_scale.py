"""Peak memory of analyses over φ stores larger than memory: reading every row, streaming KMeans and kNN over a memory-mapped
(N, 512) float32 array of synthetic φ (rectified Gaussian, like a sparse middle block), each size in a fresh process.
Target (issue 24): peak RSS flat (within 20 %) from 100k to 1M rows; KMeans k = 10,000 on 1M × 512 rows in under 30 minutes.
Usage: python benchmarks/bench_store_scale.py [--sizes 100000,300000,1000000] [--dim 512] [--k 10000] [--folder /big/disk]
       python benchmarks/bench_store_scale.py --sizes 2000,8000 --dim 64 --k 10     (a check that it runs, seconds)"""
import argparse, json, resource, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

def write_phi(file: Path, n: int, dim: int, block: int = 65536, seed: int = 0):
    "A (n, dim) float32 .npy of rectified Gaussian rows, written block by block (never all in memory)."
    a = np.lib.format.open_memmap(file, mode='w+', dtype=np.float32, shape=(n, dim)); rng = np.random.default_rng(seed)
    for i0 in range(0, n, block): a[i0:i0 + block] = np.maximum(rng.standard_normal((min(block, n - i0), dim), dtype=np.float32), 0)
    a.flush(); del a

def child(file: str, k: int, block: int, backend: str):
    "In a fresh process: time a full read, streaming KMeans and kNN of 1,000 queries; print the figures and the peak RSS as JSON."
    from sparsediff.scale import streaming_kmeans, streaming_knn, row_blocks, read_block
    a = np.load(file, mmap_mode='r'); out = dict(n=len(a), dim=a.shape[1], k=k)
    t = time.perf_counter(); s = sum(float(read_block(a, i0, i1).sum()) for i0, i1 in row_blocks(len(a), block)); out['read_s'] = time.perf_counter() - t
    out['rss_after_read_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter(); lab, cent = streaming_kmeans(a, k, block=block, backend=backend); out['kmeans_s'] = time.perf_counter() - t
    out['clusters_used'] = int(len(np.unique(lab)))
    t = time.perf_counter(); streaming_knn(a[:1000], a, k=10, query_ids=np.arange(min(1000, len(a))), block=block); out['knn_1000q_s'] = time.perf_counter() - t
    out['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', default='100000,300000,1000000'); ap.add_argument('--dim', type=int, default=512)
    ap.add_argument('--k', type=int, default=10_000); ap.add_argument('--block', type=int, default=65536)
    ap.add_argument('--backend', default='auto', choices=['auto', 'faiss', 'sklearn']); ap.add_argument('--folder', default=None)
    ap.add_argument('--child', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child: return child(a.child, a.k, a.block, a.backend)
    rows = []
    with tempfile.TemporaryDirectory(dir=a.folder) as d:
        for n in map(int, a.sizes.split(',')):
            f = Path(d)/f'phi_{n}.npy'; write_phi(f, n, a.dim)
            r = subprocess.run([sys.executable, __file__, '--child', str(f), '--k', str(a.k), '--block', str(a.block), '--backend', a.backend],
                               capture_output=True, text=True, check=True)
            rows.append(json.loads(r.stdout.strip().splitlines()[-1])); f.unlink()
            print(f"N {n:>9,}: read {rows[-1]['read_s']:.1f} s, KMeans k={a.k} {rows[-1]['kmeans_s']:.1f} s ({rows[-1]['clusters_used']} clusters used), "
                  f"kNN 1,000 queries {rows[-1]['knn_1000q_s']:.1f} s; peak RSS {rows[-1]['peak_rss_mb']:.0f} MB", flush=True)
    peaks = [r['peak_rss_mb'] for r in rows]
    print(f'peak RSS, largest / smallest N: {max(peaks) / min(peaks):.2f} (target: within 1.20; the data are {rows[-1]["n"] * a.dim * 4 / 1e6:.0f} MB at the largest N)')

if __name__ == '__main__': main()
