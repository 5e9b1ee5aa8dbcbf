"""Write only what we made (issue 25): the φ store never writes through a link, never deletes a file it cannot prove it wrote,
and validates its manifest with bounds before using it."""
import json, os, time
from pathlib import Path
import numpy as np, pytest, torch
from sparsediff.phi import extract_phi, PhiStore, StoreDamaged, phi_file, MANIFEST, LABELS, LOCK, store_lock
from sparsediff.unet import UNet, UNetConfig

ARGS = dict(sigmas=(0.1,), n_noise=1, blocks=('mid',), chunk=8, progress=False)

@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0); return UNet(UNetConfig.scaled(16)).eval()

class Toy:
    def __init__(self, n=30):
        g = torch.Generator().manual_seed(0)
        self.images, self.labels = torch.rand(n, 3, 16, 16, generator=g), torch.arange(n) % 3
        self.name, self.classes = 'toy', ['a', 'b', 'c']

def victim(tmp_path, text='user data, keep me'):
    v = tmp_path/'victim.txt'; v.write_text(text); return v

def test_linked_lock_is_refused_and_not_written(model, tmp_path):
    extract_phi(model, Toy(), tmp_path/'s', **ARGS)   # a complete store: the lock is still taken on every call
    v = victim(tmp_path); (tmp_path/'s'/LOCK).unlink(); os.symlink(v, tmp_path/'s'/LOCK)
    with pytest.raises(ValueError, match='symbolic link'): extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    with pytest.raises(ValueError, match='symbolic link'):
        with store_lock(tmp_path/'s'): pass
    assert v.read_text() == 'user data, keep me'

def test_repair_does_not_write_through_a_linked_data_file(model, tmp_path):
    extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    f = tmp_path/'s'/phi_file(0.1, 'mid'); v = victim(tmp_path); f.unlink(); os.symlink(v, f)
    with pytest.raises(StoreDamaged, match='symbolic link'): PhiStore(tmp_path/'s')
    with pytest.raises(ValueError, match='symbolic link'): extract_phi(model, Toy(), tmp_path/'s', **ARGS, repair=True)
    assert v.read_text() == 'user data, keep me'

def test_link_planted_before_the_first_extraction_is_refused(model, tmp_path):
    (tmp_path/'s').mkdir(); v = victim(tmp_path)
    for name in (phi_file(0.1, 'mid'), LABELS):
        os.symlink(v, tmp_path/'s'/name)
        with pytest.raises(ValueError, match='symbolic link'): extract_phi(model, Toy(), tmp_path/'s', **ARGS)
        assert v.read_text() == 'user data, keep me'; (tmp_path/'s'/name).unlink()

def test_foreign_file_with_a_store_name_is_not_overwritten(model, tmp_path):
    (tmp_path/'s').mkdir(); (tmp_path/'s'/LABELS).write_text('my labels')
    with pytest.raises(FileExistsError, match='did not write it'): extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    assert (tmp_path/'s'/LABELS).read_text() == 'my labels'

def test_foreign_manifest_overwrite_deletes_nothing(model, tmp_path):
    d = tmp_path/'site'; d.mkdir()
    files = {'index.html': '<html>', 'site.css': 'body{}', LABELS: 'not ours', MANIFEST: json.dumps({'files': {'a': 'index.html', 'b': 'site.css'}})}
    for k, v in files.items(): (d/k).write_text(v)
    for ow in (False, True):
        with pytest.raises(ValueError, match='not a manifest sparsediff wrote|remove'): extract_phi(model, Toy(), d, **ARGS, overwrite=ow)
    assert {k: (d/k).read_text() for k in files} == files

def test_overwrite_deletes_only_the_old_stores_arrays(model, tmp_path):
    extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    (tmp_path/'s'/'notes.txt').write_text('mine')
    st = extract_phi(model, Toy(), tmp_path/'s', **{**ARGS, 'sigmas': (0.3,)}, overwrite=True)
    assert st.sigmas == [0.3] and not (tmp_path/'s'/phi_file(0.1, 'mid')).exists() and (tmp_path/'s'/'notes.txt').read_text() == 'mine'

@pytest.mark.parametrize('field,value,msg', [('chunk', 0, "field 'chunk'"), ('chunks_done', 10**7, "field 'chunks_done'"),
                                             ('complete', True, "field 'complete'"), ('n_chunks', 10**9, "field 'n_chunks'"),
                                             ('files', {'0.1|mid': '../x.npy'}, "field 'files'")])
def test_crafted_manifest_fields_are_refused_at_once(model, tmp_path, field, value, msg):
    extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    m = json.loads((tmp_path/'s'/MANIFEST).read_text())
    if field == 'complete': m['chunks_done'] = 1   # complete: true with 1 of 4 chunks done
    m[field] = value; (tmp_path/'s'/MANIFEST).write_text(json.dumps(m))
    t = time.time()
    with pytest.raises(ValueError, match=msg): PhiStore(tmp_path/'s')
    with pytest.raises(ValueError, match=msg): extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    assert time.time() - t < 5

def test_empty_path_is_refused(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match='not a folder name'): extract_phi(model, Toy(), '', **ARGS)
    assert list(tmp_path.iterdir()) == []

def test_errors_do_not_print_a_links_target(model, tmp_path):
    extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    secret = tmp_path/'secret'; secret.write_text('SECRETBYTES:x:0:0')
    f = tmp_path/'s'/phi_file(0.1, 'mid'); f.unlink(); os.symlink(secret, f)
    with pytest.raises(StoreDamaged) as e: PhiStore(tmp_path/'s')
    assert 'SECRETBYTES' not in str(e.value)
    f.unlink(); f.write_text('SECRETBYTES:x:0:0')   # a regular file that is not a .npy array
    with pytest.raises(StoreDamaged) as e: PhiStore(tmp_path/'s')
    assert 'SECRETBYTES' not in str(e.value) and 'unreadable header' in str(e.value)

def test_fifo_in_a_store_does_not_hang(model, tmp_path):
    extract_phi(model, Toy(), tmp_path/'s', **ARGS)
    f = tmp_path/'s'/phi_file(0.1, 'mid'); f.unlink(); os.mkfifo(f)
    t = time.time()
    with pytest.raises(StoreDamaged, match='not a regular file'): PhiStore(tmp_path/'s')
    assert time.time() - t < 5
