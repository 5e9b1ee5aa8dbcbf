"""`sparsediff demo` / `sparsediff report`: bad inputs, interruption and resume, and the report in headless Chromium."""
import json, subprocess, sys, shutil
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
import sparsediff.report as rp
from sparsediff.report import run_report, ReportConfig, load_report_data, load_report_model
from sparsediff.unet import UNet, UNetConfig, save_model

SMALL = dict(n_noise=2, n_sparsity=32, stability_sigmas=(0.1, 0.5), n_clusters=3, n_targets=1, n_samples=1, init_seeds=(0,), noise_seeds=(0, 1),
             n_per_photo=3, n_guided_targets=2, n_guided_samples=1)

def image_folder(root: Path, n_per_class=12, size=(40, 40)):
    "Two classes of random images: bright and dark."
    rng = np.random.default_rng(0)
    for cls, lo in (('bright', 150), ('dark', 0)):
        (root/cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(lo, lo + 100, (*size, 3), dtype=np.uint8)).save(root/cls/f'{i}.png')
    return root

@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    d = tmp_path_factory.mktemp('model'); torch.manual_seed(0)
    save_model(UNet(UNetConfig.scaled(16)), d); return d

def cli(*args):
    return subprocess.run([sys.executable, '-m', 'sparsediff.cli', *args], capture_output=True, text=True, timeout=600)

def test_missing_and_corrupt_checkpoint(tmp_path, tiny_model):
    r = cli('report', '--model', str(tmp_path/'nope'), '--data', 'mnist', '--out', str(tmp_path/'o'))
    assert r.returncode == 2 and 'No shipped model' in r.stderr
    bad = tmp_path/'bad'; shutil.copytree(tiny_model, bad); (bad/'model.safetensors').write_bytes(b'\0' * 10)
    r = cli('report', '--model', str(bad), '--data', 'mnist', '--out', str(tmp_path/'o'))
    assert r.returncode == 2 and 'corrupt' in r.stderr
    assert not (tmp_path/'o'/'report.html').exists()

def test_bad_image_folders(tmp_path):
    (tmp_path/'empty').mkdir()
    with pytest.raises(ValueError, match='contains no images'): load_report_data(tmp_path/'empty')
    (tmp_path/'junk').mkdir(); (tmp_path/'junk'/'a.png').write_bytes(b'not a png')
    with pytest.raises(ValueError, match='could be read'): load_report_data(tmp_path/'junk')
    small = image_folder(tmp_path/'small', size=(10, 10))
    with pytest.raises(ValueError, match='smaller than the model input'): load_report_data(small)
    few = image_folder(tmp_path/'few', n_per_class=3)
    with pytest.raises(ValueError, match='at least 20'): load_report_data(few)

def test_interrupted_run_leaves_no_report_and_resumes(tmp_path, tiny_model, monkeypatch):
    data = image_folder(tmp_path/'imgs'); out = tmp_path/'out'
    cfg = ReportConfig(**SMALL)
    real = rp.semantics_section
    def boom(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(rp, 'semantics_section', boom)
    with pytest.raises(KeyboardInterrupt): run_report(tiny_model, data, out, cfg, progress=False)
    assert not (out/'report.html').exists() and not (out/'report.json').exists()
    done = sorted(p.name.split('-')[0] for p in (out/'cache').glob('*.json'))  # JSON, never pickle
    assert 'sparsity' in done and 'stability' in done
    calls = []
    monkeypatch.setattr(rp, 'semantics_section', real)
    monkeypatch.setattr(rp, 'sparsity_section', lambda *a, **k: calls.append(1))   # must come from the cache
    h, j = run_report(tiny_model, data, out, cfg, progress=False)
    assert calls == [] and h.exists()
    rep = json.loads(j.read_text())
    claims = rep['sections']["The paper's claims, measured"]['tables']['claims']
    assert len(claims) >= 5 and {c['verdict'] for c in claims} <= {'holds', 'does not hold', 'uninformative'}
    assert all(c['best control'] for c in claims)   # every claim shows its control's number
    assert all(c['note'] for c in claims if c['verdict'] != 'holds')   # every failing claim says why

@pytest.fixture(scope='module')
def small_report(tmp_path_factory, tiny_model):
    d = tmp_path_factory.mktemp('rep')
    return run_report(tiny_model, image_folder(d/'imgs'), d/'out', ReportConfig(**SMALL), progress=False)

def test_report_json_numbers(small_report):
    rep = json.loads(small_report[1].read_text())
    sp = rep['sections']['Sparsity per block']['numbers']['median_pr_output']
    assert set(sp) == {'enc1', 'enc2', 'enc3', 'mid', 'dec3', 'dec2', 'dec1'} and all(0 < v <= 1 for v in sp.values())

@pytest.mark.browser
def test_report_renders_in_chromium(small_report):
    pw = pytest.importorskip('playwright.sync_api')
    if not Path('/usr/bin/chromium').exists(): pytest.skip('Debian chromium is not installed')
    errors = []
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path='/usr/bin/chromium', args=['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                              '--disable-component-update', '--disable-sync', '--no-first-run'])
        page = b.new_page()
        page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
        page.on('pageerror', lambda e: errors.append(str(e)))
        page.goto(small_report[0].as_uri())
        page.wait_for_selector('.js-plotly-plot', timeout=30_000)
        n_plots = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        n_traces = page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => d.data.length)")
        Path('test_artifacts').mkdir(exist_ok=True); page.screenshot(path='test_artifacts/report.png', full_page=False)
        assert 'claims' in page.inner_text('body')
        b.close()
    assert n_plots >= 6 and min(n_traces) > 0
    assert errors == []
