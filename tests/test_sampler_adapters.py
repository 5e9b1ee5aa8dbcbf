"""The sampler on any denoiser (issue 23): a σ-ignoring adapter reproduces the blind path bit for bit, a VP adapter is told the σ of
each step and records its timestep, and `scheduler_samples` runs a diffusers scheduler's own loop."""
import pytest
import torch
from torch import nn
from sparsediff.core import make_generator
from sparsediff.unet import UNet, UNetConfig
from sparsediff.adapters import Denoiser, as_denoiser, sigma_to_timestep, table_sigmas
from sparsediff.sampler import SamplerConfig, reconstruct, sample, scheduler_samples, denoise, noise_level_check, step_size

diffusers = pytest.importorskip('diffusers')
torch.set_num_threads(1)

class Blind(Denoiser):
    "Our blind UNet as an adapter that is told σ and ignores it: every σ-passing path must leave the run unchanged."
    kind = 'blind-adapter'
    def forward(self, y, sigma): return self.net(y)
    def describe(self, sigma): return {'sigma': float(sigma), 'timestep': None, 'sigma_t': float(sigma)}

class Spy(nn.Module):
    "A diffusers-like network recording the timesteps it is called with."
    def __init__(self, net): super().__init__(); self.inner, self.seen = net, []
    def forward(self, x, t, **kw): self.seen.append(t.detach().cpu().clone()); return self.inner(x, t, **kw)

