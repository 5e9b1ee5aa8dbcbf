"""Resumable recipe sweep (issue 16) and the long background run of the chosen recipe.

Each candidate trains in its own run folder (`runs/sweep/<name>`, resumable by `sparsediff.train.train`); a candidate whose
scores are already in the results CSV is skipped. Scores, all on crops of whole photos that never enter `NaturalMixture`
(`sparsediff.data.HELDOUT_PHOTOS`): dead / near-dead middle channels, live-channel PR of the middle block vs the encoder
blocks, centred noise stability, φ source-identity kNN vs pixels and vs random-init copies, and PSNR vs scikit-image's
NL-means / TV / wavelet denoisers tuned per σ (from `benchmarks/bench_denoise.py`).

    python tools/sweep.py sweep [--only NAME ...]               # train and score the candidates, append to the CSV
    python tools/sweep.py score --model PATH --name NAME        # score one model folder (or 'default') into the CSV
    python tools/sweep.py long --recipe NAME --out training/default_v2 --steps 60000 [--until 22:50]

Run everything under `nice -n 19` with OMP_NUM_THREADS=1: the sweep uses one thread.
"""
import argparse, importlib.util, json, math, os, sys, time
from pathlib import Path
import numpy as np, pandas as pd, torch

ROOT = Path(__file__).resolve().parents[1]
SWEEP_DIR = Path(os.environ.get('SWEEP_DIR', ROOT/'training'/'sweep'))
RESULTS, CLASSICAL = SWEEP_DIR/'results.csv', SWEEP_DIR/'classical.csv'
SIGMAS = (0.05, 0.1, 0.2, 0.4)
FAIR = ('china', 'flower')        # held-out photos that the shipped default never saw either (it trained on 70% of the others)

BASE = dict(batch_size=32, sigma_dist='log_uniform', sigma_lo=0.01, sigma_hi=1.0, data='natural', log_every=50,
            eval_every=250, ckpt_every=250, warmup_steps=100)
CANDIDATES = {   # name: (init, TrainConfig overrides); every candidate is width/4, std-only LayerNorm, batch 32
    'A_step_1e-3':          ('scratch', dict(lr=1e-3, schedule='step', halve_every=10_000)),       # the shipped recipe, new data
    'B_fall_1e-3':          ('scratch', dict(lr=1e-3, schedule='cosine', hold_steps=100, min_lr=1e-5)),
    'C_fall_1e-3_revive':   ('scratch', dict(lr=1e-3, schedule='cosine', hold_steps=100, min_lr=1e-5, revive_every=100)),
    'D_default_3e-4_revive': ('default', dict(lr=3e-4, warmup_steps=100, schedule='cosine', min_lr=1e-5, revive_every=100)),
    'E_fall_1e-3_revive_invsqrt': ('scratch', dict(lr=1e-3, schedule='cosine', hold_steps=100, min_lr=1e-5, revive_every=100,
                                                   sigma_dist='inv_sqrt', sigma_lo=0.0)),   # C with the paper's 1/√σ density
}
SWEEP_STEPS = 500

def long_overrides(name):
    "The recipe's phases stretched for a long run: longer warm-up and high phase, revival and evaluation every 500 steps."
    init, over = CANDIDATES[name]
    o = dict(eval_every=500, ckpt_every=250, warmup_steps=1000 if init == 'scratch' else 300)
    if over.get('hold_steps'): o['hold_steps'] = 2000
    if over.get('revive_every'): o['revive_every'] = 500
    return o

