"""`sparsediff report --data` on a user's own images: flat folders, one class, many small classes, a few hundred per class,
Hugging Face datasets saved to disk; problems reported before compute; CLI help; the report's layout in headless Chromium."""
import json, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from sparsediff.report import run_report, ReportConfig, load_report_data, class_plan
from sparsediff.unet import UNet, UNetConfig, save_model

FAST = dict(n_noise=1, n_sparsity=24, stability_sigmas=(0.1, 0.5), n_clusters=3, k_neighbours=3,
            init_seeds=(0, 1), noise_seeds=(0, 1), n_per_photo=4, n_guided_targets=2, n_guided_samples=1)
CLAIMS = "The paper's claims, measured"

def write_images(folder: Path, n: int, seed: int = 0, tone: int = 0):
    "`n` images of mixed sizes (40–90 px), every third greyscale, PNG and JPEG, with a `tone` that tells classes apart."
    rng = np.random.default_rng(seed); folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = rng.integers(40, 90, 2)
        a = np.clip(rng.normal(60 + 60 * tone, 30, (h, w, 3)), 0, 255).astype(np.uint8)
        im = Image.fromarray(a).convert('L') if i % 3 == 0 else Image.fromarray(a)
        im.save(folder/f'{i:03d}.{"png" if i % 2 else "jpg"}')
    return folder

@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    d = tmp_path_factory.mktemp('model'); torch.manual_seed(0)
    save_model(UNet(UNetConfig.scaled(16)), d); return d

