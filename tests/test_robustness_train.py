"""Training: the seed fixes everything, resume refuses conflicting settings by name, bad settings are refused, the
checkpoint and the model are one atomic step, and kill -9 resumes bit-exactly."""
import dataclasses, json, os, signal, subprocess, sys
from pathlib import Path
import pytest, torch
import sparsediff.train as trainmod
from sparsediff.train import train, TrainConfig, load_checkpoint, read_log, save_checkpoint
from sparsediff.unet import UNetConfig, load_model, UNet

TINY = UNetConfig.scaled(16)
CFG = TrainConfig(steps=4, batch_size=2, ckpt_every=2, log_every=1, warmup_steps=2)

class Data:
    def batch(self, step, bs): return torch.rand(bs, 3, 16, 16, generator=torch.Generator().manual_seed(step))

def weights(m): return {k: v.clone() for k, v in m.state_dict().items()}
def equal(a, b): return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

def test_seed_fixes_initial_weights_whatever_the_global_rng(tmp_path):
    torch.manual_seed(123); a = weights(train(tmp_path/'a', TINY, CFG, data=Data(), progress=False))
    torch.manual_seed(999); torch.rand(10); b = weights(train(tmp_path/'b', TINY, CFG, data=Data(), progress=False))
    c = weights(train(tmp_path/'c', TINY, dataclasses.replace(CFG, seed=1), data=Data(), progress=False))
    assert equal(a, b) and not equal(a, c)
    state = torch.get_rng_state(); train(tmp_path/'d', TINY, CFG, data=Data(), progress=False)
    assert torch.equal(state, torch.get_rng_state())   # training does not consume the caller's global RNG for init

