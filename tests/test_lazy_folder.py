"""`LazyImageFolder`: a folder streamed through `extract_phi`'s DataLoader gives the same store as `image_folder` loaded whole."""
import json, os, numpy as np, pytest, torch
from PIL import Image
from sparsediff.data import LazyImageFolder, image_folder
from sparsediff.phi import extract_phi, ChunkedData, MANIFEST
from sparsediff.unet import UNet, UNetConfig

@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    d, rng = tmp_path_factory.mktemp('imgs'), np.random.default_rng(0)
    for i in range(11):
        c = d/('cat' if i % 3 else 'dog'); c.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).save(c/f'{i:02d}.png')
    (d/'dog'/'broken.png').write_bytes(b'not an image')
    return d

def test_lazy_folder_items_match_image_folder(folder):
    with pytest.warns(UserWarning, match='broken.png'): full = image_folder(folder, size=16)
    with pytest.warns(UserWarning, match='broken.png'): lazy = LazyImageFolder(folder, size=16)
    assert len(lazy) == len(full) == 11 and lazy.classes == full.classes and lazy.name == full.name and lazy.labelled
    assert torch.equal(torch.stack([lazy[i][0] for i in range(len(lazy))]), full.images)
    assert [lazy[i][1] for i in range(len(lazy))] == full.labels.tolist()
    with pytest.raises(ValueError, match='smaller than the model input'): LazyImageFolder(folder, size=22)

@pytest.mark.filterwarnings('ignore::UserWarning')
def test_lazy_fingerprint_reads_no_pixels_and_sees_changes(folder, monkeypatch):
    lazy = LazyImageFolder(folder, size=16); fp = ChunkedData(lazy).fingerprint()
    monkeypatch.setattr(LazyImageFolder, '__getitem__', lambda *a: pytest.fail('fingerprint decoded an image'))
    assert ChunkedData(lazy).fingerprint() == fp
    f = lazy.files[0]; st = f.stat(); os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try: assert ChunkedData(LazyImageFolder(folder, size=16)).fingerprint() != fp
    finally: os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))

@pytest.mark.filterwarnings('ignore::UserWarning')
@pytest.mark.parametrize('workers', [0, 2])
def test_lazy_store_equals_in_memory_store(folder, tmp_path, workers):
    torch.manual_seed(0); m = UNet(UNetConfig.scaled(8)).eval()
    kw = dict(sigmas=(0.1, 0.3), n_noise=2, seed=3, chunk=4, progress=False)
    a = extract_phi(m, image_folder(folder, size=16), tmp_path/'full', **kw, workers=0)
    b = extract_phi(m, LazyImageFolder(folder, size=16), tmp_path/'lazy', **kw, workers=workers)
    ma, mb = (json.loads((t/MANIFEST).read_text()) for t in (tmp_path/'full', tmp_path/'lazy'))
    assert ma['files'] == mb['files'] and ma['classes'] == mb['classes'] and ma['chunk_sums'] == mb['chunk_sums']   # byte-equal rows
    for f in list(ma['files'].values()) + ['labels.npy']:
        assert (tmp_path/'full'/f).read_bytes() == (tmp_path/'lazy'/f).read_bytes(), f
