"""Scenes and per-pixel probes: exact labels, probe recovery of planted signals, controls, interventions, and diffusers models."""
import math, pytest, torch
from torch import nn
from sparsediff.scenes import render_scenes, render, sample_scenes, SceneStream, Scenes, TASKS
from sparsediff.probe import (PIXELS, POSITION, BlindNoise, DDPMNoise, to_map, position_map, capture_maps, PixelProbe, fit_probe,
                              evaluate_probe, dice, correlations, random_copy, probe_sweep, capture_steps, steer, steering_edit,
                              plot_heatmap, plot_curves)
from sparsediff.hooks import run_with_cache, _hooks_count
from sparsediff.unet import UNet, UNetConfig

torch.set_num_threads(1)

@pytest.fixture(scope='module')
def scenes(): return render_scenes(96, size=16, seed=0)

@pytest.fixture(scope='module')
def held(): return render_scenes(48, size=16, seed=1)

@pytest.fixture(scope='module')
def unet(): torch.manual_seed(0); return UNet(UNetConfig.scaled(8)).eval()

# --- scenes -----------------------------------------------------------------------------------------------------------
def test_scene_labels_are_exact_and_seeded(scenes):
    assert torch.allclose(scenes.images, (scenes.albedo * scenes.shading[:, None]).clamp(0, 1), atol=1e-6)
    assert torch.equal(scenes.mask, scenes.objects >= 0) and (scenes.depth > 0).all()
    again = render(sample_scenes(96, seed=0), size=16, chunk=10)
    assert torch.equal(again.mask, scenes.mask) and torch.allclose(again.depth, scenes.depth, atol=1e-5)
    assert not torch.equal(render_scenes(96, size=16, seed=5).mask, scenes.mask)
    k = scenes.params['kind']; assert ((k >= 0).sum(1) >= 1).all() and ((k >= 0).sum(1) <= 4).all()

def test_objects_never_hit_beyond_their_slots():
    s = render_scenes(32, size=16, seed=3, min_objects=1, max_objects=1)
    assert s.objects.max() == 0 and (s.params['kind'][:, 1:] == -1).all()

@pytest.mark.parametrize('call, msg', [(lambda: sample_scenes(0), 'at least one'), (lambda: sample_scenes(2, min_objects=0), 'min_objects'),
                                       (lambda: render_scenes(2, size=2), 'size'), (lambda: render_scenes(2, antialias=2), 'odd')])
def test_scene_errors(call, msg):
    with pytest.raises(ValueError, match=msg): call()

def test_scene_stream_resumes_identically():
    a, b = SceneStream(16, seed=0), SceneStream(16, seed=0)
    x = [a.batch(s, 4) for s in range(10)]
    assert torch.equal(b.batch(9, 4), x[9]) and torch.equal(b.batch(3, 4), x[3]) and not torch.equal(x[0], x[1])

# --- probes recover planted signals -----------------------------------------------------------------------------------
def test_probe_recovers_a_planted_linear_signal(scenes, held):
    "Features that hold the labels linearly (plus distractors) must give near-perfect held-out scores; the distractors alone must not."
    def feats(s, seed):
        g = torch.Generator().manual_seed(seed); noise = torch.randn(len(s), 3, 16, 16, generator=g)
        sig = torch.stack([s.mask.float() * 2 - 1, s.depth, s.shading], 1)             # (N, 3, H, W)
        mix = torch.tensor([[1., 0.5, 0.], [0., 1., 0.3], [0.2, 0., 1.]])
        return torch.cat([torch.einsum('ij,njhw->nihw', mix, sig), noise], 1) * 3 + 7   # arbitrary scale and offset
    probe = fit_probe(feats(scenes, 0), scenes, epochs=40, lr=3e-2)
    r = evaluate_probe(probe, feats(held, 1), held)
    assert r['mask_dice'] > 0.95 and r['mask_auc'] > 0.99 and r['depth_pearson'] > 0.98 and r['shading_pearson'] > 0.95
    assert r['depth_r2'] > 0.95 and r['mask_cross_entropy'] < 0.15
    noise_only = lambda s, seed: feats(s, seed)[:, 3:]
    r0 = evaluate_probe(fit_probe(noise_only(scenes, 0), scenes, epochs=10), noise_only(held, 1), held)
    assert r0['depth_r2'] < 0.05 and abs(r0['mask_auc'] - 0.5) < 0.05 and r0['mask_dice'] < 0.5

def test_probe_reads_coarse_maps_through_upsampling(scenes):
    "A 4x4 feature map equal to the area-downsampled depth gives a good depth read at 16x16."
    f = torch.nn.functional.adaptive_avg_pool2d(scenes.depth[:, None], 4)
    r = evaluate_probe(fit_probe(f, scenes, 'depth', epochs=30, lr=3e-2), f, scenes)
    assert r['depth_pearson'] > 0.9 and set(r) == {'depth_pearson', 'depth_spearman', 'depth_r2', 'depth_spearman_objects'}

