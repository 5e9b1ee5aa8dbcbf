"""Training: σ sampling, CLI, checkpoints, corrupt files, and DistributedDataParallel under torchrun (CPU, gloo)."""
import os, subprocess, sys, shutil
from pathlib import Path
import numpy as np, pytest, torch
from sparsediff.train import sample_sigma, train, TrainConfig, read_log, load_checkpoint, lr_at, evaluate_psnr
from sparsediff.unet import UNetConfig, load_model, UNet
from sparsediff.data import TrainingMixture

TINY = UNetConfig.scaled(16)

class ConstantData:
    "A data source whose batches are a fixed function of step."
    def batch(self, step, bs):
        g = torch.Generator().manual_seed(step)
        return torch.rand(bs, 3, 16, 16, generator=g)

def test_sigma_range_and_errors():
    s = sample_sigma(1000, 'log_uniform', 0.01, 0.5, generator=torch.Generator().manual_seed(0))
    assert s.min() >= 0.01 and s.max() <= 0.5
    with pytest.raises(ValueError, match='Unknown sigma'): sample_sigma(3, 'gaussian')
    with pytest.raises(ValueError, match='lo < hi'): sample_sigma(3, 'uniform', 0.5, 0.1)

def test_warmup_then_halving():
    c = TrainConfig(lr=1e-3, warmup_steps=100, halve_every=1000)
    lrs = [lr_at(s, c) for s in (0, 50, 99, 1099, 1100, 2100)]
    assert lrs[0] < lrs[1] < lrs[2] == 1e-3 and lrs[3] == 1e-3 and lrs[4] == 5e-4 and lrs[5] == 2.5e-4

def test_resume_extends_run_and_keeps_log(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=2, log_every=1, ckpt_every=2, warmup_steps=2)
    train(tmp_path, TINY, cfg, data=ConstantData(), progress=False)
    assert load_checkpoint(tmp_path)['step'] == 4
    train(tmp_path, None, TrainConfig(**{**cfg.to_dict(), 'steps': 6}), data=ConstantData(), progress=False)
    log = read_log(tmp_path)
    assert log.step.tolist() == [1, 2, 3, 4, 5, 6]
    assert load_model(tmp_path).config == UNet(TINY).config

def test_corrupt_checkpoint_is_reported(tmp_path):
    (tmp_path/'checkpoint.pt').write_bytes(b'garbage')
    with pytest.raises(ValueError, match='corrupt'): train(tmp_path, TINY, TrainConfig(steps=1), data=ConstantData(), progress=False)

def test_cli_train_and_bad_args(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'sparsediff.cli', 'train', '--out', str(tmp_path/'run'), '--width-div', '16',
                        '--steps', '2', '--batch-size', '2', '--eval-every', '0', '--ckpt-every', '1'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/'run'/'model.safetensors').exists() and load_checkpoint(tmp_path/'run')['step'] == 2
    r = subprocess.run([sys.executable, '-m', 'sparsediff.cli', 'train', '--out', str(tmp_path), '--norm', 'weird'], capture_output=True, text=True)
    assert r.returncode == 2 and 'invalid choice' in r.stderr

def test_evaluate_psnr_identity_model():
    class Identity(torch.nn.Module):
        def __init__(self): super().__init__(); self.p = torch.nn.Parameter(torch.zeros(1))
        def forward(self, y): return y
    x = torch.full((4, 3, 8, 8), 0.5)
    ev = evaluate_psnr(Identity(), x, sigmas=(0.1,))
    assert abs(ev.psnr_model[0] - ev.psnr_noisy[0]) < 1e-4 and abs(ev.psnr_noisy[0] - 20) < 0.5

DDP_SCRIPT = '''
import torch, torch.distributed as dist
from sparsediff.train import train, TrainConfig
from sparsediff.unet import UNetConfig
import sys
dist.init_process_group('gloo')
class Data:
    def __init__(self, rank): self.rank = rank
    def batch(self, step, bs): return torch.rand(bs, 3, 16, 16, generator=torch.Generator().manual_seed(step * 10 + self.rank))
m = train(sys.argv[1], UNetConfig.scaled(16), TrainConfig(steps=3, batch_size=2, log_every=1, ckpt_every=3), data=Data(dist.get_rank()), progress=False)
w = torch.cat([p.detach().flatten() for p in m.parameters()])
ws = [torch.zeros_like(w) for _ in range(dist.get_world_size())]
dist.all_gather(ws, w)
assert torch.allclose(ws[0], ws[1]), 'replicas diverged'
open(f'{sys.argv[1]}-ok-{dist.get_rank()}', 'w').write('ok')  # one file per rank: stdout of two ranks interleaves
dist.destroy_process_group()
'''

@pytest.mark.slow
def test_torchrun_ddp_two_cpu_processes(tmp_path):
    torchrun = shutil.which('torchrun')
    if torchrun is None: pytest.skip('torchrun not on PATH')
    script = tmp_path/'ddp.py'; script.write_text(DDP_SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([torchrun, '--standalone', '--nproc_per_node', '2', '--log-dir', str(tmp_path/'logs'), '--redirects', '3',
                        str(script), str(tmp_path/'run')], capture_output=True, text=True, timeout=300, env=env)
    ranks = ''.join(f'\n--- {f.relative_to(tmp_path)}\n{f.read_text()[-3000:]}' for f in sorted((tmp_path/'logs').rglob('*.log')))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:] + ranks      # each rank's own output, not only the launcher's
    assert (tmp_path/'run-ok-0').exists() and (tmp_path/'run-ok-1').exists()
    assert load_checkpoint(tmp_path/'run') is not None   # written by rank 0
