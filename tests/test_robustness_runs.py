"""`train` writes only into its own runs (issue 25 item 1) and validates its inputs and its checkpoint files with bounds (items 2 and 6)."""
import json, os, subprocess, sys, threading, time
from pathlib import Path
import pytest, torch
from sparsediff.train import train, TrainConfig, load_checkpoint, export_run
from sparsediff.unet import UNetConfig, UNet, save_model, load_model
from sparsediff.core import folder_lock

TINY = UNetConfig.scaled(16)
CFG = TrainConfig(steps=2, batch_size=2, ckpt_every=1, log_every=1, warmup_steps=1)

class Data:
    def batch(self, step, bs): return torch.rand(bs, 3, 16, 16, generator=torch.Generator().manual_seed(step))

def run(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'sparsediff.cli', 'train', *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(Path(__file__).parents[1])}, timeout=300)

def snapshot(d): return {p.relative_to(d).as_posix(): (os.readlink(p) if p.is_symlink() else p.read_bytes()) for p in sorted(d.rglob('*')) if p.is_file() or p.is_symlink()}

def test_empty_out_is_refused_and_the_current_folder_untouched(tmp_path):
    (tmp_path/'config.json').write_text('{"project": 1}'); before = snapshot(tmp_path)
    r = run('--out', '', '--width-div', '16', '--steps', '1', '--batch-size', '2', '--eval-every', '0', cwd=tmp_path)
    assert r.returncode == 2 and '--out is empty' in r.stderr and snapshot(tmp_path) == before
    with pytest.raises(ValueError, match='not a folder name'): train('', TINY, CFG, data=Data(), progress=False)

@pytest.mark.parametrize('kind', ['save_model', 'export_run', 'user_run_json', 'project'])
def test_train_refuses_a_folder_it_did_not_write(tmp_path, kind):
    d = tmp_path/'d'
    if kind == 'save_model': save_model(UNet(TINY), d)
    elif kind == 'export_run': train(tmp_path/'r', TINY, CFG, data=Data(), progress=False); export_run(tmp_path/'r', d)
    elif kind == 'user_run_json': d.mkdir(); (d/'run.json').write_text('{"experiment": "mine"}')
    else: d.mkdir(); (d/'config.json').write_text('{}'); (d/'notes.md').write_text('hi')
    before = snapshot(d)
    with pytest.raises(ValueError, match='holds no sparsediff training run'): train(d, TINY, CFG, data=Data(), progress=False)
    assert snapshot(d) == before

def test_own_run_resumes_and_old_run_json_still_counts(tmp_path):
    train(tmp_path/'r', TINY, CFG, data=Data(), progress=False)
    meta = json.loads((tmp_path/'r'/'run.json').read_text()); assert meta['format'] == 'sparsediff.run/1'
    del meta['format']; (tmp_path/'r'/'run.json').write_text(json.dumps(meta))   # written by an earlier sparsediff
    m = train(tmp_path/'r', TINY, TrainConfig(steps=3, batch_size=2, ckpt_every=1, log_every=1, warmup_steps=1), data=Data(), progress=False)
    assert load_checkpoint(tmp_path/'r')['step'] == 3

def test_two_trainings_on_one_folder_are_locked_against_each_other(tmp_path):
    (tmp_path/'r').mkdir()
    with folder_lock(tmp_path/'r', 'training run'):   # as a running `train` holds it
        with pytest.raises(RuntimeError, match=f'being written by another process \\(pid {os.getpid()}\\)'):
            train(tmp_path/'r', TINY, CFG, data=Data(), progress=False)

