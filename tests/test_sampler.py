"Tests of sparsediff.sampler and sparsediff.distance: error paths, guards, reproducibility and the estimator's invariants."
import math, warnings
import pytest
import torch
from torch import nn
from sparsediff.core import make_generator
from sparsediff.unet import UNet, UNetConfig
from sparsediff.sampler import (SamplerConfig, Counter, reconstruct, sample, gradient_step, adam_match, block_mean,
                                denoise_with_block, noise_scale, estimate_sigma, phi_error, noise_level_check)
from sparsediff.distance import sigma_integral, score_distances, embedding_fit, common_phi, sigma_grid


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return UNet(UNetConfig.scaled(16)).eval()   # widths 4/8/16/32: fast


@pytest.fixture(scope='module')
def targets():
    return torch.rand(2, 3, 16, 16, generator=make_generator(0))


class Constant(nn.Module):
    "A denoiser whose residual is always 0.5: σ never falls."
    def __init__(self): super().__init__(); self.mid = nn.Identity()
    def forward(self, y): return self.mid(y) - 0.5


class Amplifier(nn.Module):
    "A denoiser returning 3y: σ grows every step."
    def __init__(self): super().__init__(); self.mid = nn.Identity()
    def forward(self, y): return 3 * self.mid(y)


class TinyNet(nn.Module):
    "A model that is not our UNet, with its own block names."
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, 3, 3, padding=1)
    def forward(self, y): return y - 0.1 * self.head(self.body(y))


# --- configuration and arithmetic ---

@pytest.mark.parametrize('kw, msg', [(dict(sigma_final=1.0), 'σ_L'), (dict(sigma_final=0.5, sigma0=0.4), 'σ_L'),
                                     (dict(guidance='sgd'), 'guidance must be'), (dict(schedule='cosine'), 'schedule must be'),
                                     (dict(h0=0), 'h0'), (dict(beta=2), 'beta'), (dict(guidance_steps=2), 'share_forward=False'),
                                     (dict(n_levels=0), 'at least 1')])
def test_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg): SamplerConfig(**kw)


def test_noise_scale_shrinks_sigma_by_one_minus_beta_h():
    s, h, b = torch.tensor([0.3, 0.7]), 0.4, 0.1
    assert torch.allclose(((1 - h) ** 2 * s ** 2 + noise_scale(s, h, b) ** 2).sqrt(), (1 - b * h) * s)


def test_gradient_step_respects_trust_cap(model, targets):
    y = torch.rand(2, 3, 16, 16, generator=make_generator(1)).requires_grad_(True)
    with torch.enable_grad(): a = block_mean(model, y, 'mid', grad=True)
    aim = a.detach() + 10.0
    sigma = torch.tensor([0.1, 0.2])
    d = gradient_step(a, aim, y, sigma, eta=1.0, trust=0.2)
    assert (d.flatten(1).norm(dim=1) <= 0.2 * sigma * math.sqrt(y[0].numel()) * (1 + 1e-5)).all()


def test_shared_forward_gradient_equals_encoder_gradient(model):
    y = torch.rand(2, 3, 16, 16, generator=make_generator(2))
    y1, y2 = y.clone().requires_grad_(True), y.clone().requires_grad_(True)
    _, a1 = denoise_with_block(model, y1, 'mid')
    with torch.enable_grad(): a2 = block_mean(model, y2, 'mid', grad=True)
    g1, = torch.autograd.grad(a1.sum(), y1); g2, = torch.autograd.grad(a2.sum(), y2)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_adam_stops_each_image_at_tolerance(model):
    y, x_c = torch.rand(2, 3, 16, 16, generator=make_generator(3)), torch.rand(2, 3, 16, 16, generator=make_generator(4))
    aim, c = block_mean(model, x_c, 'mid'), Counter()
    out, before = adam_match(model, y, aim, SamplerConfig.authors(guidance_steps=50, tol=0.5), c)
    after = (block_mean(model, out, 'mid') - aim).pow(2).sum(1)
    start = (block_mean(model, y, 'mid') - aim).pow(2).sum(1)
    assert (after < start).all() and c['encoder'] < 2 * 50   # stopped before the cap
    assert before.shape == (2,)


