"""Train the scenes model (issue 22 item 3) in the background, resumably: `python training/scenes/train.py [--threads N] [--steps S]`.

Warm-started from the first `scenes` model (12,000 steps, σ log-uniform in [0.01, 1], which does not generate), then
trained on the infinite rendered stream (`SceneStream`: no scene is seen twice, so nothing can be memorised) with the
authors' σ range. Killing it and rerunning the same command resumes exactly (checkpoint every 500 steps).
"""
import argparse, torch
from pathlib import Path
from sparsediff.train import TrainConfig, train
from sparsediff.scenes import SceneStream, render_scenes

RUN = Path(__file__).parent/'run'
PROBE_SEED = 9_001                                                # monitoring scenes: small seed, never a SceneStream block
RECIPE = dict(batch_size=32, lr=5e-4, warmup_steps=300, halve_every=10_000,
              sigma_dist='inv_sqrt', sigma_lo=0.0, sigma_hi=3.0,   # up to σ = 3 (the authors' range), density ∝ 1/√σ
              data='scenes', eval_every=1_000, ckpt_every=500, revive_every=1_000, seed=1)


def start_model():
    "The first `scenes` model, as the warm start (only used when the run folder has no checkpoint)."
    from sparsediff.unet import load_pretrained
    return load_pretrained('scenes')


def ship(run=RUN, name: str = 'scenes'):
    "Ship the run's model as `load_pretrained(name)` (log, PSNR and channel health on held-out scenes by object count, recipe), then rewrite the manifests."
    import subprocess, sys
    from sparsediff.train import ship_run
    from sparsediff.judges import scene_labels
    held = render_scenes(256, seed=PROBE_SEED + 1)
    dest = ship_run(run, name, held.images, held.images, scene_labels(held)[0].numpy(),
                    dict(script='training/scenes/train.py', data='SceneStream: rendered scenes, an infinite stream', warm_start='scenes (12,000 steps, σ log-uniform [0.01, 1])'))
    subprocess.run([sys.executable, str(Path(__file__).parents[2]/'tools'/'write_manifests.py')], check=True)
    return dest


if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--threads', type=int, default=1); ap.add_argument('--steps', type=int, default=30_000)
    ap.add_argument('--ship', action='store_true', help="copy the run's latest checkpoint into the package as load_pretrained('scenes')")
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    if a.ship: print('shipped to', ship()); raise SystemExit
    probe = render_scenes(256, seed=PROBE_SEED).images
    model = None if (RUN/'current').exists() else start_model()
    train(RUN, model, TrainConfig(steps=a.steps, **RECIPE), data=SceneStream(size=32, seed=RECIPE['seed']), eval_images=probe, progress=True)
