"""Bad inputs to the public entry points end in one clear error that names the argument and the fix, or in a correct result."""
import json, math, warnings
import numpy as np, pytest, torch
from sparsediff.core import check_images, check_sigma, check_positive_int
from sparsediff.phi import phi, phi_clean, noisy_block_means
from sparsediff.hooks import resolve, resolve_one, ModuleNameError
from sparsediff.analysis import channel_selectivity, noise_stability, block_sparsity, dead_channel_mask
from sparsediff.unet import UNet, UNetConfig, save_model, load_model, load_pretrained
from sparsediff.sampler import reconstruct

@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0); return UNet(UNetConfig.scaled(16)).eval()

@pytest.fixture(scope='module')
def x(): return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))

def g(): return torch.Generator().manual_seed(0)

def test_single_image_gets_a_batch_dimension(model, x):
    assert torch.allclose(phi(model, x[0], 0.2, n_noise=2, generator=g()), phi(model, x[:1], 0.2, n_noise=2, generator=g()))

@pytest.mark.parametrize('dtype', [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_are_cast(model, x, dtype):
    ref = phi(model, x, 0.2, n_noise=2, generator=g())
    got = phi(model, x.to(dtype), 0.2, n_noise=2, generator=g())
    assert got.dtype == torch.float32 and torch.allclose(got, ref, atol=0.05 if dtype != torch.float64 else 1e-5)

@pytest.mark.parametrize('bad, says', [(float('inf'), 'NaN or inf'), (float('nan'), 'NaN or inf'), (-float('inf'), 'NaN or inf')])
def test_non_finite_pixels(model, x, bad, says):
    y = x.clone(); y[1, 0, 3, 3] = bad
    with pytest.raises(ValueError, match=rf'x holds {says} values \(images \[1\]\)'): phi(model, y, 0.2)

@pytest.mark.parametrize('sigma, says', [(float('inf'), 'must be finite'), (float('nan'), 'must be finite'), (-0.1, '>= 0'),
                                         (torch.tensor([0.1, float('inf'), 0.2]), 'must be finite'), ('big', 'number')])
def test_bad_sigma(model, x, sigma, says):
    with pytest.raises((ValueError, TypeError), match=f'sigma.*{says}'): phi(model, x, sigma)

@pytest.mark.parametrize('scale, shift', [(255, 0), (10, -5)])
def test_images_outside_0_1_warn(model, x, scale, shift):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter('always'); phi(model, x * scale + shift, 0.2, n_noise=1)
    assert any('expect images in [0, 1]' in str(w.message) for w in rec)

def test_images_in_range_do_not_warn(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter('error'); phi(model, x, 0.2, n_noise=1); phi(model, x * 1.2 - 0.1, 0.2, n_noise=1)

@pytest.mark.parametrize('n, err', [(0, ValueError), (-3, ValueError), (1.5, TypeError), ('4', TypeError)])
def test_bad_n_noise(model, x, n, err):
    with pytest.raises(err, match='n_noise'): phi(model, x, 0.2, n_noise=n)

def test_empty_batch_and_wrong_shapes(model, x):
    with pytest.raises(ValueError, match='x is an empty batch'): phi(model, x[:0], 0.2)
    with pytest.raises(ValueError, match=r'shape \(B, C, H, W\) or \(C, H, W\)'): phi(model, x[0, 0], 0.2)
    with pytest.raises(ValueError, match=r'3 channels.*permute\(0, 3, 1, 2\)'): phi(model, x.permute(0, 2, 3, 1)[:, :16, :16, :], 0.2)
    with pytest.raises(TypeError, match=r'x.float\(\) / 255'): phi(model, (x * 255).byte(), 0.2)
    with pytest.raises(TypeError, match=r'torch.from_numpy\(x\)'): phi(model, x.numpy(), 0.2)
    with pytest.raises(TypeError, match='torch.Tensor'): phi(model, [[1.0]], 0.2)
    with pytest.raises(ValueError, match='NaN or inf'): phi_clean(model, x * float('nan'))

@pytest.mark.parametrize('block, says', [('**', 'matches'), ('enc*', 'matches 3 modules'), ('enc[!]', 'empty character set'),
                                         ('mdi', "did you mean 'mid'"), ('nothing*', 'No module named'), ('', 'non-empty'), ('enc[', 'No module named')])
def test_block_patterns(model, x, block, says):
    with pytest.raises(ModuleNameError, match=says): phi(model, x, 0.2, block=block)

def test_block_glob_matching_one_module_works(model, x):
    assert torch.equal(phi(model, x, 0.2, n_noise=1, block='mi?', generator=g()), phi(model, x, 0.2, n_noise=1, block='mid', generator=g()))

def test_analyses(model, x):
    with pytest.raises(ValueError, match='sigmas is empty'): noise_stability(model, x, sigmas=[])
    with pytest.raises(ValueError, match='sigma_ref must be finite'): noise_stability(model, x, sigmas=[0.1], sigma_ref=float('nan'))
    with pytest.raises(ValueError, match='n_noise must be >= 1'): noise_stability(model, x, sigmas=[0.1], n_noise=0)
    with pytest.raises(ValueError, match='sigma must be >= 0'): block_sparsity(model, x, sigma=-1)
    with pytest.raises(ValueError, match='empty'): block_sparsity(model, x[:0])
    f = np.abs(np.random.default_rng(0).normal(size=(50, 6))).astype(np.float32); f[7, 2] = np.nan
    with pytest.raises(ValueError, match=r'NaN or inf values \(rows \[7\]\)'): channel_selectivity(f)
    with pytest.raises(ValueError, match='NaN'): dead_channel_mask(np.full((3, 2), np.inf))
    with pytest.raises(ValueError, match='empty'): channel_selectivity(np.zeros((0, 4)))

def test_sampler_targets(model, x):
    with pytest.raises(ValueError, match='targets holds NaN or inf'): reconstruct(model, x * float('inf'), progress=False)
    with pytest.raises(ValueError, match='targets is an empty batch'): reconstruct(model, x[:0], progress=False)

def test_load_pretrained_loads_the_named_file(model, tmp_path):
    save_model(model, tmp_path)
    torch.manual_seed(1); other = UNet(UNetConfig.scaled(16))
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path/'other.safetensors'))
    got = load_pretrained(str(tmp_path/'other.safetensors'))
    assert all(torch.equal(got.state_dict()[k], v) for k, v in other.state_dict().items())
    assert all(torch.equal(load_pretrained(str(tmp_path)).state_dict()[k], v) for k, v in model.state_dict().items())

def test_nan_weights_are_refused(model, tmp_path):
    bad = UNet(UNetConfig.scaled(16)); bad.load_state_dict(model.state_dict())
    with torch.no_grad(): bad.mid[0][0].weight[0, 0, 0, 0] = float('nan')
    save_model(bad, tmp_path)
    with pytest.raises(ValueError, match=r'NaN or inf weights \(mid.0.0.weight\)'): load_model(tmp_path)

@pytest.mark.parametrize('text, says', [('[1, 2]', 'does not hold a UNet config'), ('{"config": 3}', 'does not hold a UNet config'),
                                        ('{"config": {"widths": [1, 2]}}', 'widths needs 4 entries'), ('{"config": {"colour": 1}}', 'Unknown UNetConfig keys'),
                                        ('{"config": {"widths": [4, 8, 16, 0]}}', 'every width must be >= 1'), ('{"conf', 'not valid JSON'),
                                        ('{"config": {"widths": [8, 16, 32, 64]}}', 'does not match its config')])
def test_malformed_config_json(model, tmp_path, text, says):
    save_model(model, tmp_path); (tmp_path/'config.json').write_text(text)
    with pytest.raises(ValueError, match=says): load_model(tmp_path)

def test_width_div(tmp_path):
    for bad in (0, -1, 1000, 2.5):
        with pytest.raises(ValueError, match='width_div'): UNetConfig.scaled(bad)

def test_check_helpers():
    assert check_positive_int(np.int64(3), 'k') == 3 and check_sigma(0.0) == 0.0
    with pytest.raises(ValueError, match='> 0'): check_sigma(0.0, allow_zero=False)
    with pytest.raises(TypeError, match='whole number'): check_positive_int(True, 'k')
    assert check_images(torch.rand(2, 3, 8, 8, dtype=torch.float64), dtype=None).dtype == torch.float64

def test_unreadable_image_is_one_line(tmp_path):
    "A broken file in a user's folder: one line naming it on stderr, no `UserWarning` and no source line (a fresh process, as a script sees it)."
    import subprocess, sys
    from PIL import Image
    for cls in ('cats', 'dogs'):
        (tmp_path/cls).mkdir()
        for i in range(2): Image.new('RGB', (40, 40)).save(tmp_path/cls/f'{i}.png')
    (tmp_path/'cats'/'notes.jpg').write_text('not an image')
    r = subprocess.run([sys.executable, '-c', f'from sparsediff.data import image_folder; print(len(image_folder({str(tmp_path)!r})))'],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == '4\n', r.stderr
    assert r.stderr == f'sparsediff: skipped 1 unreadable file in {tmp_path}: cats/notes.jpg\n', r.stderr
    with warnings.catch_warnings(record=True) as rec:   # still a warning, of our own category, that can be filtered
        warnings.simplefilter('always'); __import__('sparsediff.data').data.image_folder(tmp_path)
    from sparsediff.data import DataWarning
    assert [w.category for w in rec] == [DataWarning]
