"""The φ store cannot lie: damaged files are found and named, repaired chunk by chunk, two writers are refused, a changed
dataset is refused, a full disk is a message and leaves the store resumable, a kill -9 resumes bit-exactly."""
import errno, json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest, torch
import sparsediff.phi as phimod
from sparsediff.phi import extract_phi, PhiStore, StoreDamaged, phi_file, MANIFEST, LABELS, ChunkedData, store_lock
from sparsediff.unet import UNet, UNetConfig

ARGS = dict(sigmas=(0.1, 0.2), n_noise=2, blocks=('enc3', 'mid'), chunk=8, progress=False)

@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0); return UNet(UNetConfig.scaled(16)).eval()

class Toy:
    def __init__(self, n=30, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.images, self.labels = torch.rand(n, 3, 16, 16, generator=g), torch.arange(n) % 3
        self.name, self.classes = 'toy', ['a', 'b', 'c']

@pytest.fixture(scope='module')
def reference(model, tmp_path_factory):
    st = extract_phi(model, Toy(), tmp_path_factory.mktemp('ref')/'s', **ARGS)
    return {(s, b): np.array(st.phi(s, b)) for s in (0.1, 0.2) for b in ('enc3', 'mid')}

def same(store, reference):
    return all(np.array_equal(store.phi(s, b), v) for (s, b), v in reference.items())

def test_truncated_file_is_named_and_repaired(model, tmp_path, reference):
    extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    f = tmp_path/'s'/phi_file(0.1, 'mid')
    with open(f, 'r+b') as fh: fh.truncate(f.stat().st_size - 67 * 4)
    with pytest.raises(StoreDamaged, match=r'mid_sigma0.1.npy is \d+ bytes, expected \d+ \(truncated'): PhiStore(tmp_path/'s')
    with pytest.raises(StoreDamaged, match='repair=True'): extract_phi(model, Toy(), tmp_path/'s', **ARGS)   # resume refuses too
    fixed = extract_phi(model, Toy(), tmp_path/'s', **ARGS, repair=True)
    assert fixed.verify() == {} and same(fixed, reference)

def test_random_bytes_name_the_chunk_and_only_it_is_recomputed(model, tmp_path, reference):
    extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    f = tmp_path/'s'/phi_file(0.2, 'enc3')
    raw = bytearray(f.read_bytes()); off = len(raw) - 30 * 16 * 4          # header length; rows are 16 float32
    raw[off + 9 * 64: off + 9 * 64 + 8] = os.urandom(8); f.write_bytes(bytes(raw))  # row 9 -> chunk 1
    with pytest.raises(StoreDamaged, match=r'chunk 1 \(rows 8–15\): enc3_sigma0.2.npy fails its checksum') as e: PhiStore(tmp_path/'s')
    assert e.value.chunks == [1]
    fixed = PhiStore(tmp_path/'s', verify=False).repair(model, Toy())
    assert same(fixed, reference)

def test_repair_recomputes_only_damaged_chunks(model, tmp_path, reference):
    extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    f = tmp_path/'s'/phi_file(0.1, 'mid'); raw = bytearray(f.read_bytes()); raw[-3] ^= 1; f.write_bytes(bytes(raw))  # last chunk
    calls = []
    h = model.enc1.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try: fixed = PhiStore(tmp_path/'s', verify=False).repair(model, Toy())
    finally: h.remove()
    assert calls == [6 * 2, 6 * 2] and same(fixed, reference)   # 6 images of chunk 3, n_noise 2, once per σ

def test_float64_replacement_and_labels_damage(model, tmp_path):
    st = extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    f = tmp_path/'s'/phi_file(0.1, 'enc3')
    np.save(f, np.asarray(st.phi(0.1, 'enc3'), dtype=np.float64))
    with pytest.raises(StoreDamaged, match='holds float64'): PhiStore(tmp_path/'s')
    extract_phi(model, Toy(), tmp_path/'s', **ARGS, repair=True)
    np.save(tmp_path/'s'/LABELS, np.zeros(30, np.int64))
    with pytest.raises(StoreDamaged, match='labels.npy fails its checksum'): PhiStore(tmp_path/'s')

def test_missing_file_and_bad_manifest(model, tmp_path):
    extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    (tmp_path/'s'/phi_file(0.2, 'mid')).unlink()
    with pytest.raises(StoreDamaged, match='is missing'): PhiStore(tmp_path/'s')
    (tmp_path/'s'/MANIFEST).write_text('{"format": ')
    with pytest.raises(ValueError, match='is not a φ store manifest'): PhiStore(tmp_path/'s')
    for ow in (False, True):   # an unreadable manifest proves nothing: even overwrite=True leaves the folder alone
        with pytest.raises(ValueError, match='remove that file yourself'): extract_phi(model, Toy(), tmp_path/'s', **ARGS, overwrite=ow)
    assert (tmp_path/'s'/MANIFEST).read_text() == '{"format": '
    (tmp_path/'s'/MANIFEST).unlink()
    assert extract_phi(model, Toy(), tmp_path/'s', **ARGS, overwrite=True).verify() == {}

def test_old_format_is_refused_with_the_fix(model, tmp_path):
    extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    m = json.loads((tmp_path/'s'/MANIFEST).read_text()); m['format'] = 'sparsediff.phi/1'; (tmp_path/'s'/MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ValueError, match='overwrite=True'): PhiStore(tmp_path/'s')

LOCKER = '''
import sys, time
from pathlib import Path
from sparsediff.phi import store_lock
with store_lock(Path(sys.argv[1])):
    Path(sys.argv[2]).write_text('locked'); time.sleep(60)
'''

def test_second_writer_is_refused(model, tmp_path):
    (tmp_path/'s').mkdir()
    p = subprocess.Popen([sys.executable, '-c', LOCKER, str(tmp_path/'s'), str(tmp_path/'ready')])
    try:
        for _ in range(200):
            if (tmp_path/'ready').exists(): break
            time.sleep(0.05)
        with pytest.raises(RuntimeError, match=f'another process \\(pid {p.pid}\\)'): extract_phi(model, Toy(), tmp_path/'s', **{**ARGS, 'seed': 1})
        assert not (tmp_path/'s'/MANIFEST).exists()
    finally: p.kill(); p.wait()
    assert extract_phi(model, Toy(), tmp_path/'s', **ARGS).complete   # the lock died with its process

def test_one_changed_image_is_another_dataset(model, tmp_path):
    t = Toy()
    def stop(done, total):
        if done == 2: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): extract_phi(model, t, tmp_path/'s', **ARGS, callback=stop)
    t.images = t.images.clone(); t.images[20, 1, 5, 5] += 0.01   # image 20, not among the first eight nor the last
    with pytest.raises(ValueError, match='fingerprint'): extract_phi(model, t, tmp_path/'s', **ARGS)
    t2 = Toy(); t2.labels = t2.labels.flip(0)
    with pytest.raises(ValueError, match='fingerprint'): extract_phi(model, t2, tmp_path/'s', **ARGS)

