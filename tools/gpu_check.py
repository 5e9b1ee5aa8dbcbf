"""One call that verifies a GPU: the device-parametrised tests on CUDA, `benchmarks/bench_gpu.py`, `sparsediff demo --device cuda`,
a timed full-width training, and a 2-rank `sparsediff extract` under torchrun when two GPUs exist; one JSON of every figure, with the
device's name. `--dry-run`: the same steps at tiny sizes on the CPU (CI runs it, so the script cannot rot).
Usage: bash tools/gpu_check.sh [--dry-run] [FOLDER]   (the JSON goes to $OUT when set, else FOLDER, else ./gpu_check)"""
import argparse, json, os, platform, shutil, subprocess, sys, tempfile, time, traceback
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TARGETS = {   # the GPU issue's targets: figure -> (comparison, value)
    'bench.phi_full_speedup_vs_naive': ('>=', 3.5), 'bench.phi_full_bf16_rows_per_s': ('>=', 1e6),
    'bench.train_full_img_per_s': ('>=', 15_000), 'train.img_per_s': ('>=', 15_000), 'bench.reconstruct_1x4_s': ('<', 0.3)}

def env():
    "The environment of every child: this checkout first on the path, one OpenMP thread per process unless set."
    return {**os.environ, 'PYTHONPATH': os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH', '')) if p),
            'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}

def sh(cmd, timeout, log: Path, cwd=ROOT):
    "Run `cmd`, its output to `log`; raise with the log's tail when it fails or runs past `timeout` seconds."
    with open(log, 'w') as f:
        try: r = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env(), cwd=cwd, timeout=timeout)
        except subprocess.TimeoutExpired: raise RuntimeError(f'timed out after {timeout} s: {log.read_text()[-1500:]}') from None
    if r.returncode: raise RuntimeError(f'exit {r.returncode}: {log.read_text()[-1500:]}')

def step_tests(a, work: Path) -> dict:
    "The device-parametrised tests, on CUDA (dry run: the quick CPU ones)."
    xml = work/'tests.xml'
    sel = ['-k', 'cuda'] if not a.dry_run else ['-k', 'cpu and not report']   # the dry run's report is the demo step
    try: sh([PY, '-m', 'pytest', 'tests/test_devices.py', '-q', '-p', 'no:cacheprovider', f'--junitxml={xml}', *sel], a.budget(600), work/'tests.log')
    finally:
        if xml.exists():
            s = ET.parse(xml).getroot(); s = s if s.tag == 'testsuite' else s[0]
            a.figures.update({'tests.run': int(s.get('tests')), 'tests.failed': int(s.get('failures')) + int(s.get('errors'))})
    if a.figures.get('tests.run', 0) == 0: raise RuntimeError('no device test ran')
    return {}

def step_bench(a, work: Path) -> dict:
    "benchmarks/bench_gpu.py's figures (φ, extract_phi, training, latency)."
    j = work/'bench.json'
    extra = ['--quick', '--device', 'cpu', '--repeats', '1', '--parts', 'phi,extract,latency'] if a.dry_run else ['--quick', '--full', '--device', 'cuda']
    sh([PY, 'benchmarks/bench_gpu.py', '--json', j, *extra], a.budget(900), work/'bench.log')
    return json.loads(j.read_text())['figures']

def tiny_inputs(work: Path, n: int, size: int, model=None) -> tuple[Path, Path]:
    "A model folder (tiny random UNet unless `model` names a shipped one) and a folder of `n` random images in two classes."
    import numpy as np, torch
    from PIL import Image
    from sparsediff.unet import UNet, UNetConfig, save_model
    m = work/'tiny_model'
    if model is None and not m.exists(): torch.manual_seed(0); save_model(UNet(UNetConfig.scaled(16)).eval(), m)
    d = work/f'images_{n}_{size}'
    if not d.exists():
        rng = np.random.default_rng(0)
        for i in range(n):
            (d/'ab'[i % 2]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d/'ab'[i % 2]/f'{i}.png')
    return (m if model is None else model), d

