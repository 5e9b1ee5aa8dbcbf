"""φ, block means and the resumable on-disk store of `sparsediff.phi`."""
import json, numpy as np, pandas as pd, pytest, torch
from sparsediff.phi import (phi, phi_clean, block_means, noisy_block_means, draw_noise, extract_phi, PhiStore, ChunkedData,
                            chunk_generator, phi_file, MANIFEST)
from sparsediff.hooks import edit_output, _hooks_count
from sparsediff.unet import UNet, UNetConfig

@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0); return UNet(UNetConfig.scaled(8)).eval()

class ImageSet:
    "Stand-in for sparsediff.data.ImageSet: .images, .labels, .name, .classes."
    def __init__(self, n=36, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.images, self.labels = torch.rand(n, 3, 16, 16, generator=g), torch.randint(0, 3, (n,), generator=g)
        self.name, self.classes = f'toy{n}-{seed}', ['a', 'b', 'c']

class Pairs(torch.utils.data.Dataset):
    "A lazy dataset of (image, label) that records which items were read."
    def __init__(self, s): self.s, self.read = s, []
    def __len__(self): return len(self.s.images)
    def __getitem__(self, i): self.read.append(i); return self.s.images[i], int(self.s.labels[i])

ARGS = dict(sigmas=(0.1, 0.2), n_noise=3, blocks=('enc2', 'mid'), chunk=10, progress=False)

def test_phi_reproducible_and_batch_size_free(model):
    x = torch.rand(5, 3, 16, 16)
    f = [phi(model, x, 0.2, n_noise=4, generator=torch.Generator().manual_seed(3), batch_size=bs) for bs in (1, 4, 9, 10_000)]
    for g in f[1:]: assert torch.allclose(f[0], g, atol=1e-6)
    assert not torch.allclose(f[0], phi(model, x, 0.2, n_noise=4, generator=torch.Generator().manual_seed(4)), atol=1e-4)
    assert not torch.allclose(f[0], phi(model, x, 0.4, n_noise=4, generator=torch.Generator().manual_seed(3)), atol=1e-4)
    # draws are per image: the first 3 images get the same φ whether or not images 4-5 are in the batch
    assert torch.allclose(f[0][:3], phi(model, x[:3], 0.2, n_noise=4, generator=torch.Generator().manual_seed(3)), atol=1e-6)

def test_phi_bad_sigma_and_noise_shape(model):
    x = torch.rand(3, 3, 16, 16)
    with pytest.raises(ValueError, match='one value per image'): phi(model, x, torch.ones(2))
    assert draw_noise(x, 5, torch.Generator().manual_seed(0)).shape == (3, 5, 3, 16, 16)
    with pytest.raises(KeyError, match='did you mean'): phi(model, x, 0.1, block='midd')

def test_phi_sigma_zero_is_clean_and_restores_mode(model):
    x = torch.rand(3, 3, 16, 16)
    model.train()
    try:
        f = phi(model, x, 0.0, n_noise=2)
        assert model.training
    finally: model.eval()
    assert torch.allclose(f, phi_clean(model, x).detach(), atol=1e-6)
    with torch.no_grad(): assert torch.allclose(f, model.encode(x)[1].mean((2, 3)), atol=1e-6)

def test_grad_paths(model):
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    assert not phi(model, x, 0.1, n_noise=2).requires_grad
    phi_clean(model, x, block='enc3').pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert _hooks_count(model) == 0

def test_block_means_which(model):
    x = torch.rand(2, 3, 16, 16)
    a = block_means(model, x, ('mid', 'dec2'), which='both')
    assert list(a) == ['mid:in', 'mid', 'dec2:in', 'dec2']
    assert a['dec2:in'].shape == (2, 2 * model.cfg.widths[1])
    with pytest.raises(ValueError, match='which must be'): block_means(model, x, which='out')
    nm = noisy_block_means(model, x, 0.0, n_noise=1, blocks=('mid', 'dec2'), which='input')
    assert list(nm) == ['mid:in', 'dec2:in'] and torch.allclose(nm['mid:in'], a['mid:in'], atol=1e-6)

def test_chunked_data_contract():
    s = ImageSet(7)
    for d, lab in ((s.images, [-1] * 7), (s, s.labels.tolist()), (Pairs(s), s.labels.tolist()), (list(s.images), [-1] * 7)):
        c = ChunkedData(d)
        parts = list(c.chunks(3))
        assert [p[1] for p in parts] == [0, 3, 6]
        assert torch.equal(torch.cat([p[2] for p in parts]), s.images) and torch.cat([p[3] for p in parts]).tolist() == lab
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'): ChunkedData(torch.rand(3, 16, 16))
    with pytest.raises(TypeError, match='floats'): ChunkedData((s.images * 255).byte()).get(0, 2)

def test_resume_after_kill_equals_uninterrupted_run(model, tmp_path):
    s = ImageSet(36)
    full = extract_phi(model, s, tmp_path/'full', **ARGS)
    def kill(done, total):
        assert total == 4
        if done == 2: raise KeyboardInterrupt
    lazy = Pairs(s)
    with pytest.raises(KeyboardInterrupt): extract_phi(model, lazy, tmp_path/'run', **ARGS, callback=kill)
    # the fingerprint reads every image once (full content); φ then reads only the two chunks it computed
    assert [lazy.read.count(i) for i in range(36)] == [2] * 20 + [1] * 16
    half = PhiStore(tmp_path/'run')
    assert not half.complete and len(half) == 20 and half.phi(0.1, 'mid').shape == (20, model.cfg.widths[3])
    lazy.read.clear()
    resumed = extract_phi(model, lazy, tmp_path/'run', **ARGS, batch_size=7)  # batch size does not change values
    assert [lazy.read.count(i) for i in range(36)] == [1] * 20 + [2] * 16 and resumed.complete  # done chunks are not recomputed
    for sg in (0.1, 0.2):
        for b in ('enc2', 'mid'): np.testing.assert_allclose(resumed.phi(sg, b), full.phi(sg, b), atol=1e-6)
    assert np.array_equal(resumed.labels, s.labels.numpy())
    # the tensor form of the same data hashes differently (different name), so it is another extraction
    with pytest.raises(ValueError, match='data'): extract_phi(model, s.images, tmp_path/'run', **ARGS)

def test_phi_matches_direct_computation_with_chunk_seeds(model, tmp_path):
    s = ImageSet(25)
    st = extract_phi(model, s, tmp_path/'s', sigmas=(0.3,), n_noise=2, chunk=10, seed=7, progress=False)
    direct = torch.cat([phi(model, s.images[i:i + 10], 0.3, n_noise=2, generator=chunk_generator(7, i // 10)) for i in range(0, 25, 10)])
    np.testing.assert_allclose(st.phi(), direct.numpy(), atol=1e-6)
    assert chunk_generator(0, 1).initial_seed() != chunk_generator(1, 0).initial_seed()

def test_reuse_mismatch_and_overwrite(model, tmp_path):
    s = ImageSet(20)
    st = extract_phi(model, s, tmp_path/'s', **ARGS)
    calls = []
    h = model.enc1.register_forward_hook(lambda *a: calls.append(1))
    try: again = extract_phi(model, s, tmp_path/'s', **{**ARGS, 'batch_size': 3}, callback=lambda *a: calls.append('cb'))
    finally: h.remove()
    assert calls == [] and np.array_equal(again.phi(0.2, 'mid'), st.phi(0.2, 'mid'))
    for change, field in ((dict(sigmas=(0.3,)), 'sigmas'), (dict(n_noise=2), 'n_noise'), (dict(seed=1), 'seed'),
                          (dict(chunk=5), 'chunk'), (dict(blocks=('mid',)), 'blocks'), (dict(which='both'), 'which'),
                          (dict(tag='edited'), 'tag')):
        with pytest.raises(ValueError, match=field): extract_phi(model, s, tmp_path/'s', **{**ARGS, **change})
    with pytest.raises(ValueError, match='model_hash'): extract_phi(UNet(UNetConfig.scaled(8)), s, tmp_path/'s', **ARGS)
    same_name_other_images = ImageSet(20, seed=1); same_name_other_images.name = s.name
    with pytest.raises(ValueError, match='fingerprint'): extract_phi(model, same_name_other_images, tmp_path/'s', **ARGS)
    new = extract_phi(model, s, tmp_path/'s', **{**ARGS, 'sigmas': (0.3,), 'which': 'input'}, overwrite=True)
    assert new.sigmas == [0.3] and new.blocks == ['enc2:in', 'mid:in']
    assert sorted(p.name for p in (tmp_path/'s').iterdir()) == sorted(['.lock', MANIFEST, 'labels.npy', phi_file(0.3, 'enc2:in'), phi_file(0.3, 'mid:in')])
    with pytest.raises(ValueError, match='empty'): extract_phi(model, torch.rand(0, 3, 16, 16), tmp_path/'e', **ARGS)

def test_store_round_trip(model, tmp_path):
    s = ImageSet(23)
    with edit_output(model, {'mid': lambda o: o.index_fill(1, torch.tensor([0, 5]), 0.0)}):
        st = extract_phi(model, s, tmp_path/'s', **ARGS, tag='channels 0 and 5 zeroed')
    st = PhiStore(tmp_path/'s')  # a fresh reader
    man = json.loads((tmp_path/'s'/MANIFEST).read_text())
    assert man['complete'] and man['chunks_done'] == 3 and man['data']['length'] == 23 and man['classes'] == ['a', 'b', 'c']
    assert st.name == 'toy23-0' and len(st) == 23 and st.classes == ['a', 'b', 'c']
    f = st.phi(0.2, 'mid')
    assert isinstance(f, np.memmap) and f.dtype == np.float32 and f.shape == (23, model.cfg.widths[3]) and not f.flags.writeable
    assert st.phi(0.2) is not None and st.phi(sigma=0.2 + 1e-12).shape == f.shape  # 'mid' by default, σ matched with tolerance
    with pytest.raises(ValueError, match='pick one'): st.phi()
    with pytest.raises(KeyError, match=r'\[0.1, 0.2\]'): st.phi(0.5)
    with pytest.raises(KeyError, match="'enc2', 'mid'"): st.phi(0.1, 'dec1')
    t = st.table(0.1, 'enc2')
    assert isinstance(t, pd.DataFrame) and list(t.columns[:4]) == ['image_id', 'label', 'sigma', 'phi_0']
    assert t.shape == (23, 3 + model.cfg.widths[1]) and t['label'].tolist() == s.labels.tolist()
    np.testing.assert_array_equal(t.filter(like='phi_').to_numpy(), st.phi(0.1, 'enc2'))
    assert np.allclose(t['sigma'], 0.1)
    assert {0, 5} <= set(st.dead_channels(0.2).tolist())
    assert st.dead_channels(0.2).tolist() == np.flatnonzero(np.abs(f).max(0) == 0).tolist()
    assert st.dead_channels(0.2, chunk=4).tolist() == st.dead_channels(0.2).tolist()
    assert 'complete' in repr(st)
    with pytest.raises(FileNotFoundError, match='extract_phi'): PhiStore(tmp_path/'nothing')

def test_single_block_store_defaults(model, tmp_path):
    st = extract_phi(model, torch.rand(5, 3, 16, 16), tmp_path/'s', sigmas=(0.1,), n_noise=1, blocks=('enc1',), progress=False)
    assert st.phi().shape == (5, model.cfg.widths[0]) and (st.labels == -1).all()
