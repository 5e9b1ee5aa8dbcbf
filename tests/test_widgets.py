"""Widget logic without a browser: slider moves set `.value`, clicks are fed as plotly would send them, jobs run in threads."""
import json, threading, time, types
import numpy as np, pytest, torch
from sparsediff.data import ImageSet
from sparsediff.sampler import SamplerConfig
from sparsediff.hooks import ModuleNameError
from sparsediff.unet import UNet, UNetConfig
from sparsediff.widgets import (SigmaExplorer, ChannelExplorer, NeighbourBrowser, ReconstructionPanel, Dashboard, dashboard,
                                dataset_phi, fixed_noise, sigma_view, progress_fraction, trace_image, static_figure, KIND_COLOURS)

@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('SPARSEDIFF_CACHE', str(tmp_path/'cache'))

@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0); return UNet(UNetConfig.scaled(8)).eval()

@pytest.fixture(scope='module')
def data():
    "24 images in 3 classes: bright blobs at three positions, so the classes differ in pixels and in φ."
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.rand(24, 3, 16, 16, generator=g)
    labels = torch.arange(24) % 3
    for i, c in enumerate(labels.tolist()): x[i, :, 2 + 4*c:6 + 4*c, 2 + 4*c:6 + 4*c] += 0.8
    return ImageSet(x.clamp(0, 1), labels, ['a', 'b', 'c'], 'blobs')

class Counted(UNet):
    "A UNet that counts its forward passes and can be told to fail."
    def __init__(self, *a, **kw): super().__init__(*a, **kw); self.calls, self.fail = 0, False
    def forward(self, y):
        if self.fail: raise RuntimeError('the model failed on purpose')
        self.calls += 1; return super().forward(y)

def z_of(fig, i): return np.array(fig.data[i].z)
def y_of(fig, i): return np.array(fig.data[i].y, dtype=float)

def click(fig, trace: int, point: int):
    "Feed the figure a click on `point` of `trace`, as the plotly frontend sends it."
    fig._js2py_pointsCallback = dict(event_type='plotly_click', device_state=None, selector=None,
                                     points=dict(xs=[point], ys=[0.0], point_indexes=[point], trace_indexes=[trace]))

# σ explorer

def test_slider_redraws_and_moving_back_uses_the_cache(data):
    torch.manual_seed(0); m = Counted(UNetConfig.scaled(8)).eval()
    ex = SigmaExplorer(m, data, sigma=0.1, n_noise=2, device='cpu', prefetch=0)
    img, bars, title = trace_image(ex.figure.data[0]), y_of(ex.figure, 2), ex.figure.layout.title.text
    calls = m.calls
    ex.sigma.value = 0.6
    assert m.calls == calls + 1                                  # one batched forward pass per new σ
    assert not np.array_equal(img, trace_image(ex.figure.data[0])) and not np.allclose(bars, y_of(ex.figure, 2))
    assert ex.figure.layout.title.text != title and '0.60' in ex.figure.layout.title.text
    assert len(ex.figure.data[3].y) == 7 and all(0 < p <= 1 for p in ex.figure.data[3].y)
    ex.sigma.value = 0.1
    assert m.calls == calls + 1                                  # from the cache: no forward pass
    np.testing.assert_array_equal(trace_image(ex.figure.data[0]), img); np.testing.assert_allclose(y_of(ex.figure, 2), bars)
    assert 'cached' in ex.status.value and ex.error is None

def test_slider_steps_next_to_sigma_are_computed_ahead(data):
    torch.manual_seed(0); m = Counted(UNetConfig.scaled(8)).eval()
    ex = SigmaExplorer(m, data, sigma=0.3, n_noise=2, device='cpu', prefetch=2)
    assert ex.wait_prefetch(30)                                 # let the background thread finish its queue
    assert {(0, 0.28), (0, 0.29), (0, 0.31), (0, 0.32)} <= set(ex.cache) and not ex._pending
    calls = m.calls
    ex.sigma.value = 0.31                                       # the next slider step: already there
    assert m.calls == calls and 'cached' in ex.status.value and '0.31' in ex.figure.layout.title.text
    ref = SigmaExplorer(m, data, sigma=0.31, n_noise=2, device='cpu', prefetch=0)   # computed in place, same numbers
    np.testing.assert_array_equal(trace_image(ref.figure.data[0]), trace_image(ex.figure.data[0]))
    np.testing.assert_allclose(y_of(ref.figure, 2), y_of(ex.figure, 2), rtol=1e-6)
    assert ex.wait_prefetch(30)
    assert (0, 0.33) in ex.cache and (0, 0.27) not in ex.cache   # the new neighbours, two steps either side of 0.31
    with pytest.raises(ValueError, match='prefetch'): SigmaExplorer(m, data, prefetch=-1, device='cpu')

