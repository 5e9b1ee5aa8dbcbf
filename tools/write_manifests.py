"""Write `manifest.json` (what each shipped model trained on) into the shipped model folders, derived from the mixtures' own code.

`python tools/write_manifests.py` — rerun after shipping a model; `tests/test_manifest.py` checks the files against this.
"""
import json, sys
from pathlib import Path
from sparsediff.data import PHOTOS, NATURAL_PHOTOS, HELDOUT_PHOTOS
from sparsediff.unet import pretrained_dir, MANIFEST_NAME

SMALL = {'mnist': ['train'], 'lfw': ['train'], 'digits': ['train']}   # the small labelled sets both mixtures draw from
TRAIN_FRAC = 0.7                                                        # photo_region(..., 'train'): the left 70 %

def mixture_v1() -> dict:
    "TrainingMixture: the left 70 % of PHOTOS, and the training splits of MNIST-5k, LFW and scikit-learn digits."
    return dict(datasets=dict(SMALL), photos={p: [[0.0, TRAIN_FRAC]] for p in PHOTOS}, generated=[])

def mixture_v2() -> dict:
    "NaturalMixture: NATURAL_PHOTOS whole, dead leaves, smooth gradients, and the same small training splits."
    return dict(datasets=dict(SMALL), photos={p: [[0.0, 1.0]] for p in NATURAL_PHOTOS}, generated=['dead leaves', 'smooth gradients'])

def union(*ms) -> dict:
    "Everything any of the manifests saw."
    out = dict(datasets={}, photos={}, generated=[])
    for m in ms:
        for k, v in m['datasets'].items(): out['datasets'][k] = sorted(set(out['datasets'].get(k, [])) | set(v))
        for k, v in m['photos'].items(): out['photos'][k] = sorted(out['photos'].get(k, []) + v)
        out['generated'] = sorted(set(out['generated']) | set(m['generated']))
    return out

MANIFESTS = {
    'default_v1': dict(mixture_v1(), note="TrainingMixture ('mixture'), 40,000 steps"),
    'default': dict(union(mixture_v1(), mixture_v2()), note="warm-started from default_v1 (TrainingMixture), then NaturalMixture ('natural') for 10,000 steps",
                    validation=dict(photos={p: [[0.0, 1.0]] for p in HELDOUT_PHOTOS},
                                    note='never in a training batch, but its recipe was chosen on crops of these photos (tools/sweep.py) and '
                                         'they were the probe that re-initialised dead middle channels every 500 steps: validation data, not test data')),
    'scenes': dict(datasets={}, photos={}, generated=['rendered scenes (sparsediff.scenes, an infinite procedural stream)'], note="12,000 steps on rendered scenes"),
    'mnist': dict(datasets={'mnist': ['train']}, photos={}, generated=[], note="DigitsMixture ('mnist'): the MNIST-5k training split (4,000 digits), augmented"),
}

if __name__ == '__main__':
    for name, m in MANIFESTS.items():
        d = pretrained_dir(name)
        if not d.exists(): print(f'skip {name}: not shipped'); continue
        (d/MANIFEST_NAME).write_text(json.dumps(m, indent=1) + '\n'); print('wrote', d/MANIFEST_NAME)
