"""Train the digits model (issue 22) in the background, resumably: `python training/mnist/train.py [--threads N] [--steps S]`.

Killing it and rerunning the same command resumes exactly (checkpoint every 500 steps). The test digits never enter:
`DigitsMixture` serves the MNIST-5k training split only, and the health probe is training digits too.
"""
import argparse, torch
from pathlib import Path
from sparsediff.unet import UNetConfig
from sparsediff.train import TrainConfig, train
from sparsediff.data import load_mnist

RUN = Path(__file__).parent/'run'
MODEL = UNetConfig.scaled(4, in_channels=1)                     # 16/32/64/128 channels, grey
RECIPE = dict(batch_size=64, lr=1e-3, warmup_steps=500, halve_every=8_000,
              sigma_dist='inv_sqrt', sigma_lo=0.0, sigma_hi=3.0,   # up to σ = 3 (the authors' range), density ∝ 1/√σ
              data='mnist', eval_every=1_000, ckpt_every=500, revive_every=1_000, seed=0)



def ship(run=RUN, name: str = 'mnist'):
    "Ship the run's model as `load_pretrained(name)` (log, PSNR and channel health on test digits, recipe), then rewrite the manifests."
    import subprocess, sys
    from sparsediff.train import ship_run
    test = load_mnist('test', channels=1)
    dest = ship_run(run, name, test.images[:256], test.images[::2], test.labels[::2].numpy(),   # every other test digit (sorted by class)
                    dict(script='training/mnist/train.py', data="DigitsMixture ('mnist'): MNIST-5k training split, augmented"))
    subprocess.run([sys.executable, str(Path(__file__).parents[2]/'tools'/'write_manifests.py')], check=True)
    return dest


if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--threads', type=int, default=1); ap.add_argument('--steps', type=int, default=40_000)
    ap.add_argument('--ship', action='store_true', help="copy the run's latest checkpoint into the package as load_pretrained('mnist')")
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    probe = load_mnist('train', channels=1).images[-256:]      # training digits: monitoring only, never test digits
    if a.ship: print('shipped to', ship()); raise SystemExit
    train(RUN, MODEL, TrainConfig(steps=a.steps, **RECIPE), eval_images=probe, progress=True)

