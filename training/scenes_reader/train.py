"""Train the scene attribute reader (`load_judge('scenes')`): a CNN reading the visible-object count and the shapes present from a
rendered scene, uncertain on images that are not scenes. Resumable: rerun the same command after a crash.
Usage: python training/scenes_reader/train.py [--steps 5000] [--threads 1] [--run DIR] [--no-fields] [--mixes]   (trains and evaluates; checkpoint in DIR, default run/)
       python training/scenes_reader/train.py --ship [same arguments]          (evaluate the finished run and ship it as the 'scenes' judge)
--no-fields leaves random Gaussian fields out of the non-scene images it is trained to be unsure of (the first shipped recipe);
--mixes puts patchworks of three scenes cut along smooth regions (fragments that make no scene) in place of half of the Gaussian fields."""
import argparse, json, torch
from pathlib import Path
from sparsediff.judges import train_scene_reader, scene_reader_scores, save_judge, JUDGES_DIR

RUN = Path(__file__).parent/'run'

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=5000); ap.add_argument('--threads', type=int, default=1); ap.add_argument('--ship', action='store_true')
    ap.add_argument('--run', type=Path, default=RUN); ap.add_argument('--no-fields', action='store_true'); ap.add_argument('--mixes', action='store_true')
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    reader = train_scene_reader(steps=a.steps, fields=not a.no_fields, mixes=a.mixes, checkpoint=a.run/'checkpoint.pt')
    scores = scene_reader_scores(reader)      # held-out render seed 7; stand-ins from render seed 11; print(json.dumps(scores), flush=True)
    (a.run/'scores.json').write_text(json.dumps(dict(steps=a.steps, fields=not a.no_fields, mixes=a.mixes, **scores), indent=1))
    if a.ship:
        negatives = 'grey + noise, smooth fields, tile-shuffled scenes' + ('' if a.no_fields else ', random Gaussian fields with a 1/f^α spectrum') + (', patchworks of three scenes' if a.mixes else '')
        save_judge(reader, JUDGES_DIR/'scenes', dict(trained_on='30,000 rendered scenes (render seeds 1,000,000 + chunk), mirrored at random; '
                   f'non-scenes ({negatives}) trained to a uniform count', steps=a.steps, fields=not a.no_fields, mixes=a.mixes,
                   recipe='training/scenes_reader/train.py' + (' --no-fields' if a.no_fields else '') + (' --mixes' if a.mixes else ''), held_out='render seed 7 (1,000 scenes); stand-ins from render seed 11', **scores))
        print('shipped', JUDGES_DIR/'scenes')

if __name__ == '__main__': main()