@pytest.mark.parametrize('step,msg', [(-5, "field 'step' is -5"), (10**18, "field 'step' is 1000000000000000000"), ('3', "field 'step'")])
def test_crafted_training_state_is_refused(tmp_path, step, msg):
    train(tmp_path/'r', TINY, CFG, data=Data(), progress=False)
    f = (tmp_path/'r'/'current').resolve()/'state.json'; s = json.loads(f.read_text()); s['step'] = step; f.write_text(json.dumps(s))
    with pytest.raises(ValueError, match=msg): load_checkpoint(tmp_path/'r')
    with pytest.raises(ValueError, match=msg): train(tmp_path/'r', TINY, CFG, data=Data(), progress=False)

def test_huge_layer_count_in_a_config_is_refused_at_once(tmp_path):
    save_model(UNet(TINY), tmp_path/'m')
    c = json.loads((tmp_path/'m'/'config.json').read_text()); c['config']['enc_layers'] = 10_000_000
    (tmp_path/'m'/'config.json').write_text(json.dumps(c)); t = time.time()
    with pytest.raises(ValueError, match='enc_layers must be <= 64'): load_model(tmp_path/'m')
    assert time.time() - t < 2

def test_fifo_weights_do_not_hang(tmp_path):
    save_model(UNet(TINY), tmp_path/'m'); (tmp_path/'m'/'model.safetensors').unlink(); os.mkfifo(tmp_path/'m'/'model.safetensors')
    with pytest.raises(ValueError, match='not a regular file'): load_model(tmp_path/'m')

def test_integer_weights_are_refused_not_cast(tmp_path):
    from safetensors.torch import save_file
    m = UNet(TINY); save_model(m, tmp_path/'m')
    save_file({k: v.to(torch.int64) for k, v in m.state_dict().items()}, str(tmp_path/'m'/'model.safetensors'))
    with pytest.raises(ValueError, match='integer tensors'): load_model(tmp_path/'m')

@pytest.mark.parametrize('flags,msg', [(['--threads', '1000000'], '--threads must be <='), (['--batch-size', '1000000000'], '--batch-size must be <='),
                                       (['--batch-size', '1000000'], 'GB for activations'),
                                       (['--seed', str(2**70)], '--seed must be <='), (['--steps', str(10**30)], '--steps must be <='),
                                       (['--workers', '-1'], '--workers must be >= 0'), (['--device', 'meta'], "--device 'meta'")])
def test_cli_arguments_are_refused_before_any_work(tmp_path, flags, msg):
    t = time.time(); r = run('--out', str(tmp_path/'r'), '--width-div', '16', '--eval-every', '0', *flags)
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path/'r').exists() and time.time() - t < 60

@pytest.mark.parametrize('kind', ['project', 'run_folder', 'user_config', 'link'])
def test_export_run_refuses_a_folder_it_did_not_write(tmp_path, kind):
    train(tmp_path/'r', TINY, CFG, data=Data(), progress=False)
    d = tmp_path/'d'; d.mkdir()
    if kind == 'project': (d/'config.json').write_text('{"mine": 1}'); (d/'notes.md').write_text('hi')
    elif kind == 'run_folder': d = tmp_path/'r'
    elif kind == 'user_config': (d/'config.json').write_text('{"experiment": "mine"}')
    (tmp_path/'mine.csv').write_text('a,b')
    if kind == 'link': os.symlink(tmp_path/'mine.csv', d/'train_log.csv')
    before = snapshot(d)
    with pytest.raises(ValueError, match='is not a sparsediff model folder'): export_run(tmp_path/'r', d)
    assert snapshot(d) == before and (tmp_path/'mine.csv').read_text() == 'a,b'   # nothing replaced, a link's target untouched

def test_export_run_refreshes_its_own_export(tmp_path):
    train(tmp_path/'r', TINY, CFG, data=Data(), progress=False)
    export_run(tmp_path/'r', tmp_path/'e'); export_run(tmp_path/'r', tmp_path/'e')   # again: the folder is a model export
    assert load_model(tmp_path/'e') is not None and sorted(p.name for p in (tmp_path/'e').iterdir()) == ['config.json', 'model.safetensors', 'train_log.csv']
