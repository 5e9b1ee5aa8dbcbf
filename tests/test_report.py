"""`sparsediff demo` / `sparsediff report`: bad inputs, interruption and resume, and the report in headless Chromium."""
import json, subprocess, sys, shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from PIL import Image
import sparsediff.report as rp
from sparsediff.report import run_report, ReportConfig, load_report_data, load_report_model
from sparsediff.unet import UNet, UNetConfig, save_model

SMALL = dict(n_noise=2, n_sparsity=32, stability_sigmas=(0.1, 0.5), n_clusters=3, init_seeds=(0,), noise_seeds=(0, 1),
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
    monkeypatch.setattr(rp, 'sparsity_runs', lambda *a, **k: calls.append(1))      # must come from the cache
    h, j = run_report(tiny_model, data, out, cfg, progress=False)
    assert calls == [] and h.exists()
    rep = json.loads(j.read_text())
    claims = rep['sections']["The paper's claims, measured"]['tables']['claims']
    assert len(claims) >= 5 and {c['verdict'] for c in claims} <= {'holds', 'does not hold', 'uninformative', 'invalid'}
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


# --- every row of the claims table: a planted case holds, a null does not (issue 21, "What to build" 1) --------------------
from sparsediff.report import reproduction_table, claims_markdown, _selectivity_controls
from sparsediff.controls import planted_sparse_code, compare_with_controls, TRAINED, RANDOM
from sparsediff.analysis import participation_ratio, row_cosine, centred
from sparsediff.semantics import knn_accuracy

BLOCKS = ('enc1', 'enc2', 'enc3', 'mid', 'dec3', 'dec2', 'dec1')

def sparse_rows(rng, n=64, d=48):
    "Non-negative rows with a few active channels: low PR."
    return (rng.random((n, d)) < 0.08) * rng.exponential(size=(n, d)) + 1e-3

def dense_rows(rng, n=64, d=48): return np.abs(rng.normal(size=(n, d))) + 0.5

def pr_part(rng, mid_sparse, dec_sparse):
    "Median PR per block of synthetic block outputs, as `_median_pr` reports them."
    pick = lambda b: sparse_rows(rng) if (b == 'mid' and mid_sparse) or (b.startswith('dec') and dec_sparse) else dense_rows(rng)
    prs = {b: float(np.median(participation_ratio(pick(b)))) for b in BLOCKS}
    return {'pr': prs, 'pr_live': prs}

def stability_numbers(rng, mid_stable, n=64, d=32, draws=2):
    "Worst centred cosine of code + noise at two noise levels: small noise for a stable block, large for the rest (blocks, pixels, mean colour)."
    code = dense_rows(rng, n, d) * 3
    noise = lambda b: 0.1 if b == 'mid' and mid_stable else 1.5
    names = BLOCKS + ('pixels', 'mean colour')
    cc = {b: [float(np.mean(row_cosine(centred(code + noise(b) * rng.normal(size=code.shape)), centred(code + noise(b) * rng.normal(size=code.shape)))))
              for _ in range(draws)] for b in names}
    return {'cosine': cc, 'cosine_centred': cc, 'between_images': {b: 0.9 for b in BLOCKS}, 'min_sigma': 0.05}

def selectivity_reps(rng, trained_bimodal, n=300, c=128):
    spec = (rng.random((n, c // 2)) < 0.05) * rng.exponential(size=(n, c // 2))
    planted = np.c_[spec, 1 + 0.3 * rng.random((n, c // 2))].astype(np.float32)
    dense = lambda: (np.abs(rng.normal(size=(n, c))) + 0.5).astype(np.float32)
    return {TRAINED: [planted if trained_bimodal else dense()], RANDOM: [dense()]}

def source_scores(trained, control):
    "Source identity scores: kNN of the second half of each class against the first half."
    y = np.repeat(np.arange(6), 40); ref = np.tile(np.arange(40) < 20, 6)
    acc = lambda a: knn_accuracy(a[ref], y[ref], 5, queries=a[~ref], query_labels=y[~ref], preprocess='centre')
    return pd.DataFrame([dict(representation=r, metric='source_acc', mean=acc(a), spread=0.0, n=1) for r, a in ((TRAINED, trained), ('pixels', control))])

def guided_numbers(rng, planted, flat=False):
    "Sampling numbers per sample (16 targets × 2): guidance that matches φ, keeps the class and identifies its target (`planted`), or does no better than its controls."
    real, M, n = list(0.2 + 0.02 * rng.random(64)), 16, 32
    good = dict(phi_error=list(0.1 + 0.02 * rng.random(n)), identified=[1.0] * n, class_hit=[1.0] * n, n=n, pixel_std=real[:n])
    bad = lambda: dict(phi_error=list(0.8 + 0.02 * rng.random(n)), identified=[float(i % M == 0) for i in range(n)],
                       class_hit=[float(i % 10 == 0) for i in range(n)], n=n, pixel_std=real[n:])
    u = bad()
    if flat: u['pixel_std'] = [0.01] * n
    stand_ins = {f'stand_in_{k}': dict(bad(), pixel_std=[0.0] * n) for k in ('flat', 'isotropic', 'gaussian')}   # images that are not samples
    return dict(guided=good if planted else bad(), unguided=u, random_phi=bad(), **stand_ins, real_same_class=dict(phi_error=list(0.5 + 0.02 * rng.random(n)), identified=[float(i % 4 == 0) for i in range(n)]),
                index=list(np.repeat(np.arange(M), 2)), n_targets=M, chance=1 / M, class_chance=0.1, data='toy', real_pixel_std=real,
                class_judge='a toy judge')

def claims_numbers(planted: bool, seed: int = 0, flat=False):
    "Controls-section numbers where every claim is planted true (`planted`) or made false, from synthetic features and measurements."
    rng = np.random.default_rng(seed)
    code_, clusters = planted_sparse_code(seed=seed); y = clusters % 2          # two classes, each a union of three planted clusters
    gauss = [rng.normal(size=code_.shape).astype(np.float32) for _ in range(3)]
    reps = {TRAINED: [code_], 'isotropic Gaussian': gauss} if planted else {TRAINED: gauss, 'planted code': [code_]}
    long = compare_with_controls(reps, y, probe=True, n_clusters=6)
    sp = {'trained': [{p: pr_part(rng, planted, planted) for p in ('mixed', 'toy')} for _ in range(2)],
          'random-init': [{p: pr_part(rng, False, False) for p in ('mixed', 'toy')} for _ in range(2)]}
    src = source_scores(code_, gauss[0]) if planted else source_scores(gauss[0], code_)
    return {'Controls': {'sparsity': sp, 'stability': {'toy': stability_numbers(rng, planted)},
                         'datasets': {'toy': dict(scores=long, n_clusters=6, selectivity=_selectivity_controls(selectivity_reps(rng, planted)))},
                         'source_identity': {'unseen photos': dict(scores=src, chance=1 / 6)},
                         'guided': guided_numbers(rng, planted, flat or not planted)}}   # the null's prior draws flat images

ROW_KINDS = {'sparsity': 'The middle block output is sparser', 'decoder sparsity': 'Decoder block outputs', 'stability': 'The middle block is the most noise-stable',
             'bimodality': 'Channel selectivity is bimodal', 'kNN': 'Nearest neighbours in φ', 'clusters': 'Adjacent φ clusters',
             'linear': 'A linear classifier', 'source identity': 'φ names the photo', 'guided φ error': 'Guided sampling draws',
             'identification': "A sample's φ is nearest", 'class rate': 'Samples matching φ share', 'prior generates': 'The prior generates'}

@pytest.fixture(scope='module')
def planted_and_null():
    return reproduction_table(claims_numbers(True)), reproduction_table(claims_numbers(False))

@pytest.mark.parametrize('kind', list(ROW_KINDS))
def test_each_row_holds_when_planted_and_not_for_a_null(planted_and_null, kind):
    good, bad = planted_and_null
    g, b = (t[t['claim'].str.startswith(ROW_KINDS[kind])] for t in (good, bad))
    assert len(g) and len(g) == len(b), kind
    assert (g['verdict'] == 'holds').all(), g[['claim', 'verdict', 'measured here', 'best control']].to_string()
    assert (b['verdict'] != 'holds').all(), b[['claim', 'verdict', 'measured here', 'best control']].to_string()
    assert (b['note'].str.len() > 0).all()                                             # every row that does not hold says why

def test_sparsity_rows_per_data_set_and_mixed(planted_and_null):
    claims = planted_and_null[0]['claim']
    assert claims.str.endswith('— mixed').sum() == 2 and claims.str.endswith('— toy').sum() >= 4

def test_the_stability_row_needs_to_beat_mean_colour():
    num = claims_numbers(True)
    st = num['Controls']['stability']['toy']; st['cosine_centred']['mean colour'] = list(st['cosine_centred']['mid'])   # as stable as mid
    row = reproduction_table(num).set_index('claim').filter(like='noise-stable', axis=0).iloc[0]
    assert row['verdict'] != 'holds' and row['best control'].startswith('mean colour')

def test_a_flat_prior_is_no_control_for_the_guided_rows():
    "When unguided samples are flat images the prior row fails and the guided rows are judged against their other controls only, saying why."
    t = reproduction_table(claims_numbers(True, flat=True))
    prior = t[t['claim'].str.startswith(ROW_KINDS['prior generates'])]
    assert len(prior) == 1 and prior['verdict'].iloc[0] == 'does not hold'
    guided = t[t['claim'].str.startswith((ROW_KINDS['guided φ error'], ROW_KINDS['identification']))]
    assert len(guided) == 2 and guided['note'].str.contains('flat images').all()
    assert not guided['best control'].str.startswith('unguided').any()
    cls = t[t['claim'].str.startswith(ROW_KINDS['class rate'])]
    assert len(cls) == 1 and cls['verdict'].iloc[0] == 'invalid'                 # a classifier's verdict on non-images says nothing
    ok = reproduction_table(claims_numbers(True))                       # a prior that generates: unguided samples are a control again
    assert ok[ok['claim'].str.startswith(ROW_KINDS['guided φ error'])]['best control'].str.startswith(('unguided', 'a real image', 'guidance')).all()
    rep = {'sections': {"The paper's claims, measured": {'tables': {'claims': json.loads(t.to_json(orient='records'))}}}}
    assert f"{(t['verdict'] == 'holds').sum()} of {len(t) - 1} claims hold" in claims_markdown(rep) and '1 has a degenerate control' in claims_markdown(rep)

def test_a_pixel_guide_as_good_as_phi_refutes_the_class_row():
    "Guidance by the target's pooled pixels is a control of the guided rows: when it keeps the class as well as φ does, the class row cannot hold."
    num = claims_numbers(True); g = num['Controls']['guided']
    t = reproduction_table(num)
    assert (t[t['claim'].str.startswith(ROW_KINDS['class rate'])]['verdict'] == 'holds').all()      # without the pixel run: holds
    g['pixel_phi'] = dict(g['guided'], phi_error=list(0.4 + 0.02 * np.random.default_rng(1).random(g['guided']['n'])))   # the class kept, φ matched worse
    t = reproduction_table(num).set_index('claim')
    cls, err = t.filter(like=ROW_KINDS['class rate'], axis=0).iloc[0], t.filter(like=ROW_KINDS['guided φ error'], axis=0).iloc[0]
    assert cls['verdict'] != 'holds' and cls['best control'].startswith("guidance by the target's pooled pixels")
    assert err['verdict'] == 'holds'                                                                # φ guidance still matches φ better

def test_a_judge_that_names_the_class_of_a_blank_image_refutes_the_class_row():
    "Stand-in images (flat, noise, Gaussian) are controls of the class row: a judge that gives every target's class to a flat image makes it fail."
    num = claims_numbers(True); g = num['Controls']['guided']
    g['stand_in_flat'] = dict(g['unguided'], class_hit=[1.0] * g['guided']['n'])                  # e.g. a judge that reads the target off the pool
    t = reproduction_table(num)
    cls = t[t['claim'].str.startswith(ROW_KINDS['class rate'])].iloc[0]
    assert cls['verdict'] != 'holds' and cls['best control'].startswith('flat images')
    g['stand_in_flat']['class_hit'] = [0.0] * g['guided']['n']                                       # a judge that is not fooled: holds again
    assert reproduction_table(num).set_index('claim').filter(like=ROW_KINDS['class rate'], axis=0)['verdict'].iloc[0] == 'holds'

def test_a_gaussian_stand_in_closer_to_phi_refutes_the_phi_error_row():
    "A Gaussian with the data's covariance is a control of the φ-error row: when it sits closer to the target's φ than guided samples do, the row fails."
    num = claims_numbers(True); g = num['Controls']['guided']
    row = lambda: reproduction_table(num).set_index('claim').filter(like=ROW_KINDS['guided φ error'], axis=0).iloc[0]
    assert row()['verdict'] == 'holds'
    g['stand_in_gaussian']['phi_error'] = list(0.05 + 0.01 * np.random.default_rng(2).random(g['guided']['n']))
    r = row()
    assert r['verdict'] != 'holds' and r['best control'].startswith("Gaussian with the data's covariance")

def test_the_report_guides_by_pooled_pixels(small_report):
    rep = json.loads(small_report[1].read_text())
    g = rep['sections']['Controls']['numbers']['guided']
    assert len(g['pixel_phi']['phi_error']) == g['pixel_phi']['n'] == g['guided']['n']              # one pixel-guided sample per guided one
    html = small_report[0].read_text()
    assert 'guided by pooled pixels' in html and 'pooled pixels (no more numbers than φ; pixel-space models)' in html
    for k in ('flat', 'isotropic', 'gaussian'):                                                     # stand-in images scored as samples of every target
        assert len(g[f'stand_in_{k}']['class_hit'] or g[f'stand_in_{k}']['phi_error']) == g['guided']['n']

def test_guided_rows_are_scored_per_target():
    "Spreads come from a bootstrap over targets: one target's samples are not independent, so pooling them cannot shrink the spread."
    from sparsediff.report import _per_target
    g = dict(index=list(np.repeat(np.arange(4), 8)), n_targets=4)
    mean, sd = _per_target([1.0] * 16 + [0.0] * 16, g)                   # two targets always hit, two never
    assert mean == 0.5 and sd > 0.2                                       # a per-sample binomial spread would be sqrt(.25/32) = 0.09

def test_a_large_resampling_spread_makes_a_planted_row_uninformative():
    num = claims_numbers(True)
    for runs in num['Controls']['sparsity'].values():
        for d in runs:
            for part in d.values(): part['pr_live_sd'] = {b: 1.0 for b in BLOCKS}          # the images alone move every median by 1
    t = reproduction_table(num)
    rows = t[t['claim'].str.startswith(ROW_KINDS['sparsity'])]
    assert (rows['verdict'] == 'uninformative').all(), rows[['verdict', 'measured here']].to_string()

def test_controls_numbers_per_data_set(small_report):
    rep = json.loads(small_report[1].read_text())
    st = rep['sections']['Controls']['numbers']['stability']
    for name, s in st.items():
        assert {'pixels', 'mean colour', 'mid'} <= set(s['cosine_centred']) and set(s['cosine_centred_sd']) == set(s['cosine_centred'])
    sp = rep['sections']['Controls']['numbers']['sparsity']['trained'][0]
    assert set(sp) == set(st) and all('pr_live_sd' in v for v in sp.values())               # one data set here: no 'mixed' duplicate


# --- one computation per number (issue 26, "What to build" 2): the sections and the claims table read the same values -----------
def _claim(rep, start):
    return next(c for c in rep['sections']["The paper's claims, measured"]['tables']['claims'] if c['claim'].startswith(start))

def _value(text: str) -> float:
    "The number after the last ': ' of a 'measured here' cell ('…: 0.512 ± 0.010')."
    return float(text.rsplit(': ', 1)[1].split(' ')[0])

def test_sections_and_claims_quote_the_same_numbers(small_report):
    rep = json.loads(small_report[1].read_text()); sec = rep['sections']
    mid = sec['Sparsity per block']['numbers']['median_pr_live_output']['mid']
    assert _value(_claim(rep, 'The middle block output is sparser')['measured here']) == pytest.approx(mid, abs=5e-4)
    cen = sec['Noise stability']['numbers']['worst_cosine_centred']['imgs']['mid']
    assert _value(_claim(rep, 'The middle block is the most noise-stable')['measured here']) == pytest.approx(cen, abs=5e-4)
    (tab_name, st), = sec['Noise stability']['tables'].items()                       # both measures named where they differ
    assert {'worst cosine, raw', 'worst cosine, centred'} <= set(st[0]) and 'uncentred' in _claim(rep, 'The middle block is the most noise-stable')['measured here']
    (name, tab), = sec['Semantics (imgs)']['tables'].items()
    knn = next(r for r in tab if r['metric'] == 'kNN accuracy')['φ trained']
    assert knn.split(' ')[0] in _claim(rep, 'Nearest neighbours in φ')['measured here']
    rec = sec['Reconstruction from φ (Fig. 7)']['numbers']
    err = _claim(rep, 'Guided sampling draws images whose φ matches')['measured here']
    assert _value(err) == pytest.approx(rec['phi_error_guided'], abs=5e-4)

def test_tables_have_no_nan_cells_and_notes_render_as_notes(small_report, tmp_path, tiny_model):
    page = small_report[0].read_text()
    import re
    cells = [c.strip().lower() for t in re.findall(r'<table.*?</table>', page, flags=re.S) for c in re.findall(r'<td[^>]*>(.*?)</td>', t, flags=re.S)]
    assert cells and not [c for c in cells if c in ('nan', 'none', '<na>')]
    flat = tmp_path/'flat'; flat.mkdir()
    rng = np.random.default_rng(1)
    for i in range(20): Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(flat/f'{i}.png')
    h, _ = run_report(tiny_model, flat, tmp_path/'o', ReportConfig(**SMALL), progress=False)
    page = h.read_text()
    assert '&lt;p class' not in page and '&amp;quot;' not in page and page.count('<p class="note">') >= 2   # the no-labels note, in the summary and in Semantics
