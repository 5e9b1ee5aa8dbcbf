"""Error paths and cleanup of `sparsediff.hooks`, and capture/φ on a diffusers UNet2DModel (model(x, t))."""
import pytest, torch
from torch import nn
from sparsediff.hooks import (module_names, resolve, capture, run_with_cache, edit_output, Cache, ModuleNameError,
                              StopForward, glob_regex, _hooks_count)
from sparsediff.phi import phi, block_means, draw_noise
from sparsediff.unet import UNet, UNetConfig

@pytest.fixture(scope='module')
def model(): return UNet(UNetConfig.scaled(8)).eval()

@pytest.fixture(scope='module')
def x(): return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))

def test_typo_lists_close_matches(model):
    with pytest.raises(KeyError) as e: resolve(model, 'mid.0.O')
    assert "'mid.0.0'" in str(e.value) and isinstance(e.value, ModuleNameError)
    with pytest.raises(KeyError, match='No module named'): resolve(model, ['enc1', 'zzz*'])
    with pytest.raises(KeyError): capture(model, 'encoder').__enter__()
    assert _hooks_count(model) == 0

def test_globs_stay_within_a_name_part(model):
    assert resolve(model, 'enc?') == ['enc1', 'enc2', 'enc3']
    assert resolve(model, ['mid', 'mi*']) == ['mid']  # no duplicates
    assert resolve(model, 'up[12]') == ['up2', 'up1']  # definition order
    assert all(n.count('.') == 2 for n in resolve(model, 'dec3.*.*'))
    assert glob_regex('a.**').match('a.b.c') and not glob_regex('a.*').match('a.b.c')
    assert set(resolve(model, '**')) == set(module_names(model))

class Boom(nn.Module):
    "A model whose forward raises `exc` after its first layer has run."
    def __init__(self, exc): super().__init__(); self.a, self.b, self.exc = nn.Linear(2, 2), nn.Linear(2, 2), exc
    def forward(self, x):
        y = self.a(x)
        raise self.exc
        return self.b(y)

@pytest.mark.parametrize('exc', [KeyboardInterrupt(), RuntimeError('bad'), StopForward(None)])
def test_hooks_removed_when_forward_raises(exc):
    m = Boom(exc)
    with pytest.raises(type(exc)):
        with capture(m, ['a', 'b'], inputs=True, stop=True, edit={'a': lambda o: o}) as cache: m(torch.ones(1, 2))
    assert _hooks_count(m) == 0 and 'a' in cache and not cache.stopped

def test_keyboard_interrupt_inside_hook(model, x):
    def ctrl_c(o): raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        with capture(model, 'mid', reduce='mean', edit={'enc2': ctrl_c}): model(x)
    assert _hooks_count(model) == 0
    with pytest.raises(KeyboardInterrupt):
        with edit_output(model, {'dec1': ctrl_c}): model(x)
    assert _hooks_count(model) == 0

def test_stop_skips_later_modules_and_cleans_up(model, x):
    seen = []
    spies = [model.get_submodule(n).register_forward_hook(lambda *a, n=n: seen.append(n)) for n in ('enc3', 'mid', 'up3', 'out')]
    try:
        out, cache = run_with_cache(model, x, ['enc3', 'enc1'], stop=True)
    finally:
        for s in spies: s.remove()
    assert out is None and cache.stopped and seen == ['enc3'] and list(cache) == ['enc1', 'enc3']
    assert _hooks_count(model) == 0
    out, cache = run_with_cache(model, x, 'out', stop=True)  # the last module: stopping loses the output
    assert out is None and cache['out'].shape == x.shape

def test_cache_missing_key_messages(model, x):
    _, cache = run_with_cache(model, x, ['enc1', 'dec1'], stop=False)
    with pytest.raises(KeyError, match="did you mean 'enc1'"): cache['enc2']
    c = Cache(['mid']); c['enc1'] = torch.zeros(1)
    with pytest.raises(KeyError, match='did not run'): c['mid']
    assert 'enc1' in repr(c) and '(1,)' in repr(c)

def test_reduce_and_detach_options(model, x):
    with pytest.raises(ValueError, match="'mean'"): capture(model, 'mid', reduce='sum').__enter__()
    assert _hooks_count(model) == 0
    xg = x.clone().requires_grad_()
    _, c = run_with_cache(model, xg, 'enc1', reduce='mean', detach=False, stop=True)
    assert c['enc1'].shape == (2, model.cfg.widths[0]) and c['enc1'].requires_grad
    _, c = run_with_cache(model, xg, 'enc1', reduce=lambda t: t[:, :1], stop=True)
    assert c['enc1'].shape[1] == 1 and not c['enc1'].requires_grad

