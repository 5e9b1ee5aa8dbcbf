"""Denoiser adapters (issue 23): σ ↔ timestep against the schedulers' own tables, ε/v/x₀ and EDM maths against exact stubs and
diffusers' formulas, canonical block names on a diffusers UNet, save_pretrained round trips, and the φ entry points on adapters."""
import json
import pytest
import torch
from torch import nn
from sparsediff.adapters import (PREDICTIONS, VPDenoiser, EDMDenoiser, as_denoiser, load_denoiser, sigma_to_timestep, table_sigmas,
                                 noise_table, describe_noise, denoise)
from sparsediff.hooks import module_names, resolve, run_with_cache, _hooks_count
from sparsediff.phi import phi, phi_clean, extract_phi, PhiStore, noisy_block_means, draw_noise, chunk_generator, MANIFEST
from sparsediff.unet import UNet, UNetConfig

diffusers = pytest.importorskip('diffusers')
torch.set_num_threads(1)

def tiny_unet2d(seed=0, **kw):
    "A tiny random-weight diffusers UNet2DModel on 16 px images (two down blocks)."
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                                 down_block_types=('DownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'UpBlock2D'),
                                 norm_num_groups=4, **kw).eval()

@pytest.fixture(scope='module')
def dnet(): return tiny_unet2d()

@pytest.fixture(scope='module')
def images(): return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))

# --- σ ↔ timestep -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('sched', [diffusers.DDPMScheduler(), diffusers.DDIMScheduler(beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012),
                                   diffusers.PNDMScheduler(), diffusers.EulerDiscreteScheduler(beta_schedule='squaredcos_cap_v2')],
                         ids=['ddpm', 'ddim', 'pndm', 'euler'])
def test_sigma_timestep_round_trip(sched):
    a = sched.alphas_cumprod.double()
    table = 0.5 * ((1 - a) / a).sqrt()                                    # the definition, from the scheduler's own ᾱ
    assert torch.allclose(table_sigmas(noise_table(sched)), table)
    t, s = sigma_to_timestep(table, sched.alphas_cumprod)
    assert torch.equal(t, torch.arange(len(table))) and torch.equal(s, table)
    mid = (table[:-1] + table[1:]) / 2                                    # half-way between two steps: either neighbour
    t, _ = sigma_to_timestep(mid[::97], sched.alphas_cumprod)
    assert ((t - torch.arange(len(mid))[::97]).abs() <= 1).all()
    with pytest.raises(ValueError, match=r"outside this scheduler's range: σ in \[0, "): sigma_to_timestep(float(table.max()) * 2, a)
    with pytest.raises(ValueError, match='outside'): sigma_to_timestep(-0.1, a)

def test_euler_sigmas_are_twice_ours():
    euler = diffusers.EulerDiscreteScheduler(timestep_spacing='leading'); euler.set_timesteps(30)
    t = euler.timesteps.long()
    assert torch.allclose(2 * table_sigmas(euler.alphas_cumprod)[t], euler.sigmas[:-1].double(), rtol=1e-5)
    back, _ = sigma_to_timestep(euler.sigmas[:-1] / 2, euler.alphas_cumprod)
    assert torch.equal(back, t)

def test_scheduler_without_a_table():
    with pytest.raises(ValueError, match='has no alphas_cumprod noise table'): noise_table(object())
    edm = as_denoiser(tiny_unet2d(), diffusers.EDMEulerScheduler())      # an EDM scheduler makes an EDM adapter instead
    assert isinstance(edm, EDMDenoiser) and edm.sigma_data == 0.5

# --- prediction types: a stub that knows the clean image -----------------------------------------------------------------
class Oracle(nn.Module):
    "Returns the exact ε, v or x₀ of the clean image `x0` (model units) for any x_t and t."
    def __init__(self, x0, alphas_cumprod, prediction_type):
        super().__init__(); self.x0, self.ac, self.p = x0, alphas_cumprod.float(), prediction_type
        self.mid = nn.Identity()
    def forward(self, x_t, t):
        a = self.ac[t].view(-1, 1, 1, 1); eps = (x_t - a.sqrt() * self.x0) / (1 - a).sqrt()
        return {'epsilon': eps, 'v_prediction': a.sqrt() * eps - (1 - a).sqrt() * self.x0, 'sample': self.x0}[self.p]

