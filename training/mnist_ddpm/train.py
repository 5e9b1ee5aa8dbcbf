"""Train an ε-model (digits: issue 23, item 3; scenes: issue 22) in the background, resumably: `python training/mnist_ddpm/train.py [--data digits|scenes] [--threads N] [--steps S]`.

A diffusers `UNet2DModel` (1 grey channel, 32×32, ≤ 3M parameters) trained with diffusers' own `DDPMScheduler` (`add_noise`, linear
β, 1,000 steps) and ε-MSE on the MNIST-5k training split only — `DigitsMixture`, the augmented `load_mnist('train')` digits our
blind digits model trained on (the 28×28 digits sit in a 32×32 frame); the test digits never enter. Every step's batch, timesteps
and noise come from the step number, so killing the run and rerunning the same command resumes exactly from the last checkpoint
(model + optimizer + step, written atomically every `--ckpt-every` steps; the weights of each checkpoint are also kept, float16, in
<run>/history/<step>.pt). `--ship` saves the latest checkpoint as a diffusers
pipeline folder, `DDPMPipeline(unet, scheduler).save_pretrained`, under sparsediff/weights/mnist_ddpm with a small manifest.json
(`--ship --step N`: the kept checkpoint of step N instead).
`--data scenes` trains the same network with three colour channels on the endless rendered-scene stream (`SceneStream(size=32,
seed=1)`: fresh scenes every batch, nothing to memorise), checkpoints in training/scenes_ddpm/run and ships sparsediff/weights/scenes_ddpm.
`--decay-from S --steps E --run DIR` is a cool-down: the learning rate falls linearly from its constant value at step S to 0 at step E,
in its own folder started from a copy of a checkpoint at step S (the main run goes on at a constant rate); the manifest records it.
"""
import argparse, json, math, os, time
from pathlib import Path
import torch
import torch.nn.functional as F

HERE = Path(__file__).parent
RUN, SHIP = HERE/'run', HERE.parents[1]/'sparsediff'/'weights'/'mnist_ddpm'
UNET = dict(sample_size=32, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(32, 64, 96),
            down_block_types=('DownBlock2D',) * 3, up_block_types=('UpBlock2D',) * 3,
            norm_num_groups=8)          # 32/64/96 channels, attention only in mid_block at 8 px: 1.69M parameters, 2x faster than 2.5M
SCHEDULER = dict(num_train_timesteps=1000, beta_schedule='linear', prediction_type='epsilon')
RECIPE = dict(batch_size=64, lr=5e-4, warmup_steps=500, grad_clip=1.0, ema_decay=0.999, seed=0)
CKPT = 'checkpoint.pt'
DATASETS = {          # what differs between the two ε-models: channels, data stream, folders and the manifest's words
    'digits': dict(name='mnist_ddpm', channels=1, run=RUN, ship=SHIP,
                   data="DigitsMixture: MNIST-5k training split (load_mnist('train')), augmented; test digits never seen",
                   image='1×32×32 in [0, 1] (28×28 digits in a 32×32 frame); the network sees 2x − 1'),
    'scenes': dict(name='scenes_ddpm', channels=3, run=HERE.parent/'scenes_ddpm'/'run', ship=SHIP.parent/'scenes_ddpm',
                   data='SceneStream(size=32, seed=1): fresh rendered scenes every batch (1-4 objects on a ground under a backdrop); held-out sets use other seeds',
                   image='3×32×32 RGB in [0, 1]; the network sees 2x − 1'),
}

def use_data(name: str):
    "Point the module's config (UNET channels, default folders) at dataset `name` ('digits' or 'scenes')."
    global UNET, RUN, SHIP, DATA
    if name not in DATASETS: raise ValueError(f'--data must be one of {list(DATASETS)}, not {name!r}')
    DATA = DATASETS[name]; c = DATA['channels']
    UNET = dict(UNET, in_channels=c, out_channels=c); RUN, SHIP = DATA['run'], DATA['ship']

def make_data():
    "The training stream of the current dataset: `.batch(step, B)` → (B, C, 32, 32) in [0, 1]."
    if DATA['name'] == 'scenes_ddpm':
        from sparsediff.scenes import SceneStream
        return SceneStream(size=32, seed=1)
    from sparsediff.data import DigitsMixture
    return DigitsMixture(seed=RECIPE['seed'])

DATA = DATASETS['digits']

def make_unet():
    "The ε-network: a UNet2DModel from `UNET`."
    from diffusers import UNet2DModel
    return UNet2DModel(**UNET)

def make_scheduler():
    "diffusers' own DDPMScheduler: its ᾱ table and add_noise define the training noise."
    from diffusers import DDPMScheduler
    return DDPMScheduler(**SCHEDULER)

def lr_at(step: int, lr: float, warmup: int, decay_from: int | None = None, end: int | None = None) -> float:
    "Linear warm-up to `lr`, then constant; from step `decay_from` (if given) a linear decay that reaches 0 at step `end`."
    base = lr * min(1.0, (step + 1) / warmup)
    if decay_from is None or step < decay_from: return base
    return base * max(0.0, (end - step) / (end - decay_from))

