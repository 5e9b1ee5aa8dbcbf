"""training/mnist_ddpm/train.py (issue 23, item 3), on a tiny UNet and a tiny batch: the ε-model trains with diffusers' DDPMScheduler,
resumes exactly from its checkpoint, and --ship writes a pipeline folder that load_denoiser opens."""
import importlib.util, json
from pathlib import Path
import pytest, torch

diffusers = pytest.importorskip('diffusers')
torch.set_num_threads(1)

@pytest.fixture
def script(monkeypatch):
    "The training script as a module, with a tiny UNet and batch so a step takes milliseconds."
    spec = importlib.util.spec_from_file_location('mnist_ddpm_train', Path(__file__).parents[1]/'training'/'mnist_ddpm'/'train.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    monkeypatch.setattr(m, 'UNET', dict(m.UNET, block_out_channels=(8, 16, 16), norm_num_groups=4, layers_per_block=1))
    monkeypatch.setattr(m, 'RECIPE', dict(m.RECIPE, batch_size=4, warmup_steps=2))
    return m

def test_published_model_fits_the_budget():
    spec = importlib.util.spec_from_file_location('t', Path(__file__).parents[1]/'training'/'mnist_ddpm'/'train.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    n = sum(p.numel() for p in m.make_unet().parameters())
    assert n <= 3_000_000 and m.UNET['in_channels'] == 1 and m.UNET['sample_size'] == 32 and m.SCHEDULER['prediction_type'] == 'epsilon'

def test_eps_loss_uses_the_schedulers_add_noise(script):
    torch.manual_seed(0); unet, sched = script.make_unet(), script.make_scheduler()
    x = torch.rand(2, 1, 32, 32); t = torch.tensor([10, 900]); eps = torch.randn(2, 1, 32, 32)
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    ref = torch.nn.functional.mse_loss(unet(a.sqrt() * (2 * x - 1) + (1 - a).sqrt() * eps, t).sample, eps)
    assert torch.allclose(script.eps_loss(unet, sched, x, t, eps), ref, atol=1e-6)

def test_resume_is_exact_and_ship_loads(script, tmp_path):
    straight, *_ = script.train(tmp_path/'a', steps=4, ckpt_every=2, log_every=1, quiet=True)
    script.train(tmp_path/'b', steps=2, ckpt_every=2, log_every=1, quiet=True)           # stopped at step 2 ...
    resumed, step, log = script.train(tmp_path/'b', steps=4, ckpt_every=2, log_every=1, quiet=True)   # ... rerun: resumes there
    assert step == 4 and [r['step'] for r in log] == [1, 2, 3, 4]
    raw = torch.load(tmp_path/'b'/'checkpoint.pt', weights_only=False)
    assert not all(torch.equal(raw['model'][k], raw['ema'][k]) for k in raw['model'])          # the EMA is a separate average
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))
    assert not list((tmp_path/'b').glob('.*.tmp'))                                       # atomic writes leave no temporary file
    dest = script.ship(tmp_path/'b', tmp_path/'weights'/'mnist_ddpm')
    man = json.loads((dest/'manifest.json').read_text())
    assert man['steps'] == 4 and 'training split' in man['data'] and (dest/'model_index.json').exists()
    assert [r['step'] for r in json.loads((dest/'log.json').read_text())] == [1, 2, 3, 4]
    from sparsediff.adapters import load_denoiser, VPDenoiser
    D = load_denoiser(dest)
    assert isinstance(D, VPDenoiser) and D.prediction_type == 'epsilon' and D.net.config.in_channels == 1
    assert next(D.net.parameters()).dtype == torch.float32                                # stored in fp16, loaded as fp32
    assert all(torch.equal(p, q.half().float()) for p, q in zip(D.net.state_dict().values(), resumed.state_dict().values()))
    with pytest.raises(FileNotFoundError, match='train first'): script.ship(tmp_path/'empty', tmp_path/'w2')
    rawd = load_denoiser(script.ship(tmp_path/'b', tmp_path/'weights'/'raw', raw=True))                    # the training weights, not the EMA
    assert all(torch.equal(rawd.net.state_dict()[k], raw['model'][k].half().float()) for k in raw['model'])
    assert 'not their EMA' in json.loads((tmp_path/'weights'/'raw'/'manifest.json').read_text())['weights']

