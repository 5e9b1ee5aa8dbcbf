"Shared pytest set-up: the markers our suites use, the `device` parameter over the devices present, and a random-init diffusers folder with google/ddpm-cifar10-32's configuration."
import pytest, torch

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])   # the same suite checks CUDA wherever a GPU exists

def pytest_configure(config):
    "Register the `slow` and `browser` markers."
    config.addinivalue_line('markers', 'slow: long-running test, skipped in the fast suite')
    config.addinivalue_line('markers', 'browser: needs headless Chromium and playwright')

def pytest_generate_tests(metafunc):
    "Run every test that takes a `device` argument once per device present: ['cpu'], plus 'cuda' on a GPU machine."
    if 'device' in metafunc.fixturenames: metafunc.parametrize('device', DEVICES)

# google/ddpm-cifar10-32's UNet2DModel configuration (its config.json), 35.7M parameters, and its DDPMScheduler's
DDPM_CIFAR10_32 = dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
                       down_block_types=('DownBlock2D', 'AttnDownBlock2D', 'DownBlock2D', 'DownBlock2D'),
                       up_block_types=('UpBlock2D', 'UpBlock2D', 'AttnUpBlock2D', 'UpBlock2D'), act_fn='silu', attention_head_dim=None,
                       center_input_sample=False, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, mid_block_scale_factor=1,
                       norm_eps=1e-6, norm_num_groups=32, time_embedding_type='positional')
DDPM_CIFAR10_32_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule='linear', beta_start=1e-4, beta_end=0.02, clip_sample=True,
                                 variance_type='fixed_small')

@pytest.fixture(scope='session')
def ddpm_cifar10_folder(tmp_path_factory):
    "A random-init DDPMPipeline with google/ddpm-cifar10-32's configuration, written by `save_pretrained` (≈140 MB, 1 s)."
    diffusers = pytest.importorskip('diffusers')
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp('ddpm-cifar10-32')
    diffusers.DDPMPipeline(unet=diffusers.UNet2DModel(**DDPM_CIFAR10_32),
                           scheduler=diffusers.DDPMScheduler(**DDPM_CIFAR10_32_SCHEDULER)).save_pretrained(folder)
    return folder