@pytest.fixture
def no_sampler(monkeypatch):
    "Skip the sampler (the slowest steps, run by the flat-folder report) in tests about the other sections: each run's samples are its targets."
    import sparsediff.report as rp
    def targets_as_samples(model, data, cfg, kind):
        idx = torch.as_tensor(rp.guided_targets(data, cfg)).repeat_interleave(cfg.n_guided_samples)
        return dict(images=data.images[idx], target_index=torch.arange(len(idx)) // cfg.n_guided_samples, evals_per_sample=0.0, status='skipped')
    monkeypatch.setattr(rp, 'sampling_run', targets_as_samples)

def claims(json_path):
    rep = json.loads(Path(json_path).read_text())
    return rep, {c['claim'].split(' — ')[0]: c for c in rep['sections'][CLAIMS]['tables']['claims']}

def cli(*args):
    return subprocess.run([sys.executable, '-m', 'sparsediff.cli', *args], capture_output=True, text=True, timeout=600)

@pytest.fixture(scope='module')
def flat_report(tmp_path_factory, tiny_model):
    d = tmp_path_factory.mktemp('flat')
    return run_report(tiny_model, write_images(d/'holiday', 24), d/'out', ReportConfig(**FAST), progress=False)

def test_flat_folder_runs_unlabelled_analyses(flat_report):
    rep, c = claims(flat_report[1])
    sem = rep['sections']['Semantics (holiday)']['numbers']
    assert sem['labelled'] is False and 'sub-folder' in sem['note']
    assert c['The middle block output is sparser than every encoder block output, and sparser than untrained']['verdict'] in ('holds', 'does not hold', 'uninformative')
    assert c['Nearest neighbours in φ are more semantic than in pixels, or than any control']['verdict'] == 'needs labels'
    assert c["Samples matching φ share the target's class"]['verdict'] == 'needs labels'
    assert all(x['note'] for x in c.values() if x['verdict'] != 'holds')          # every untested or failing claim says why
    assert c['Adjacent φ clusters lie > 2 std apart, more than human classes and a Gaussian null']['verdict'] == 'needs labels'
    assert rep['sections'][CLAIMS]['numbers']['n_needs_labels'] == 4

def test_single_class_and_many_small_classes(tmp_path, tiny_model, capsys, no_sampler):
    one = write_images(tmp_path/'one'/'cats', 22).parent
    for k in range(16): write_images(tmp_path/'many'/f'c{k:02d}', 2 + k % 2, seed=k, tone=k % 3)
    for d, expect in ((one, 'one class (cats)'), (tmp_path/'many', 'the smallest has 2')):
        h, j = run_report(tiny_model, d, tmp_path/f'out-{d.name}', ReportConfig(**FAST), progress=False)
        rep, c = claims(j)
        assert c['A linear classifier reads classes from φ better than from any control']['verdict'] == 'needs labels'
        assert expect in rep['sections'][f'Semantics ({d.name})']['numbers']['note']
        assert expect in capsys.readouterr().err                                   # said before compute, on stderr
    assert 'test_size' not in h.read_text()                                         # no scikit-learn message leaks

def test_small_classes_left_out_with_a_note(tmp_path, tiny_model, no_sampler):
    for k, n in enumerate((10, 10, 2)): write_images(tmp_path/'pets'/'abc'[k], n, seed=k, tone=k)
    h, j = run_report(tiny_model, tmp_path/'pets', tmp_path/'out', ReportConfig(**FAST), progress=False)
    rep, c = claims(j)
    sem = rep['sections']['Semantics (pets)']['numbers']
    assert sem['labelled'] and sem['n_labelled'] == 20 and '(c)' in sem['note']
    assert c['Nearest neighbours in φ are more semantic than in pixels, or than any control']['verdict'] in ('holds', 'does not hold', 'uninformative')
    (name, tab), = rep['sections']['Semantics (pets)']['tables'].items()
    assert name.startswith('scores of φ and its controls') and [r['metric'] for r in tab][:2] == ['kNN accuracy', 'linear classifier accuracy']
    assert set(tab[0]) == {'metric', 'φ trained', 'φ random-init', 'simple statistics', 'pixels', 'centred pixels', 'PCA-64 of pixels', 'mean colour'}
    assert all('nan' not in str(v).lower() for r in tab for v in r.values())        # gaps say why

def test_a_few_hundred_per_class_loads_and_plans(tmp_path):
    for k in range(2): write_images(tmp_path/'big'/f'k{k}', 200, seed=k, tone=k)
    s = load_report_data(tmp_path/'big')['big']
    assert s.images.shape == (400, 3, 32, 32) and s.labelled and s.classes == ['k0', 'k1']
    p = class_plan(s)
    assert len(p['rows']) == 400 and p['note'] == ''

def test_problems_reported_before_compute_in_one_sentence(tmp_path, tiny_model):
    d = write_images(tmp_path/'mixed', 25)
    for i in range(3): Image.new('RGB', (20 + i, 60)).save(d/f'tiny{i}.png')
    out = tmp_path/'out'
    with pytest.raises(ValueError, match='3 of the 28 images .* are smaller than the model input 32x32') as e: run_report(tiny_model, d, out, ReportConfig(**FAST), progress=False)
    assert 'remove them or enlarge them' in str(e.value) and not out.exists()        # nothing computed, nothing written
    r = cli('report', '--model', str(tiny_model), '--data', str(d), '--out', str(out), '--quiet')
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'enlarge them' in r.stderr and 'Traceback' not in r.stderr
    few = write_images(tmp_path/'few', 7)
    with pytest.raises(ValueError, match='has 7 images; the analyses need at least 20: add 13 or more'): load_report_data(few)
    with pytest.raises(ValueError, match='is a file'): load_report_data(next(few.iterdir()))

def test_hugging_face_dataset_saved_to_disk(tmp_path, tiny_model, capsys, no_sampler):
    datasets = pytest.importorskip('datasets')
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)) for _ in range(24)]
    feats = datasets.Features({'img': datasets.Image(), 'kind': datasets.ClassLabel(names=['rough', 'smooth'])})
    ds = datasets.Dataset.from_dict({'img': imgs, 'kind': [i % 2 for i in range(24)]}, features=feats)
    datasets.DatasetDict(train=ds, test=ds).save_to_disk(str(tmp_path/'hf'))
    s = load_report_data(tmp_path/'hf')['hf-test']
    assert s.images.shape == (24, 3, 32, 32) and s.labelled and s.classes == ['rough', 'smooth'] and s.labels.tolist()[:2] == [0, 1]
    datasets.Dataset.from_dict({'image': imgs}, features=datasets.Features({'image': datasets.Image()})).save_to_disk(str(tmp_path/'hf_flat'))
    h, j = run_report(tiny_model, tmp_path/'hf_flat', tmp_path/'out', ReportConfig(**FAST), progress=False)
    assert 'hf_flat has no labels' in capsys.readouterr().err
    assert json.loads(j.read_text())['sections']['Semantics (hf_flat)']['numbers']['labelled'] is False

