"""The default-preset sweep of issue 22 on TRAINING digits only (never the test split): class rate of φ-guided samples of the blind
`mnist` model per adaptive-sampler setting, judged by the digit classifier. `run(stage, set_, n_samples, seed, **SamplerConfig fields)`
appends one row to nbs/assets/default_preset_sweep_digits.csv; 32 targets per set (`sweep`: randperm(4000, seed 123)[:32], `confirm`: the next 32)."""
import sys, time, csv, os, warnings, torch
torch.set_num_threads(1)
from sparsediff.unet import load_pretrained
from sparsediff.data import load_mnist
from sparsediff.judges import load_judge, classify
from sparsediff.sampler import reconstruct, SamplerConfig
model = load_pretrained('mnist'); judge = load_judge('mnist')
train = load_mnist('train', channels=1)
perm = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(123))
SETS = {'sweep': perm[:32], 'confirm': perm[32:64]}
CSV = os.path.join(os.path.dirname(__file__), '..', '..', 'nbs', 'assets', 'default_preset_sweep_digits.csv')
KEYS = ['schedule', 'guidance', 'h0', 'beta', 'sigma0', 'sigma_final', 'eta', 'trust', 'target_noise', 'share_forward', 'guidance_steps']
COLS = ['stage', 'set', 'n_targets', 'n_samples', 'seed'] + KEYS + ['class_rate', 'n_correct', 'n_total', 'evals_per_sample', 'steps', 'seconds', 'status']

def run(stage, set_='sweep', n_samples=1, seed=0, **kw):
    idx = SETS[set_]; x, y = train.images[idx], train.labels[idx]
    cfg = SamplerConfig(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t = time.time()
        r = reconstruct(model, x, n_samples, config=cfg, seed=seed, progress=False)
        sec = time.time() - t
    c = classify(judge, r.denoised.clamp(0, 1)).argmax(1)
    ok = (c == y.repeat_interleave(n_samples))
    row = dict(stage=stage, set=set_, n_targets=len(idx), n_samples=n_samples, seed=seed, **{k: getattr(cfg, k) for k in KEYS},
               class_rate=round(ok.float().mean().item(), 4), n_correct=int(ok.sum()), n_total=len(ok),
               evals_per_sample=round(r.evaluations_per_sample, 1), steps=r.steps, seconds=round(sec, 1), status=r.status)
    new = not os.path.exists(CSV)
    with open(CSV, 'a', newline='') as f:
        w = csv.DictWriter(f, COLS)
        if new: w.writeheader()
        w.writerow(row)
    print(f"{stage:10s} {set_:7s} n={n_samples} {kw} -> {row['class_rate']:.3f} ({row['n_correct']}/{row['n_total']}) evals={row['evals_per_sample']} steps={row['steps']} {row['seconds']}s {row['status']}", flush=True)
    return row
