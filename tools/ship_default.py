"""Ship a training run as the package's `default` model, keeping the one it replaces under another name.

    python tools/ship_default.py --run training/default_v2 --keep default_v1

1. copies `sparsediff/weights/default` to `sparsediff/weights/<keep>` (once; an existing copy is left alone);
2. exports the run's model and config into `sparsediff/weights/default` (`sparsediff.train.export_run`), with `psnr.csv`
   measured on 200 crops of the held-out photos (`sparsediff.data.heldout_crops`, never in training);
3. writes `train_log.csv` as the kept model's log followed by the run's, steps counted from the start of the first
   phase, with a `phase` column (1: the kept model's training, 2: this run, warm-started from it).
"""
import argparse, json, shutil
from pathlib import Path
import pandas as pd
from sparsediff.data import heldout_crops
from sparsediff.train import export_run, read_log
from sparsediff.unet import pretrained_dir

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--run', required=True, help='run folder (holds current -> steps/...)')
    ap.add_argument('--keep', default='default_v1', help='name for the model being replaced')
    args = ap.parse_args()
    dest, keep = pretrained_dir('default'), pretrained_dir(args.keep)
    if not keep.exists(): shutil.copytree(dest, keep)
    old_log = pd.read_csv(keep/'train_log.csv')
    old_steps = json.loads((keep/'config.json').read_text()).get('step', int(old_log.step.max()))
    export_run(args.run, dest, eval_images=heldout_crops(200, seed=1).images)
    new_log = read_log(args.run)
    new_log['step'] = new_log['step'] + old_steps
    log = pd.concat([old_log.assign(phase=1), new_log.assign(phase=2)], ignore_index=True)
    log.to_csv(dest/'train_log.csv', index=False)
    cfg = json.loads((dest/'config.json').read_text())
    cfg['history'] = [dict(phase=1, steps=old_steps, model=args.keep, train_config=json.loads((keep/'config.json').read_text()).get('train_config')),
                      dict(phase=2, steps=int(cfg.get('step', 0)), run=str(args.run), warm_start=args.keep, revived_dead_channels=True)]
    cfg['total_steps'] = old_steps + int(cfg.get('step', 0))
    (dest/'config.json').write_text(json.dumps(cfg, indent=2))
    print(f'shipped {args.run} as default ({cfg["total_steps"]} steps in all); the previous default is {args.keep!r}')
    print(pd.read_csv(dest/'psnr.csv').to_string(index=False))

if __name__ == '__main__':
    main()