def test_cached_rerun_reports_both_times(tmp_path, tiny_model, no_sampler):
    d = write_images(tmp_path/'imgs', 20)
    run_report(tiny_model, d, tmp_path/'out', ReportConfig(**FAST), progress=False)
    meta = json.loads(run_report(tiny_model, d, tmp_path/'out', ReportConfig(**FAST), progress=False)[1].read_text())['meta']
    assert 'seconds' not in meta and meta['steps from cache'] == '12 of 12'      # 2 noise seeds, 1 data set: 3 sparsity/stability, 4 φ, 1 scores, 4 sampling runs (φ, none, random-init φ, pooled pixels)
    assert meta['seconds of compute (all steps, when first computed)'] > 0 and meta['seconds (this run)'] >= 0

def test_cli_help_and_version():
    r = cli('report', '--help'); txt = ' '.join(r.stdout.split())
    assert r.returncode == 0 and 'one sub-folder per class' in txt and 'a flat folder' in txt and 'needs labels' in txt
    from sparsediff.cli import main, train_parser
    import argparse
    sub = argparse.ArgumentParser().add_subparsers()
    p = train_parser(sub)
    opts = [a for a in p._actions if a.dest != 'help']
    assert all(a.help for a in opts), [a.dest for a in opts if not a.help]        # every option says what it does
    text = ' '.join(p.format_help().split())
    for a in opts:
        if a.default not in (None, False) and not a.required: assert f'(default: {a.default})' in text, a.dest
    r = cli('--version')
    assert r.returncode == 0 and r.stdout.startswith('sparsediff 0.')

def test_figures_use_class_names_and_centred_cosine(tmp_path, tiny_model):
    from sparsediff.semantics import plot_neighbours
    from sparsediff.analysis import palette
    import plotly.colors as pc
    rng = np.random.default_rng(0)
    phi = 5 + rng.random((30, 16)).astype(np.float32)                              # a large common part: plain cosines are all ≈ 1
    im = torch.rand(30, 3, 8, 8); y = np.arange(30) % 3
    fig = plot_neighbours(im, {'φ': phi}, [0], k=3, labels=y, class_names=['cat', 'dog', 'owl'])
    caps = [a.text for a in fig.layout.annotations]
    assert caps[0] == 'query<br>cat' and all(c.split('<br>')[1] in ('cat', 'dog', 'owl') for c in caps)
    cos = [float(c.split('<br>')[0].split()[1]) for c in caps[1:]]
    assert max(cos) < 0.9 and 'centred cosine' in fig.layout.title.text           # centred, so neighbours are told apart
    rgb = np.array([pc.hex_to_rgb(c) for c in palette(4)], float)
    assert min(np.linalg.norm(rgb[i] - rgb[j]) for i in range(4) for j in range(i)) > 100   # four clearly different colours