@pytest.mark.parametrize('prediction', PREDICTIONS)
@pytest.mark.parametrize('make', [diffusers.DDPMScheduler, diffusers.DDIMScheduler, diffusers.EulerDiscreteScheduler])
def test_exact_prediction_gives_the_clean_image(prediction, make, images):
    sched = make(prediction_type=prediction)
    D = as_denoiser(Oracle(2 * images - 1, sched.alphas_cumprod, prediction), sched)
    assert D.prediction_type == prediction
    y = images + 0.2 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    for sigma in (0.005, 0.05, 0.2, 1.0, 5.0, torch.tensor([0.01, 0.1, 1.0, 10.0])):
        assert torch.allclose(D(y, sigma), images, atol=2e-4), sigma

@pytest.mark.parametrize('prediction', PREDICTIONS)
def test_x0_matches_diffusers_step(prediction, dnet, images):
    sched = diffusers.DDPMScheduler(prediction_type=prediction, clip_sample=False)
    D = as_denoiser(dnet, sched)
    with torch.no_grad():
        for sigma in (0.05, 0.4):
            t = int(D.timestep(sigma)[0]); a = sched.alphas_cumprod[t]; x_t = a.sqrt() * (2 * images - 1)
            ref = sched.step(dnet(x_t, t).sample, t, x_t).pred_original_sample
            assert torch.allclose(D(images, sigma), (ref + 1) / 2, atol=1e-5)
    assert D.describe(0.4) == {'sigma': 0.4, 'timestep': t, 'sigma_t': float(table_sigmas(sched.alphas_cumprod)[t])}

def test_edm_against_diffusers_formulas(images):
    torch.manual_seed(0); F_ = tiny_unet2d(1)
    for p in ('epsilon', 'v_prediction'):
        edm = diffusers.EDMEulerScheduler(prediction_type=p, sigma_data=0.6)
        D = as_denoiser(F_, edm)
        assert isinstance(D, EDMDenoiser) and D.sigma_data == 0.6 and D.prediction_type == p
        with torch.no_grad():
            for sigma in (0.01, 0.3, 4.0):
                s, xm = torch.tensor(2 * sigma), 2 * images - 1
                raw = F_(edm.precondition_inputs(xm, s), edm.precondition_noise(s).expand(len(xm))).sample
                ref = edm.precondition_outputs(xm, raw, s)
                assert torch.allclose(D(images, sigma), (ref + 1) / 2, atol=1e-5)
    assert D.describe(0) == {'sigma': 0.0, 'timestep': None, 'sigma_t': 0.001}     # raised to σ_min = 0.002 on [−1, 1]
    with pytest.raises(ValueError, match=r"outside this model's range: σ in \[0, 40\]"): D(images, 41.0)

# --- block names and capture --------------------------------------------------------------------------------------------
def test_blocks_map_and_capture_mid(dnet, images):
    D = as_denoiser(dnet, diffusers.DDPMScheduler())
    assert D.blocks == ('enc1', 'enc2', 'mid', 'dec2', 'dec1')
    assert D.mid is dnet.mid_block and D.enc1 is dnet.down_blocks[0] and D.dec2 is dnet.up_blocks[0] and D.dec1 is dnet.up_blocks[1]
    names = module_names(D)
    assert 'mid' in names and 'net.mid_block' not in names and 'net.conv_in' in names
    assert resolve(D, ['mid_block', 'net.mid_block.resnets.0', 'up_blocks.1', 'time_embedding']) == ['mid', 'mid.resnets.0', 'dec1', 'net.time_embedding']
    with pytest.raises(KeyError, match="did you mean 'mid'"): resolve(D, 'midd')
    ran = []
    h = dnet.up_blocks.register_forward_hook(lambda *a: ran.append(1))
    try: out, c = run_with_cache(D, images, ['mid', 'mid_block'], stop=True, forward_kwargs={'sigma': 0.1})
    finally: h.remove()
    assert out is None and ran == [] and list(c) == ['mid'] and _hooks_count(D) == 0
    with torch.no_grad():                                                   # the same as the native call at that timestep
        t = int(D.timestep(0.1)[0]); a = D.alphas_cumprod[t].float()
        _, ref = run_with_cache(dnet, a.sqrt() * (2 * images - 1), 'mid_block', forward_kwargs={'timestep': t})
    assert torch.allclose(c['mid'], ref['mid_block'], atol=1e-6)
    with pytest.raises(ValueError, match=r"cannot map the blocks of Sequential.*top-level modules are \['0'\]"):
        as_denoiser(nn.Sequential(nn.Conv2d(3, 3, 1)), diffusers.DDPMScheduler())
    with pytest.raises(ValueError, match='give its scheduler'): as_denoiser(dnet)

