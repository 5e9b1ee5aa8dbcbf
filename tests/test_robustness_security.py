"""Security: no file a user may receive can run code (checkpoints, logs, report caches), every string is escaped in HTML,
and every path a report writes stays inside `--out`."""
import shutil, json, os, pickle, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from sparsediff.train import train, TrainConfig, load_checkpoint, read_log
from sparsediff.unet import UNetConfig
from sparsediff.report import Section, cached, step_key, write_report, safe_name, inside, safe_text, phi_features, ReportConfig
from sparsediff.data import ImageSet

TINY = UNetConfig.scaled(16)

class Data:
    def batch(self, step, bs): return torch.rand(bs, 3, 16, 16, generator=torch.Generator().manual_seed(step))

class Payload:
    "Unpickling this creates the marker file: proof that code ran."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (open, (self.marker, 'w'))

def evil_bytes(marker) -> bytes: return pickle.dumps({'model': {}, 'step': 1, 'x': Payload(marker)})

def test_crafted_checkpoint_pt_does_not_run_on_train(tmp_path):
    marker = tmp_path/'PWNED'
    torch.save({'step': 3, 'log': [], 'x': Payload(marker)}, tmp_path/'checkpoint.pt')
    with pytest.raises(ValueError, match='corrupt or holds more than tensors'):
        train(tmp_path, TINY, TrainConfig(steps=2, batch_size=2), data=Data(), progress=False)
    with pytest.raises(ValueError): read_log(tmp_path)
    assert not marker.exists()

def test_crafted_checkpoint_does_not_run_from_the_cli(tmp_path):
    marker = tmp_path/'PWNED'
    (tmp_path/'run').mkdir(); (tmp_path/'run'/'checkpoint.pt').write_bytes(evil_bytes(marker))
    r = subprocess.run([sys.executable, '-m', 'sparsediff.cli', 'train', '--out', str(tmp_path/'run'), '--width-div', '16', '--steps', '2'],
                       capture_output=True, text=True)
    assert r.returncode == 2 and 'Traceback' not in r.stderr and not marker.exists(), r.stderr

def test_legacy_plain_checkpoint_still_loads(tmp_path):
    torch.save({'step': 5, 'log': [{'step': 5, 'loss': 0.1}], 'model': {'w': torch.ones(2)}}, tmp_path/'checkpoint.pt')
    assert load_checkpoint(tmp_path)['step'] == 5 and read_log(tmp_path).loss.tolist() == [0.1]

def test_run_folder_holds_no_pickle(tmp_path):
    train(tmp_path, TINY, TrainConfig(steps=2, batch_size=2, ckpt_every=1, log_every=1), data=Data(), progress=False)
    files = [p for p in tmp_path.rglob('*') if p.is_file() and p.name != '.lock']
    assert files and all(p.suffix in ('.json', '.safetensors') for p in files), files
    assert (tmp_path/'.lock').read_text().isdigit()   # the run folder's lock holds a process id, nothing else
    for p in files: assert not p.read_bytes().startswith((b'\x80', b'PK')), p  # neither a pickle nor torch.save's zip

def test_checkpoint_link_outside_the_run_is_refused(tmp_path):
    train(tmp_path/'run', TINY, TrainConfig(steps=1, batch_size=2), data=Data(), progress=False)
    (tmp_path/'elsewhere').mkdir(); (tmp_path/'run'/'current').unlink(); os.symlink(tmp_path/'elsewhere', tmp_path/'run'/'current')
    with pytest.raises(ValueError, match='points outside'): load_checkpoint(tmp_path/'run')

def test_pickled_cache_file_is_never_loaded(tmp_path):
    marker = tmp_path/'PWNED'
    key = step_key(a=1)
    (tmp_path/f'step-{key}.pkl').write_bytes(evil_bytes(marker))   # what an old or crafted cache looks like
    assert cached(tmp_path, 'step', key, lambda: {'v': 1}) == {'v': 1} and not marker.exists()

@pytest.mark.parametrize('payload', [
    '{"format": "sparsediff.cache/1", "result": {"__array__": {"data": "", "dtype": "|O", "shape": [0]}}}',
    '{"format": "sparsediff.cache/1", "result": {"__evil__": 1}}',
    '{"format": "other", "result": 1}', 'not json', '{"format": "sparsediff.cache/1"}'])
def test_crafted_json_cache_is_recomputed(tmp_path, payload):
    key = step_key(b=2); (tmp_path/f'step-{key}.json').write_text(payload)
    assert cached(tmp_path, 'step', key, lambda: 7) == 7
    assert json.loads((tmp_path/f'step-{key}.json').read_text())['result'] == 7