def test_edit_by_glob_and_in_place(model, x):
    with torch.no_grad():
        base = model(x)
        with edit_output(model, {'enc?': lambda o: o * 0}): a = model(x)
        with edit_output(model, {'enc1': lambda o: o.zero_(), 'enc2': torch.zeros_like, 'enc3': lambda o: o.mul_(0)}): b = model(x)
        assert torch.equal(a, b) and not torch.allclose(a, base)
        assert torch.equal(model(x), base)

def test_multiple_calls_keep_first_call_consistently_with_stop():
    lin = nn.Linear(3, 3)
    class Twice(nn.Module):
        def __init__(self): super().__init__(); self.lin = lin
        def forward(self, x): return self.lin(self.lin(x))
    m, x = Twice(), torch.randn(2, 3)
    with torch.no_grad():
        _, c = run_with_cache(m, x, 'lin')
        assert torch.equal(c['lin'], lin(x))          # the first call, as documented
        _, c = run_with_cache(m, x, 'lin', stop=True)  # stops after the first call: the same value
        assert c.stopped and torch.equal(c['lin'], lin(x))
        _, c = run_with_cache(m, x, 'lin', calls='all')
        assert len(c['lin']) == 2 and torch.equal(c['lin'][1], m(x))
        with pytest.raises(ValueError, match='calls'): run_with_cache(m, x, 'lin', calls='all', stop=True)

# --- diffusers: a model whose forward needs a timestep --------------------------------------------------------------
diffusers = pytest.importorskip('diffusers')

@pytest.fixture(scope='module')
def dunet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                                 down_block_types=('DownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'UpBlock2D'),
                                 norm_num_groups=4, attention_head_dim=4).eval()

def test_diffusers_capture_mid_block(dunet, x):
    assert 'mid_block.resnets.0' in module_names(dunet)
    with pytest.raises(KeyError, match="'mid_block.resnets.0'"): resolve(dunet, 'mid_block.resnet.0')
    ups = []
    h = dunet.up_blocks.register_forward_hook(lambda *a: ups.append(1))
    try:
        out, c = run_with_cache(dunet, x, 'mid_block.resnets.*', inputs=True, stop=True, forward_kwargs={'timestep': 10})
    finally: h.remove()
    assert out is None and ups == [] and list(c) == ['mid_block.resnets.0:in', 'mid_block.resnets.0', 'mid_block.resnets.1:in', 'mid_block.resnets.1']
    hidden, temb = c['mid_block.resnets.0:in']  # called as resnet(hidden_states, temb)
    assert hidden.shape == (2, 16, 8, 8) and temb.shape[0] == 2
    with torch.no_grad(): ref = dunet.mid_block.resnets[0](hidden, temb)
    assert torch.allclose(c['mid_block.resnets.0'], ref, atol=1e-6)
    # the same through call=, full output kept without stop
    out, c2 = run_with_cache(dunet, x, 'mid_block.resnets.0', call=lambda y: dunet(y, 10).sample)
    assert out.shape == x.shape and torch.allclose(c2['mid_block.resnets.0'], c['mid_block.resnets.0'])
    assert _hooks_count(dunet) == 0

def test_diffusers_phi(dunet, x):
    f = phi(dunet, x, 0.1, n_noise=3, block='mid_block', generator=torch.Generator().manual_seed(0), forward_kwargs={'timestep': 10})
    z = draw_noise(x, 3, torch.Generator().manual_seed(0))  # (B, 3, C, H, W)
    with torch.no_grad():
        ref = torch.stack([run_with_cache(dunet, x + 0.1 * z[:, j], 'mid_block', forward_kwargs={'timestep': 10})[1]['mid_block'].mean((2, 3))
                           for j in range(3)]).mean(0)
    assert f.shape == (2, 16) and torch.allclose(f, ref, atol=1e-5)
    g = phi(dunet, x, 0.1, n_noise=3, block='mid_block', generator=torch.Generator().manual_seed(0), batch_size=3,
            call=lambda y: dunet(y, timestep=10))
    assert torch.allclose(f, g, atol=1e-6)
    a = block_means(dunet, x, ('down_blocks.0', 'mid_block'), forward_kwargs={'timestep': 10})
    assert a['mid_block'].shape == (2, 16)
    with pytest.raises(TypeError): phi(dunet, x, 0.1, block='mid_block')  # forgot the timestep: diffusers' own error
    assert _hooks_count(dunet) == 0
