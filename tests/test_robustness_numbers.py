"""Numbers that cannot be trusted are not returned, and arguments are checked where they enter (issue 25 items 5 and 6)."""
import threading
import numpy as np, pytest, torch
from sparsediff.phi import phi, extract_phi
from sparsediff.semantics import knn_accuracy
from sparsediff.sampler import reconstruct, sample
from sparsediff.unet import UNet, UNetConfig

@pytest.fixture
def model():
    torch.manual_seed(0); return UNet(UNetConfig.scaled(16)).eval()

X = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))

def test_phi_at_huge_sigma_raises_instead_of_nan(model):
    with pytest.raises(FloatingPointError, match='NaN or inf'): phi(model, X, 1e30, n_noise=1)

def test_phi_of_overflowing_weights_raises(model):
    with torch.no_grad():
        for p in model.parameters(): p.mul_(1e30)
    with pytest.raises(FloatingPointError, match="block 'mid'"): phi(model, X, 0.1, n_noise=1)

def test_knn_accuracy_on_nan_features_raises():
    f = np.random.default_rng(0).normal(size=(20, 5)); f[3, 1] = np.nan
    with pytest.raises(ValueError, match='NaN or inf in 1 of 20 rows'): knn_accuracy(f, np.arange(20) % 2)
    with pytest.raises(ValueError, match='queries holds NaN'): knn_accuracy(np.ones((20, 5)), np.arange(20) % 2, queries=f, query_labels=np.arange(20) % 2)

def test_phi_from_threads_leaves_a_training_model_in_train_mode(model):
    model.train(); start = threading.Barrier(8); errors = []
    def work():
        try:
            start.wait()
            for _ in range(5): phi(model, X[:1], 0.1, n_noise=1)
        except Exception as e: errors.append(e)
    ts = [threading.Thread(target=work) for _ in range(8)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert not errors and model.training and all(m.training for m in model.modules())

@pytest.mark.parametrize('call,msg', [
    (lambda m: phi(None, X, 0.1), 'model must be a torch.nn.Module'),
    (lambda m: phi(m, torch.rand(1, 3, 0, 0), 0.1), 'empty dimension'),
    (lambda m: phi(m, X, 0.1, block=3), "block must be a module name"),
    (lambda m: phi(m, X, 0.1, n_noise=2.0), r'n_noise must be a whole number.*write 2'),
    (lambda m: reconstruct(m, X[:1], n_samples=1.5, progress=False), 'n_samples must be a whole number'),
    (lambda m: sample(m, 1, (3, 16, 16), seed=1.5, progress=False), 'seed must be a whole number'),
    (lambda m: sample(m, 1, (3, 16, 16), seed=2**70, progress=False), 'seed must be <='),
    (lambda m: extract_phi(m, X, 'unused', seed=1.5, progress=False), 'seed must be a whole number'),
])
def test_arguments_are_refused_with_their_name(model, call, msg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises((TypeError, ValueError), match=msg): call(model)

def test_reconstruct_on_meta_keeps_the_callers_weights(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="'meta' cannot run a model"): reconstruct(model, X[:1], device='meta', progress=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

def test_failed_sampling_restores_the_models_mode_and_device(model):
    model.train()
    def stop(*a): raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): sample(model, 1, (3, 16, 16), device='cpu', callback=stop, progress=False)
    assert model.training and next(model.parameters()).device.type == 'cpu'

def test_a_double_model_gives_phi_in_its_precision(model):
    g = lambda: torch.Generator().manual_seed(0)
    a = phi(model, X, 0.1, n_noise=2, generator=g()); b = phi(model.double(), X, 0.1, n_noise=2, generator=g())
    assert torch.allclose(a.double(), b.double(), atol=1e-5)
