"""Images are decoded exactly (issue 25 item 3): bit depth, modes, EXIF orientation, decompression bombs, unreadable or linked
class folders; a saved Hugging Face dataset is read only from inside its folder, with bounded labels."""
import json, os, re, warnings
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from sparsediff.data import pil_to_tensor, image_folder, from_hf_dataset, hf_from_disk, DataWarning

def test_16_bit_grey_png_at_half_is_half(tmp_path):
    Image.fromarray(np.full((40, 40), 32768, np.uint16)).save(tmp_path/'g.png')
    with Image.open(tmp_path/'g.png') as im: x = pil_to_tensor(im, 32, 3)
    assert x.shape == (3, 32, 32) and torch.allclose(x, torch.full_like(x, 0.5), atol=1e-4)

def test_float_tiff_of_half_is_half(tmp_path):
    Image.fromarray(np.full((40, 40), 0.5, np.float32), mode='F').save(tmp_path/'f.tif')
    with Image.open(tmp_path/'f.tif') as im: x = pil_to_tensor(im, 32, 1)
    assert torch.allclose(x, torch.full_like(x, 0.5), atol=1e-6)

def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((40, 40, 3), np.uint8); a[:8] = 255        # white band at the top of the stored pixels
    im = Image.fromarray(a); exif = im.getexif(); exif[0x0112] = 6  # "rotate 90° clockwise to display"
    im.save(tmp_path/'r.jpg', exif=exif, quality=100)
    with Image.open(tmp_path/'r.jpg') as im: x = pil_to_tensor(im, 32, 1)[0]
    assert x[:, -2:].mean() > 0.8 and x[:2].mean() < 0.5     # displayed: the band is on the right

@pytest.mark.parametrize('mode', ['P', 'CMYK', 'LA', 'RGBA', 'PA'])
def test_modes_convert_like_the_displayed_image(tmp_path, mode):
    rgb = Image.new('RGB', (40, 40), (200, 40, 40))
    pal = rgb.convert('P', palette=Image.Palette.ADAPTIVE)   # exact colours, no dithering
    im = pal if mode == 'P' else pal.convert('PA') if mode == 'PA' else rgb.convert(mode)
    want = pil_to_tensor(rgb.convert('L') if mode == 'LA' else rgb, 32, 3)
    assert torch.allclose(pil_to_tensor(im, 32, 3), want, atol=2 / 255)
    assert pil_to_tensor(im, 32, 1).shape == (1, 32, 32)

def test_transparency_is_composited_on_white():
    im = Image.new('RGBA', (40, 40), (0, 0, 0, 0))
    assert torch.allclose(pil_to_tensor(im, 32, 3), torch.ones(3, 32, 32))

def test_decompression_bomb_is_skipped_and_named(tmp_path, monkeypatch):
    for c in ('a', 'b'): (tmp_path/c).mkdir(); [Image.new('RGB', (40, 40), (i * 40, 0, 0)).save(tmp_path/c/f'{i}.png') for i in range(3)]
    Image.new('RGB', (200, 200)).save(tmp_path/'a'/'bomb.png')
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 10_000)   # 200×200 is over twice the limit: a bomb
    with pytest.warns(DataWarning, match=r'a/bomb.png \(too many pixels'): s = image_folder(tmp_path)
    assert len(s) == 6

def test_linked_and_unreadable_class_folders_are_reported(tmp_path):
    root = tmp_path/'data'
    for c in ('a', 'b', 'locked'): (root/c).mkdir(parents=True); [Image.new('RGB', (40, 40), (i * 40, 0, 0)).save(root/c/f'{i}.png') for i in range(3)]
    other = tmp_path/'elsewhere'; other.mkdir(); Image.new('RGB', (40, 40)).save(other/'x.png')
    os.symlink(other, root/'linked')
    os.chmod(root/'locked', 0)
    try:
        with pytest.warns(DataWarning) as w: s = image_folder(root)
    finally: os.chmod(root/'locked', 0o755)
    msg = ' '.join(str(r.message) for r in w)
    assert 'linked is a symbolic link' in msg and s.classes[:2] == ['a', 'b']
    if os.geteuid() != 0: assert 'locked cannot be read' in msg   # root reads any folder

def test_hf_label_out_of_range_is_refused():
    rows = [{'image': Image.new('RGB', (32, 32)), 'label': l} for l in (0, 10**12)]
    with pytest.raises(ValueError, match=r'row 1: label 1000000000000 is out of range \[0, 10000\)'): from_hf_dataset(rows)

