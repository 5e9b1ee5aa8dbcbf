"""Score kept checkpoints of a scenes ε-model run on validation scenes (render seed 11, never the test seed 3) before shipping one.
Usage: python training/mnist_ddpm/score_checkpoints.py [--ema] [--run DIR] STEP [STEP ...]
For each step kept in <run>/history (default training/scenes_ddpm/run): 64 DDIM-50 samples per sampling seed (1, 2), their pixel mean, spread and
gradient energy over those of 300 validation scenes, and the share the shipped scene reader is confident (p ≥ 0.9) about."""
import argparse, importlib.util, json, tempfile, torch
from pathlib import Path

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('steps', type=int, nargs='+'); ap.add_argument('--ema', action='store_true'); ap.add_argument('--threads', type=int, default=1); ap.add_argument('--run', type=Path, default=None)
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    spec = importlib.util.spec_from_file_location('train', Path(__file__).parent/'train.py'); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    m.use_data('scenes')
    from diffusers import DDPMPipeline, DDIMScheduler
    from sparsediff.adapters import load_denoiser
    from sparsediff.sampler import scheduler_samples
    from sparsediff.judges import scene_count_set, SceneCounter, load_judge, statistics_ratio, confident_share, classify
    val, reader = scene_count_set(300, seed=11), SceneCounter(load_judge('scenes'))
    for step in a.steps:
        u, e = m.make_unet(), m.make_unet(); m.load_history(a.run or m.RUN, step, u, e)
        with tempfile.TemporaryDirectory() as d:
            DDPMPipeline(unet=(e if a.ema else u).eval(), scheduler=m.make_scheduler()).save_pretrained(d); D = load_denoiser(d)
            for seed in (1, 2):
                x = scheduler_samples(D, 64, steps=50, scheduler=DDIMScheduler, seed=seed, progress=False).samples.clamp(0, 1)   # (64, 3, 32, 32)
                st = statistics_ratio(x, val.images).set_index('statistic').ratio
                print(json.dumps(dict(run=str(a.run or m.RUN), step=step, weights='EMA' if a.ema else 'training', seed=seed, mean=round(st['mean'], 2), std=round(st['std'], 2),
                                      gradient_energy=round(st['gradient_energy'], 2), reader_confident=round(confident_share(classify(reader, x)), 2))), flush=True)

if __name__ == '__main__': main()