def test_early_stopping_keeps_best_weights(scenes):
    p = fit_probe(position_map(96, (16, 16)), scenes, epochs=50, patience=2, lr=0.3)
    assert len(p.history) < 50 and {'val_mask', 'val_depth', 'val_shading'} <= set(p.history.columns)

def test_probe_errors(scenes):
    with pytest.raises(ValueError, match='Unknown task'): PixelProbe(3, ['edges'])
    with pytest.raises(KeyError, match='no labels'): fit_probe(torch.zeros(4, 2, 4, 4), {'mask': scenes.mask[:4]}, 'depth')
    with pytest.raises(ValueError, match='labels'): fit_probe(torch.zeros(5, 2, 4, 4), scenes.subset(range(4)))
    with pytest.raises(ValueError, match=r'\(N, C, h, w\)'): fit_probe(torch.zeros(4, 2, 4), scenes.subset(range(4)))
    with pytest.raises(ValueError, match='Unknown task'): scenes.target('normals')

def test_metrics_edge_cases():
    t = torch.rand(3, 5, 5)
    assert correlations(t, t)['spearman'] == pytest.approx(1) and correlations(-t, t)['pearson'] == pytest.approx(-1)
    assert math.isnan(correlations(t, t, torch.zeros(3, 5, 5, dtype=torch.bool))['spearman'])  # no object pixels
    assert dice(torch.ones(4), torch.zeros(4)) == 0

# --- capture, controls, sweeps on our UNet ----------------------------------------------------------------------------
def test_capture_maps_and_controls(unet, scenes):
    f = capture_maps(unet, scenes.images[:8], 0.2, ['enc2', 'dec1', PIXELS, POSITION], batch_size=3)
    assert f['enc2'].shape == (8, 16, 8, 8) and f['dec1'].shape == (8, 8, 16, 16) and f[POSITION].shape == (8, 2, 16, 16)
    assert torch.allclose(f[PIXELS], BlindNoise().inputs(scenes.images[:8], 0.2, torch.Generator().manual_seed(0)))
    assert _hooks_count(unet) == 0
    with pytest.raises(KeyError, match="did you mean"): capture_maps(unet, scenes.images[:2], 0.1, 'dec_1')

def test_random_copy(unet):
    trained = UNet(UNetConfig.scaled(8)); trained.load_state_dict({k: v + 1 for k, v in unet.state_dict().items()})
    a, b = random_copy(trained, seed=3), random_copy(trained, seed=3)
    assert torch.equal(a.mid[0][0].weight, b.mid[0][0].weight) and not torch.equal(a.mid[0][0].weight, trained.mid[0][0].weight)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 1))     # no config: deep copy + reset_parameters
    c = random_copy(plain, seed=1)
    assert not torch.equal(c[0].weight, plain[0].weight) and torch.equal(c[0].weight, random_copy(plain, seed=1)[0].weight)

def test_sweep_table_and_figures(unet, scenes, held):
    t = probe_sweep({'net': unet}, scenes, held, ['mid', 'dec1'], [0.1, 0.4], epochs=2, progress=False)
    assert len(t) == 2 * 2 + 2 * 2 and set(t.model) == {'net', PIXELS, POSITION}
    assert (t[t.layer == 'dec1'].resolution == '16x16').all()
    assert plot_heatmap(t, 'depth_spearman', 'net').data[0].z.shape == (2, 2)
    assert len(plot_curves(t, 'mid').data) == 3 * 3
    with pytest.raises(ValueError, match='Unknown control'): probe_sweep({'net': unet}, scenes, held, 'mid', [0.1], controls=('noise',))

# --- intervention -----------------------------------------------------------------------------------------------------
def test_steering_makes_the_probe_read_the_target(unet, scenes):
    f = capture_maps(unet, scenes.images, 0.1, 'dec2')['dec2']
    p = fit_probe(f, scenes, ('mask', 'shading'), epochs=5)
    goal = scenes.mask[:6].flip(-1)
    y = BlindNoise().inputs(scenes.images[:6], 0.1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out0, c0 = run_with_cache(unet, y, 'dec2')
        out1, c1 = run_with_cache(unet, y, 'dec2', edit={'dec2': steering_edit(p, goal)})
    low = torch.nn.functional.interpolate(goal.float()[:, None], size=(8, 8), mode='area')[:, 0] >= 0.5
    w, b = p.direction('mask')
    read = torch.einsum('bchw,c->bhw', c1['dec2'], w) + b
    assert ((read >= 4 - 1e-3) == low).all()                                     # every position reads the target, with margin
    assert not torch.allclose(out0, out1) and _hooks_count(unet) == 0
    s = steer(c0['dec2'], p, torch.full((6, 16, 16), 0.7), 'shading')
    assert torch.allclose(p.predict(s, (16, 16))['shading'], torch.full((6, 16, 16), 0.7), atol=1e-4)
    with pytest.raises(TypeError, match='module outputs'): steering_edit(p, goal)((torch.zeros(1),))

# --- diffusers ----------------------------------------------------------------------------------------------------------
diffusers = pytest.importorskip('diffusers')
SELF_ATTN = 'up_blocks.3.attentions.0.transformer_blocks.0.attn1.to_out.0'

@pytest.fixture(scope='module')
def sd_like():
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 8, 16, 16),
        down_block_types=('CrossAttnDownBlock2D',) * 3 + ('DownBlock2D',), up_block_types=('UpBlock2D',) + ('CrossAttnUpBlock2D',) * 3,
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4).eval()

