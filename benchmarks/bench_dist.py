"""φ extraction on N CPU ranks (torchrun, gloo, one thread each) against one process with one thread, side by side in one run.
The same `sparsediff extract` command twice, each timed end to end (process start, model load and imports included), and the two
stores compared byte for byte. Target (issue 24): ≥ 1.7× with 2 ranks. Run it on an otherwise idle machine with ≥ N cores.
The machine's own ceiling is measured beside it: N independent one-process extractions at once (no communication at all) against
one alone. On a VM whose cores share a physical core or memory bandwidth that ceiling is below N, and no rank split can beat it.
Two ratios, both printed: end to end (each command's wall time, so torchrun's own start-up, about 1.6 s on this machine, and the
ranks' rendezvous count against the ranks) and `extract_phi` itself (the call timed inside the processes, from a barrier after model,
data and process group are ready to the slowest rank's return: planning, hashing, compute, commit and verification included). The
issue's target (≥ 1.7×) is read on the end-to-end ratio; the second shows how much of the gap is the launcher's.
The default job (96 noise draws of 1,000 digits, about 2.5 min on one core) is large enough that torchrun's fixed start-up
(about 2.8 s) no longer decides the ratio; with 32 draws it took a third of the 2-rank run's time.
Usage: python benchmarks/bench_dist.py [--model default] [--data mnist] [--n-noise 96] [--sigmas 0.05 0.1 0.2 0.4] [--ranks 2]
       python benchmarks/bench_dist.py --repeat 3 --end-to-end-only       (the target's ratio three times, nothing else)
       python benchmarks/bench_dist.py --n-noise 1 --sigmas 0.1          (a quick check that it runs)"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

def extract_args(a, out: Path) -> list:
    "The `sparsediff extract` arguments shared by both runs."
    return ['-m', 'sparsediff.cli', 'extract', '--model', a.model, '--data', a.data, '--out', str(out), '--sigmas', *map(str, a.sigmas),
            '--blocks', *a.blocks, '--n-noise', str(a.n_noise), '--chunk', str(a.chunk), '--threads', '1', '--device', 'cpu', '--quiet']

def inner(a):
    "Run inside each process (`--inner`): load as `sparsediff extract` does, then time `extract_phi` alone; rank 0 writes the seconds to --timing."
    import json, torch
    from sparsediff.cli import extract_dataset
    from sparsediff.report import load_report_model
    from sparsediff.phi import extract_phi
    from sparsediff.dist import launched_by_torchrun
    torch.set_num_threads(1)
    if launched_by_torchrun(): torch.distributed.init_process_group('gloo')   # ours: extract_phi uses it and leaves it open
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if launched_by_torchrun() else (0, 1)
    model = load_report_model(a.model, 'cpu')
    data = extract_dataset(a.data, a.model, 32, getattr(getattr(model, 'cfg', None), 'in_channels', 3))
    if world > 1: torch.distributed.barrier()                     # every rank ready: the clock starts together
    t = time.perf_counter()
    extract_phi(model, data, a.out, sigmas=a.sigmas, n_noise=a.n_noise, blocks=tuple(a.blocks), chunk=a.chunk, progress=False)
    if world > 1: torch.distributed.barrier(); torch.distributed.destroy_process_group()   # the slowest rank's return
    if rank == 0: Path(a.timing).write_text(json.dumps({'seconds': time.perf_counter() - t, 'world': world}))

def inner_args(a, out: Path, timing: Path) -> list:
    "This script's `--inner` arguments: the same extraction as `extract_args`, timed in-process."
    return [str(Path(__file__).resolve()), '--inner', '--out', str(out), '--timing', str(timing), '--model', a.model, '--data', a.data,
            '--sigmas', *map(str, a.sigmas), '--blocks', *a.blocks, '--n-noise', str(a.n_noise), '--chunk', str(a.chunk)]

def timed(cmd: list, env: dict) -> float:
    "Wall seconds of a command that must succeed."
    t = time.perf_counter(); r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode: raise SystemExit(f'{" ".join(cmd[:6])} … failed:\n{r.stderr[-3000:]}')
    return time.perf_counter() - t

def timed_together(cmds: list, env: dict) -> float:
    "Wall seconds of several commands started at once, until the last one ends."
    t = time.perf_counter(); ps = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env) for c in cmds]
    for p in ps:
        if p.wait(): raise SystemExit(f'a concurrent extraction failed:\n{p.stderr.read()[-3000:]}')
    return time.perf_counter() - t

def store_files(path: Path) -> dict:
    "{file name: bytes} of a store, without its lock file."
    return {f.name: f.read_bytes() for f in sorted(path.iterdir()) if f.name != '.lock'}

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default='default'); ap.add_argument('--data', default='mnist')
    ap.add_argument('--sigmas', type=float, nargs='+', default=[0.05, 0.1, 0.2, 0.4]); ap.add_argument('--blocks', nargs='+', default=['mid'])
    ap.add_argument('--n-noise', type=int, default=96); ap.add_argument('--chunk', type=int, default=64); ap.add_argument('--ranks', type=int, default=2)
    ap.add_argument('--inner', action='store_true', help=argparse.SUPPRESS); ap.add_argument('--out', help=argparse.SUPPRESS)
    ap.add_argument('--timing', help=argparse.SUPPRESS)
    ap.add_argument('--repeat', type=int, default=1, help='time the end-to-end pair this many times')
    ap.add_argument('--end-to-end-only', action='store_true', help='skip the in-process timing and the ceiling runs')
    a = ap.parse_args()
    if a.inner: return inner(a)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    print(f'{os.cpu_count()} CPU cores; {a.model} on {a.data}, σ {a.sigmas}, blocks {a.blocks}, {a.n_noise} noise draws, chunks of {a.chunk}', flush=True)
    with tempfile.TemporaryDirectory() as d:
        ratios, same = [], True
        for i in range(a.repeat):                                        # end to end, the pair side by side, `repeat` times
            one = timed([sys.executable, *extract_args(a, Path(d)/f'one{i}')], env)
            print(f'1 process, 1 thread: {one:.1f} s', flush=True)
            many = timed([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(a.ranks),
                          *extract_args(a, Path(d)/f'many{i}')], env)
            print(f'{a.ranks} ranks, 1 thread each: {many:.1f} s  (ratio {one / many:.2f}×)', flush=True)
            same = same and store_files(Path(d)/f'one{i}') == store_files(Path(d)/f'many{i}') == store_files(Path(d)/'one0'); ratios.append(one / many)
        if a.repeat > 1: print(f'end to end over {a.repeat} pairs: {min(ratios):.2f}–{max(ratios):.2f}× (median {sorted(ratios)[len(ratios) // 2]:.2f}×)', flush=True)
        if a.end_to_end_only:
            print(f'speed-up end to end {one / many:.2f}× with {a.ranks} ranks (last pair); stores identical byte for byte: {same}')
            if not same: raise SystemExit('the stores differ')
            return
        torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(a.ranks)]
        timed([sys.executable, *inner_args(a, Path(d)/'in1', Path(d)/'t1.json')], env)
        timed([*torchrun, *inner_args(a, Path(d)/'inN', Path(d)/'tN.json')], env)
        in1, inN = (json.loads((Path(d)/f).read_text())['seconds'] for f in ('t1.json', 'tN.json'))
        same = same and store_files(Path(d)/'in1') == store_files(Path(d)/'inN') == store_files(Path(d)/'one0')
        print(f'extract_phi alone (timed in the processes): 1 process {in1:.1f} s, {a.ranks} ranks {inN:.1f} s', flush=True)
        apart = timed_together([[sys.executable, *extract_args(a, Path(d)/f'apart{i}')] for i in range(a.ranks)], env)
        print(f'{a.ranks} independent single-process extractions at once: {apart:.1f} s (each does all the work)', flush=True)
        timed_together([[sys.executable, *inner_args(a, Path(d)/f'inapart{i}', Path(d)/f'ta{i}.json')] for i in range(a.ranks)], env)
        in_apart = max(json.loads((Path(d)/f'ta{i}.json').read_text())['seconds'] for i in range(a.ranks))
        print(f'{a.ranks} independent extract_phi calls at once (timed in the processes): the slowest {in_apart:.1f} s', flush=True)
    print(f'speed-up end to end {one / many:.2f}× with {a.ranks} ranks, torchrun\'s start-up included (target ≥ 1.7× for 2)')
    print(f'speed-up of extract_phi alone {in1 / inN:.2f}× with {a.ranks} ranks; all four stores identical byte for byte: {same}')
    ceil, ceil_in = a.ranks * one / apart, a.ranks * in1 / in_apart
    print(f'ceiling of this machine for {a.ranks} processes (independent processes, no communication): {ceil:.2f}× end to end, '
          f'{ceil_in:.2f}× for extract_phi alone; the ranks reach {one / many / ceil:.0%} and {in1 / inN / ceil_in:.0%} of them')
    if not same: raise SystemExit('the stores differ')

if __name__ == '__main__': main()