def test_cache_round_trips_report_values(tmp_path):
    import plotly.graph_objects as go
    df = pd.DataFrame({'representation': ['φ', 'pixels'], 'knn_acc': [0.5, 1 / 3]}); df.attrs['k'] = 5
    sec = Section('t', 'x', [go.Figure(go.Scatter(y=[1, 2]))], {'tab': df},
                  {'phi_error': torch.tensor([0.1, 0.2]), 'status': 'done', 'n': np.int64(3), 'nan': float('nan'), 'comparison': df})
    cached(tmp_path, 's', 'k', lambda: sec); back = cached(tmp_path, 's', 'k', lambda: None)
    pd.testing.assert_frame_equal(back.tables['tab'], df); assert back.tables['tab'].attrs == {'k': 5}
    assert torch.equal(back.numbers['phi_error'], sec.numbers['phi_error']) and back.numbers['n'] == 3 and np.isnan(back.numbers['nan'])

XSS = '<img src=x onerror=alert(1)>'

def test_every_string_in_the_report_is_escaped(tmp_path):
    sec = Section(f'Selectivity ({XSS})', f'Images of {XSS} with <b>bold</b>', [], {XSS: pd.DataFrame({XSS: [XSS]})}, {})
    h, _ = write_report(tmp_path, [sec], f'title {XSS}', {XSS: XSS})
    page = h.read_text()
    assert '<img' not in page and 'onerror=alert(1)&gt;' in page and '<b>bold</b>' in page
    assert safe_text('<script>alert(1)</script>') == '&lt;script&gt;alert(1)&lt;/script&gt;'

@pytest.mark.parametrize('name', ['../../escaped', '/abs/path', '..', '.hidden', 'a/../../b', XSS, ''])
def test_dataset_names_cannot_leave_the_output_folder(tmp_path, name):
    out = tmp_path/'out'; out.mkdir()
    p = out/f'phi-{safe_name(name)}'
    assert inside(out, p).parent == out.resolve() and '/' not in safe_name(name) and not safe_name(name).startswith('.')
    assert cached(out, f'features-{name}', 'k', lambda: 1) == 1
    assert [q.parent for q in tmp_path.rglob('*.json')] == [out]

def test_phi_store_of_a_hostile_dataset_name_stays_inside(tmp_path):
    from sparsediff.unet import UNet
    torch.manual_seed(0); net = UNet(TINY).eval()
    s = ImageSet(torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long), ['a'], name='../../outside')
    phi_features(net, s, tmp_path/'cache', ReportConfig(n_noise=1), progress=False)
    made = [p for p in tmp_path.parent.rglob('manifest.json') if tmp_path.name in str(p) or 'outside' in str(p)]
    assert made == [tmp_path/'cache'/f'phi-{safe_name(s.name)}'/'manifest.json'] and not (tmp_path.parent/'outside').exists()

def test_inside_refuses_escape(tmp_path):
    with pytest.raises(ValueError, match='outside the output folder'): inside(tmp_path/'out', tmp_path/'out'/'..'/'x')

def test_a_crafted_store_manifest_cannot_delete_or_read_outside(tmp_path):
    from sparsediff.phi import extract_phi, PhiStore
    from sparsediff.unet import UNet
    torch.manual_seed(0); net = UNet(TINY).eval()
    extract_phi(net, torch.rand(4, 3, 16, 16), tmp_path/'s', sigmas=(0.2,), n_noise=1, progress=False)
    victim = tmp_path/'victim.txt'; victim.write_text('keep me')
    m = json.loads((tmp_path/'s'/'manifest.json').read_text())
    m['files'] = {k: '../victim.txt' for k in m['files']}; (tmp_path/'s'/'manifest.json').write_text(json.dumps(m))
    with pytest.raises(ValueError, match="field 'files' must name one .npy file inside the store"): PhiStore(tmp_path/'s')
    with pytest.raises(ValueError, match="field 'files'"):   # not provably ours: even overwrite=True leaves it alone
        extract_phi(net, torch.rand(4, 3, 16, 16), tmp_path/'s', sigmas=(0.2,), n_noise=1, progress=False, overwrite=True)
    assert victim.read_text() == 'keep me'

def test_a_crafted_steps_link_cannot_make_training_delete_elsewhere(tmp_path):
    precious = tmp_path/'home'; precious.mkdir(); (precious/'thesis.tex').write_text('years of work')
    (tmp_path/'run').mkdir(); os.symlink(precious, tmp_path/'run'/'steps')
    os.symlink('/etc/hostname', tmp_path/'run'/'model.safetensors')
    with pytest.raises(ValueError, match='holds no sparsediff training run'):   # not one of its runs: refused before anything is touched
        train(tmp_path/'run', TINY, TrainConfig(steps=1, batch_size=2), data=Data(), progress=False)
    assert (precious/'thesis.tex').read_text() == 'years of work'
    train(tmp_path/'own', TINY, TrainConfig(steps=1, batch_size=2), data=Data(), progress=False)
    assert os.readlink(tmp_path/'own'/'model.safetensors') == 'current/model.safetensors'
    (tmp_path/'own'/'current').unlink(); shutil.rmtree(tmp_path/'own'/'steps'); os.symlink(precious, tmp_path/'own'/'steps')   # a link planted in its own run
    with pytest.raises(ValueError, match='symbolic link'): train(tmp_path/'own', TINY, TrainConfig(steps=2, batch_size=2), data=Data(), progress=False)
    assert (precious/'thesis.tex').read_text() == 'years of work'