def test_a_jump_drops_the_queued_views_no_longer_near(model, data):
    ex = SigmaExplorer(model, data, sigma=0.1, n_noise=1, device='cpu', prefetch=1)
    gate = threading.Event(); ex._pool.submit(gate.wait)         # hold the background thread
    ex.sigma.value = 0.5                                          # queues 0.49 and 0.51 behind the gate
    ex.sigma.value = 0.9                                          # they are no longer near: dropped
    gate.set(); ex._pool.shutdown(wait=True)
    assert (0, 0.49) not in ex.cache and (0, 0.51) not in ex.cache and {(0, 0.89), (0, 0.91)} <= set(ex.cache)
    assert not ex._pending and ex.error is None

def test_cache_is_bounded(model, data):
    ex = SigmaExplorer(model, data, n_noise=1, cache_size=3, device='cpu', prefetch=0)
    for s in (0.1, 0.2, 0.3, 0.4, 0.5): ex.sigma.value = s
    assert len(ex.cache) == 3 and list(ex.cache)[-1] == (0, 0.5)

def test_noise_draw_is_fixed_per_image(model, data):
    a, b = (SigmaExplorer(model, data, sigma=0.3, n_noise=2, device='cpu') for _ in range(2))
    np.testing.assert_array_equal(trace_image(a.figure.data[0]), trace_image(b.figure.data[0]))
    c = SigmaExplorer(model, data, sigma=0.3, n_noise=2, seed=1, device='cpu')
    assert not np.array_equal(trace_image(a.figure.data[0]), trace_image(c.figure.data[0]))
    x = data.images[0]
    assert torch.equal(fixed_noise(x, 3, 0, 5), fixed_noise(x, 3, 0, 5)) and not torch.equal(fixed_noise(x, 3, 0, 5), fixed_noise(x, 3, 0, 6))

def test_sigma_view_matches_the_noisy_image_and_zero_sigma(model, data):
    x = data.images[1]; z = fixed_noise(x, 2, 0, 1)
    v = sigma_view(model, x, z, 0.25)
    torch.testing.assert_close(v['noisy'], x + 0.25 * z[0])
    torch.testing.assert_close(v['denoised'], model((x + 0.25 * z[0])[None])[0].detach())
    assert torch.equal(sigma_view(model, x, z, 0.0)['noisy'], x)

def test_errors_while_redrawing_show_in_the_widget(data):
    m = Counted(UNetConfig.scaled(8)).eval()
    ex = SigmaExplorer(m, data, n_noise=1, device='cpu')
    m.fail = True
    ex.sigma.value = 0.7                                        # must not raise into the widget machinery
    assert isinstance(ex.error, RuntimeError) and 'failed on purpose' in ex.status.value
    m.fail = False; ex.sigma.value = 0.8
    assert ex.error is None and 'failed' not in ex.status.value

def test_bad_inputs_raise_clear_errors(model, data):
    grey = ImageSet(data.images[:, :1], data.labels, data.classes, 'grey')
    with pytest.raises(ValueError, match='3-channel'): SigmaExplorer(model, grey, device='cpu')
    with pytest.raises(ValueError, match='n_noise'): SigmaExplorer(model, data, n_noise=0, device='cpu')
    with pytest.raises(ModuleNameError, match='did you mean'): SigmaExplorer(model, data, block='midd', device='cpu')
    with pytest.raises(TypeError, match='nn.Module'): SigmaExplorer('not a model', data, device='cpu')
    with pytest.raises(ValueError, match='empty'): SigmaExplorer(model, torch.zeros(0, 3, 16, 16), device='cpu')
    with pytest.raises(ValueError, match='row for row'): ChannelExplorer(model, data, store=np.ones((5, 64)), device='cpu')

def test_any_tensor_dataset_works(model):
    ex = SigmaExplorer(model, torch.rand(4, 3, 16, 16), n_noise=1, device='cpu')
    ex.image.value = 3
    assert ex.error is None
    ex.image.value = 4                                                  # out of range: said, not clamped
    assert isinstance(ex.error, IndexError) and '0 to 3' in ex.status.value and ex.image.value == 4

# φ of the dataset