def step_noise(step: int, x: torch.Tensor, T: int, seed: int) -> tuple:
    "The timesteps (B,) and noise ε (B, C, 32, 32) of `step`, the same on every run."
    g = torch.Generator().manual_seed(seed * 1_000_003 + step + 7_777_777)
    return torch.randint(T, (len(x),), generator=g), torch.randn(x.shape, generator=g)

def eps_loss(unet, scheduler, x01: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    "ε-MSE at timesteps t on [0, 1] images x01 (B, C, 32, 32), mapped to the scheduler's [−1, 1] data."
    x_t = scheduler.add_noise(2 * x01 - 1, eps, t)
    return F.mse_loss(unet(x_t, t).sample, eps)

def update_ema(ema, unet, decay: float):
    "ema ← decay·ema + (1 − decay)·unet, parameter by parameter (buffers copied)."
    with torch.no_grad():
        for e, p in zip(ema.parameters(), unet.parameters()): e.lerp_(p, 1 - decay)
        for e, b in zip(ema.buffers(), unet.buffers()): e.copy_(b)

def _save(obj: dict, path: Path, recipe: dict):
    "torch.save `obj` with the run's config and `recipe`, atomically (a crash mid-write leaves the previous file)."
    from sparsediff.core import atomic_path
    with atomic_path(path) as tmp: torch.save({**obj, 'unet': UNET, 'scheduler': SCHEDULER, 'recipe': recipe}, tmp)

def _load(path: Path) -> dict:
    "A checkpoint or kept weights written by `_save`, refused when trained with another config."
    ck = torch.load(path, map_location='cpu', weights_only=False)
    if ck['unet'] != UNET or ck['scheduler'] != SCHEDULER: raise ValueError(f'{path} was trained with another config; use another --run folder')
    return ck

def save_checkpoint(run: Path, unet, ema, opt, step: int, log: list, recipe: dict = None):
    "Model + its EMA + optimizer + step + log, written atomically with `recipe` (default `RECIPE`), and the weights kept in run/history."
    recipe = recipe or RECIPE
    _save({'model': unet.state_dict(), 'ema': ema.state_dict(), 'optimizer': opt.state_dict(), 'step': step, 'log': log}, run/CKPT, recipe)
    save_history(run, unet, ema, step, log, recipe)

def save_history(run: Path, unet, ema, step: int, log: list, recipe: dict = None):
    "The weights of this checkpoint (training and EMA, float16, about 7 MB) kept as run/history/<step>.pt: raw weights swing between checkpoints, so each can be scored before one ships."
    half = lambda m: {k: v.half() if v.is_floating_point() else v for k, v in m.state_dict().items()}
    _save({'model': half(unet), 'ema': half(ema), 'step': step, 'log': log}, run/'history'/f'{step:06d}.pt', recipe or RECIPE)

def load_history(run: Path, step: int, unet, ema) -> tuple:
    "(step, log, recipe) of the kept weights of checkpoint `step`, loaded into `unet` and `ema` (load_state_dict casts them back to float32)."
    f = run/'history'/f'{step:06d}.pt'
    if not f.exists():
        kept = sorted(int(p.stem) for p in (run/'history').glob('[0-9]*.pt'))
        raise FileNotFoundError(f'no kept weights for step {step} in {run/"history"}; kept steps: {kept or "none"}')
    h = _load(f); unet.load_state_dict(h['model']); ema.load_state_dict(h['ema'])
    return h['step'], h['log'], h['recipe']

def load_checkpoint(run: Path, unet, ema, opt) -> tuple:
    "(step, log, recipe) of the run's checkpoint loaded into `unet`, `ema` and `opt`; (0, [], None) for a new run."
    if not (run/CKPT).exists(): return 0, [], None
    ck = _load(run/CKPT); unet.load_state_dict(ck['model']); ema.load_state_dict(ck['ema']); opt.load_state_dict(ck['optimizer'])
    return ck['step'], ck['log'], ck['recipe']

def train(run: Path = None, steps: int = 60_000, ckpt_every: int = 500, log_every: int = 50, quiet: bool = False, decay_from: int | None = None) -> tuple:
    "Train (or resume) to `steps`, the learning rate decaying linearly to 0 at `steps` from step `decay_from` if given; returns (EMA of the unet, step reached, log)."
    if decay_from is not None and not 0 <= decay_from < steps: raise ValueError(f'decay_from must be in [0, steps={steps}), got {decay_from}')
    import copy
    run = Path(run or RUN); run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(RECIPE['seed'])
    unet, scheduler = make_unet(), make_scheduler()
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=RECIPE['lr'], weight_decay=0.0)
    step, log, saved = load_checkpoint(run, unet, ema, opt)
    recipe = RECIPE if decay_from is None else dict(RECIPE, decay_from=decay_from, decay_to_zero_at=steps)   # a cool-down is recorded in what it saves
    was = (saved or {}).get('decay_from')
    if was is not None and was != decay_from: raise ValueError(f'{run} is a cool-down run from step {was}: resume it with --decay-from {was}')
    if not quiet: print(f'{sum(p.numel() for p in unet.parameters()):,} parameters; ' + (f'resuming at step {step}' if step else 'new run'), flush=True)
    data, T = make_data(), scheduler.config.num_train_timesteps
    unet.train(); t0, seen = time.time(), 0
    while step < steps:
        x = data.batch(step, RECIPE['batch_size'])                                  # (B, C, 32, 32) in [0, 1], training images only
        t, eps = step_noise(step, x, T, RECIPE['seed'])
        for g in opt.param_groups: g['lr'] = lr_at(step, RECIPE['lr'], RECIPE['warmup_steps'], decay_from, steps)
        loss = eps_loss(unet, scheduler, x, t, eps)
        if not math.isfinite(loss.item()): raise FloatingPointError(f'loss is {loss.item()} at step {step}; the checkpoint at step {step - step % ckpt_every} is intact')
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), RECIPE['grad_clip']); opt.step()
        update_ema(ema, unet, RECIPE['ema_decay'])
        step += 1; seen += 1
        if step % log_every == 0 or step == steps:
            log.append({'step': step, 'loss': round(loss.item(), 5), 'img_per_s': round(seen * len(x) / (time.time() - t0), 1)})
            if not quiet: print(json.dumps(log[-1]), flush=True)
        if step % ckpt_every == 0 or step == steps: save_checkpoint(run, unet, ema, opt, step, log, recipe)
    return ema.eval(), step, log

