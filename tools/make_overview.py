"""Draw nbs/assets/overview.png: a noisy test image, the shipped denoiser's estimate, and φ (matplotlib, run by hand)."""
import sys
import torch, numpy as np
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from sparsediff.unet import load_pretrained
from sparsediff.data import load_crops, load_mnist
from sparsediff.core import to_uint8

def main(out='nbs/assets/overview.png', sigma=0.2):
    "Render the overview figure for the README."
    torch.manual_seed(0)
    model = load_pretrained()
    x = torch.stack([load_crops(split='test', n=40, seed=3).images[7], load_mnist('test').images[0]])  # (2, 3, 32, 32)
    y = x + sigma * torch.randn_like(x)
    with torch.no_grad():
        x_hat = model(y)
        _, m = model.encode(y)                # middle-block output (2, C, 4, 4)
        phi = m.mean((2, 3))  # (2, C)
    fig, axes = plt.subplots(2, 4, figsize=(11, 5), gridspec_kw=dict(width_ratios=[1, 1, 1, 3]))
    for r in range(2):
        for c, (img, t) in enumerate([(x[r], 'clean x'), (y[r], f'noisy y (σ={sigma})'), (x_hat[r], 'denoised x̂(y)')]):
            axes[r, c].imshow(to_uint8(img)); axes[r, c].set_title(t, fontsize=10); axes[r, c].axis('off')
        axes[r, 3].bar(np.arange(phi.shape[1]), phi[r].numpy(), width=1.0, color='#3b6ea5')
        axes[r, 3].set_title('φ: spatial mean of each middle-block channel', fontsize=10)
        axes[r, 3].set_xlabel('channel'); axes[r, 3].set_xlim(-1, phi.shape[1])
    fig.tight_layout(); fig.savefig(out, dpi=110); print('wrote', out)

if __name__ == '__main__': main(*sys.argv[1:])
