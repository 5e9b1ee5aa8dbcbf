"""`sparsediff report --model FOLDER` on a diffusers save_pretrained folder (issue 23): the folder loads through the adapter with its
scheduler, the adapter's channels are read, and a fast report on a tiny random UNet2DModel completes with a claims table."""
import json
import pytest, torch
from sparsediff.adapters import VPDenoiser
from sparsediff.report import run_report, ReportConfig, load_report_model, is_diffusers_folder, in_channels
from sparsediff.unet import UNet, UNetConfig, save_model
from test_report_data import FAST, write_images, claims

diffusers = pytest.importorskip('diffusers')
torch.set_num_threads(1)

def tiny_unet2d(channels=3):
    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=16, in_channels=channels, out_channels=channels, block_out_channels=(8, 16), layers_per_block=1,
                                 norm_num_groups=4, down_block_types=('DownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'UpBlock2D'))

@pytest.fixture(scope='module')
def pipeline_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp('ddpm')
    diffusers.DDPMPipeline(unet=tiny_unet2d(), scheduler=diffusers.DDPMScheduler()).save_pretrained(d)
    return d

def test_diffusers_folders_load_through_the_adapter(pipeline_folder, tmp_path):
    ours = tmp_path/'ours'; save_model(UNet(UNetConfig.scaled(16)), ours)
    assert is_diffusers_folder(pipeline_folder) and is_diffusers_folder(pipeline_folder/'unet') and not is_diffusers_folder(ours)
    D = load_report_model(str(pipeline_folder/'unet'), device='cpu')          # a model folder with its scheduler beside it
    assert isinstance(D, VPDenoiser) and type(D.scheduler).__name__ == 'DDPMScheduler' and not D.training
    assert isinstance(load_report_model(ours, device='cpu'), UNet)
    grey = tmp_path/'grey'; tiny_unet2d(1).save_pretrained(grey); diffusers.DDPMScheduler().save_pretrained(grey)
    assert in_channels(D) == 3 and in_channels(load_report_model(grey, device='cpu')) == 1   # the network's, not the first block's 8

def test_report_on_a_diffusers_folder(pipeline_folder, tmp_path):
    html, js = run_report(str(pipeline_folder), write_images(tmp_path/'holiday', 24), tmp_path/'out', ReportConfig(**FAST), progress=False)
    rep, c = claims(js)
    assert len(c) >= 10 and all(v['verdict'] for v in c.values())
    assert list(rep['sections']['Sparsity per block']['numbers']['median_pr_output']) == ['enc1', 'enc2', 'mid', 'dec2', 'dec1']
    assert c['The middle block output is sparser than every encoder block output, and sparser than untrained']['verdict'] != 'needs labels'
    assert rep['meta']['parameters'] == sum(p.numel() for p in tiny_unet2d().parameters())

def test_report_meta_records_the_adapter(pipeline_folder, tmp_path):
    from sparsediff.report import analyse
    from sparsediff.adapters import load_denoiser
    r = analyse(str(pipeline_folder), write_images(tmp_path/'imgs', 20), tmp_path/'cache', ReportConfig(**FAST), progress=False)
    D = load_denoiser(pipeline_folder)
    assert r['meta']['denoiser'] == D.description() and r['meta']['denoiser']['scheduler'] == 'DDPMScheduler'
    assert r['meta']['noise'] == [D.describe(0.2), D.describe(0.1)] and r['meta']['noise'][0]['timestep'] == int(D.timestep(0.2)[0])

def test_guided_targets_leave_a_real_image_per_class():
    from sparsediff.data import ImageSet
    from sparsediff.report import guided_targets
    import numpy as np
    small = ImageSet(torch.rand(20, 3, 8, 8), torch.arange(20) % 2, ['a', 'b'], 'small')   # 16 targets of 20 images in 2 classes
    idx = guided_targets(small, ReportConfig())
    assert len(idx) == 16 and len(set(idx.tolist())) == 16 and np.bincount(small.labels.numpy()[idx]).max() <= 9
    big = ImageSet(torch.rand(200, 3, 8, 8), torch.arange(200) % 2, ['a', 'b'], 'big')      # where the draw was fine it is unchanged
    assert np.array_equal(guided_targets(big, ReportConfig()), np.random.default_rng(1).choice(np.arange(200), 16, replace=False))

@pytest.mark.slow
def test_cli_report_on_a_pipeline_folder(tmp_path):
    "The real CLI, default ReportConfig, on a tiny random UNet2DModel pipeline folder and 20 tiny images in two classes (~40 s on one core)."
    import subprocess, sys, os
    from pathlib import Path
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=32, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                 down_block_types=('DownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'UpBlock2D'))
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path/'model')
    for k in 'ab': write_images(tmp_path/'data'/k, 10, seed=ord(k), tone=ord(k) - ord('a'))
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parents[1]), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-m', 'sparsediff.cli', 'report', '--model', str(tmp_path/'model'), '--data', str(tmp_path/'data'),
                        '--out', str(tmp_path/'out'), '--device', 'cpu', '--threads', '1', '--quiet'], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rep, c = claims(tmp_path/'out'/'report.json')
    assert rep['meta']['denoiser']['net'] == 'UNet2DModel' and rep['meta']['noise'][0]['timestep'] > 0 and len(c) >= 10
    assert 'DDPMScheduler' in (tmp_path/'out'/'report.html').read_text()          # the page names the adapter it ran