def test_dataset_phi_is_extracted_once_and_reused(model, data, tmp_path):
    f1, s = dataset_phi(model, data, n_noise=2)
    stores = list((tmp_path/'cache'/'widgets').iterdir())
    f2, _ = dataset_phi(model, data, n_noise=2)
    assert s == 0.2 and f1.shape == (24, 64) and np.array_equal(f1, f2) and len(stores) == 1
    f3, s3 = dataset_phi(model, data, store=stores[0], block='mid')      # a store folder works too
    assert np.array_equal(f1, f3) and s3 == 0.2
    with pytest.raises(KeyError, match='not in this store'): dataset_phi(model, data, store=stores[0], sigma=0.5)

# channel explorer

def test_channel_pick_by_dropdown_and_by_click(model, data):
    phis = np.abs(np.random.default_rng(0).normal(size=(24, 64))).astype(np.float32)
    phis[:, 7] = 0                                                      # a dead channel
    ce = ChannelExplorer(model, data, store=phis, sigma=0.2, n_noise=1, k=4, device='cpu')
    assert 7 in ce.dead and ce.channel.value != 7                       # dead channels are not the default
    assert ce.figure.data[0].marker.color[7] == KIND_COLOURS['dead']
    grid = z_of(ce.figure, 3)
    ce.channel.value = 3
    assert ce.figure.data[0].marker.color[3] == KIND_COLOURS['selected'] and 'channel 3' in ce.figure.layout.title.text
    click(ce.figure, trace=0, point=11)
    assert ce.channel.value == 11 and ce.error is None
    top = np.argsort(-phis[:, 11])[:4]
    assert f"top 4 images for channel 11" in ce.figure.layout.annotations[3].text
    expected = ' '.join(data.classes[int(data.labels[i])] for i in top)
    assert ce.figure.layout.annotations[3].text.endswith(expected)
    assert not np.array_equal(grid, z_of(ce.figure, 3))

def test_default_channel_falls_back_to_a_live_channel_firing_on_the_image(model, data):
    phis = np.ones((24, 64), np.float32) + np.random.default_rng(1).random((24, 64), dtype=np.float32)   # common channels
    phis[:, 5] = 0; phis[12:, 5] = 3.0                                  # specialized, but silent on images 0–11
    phis[:, 6] = 0                                                      # dead
    ce = ChannelExplorer(model, data, store=phis, sigma=0.2, n_noise=1, k=4, image=0, device='cpu')
    c = ce.channel.value
    assert c not in (5, 6) and ce.kinds[c] == 'common' and phis[0, c] > 0, (c, ce.kinds[c])   # not a blank map
    ce2 = ChannelExplorer(model, data, store=phis, sigma=0.2, n_noise=1, k=4, image=15, device='cpu')
    assert ce2.channel.value == 5                                       # on an image it fires on, the specialized one

def test_default_channel_is_live_specialized_and_fires_on_the_image(model, data):
    phis = np.abs(np.random.default_rng(0).normal(size=(24, 64))).astype(np.float32)
    phis[:, 0] = 0; phis[3, 0] = 1e-5                                   # channel 0: fires once, faintly (PR 1/24, not a real choice)
    phis[:, 7] = 0                                                      # dead
    phis[:, 9] = 0; phis[:12, 9] = 2.0                                  # specialized: half the images
    ce = ChannelExplorer(model, data, store=phis, sigma=0.2, n_noise=1, k=4, image=0, device='cpu')
    c = ce.channel.value
    assert c not in (0, 7) and ce.kinds[c] == 'specialized' and phis[0, c] > 0, (c, ce.kinds[c])
    bars = y_of(ce.figure, 0)
    assert ce.kinds[7] == 'dead' and bars[7] > 0 and ce.figure.data[0].marker.color[7] == KIND_COLOURS['dead']   # a grey bar you can see
    assert 'dead' in ce.figure.data[0].customdata[7]
    ce.image.value = 24
    assert isinstance(ce.error, IndexError) and 'out of range' in ce.status.value

def test_activation_map_follows_the_image_and_is_cached(model, data):
    ce = ChannelExplorer(model, data, n_noise=1, device='cpu')
    m0 = z_of(ce.figure, 2)
    ce.image.value = 2
    assert set(ce.maps) == {0, 2} and z_of(ce.figure, 2).shape == (2, 2)     # 16×16 images: mid is 2×2
    assert not np.array_equal(m0, z_of(ce.figure, 2)) or np.allclose(m0, 0)

