"""Second hostile pass (tests/hostile_pass_2.md): report settings, φ batch size and sampling sizes are checked where they enter, before any compute."""
import pytest, torch
from sparsediff.unet import UNet, UNetConfig
from sparsediff.phi import phi
from sparsediff.sampler import sample, reconstruct
from sparsediff.report import run_report, ReportConfig

@pytest.fixture(scope='module')
def model(): torch.manual_seed(0); return UNet(UNetConfig.scaled(16)).eval()

@pytest.mark.parametrize('field, value, says', [
    ('n_clusters', 0, 'ReportConfig.n_clusters must be >= 2'), ('init_seeds', (), 'ReportConfig.init_seeds must be a non-empty tuple'),
    ('guided_preset', 'evil', "ReportConfig.guided_preset 'evil' is not a sampler preset"), ('k_neighbours', 0, 'ReportConfig.k_neighbours must be >= 1'),
    ('n_noise', 2.0, 'ReportConfig.n_noise must be a whole number'), ('stability_sigmas', (), 'ReportConfig.stability_sigmas must be a non-empty'),
    ('sparsity_sigma', float('inf'), 'ReportConfig.sparsity_sigma must be finite'), ('seed', -1, 'ReportConfig.seed')])
def test_report_config_is_checked_before_anything(tmp_path, field, value, says):
    with pytest.raises((ValueError, TypeError), match=says.replace('(', r'\(')):
        run_report(tmp_path/'no-model', tmp_path/'no-data', tmp_path/'out', ReportConfig(**{field: value}), progress=False)
    assert not (tmp_path/'out').exists()

def test_k_neighbours_larger_than_the_data_is_refused_before_compute(tmp_path, model, monkeypatch):
    import sparsediff.report as rep
    from sparsediff.data import ImageSet
    monkeypatch.setattr(rep, 'load_report_model', lambda m, d: model)
    monkeypatch.setattr(rep, 'phi_features', lambda *a, **k: (_ for _ in ()).throw(AssertionError('computed φ first')))
    data = ImageSet(torch.rand(24, 3, 32, 32), torch.arange(24) % 4, list('abcd'), 'data')
    with pytest.raises(ValueError, match='ReportConfig.k_neighbours=1000 needs more than 2000 images; data has 24'):
        run_report(model, data, tmp_path/'out', ReportConfig(k_neighbours=1000), progress=False)

@pytest.mark.parametrize('bs, err', [(0, ValueError), (2.5, TypeError)])
def test_phi_batch_size_is_an_integer_from_1(model, bs, err):
    with pytest.raises(err, match='batch_size must be'): phi(model, torch.rand(2, 3, 32, 32), 0.1, n_noise=1, batch_size=bs)

def test_sampling_more_images_than_memory_is_refused_before_allocating(model):
    with pytest.raises(ValueError, match=r'n=1000000000 asks for 1000000000 images .* more than the .* GB of memory here'): sample(model, n=10**9, progress=False)
    with pytest.raises(ValueError, match=r'n_samples=100000000 asks for'): reconstruct(model, torch.rand(2, 3, 32, 32), n_samples=10**8, progress=False)
