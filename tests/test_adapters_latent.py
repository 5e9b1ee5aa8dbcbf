"""Latent models through the adapter (issue 23): a UNet2DConditionModel in latent space with the user's VAE or encode/decode functions,
φ read from the noisy latent, x̂ decoded to [0, 1] images; and the one-line errors for what cannot work."""
import pytest, torch
from torch import nn
from sparsediff.adapters import as_denoiser, LatentDenoiser, VPDenoiser, vae_codec, describe_noise
from sparsediff.hooks import run_with_cache
from sparsediff.phi import phi, draw_noise

diffusers = pytest.importorskip('diffusers')
torch.set_num_threads(1)

@pytest.fixture(scope='module')
def vae():
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 2, up_block_types=('UpDecoderBlock2D',) * 2,
                                   block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4, layers_per_block=1, sample_size=16,
                                   scaling_factor=0.5).eval()

@pytest.fixture(scope='module')
def cond():
    torch.manual_seed(1)
    return diffusers.UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                                          down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'),
                                          cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4).eval()

@pytest.fixture(scope='module')
def images(): return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))

EMB = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(0))       # a fixed conditioning, batch 1 (e.g. an empty prompt)

def test_latent_shapes_and_phi_in_latent_space(vae, cond, images):
    L = as_denoiser(cond, diffusers.DDIMScheduler(), vae=vae, encoder_hidden_states=EMB)
    assert isinstance(L, LatentDenoiser) and L.blocks == ('enc1', 'enc2', 'mid', 'dec2', 'dec1') and 'encoder_hidden_states' in L.extra
    with torch.no_grad():
        lat = vae.encode(2 * images - 1).latent_dist.mean * 0.5                  # the model's latent ℓ, scaled by the VAE's factor
        assert torch.allclose(L.encode(images), (lat + 1) / 2, atol=1e-6)
        u = L.inputs(images, 0.2, torch.Generator().manual_seed(0))
        assert u.shape == (3, 4, 8, 8) and L(u, 0.2).shape == (3, 3, 16, 16) and L(u, 0.2).min() >= 0 and L(u, 0.2).max() <= 1
    ran = []; h = vae.decoder.register_forward_hook(lambda *a: ran.append(1))
    try: f = phi(L, images, 0.2, n_noise=2, generator=torch.Generator().manual_seed(0))          # images in: φ of their noisy latents
    finally: h.remove()
    assert f.shape == (3, 16) and ran == []                                      # φ stops at mid: no up block, no decoder
    with pytest.raises(ValueError, match="takes images of 3 channels .*latents are not images"): phi(L, L.encode(images), 0.2, n_noise=1)
    t = int(L.timestep(0.2)[0]); a = L.alphas_cumprod[t].float(); z = draw_noise(L.encode(images), 2, torch.Generator().manual_seed(0))
    with torch.no_grad():                                                        # the native call on the noisy latent at that timestep
        ref = torch.stack([run_with_cache(cond, a.sqrt() * lat + a.sqrt() * 2 * 0.2 * z[:, j], 'mid_block',
                                          forward_kwargs={'timestep': t, 'encoder_hidden_states': EMB.expand(3, -1, -1)})[1]['mid_block'].mean((2, 3))
                           for j in range(2)]).mean(0)
    assert torch.allclose(f, ref, atol=1e-5)
    d = L.description()
    assert d['kind'] == 'latent' and d['latent'] == {'vae': 'AutoencoderKL', 'scaling_factor': 0.5} and d['scheduler'] == 'DDIMScheduler'
    assert describe_noise(L, 0.2)['timestep'] == t

class LatentOracle(nn.Module):
    "Returns the exact ε of the latent `l0` (model units) for any x_t and t."
    def __init__(self, l0, alphas_cumprod):
        super().__init__(); self.l0, self.ac = l0, alphas_cumprod.float(); self.mid = nn.Identity()
    def forward(self, x_t, t, encoder_hidden_states=None):
        a = self.ac[t].view(-1, 1, 1, 1); return self.mid((x_t - a.sqrt() * self.l0) / (1 - a).sqrt())