# neighbours and clusters

def test_neighbours_in_phi_share_the_class_when_phi_encodes_it(model, data):
    phis = np.eye(3, dtype=np.float32)[data.labels.numpy()] + 0.01 * np.random.default_rng(0).random((24, 3), dtype=np.float32)
    nb = NeighbourBrowser(model, data, store=phis, sigma=0.2, k=4, n_clusters=3, device='cpu')
    by_phi, by_pixel = nb.neighbours(5)
    assert 5 not in by_phi and 5 not in by_pixel and len(by_phi) == 4
    assert (data.labels[torch.as_tensor(by_phi)] == data.labels[5]).all()
    assert '4/4 same class' in nb.figure.layout.annotations[1].text
    before = z_of(nb.figure, 1); nb.image.value = 6
    assert not np.array_equal(before, z_of(nb.figure, 1))
    # three well separated φ groups: each KMeans cluster is one class
    for c in range(3):
        assert len(set(data.labels[torch.as_tensor(np.flatnonzero(nb.labels == c))].tolist())) == 1
    nb.cluster.value = (nb.cluster.value + 1) % 3
    assert 'images (' in nb.cluster_figure.layout.title.text and nb.error is None

# reconstruction panel

def gated_sampler(gate: threading.Event, calls: list):
    "A sampler that waits for `gate` between steps until cancelled or 50 steps pass."
    def sampler(model, targets, n, seed=0, device='cpu', callback=None):
        calls.append(model)
        x = torch.rand(len(targets) * n, *targets.shape[1:], generator=torch.Generator().manual_seed(seed))
        for t in range(1, 51):
            gate.wait(5)
            x = 0.9 * x + 0.1 * targets.repeat_interleave(n, 0)
            if callback(t, dict(x=x, total=50)) is False: break
        return types.SimpleNamespace(samples=x)
    return sampler

def test_second_press_while_running_starts_nothing(model, data):
    gate, calls = threading.Event(), []
    rp = ReconstructionPanel(model, data, n=2, sampler=gated_sampler(gate, calls), preview_every=5, device='cpu')
    rp.preview_seconds = float('inf')                                    # count the step-driven previews only
    empty = z_of(rp.figure, 1)
    rp.button.click()
    assert rp.running and rp.button.disabled and not rp.cancel_button.disabled
    rp.button.click(); assert rp.start() is False
    assert rp.jobs_started == 1 and 'already running' in rp.status.value
    gate.set(); assert rp.wait(30)
    assert len(calls) == 1 and calls[0] is not model                   # the job ran on its own copy of the model
    assert rp.error is None and rp.progress.value == 1 and rp.progress.bar_style == 'success'
    assert rp.previews == 11 and rp.steps_seen == 50               # step 1, then every 5th and not rp.button.disabled
    assert z_of(rp.figure, 1).shape == (18, 35, 3) and not np.array_equal(empty, z_of(rp.figure, 1))   # 2 samples of 16×16
    assert 'done' in rp.status.value and 'done' in rp.figure.layout.annotations[1].text

def test_cancel_stops_the_job(model, data):
    gate, calls = threading.Event(), []
    rp = ReconstructionPanel(model, data, sampler=gated_sampler(gate, calls), device='cpu')
    rp.start()
    gate.clear(); rp.cancel_button.click(); gate.set()
    assert rp.wait(30) and rp.steps_seen < 50
    assert 'cancelled' in rp.status.value and rp.progress.bar_style == 'warning' and rp.result is not None
    assert rp.start() and rp.wait(30) and rp.steps_seen == 50               # and it can run again after

def test_errors_in_the_job_show_in_the_panel(model, data):
    def broken(model, targets, n, **kw): raise RuntimeError('CUDA out of memory (pretend)')
    rp = ReconstructionPanel(model, data, sampler=broken, device='cpu')
    rp.button.click(); assert rp.wait(30)
    assert isinstance(rp.error, RuntimeError) and 'out of memory' in rp.status.value
    assert rp.progress.bar_style == 'danger' and not rp.button.disabled and rp.cancel_button.disabled
    rp.sampler = lambda model, targets, n, **kw: object()              # no .samples
    rp.start(); rp.wait(30)
    assert isinstance(rp.error, TypeError) and 'samples' in rp.status.value