# --- φ through the adapter ----------------------------------------------------------------------------------------------
def test_phi_on_adapter_matches_a_manual_loop(dnet, images):
    D = as_denoiser(dnet, diffusers.DDPMScheduler())
    f = phi(D, images, 0.1, n_noise=3, generator=torch.Generator().manual_seed(0))
    z = draw_noise(images, 3, torch.Generator().manual_seed(0))          # (B, 3, C, H, W)
    with torch.no_grad():
        ref = torch.stack([run_with_cache(D, images + 0.1 * z[:, j], 'mid', forward_kwargs={'sigma': 0.1})[1]['mid'].mean((2, 3))
                           for j in range(3)]).mean(0)
    assert f.shape == (4, 16) and torch.allclose(f, ref, atol=1e-5)
    assert phi(D, images, 0.1, n_noise=2, block='enc1').shape == (4, 8)   # a down block's (h, skips) output: its h
    per_image = phi(D, images, torch.tensor([0.1, 0.1, 0.5, 0.5]), n_noise=3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(per_image[:2], f[:2], atol=1e-6) and not torch.allclose(per_image[2:], f[2:])
    assert phi_clean(D, images).shape == (4, 16)
    with pytest.raises(ValueError, match="outside this scheduler's range"): phi(D, images, 500.0)

def test_phi_after_save_pretrained_and_load(dnet, images, tmp_path):
    ddpm = diffusers.DDPMScheduler(prediction_type='v_prediction')
    D = as_denoiser(dnet, ddpm)
    diffusers.DDPMPipeline(unet=dnet, scheduler=ddpm).save_pretrained(tmp_path/'pipe')
    dnet.save_pretrained(tmp_path/'bare'); ddpm.save_pretrained(tmp_path/'bare'/'scheduler')
    want = phi(D, images, 0.2, n_noise=2, generator=torch.Generator().manual_seed(3))
    for folder in ('pipe', 'bare'):
        L = load_denoiser(tmp_path/folder)
        assert isinstance(L, VPDenoiser) and L.prediction_type == 'v_prediction' and L.net is not dnet
        assert torch.equal(phi(L, images, 0.2, n_noise=2, generator=torch.Generator().manual_seed(3)), want)
    dnet.save_pretrained(tmp_path/'alone')
    with pytest.raises(ValueError, match='no scheduler beside it'): load_denoiser(tmp_path/'alone')
    with pytest.raises(FileNotFoundError, match='No model folder'): load_denoiser(tmp_path/'missing')

def test_blind_unet_is_unchanged(images, tmp_path):
    torch.manual_seed(0); u = UNet(UNetConfig.scaled(8)).eval()
    assert as_denoiser(u) is u
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(phi(as_denoiser(u), x, 0.2, n_noise=2, generator=torch.Generator().manual_seed(0)),
                       phi(u, x, 0.2, n_noise=2, generator=torch.Generator().manual_seed(0)))
    assert describe_noise(u, 0.2) == {'sigma': 0.2, 'timestep': None, 'sigma_t': 0.2}
    with torch.no_grad(): assert torch.equal(denoise(u, x, 0.2), u(x))
    s = extract_phi(u, x, tmp_path/'s', sigmas=(0.2,), n_noise=2, progress=False)
    m = json.loads((tmp_path/'s'/MANIFEST).read_text())
    assert m['denoiser'] is None and m['noise'] == [{'sigma': 0.2, 'timestep': None, 'sigma_t': 0.2}]
    del m['denoiser']; (tmp_path/'s'/MANIFEST).write_text(json.dumps(m))   # a store written before adapters existed still opens
    assert torch.equal(torch.from_numpy(extract_phi(u, x, tmp_path/'s', sigmas=(0.2,), n_noise=2, progress=False).phi(0.2).copy()),
                       torch.from_numpy(s.phi(0.2).copy()))

def test_extract_phi_records_timestep(dnet, images, tmp_path):
    D = as_denoiser(dnet, diffusers.DDIMScheduler())
    s = extract_phi(D, images, tmp_path/'s', sigmas=(0.05, 0.3), n_noise=2, chunk=2, progress=False)
    m = s.manifest
    assert m['blocks'] == ['mid'] and m['denoiser']['kind'] == 'vp' and m['denoiser']['scheduler'] == 'DDIMScheduler'
    assert [r['timestep'] for r in m['noise']] == [int(D.timestep(0.05)[0]), int(D.timestep(0.3)[0])]
    assert m['noise'][1]['sigma_t'] == pytest.approx(0.3, rel=0.02)
    z = draw_noise(images[:2], 2, chunk_generator(0, 0))                 # the store's own draws for chunk 0
    ref = noisy_block_means(D, images[:2], 0.3, 2, noise=z)['mid']
    assert torch.allclose(torch.from_numpy(s.phi(0.3)[:2].copy()), ref, atol=1e-5)
    with pytest.raises(ValueError, match='prediction_type'):                 # another adapter on the same weights is another extraction
        extract_phi(as_denoiser(dnet, diffusers.DDIMScheduler(prediction_type='sample')), images, tmp_path/'s', sigmas=(0.05, 0.3),
                    n_noise=2, chunk=2, progress=False)
    with pytest.raises(ValueError, match="outside this scheduler's range"):
        extract_phi(D, images, tmp_path/'t', sigmas=(1e4,), progress=False)

# --- analyses, controls and probes on an adapter --------------------------------------------------------------------------
def test_analyses_on_adapter(dnet, images):
    from sparsediff.analysis import block_sparsity, noise_stability
    D = as_denoiser(dnet, diffusers.DDPMScheduler())
    t = block_sparsity(D, images, 0.1)                                     # default blocks: the adapter's own
    assert list(dict.fromkeys(t.block)) == list(D.blocks) and set(t.which) == {'input', 'output'} and t.pr.between(0, 1).all()
    ch = t.groupby(['block', 'which']).channels.first()
    assert ch['enc1', 'input'] == 8 and ch['enc2', 'output'] == 16 and ch['dec1', 'output'] == 8   # inputs after conv_in; (h, skips) -> h
    st = noise_stability(D, images, sigmas=(0.05, 0.2), blocks=('mid', 'enc1'))
    assert set(st.block) == {'mid', 'enc1'} and len(st) == 2 * 2 * 4 and st.cosine.between(-1, 1 + 1e-6).all()

def test_random_init_controls_on_adapter(dnet, images):
    from sparsediff.controls import random_init
    from sparsediff.probe import random_copy
    D = as_denoiser(dnet, diffusers.DDPMScheduler(prediction_type='v_prediction'))
    R, P = random_init(D, seed=1), random_copy(D, seed=1)
    assert type(R) is VPDenoiser and R.prediction_type == 'v_prediction' and R.blocks == D.blocks and R.net is not dnet
    ref = random_init(dnet, seed=1)                                      # the network's own from_config, same seed
    assert all(torch.equal(a, b) for a, b in zip(R.net.state_dict().values(), ref.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(P.net.state_dict().values(), ref.state_dict().values()))
    assert not torch.equal(R.net.conv_in.weight, dnet.conv_in.weight)
    assert not torch.allclose(phi(R, images, 0.1, n_noise=1), phi(D, images, 0.1, n_noise=1))

def test_probe_capture_on_adapter(dnet, images):
    from sparsediff.probe import capture_maps, PIXELS
    D = as_denoiser(dnet, diffusers.DDPMScheduler())
    f = capture_maps(D, images, 0.2, ['mid', 'mid_block', PIXELS], seed=0)
    g = torch.Generator().manual_seed(0); y = images + 0.2 * torch.randn(images.shape, generator=g)   # the adapter's noise: image units
    with torch.no_grad(): _, c = run_with_cache(D, y, 'mid', forward_kwargs={'sigma': 0.2})
    assert torch.allclose(f[PIXELS], y) and torch.allclose(f['mid'], c['mid'], atol=1e-6) and list(f) == ['mid', PIXELS]

def test_conditional_unet_with_fixed_conditioning(images):
    torch.manual_seed(0)
    net = diffusers.UNet2DConditionModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                                         down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'),
                                         cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4).eval()
    text = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(0))        # e.g. an empty-prompt embedding, batch 1
    D = as_denoiser(net, diffusers.DDIMScheduler(), extra={'encoder_hidden_states': text})
    assert D.blocks == ('enc1', 'enc2', 'mid', 'dec2', 'dec1')
    f = phi(D, images, 0.1, n_noise=2, generator=torch.Generator().manual_seed(0))
    g = phi(as_denoiser(net, diffusers.DDIMScheduler(), extra={'encoder_hidden_states': -text}), images, 0.1, n_noise=2,
            generator=torch.Generator().manual_seed(0))
    assert f.shape == (4, 16) and not torch.allclose(f, g)                        # the conditioning reaches the middle block
    t = int(D.timestep(0.1)[0]); a = D.alphas_cumprod[t].float()
    z = draw_noise(images, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = torch.stack([run_with_cache(net, a.sqrt() * (2 * (images + 0.1 * z[:, j]) - 1), 'mid_block',
                                          forward_kwargs={'timestep': t, 'encoder_hidden_states': text.expand(4, -1, -1)})[1]['mid_block'].mean((2, 3))
                           for j in range(2)]).mean(0)
    assert torch.allclose(f, ref, atol=1e-5)
