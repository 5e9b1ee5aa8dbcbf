"""Does φ guidance matter? Guided vs unguided sampling on targets where the prior alone does not reach them, with verdicts.

Three target sets of 8 images, 4 samples each (32 samples per configuration and set): MNIST test digits (a black background
the training mixture rarely shows), crops of photos or photo bands the model never saw (read from its training manifest: `sparsediff.controls.unseen_pictures`), and off-prior
synthetic images (checkerboards, blobs, a logo, stripes). For each configuration — unguided (the control), sparsediff's
default and thorough presets, and the authors' fixed schedule with their public settings (`SamplerConfig.authors_fixed()`:
100 levels, 100 Adam iterations each, no early stop, target φ over 10 noise draws) — it reports the relative φ error,
identification (is a sample's φ nearest its own target's, among the 8; chance 1/8) and, on digits, the class rate (a pixel
classifier trained on other MNIST digits labels the sample with its target's digit). Verdicts use `sparsediff.controls.verdict`:
a guided configuration "holds" only when it beats the unguided control by more than the spread over targets' samples.
The authors' adaptive preset (~30,000 sampler steps × 100 Adam iterations per sample) is far beyond two CPU cores and is not run.
Run niced with OMP_NUM_THREADS=1: about 30-60 minutes, almost all of it the authors' fixed schedule (`--no-authors` skips it).
"""
import argparse, json, sys, time, warnings
from dataclasses import replace
import numpy as np
import torch
from sparsediff.core import write_json
from sparsediff.controls import unseen_pictures, verdict
from sparsediff.data import load_mnist, load_photo, image_pyramid, random_crops
from sparsediff.sampler import SamplerConfig, reconstruct, phi_error, phi_identification
from sparsediff.unet import load_pretrained, training_manifest


def digit_targets(n: int = 8):
    "The first MNIST test digit of each class 0..n-1, and the training digits for the class-rate classifier."
    d = load_mnist('test'); idx = [int((d.labels == k).nonzero()[0, 0]) for k in range(n)]
    return d.images[idx], torch.arange(n)


def unseen_targets(n: int = 8, seed: int = 0):
    "`n` crops, in turn, of the photos (or photo bands) the shipped default never trained on, from its manifest."
    g, pics = torch.Generator().manual_seed(seed), list(unseen_pictures(training_manifest('default')).values())
    crops = [random_crops([image_pyramid(p, 32, (2, 4))], 1, 32, generator=g)[0] for p in (pics * n)[:n]]
    return torch.cat(crops)