def test_dict_callbacks_and_sigma_progress(model, data):
    "Samplers that call `callback(info)` with info['step'] and per-image σ drive the progress bar in log σ."
    seen = []
    def sampler(model, targets, n, seed=0, device='cpu', callback=None, progress=True):
        assert progress is False                                          # no tqdm bars from the background thread
        x = torch.rand(n, *targets.shape[1:])
        for t, s in enumerate(np.geomspace(1.0, 0.03, 20), 1):
            callback(dict(step=t, x=x, sigma=torch.tensor([s, s / 2]))); seen.append(rp.progress.value)
        return types.SimpleNamespace(samples=x, status='converged')
    rp = ReconstructionPanel(model, data, n=2, sampler=sampler, preview_every=4, device='cpu')
    rp.preview_seconds = float('inf')
    rp.start(); assert rp.wait(30) and rp.error is None
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and seen[0] == pytest.approx(0.0)
    assert rp.previews == 6                                             # step 1, then every 4th
    assert progress_fraction(3, dict(total=12)) == 0.25 and progress_fraction(3, {}) is None

def test_the_panels_hooks_do_not_meet(model, data):
    "Moving σ while a job runs is safe: the job's model is a copy, so neither sees the other's hooks."
    from sparsediff.phi import block_means
    done, seen = threading.Event(), []
    def sampler(model, targets, n, seed=0, device='cpu', callback=None):
        x = torch.rand(n, *targets.shape[1:])
        while not done.is_set():                                            # hooks on the job's model, nonstop
            seen.append(block_means(model, x, ['mid'])['mid'].shape)
            if callback(len(seen), dict(x=x)) is False: break
        return types.SimpleNamespace(samples=x)
    rp = ReconstructionPanel(model, data, n=3, sampler=sampler, device='cpu')
    ex = SigmaExplorer(model, data, n_noise=2, device='cpu')
    rp.start()
    while not seen: time.sleep(0.001)
    for s in np.linspace(0.05, 0.95, 19): ex.sigma.value = float(s)
    done.set(); assert rp.wait(30)
    assert ex.error is None and rp.error is None and set(seen) == {(3, 64)} and len(seen) > 19
    x = data.images[0]; assert ex.wait_prefetch(30)
    for (i, s), v in list(ex.cache.items()):                                      # every view is what the explorer alone computes
        np.testing.assert_allclose(v['phi'], sigma_view(model, x, fixed_noise(x, 2, 0, 0), s)['phi'], rtol=1e-5, atol=1e-6)
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0

def test_the_real_sampler_on_the_shipped_model(data):
    from sparsediff.unet import load_pretrained
    from sparsediff.data import fit_images
    digits = ImageSet(fit_images(data.images, 32), data.labels, data.classes, 'blobs32')
    rp = ReconstructionPanel(load_pretrained(), digits, n=2, preview_every=3, device='cpu', sampler_kwargs=dict(sigma_final=0.1))
    assert rp.start() and rp.wait(120) and rp.error is None, rp.status.value
    assert rp.result.status == 'converged' and rp.steps_seen == rp.result.steps and rp.previews >= 1
    assert rp.progress.value == 1 and z_of(rp.figure, 1).shape == (34, 67, 3)
    rp.start(); time.sleep(0.05); rp.cancel(); assert rp.wait(60)
    assert rp.result.status in ('cancelled', 'converged') and rp.error is None

def test_the_panel_runs_the_chosen_preset(data):
    from sparsediff.unet import load_pretrained
    from sparsediff.data import fit_images
    digits = ImageSet(fit_images(data.images, 32), data.labels, data.classes, 'blobs32')
    rp = ReconstructionPanel(load_pretrained(), digits, n=2, preview_every=10, device='cpu')
    assert [v for _, v in rp.preset.options] == ['default', 'thorough', 'authors_fixed', 'authors'] and rp.preset.value == 'default'
    rp.preset.value = 'thorough'; rp.preview_seconds = float('inf')
    assert rp.start() and rp.wait(120) and rp.error is None, rp.status.value
    assert rp.result.config['schedule'] == 'fixed' and rp.result.steps == 40 and rp.steps_seen == 40 and rp.previews == 5
    assert rp.result.evals['encoder'] == 2 * 40 * 6 and rp.progress.value == 1
    fixed = ReconstructionPanel(load_pretrained(), digits, sampler_kwargs=dict(config=SamplerConfig(guidance='none')), device='cpu')
    assert fixed.preset.disabled     # an explicit config wins, and the dropdown says so


# the dashboard