@pytest.mark.parametrize('codec', ['vae', 'functions'])
def test_exact_eps_recovers_the_latent(codec, vae, images):
    sched = diffusers.DDPMScheduler()
    enc = lambda x: x[:, :2, ::2, ::2] * 3 - 1.5                                 # any user functions: images -> latents -> images
    dec = lambda l: ((l + 1.5) / 3).repeat_interleave(2, -1).repeat_interleave(2, -2).repeat(1, 2, 1, 1)[:, :3].clamp(0, 1)
    kw = dict(vae=vae) if codec == 'vae' else dict(encode=enc, decode=dec)
    with torch.no_grad():
        l0 = vae_codec(vae)[0](images) if codec == 'vae' else enc(images)
        O = as_denoiser(LatentOracle(l0, sched.alphas_cumprod), sched, encoder_hidden_states=EMB, **kw)
        assert O.description()['latent'] == ({'vae': 'AutoencoderKL', 'scaling_factor': 0.5} if codec == 'vae' else {'encode': '<lambda>', 'decode': '<lambda>'})
        for s in (0.005, 0.1, 1.0, torch.tensor([0.02, 0.5, 4.0])):
            u = O.inputs(images, s if isinstance(s, float) else s.view(-1, 1, 1, 1), torch.Generator().manual_seed(1))
            assert torch.allclose(O.latent_x0(u, s), (l0 + 1) / 2, atol=1e-4), s
            assert torch.allclose(O(u, s), (vae_codec(vae)[1] if codec == 'vae' else dec)(l0), atol=1e-4), s

def test_latent_argument_errors_and_controls(vae, cond):
    with pytest.raises(ValueError, match='vae= .* or both encode= and decode='): as_denoiser(cond, diffusers.DDPMScheduler(), encode=lambda x: x)
    with pytest.raises(ValueError, match='not both'): as_denoiser(cond, diffusers.DDPMScheduler(), vae=vae, encode=lambda x: x, decode=lambda l: l)
    with pytest.raises(ValueError, match="latent VP models.*kind='edm'"): as_denoiser(cond, diffusers.EDMEulerScheduler(), vae=vae)
    from sparsediff.controls import random_init
    L = as_denoiser(cond, diffusers.DDPMScheduler(), vae=vae, encoder_hidden_states=EMB)
    R = random_init(L, seed=0)
    assert type(R) is LatentDenoiser and R.vae is vae and R.net is not cond and 'encoder_hidden_states' in R.extra   # the UNet is re-drawn, the VAE kept
    assert not torch.equal(R.net.conv_in.weight, cond.conv_in.weight)

# --- one-line errors for what cannot work ------------------------------------------------------------------------------------
def one_line(e) -> str:
    msg = str(e.value); assert '\n' not in msg, msg; return msg

def test_one_line_errors(cond, images):
    class NoTable: config = {}
    with pytest.raises(ValueError) as e: as_denoiser(cond, NoTable())
    assert 'NoTable has no alphas_cumprod noise table' in one_line(e)
    with pytest.raises(ValueError) as e: as_denoiser(nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU()), diffusers.DDPMScheduler())
    assert "cannot map the blocks of Sequential" in one_line(e) and "['0', '1']" in one_line(e)
    with pytest.raises(ValueError) as e: as_denoiser(cond, diffusers.DDPMScheduler(), blocks={'mid': 'middle'})
    assert "mid='middle' name no module" in one_line(e) and "'mid_block'" in one_line(e)
    D = as_denoiser(cond, diffusers.DDPMScheduler(), encoder_hidden_states=EMB)
    assert isinstance(D, VPDenoiser) and not isinstance(D, LatentDenoiser)
    with pytest.raises(ValueError) as e: D(torch.rand(1, 4, 8, 8), 1e3)
    assert "σ=1000 is outside this scheduler's range: σ in [0, 78.7] on [0, 1] images" in one_line(e)

# --- the sampler on latent models: it iterates latents and decodes them ---------------------------------------------------------
def test_guided_sampler_iterates_latents_and_decodes(vae, cond, images):
    from sparsediff.sampler import reconstruct, sample, scheduler_samples, SamplerConfig
    L = as_denoiser(cond, diffusers.DDPMScheduler(), vae=vae, encoder_hidden_states=EMB)
    cfg = SamplerConfig.thorough(n_levels=4, guidance_steps=2)
    r = reconstruct(L, images[:2], n_samples=1, config=cfg, seed=0, progress=False)
    assert r.samples.shape == (2, 3, 16, 16) and r.latents.shape == (2, 4, 8, 8) and 0 <= r.samples.min() and r.samples.max() <= 1
    with torch.no_grad(): assert torch.allclose(r.samples, L.decode(r.latents), atol=1e-6)
    with torch.no_grad(): lat = L.encode(images[:2])
    ref = reconstruct(L.in_latent_space(), lat, n_samples=1, config=cfg, seed=0, progress=False)   # the same loop, run by hand on latents
    assert (r.latents - ref.samples).abs().max() < 1e-5 and r.phi_error is not None and r.evaluations == ref.evaluations
    u = sample(L, 2, shape=(4, 8, 8), config=SamplerConfig.thorough(n_levels=3), seed=0, progress=False)
    assert u.samples.shape == (2, 3, 16, 16) and u.latents.shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match='4-channel'): sample(L, 1, shape=(3, 16, 16), progress=False)   # latent models sample latents
    s = scheduler_samples(L, 2, steps=3, seed=0, progress=False)
    assert s.samples.shape == (2, 3, 16, 16) and s.latents.shape == (2, 4, 8, 8)

