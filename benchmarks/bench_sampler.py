"""φ-guided sampling: the authors' configurations vs sparsediff's default, measured side by side in one run.

For each configuration: network evaluations and wall time per sample, the final relative φ error
‖φ(x) − φ(x_c)‖/‖φ(x_c)‖ (σ = 0.2, 8 shared noise draws), the fraction of samples whose φ is nearest their own target's
(identification; chance = 1/targets), and the noise level the denoiser measures in the final samples. An unguided run is the
reference: φ has a large common component, so a relative error means little unless it is well below the unguided one.
Main set: held-out photo/texture crops (the shipped model's domain). Second set: MNIST digits, a harder target for this model
(sparsediff's configurations and the authors' fixed schedule only; `--no-digits` skips it).
Run with OMP_NUM_THREADS=1 on a shared machine. `--quick` is a smoke run (two targets, the authors' adaptive run capped).
"""
import argparse, json, platform, sys, warnings
from dataclasses import replace
import torch
from sparsediff.core import write_json
from sparsediff.data import load_crops, load_mnist
from sparsediff.sampler import SamplerConfig, reconstruct, phi_error, phi_identification, estimate_sigma, denoise
from sparsediff.unet import load_pretrained, pretrained_dir


def pick_targets(n: int, seed: int = 0) -> tuple:
    "The first held-out crop of every other class: `n` varied 32×32 targets."
    d = load_crops(split='test', n=400, seed=seed)
    first = {}
    for i, label in enumerate(d.labels.tolist()): first.setdefault(label, i)
    idx = list(first.values())[::2][:n]
    return d.images[idx], [d.classes[d.labels[i]] for i in idx]


def pick_digits(n: int) -> tuple:
    "The first held-out MNIST digit of each class 0..n-1."
    d = load_mnist('test')
    idx = [int((d.labels == k).nonzero()[0, 0]) for k in range(n)]
    return d.images[idx], [str(k) for k in range(n)]


