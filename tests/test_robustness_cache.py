"""The report's cache is read only from regular files inside its folder (issue 25 item 2)."""
import os, time
import pytest
from sparsediff.report import cached, CACHE_FORMAT

def test_fifo_cache_entry_is_refused_not_read(tmp_path):
    os.mkfifo(tmp_path/'step-abc.json'); t = time.time()
    with pytest.raises(ValueError, match='not a regular file'): cached(tmp_path, 'step', 'abc', lambda: 1)
    assert time.time() - t < 5 and (tmp_path/'step-abc.json').exists()

def test_corrupt_cache_entry_is_recomputed(tmp_path):
    (tmp_path/'step-abc.json').write_text('{"format": "%s", "result": {"__array__": {"data": "AA==", "dtype": "<f8", "shape": [10]}}}' % CACHE_FORMAT)
    assert cached(tmp_path, 'step', 'abc', lambda: 7) == 7 and cached(tmp_path, 'step', 'abc', lambda: 8) == 7

def test_link_out_of_the_cache_is_refused(tmp_path):
    (tmp_path/'c').mkdir(); (tmp_path/'secret.json').write_text('{}'); os.symlink(tmp_path/'secret.json', tmp_path/'c'/'step-abc.json')
    with pytest.raises(ValueError, match='outside the output folder'): cached(tmp_path/'c', 'step', 'abc', lambda: 1)
    assert (tmp_path/'secret.json').read_text() == '{}'