def test_oracle_latent_model_reconstructs_its_latent(vae, images):
    "A network that returns the exact ε of a latent ℓ0: the fixed schedule ends on ℓ0, decoded to decode(ℓ0), whatever the noise."
    from sparsediff.sampler import reconstruct, SamplerConfig
    sched = diffusers.DDPMScheduler()
    with torch.no_grad(): l0 = vae_codec(vae)[0](images[:1])
    O = as_denoiser(LatentOracle(l0, sched.alphas_cumprod), sched, vae=vae, blocks={'mid': 'mid'})
    r = reconstruct(O, images[:1], config=SamplerConfig.thorough(n_levels=5, guidance='none'), seed=3, progress=False)
    assert torch.allclose(r.latents, (l0 + 1) / 2, atol=1e-4)
    with torch.no_grad(): assert torch.allclose(r.samples, vae_codec(vae)[1](l0), atol=1e-4)

# --- latent pipeline folders through load_denoiser and the report -----------------------------------------------------------------
def tiny_ldm(folder):
    "An LDMPipeline folder (UNet2DModel on the 4-channel latents of a VQModel, DDIM), random weights: what `CompVis/ldm-celebahq-256` is, small."
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                 down_block_types=('DownBlock2D',) * 2, up_block_types=('UpBlock2D',) * 2)
    vq = diffusers.VQModel(in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 2, up_block_types=('UpDecoderBlock2D',) * 2,
                           block_out_channels=(8, 16), latent_channels=4, num_vq_embeddings=32, norm_num_groups=4, layers_per_block=1, sample_size=16)
    diffusers.LDMPipeline(vqvae=vq, unet=unet, scheduler=diffusers.DDIMScheduler()).save_pretrained(folder)
    return folder

def test_latent_pipeline_folders_load(vae, cond, images, tmp_path):
    from sparsediff.adapters import load_denoiser
    L = load_denoiser(tiny_ldm(tmp_path/'ldm'))
    assert isinstance(L, LatentDenoiser) and type(L.vae).__name__ == 'VQModel' and L.description()['latent'] == {'vae': 'VQModel', 'scaling_factor': 1.0}
    with torch.no_grad():
        lat = L.vae.encode(2 * images - 1).latents                                 # LDMPipeline: no scaling factor, unquantized latents
        assert torch.allclose(L.encode(images), (lat + 1) / 2, atol=1e-6)
        assert torch.allclose(L.decode(L.encode(images)), ((L.vae.decode(lat).sample + 1) / 2).clamp(0, 1), atol=1e-6)
    sd = tmp_path/'sd'; cond.save_pretrained(sd/'unet'); vae.save_pretrained(sd/'vae'); diffusers.DDIMScheduler().save_pretrained(sd/'scheduler')
    (sd/'model_index.json').write_text('{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], '
                                       '"vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"]}')
    with pytest.raises(ValueError, match=r'conditional latent pipeline \(UNet2DConditionModel\): pass the fixed conditioning'): load_denoiser(sd)
    S = load_denoiser(sd, encoder_hidden_states=EMB)
    assert isinstance(S, LatentDenoiser) and S.description()['latent'] == {'vae': 'AutoencoderKL', 'scaling_factor': 0.5}
    with torch.no_grad(): assert torch.allclose(S.encode(images), (vae_codec(vae)[0](images) + 1) / 2, atol=1e-6)

def test_report_on_a_latent_pipeline_folder(tmp_path):
    "The report runs end to end on an LDM folder: φ from noisy latents, guided rows sampled in latent space and decoded."
    from test_report_data import FAST, write_images, claims
    from sparsediff.report import run_report, ReportConfig
    html, js = run_report(str(tiny_ldm(tmp_path/'ldm')), write_images(tmp_path/'imgs', 24), tmp_path/'out', ReportConfig(**FAST), progress=False)
    rep, c = claims(js)
    assert rep['meta']['denoiser']['kind'] == 'latent' and rep['meta']['denoiser']['latent']['vae'] == 'VQModel'
    assert len(c) >= 10 and all(v['verdict'] for v in c.values())