def off_prior_targets(n: int = 8):
    "Synthetic images the training mixture never shows: checkerboards, stripes, blobs, a colour ramp."
    import skimage.data
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing='ij')
    out = [((yy // 4 + xx // 4) % 2).float(), ((yy // 8 + xx // 8) % 2).float(), (xx // 3 % 2).float(), (yy // 5 % 2).float(),
           torch.from_numpy(skimage.data.binary_blobs(32, blob_size_fraction=0.3, rng=0)).float(),
           torch.from_numpy(skimage.data.binary_blobs(32, blob_size_fraction=0.15, rng=1)).float(),
           ((xx - 16) ** 2 + (yy - 16) ** 2 < 100).float(), xx.float() / 31]
    x = torch.stack(out[:n])[:, None].repeat(1, 3, 1, 1)
    x[-1, 1] = yy.float() / 31                                                       # a two-colour ramp
    return x


def class_rate(samples, target_labels):
    "Share of samples a pixel logistic regression, trained on MNIST training digits, labels with their target's digit."
    from sklearn.linear_model import LogisticRegression
    d = load_mnist('train')
    clf = LogisticRegression(max_iter=500).fit(d.images.flatten(1).numpy(), d.labels.numpy())
    return (clf.predict(samples.flatten(1).numpy()) == np.asarray(target_labels)).astype(float)


def measure(name, model, targets, n_samples, cfg, seed, labels=None) -> dict:
    "Run one configuration on one target set: per-sample φ error, identification, class rate."
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        r = reconstruct(model, targets, n_samples, cfg, seed=seed, progress=False)
    err = phi_error(model, r.denoised, targets[r.target_index]).numpy()
    ident = phi_identification(model, r.denoised, targets, r.target_index)
    row = dict(config=name, samples=len(r.samples), phi_error=err.tolist(), phi_error_mean=float(err.mean()), phi_error_std=float(err.std(ddof=1)),
               identification=ident, evals_per_sample=r.evaluations_per_sample, seconds=time.time() - t0, status=r.status)
    if labels is not None:
        cr = class_rate(r.denoised, labels[r.target_index]); row.update(class_rate=float(cr.mean()), class_rate_per_sample=cr.tolist())
    return row


def binomial_sd(p: float, n: int) -> float: return float(np.sqrt(max(p * (1 - p), 1 / n) / n))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--samples', type=int, default=4, help='samples per target (8 targets)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--no-authors', action='store_true', help="skip the authors' fixed schedule (the slow part)")
    ap.add_argument('--authors-samples', type=int, default=None, help="samples per target for the authors' schedule (default --samples; verdicts need 32 in all)")
    ap.add_argument('--only-authors', action='store_true', help="run only unguided and the authors' schedule")
    ap.add_argument('--authors-sets', default='digits,unseen photos,off-prior', help="comma-separated target sets for the authors' schedule")
    ap.add_argument('--out', default=None, help='write the results as JSON here')
    a = ap.parse_args(argv)
    model = load_pretrained()
    sets = {'digits': (*digit_targets(),), 'unseen photos': (unseen_targets(), None), 'off-prior': (off_prior_targets(), None)}
    configs = [('unguided', SamplerConfig.thorough(guidance='none')), ('sparsediff default', SamplerConfig()),
               ('sparsediff thorough', SamplerConfig.thorough())] + ([] if a.no_authors else [('authors fixed', SamplerConfig.authors_fixed())])
    results, verdicts = {}, []
    for set_name, (targets, labels) in sets.items():
        keep = [(n, c) for n, c in configs if (not n.startswith('authors') or set_name in a.authors_sets.split(','))
                and (not a.only_authors or n in ('unguided', 'authors fixed'))]
        if a.only_authors and len(keep) < 2: continue
        rows = [measure(n, model, targets, (a.authors_samples or a.samples) if n.startswith('authors') else a.samples, c, a.seed, labels)
                for n, c in keep]
        results[set_name] = rows
        free = rows[0]; n = free['samples']
        for r in rows:
            print(f"{set_name:<14} {r['config']:<20} {r['samples']} samples  φ error {r['phi_error_mean']:.3f} ± {r['phi_error_std']:.3f}  "
                  f"identified {r['identification']:.2f}" + (f"  class rate {r['class_rate']:.2f}" if 'class_rate' in r else '')
                  + f"  {r['evals_per_sample']:.0f} evals/sample  {r['seconds']:.0f} s", flush=True)
        for r in rows[1:]:
            m = r['samples']
            ve = verdict((r['phi_error_mean'], r['phi_error_std'] / np.sqrt(m)), {'unguided': (free['phi_error_mean'], free['phi_error_std'] / np.sqrt(n))}, higher=False)
            vi = verdict((r['identification'], binomial_sd(r['identification'], m)),
                         {'unguided': (free['identification'], binomial_sd(free['identification'], n)), 'chance': 1 / len(targets)})
            row = dict(target_set=set_name, config=r['config'], phi_error=ve, identification=vi)
            if 'class_rate' in r:
                row['class_rate'] = verdict((r['class_rate'], binomial_sd(r['class_rate'], m)),
                                            {'unguided': (free['class_rate'], binomial_sd(free['class_rate'], n)), 'chance': 0.1})
            verdicts.append(row)
            print(f"  verdict {set_name} / {r['config']}: φ error {ve['verdict']} ({ve['trained']:.3f} vs unguided {ve['control']:.3f}); "
                  f"identification {vi['verdict']} ({vi['trained']:.2f} vs {vi['best_control']} {vi['control']:.2f})"
                  + (f"; class rate {row['class_rate']['verdict']} ({row['class_rate']['trained']:.2f} vs {row['class_rate']['best_control']} {row['class_rate']['control']:.2f})" if 'class_rate' in row else ''), flush=True)
    if a.out: write_json(dict(results=results, verdicts=verdicts, samples_per_set=8 * a.samples), a.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