def step_demo(a, work: Path) -> dict:
    "`sparsediff demo --device cuda` (dry run: `sparsediff report` with a tiny model on 24 images, CPU)."
    out = work/'demo'
    if a.dry_run:
        m, d = tiny_inputs(work, 24, 32)   # the report needs 32 px
        cmd = [PY, '-m', 'sparsediff.cli', 'report', '--model', m, '--data', d, '--out', out, '--device', 'cpu', '--quiet']
    else: cmd = [PY, '-m', 'sparsediff.cli', 'demo', '--device', 'cuda', '--out', out, '--quiet']
    t = time.perf_counter(); sh(cmd, a.budget(600), work/'demo.log'); t = time.perf_counter() - t
    meta = json.loads((out/'report.json').read_text()).get('meta', {})
    if not str(meta.get('device', '')).startswith(a.device): raise RuntimeError(f"the report ran on {meta.get('device')!r}, not {a.device}")
    return {'seconds': t}

def step_train(a, work: Path) -> dict:
    "Train a full-width UNet (dry run: width/16) on the offline mixture for `--train-seconds`; its logged rate, loss and fraction of peak."
    import torch
    from sparsediff.unet import UNetConfig
    from sparsediff.train import train, TrainConfig, read_log
    if a.dry_run: torch.set_num_threads(1)
    mcfg = UNetConfig.scaled(16) if a.dry_run else UNetConfig()
    tcfg = TrainConfig(steps=10**6, batch_size=4 if a.dry_run else 1024, log_every=1 if a.dry_run else 10, ckpt_every=10**6, eval_every=0,
                       warmup_steps=10)
    stop = time.time() + a.train_seconds
    train(work/'train', mcfg, tcfg, device=a.device, progress=False, callback=lambda done, rec: time.time() < stop)
    log = read_log(work/'train')
    if len(log) < 2: raise RuntimeError(f'only {len(log)} log records in {a.train_seconds} s')
    last = log.iloc[-1]
    if a.device == 'cuda': torch.cuda.empty_cache()
    return {'steps': int(last.step), 'img_per_s': float(last.img_per_s), 'frac_peak': float(last.frac_peak),
            'loss_first': float(log.loss.iloc[0]), 'loss_last': float(last.loss)}