def measure(name: str, model, targets, n_samples: int, cfg: SamplerConfig, seed: int, target_set: str = 'photos') -> dict:
    "Run one configuration and summarise cost and quality."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        r = reconstruct(model, targets, n_samples, cfg, seed=seed, progress=False)
    err = phi_error(model, r.denoised, targets[r.target_index])
    ident = phi_identification(model, r.denoised, targets, r.target_index)
    sigma_end = estimate_sigma(r.samples - denoise(model, r.samples))      # measured afresh, not counted in the cost
    row = dict(config=name, target_set=target_set, targets=len(targets), samples=len(r.samples), steps=r.steps, status=r.status, message=r.message,
               evals_per_sample=r.evaluations_per_sample, denoiser_per_sample=r.evals['denoiser'] / len(r.samples),
               encoder_per_sample=r.evals['encoder'] / len(r.samples), backward_per_sample=r.evals['backward'] / len(r.samples),
               seconds_per_sample=r.seconds_per_sample, phi_error_mean=err.mean().item(), phi_error_median=err.median().item(),
               phi_error_max=err.max().item(), identification=ident, phi_error_per_target=err.view(len(targets), -1).mean(1).tolist(),
               sigma_end_mean=sigma_end.mean().item(), sigma_end_max=sigma_end.max().item(),
               warnings=[str(w.message) for w in caught], config_dict=cfg.to_dict())
    print(f"{target_set:<7} {name:<20} {row['samples']:>3} samples {row['steps']:>4} steps {row['status']:<10} "
          f"{row['evals_per_sample']:>9.0f} evals/sample ({row['denoiser_per_sample']:.0f} denoiser + {row['encoder_per_sample']:.0f} encoder) "
          f"{row['seconds_per_sample']:>7.2f} s/sample  φ err mean {row['phi_error_mean']:.3f} median {row['phi_error_median']:.3f} "
          f"max {row['phi_error_max']:.3f}  identified {ident:.2f}  σ_end {row['sigma_end_mean']:.3f}", flush=True)
    if r.message: print(f"{'':<28} note: {r.message}", flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='smoke run: 2 targets, authors adaptive capped at 60 steps')
    ap.add_argument('--targets', type=int, default=8)
    ap.add_argument('--samples', type=int, default=4, help='samples per target for every configuration')
    ap.add_argument('--authors-samples', type=int, default=None,
                    help="samples per target for the authors' configurations (default: --samples; their Adam guidance costs "
                         "~20-80 s per sample on one CPU thread, so 8x4 takes about an hour; costs are reported per sample)")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--no-digits', action='store_true', help='skip the MNIST target set')
    ap.add_argument('--digits-authors-samples', type=int, default=1, help="samples per digit for the authors' fixed schedule (about 1 min each)")
    ap.add_argument('--out', default=None, help='write the results as JSON here')
    a = ap.parse_args(argv)
    if a.quick: a.targets, a.samples = 2, 2
    authors_samples = a.authors_samples or a.samples
    model = load_pretrained()
    step = json.loads((pretrained_dir() / 'config.json').read_text()).get('step')
    targets, names = pick_targets(a.targets)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; '
          f'shipped model at training step {step}; targets: {names}', flush=True)
    ours = SamplerConfig()
    authors_adaptive = SamplerConfig.authors(max_steps=60) if a.quick else SamplerConfig.authors()
    rows = [measure('unguided (reference)', model, targets, a.samples, replace(ours, guidance='none'), a.seed),
            measure('sparsediff default', model, targets, a.samples, ours, a.seed),
            measure('sparsediff 2-step', model, targets, a.samples, SamplerConfig(share_forward=False, guidance_steps=2), a.seed),
            measure('sparsediff thorough', model, targets, a.samples, SamplerConfig.thorough(), a.seed),
            measure('authors fixed', model, targets, authors_samples, SamplerConfig.authors_fixed(), a.seed),
            measure('authors adaptive', model, targets, authors_samples, authors_adaptive, a.seed)]
    if not a.no_digits:
        digits, _ = pick_digits(a.targets)
        rows += [measure(n, model, digits, k, c, a.seed, 'digits') for n, k, c in (
            ('unguided (reference)', a.samples, replace(ours, guidance='none')), ('sparsediff default', a.samples, ours),
            ('sparsediff thorough', a.samples, SamplerConfig.thorough()),
            ('authors fixed', a.digits_authors_samples, SamplerConfig.authors_fixed()))]
    by = {(r['target_set'], r['config']): r for r in rows}
    d, free = by['photos', 'sparsediff default'], by['photos', 'unguided (reference)']
    print(f"\nphotos: default φ error {d['phi_error_mean']:.3f} vs unguided {free['phi_error_mean']:.3f}; "
          f"identified {d['identification']:.2f} vs {free['identification']:.2f} (chance {1 / len(targets):.2f})")
    print('ratios, authors / sparsediff default (per sample, photos):')
    ok = d['phi_error_mean'] <= 0.1
    for name in ('authors fixed', 'authors adaptive'):
        r = by['photos', name]
        ev, tm = r['evals_per_sample'] / d['evals_per_sample'], r['seconds_per_sample'] / d['seconds_per_sample']
        print(f'  {name:<18} network evaluations {ev:6.1f}x   wall time {tm:6.1f}x   '
              f"φ error {r['phi_error_mean']:.3f} vs {d['phi_error_mean']:.3f}   status {r['status']}")
        ok &= ev >= 5
    for name in ('sparsediff thorough', 'authors fixed'):
        for ts in ('photos', 'digits'):
            if (ts, name) in by and (ts, 'sparsediff default') in by:
                r, o = by[ts, name], by[ts, 'sparsediff default']
                print(f"  {ts:<7} {name:<20} / default: evaluations {r['evals_per_sample'] / o['evals_per_sample']:6.1f}x   "
                      f"φ error {r['phi_error_mean']:.3f} vs {o['phi_error_mean']:.3f}   identified {r['identification']:.2f} vs {o['identification']:.2f}")
    print(f"\ntarget (default φ error ≤ 0.1 with ≥ 5x fewer evaluations than each authors' configuration): {'MET' if ok else 'NOT MET'}"
          + (' [quick run: authors adaptive capped, ratios are lower bounds]' if a.quick else ''))
    if a.out: write_json(dict(rows=rows, target_met=ok, quick=a.quick, model_step=step, targets=names), a.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