def bench():
    "The benchmark module benchmarks/bench_denoise.py (classical denoisers)."
    spec = importlib.util.spec_from_file_location('bench_denoise', ROOT/'benchmarks'/'bench_denoise.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m

def probe_set():
    "Held-out crops for channel health and φ kNN (300, labelled by photo)."
    from sparsediff.data import heldout_crops
    return heldout_crops(300, seed=0)

def psnr_set():
    "Held-out crops for PSNR (200 test, 40 validation for tuning the classical methods)."
    from sparsediff.data import heldout_crops
    return heldout_crops(200, seed=1), heldout_crops(40, seed=2)

def per_image_psnr(den, x):
    "PSNR (dB) of each image of a denoised batch."
    from sparsediff.core import psnr
    return psnr(den.clamp(0, 1), x).numpy()

def classical_table():
    "Per-σ PSNR of TV, NL-means and wavelet (tuned per σ on validation crops), on all test crops and on the FAIR photos; cached."
    if CLASSICAL.exists(): return pd.read_csv(CLASSICAL)
    b = bench(); test, val = psnr_set()
    from sparsediff.train import add_noise
    fair = np.isin(np.array(test.class_names()), FAIR)
    grids = {'tv': (0.3, 0.5, 0.8, 1.2), 'nl_means': (0.6, 0.8, 1.0, 1.2), 'wavelet': (0.7, 1.0, 1.3)}
    rows = []
    for s in SIGMAS:
        y = add_noise(test.images, s, generator=torch.Generator().manual_seed(0))
        row = {'sigma': s, 'noisy': float(per_image_psnr(y, test.images).mean())}
        for name, grid in grids.items():
            best = max(grid, key=lambda p: b.run_classical(name, val.images, s, p, seed=1))
            out = np.stack([b.classical(name, yi.permute(1, 2, 0).numpy().astype(np.float64), s, best) for yi in y])
            p = per_image_psnr(torch.from_numpy(out).permute(0, 3, 1, 2).float(), test.images)
            row.update({name: float(p.mean()), f'{name}_fair': float(p[fair].mean()), f'{name}_param': best})
        rows.append(row); print(row, flush=True)
    df = pd.DataFrame(rows); CLASSICAL.parent.mkdir(parents=True, exist_ok=True); df.to_csv(CLASSICAL, index=False)
    return df

def model_psnr(model):
    "Model PSNR per σ on the held-out test crops, all and FAIR photos."
    from sparsediff.train import add_noise
    test, _ = psnr_set(); fair = np.isin(np.array(test.class_names()), FAIR); out = {}
    model.eval()
    for s in SIGMAS:
        y = add_noise(test.images, s, generator=torch.Generator().manual_seed(0))
        with torch.no_grad(): p = per_image_psnr(model(y), test.images)
        out[f'psnr_{s:g}'], out[f'psnr_fair_{s:g}'] = float(p.mean()), float(p[fair].mean())
    return out

def random_knn(config):
    "φ kNN of random-init copies (3 seeds) of an architecture on the probe set (cached per architecture)."
    f = SWEEP_DIR/'random_init.json'; key = json.dumps(config, sort_keys=True)
    cache = json.loads(f.read_text()) if f.exists() else {}
    if key not in cache:
        cache[key] = _random_knn(config); f.write_text(json.dumps(cache))
    return cache[key]

def _random_knn(config):
    from sparsediff.unet import UNet
    from sparsediff.train import channel_health
    pr = probe_set(); acc = []
    for seed in range(3):
        torch.manual_seed(seed); m = UNet(config); m.check_inputs = False
        acc.append(channel_health(m, pr.images, pr.labels)['knn_phi'])
    return acc

def score(model, name, extra=None):
    "Every score of `model` as one row (dict)."
    from sparsediff.train import channel_health
    pr = probe_set(); t = time.time()
    row = {'name': name, **(extra or {}), **channel_health(model, pr.images, pr.labels)}
    row['dead_frac'] = row['dead_mid'] / model.cfg.widths[-1]
    row['phi_minus_pixels'] = row['knn_phi'] - row['knn_pixels']
    rnd = random_knn(model.config); row['knn_random_max'] = max(rnd)
    row['phi_above_random'] = float(row['knn_phi'] > max(rnd))
    row.update(model_psnr(model))
    cl = classical_table()
    for r in cl.itertuples():
        s = f'{r.sigma:g}'
        row[f'margin_{s}'] = row[f'psnr_{s}'] - max(r.tv, r.nl_means, r.wavelet)
        row[f'margin_fair_{s}'] = row[f'psnr_fair_{s}'] - max(r.tv_fair, r.nl_means_fair, r.wavelet_fair)
    row['beats_classical'] = float(all(row[f'margin_{s:g}'] > 0 for s in SIGMAS))
    row['targets_met'] = int(row['beats_classical'] + (row['dead_frac'] <= 0.1) + row['mid_sparser'] + row['mid_most_stable']
                             + (row['phi_minus_pixels'] >= 0.2 and row['phi_above_random'] > 0))
    row['score_s'] = time.time() - t
    return row

def append(row):
    "Append one row to the results CSV (columns are the union so far)."
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(RESULTS) if RESULTS.exists() else pd.DataFrame()
    df = pd.concat([df, pd.DataFrame([row])], ignore_index=True); df.to_csv(RESULTS, index=False)
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

def done_names():
    return set(pd.read_csv(RESULTS)['name']) if RESULTS.exists() else set()

def initial_model(init):
    "The starting network of a candidate: a fresh width/4 UNet or a copy of the shipped default."
    from sparsediff.unet import UNet, UNetConfig, load_pretrained
    if init == 'default': return load_pretrained('default')
    return UNet(UNetConfig.scaled(4))

def train_recipe(name, out, steps, until=None, log_csv=None, long=False):
    "Train (or resume) candidate `name` in folder `out` to `steps`; stop cleanly (with a checkpoint) at wall-clock `until` (HH:MM UTC)."
    from sparsediff.train import TrainConfig, train, read_log, revive_dead_channels, load_checkpoint
    init, over = CANDIDATES[name]
    cfg = TrainConfig(steps=steps, **{**BASE, **over, **(long_overrides(name) if long else {})})
    pr = probe_set(); test, _ = psnr_set()
    fresh = load_checkpoint(out) is None
    model = initial_model(init)
    if fresh and init == 'default' and cfg.revive_every: print('revived at start:', revive_dead_channels(model, pr.images))
    deadline = None
    if until:
        h, m = map(int, until.split(':')); now = time.gmtime()
        deadline = time.time() + ((h * 60 + m) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec
    def cb(done, rec):
        if 'knn_phi' in rec:
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}, flush=True)
            if log_csv: read_log(out).to_csv(log_csv, index=False)
        return not (deadline and time.time() > deadline)
    t = time.time()
    model = train(out, model if fresh else None, cfg, eval_images=test.images[:100], progress=False, callback=cb, probe=pr)
    if log_csv: read_log(out).to_csv(log_csv, index=False)
    return model, time.time() - t

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('mode', choices=['sweep', 'score', 'long', 'classical'])
    ap.add_argument('--only', nargs='*'); ap.add_argument('--model'); ap.add_argument('--name')
    ap.add_argument('--recipe'); ap.add_argument('--out'); ap.add_argument('--steps', type=int, default=SWEEP_STEPS)
    ap.add_argument('--until', help='stop with a checkpoint at this UTC wall-clock time, HH:MM')
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.mode == 'classical': print(classical_table()); return
    if a.mode == 'score':
        from sparsediff.unet import load_model, load_pretrained
        m = load_pretrained('default') if a.model == 'default' else load_model(a.model)
        m.check_inputs = False; append(score(m, a.name or a.model)); return
    if a.mode == 'long':
        out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
        model, secs = train_recipe(a.recipe, out, a.steps, a.until, log_csv=out/'train_log.csv', long=True)
        return
    classical_table()
    if 'shipped_default' not in done_names():
        from sparsediff.unet import load_pretrained
        m = load_pretrained('default'); m.check_inputs = False
        append(score(m, 'shipped_default', {'init': 'shipped', 'steps': 40_000, 'recipe': 'lr 1e-3 step, log-uniform σ, old mixture'}))
    for name in (a.only or CANDIDATES):
        if name in done_names(): print('skip', name, '(scored)'); continue
        out = ROOT/'runs'/SWEEP_DIR.name/name
        model, secs = train_recipe(name, out, a.steps)
        model.check_inputs = False
        init, over = CANDIDATES[name]
        append(score(model, name, {'init': init, 'steps': a.steps, 'train_min': secs / 60, 'recipe': json.dumps(over)}))

if __name__ == '__main__': main()
