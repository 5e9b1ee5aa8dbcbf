"""Loaders refuse what they cannot honour, naming the argument, the file or the row (second hostile pass, tests/hostile_pass_2.md)."""
import json, os, threading
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from sparsediff.data import image_folder, from_hf_dataset
from sparsediff.unet import UNet, UNetConfig, save_model, load_model
from sparsediff.adapters import load_denoiser

def folder(d: Path, n=4):
    for c in ('a', 'b'):
        (d/c).mkdir(parents=True, exist_ok=True)
        for i in range(n // 2): Image.fromarray(np.full((40, 40, 3), 50 * i, np.uint8)).save(d/c/f'{i}.png')
    return d

@pytest.mark.parametrize('kw, says', [(dict(size=0), 'size must be >= 1'), (dict(size=-4), 'size must be >= 1'), (dict(size=32.0), 'size must be a whole number'),
                                      (dict(channels=2), 'channels must be 1 (grey) or 3 (RGB), got 2'), (dict(max_images=0), 'max_images must be >= 1'),
                                      (dict(max_images=-2), 'max_images must be >= 1')])
def test_image_folder_arguments_are_checked(tmp_path, kw, says):
    with pytest.raises((ValueError, TypeError), match=says.replace('(', r'\(').replace(')', r'\)')): image_folder(folder(tmp_path/'d'), **kw)

def test_hf_rows_without_an_image_are_named():
    rows = [{'image': Image.new('RGB', (32, 32)), 'label': 0}, {'image': None, 'label': 1}]
    with pytest.raises(ValueError, match="row 1: column 'image' holds NoneType, not an image"): from_hf_dataset(rows)

def test_hf_text_labels_become_class_names():
    rows = [{'image': Image.new('RGB', (32, 32), (60 * i, 0, 0)), 'label': l} for i, l in enumerate(['dog', 'cat', 'dog', 'cat'])]
    s = from_hf_dataset(rows)
    assert s.classes == ['cat', 'dog'] and s.labels.tolist() == [1, 0, 1, 0] and s.labelled

def test_hf_fractional_labels_are_refused():
    rows = [{'image': Image.new('RGB', (32, 32)), 'label': l} for l in (0, 1.5)]
    with pytest.raises(ValueError, match=r'row 1: label 1.5 is not a whole-number class index'): from_hf_dataset(rows)

def test_deeply_nested_config_is_one_line_naming_the_file(tmp_path):
    save_model(UNet(UNetConfig.scaled(16)), tmp_path/'m'); (tmp_path/'m'/'config.json').write_text('[' * 200000 + ']' * 200000)
    with pytest.raises(ValueError, match='config.json nests JSON arrays or objects too deeply'): load_model(tmp_path/'m')

def test_load_denoiser_on_an_empty_folder_says_what_is_missing(tmp_path):
    (tmp_path/'e').mkdir()
    with pytest.raises(FileNotFoundError, match='holds no model: neither a diffusers model_index.json nor a config.json'): load_denoiser(tmp_path/'e')

def test_load_denoiser_pipeline_missing_its_unet_folder(tmp_path):
    d = tmp_path/'p'; d.mkdir()
    (d/'model_index.json').write_text(json.dumps({'_class_name': 'DDPMPipeline', 'unet': ['diffusers', 'UNet2DModel'], 'scheduler': ['diffusers', 'DDPMScheduler']}))
    with pytest.raises(FileNotFoundError, match='p/unet is missing'): load_denoiser(d)
    (d/'model_index.json').write_text(json.dumps({'unet': 'UNet2DModel', 'scheduler': ['diffusers', 'DDPMScheduler']}))
    with pytest.raises(ValueError, match="field 'unet' is 'UNet2DModel', not \\[library, class name\\]"): load_denoiser(d)

def test_load_denoiser_does_not_wait_on_a_fifo_config(tmp_path):
    d = tmp_path/'f'; d.mkdir(); os.mkfifo(d/'config.json')
    out = {}
    t = threading.Thread(target=lambda: out.update(e=pytest.raises(ValueError, load_denoiser, d)), daemon=True); t.start(); t.join(20)
    assert not t.is_alive(), 'load_denoiser blocked on a FIFO config.json'
    assert 'not a regular file' in str(out['e'].value)