def test_ddpm_noise_matches_a_diffusers_scheduler():
    s = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012)
    a, b = DDPMNoise.from_scheduler(s), DDPMNoise()
    assert torch.allclose(a.alphas_cumprod, b.alphas_cumprod.to(a.alphas_cumprod.dtype), atol=1e-5)
    t = a.timestep(0.3); assert abs(a.sigma(t) - 0.3) < 0.01 and a.timestep(a.sigma(500)) == 500

def test_unet2d_probe(scenes, held):
    torch.manual_seed(0)
    m = diffusers.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                              down_block_types=('DownBlock2D', 'AttnDownBlock2D'), up_block_types=('AttnUpBlock2D', 'UpBlock2D'),
                              norm_num_groups=4, attention_head_dim=4).eval()
    t = probe_sweep({'d': m, 'r': random_copy(m, seed=1)}, scenes, held, ['mid_block', 'up_blocks.1'], [0.2], noise=DDPMNoise(),
                    controls=(PIXELS,), epochs=2, progress=False)
    assert len(t) == 5 and (t.timestep == DDPMNoise().timestep(0.2)).all() and t.mask_auc.notna().all()
    with pytest.raises(TypeError): capture_maps(m, scenes.images[:2], 0.2, 'mid_block')   # no timestep: diffusers' own error
    assert _hooks_count(m) == 0

def test_conditional_unet_self_attention_per_step(sd_like, scenes):
    text = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(0))
    noise = DDPMNoise(extra={'encoder_hidden_states': text})
    f = capture_maps(sd_like, scenes.images[:32], 0.3, SELF_ATTN, noise)[SELF_ATTN]
    assert f.shape == (32, 8, 16, 16)                                             # (B, 256 tokens, 8) folded to a map
    p = fit_probe(f, scenes.subset(range(32)), 'mask', epochs=2)
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012)
    sched.set_timesteps(5)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), capture_steps(sd_like, SELF_ATTN) as steps:
        for t in sched.timesteps: x = sched.step(sd_like(x, t, encoder_hidden_states=text.expand(2, -1, -1)).sample, t, x).prev_sample
    assert len(steps[SELF_ATTN]) == 5 and steps.stack(SELF_ATTN).shape == (5, 2, 256, 8)
    assert p.predict(to_map(steps[SELF_ATTN][-1], (16, 16)), (16, 16))['mask'].shape == (2, 16, 16)
    with pytest.raises(RuntimeError, match='boom'):
        with capture_steps(sd_like, SELF_ATTN): raise RuntimeError('boom')
    assert _hooks_count(sd_like) == 0

def test_dead_channels_get_zero_weight(scenes):
    f = torch.cat([scenes.depth[:, None], torch.zeros(96, 1, 16, 16)], 1)      # channel 1 is dead
    p = fit_probe(f, scenes, ('mask', 'depth'), epochs=3)
    assert (p.conv.weight[:, 1] == 0).all() and p.direction('mask')[0][1] == 0 and p.direction('mask')[0].abs().max() < 100

# --- the shipped scene denoiser -------------------------------------------------------------------------------------------
def test_shipped_scene_denoiser_denoises_unseen_scenes():
    from sparsediff.unet import load_pretrained, list_pretrained
    from sparsediff.train import evaluate_psnr, pretrained_log
    assert {'default', 'scenes'} <= set(list_pretrained())
    model = load_pretrained('scenes')
    ev = evaluate_psnr(model, render_scenes(64, size=32, seed=12345).images, sigmas=(0.1, 0.4)).set_index('sigma')
    gain = ev.psnr_model - ev.psnr_noisy
    assert gain[0.1] > 3 and gain[0.4] > 9, ev          # shipped: +5.6 dB at σ 0.1, +12.6 dB at σ 0.4 on its own held-out set
    log = pretrained_log('scenes')
    assert log.step.iloc[-1] == 12_000
    psnr = log['psnr_0.05'].dropna()
    assert psnr.iloc[-1] > psnr.iloc[0], 'held-out PSNR should rise over training'