@pytest.mark.browser
def test_report_layout_at_1280px(flat_report):
    "At 1280 px: nothing wider than the window, no two titles or captions of a figure overlapping or leaving it, no console errors."
    pw = pytest.importorskip('playwright.sync_api')
    if not Path('/usr/bin/chromium').exists(): pytest.skip('Debian chromium is not installed')
    js = """() => {
      const W = window.innerWidth, over = [], clash = [], out = [];
      for (const el of document.querySelectorAll('body *')) { const r = el.getBoundingClientRect(); if (r.width > 0 && r.right > W + 0.5) over.push(el.tagName + '.' + el.getAttribute('class')); }
      document.querySelectorAll('.js-plotly-plot').forEach((p, k) => {
        const pr = p.getBoundingClientRect();
        const bs = [...p.querySelectorAll('g.annotation text, text.bartext, g.g-gtitle text, .g-xtitle text, .g-ytitle text, .legendtext')]
                     .map(t => [t.textContent, t.getBoundingClientRect()]).filter(b => b[1].width > 0);
        bs.forEach(([s, a], i) => {
          if (a.left < pr.left - 0.5 || a.right > pr.right + 0.5) out.push(`${k}: ${s}`);
          bs.slice(i + 1).forEach(([s2, b]) => { if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) clash.push(`${k}: ${s} / ${s2}`); });
        });
      });
      const tables = [...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().width);
      return {scroll: document.documentElement.scrollWidth, W, over, clash, out, tables, n_titles: document.querySelectorAll('g.annotation text').length};
    }"""
    errors = []
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path='/usr/bin/chromium', args=['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                              '--disable-component-update', '--disable-sync', '--no-first-run'])
        try:
            page = b.new_page(viewport={'width': 1280, 'height': 900})
            page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
            page.on('pageerror', lambda e: errors.append(str(e)))
            page.goto(flat_report[0].as_uri())
            page.wait_for_selector('.js-plotly-plot', timeout=30_000)
            r = page.evaluate(js)
            Path('test_artifacts').mkdir(exist_ok=True); page.screenshot(path='test_artifacts/report_flat_1280.png', full_page=True)
        finally: b.close()
    assert r['scroll'] <= r['W'] and r['over'] == [], r['over'][:5]
    assert r['n_titles'] > 20 and r['clash'] == [], r['clash'][:5]                   # the neighbour grid alone has 2 × 7 captions
    assert r['out'] == [], r['out'][:5]
    assert max(r['tables']) <= 1200
    assert errors == []

def test_a_users_folder_gets_no_rows_about_bundled_photos(tmp_path, tiny_model, no_sampler):
    "Source identity runs on bundled photos: beside a user's folder it would be a row about other data, so it is left out even when the model has a manifest."
    import shutil
    m = tmp_path/'model'; shutil.copytree(tiny_model, m)
    (m/'manifest.json').write_text(json.dumps({'datasets': {}, 'photos': {'brick': [[0.0, 0.7]], 'grass': [[0.0, 0.7]]}, 'generated': []}))
    for k in range(2): write_images(tmp_path/'pets'/'ab'[k], 10, seed=k, tone=k)
    rep, c = claims(run_report(m, tmp_path/'pets', tmp_path/'out', ReportConfig(**FAST), progress=False)[1])
    assert not any(k.startswith('φ names the photo') for k in c) and len(c) >= 5

def test_scenes_demo_part_is_held_out_and_judged():
    "The scenes part of the demo: scenes no training stream draws, labelled by object count, judged by the reader's count head well above the majority class."
    from sparsediff.report import DEMO_DATA, DEMO_PARTS, judge_for, judge_name
    from sparsediff.judges import classify
    from sparsediff.scenes import SceneStream
    assert ('scenes', 'scenes') in DEMO_PARTS
    s = DEMO_DATA['scenes'](None)
    assert s.name == 'scenes' and s.labelled and s.classes[:3] == ['0 objects', '1 object', '2 objects'] and len(s) == 600
    assert 3 not in {SceneStream(seed=1).scene_seed(i) for i in range(20_000)}                 # held-out render seed never a training block
    j = judge_for(s)
    acc = float((classify(j, s.images).argmax(1) == s.labels).float().mean())
    majority = float(torch.bincount(s.labels).max()) / len(s)
    assert acc > majority + 0.2 and 'scene reader' in judge_name(j)

def test_a_bundled_set_named_unlike_its_key(tmp_path, monkeypatch, no_sampler):
    "`--data mnist` loads a set named 'mnist-test': every step keys it the same way (the demo's digits part once crashed here)."
    import sparsediff.report as rp
    from sparsediff.data import ImageSet
    small = lambda model: (lambda s: ImageSet(s.images[:60], s.labels[:60], s.classes, 'mnist-test'))(rp.load_mnist('test'))
    monkeypatch.setitem(rp.DEMO_DATA, 'mnist', small)
    torch.manual_seed(0); m = UNet(UNetConfig.scaled(16, in_channels=1))
    h, j = run_report(m, 'mnist', tmp_path/'out', ReportConfig(**FAST), progress=False)
    rep, c = claims(j)
    assert 'Semantics (mnist-test)' in rep['sections'] and c

def test_folder_report_equals_the_in_memory_report(tmp_path, tiny_model, no_sampler):
    "A folder streamed (φ through DataLoader workers, images read by index) gives the report of the same folder loaded whole."
    from sparsediff.data import image_folder
    from sparsediff.report import FolderSample
    for k in range(2): write_images(tmp_path/'pets'/'ab'[k], 12, seed=k, tone=k)
    s = load_report_data(tmp_path/'pets')['pets']
    assert isinstance(s, FolderSample) and len(s.folder) == 24 and s.rows.tolist() == list(range(24))
    whole = image_folder(tmp_path/'pets')
    assert torch.equal(s.images, whole.images) and torch.equal(s.labels, whole.labels) and s.classes == whole.classes
    a = json.loads(run_report(tiny_model, tmp_path/'pets', tmp_path/'a', ReportConfig(**FAST), progress=False)[1].read_text())
    b = json.loads(run_report(tiny_model, whole, tmp_path/'b', ReportConfig(**FAST), progress=False)[1].read_text())
    assert a['sections'] == b['sections'] and a['meta']['data'] == b['meta']['data'] == 'pets (24)'
    assert (tmp_path/'a'/'cache'/'phi-pets'/'manifest.json').exists()

def test_folder_report_never_holds_all_images(tmp_path, tiny_model, no_sampler, monkeypatch):
    "40 images, a sample of 24, extraction chunks of 16: the whole folder is never loaded, and φ of every image is extracted."
    import sparsediff.report as rp, sparsediff.data as D
    from sparsediff.phi import ChunkedData
    for k in range(2): write_images(tmp_path/'pets'/'ab'[k], 20, seed=k, tone=k)
    monkeypatch.setattr(rp, 'FOLDER_SAMPLE', 24); monkeypatch.setattr(rp, 'PHI_CHUNK', 16)
    monkeypatch.setattr(rp, 'FOLDER_WORKERS', 0)                                    # decoded in this process, where they are counted
    monkeypatch.setattr(D, 'image_folder', lambda *a, **kw: pytest.fail('the whole folder was loaded'))
    held, decoded = [], [0]
    for cls, name in ((D.ImageSet, '__post_init__'), (ChunkedData, 'get'), (D.LazyImageFolder, 'read'), (D.LazyImageFolder, '__getitem__')):
        def spy(self, *a, real=getattr(cls, name), name=name, **kw):
            out = real(self, *a, **kw)
            if name == '__getitem__': decoded[0] += 1
            else: held.append(len(self.images) if name == '__post_init__' else len(out[0]) if name == 'get' else len(out))
            return out
        monkeypatch.setattr(cls, name, spy)
    h, j = run_report(tiny_model, tmp_path/'pets', tmp_path/'out', ReportConfig(**FAST), progress=False); rep = json.loads(j.read_text())
    assert held and max(held) < 40                                                 # no batch, chunk or image set of all 40 images
    assert decoded[0] >= 24 + 2 * 40                                               # the sample, then every image for each noise seed's φ
    assert rep['meta']['data'] == 'pets (24 of 40)' and 'the other analyses use a random sample of 24' in h.read_text()
    assert rep['sections']['Semantics (pets)']['numbers']['n_labelled'] == 24
    assert rep['sections']['Channel selectivity (pets)']['numbers']['n_channels'] > 0 and 'over the 40 images of pets' in h.read_text()   # every image's φ