def test_not_enough_space_is_a_message(model, tmp_path, monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, 'disk_usage', lambda p: shutil._ntuple_diskusage(10, 10, 100))
    with pytest.raises(OSError, match='no space left.*needs .* MB.*run the same call again') as e: extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    assert e.value.errno == errno.ENOSPC

def test_disk_full_mid_run_keeps_finished_chunks_and_resumes(model, tmp_path, monkeypatch, reference):
    real, n = phimod._write_rows, []
    def full(file, rows, i0):
        n.append(1)
        if len(n) > 5 * 2: raise OSError(errno.ENOSPC, 'No space left on device')   # 5 files per chunk: fails in chunk 2
        return real(file, rows, i0)
    monkeypatch.setattr(phimod, '_write_rows', full)
    with pytest.raises(OSError, match=r'2 of 4 chunks are kept: free some space'): extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    monkeypatch.setattr(phimod, '_write_rows', real)
    half = PhiStore(tmp_path/'s'); assert len(half) == 16 and not half.complete
    assert same(extract_phi(model, Toy(), tmp_path/'s', **ARGS), reference)

KILLER = '''
import os, signal, sys, torch
from sparsediff.phi import extract_phi
from sparsediff.unet import UNet, UNetConfig
torch.manual_seed(0); model = UNet(UNetConfig.scaled(16)).eval()
g = torch.Generator().manual_seed(0)
images = torch.rand(30, 3, 16, 16, generator=g)
def die(done, total):
    if done == 2: os.kill(os.getpid(), signal.SIGKILL)
extract_phi(model, images, sys.argv[1], sigmas=(0.1, 0.2), n_noise=2, blocks=('enc3', 'mid'), chunk=8, progress=False, callback=die)
'''