# --- sampler runs ---

@pytest.mark.filterwarnings('ignore:sampler stopped')
def test_reconstruct_shapes_and_counts(model, targets):
    r = reconstruct(model, targets, n_samples=3, progress=False, max_steps=30)
    assert r.samples.shape == (6, 3, 16, 16) and r.target_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert r.sigma.shape == r.phi_error.shape == (r.steps, 6)
    assert r.evals['denoiser'] > 0 and r.evals['encoder'] > 0 and r.evaluations == r.evals['denoiser'] + r.evals['encoder']


def test_fixed_schedule_runs_every_level(model, targets):
    r = reconstruct(model, targets, config=SamplerConfig(schedule='fixed', n_levels=7), progress=False)
    assert r.steps == 7 and r.status == 'converged' and r.sigma.shape == (7, 2)
    assert r.evals['denoiser'] == 7 * 2


def test_seeds_reproduce(model, targets):
    kw = dict(n_samples=2, progress=False, config=SamplerConfig(schedule='fixed', n_levels=5))
    a, b = reconstruct(model, targets, seed=3, **kw), reconstruct(model, targets, seed=3, **kw)
    c = reconstruct(model, targets, seed=4, **kw)
    assert torch.equal(a.samples, b.samples) and not torch.allclose(a.samples, c.samples)


def test_callback_cancels_with_partial_result(model, targets):
    seen = []
    r = reconstruct(model, targets, progress=False, callback=lambda s: seen.append(s.step) or s.step < 3)
    assert seen == [1, 2, 3] and r.status == 'cancelled' and r.steps == 3 and 'callback' in r.message


def test_divergence_stops_with_a_message():
    with pytest.warns(RuntimeWarning, match='sampler stopped'):
        r = sample(Amplifier(), n=2, shape=(3, 8, 8), progress=False)
    assert r.status == 'diverged' and 'diverge_sigma' in r.message and r.steps < 30


def test_stall_stops_after_patience():
    with pytest.warns(RuntimeWarning):
        r = sample(Constant(), n=2, shape=(3, 8, 8), progress=False, patience=10)
    assert r.status == 'diverged' and 'not decreased for 10 steps' in r.message and r.steps <= 12


def test_max_steps_stops():
    with pytest.warns(RuntimeWarning, match='max_steps'):
        r = sample(Constant(), n=1, shape=(3, 8, 8), progress=False, max_steps=5)
    assert r.status == 'max_steps' and r.steps == 5


def test_bad_inputs(model, targets):
    with pytest.raises(ValueError, match='3-channel'): reconstruct(model, targets[:, :1])
    with pytest.raises(ValueError, match=r'\(B, C, H, W\) or \(C, H, W\)'): reconstruct(model, targets[0, 0])
    with pytest.raises(ValueError, match='NaN'): reconstruct(model, torch.full_like(targets, math.nan))
    with pytest.raises(TypeError, match='floats'): reconstruct(model, (targets * 255).byte())
    with pytest.raises(TypeError, match='torch.Tensor'): reconstruct(model, targets.numpy())
    with pytest.raises(ValueError, match='σ_L'): reconstruct(model, targets, sigma_final=2.0)
    with pytest.raises(KeyError, match="No module named 'middle'"): reconstruct(model, targets, block='middle')
    with pytest.raises(ValueError, match='n_samples'): reconstruct(model, targets, n_samples=0)
    with pytest.raises(ValueError, match='same shape'): phi_error(model, targets, targets[:1])


def test_generic_model_with_its_own_block(targets):
    net = TinyNet().eval()
    r = reconstruct(net, targets, config=SamplerConfig(schedule='fixed', n_levels=4, block='body'), progress=False)
    assert r.samples.shape == targets.shape and torch.isfinite(r.samples).all() and r.evals['encoder'] == 4 * 2
    with pytest.raises(KeyError, match='body'): reconstruct(net, targets, block='bodyy')


