"""File and folder names a report must survive: bytes that are not UTF-8, and names near the file system's 255-byte limit."""
import os
from pathlib import Path
import numpy as np
from PIL import Image
from sparsediff.data import image_folder
from sparsediff.report import safe_name, write_report, Section

def images(folder: Path, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n): Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(folder/f'{i}.png')

def test_non_utf8_folder_names_load_as_printable_names(tmp_path):
    root = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b'/data\xff'))
    images(Path(os.fsdecode(os.fsencode(str(root)) + b'/cl\xe9'))); images(root/'dogs')
    s = image_folder(root)
    assert len(s) == 6 and s.classes == ['cl\ufffd', 'dogs'] and s.name == 'data\ufffd'
    for text in (*s.classes, s.name): text.encode('utf-8')   # writable to HTML and JSON (a surrogate would raise here)

def test_report_files_take_undecodable_text(tmp_path):
    h, j = write_report(tmp_path/'o', [Section('Semantics (data\udcff)', 'x', [], {}, {})], 'title \udcff', {'model': 'm\udcff'})
    assert 'data' in h.read_text(encoding='utf-8') and j.exists()

def test_long_names_make_short_unique_file_names(tmp_path):
    a, b = 'd' * 240 + 'a', 'd' * 240 + 'b'
    assert len(safe_name(a)) <= 80 and safe_name(a) != safe_name(b) and safe_name('short') == 'short'
    (tmp_path/f'stability-{safe_name(a)}-0123456789ab.json').write_text('{}')   # the cache's longest pattern fits in 255 bytes