def test_kill_9_resumes_bit_exact(model, tmp_path):
    r = subprocess.run([sys.executable, '-c', KILLER, str(tmp_path/'s')], env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == -signal.SIGKILL
    images = Toy().images
    assert len(PhiStore(tmp_path/'s')) == 16
    resumed = extract_phi(model, images, tmp_path/'s', **ARGS)
    full = extract_phi(model, images, tmp_path/'full', **ARGS)
    for s in (0.1, 0.2):
        for b in ('enc3', 'mid'): assert np.array_equal(resumed.phi(s, b), full.phi(s, b))

def test_bad_store_arguments(model, tmp_path):
    for kw, msg in [(dict(n_noise=0), 'n_noise must be >= 1'), (dict(chunk=0), 'chunk must be >= 1'), (dict(sigmas=()), 'at least one σ'),
                    (dict(sigmas=(float('inf'),)), 'sigmas must be finite'), (dict(sigmas=(-0.1,)), '>= 0'), (dict(batch_size=0), 'batch_size')]:
        with pytest.raises((ValueError, TypeError), match=msg): extract_phi(model, Toy(), tmp_path/'s', **{**ARGS, **kw})
    assert extract_phi(model, Toy(), tmp_path/'one', **{**ARGS, 'sigmas': 0.2}).sigmas == [0.2]
    (tmp_path/'file').write_text('x')
    with pytest.raises(ValueError, match='is a file'): extract_phi(model, Toy(), tmp_path/'file', **ARGS)
    bad = Toy(); bad.images[13, 0, 0, 0] = float('nan')
    with pytest.raises(ValueError, match=r'images 8\.\.15 of the dataset holds NaN or inf values \(images \[5\]\)'): extract_phi(model, bad, tmp_path/'nan', **ARGS)

def test_more_bad_store_inputs(model, tmp_path):
    class StrLabels(torch.utils.data.Dataset):
        def __len__(self): return 4
        def __getitem__(self, i): return torch.rand(3, 16, 16), 'cat'
    with pytest.raises(TypeError, match='map class names to indices'): extract_phi(model, StrLabels(), tmp_path/'a', **ARGS)
    with pytest.raises(ValueError, match='blocks is empty'): extract_phi(model, Toy(), tmp_path/'b', **{**ARGS, 'blocks': []})
    with pytest.raises(ValueError, match='print alike'): extract_phi(model, Toy(), tmp_path/'c', **{**ARGS, 'sigmas': (0.1, 0.1000001)})
    st = extract_phi(model, Toy(), tmp_path/'d', **ARGS)
    with pytest.raises(KeyError, match="σ='abc' is not a number"): st.phi('abc')

def test_extract_refuses_a_folder_holding_someone_elses_files(tmp_path):
    "Second hostile pass: `extract --out` into a folder with an essay used to mix the store's files into it."
    import torch
    from sparsediff.unet import UNet, UNetConfig
    from sparsediff.phi import extract_phi
    d = tmp_path/'mine'; d.mkdir(); (d/'essay.txt').write_text('mine')
    with pytest.raises(ValueError, match=r"holds files that are not a φ store's \(essay.txt\)"):
        extract_phi(UNet(UNetConfig.scaled(16)).eval(), torch.rand(4, 3, 32, 32), d, sigmas=(0.1,), n_noise=1, progress=False)
    assert sorted(p.name for p in d.iterdir()) == ['essay.txt']

def test_extract_resumes_from_a_crash_before_its_first_manifest(tmp_path):
    "A crash between creating the arrays and writing the first manifest leaves only store files: the rerun goes on."
    import torch
    from sparsediff.unet import UNet, UNetConfig
    from sparsediff.phi import extract_phi
    m, x = UNet(UNetConfig.scaled(16)).eval(), torch.rand(4, 3, 32, 32)
    ref = extract_phi(m, x, tmp_path/'ref', sigmas=(0.1,), n_noise=1, progress=False)
    d = tmp_path/'s'; d.mkdir()
    for f in ('.lock', 'labels.npy', 'mid_sigma0.1.npy'): (d/f).write_bytes((tmp_path/'ref'/f).read_bytes())
    st = extract_phi(m, x, d, sigmas=(0.1,), n_noise=1, progress=False)
    assert np.array_equal(np.asarray(st.phi(0.1, 'mid')), np.asarray(ref.phi(0.1, 'mid')))

@pytest.mark.parametrize('workers', [-1, 10**5])
def test_extract_workers_are_bounded(tmp_path, workers):
    import torch
    from sparsediff.unet import UNet, UNetConfig
    from sparsediff.phi import extract_phi
    with pytest.raises(ValueError, match='workers must be'):
        extract_phi(UNet(UNetConfig.scaled(16)).eval(), torch.rand(4, 3, 32, 32), tmp_path/'s', sigmas=(0.1,), n_noise=1, progress=False, workers=workers)
    assert not (tmp_path/'s').exists()