@pytest.mark.filterwarnings('ignore:sampler stopped')
def test_unguided_sample_and_noise_level_check(model, targets):
    r = sample(model, n=2, shape=(3, 16, 16), progress=False, max_steps=5)
    assert r.phi_error is None and r.evals['encoder'] == 0
    df = noise_level_check(model, targets, targets.flip(0), sigmas=(0.1, 0.5))
    assert list(df.columns) == ['sigma', 'image', 'before', 'after'] and len(df) == 4
    with pytest.raises(ValueError, match='guided'): noise_level_check(model, targets, targets, config=SamplerConfig(guidance='none'))


# --- distance ---

def test_sigma_integral_matches_gaussian_kl():
    grid = torch.logspace(-4, 3, 400)
    sq = 0.9 / (0.05 ** 2 + grid ** 2) ** 2      # ‖μ1 − μ2‖² = 0.9, s = 0.05: symmetrized KL = 0.9/0.0025 = 360
    assert abs(float(sigma_integral(sq, sq, grid)) - 360) < 0.5


def test_score_distances_invariants(model, targets):
    x = torch.cat([targets[:1], targets])          # a copy of target 0
    r = score_distances(model, x, sigmas=sigma_grid(1, 0.1, 3), n_samples=1, progress=False)
    assert r.d2.shape == (3, 3) and torch.allclose(r.d2, r.d2.T) and (r.d2 >= 0).all()
    assert float(r.d2[0, 1]) == 0 and float(r.d2[0, 2]) > 0 and (r.d2.diagonal() == 0).all()
    fit = embedding_fit(r.d2, common_phi(model, x, 0.2))
    assert len(fit.pairs) == 2 and set(map(tuple, fit.pairs[['i', 'j']].to_numpy().tolist())) == {(0, 2), (1, 2)}  # the copies' pair (0, 1) has identical φ and is left out
    phis = common_phi(model, x, 0.2)
    ratios = [float(r.d2[a, b] / ((phis[a] - phis[b]) ** 2).sum()) for a, b in ((0, 2), (1, 2))]
    assert math.isclose(fit.A, min(ratios), rel_tol=1e-5) and math.isclose(fit.B, max(ratios), rel_tol=1e-5)  # A, B: the extreme ratios
    with pytest.raises(ValueError, match='two targets'): score_distances(model, targets[:1], progress=False)
    with pytest.raises(ValueError, match='identical φ'): embedding_fit(torch.zeros(2, 2), torch.ones(2, 4))


# --- guidance on the shipped model ---

def test_guidance_lowers_phi_error_on_the_shipped_model():
    "φ-guided samples match their targets' φ better than unguided samples drawn with the same seed (MNIST digits, where guidance matters)."
    from sparsediff.unet import load_pretrained
    from sparsediff.data import load_mnist
    net = load_pretrained()
    digits = load_mnist('test').images[:3]
    cfg = SamplerConfig.thorough(n_levels=12)
    guided = reconstruct(net, digits, config=cfg, seed=0, progress=False)
    free = reconstruct(net, digits, config=SamplerConfig.thorough(n_levels=12, guidance='none'), seed=0, progress=False)
    eg, ef = phi_error(net, guided.denoised, digits, n_noise=4), phi_error(net, free.denoised, digits, n_noise=4)
    assert float(eg.median()) < 0.6 * float(ef.median()), (eg, ef)
    assert (eg < ef).all()


def test_show_displays_and_figure_returns(model, targets, monkeypatch):
    "`result.show()` displays the grid itself (a script showed nothing before) and returns nothing; `figure()` returns it."
    import plotly.graph_objects as go
    r = reconstruct(model, targets, n_samples=1, seed=0, progress=False, max_steps=3)
    shown = []
    monkeypatch.setattr(go.Figure, 'show', lambda self, *a, **k: shown.append(self))
    assert r.show(ncol=2, title='two') is None
    assert len(shown) == 1 and shown[0].layout.title.text == 'two' and len(shown[0].data) == 2
    fig = r.figure(ncol=2)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2 and len(shown) == 1   # figure() shows nothing
    assert r.figure(denoised=False).data[0].z.shape == (16, 16, 3)