def test_cli_seed_twice_gives_identical_weights(tmp_path):
    for run in ('a', 'b'):
        r = subprocess.run([sys.executable, '-m', 'sparsediff.cli', 'train', '--out', str(tmp_path/run), '--width-div', '16', '--steps', '2',
                            '--batch-size', '2', '--eval-every', '0', '--seed', '0'], capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
        assert r.returncode == 0, r.stderr
    assert equal(load_model(tmp_path/'a').state_dict(), load_model(tmp_path/'b').state_dict())

@pytest.mark.parametrize('change, says', [(dict(lr=2e-3), r'lr \(--lr\): the run has 0.001, asked 0.002'), (dict(batch_size=3), '--batch-size'),
                                          (dict(seed=5), '--seed'), (dict(sigma_dist='uniform'), '--sigma-dist'), (dict(warmup_steps=7), '--warmup')])
def test_resume_refuses_a_conflicting_train_config(tmp_path, change, says):
    train(tmp_path, TINY, CFG, data=Data(), progress=False)
    with pytest.raises(ValueError, match=says): train(tmp_path, TINY, dataclasses.replace(CFG, steps=6, **change), data=Data(), progress=False)
    assert load_checkpoint(tmp_path)['step'] == 4

@pytest.mark.parametrize('mcfg, says', [(UNetConfig.scaled(8), r'widths \(--width-div\)'), (UNetConfig.scaled(16, norm='group'), r'norm \(--norm\)'),
                                        (UNetConfig.scaled(16, bias=False), '--no-bias')])
def test_resume_refuses_a_conflicting_model(tmp_path, mcfg, says):
    train(tmp_path, TINY, CFG, data=Data(), progress=False)
    with pytest.raises(ValueError, match=says): train(tmp_path, mcfg, dataclasses.replace(CFG, steps=6), data=Data(), progress=False)

def test_resume_may_extend_and_change_bookkeeping(tmp_path):
    train(tmp_path, TINY, CFG, data=Data(), progress=False)
    train(tmp_path, TINY, dataclasses.replace(CFG, steps=6, ckpt_every=3, log_every=2), data=Data(), progress=False)
    assert load_checkpoint(tmp_path)['step'] == 6
    train(tmp_path, None, None, data=Data(), progress=False)   # no settings at all: the stored ones

@pytest.mark.parametrize('kw, says', [(dict(steps=0), 'steps must be >= 1'), (dict(batch_size=0), 'batch_size must be >= 1'),
                                      (dict(steps=2.5), 'steps must be a whole number'), (dict(lr=0), 'lr must be'), (dict(lr=float('nan')), 'lr must be'),
                                      (dict(lr=-1e-3), 'lr must be'), (dict(ckpt_every=0), 'ckpt_every'), (dict(log_every=0), 'log_every'),
                                      (dict(sigma_lo=0.5, sigma_hi=0.1), 'sigma_lo < sigma_hi'), (dict(sigma_hi=float('inf')), 'finite'),
                                      (dict(sigma_dist='normal'), 'Unknown sigma'), (dict(amp='fp8'), 'amp must be'), (dict(warmup_steps=-1), 'warmup_steps'),
                                      (dict(grad_clip=-1.0), 'grad_clip'), (dict(steps=True), 'whole number')])
def test_bad_settings_are_refused(kw, says):
    with pytest.raises((ValueError, TypeError), match=says): TrainConfig(**kw)

def test_out_that_is_a_file(tmp_path):
    (tmp_path/'f').write_text('x')
    with pytest.raises(ValueError, match='is a file'): train(tmp_path/'f', TINY, CFG, data=Data(), progress=False)

def test_model_files_and_checkpoint_always_agree(tmp_path):
    train(tmp_path, TINY, CFG, data=Data(), progress=False)
    def step_of_model(): return json.loads((tmp_path/'config.json').read_text())['step']
    assert step_of_model() == load_checkpoint(tmp_path)['step'] == 4
    assert equal(load_model(tmp_path).state_dict(), load_checkpoint(tmp_path)['model'])
    # a crash at the commit point (the link swap) leaves the previous step whole, model and state alike
    real = trainmod._link
    def crash(target, link):
        if link.name == 'current': raise KeyboardInterrupt('killed at the commit')
        return real(target, link)
    trainmod._link = crash
    try:
        with pytest.raises(KeyboardInterrupt): train(tmp_path, TINY, dataclasses.replace(CFG, steps=6), data=Data(), progress=False)
    finally: trainmod._link = real
    assert step_of_model() == load_checkpoint(tmp_path)['step'] == 4
    train(tmp_path, TINY, dataclasses.replace(CFG, steps=6), data=Data(), progress=False)
    assert step_of_model() == load_checkpoint(tmp_path)['step'] == 6 and len(list((tmp_path/'steps').iterdir())) == 1

def test_corrupt_checkpoint_folder_is_a_clear_error(tmp_path):
    train(tmp_path, TINY, CFG, data=Data(), progress=False)
    (tmp_path/'current'/'optimizer.safetensors').write_bytes(b'garbage')
    with pytest.raises(ValueError, match='is corrupt.*delete'): train(tmp_path, TINY, dataclasses.replace(CFG, steps=6), data=Data(), progress=False)

KILLER = '''
import os, signal, sys, torch
from sparsediff.train import train, TrainConfig
from sparsediff.unet import UNetConfig
class Data:
    def batch(self, step, bs): return torch.rand(bs, 3, 16, 16, generator=torch.Generator().manual_seed(step))
def die(done, rec):
    if done == int(sys.argv[2]): os.kill(os.getpid(), signal.SIGKILL)
train(sys.argv[1], UNetConfig.scaled(16), TrainConfig(steps=12, batch_size=2, ckpt_every=3, log_every=1, warmup_steps=4, halve_every=5),
      data=Data(), progress=False, callback=die)
'''

@pytest.mark.parametrize('kill_at', [5, 7])
def test_kill_9_resume_is_bit_exact(tmp_path, kill_at):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', KILLER, str(tmp_path/'killed'), str(kill_at)], env=env)
    assert r.returncode == -signal.SIGKILL and load_checkpoint(tmp_path/'killed')['step'] == kill_at // 3 * 3
    r = subprocess.run([sys.executable, '-c', KILLER, str(tmp_path/'killed'), '0'], env=env); assert r.returncode == 0
    r = subprocess.run([sys.executable, '-c', KILLER, str(tmp_path/'straight'), '0'], env=env); assert r.returncode == 0
    assert equal(load_model(tmp_path/'killed').state_dict(), load_model(tmp_path/'straight').state_dict())
    a, b = read_log(tmp_path/'killed'), read_log(tmp_path/'straight')
    assert a.step.tolist() == list(range(1, 13)) and a.loss.tolist() == b.loss.tolist()

def test_nan_loss_stops_the_run_and_keeps_the_checkpoint(tmp_path):
    class Poisoned(Data):
        def batch(self, step, bs): return super().batch(step, bs) * (float('nan') if step >= 3 else 1)
    with pytest.raises(RuntimeError, match=r'loss is nan at step 4.*checkpoint at step 2 is kept'):
        train(tmp_path, TINY, dataclasses.replace(CFG, steps=6), data=Poisoned(), progress=False)
    assert load_checkpoint(tmp_path)['step'] == 2 and all(torch.isfinite(v).all() for v in load_model(tmp_path).state_dict().values())