def test_every_checkpoint_is_kept_and_can_ship(script, tmp_path):
    script.train(tmp_path/'r', steps=4, ckpt_every=2, log_every=1, quiet=True)
    assert sorted(p.name for p in (tmp_path/'r'/'history').iterdir()) == ['000002.pt', '000004.pt']
    two = torch.load(tmp_path/'r'/'history'/'000002.pt', weights_only=False)
    four = torch.load(tmp_path/'r'/'checkpoint.pt', weights_only=False)
    assert two['step'] == 2 and all(v.dtype == torch.float16 for v in two['model'].values() if v.is_floating_point())
    from sparsediff.adapters import load_denoiser
    old = load_denoiser(script.ship(tmp_path/'r', tmp_path/'w'/'two', raw=True, step=2))
    assert json.loads((tmp_path/'w'/'two'/'manifest.json').read_text())['steps'] == 2
    assert all(torch.equal(old.net.state_dict()[k], two['model'][k].float()) for k in two['model'])     # the step-2 weights ...
    assert not all(torch.equal(old.net.state_dict()[k], four['model'][k].half().float()) for k in four['model'])   # ... not the latest
    with pytest.raises(FileNotFoundError, match=r'kept steps: \[2, 4\]'): script.ship(tmp_path/'r', tmp_path/'w'/'x', step=3)

def test_scenes_data_trains_a_colour_eps_model(script, tmp_path):
    script.use_data('scenes')
    assert script.UNET['in_channels'] == script.UNET['out_channels'] == 3 and script.RUN.parent.name == 'scenes_ddpm'
    x = script.make_data().batch(0, 4)
    assert x.shape == (4, 3, 32, 32) and 0 <= x.min() and x.max() <= 1 and x.std() > 0.05       # rendered colour scenes
    ema, step, log = script.train(tmp_path/'s', steps=2, ckpt_every=2, log_every=1, quiet=True)
    assert step == 2 and ema.config.in_channels == 3 and all(map(lambda r: r['loss'] > 0, log))
    dest = script.ship(tmp_path/'s', tmp_path/'weights'/'scenes_ddpm')
    man = json.loads((dest/'manifest.json').read_text())
    assert man['model'] == 'scenes_ddpm' and 'SceneStream' in man['data'] and '--data scenes' in man['script']
    from sparsediff.adapters import load_denoiser
    assert load_denoiser(dest).net.config.out_channels == 3
    with pytest.raises(ValueError, match='digits'): script.use_data('faces')

def test_cool_down_decays_the_learning_rate_to_zero_and_resumes_only_as_a_cool_down(script, tmp_path):
    lrs = [script.lr_at(s, 1e-3, 2, decay_from=4, end=8) for s in range(10)]
    assert lrs[:4] == [5e-4, 1e-3, 1e-3, 1e-3] and lrs[4] == 1e-3 and lrs[6] == 5e-4 and lrs[8] == lrs[9] == 0.0   # warm-up, constant, linear to 0
    assert script.lr_at(100, 1e-3, 2) == 1e-3                                               # no decay unless asked
    script.train(tmp_path/'main', steps=2, ckpt_every=2, log_every=1, quiet=True)           # the main run ...
    import shutil; (tmp_path/'cool').mkdir(); shutil.copy(tmp_path/'main'/'checkpoint.pt', tmp_path/'cool'/'checkpoint.pt')
    script.RECIPE = dict(script.RECIPE, decay_from=2, decay_to_zero_at=4)                   # as the command line records it
    script.train(tmp_path/'cool', steps=3, ckpt_every=1, log_every=1, quiet=True, decay_from=2)   # ... branched into a cool-down, stopped at 3
    with pytest.raises(ValueError, match='resume it with --decay-from 2'): script.train(tmp_path/'cool', steps=4, quiet=True)
    with pytest.raises(ValueError, match='decay_from must be in'): script.train(tmp_path/'x', steps=4, quiet=True, decay_from=4)
    dest = script.ship(tmp_path/'cool', tmp_path/'shipped')
    assert json.loads((dest/'manifest.json').read_text())['recipe']['decay_from'] == 2      # the manifest says how it was trained