def test_hf_state_json_cannot_name_files_outside_its_folder(tmp_path):
    datasets = pytest.importorskip('datasets')
    ds = datasets.Dataset.from_dict({'image': [Image.new('RGB', (32, 32))] * 4, 'label': [0, 1, 0, 1]},
                                    features=datasets.Features({'image': datasets.Image(), 'label': datasets.ClassLabel(names=['a', 'b'])}))
    ds.save_to_disk(str(tmp_path/'other')); ds.save_to_disk(str(tmp_path/'d'))
    assert len(hf_from_disk(tmp_path/'d')) == 4
    st = json.loads((tmp_path/'d'/'state.json').read_text())
    st['_data_files'][0]['filename'] = '../other/' + st['_data_files'][0]['filename']; (tmp_path/'d'/'state.json').write_text(json.dumps(st))
    with pytest.raises(ValueError, match="field '_data_files' names '../other/"): hf_from_disk(tmp_path/'d')

def test_a_local_folder_named_like_a_builtin_dataset_is_not_silently_shadowed(tmp_path, monkeypatch):
    from sparsediff.report import load_report_data
    import sparsediff.report as report
    (tmp_path/'mnist').mkdir(); monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(report.DEMO_DATA, 'mnist', lambda model: (_ for _ in ()).throw(RuntimeError('built-in loaded')))
    with pytest.warns(DataWarning, match=r'pass \./mnist'), pytest.raises(RuntimeError, match='built-in loaded'): load_report_data('mnist')

def saved_hf(tmp_path, name='d'):
    datasets = pytest.importorskip('datasets')
    ims = [Image.new('RGB', (32, 32), (60 * i, 0, 0)) for i in range(4)]
    ds = datasets.Dataset.from_dict({'image': ims, 'label': [0, 1, 0, 1]},
                                    features=datasets.Features({'image': datasets.Image(), 'label': datasets.ClassLabel(names=['a', 'b'])}))
    ds.save_to_disk(str(tmp_path/name)); return tmp_path/name

def edit_json(f, **fields):
    st = json.loads(f.read_text()); st.update(fields); f.write_text(json.dumps(st))

@pytest.mark.parametrize('fields, says', [
    (dict(_fingerprint=5), "field '_fingerprint' is int, expected str"), (dict(_split={'x': 1}), "field '_split' is dict"),
    (dict(_format_type='evil'), "field '_format_type' is 'evil'"), (dict(_format_kwargs=[1]), "field '_format_kwargs' is list"),
    (dict(_format_columns=[1, 2]), "field '_format_columns' is not a list of column names"), (dict(_output_all_columns='yes'), "'_output_all_columns' is str")])
def test_hf_state_json_fields_are_checked(tmp_path, fields, says):
    d = saved_hf(tmp_path); edit_json(d/'state.json', **fields)
    with pytest.raises(ValueError, match=re.escape(says)) as e: hf_from_disk(d)
    assert 'state.json' in str(e.value) and '\n' not in str(e.value)

def test_hf_state_json_missing_field_is_named(tmp_path):
    d = saved_hf(tmp_path); st = json.loads((d/'state.json').read_text()); del st['_format_kwargs']; (d/'state.json').write_text(json.dumps(st))
    with pytest.raises(ValueError, match="state.json: field '_format_kwargs' is missing"): hf_from_disk(d)

@pytest.mark.parametrize('fmt', [dict(_format_type='numpy'), dict(_format_type='torch'), dict(_format_columns=['label'])])
def test_hf_saved_format_does_not_change_what_is_read(tmp_path, fmt):
    d = saved_hf(tmp_path); want = hf_from_disk(d)
    edit_json(d/'state.json', **fmt); got = hf_from_disk(d)
    assert torch.equal(got.images, want.images) and torch.equal(got.labels, want.labels)

def test_hf_dataset_info_that_does_not_match_is_one_line_naming_the_folder(tmp_path):
    d = saved_hf(tmp_path); info = json.loads((d/'dataset_info.json').read_text())
    info['features']['image'] = {'dtype': 'string', '_type': 'Value'}; (d/'dataset_info.json').write_text(json.dumps(info))
    with pytest.raises(ValueError, match='the datasets package cannot load this saved dataset') as e: hf_from_disk(d)
    assert str(d) in str(e.value) and '\n' not in str(e.value)
    (d/'dataset_info.json').write_text('[]')
    with pytest.raises(ValueError, match="dataset_info.json: not a JSON object"): hf_from_disk(d)