def test_dashboard_paints_before_phi_is_ready(model, data):
    "The layout and a progress bar come back at once; the panels that need φ of the dataset fill in from a thread."
    gate = threading.Event()
    import sparsediff.widgets as W
    real = W.dataset_phi
    def slow_phi(*a, **kw): gate.wait(30); return real(*a, **kw)
    W.dataset_phi = slow_phi
    try:
        t0 = time.perf_counter()
        db = dashboard(model, data, n_noise=1, n_clusters=3, device='cpu')
        assert time.perf_counter() - t0 < 2 and db.progress.value < 1 and db.channels is None
        for _ in range(1200):                                              # the σ explorer does not wait for φ
            if db.sigma_explorer is not None and db.slots[0].children == (db.sigma_explorer,): break
            time.sleep(0.05)
        assert db.slots[0].children == (db.sigma_explorer,) and db.channels is None and 'computing φ' in db.loading.value
        db.sigma_explorer.image.value = 5                                  # the reader moves on while φ is computed
        gate.set(); assert db.wait(60)
    finally: W.dataset_phi = real
    assert db.slots[1].children == (db.channels,) and db.progress.bar_style == 'success' and 'ready in' in db.loading.value
    assert db.channels.image.value == 5 and db.neighbours.image.value == 5

def test_dashboard_says_what_went_wrong(model, data):
    with pytest.raises(IndexError, match='out of range'): dashboard(model, data, image=99, device='cpu')
    db = dashboard(model, data, store=np.ones((5, 64)), n_noise=1, device='cpu')       # φ of the wrong length: shown, then raised
    with pytest.raises(ValueError, match='row for row'): db.wait(60)
    assert db.progress.bar_style == 'danger' and 'row for row' in db.loading.value

def test_dashboard_links_the_panels(model, data):
    db = dashboard(model, data, n_noise=1, n_clusters=3, device='cpu', sampler=gated_sampler(threading.Event(), []))
    assert db.wait(60) and db.progress.value == 1
    assert isinstance(db, Dashboard) and len(db.tabs.children) == 4 and db.slots[3].children == (db.reconstruction,) and db.phis.shape == (24, 64)
    db.sigma_explorer.image.value = 9
    assert [p.image.value for p in (db.channels, db.neighbours, db.reconstruction)] == [9, 9, 9]
    live = [c for c in range(64) if c not in db.channels.dead]
    click(db.sigma_explorer.figure, trace=2, point=live[2])              # a bar of the φ chart
    assert db.tabs.selected_index == 1 and db.channels.channel.value == live[2]
    assert 'blobs, 24 images' in db.children[0].value

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_runs_on_the_gpu(data):
    m = UNet(UNetConfig.scaled(8))
    ex = SigmaExplorer(m, data, n_noise=2, device='cuda')
    ex.sigma.value = 0.5
    assert ex.device.type == 'cuda' and next(m.parameters()).is_cuda and ex.error is None
    db = dashboard(m, data, n_noise=2, n_clusters=3, device='cuda', sampler=gated_sampler(threading.Event(), []))
    assert db.wait(120) and db.neighbours.error is None

def test_the_final_grid_is_drawn_in_a_new_figure_widget(model, data):
    "A browser view that missed the live previews still shows the result: the last grid goes out as a new widget's opening state."
    rp = ReconstructionPanel(model, data, n=2, sampler=lambda model, targets, n, seed=0, device='cpu', callback=None:
                             types.SimpleNamespace(samples=torch.rand(n, *targets.shape[1:])), device='cpu')
    first = rp.figure
    assert rp.start() and rp.wait(30)
    assert rp.figure is not first and first.comm is None and rp.figure in rp.children and first not in rp.children
    assert rp.figure.comm is not None and 'done' in rp.figure.layout.annotations[1].text
    assert trace_image(rp.figure.data[1]).shape == (18, 35, 3)                        # 2 samples of 16×16 in a row, 1-pixel borders
    np.testing.assert_array_equal(trace_image(rp.figure.data[0]), trace_image(first.data[0]))   # the target is kept

def test_static_figure_turns_png_sources_into_z(model, data):
    ex = SigmaExplorer(model, data, n_noise=1, device='cpu', prefetch=0)
    f = static_figure(ex.figure)
    assert ex.figure.data[0].source and f.data[0].source is None and f.data[0].z is not None
    np.testing.assert_array_equal(np.asarray(f.data[0].z, np.uint8), trace_image(ex.figure.data[0]))
    assert 'source' not in json.dumps(f.to_plotly_json(), default=str)                 # safe to store in a notebook
