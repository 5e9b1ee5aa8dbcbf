"Shared pytest set-up: the markers our suites use."

def pytest_configure(config):
    "Register the `slow` and `browser` markers."
    config.addinivalue_line('markers', 'slow: long-running test, skipped in the fast suite')
    config.addinivalue_line('markers', 'browser: needs headless Chromium and playwright')
