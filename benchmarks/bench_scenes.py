"""Scene renderer throughput: scenes per second at 32 and 64 px, with and without 3x3 anti-aliasing, measured in one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_scenes.py [--quick]
"""
import argparse, time
import torch
from sparsediff.scenes import render_scenes

def rate(n: int, size: int, antialias: int) -> float:
    "Scenes per second rendering `n` scenes (after a small warm-up)."
    render_scenes(8, size=size, seed=99, antialias=antialias)
    t0 = time.perf_counter(); render_scenes(n, size=size, seed=0, antialias=antialias)
    return n / (time.perf_counter() - t0)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='a smoke run with few scenes')
    args = ap.parse_args()
    n = 64 if args.quick else 2000
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s), {n} scenes per setting')
    base = None
    for size in (32, 64):
        for aa in (1, 3):
            r = rate(n if aa == 1 else max(16, n // 8), size, aa); base = base or r
            print(f'{size:>3} px, antialias {aa}: {r:8,.0f} scenes/s  ({base / r:5.1f}x slower than 32 px)  10k scenes in {10_000 / r:6.0f} s')

if __name__ == '__main__': main()