def tiny_unet2d(seed=0):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                 down_block_types=('DownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'UpBlock2D')).eval()

@pytest.fixture(scope='module')
def targets(): return torch.rand(2, 3, 16, 16, generator=make_generator(0))

@pytest.mark.filterwarnings('ignore:sampler stopped')
@pytest.mark.parametrize('cfg', [SamplerConfig(max_steps=15), SamplerConfig(schedule='fixed', n_levels=4),
                                 SamplerConfig.thorough(n_levels=3), SamplerConfig.authors_fixed(n_levels=2, guidance_steps=3, target_noise=2)],
                         ids=['adaptive', 'fixed', 'thorough', 'adam'])
def test_sigma_ignoring_adapter_matches_the_blind_path(cfg, targets):
    torch.manual_seed(0); net = UNet(UNetConfig.scaled(16)).eval()
    a, b = reconstruct(net, targets, 1, cfg, seed=0, progress=False), reconstruct(Blind(net), targets, 1, cfg, seed=0, progress=False)
    assert torch.equal(a.samples, b.samples) and torch.equal(a.denoised, b.denoised)
    assert a.noise is None and b.noise['timestep'].eq(-1).all()
    told = b.noise['sigma']
    if cfg.schedule == 'fixed': assert torch.allclose(told[:, 0], torch.tensor(cfg.levels(), dtype=told.dtype))
    else:                                                  # the level the last step aimed at: (1 − βh)·σ measured before it
        aimed = torch.stack([a.sigma[t - 1] * (1 - cfg.beta * step_size(t, cfg.h0, cfg.ramp)) for t in range(1, len(a.sigma))])
        assert told[0, 0] == cfg.sigma0 and torch.allclose(told[1:], aimed.double(), equal_nan=True)

def test_vp_adapter_is_told_each_level_and_records_its_timestep(targets):
    spy = Spy(tiny_unet2d()); D = as_denoiser(spy, diffusers.DDPMScheduler(), blocks={'mid': 'inner.mid_block'})
    cfg = SamplerConfig(schedule='fixed', n_levels=4, guidance='none')
    res = sample(D, 2, (3, 16, 16), config=cfg, seed=0, progress=False)
    t, s = sigma_to_timestep(torch.tensor(cfg.levels()), D.alphas_cumprod)
    assert torch.equal(torch.stack([v[0] for v in spy.seen]), t)        # one call per level, at that level's timestep
    assert torch.equal(res.noise['timestep'], t.view(-1, 1).expand(-1, 2)) and torch.equal(res.noise['sigma_t'][:, 1], s)
    spy.seen.clear()
    rec = reconstruct(D, targets, 1, SamplerConfig(schedule='fixed', n_levels=3), seed=0, progress=False)
    t3, _ = sigma_to_timestep(torch.tensor(SamplerConfig(schedule='fixed', n_levels=3).levels()), D.alphas_cumprod)
    assert {int(v) for x in spy.seen for v in x} == set(t3.tolist())   # targets, guidance and denoising all at the level's timestep
    assert torch.isfinite(rec.denoised).all() and rec.phi_error.shape == (3, 2)

def test_adapter_needs_sigma():
    D = as_denoiser(tiny_unet2d(), diffusers.DDPMScheduler())
    with pytest.raises(ValueError, match='give the noise level sigma'): denoise(D, torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match='takes 3-channel images'): sample(D, 1, (1, 16, 16), progress=False)

class GaussianEps(nn.Module):
    "The exact ε-predictor of data whose pixels are independent N(0, s²) in model units: E[ε | x_t] = √(1−ᾱ)·x_t / (ᾱs² + 1 − ᾱ)."
    def __init__(self, s, alphas_cumprod): super().__init__(); self.s, self.ac = s, alphas_cumprod.float(); self.mid = nn.Identity()
    def forward(self, x_t, t):
        a = self.ac[t.round().long()].view(-1, 1, 1, 1); return (1 - a).sqrt() * x_t / (a * self.s ** 2 + 1 - a)

@pytest.mark.parametrize('beta', [0.2, 0.5])
def test_adaptive_sampler_on_an_exact_denoiser_keeps_the_prior_spread(beta):
    "Told the level each update aims at, the exact denoiser of a Gaussian prior gives samples of the prior's spread (told the level before, 19–23 % too little)."
    sched = diffusers.DDPMScheduler(clip_sample=False)
    D = as_denoiser(GaussianEps(0.5, sched.alphas_cumprod), sched)          # pixels N(0.5, 0.25²) in [0, 1] units
    res = sample(D, 16, (1, 16, 16), config=SamplerConfig(guidance='none', init_mean=0.5, beta=beta), seed=0, progress=False)
    assert res.status == 'converged' and abs(res.denoised.std().item() / 0.25 - 1) < 0.1
    assert abs(res.denoised.mean().item() - 0.5) < 0.03

class Oracle(nn.Module):
    "Returns the exact ε of the clean image `x0` (model units) at any x_t and t."
    def __init__(self, x0, alphas_cumprod): super().__init__(); self.x0, self.ac = x0, alphas_cumprod.float(); self.mid = nn.Identity()
    def forward(self, x_t, t):
        a = self.ac[t.round().long()].view(-1, 1, 1, 1); return (x_t - a.sqrt() * self.x0) / (1 - a).sqrt()

@pytest.mark.parametrize('make', [diffusers.DDPMScheduler, diffusers.DDIMScheduler], ids=['ddpm', 'ddim'])
def test_scheduler_loop_with_exact_eps_lands_on_the_image(make, targets):
    sched = diffusers.DDPMScheduler(clip_sample=False)
    D = as_denoiser(Oracle(2 * targets - 1, sched.alphas_cumprod), sched)
    res = scheduler_samples(D, n=2, steps=10, scheduler=make, shape=(3, 16, 16), progress=False)
    assert torch.allclose(res.samples, targets, atol=1e-3) and torch.allclose(res.denoised, targets, atol=1e-3)
    assert res.evaluations == 20 and res.noise['timestep'][:, 0].tolist() == list(range(900, -1, -100))
    assert torch.allclose(res.noise['sigma_t'][:, 0], table_sigmas(sched.alphas_cumprod)[res.noise['timestep'][:, 0]])

def test_scheduler_samples_on_a_unet2d():
    D = as_denoiser(tiny_unet2d(), diffusers.DDPMScheduler())
    a, b = (scheduler_samples(D, n=2, steps=4, progress=False) for _ in range(2))
    assert a.samples.shape == (2, 3, 16, 16) and torch.equal(a.samples, b.samples)          # seeded: DDPM's own noise draws too
    assert not torch.equal(a.samples, scheduler_samples(D, n=2, steps=4, seed=1, progress=False).samples)
    assert a.config['scheduler'] == 'DDPMScheduler' and D.scheduler.num_inference_steps is None   # the model's scheduler untouched
    pndm = scheduler_samples(D, n=1, steps=4, scheduler=diffusers.PNDMScheduler, progress=False)  # no generator, no x̂₀
    assert torch.isfinite(pndm.samples).all() and torch.equal(pndm.denoised, pndm.samples)
    with pytest.raises(ValueError, match='noise table differs'):
        scheduler_samples(D, scheduler=diffusers.DDPMScheduler(beta_schedule='squaredcos_cap_v2'), progress=False)
    with pytest.raises(ValueError, match='needs a scheduler-based model'):
        scheduler_samples(UNet(UNetConfig.scaled(16)), progress=False)