def step_extract(a, work: Path) -> dict:
    "`sparsediff extract` as one process and as 2 ranks under torchrun (gloo on the CPU, NCCL on 2 GPUs): the same store?"
    import numpy as np, torch
    if not a.dry_run and torch.cuda.device_count() < 2: raise Skipped(f'{torch.cuda.device_count()} GPU: the 2-rank extract needs two')
    n, size, model = (40, 16, None) if a.dry_run else (8192, 32, 'default')
    m, d = tiny_inputs(work, n, size, model)
    args = ['-m', 'sparsediff.cli', 'extract', '--model', m, '--data', d, '--sigmas', '0.1', '0.2', '--n-noise', '4' if a.dry_run else '8',
            '--chunk', '8' if a.dry_run else '512', '--size', size, '--device', a.device, '--quiet']
    t1 = time.perf_counter(); sh([PY, *args, '--out', work/'one'], a.budget(300), work/'extract1.log'); t1 = time.perf_counter() - t1
    t2 = time.perf_counter()
    sh([PY, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', 2, *args, '--out', work/'two'], a.budget(300), work/'extract2.log')
    t2 = time.perf_counter() - t2
    files = [f.name for f in (work/'one').iterdir() if f.suffix in ('.npy', '.json')]
    same = all((work/'one'/f).read_bytes() == (work/'two'/f).read_bytes() for f in files)
    diff = max(float(np.abs(np.load(work/'one'/f) - np.load(work/'two'/f)).max()) for f in files if f.endswith('.npy'))
    if a.dry_run and not same: raise RuntimeError('the 2-rank store differs from the 1-process store')
    if not a.dry_run and diff > 1e-2: raise RuntimeError(f'the 2-rank store differs from the 1-process store by up to {diff}')
    return {'images': n, 'one_process_s': t1, 'two_ranks_s': t2, 'speedup': t1 / t2, 'identical': int(same), 'max_abs_diff': diff}

class Skipped(Exception): "A step this machine cannot run (e.g. 2 ranks on one GPU)."

STEPS = {'tests': step_tests, 'bench': step_bench, 'demo': step_demo, 'train': step_train, 'extract': step_extract}

def cpu_name() -> str:
    "The CPU's model name (Linux), else the machine type."
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()

def device_info(a) -> dict:
    import torch
    info = dict(device=a.device, torch=torch.__version__, python=platform.python_version(), host=platform.node(), dry_run=a.dry_run,
                cpu_count=os.cpu_count())
    if a.device == 'cuda':
        p = torch.cuda.get_device_properties(0)
        info.update(device_name=p.name, gpus=torch.cuda.device_count(), gpu_memory_gb=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda)
    else: info.update(device_name=cpu_name(), gpus=0)
    return info

def check_targets(figures: dict) -> dict:
    "Each target the figures reach or miss: {figure: {value, target, met}}."
    ops = {'>=': lambda v, t: v >= t, '<': lambda v, t: v < t}
    return {k: dict(value=figures[k], target=f'{op} {t:g}', met=bool(ops[op](figures[k], t))) for k, (op, t) in TARGETS.items() if k in figures}

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('folder', nargs='?', default=None, help='where the JSON goes when $OUT is not set (default ./gpu_check)')
    ap.add_argument('--dry-run', action='store_true', help='tiny sizes on the CPU (a few minutes on 2 cores): checks the script itself')
    ap.add_argument('--train-seconds', type=float, default=None, help='training time (default 180; dry run 5)')
    ap.add_argument('--steps', default=','.join(STEPS), help=f'comma-separated subset of {",".join(STEPS)}')
    ap.add_argument('--limit', type=float, default=480, help='seconds for the whole check; each step gets what is left (default 8 minutes)')
    a = ap.parse_args(argv)
    import torch
    out = Path(os.environ.get('OUT') or a.folder or 'gpu_check'); out.mkdir(parents=True, exist_ok=True)
    a.device = 'cpu' if a.dry_run else 'cuda'
    if a.device == 'cuda' and not torch.cuda.is_available(): sys.exit('gpu_check: no CUDA device here; use --dry-run to check the script on the CPU')
    a.train_seconds = a.train_seconds or (5 if a.dry_run else 180)
    start = time.perf_counter(); a.budget = lambda cap: max(10, int(min(cap, a.limit - (time.perf_counter() - start))))
    a.figures, steps = {}, {}
    work = Path(tempfile.mkdtemp(prefix='gpu_check_'))
    os.environ.setdefault('SPARSEDIFF_CACHE', str(work/'cache'))
    for name in a.steps.split(','):
        t = time.perf_counter(); print(f'== {name}', flush=True)
        skip = None
        try: figs, err = STEPS[name](a, work), None
        except Skipped as e: figs, err, skip = {}, None, str(e)
        except Exception as e: figs, err = {}, f'{type(e).__name__}: {e}'; traceback.print_exc()
        figs = {k: v for k, v in figs.items() if v is not None}
        a.figures.update({f'{name}.{k}': v for k, v in figs.items()})
        steps[name] = dict(ok=err is None, seconds=round(time.perf_counter() - t, 1), **({'error': err[-3000:]} if err else {}),
                           **({'skipped': skip} if skip else {}))
        print(f'   {"skipped: " + skip if skip else "ok" if err is None else "FAILED"} in {steps[name]["seconds"]} s', flush=True)
    if a.figures.get('tests.failed'): steps['tests'].update(ok=False, error=f"{a.figures['tests.failed']} device test(s) failed")
    res = dict(device_info(a), total_seconds=round(time.perf_counter() - start, 1), ok=all(s['ok'] for s in steps.values()),
               steps=steps, figures=a.figures, targets=check_targets(a.figures) if not a.dry_run else {})
    f = out/'gpu_check.json'; f.write_text(json.dumps(res, indent=1) + '\n')
    for k in ('tests', 'demo', 'bench', 'train', 'extract'): shutil.copy(work/f'{k}.log', out/f'{k}.log') if (work/f'{k}.log').exists() else None
    print(f'wrote {f}: {"all steps passed" if res["ok"] else "FAILED: " + ", ".join(k for k, s in steps.items() if not s["ok"])} '
          f'in {res["total_seconds"]} s on {res["device_name"]}')
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if res['ok'] else 1)

if __name__ == '__main__': main()
