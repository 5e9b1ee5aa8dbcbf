"""`extract_phi` under torchrun on CPUs (gloo, 2 processes): the same store as one process byte for byte, a rank killed with
SIGKILL mid-run resumes, and a resume with another seed is refused."""
import json, os, subprocess, sys, textwrap
from pathlib import Path
import numpy as np, pytest, torch
from sparsediff.unet import UNet, UNetConfig, save_model
from sparsediff.phi import PhiStore

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get('PYTHONPATH', '')])}
TORCHRUN = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']

def store_bytes(path) -> dict:
    "{file: bytes} of a store, without its lock file (it holds a pid)."
    return {f.name: f.read_bytes() for f in sorted(Path(path).iterdir()) if f.name != '.lock'}

@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    "A tiny saved model and a folder of 30 images in two classes."
    from PIL import Image
    d = tmp_path_factory.mktemp('dist')
    torch.manual_seed(0); save_model(UNet(UNetConfig.scaled(16)).eval(), d/'model')
    rng = np.random.default_rng(0)
    for cls in ('a', 'b'):
        (d/'imgs'/cls).mkdir(parents=True)
        for i in range(15): Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(d/'imgs'/cls/f'{i}.png')
    return d

def extract_cmd(d, out, *extra):
    return ['-m', 'sparsediff.cli', 'extract', '--model', str(d/'model'), '--data', str(d/'imgs'), '--out', str(out), '--sigmas', '0.1', '0.2',
            '--blocks', 'enc3', 'mid', '--n-noise', '2', '--chunk', '4', '--size', '16', '--quiet', *extra]

def run(cmd, **kw): return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, **kw)

def test_two_ranks_write_the_one_process_store(inputs, tmp_path):
    "`torchrun --nproc_per_node 2 … extract` and a plain `sparsediff extract` write the same bytes, manifest included."
    one = run([sys.executable, *extract_cmd(inputs, tmp_path/'one')]); assert one.returncode == 0, one.stderr[-2000:]
    two = run([*TORCHRUN, *extract_cmd(inputs, tmp_path/'two')]); assert two.returncode == 0, two.stderr[-3000:]
    a, b = store_bytes(tmp_path/'one'), store_bytes(tmp_path/'two')
    assert set(a) == set(b) == {'manifest.json', 'labels.npy', 'enc3_sigma0.1.npy', 'enc3_sigma0.2.npy', 'mid_sigma0.1.npy', 'mid_sigma0.2.npy'}
    assert all(a[f] == b[f] for f in a), [f for f in a if a[f] != b[f]]
    st = PhiStore(tmp_path/'two'); assert st.complete and len(st) == 30 and st.verify() == {}
    assert (np.asarray(st.phi(0.2, 'mid')) != 0).any()

# A rank that kills itself with SIGKILL after `kill_after` of its chunks: deterministic "kill -9 mid-run" (a slow callback keeps the
# other rank mid-run too).
SCRIPT = textwrap.dedent('''
    import os, signal, sys, time, torch
    from sparsediff.unet import load_model
    from sparsediff.phi import extract_phi
    out, seed, victim, kill_after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rank, mine = int(os.environ.get('RANK', 0)), []
    def cb(done, total):
        mine.append(done); time.sleep(0.05)
        if rank == victim and len(mine) == kill_after: os.kill(os.getpid(), signal.SIGKILL)
    x = torch.rand(26, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    m = load_model(os.environ['MODEL'])
    st = extract_phi(m, x, out, sigmas=(0.1, 0.2), n_noise=2, seed=seed, chunk=2, callback=cb, progress=False)
    print('DONE', rank, st.complete, len(st), 'computed', len(mine))
''')

@pytest.mark.parametrize('victim', [1, 0])
def test_killed_rank_resumes_and_other_seed_is_refused(inputs, tmp_path, victim):
    "SIGKILL of one rank after 3 chunks; a rerun with another seed is refused; the same command then completes and equals one process."
    s = tmp_path/'run.py'; s.write_text(SCRIPT); env = {**ENV, 'MODEL': str(inputs/'model')}
    ref = subprocess.run([sys.executable, str(s), str(tmp_path/'ref'), '0', '-1', '0'], capture_output=True, text=True, env=env, timeout=300)
    assert ref.returncode == 0 and 'DONE 0 True 26' in ref.stdout, ref.stderr[-2000:]
    out = tmp_path/'st'
    killed = subprocess.run([*TORCHRUN, str(s), str(out), '0', str(victim), '3'], capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode != 0 and 'DONE' not in killed.stdout
    man = json.loads((out/'manifest.json').read_text())
    assert not man['complete'] and list(out.glob('.progress-*.json'))     # the killed run left finished chunks behind
    other = subprocess.run([*TORCHRUN, str(s), str(out), '1', '-1', '0'], capture_output=True, text=True, env=env, timeout=300)
    assert other.returncode != 0 and 'seed: stored 0, asked 1' in other.stderr, other.stderr[-2000:]
    again = subprocess.run([*TORCHRUN, str(s), str(out), '0', '-1', '0'], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and again.stdout.count('True 26') == 2, again.stdout + again.stderr[-3000:]
    redone = sum(int(l.split()[-1]) for l in again.stdout.splitlines() if l.startswith('DONE'))
    assert redone <= 13 - 3                                                # the killed run's finished chunks are kept, not recomputed
    assert PhiStore(out).verify() == {} and not list(out.glob('.progress-*.json'))
    a, b = store_bytes(tmp_path/'ref'), store_bytes(out)
    assert set(a) == set(b) and all(a[f] == b[f] for f in a), [f for f in a if a[f] != b[f]]

def test_report_from_a_store(inputs, tmp_path):
    "`sparsediff report --store` on a store `sparsediff extract` wrote: both sections, one row per σ and block, labels used."
    r = run([sys.executable, *extract_cmd(inputs, tmp_path/'st')]); assert r.returncode == 0, r.stderr[-2000:]
    r = run([sys.executable, '-m', 'sparsediff.cli', 'report', '--store', str(tmp_path/'st'), '--out', str(tmp_path/'rep'), '--quiet'])
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((tmp_path/'rep'/'report.json').read_text())
    t = rep['sections']['φ channels and sparsity']['numbers']['table']
    assert {(x['sigma'], x['block']) for x in t} == {(0.1, 'enc3'), (0.1, 'mid'), (0.2, 'enc3'), (0.2, 'mid')}
    assert all('10-NN label agreement' in x for x in t) and rep['meta']['rows'] == 30
    bad = run([sys.executable, '-m', 'sparsediff.cli', 'report', '--out', str(tmp_path/'x')])
    assert bad.returncode == 2 and '--data' in bad.stderr and '--store' in bad.stderr

def test_clear_progress_removes_half_written_temporaries(tmp_path):
    "A rank killed inside an atomic progress write leaves `..progress-<rank>.json.<random>.tmp` (the name `atomic_path` gives); finishing the store removes it with the progress files, nothing else."
    from sparsediff.dist import write_progress, clear_progress
    write_progress(tmp_path, 0, 'k', {})
    (tmp_path/'..progress-1.json.ab12cd.tmp').write_text('{')               # what a SIGKILL mid-write leaves behind
    (tmp_path/'mid_sigma0.1.npy').write_bytes(b'x')
    clear_progress(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['mid_sigma0.1.npy']
