"""The widgets on any denoiser (issue 23), without a browser: the σ view calls D(y, σ), the slider shows the timestep used beside σ,
and every panel of the dashboard opens on a diffusers UNet2DModel with its scheduler."""
import threading
import numpy as np, pytest, torch
from sparsediff.data import ImageSet
from sparsediff.adapters import as_denoiser, sigma_to_timestep
from sparsediff.unet import UNet, UNetConfig
from sparsediff.widgets import SigmaExplorer, sigma_view, fixed_noise, activation_map, dashboard, noise_label

diffusers = pytest.importorskip('diffusers')
torch.set_num_threads(1)

@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch): monkeypatch.setenv('SPARSEDIFF_CACHE', str(tmp_path/'cache'))

@pytest.fixture(scope='module')
def D():
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                 down_block_types=('DownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'UpBlock2D')).eval()
    return as_denoiser(unet, diffusers.DDPMScheduler())

@pytest.fixture(scope='module')
def data():
    x = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return ImageSet(x, torch.arange(12) % 3, ['a', 'b', 'c'], 'noise')

def test_sigma_view_calls_the_adapter_at_sigma(D, data):
    x = data.images[0]; z = fixed_noise(x, 2, 0, 0)
    v = sigma_view(D, x, z, 0.3)
    t, s = sigma_to_timestep(0.3, D.alphas_cumprod)
    assert v['timestep'] == int(t) and v['sigma_t'] == pytest.approx(float(s))
    with torch.no_grad(): ref = D(x[None] + 0.3 * z[:1], 0.3)[0]
    torch.testing.assert_close(v['denoised'], ref)                          # x̂ at σ, not at some other timestep
    from sparsediff.phi import noisy_block_means
    ref_phi = noisy_block_means(D, x[None], 0.3, 2, ('mid',), noise=z[None])['mid'][0]   # φ over the same two draws
    torch.testing.assert_close(torch.as_tensor(v['phi']), ref_phi, rtol=1e-4, atol=1e-5)
    assert list(v['pr']) == list(D.blocks) and all(0 < p <= 1 for p in v['pr'].values())   # every canonical block: enc1, enc2, mid, dec2, dec1
    assert noise_label(v) == f"σ = 0.30 (t = {int(t)}, σ_t = {float(s):.3g})"
    assert activation_map(D, x, z, 0.3).shape == (16, 8, 8)   # mid_block at 8 px: the last down block keeps its size

def test_slider_shows_the_timestep(D, data):
    ex = SigmaExplorer(D, data, sigma=0.1, n_noise=1, device='cpu', prefetch=0)
    t1 = int(sigma_to_timestep(0.1, D.alphas_cumprod)[0])
    assert ex.timestep.value.startswith(f't = {t1} ') and f't = {t1}' in ex.figure.layout.title.text
    assert ex.timestep in ex.children[0].children                           # beside the slider
    before = np.array(ex.figure.data[2].y, dtype=float)
    ex.sigma.value = 0.6
    t6 = int(sigma_to_timestep(0.6, D.alphas_cumprod)[0])
    assert t6 > t1 and ex.timestep.value.startswith(f't = {t6} ') and not np.allclose(before, np.array(ex.figure.data[2].y, dtype=float))
    torch.manual_seed(0); blind = SigmaExplorer(UNet(UNetConfig.scaled(8)).eval(), data, n_noise=1, device='cpu', prefetch=0)
    assert blind.timestep.value == '' and '(t =' not in blind.figure.layout.title.text

def test_dashboard_opens_on_a_diffusers_model(D, data):
    db = dashboard(D, data, n_noise=1, n_clusters=3, device='cpu', background=False)
    assert db.wait(60) and db.progress.value == 1 and db.error is None
    assert db.phis.shape == (12, 16) and db.sigma_explorer.timestep.value.startswith('t = ')

def test_dashboard_opens_on_a_handful_of_images(D, data):
    "Fewer images than the neighbour browser's k + 1 (a handful of CIFAR-sized pictures in the browser test): every other image is a neighbour."
    for n in (5, 1):
        db = dashboard(D, data.subset(range(n)), n_noise=1, n_clusters=3, device='cpu', background=False)
        assert db.wait(60) and db.error is None and db.neighbours.k == n - 1
        by_phi, by_pixel = db.neighbours.neighbours(0)
        assert sorted(by_phi.tolist()) == sorted(by_pixel.tolist()) == list(range(1, n))
        assert f'/{n - 1} same class' in db.neighbours.figure.layout.annotations[1].text
