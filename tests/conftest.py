"Shared pytest set-up: the markers our suites use, and the `device` parameter over the devices present."
import torch

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])   # the same suite checks CUDA wherever a GPU exists

def pytest_configure(config):
    "Register the `slow` and `browser` markers."
    config.addinivalue_line('markers', 'slow: long-running test, skipped in the fast suite')
    config.addinivalue_line('markers', 'browser: needs headless Chromium and playwright')

def pytest_generate_tests(metafunc):
    "Run every test that takes a `device` argument once per device present: ['cpu'], plus 'cuda' on a GPU machine."
    if 'device' in metafunc.fixturenames: metafunc.parametrize('device', DEVICES)