def ship(run: Path = None, dest: Path = None, raw: bool = False, step: int | None = None) -> Path:
    "Save the EMA weights (the training weights if `raw`) of the run's latest checkpoint (or of the kept checkpoint `step`), in half precision, as a diffusers DDPMPipeline folder with manifest.json."
    import shutil
    from diffusers import DDPMPipeline
    run, dest = Path(run or RUN), Path(dest or SHIP)
    unet, ema = make_unet(), make_unet(); opt = torch.optim.AdamW(unet.parameters())
    step, log, recipe = load_checkpoint(run, unet, ema, opt) if step is None else load_history(run, step, unet, ema)   # the recipe as trained
    if not step: raise FileNotFoundError(f'no checkpoint in {run}: train first')
    tmp = dest.parent/f'.{dest.name}.tmp'; shutil.rmtree(tmp, ignore_errors=True)
    DDPMPipeline(unet=(unet if raw else ema).eval().half(), scheduler=make_scheduler()).save_pretrained(tmp)   # fp16 on disk: half the bytes in git
    manifest = dict(model=DATA['name'], kind='diffusers DDPMPipeline (UNet2DModel + DDPMScheduler), ε-prediction', steps=step,
                    parameters=sum(p.numel() for p in unet.parameters()), final_loss=log[-1]['loss'] if log else None,
                    data=DATA['data'], image=DATA['image'], unet=UNET, scheduler=SCHEDULER,
                    weights=('the training weights (not their EMA, which lags early in a run)' if raw else 'EMA of the training weights (decay in recipe)') + ', stored in float16', recipe=recipe, script='training/mnist_ddpm/train.py' + (' --data scenes' if DATA['name'] == 'scenes_ddpm' else ''), load="sparsediff.adapters.load_denoiser('<this folder>')")
    (tmp/'manifest.json').write_text(json.dumps(manifest, indent=2) + '\n')
    (tmp/'log.json').write_text(json.dumps(log) + '\n')                       # the loss every --log-every steps, for the notebook's plot
    old = dest.parent/f'.{dest.name}.old'; shutil.rmtree(old, ignore_errors=True)
    if dest.exists(): os.replace(dest, old)
    os.replace(tmp, dest); shutil.rmtree(old, ignore_errors=True)
    return dest

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--steps', type=int, default=60_000)
    ap.add_argument('--ckpt-every', type=int, default=500); ap.add_argument('--log-every', type=int, default=50)
    ap.add_argument('--data', default='digits', choices=list(DATASETS), help='digits (mnist_ddpm) or scenes (scenes_ddpm)')
    ap.add_argument('--run', type=Path, default=None, help='checkpoint folder (default: training/mnist_ddpm/run, or training/scenes_ddpm/run)')
    ap.add_argument('--ship', action='store_true', help='save the latest checkpoint as a diffusers pipeline folder (see --ship-to)')
    ap.add_argument('--raw', action='store_true', help='with --ship: the training weights instead of their EMA')
    ap.add_argument('--step', type=int, default=None, help='with --ship: the checkpoint of this step, kept in <run>/history, instead of the latest')
    ap.add_argument('--ship-to', type=Path, default=None, help='where --ship writes (default: sparsediff/weights/mnist_ddpm or scenes_ddpm)')
    ap.add_argument('--decay-from', type=int, default=None, help='from this step the learning rate falls linearly to 0 at --steps (a cool-down; run it in its own --run folder, started from a copy of a checkpoint)')
    a = ap.parse_args(); torch.set_num_threads(a.threads); use_data(a.data)
    if a.ship: print('shipped to', ship(a.run, a.ship_to, a.raw, a.step)); raise SystemExit
    train(a.run, a.steps, a.ckpt_every, a.log_every, decay_from=a.decay_from)
