"""Every path keeps its tensors on the model's device: run on each device present (conftest `device`), and on the CPU under a
`meta` default device, so that any tensor made without an explicit device lands on `meta` and fails loudly when mixed with real ones."""
import json, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from sparsediff.core import as_device, available_devices, model_device
from sparsediff.unet import UNet, UNetConfig, save_model
from sparsediff.phi import phi, extract_phi, noisy_block_means
from sparsediff.sampler import reconstruct, phi_error, noise_level_check, sample
from sparsediff.report import run_report, ReportConfig
from sparsediff.train import train, TrainConfig
from sparsediff.probe import capture_maps

SMALL = dict(n_noise=2, n_sparsity=32, stability_sigmas=(0.1, 0.5), n_clusters=3, n_guided_targets=2, n_guided_samples=1)

def tiny(device='cpu'):
    torch.manual_seed(0); return UNet(UNetConfig.scaled(16)).to(device).eval()

def images(n=6, size=16): return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))

def test_auto_device():
    assert as_device('auto') == as_device(None) and as_device('auto').type == ('cuda' if torch.cuda.is_available() else as_device('auto').type)
    assert available_devices() == ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])

def test_phi_follows_the_model(device):
    m, x = tiny(device), images()                          # x stays on the CPU
    f = phi(m, x, 0.2, n_noise=3, generator=torch.Generator().manual_seed(1), amp='off')
    assert f.device == model_device(m)
    ref = phi(tiny('cpu'), x, 0.2, n_noise=3, generator=torch.Generator().manual_seed(1))
    assert ((f.cpu() - ref).norm() / ref.norm()) < (1e-6 if device == 'cpu' else 5e-3)   # same CPU draws; CUDA convolutions may use TF32
    fa = phi(m, x, 0.2, n_noise=3, generator=torch.Generator().manual_seed(1))   # amp='auto': bf16 on CUDA
    assert ((fa.cpu() - ref).norm() / ref.norm()) < 2e-2

def test_sampler_and_phi_error_follow_the_model(device):
    m, x = tiny(device), images(2)
    r = reconstruct(m, x, n_samples=1, seed=0, progress=False, max_steps=5)   # device=None: the model's device
    assert r.samples.device.type == 'cpu' and next(m.parameters()).device == model_device(m)
    err = phi_error(m, r.denoised, x, n_noise=2)           # CPU samples, model on device: the `demo --device cuda` crash
    assert err.shape == (2,) and torch.isfinite(err).all()
    t = noise_level_check(m, x, x, sigmas=(0.1,))
    assert len(t) == 2 and np.isfinite(t[['before', 'after']].to_numpy()).all()

def test_report_on_device(device, tmp_path):
    d = tmp_path/'model'; save_model(tiny(), d)
    data = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    from sparsediff.data import ImageSet
    s = ImageSet(data, torch.arange(24) % 2, ['a', 'b'], 'rand')
    h, j = run_report(str(d), s, tmp_path/'out', ReportConfig(**SMALL, device=device), progress=False)
    assert json.loads(j.read_text())['meta']['device'] == str(as_device(device))

def test_cli_report_on_device(device, tmp_path):
    "`sparsediff report --device <device>` end to end (the `demo --device cuda` path: report → semantics → sampler)."
    from PIL import Image
    d = tmp_path/'model'; save_model(tiny(), d)
    rng = np.random.default_rng(0)
    for cls, lo in (('bright', 150), ('dark', 0)):
        (tmp_path/'imgs'/cls).mkdir(parents=True)
        for i in range(12): Image.fromarray(rng.integers(lo, lo + 100, (32, 32, 3), dtype=np.uint8)).save(tmp_path/'imgs'/cls/f'{i}.png')
    r = subprocess.run([sys.executable, '-m', 'sparsediff.cli', 'report', '--model', str(d), '--data', str(tmp_path/'imgs'),
                        '--out', str(tmp_path/'o'), '--device', device, '--quiet'], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path/'o'/'report.json').read_text())['meta']['device'] == device

def test_train_on_device(device, tmp_path):
    class Const:
        def batch(self, step, n): return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(step))
    m = train(tmp_path, UNetConfig.scaled(16), TrainConfig(steps=2, batch_size=4, log_every=1, ckpt_every=2, accumulate=2), data=Const(),
              device=device, progress=False)
    assert model_device(m).type == device
    from sparsediff.train import read_log
    log = read_log(tmp_path)
    assert len(log) == 2 and (log.img_per_s > 0).all() and (log.flop_per_s > 0).all() and (log.frac_peak > 0).all()

def test_probe_capture_follows_the_model(device):
    m, x = tiny(device), images(3)
    f = capture_maps(m, x, 0.1, ['enc2', 'pixels'])        # device=None: the model's
    assert f['enc2'].shape[:2] == (3, 8) and f['enc2'].device.type == 'cpu'

def test_no_tensor_without_a_device(tmp_path):
    "Under a `meta` default device, a tensor made without `device=` is on meta and mixing it with the CPU model raises."
    m, x = tiny('cpu'), images(3)
    with torch.device('meta'):
        f = phi(m, x, 0.2, n_noise=2, generator=torch.Generator(device='cpu').manual_seed(0))
        a = noisy_block_means(m, x, torch.full((3,), 0.1, device='cpu'), 2, ('enc1', 'mid'), 'both')
        r = reconstruct(m, x[:1], n_samples=1, seed=0, progress=False, max_steps=3)
        e = phi_error(m, r.denoised, x[:1], n_noise=2)
        t = noise_level_check(m, x[:1], x[:1], sigmas=(0.1,))
        u = sample(m, 1, (3, 16, 16), seed=0, progress=False, max_steps=3)
        from sparsediff.widgets import sigma_view, fixed_noise
        v = sigma_view(m, x[0], fixed_noise(x[0], 2, 0, 0), 0.3)
        from sparsediff.train import train_step, _autocast
        opt = torch.optim.Adam(m.parameters(), 1e-4)
        loss = train_step(m, opt, x, TrainConfig(warmup_steps=1, accumulate=2), 0, torch.Generator(device='cpu').manual_seed(0), _autocast(torch.device('cpu'), 'off')[0])
    assert np.isfinite(loss) and np.isfinite(v['phi']).all() and len(t) == 1 and torch.isfinite(u.samples).all()
    assert f.device.type == 'cpu' and all(v.device.type == 'cpu' for v in a.values()) and e.device.type == 'cpu'
    assert torch.isfinite(r.samples).all()

def test_extract_phi_on_device(device, tmp_path):
    "(Not under `meta`: the DataLoader itself makes its base seed on the default device.)"
    m, x = tiny(device), images(5)
    st = extract_phi(m, x, tmp_path/'s', sigmas=(0.1, 0.2), n_noise=2, chunk=2, progress=False, amp='off')
    f = np.asarray(st.phi(0.1)); assert f.shape == (5, 32) and np.isfinite(f).all() and st.complete
    if device == 'cpu':   # CPU draws: equal to phi with the per-chunk generators, with or without workers
        from sparsediff.phi import chunk_generator
        direct = torch.cat([phi(m, x[i:i + 2], 0.1, n_noise=2, generator=chunk_generator(0, i // 2)) for i in range(0, 5, 2)])
        assert np.allclose(f, direct.numpy(), atol=1e-6)
        st2 = extract_phi(m, x, tmp_path/'w', sigmas=(0.1, 0.2), n_noise=2, chunk=2, progress=False, workers=2)
        assert np.array_equal(np.asarray(st2.phi(0.1)), f)
