"""Hooks across threads: a capture, edit or stop acts only on the forward passes of the thread that entered it; and one
documented rule for a module called more than once in a forward pass."""
import asyncio, threading
import pytest, torch
from torch import nn
from sparsediff.hooks import run_with_cache, capture, edit_output, StopForward, _hooks_count
from sparsediff.phi import phi
from sparsediff.unet import UNet, UNetConfig

@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0); return UNet(UNetConfig.scaled(16)).eval()

@pytest.fixture(scope='module')
def x(): return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))

def run_threads(*fns):
    errors = []
    def wrap(f):
        def go():
            try: f()
            except BaseException as e: errors.append(e)
        return go
    ts = [threading.Thread(target=wrap(f)) for f in fns]
    for t in ts: t.start()
    for t in ts: t.join(60)
    assert not errors, errors

def test_edit_in_one_thread_leaves_plain_passes_in_another_alone(model, x):
    with torch.no_grad(): base = model(x)
    altered, edited = [], []
    def plain():
        with torch.no_grad():
            for _ in range(40): altered.append(not torch.equal(model(x), base))
    def editor():
        with torch.no_grad():
            for _ in range(40):
                out, c = run_with_cache(model, x, 'mid', edit={'enc1': torch.zeros_like}); edited.append(not torch.equal(out, base))
    run_threads(plain, editor)
    assert sum(altered) == 0 and all(edited) and len(edited) == 40
    assert _hooks_count(model) == 0

def test_stop_in_one_thread_never_reaches_another(model, x):
    with torch.no_grad(): (_, _, e3), m = model.encode(x); d = {}
    full = []
    def stopper():
        with torch.no_grad():
            for _ in range(40):
                out, c = run_with_cache(model, x, 'enc1', stop=True); assert out is None and c.stopped
    def complete():
        with torch.no_grad():
            for _ in range(40):
                out, c = run_with_cache(model, x, ['mid', 'dec1']); full.append(out is not None and not c.stopped and torch.equal(c['mid'], m))
    run_threads(stopper, complete)
    assert full == [True] * 40

def test_two_threads_capture_their_own_inputs(model):
    xs = [torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in (1, 2)]
    with torch.no_grad(): want = [model.encode(v)[1] for v in xs]
    ok = [[], []]
    def worker(i):
        def go():
            with torch.no_grad():
                for _ in range(30): ok[i].append(torch.equal(run_with_cache(model, xs[i], 'mid')[1]['mid'], want[i]))
        return go
    run_threads(worker(0), worker(1))
    assert ok == [[True] * 30, [True] * 30]

def test_phi_in_threads_matches_serial(model, x):
    serial = phi(model, x, 0.2, n_noise=2, generator=torch.Generator().manual_seed(0))
    got = []
    def w():
        for _ in range(5): got.append(torch.equal(phi(model, x, 0.2, n_noise=2, generator=torch.Generator().manual_seed(0)), serial))
    def e():
        with torch.no_grad():
            for _ in range(20):
                with edit_output(model, {'mid': torch.zeros_like}): model(x)
    run_threads(w, e)
    assert got == [True] * 5

def test_asyncio_tasks_are_separate_too(model, x):
    with torch.no_grad(): base = model(x)
    async def edited():
        with torch.no_grad(), edit_output(model, {'enc1': torch.zeros_like}):
            await asyncio.sleep(0.01); return model(x)
    async def plain():
        await asyncio.sleep(0.005)
        with torch.no_grad(): return model(x)
    async def both(): return await asyncio.gather(edited(), plain())
    a, b = asyncio.run(both())
    assert not torch.equal(a, base) and torch.equal(b, base)

class Twice(nn.Module):
    def __init__(self):
        super().__init__(); torch.manual_seed(0); self.lin = nn.Linear(3, 3)
    def forward(self, x): return self.lin(self.lin(x))

def test_module_called_twice_first_call_rule():
    m, x = Twice(), torch.randn(2, 3)
    with torch.no_grad():
        first = m.lin(x)
        _, c = run_with_cache(m, x, 'lin'); assert torch.equal(c['lin'], first)
        _, c = run_with_cache(m, x, 'lin', stop=True); assert c.stopped and torch.equal(c['lin'], first)
        _, c = run_with_cache(m, x, 'lin', inputs=True); assert torch.equal(c['lin:in'], x)
        _, c = run_with_cache(m, x, 'lin', calls='all'); assert [v.shape for v in c['lin']] == [(2, 3), (2, 3)]
        with capture(m, 'lin') as c: m(x); m(2 * x)          # a later forward pass replaces the earlier one
        assert torch.equal(c['lin'], m.lin(2 * x))
        with edit_output(m, {'lin': lambda o: o * 0}): assert torch.equal(m(x), m.lin.bias.expand(2, 3) * 0)  # edits hit every call
    with pytest.raises(ValueError, match="calls must be 'first' or 'all'"): run_with_cache(m, x, 'lin', calls='last')

def test_nested_and_interleaved_exit_orders(model, x):
    a = capture(model, 'enc1'); b = capture(model, 'mid')
    ca = a.__enter__(); cb = b.__enter__()
    with torch.no_grad(): model(x)
    a.__exit__(None, None, None)   # leave the outer first: the inner keeps working
    with torch.no_grad(): model(x * 0.5)
    b.__exit__(None, None, None)
    with torch.no_grad(): assert torch.equal(cb['mid'], model.encode(x * 0.5)[1]) and 'enc1' in ca
    assert _hooks_count(model) == 0

def test_edit_returning_another_shape_is_named(model, x):
    with pytest.raises(ValueError, match=r"edit of 'enc1' returned shape \(2, 1, 16, 16\)"): run_with_cache(model, x, 'mid', edit={'enc1': lambda o: o[:, :1]})
    assert _hooks_count(model) == 0
