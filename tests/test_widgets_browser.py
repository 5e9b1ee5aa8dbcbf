"Open the dashboard in a real JupyterLab with headless Chromium: it paints at once, opens on a live channel; move the σ slider, press Reconstruct, and check the figures change; the same on a diffusers folder with ddpm-cifar10-32's configuration, its slider showing the timestep."
import json, os, signal, socket, subprocess, sys, time, urllib.request, warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path('/usr/bin/chromium')
CHROME_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
               '--disable-sync', '--no-first-run']
ARTIFACTS = ROOT/'test_artifacts'

# The notebook the test runs: the dashboard with the shipped model on 200 digits.
SETUP = """\
import torch
from sparsediff.data import load_mnist
from sparsediff.widgets import dashboard
data = load_mnist('test').subset(range(0, 1000, 5))
print('setup done')
"""
DASHBOARD = """\
d = dashboard(data=data, device='cpu', n_noise=4, n=4, preview_every=2)
d
"""

def notebook(*sources) -> dict:
    "A notebook dict with one code cell per source."
    cells = [dict(cell_type='code', metadata={}, source=s, execution_count=None, outputs=[]) for s in sources]
    return dict(nbformat=4, nbformat_minor=5, cells=cells,
                metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')))

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def start_lab(folder: Path, port: int) -> subprocess.Popen:
    "JupyterLab on 127.0.0.1:`port` serving `folder`, no token, settings and workspaces kept in `folder`."
    settings = folder/'.settings'/'@jupyterlab'/'apputils-extension'
    settings.mkdir(parents=True)
    (settings/'notification.jupyterlab-settings').write_text(json.dumps({'fetchNews': 'false', 'checkForUpdates': False}))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(folder/'.settings'), JUPYTERLAB_WORKSPACES_DIR=str(folder/'.workspaces'),
               JUPYTER_RUNTIME_DIR=str(folder/'.runtime'), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])))
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
           '--ServerApp.port_retries=0', '--ServerApp.allow_root=True', '--IdentityProvider.token=', '--ServerApp.password=', f'--ServerApp.root_dir={folder}',
           '--LabApp.news_url=', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=open(folder/'lab.log', 'w'), stderr=subprocess.STDOUT, start_new_session=True)

def wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: pytest.fail(f'JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}')
        try:
            with urllib.request.urlopen(url + '/api/status', timeout=2) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.5)
    pytest.fail(f'JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}')

def stack_images(paths, out):
    "Stack screenshots vertically into one PNG (the docs' static picture of the dashboard is made this way)."
    from PIL import Image
    ims = [Image.open(p).convert('RGB') for p in paths]
    canvas = Image.new('RGB', (max(i.width for i in ims), sum(i.height for i in ims) + 12 * (len(ims) - 1)), 'white')
    y = 0
    for im in ims: canvas.paste(im, (0, y)); y += im.height + 12
    canvas.save(out)

def stop_lab(proc: subprocess.Popen):
    "Stop the server and the kernels it started (its own process group)."
    if proc.poll() is not None: return
    os.killpg(proc.pid, signal.SIGTERM)
    try: proc.wait(15)
    except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait(5)

CONSOLE = []   # the page's console errors and warnings, for failure messages

# JavaScript run in the page: a plotly figure's state, found by the start of its title.
FIGURE_STATE = """(prefix) => {
  const el = [...document.querySelectorAll('.js-plotly-plot')].find(e => e.layout && e.layout.title &&
               String(e.layout.title.text || e.layout.title).startsWith(prefix));
  if (!el) return null;
  const hash = s => { let h = 0; for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0; return s.length + ':' + h; };
  const enc = v => hash(v && v.bdata ? v.bdata : JSON.stringify(v === undefined ? null : v));
  return {title: String(el.layout.title.text), traces: el.data.map(t => enc(t.y) + '|' + enc(t.z) + '|' + enc(t.source)),
          width: el.getBoundingClientRect().width, height: el.getBoundingClientRect().height,
          annotations: (el.layout.annotations || []).map(a => a.text)};
}"""

# JavaScript: screen position and index of the tallest bar of the first bar trace (φ) of a figure.
TALLEST_BAR = """(prefix) => {
  const el = [...document.querySelectorAll('.js-plotly-plot')].find(e => e.layout && String(e.layout.title.text).startsWith(prefix));
  const points = [...el.querySelectorAll('.barlayer .trace.bars')[0].querySelectorAll('.point')];
  let best = null;
  points.forEach((p, n) => { const r = p.getBoundingClientRect();
    if (!best || r.height > best.h) best = {x: r.x + r.width / 2, y: r.y + r.height / 2, h: r.height, i: p.__data__ ? p.__data__.i : n}; });
  return best;
}"""

# JavaScript: the channel explorer's title and the spread of its activation map (trace 2, a heatmap), from plotly's decoded data.
CHANNEL_MAP = """() => {
  const el = [...document.querySelectorAll('.js-plotly-plot')].find(e => e.layout && String(e.layout.title.text).startsWith('channel '));
  if (!el || !el._fullData || !el._fullData[2]) return null;
  const v = []; for (const row of el._fullData[2].z) for (const a of row) v.push(Number(a));
  return {title: String(el.layout.title.text), min: Math.min(...v), max: Math.max(...v), n: v.length};
}"""

ERRORS = """() => [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-OutputArea-output.jp-mod-error, .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')].map(e => e.innerText).join('\\n')"""

# JavaScript: every plotly figure on the page, by title and size, and every widget status line (for failure messages).
PAGE_STATE = """() => ({figures: [...document.querySelectorAll('.js-plotly-plot')].map(e => [String(e.layout && e.layout.title && (e.layout.title.text || e.layout.title)),
                                                                              Math.round(e.getBoundingClientRect().width), Math.round(e.getBoundingClientRect().height),
                                                                              (e.layout.annotations || []).map(a => String(a.text).slice(0, 60))]),
         notes: [...document.querySelectorAll('.widget-html')].map(e => e.innerText.slice(0, 160))})"""

# Python run in the kernel when a wait fails: what the kernel thinks each figure shows, to compare with the page.
KERNEL_STATE = "print('KERNEL', [(type(p).__name__, [str(a.text) for a in p.figure.layout.annotations][:3], str(p.figure.layout.title.text)) for p in (d.sigma_explorer, d.channels, d.neighbours, d.reconstruction)])"

def kernel_says(page, code: str = KERNEL_STATE) -> str:
    "Run `code` in a new cell at the end of the notebook and return its printed output (for failure messages)."
    try:
        page.locator('.jp-Notebook .jp-Cell').last.click(position={'x': 5, 'y': 5}); page.keyboard.press('Escape'); page.keyboard.press('b')
        page.keyboard.press('Enter'); page.keyboard.type(code); page.keyboard.press('Shift+Enter')
        page.wait_for_function('() => [...document.querySelectorAll(".jp-OutputArea-output")].some(e => e.innerText.includes("KERNEL"))', timeout=20_000)
        return page.evaluate('() => [...document.querySelectorAll(".jp-OutputArea-output")].map(e => e.innerText).filter(t => t.includes("KERNEL")).join(" ")')
    except Exception as e: return f'(could not ask the kernel: {type(e).__name__})'

def wait_for(page, js, arg=None, timeout=30_000, what='the page'):
    "`page.wait_for_function`, failing with a screenshot, every figure's title and size, the widgets' status lines and the kernel's view."
    try: return page.wait_for_function(js, arg=arg, timeout=timeout)
    except Exception as e:
        page.screenshot(path=str(ARTIFACTS/'widgets_failed.png'))
        state = page.evaluate(PAGE_STATE)
        pytest.fail(f'{what}: not within {timeout / 1000:.0f} s ({type(e).__name__}); page: {state}; kernel: {kernel_says(page)}; '
                    f'errors in the notebook: {page.evaluate(ERRORS)[-2000:]}; console: {CONSOLE[-8:]}')

# JavaScript: the reconstruction figure's state once its samples title includes `text`, else null.
SAMPLES_DONE = f"""(text) => {{ const s = ({FIGURE_STATE})("φ-guided"); return s && s.annotations.some(a => String(a).includes(text)) ? s : null; }}"""

def final_samples(page, text: str = 'samples (done', timeout=120_000) -> dict:
    "Wait for the reconstruction's samples title to include `text` and return the figure's state once the final grid's new figure widget is in place."
    wait_for(page, SAMPLES_DONE, arg=text, timeout=timeout, what=f'samples titled {text!r}')
    page.wait_for_timeout(500)      # `ReconstructionPanel.redraw` swaps in a new figure widget: for a moment there is no figure to read
    return wait_for(page, SAMPLES_DONE, arg=text, timeout=10_000, what='the final grid in its new figure widget').json_value()

@contextmanager
def lab_notebook(folder: Path, *sources):
    "Run a notebook of `sources` in JupyterLab on `folder`, opened in headless Chromium: yields the page once Run All Cells is pressed (skips without playwright, JupyterLab or Chromium)."
    sync_api = pytest.importorskip('playwright.sync_api', reason='playwright is not installed')
    pytest.importorskip('jupyterlab', reason='jupyterlab is not installed')
    if not CHROMIUM.exists(): pytest.skip(f'no Chromium at {CHROMIUM}')
    ARTIFACTS.mkdir(exist_ok=True)
    (folder/'dash.ipynb').write_text(json.dumps(notebook(*sources)))
    port = free_port(); url = f'http://127.0.0.1:{port}'
    lab = start_lab(folder, port)
    try:
        wait_for_server(url, lab, folder/'lab.log')
        with sync_api.sync_playwright() as pw:
            try: browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROME_ARGS)
            except Exception as e: pytest.skip(f'Chromium does not start under playwright: {e}')
            try:
                page = browser.new_page(viewport={'width': 1400, 'height': 1000})
                console = CONSOLE; console.clear()
                page.on('console', lambda m: m.type in ('error', 'warning') and console.append(m.text[:300]))
                page.goto(f'{url}/lab/tree/dash.ipynb', wait_until='domcontentloaded')
                page.wait_for_selector('.jp-Notebook .jp-Cell', timeout=90_000)
                page.wait_for_function('() => document.body.innerText.includes("| Idle")', timeout=90_000)   # the kernel is up
                page.wait_for_timeout(1000)
                page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
                page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click()
                yield page
            except Exception:
                page.screenshot(path=str(ARTIFACTS/'widgets_failed.png')); raise
            finally: browser.close()
    finally:
        stop_lab(lab)

@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dashboard_in_jupyterlab(tmp_path):
    t0 = time.time()
    with lab_notebook(tmp_path, SETUP, DASHBOARD) as page:
        console = CONSOLE
        # time to first paint: from the set-up cell's output (the dashboard cell starts then) to the dashboard's layout
        page.wait_for_function('() => [...document.querySelectorAll(".jp-OutputArea-output")].some(e => e.innerText.includes("setup done"))',
                               timeout=150_000, polling=50)
        t_cell = time.perf_counter()
        try: page.wait_for_function('() => [...document.querySelectorAll(".widget-html")].some(e => e.innerText.includes("sparsediff dashboard"))'
                                    ' && document.querySelector(".widget-tab .lm-TabBar-tab") && document.querySelector(".widget-hprogress")',
                                    timeout=60_000, polling=50)
        except Exception:
            page.screenshot(path=str(ARTIFACTS/'widgets_failed.png'))
            pytest.fail(f'the dashboard did not paint; errors in the notebook: {page.evaluate(ERRORS)[-3000:]}; console: {console[-5:]}')
        first_paint = time.perf_counter() - t_cell
        page.screenshot(path=str(ARTIFACTS/'widgets_first_paint.png'))
        (ARTIFACTS/'widgets_first_paint.txt').write_text(f'{first_paint:.2f} s from the dashboard cell starting to its layout on screen\n')
        assert first_paint < 3, f'the dashboard took {first_paint:.1f} s to paint'
        # then every panel, in tabs, once φ of the dataset is computed
        page.wait_for_function('() => [...document.querySelectorAll(".widget-html")].some(e => e.innerText.includes("ready in"))', timeout=150_000)
        try: page.wait_for_function(f'() => ({FIGURE_STATE})("σ explorer") !== null', timeout=150_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS/'widgets_failed.png'))
            pytest.fail(f'the σ explorer did not render; errors in the notebook: {page.evaluate(ERRORS)[-3000:]}; console: {console[-5:]}')
        page.wait_for_timeout(500)
        sigma_fig = lambda: page.evaluate(FIGURE_STATE, 'σ explorer')
        before = sigma_fig()
        assert before['width'] > 300 and before['height'] > 200, before
        page.locator('.widget-tab').first.screenshot(path=str(ARTIFACTS/'widgets_sigma_before.png'))

        # The channel explorer opens on a live channel whose map on the image is not flat.
        page.locator('.widget-tab .lm-TabBar-tab', has_text='channels').first.click()
        wait_for(page, f'() => ({CHANNEL_MAP})() !== null', timeout=30_000)
        first = page.evaluate(CHANNEL_MAP)
        assert 'dead' not in first['title'], first             # specialized when one fires on this image, else a common one
        assert float(first['title'].rsplit('PR', 1)[1]) > 0.01 and first['max'] - first['min'] > 1e-3, first
        page.locator('.widget-tab').first.screenshot(path=str(ARTIFACTS/'widgets_channels_first.png'))
        page.locator('.widget-tab .lm-TabBar-tab', has_text='σ explorer').first.click()
        page.wait_for_timeout(300)

        # Move the σ slider with the keyboard: five steps of 0.01 to the right.
        handle = page.locator('.widget-hslider .noUi-handle').first
        handle.click()
        for _ in range(5): handle.press('ArrowRight')
        readout = page.locator('.widget-hslider .widget-readout').first
        page.wait_for_function('(el) => el.innerText.trim() === "0.25"', arg=readout.element_handle(), timeout=10_000)
        # every key press sends a value; the kernel may draw 0.21…0.24 on the way, the last drawing is 0.25
        drawn = f'() => {{ const s = ({FIGURE_STATE})("σ explorer"); return s && s.title.includes("σ = 0.25"); }}'
        try: page.wait_for_function(drawn, timeout=20_000)
        except Exception:
            # Once in a CI run the last of five fast key presses was never drawn. Say where it was lost (the panel's
            # status line is written by the kernel after each redraw), then send 0.25 once more: a second loss fails.
            page.screenshot(path=str(ARTIFACTS/'widgets_slider_lost.png'))
            notes = page.evaluate('() => [...document.querySelectorAll(".widget-tab .widget-html")].map(e => e.innerText).filter(t => t.includes("σ = "))')
            where = f'slider readout {readout.inner_text()!r}, figure title {sigma_fig()["title"]!r}, status lines {notes}'
            (ARTIFACTS/'widgets_slider_lost.txt').write_text(where + '\n')
            warnings.warn(f'the last σ-slider value was not drawn within 20 s ({where}); sent it again')
            handle.press('ArrowLeft'); handle.press('ArrowRight')
            try: page.wait_for_function(drawn, timeout=30_000)
            except Exception: pytest.fail(f'σ = 0.25 was never drawn, twice ({where}); errors in the notebook: {page.evaluate(ERRORS)[-3000:]}; console: {console[-5:]}')
        after = sigma_fig()
        assert after['title'] != before['title'] and 'σ = 0.2' in before['title'], (before['title'], after['title'])
        assert after['traces'][0] != before['traces'][0], 'the noisy image did not change'
        assert after['traces'][2] != before['traces'][2], 'the φ bars did not change'
        page.locator('.widget-tab').first.screenshot(path=str(ARTIFACTS/'widgets_sigma_after.png'))

        # Click the tallest φ bar: the channel tab opens on that channel.
        bar = page.evaluate(TALLEST_BAR, 'σ explorer')
        assert bar and bar['h'] > 5, bar
        page.mouse.click(bar['x'], bar['y'])
        wait_for(page, f'''(c) => {{ const s = ({FIGURE_STATE})("channel " + c + ":"); return s && s.width > 300; }}''',
                               arg=bar['i'], timeout=30_000)
        page.wait_for_timeout(300)
        page.locator('.widget-tab').first.screenshot(path=str(ARTIFACTS/'widgets_channels.png'))
        page.locator('.widget-tab .lm-TabBar-tab', has_text='neighbours').first.click()
        wait_for(page, f'() => {{ const s = ({FIGURE_STATE})("neighbours of image"); return s && s.width > 300; }}', timeout=30_000)
        page.wait_for_timeout(300)
        page.locator('.widget-tab').first.screenshot(path=str(ARTIFACTS/'widgets_neighbours.png'))

        # Reconstruct: samples appear (live previews, then the final grid), and the status says done.
        page.locator('.widget-tab .lm-TabBar-tab', has_text='reconstruction').first.click()
        wait_for(page, f'() => ({FIGURE_STATE})("φ-guided") !== null', timeout=30_000)
        empty = page.evaluate(FIGURE_STATE, 'φ-guided')
        page.locator('button.jupyter-button', has_text='Reconstruct').first.click()
        done = final_samples(page)
        assert done['traces'][1] != empty['traces'][1], 'the samples image did not change'
        status = page.locator('.widget-tab .widget-html', has_text='done').first.inner_text()
        assert 'samples in' in status, status
        page.locator('.widget-tab').first.screenshot(path=str(ARTIFACTS/'widgets_reconstruction.png'))
        stack_images([ARTIFACTS/'widgets_sigma_after.png', ARTIFACTS/'widgets_reconstruction.png'], ARTIFACTS/'widgets_dashboard.png')
        assert not page.evaluate(ERRORS).strip().lower().count('traceback'), page.evaluate(ERRORS)
    assert time.time() - t0 < 240, f'the browser test took {time.time() - t0:.0f} s'

# The notebook of the second test: the dashboard on a diffusers save_pretrained folder (a random-init UNet2DModel with
# google/ddpm-cifar10-32's configuration, 35.7M parameters) and 8 CIFAR-sized RGB crops of scikit-image pictures.
CIFAR_SETUP = """\
from sparsediff.adapters import load_denoiser
from sparsediff.data import load_crops
from sparsediff.widgets import dashboard
D = load_denoiser({folder!r})
data = load_crops(n=8)
print('setup done', type(D).__name__, tuple(data.images.shape))
"""
CIFAR_DASHBOARD = """\
d = dashboard(D, data, device='cpu', n_noise=2, n=2, n_clusters=3)
d
"""

# JavaScript: the text of the label beside the σ slider that shows an adapter's timestep.
TIMESTEP_LABEL = "() => [...document.querySelectorAll('.widget-tab .widget-label')].map(e => e.innerText.trim()).find(t => t.startsWith('t = ')) || null"

@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dashboard_on_a_ddpm_cifar10_folder(tmp_path, ddpm_cifar10_folder):
    "Issue 23: the dashboard opens in JupyterLab on a save_pretrained folder with ddpm-cifar10-32's configuration; the slider shows the timestep."
    diffusers = pytest.importorskip('diffusers')
    from sparsediff.adapters import sigma_to_timestep
    abar = diffusers.DDPMScheduler.from_pretrained(ddpm_cifar10_folder/'scheduler').alphas_cumprod
    def expected(sigma):   # the label beside the slider and the end of the σ explorer's title at σ
        t, s = (float(v) for v in sigma_to_timestep(sigma, abar))
        return f't = {int(t)} (σ_t = {s:.3g})', f'σ = {sigma:.2f} (t = {int(t)}, σ_t = {s:.3g})'
    label_20, title_20 = expected(0.2); label_25, title_25 = expected(0.25)
    assert label_20 != label_25
    t0 = time.time()
    with lab_notebook(tmp_path, CIFAR_SETUP.format(folder=str(ddpm_cifar10_folder)), CIFAR_DASHBOARD) as page:
        wait_for(page, '() => [...document.querySelectorAll(".jp-OutputArea-output")].some(e => e.innerText.includes("setup done VPDenoiser (8, 3, 32, 32)"))',
                 timeout=150_000, what='the model folder and the images loading')
        # the dashboard paints, naming the adapter and the network's size, and the σ explorer draws at σ = 0.20 with its timestep
        wait_for(page, '() => [...document.querySelectorAll(".widget-html")].some(e => e.innerText.includes("sparsediff dashboard")'
                       ' && e.innerText.includes("VPDenoiser, 35.75M parameters") && e.innerText.includes("photos-test, 8 images"))',
                 timeout=60_000, what='the dashboard painting')
        sigma_fig = lambda: page.evaluate(FIGURE_STATE, 'σ explorer')
        wait_for(page, f'() => {{ const s = ({FIGURE_STATE})("σ explorer"); return s && s.title.endsWith({json.dumps(title_20)}) && s.width > 300; }}',
                 timeout=60_000, what=f'the σ explorer at {title_20}')
        wait_for(page, f'() => ({TIMESTEP_LABEL})() === {json.dumps(label_20)}', timeout=10_000, what=f'the timestep label {label_20!r}')
        page.wait_for_timeout(500)
        before = sigma_fig()
        page.locator('.widget-tab').first.screenshot(path=str(ARTIFACTS/'widgets_ddpm_cifar10_sigma_before.png'))

        # five steps of 0.01 to the right: the slider's readout, the timestep beside it, the title and the pictures follow
        handle = page.locator('.widget-hslider .noUi-handle').first
        handle.click()
        for _ in range(5): handle.press('ArrowRight')
        readout = page.locator('.widget-hslider .widget-readout').first
        page.wait_for_function('(el) => el.innerText.trim() === "0.25"', arg=readout.element_handle(), timeout=10_000)
        wait_for(page, f'() => {{ const s = ({FIGURE_STATE})("σ explorer"); return s && s.title.endsWith({json.dumps(title_25)}); }}',
                 timeout=60_000, what=f'the σ explorer at {title_25}')
        wait_for(page, f'() => ({TIMESTEP_LABEL})() === {json.dumps(label_25)}', timeout=10_000, what=f'the timestep label {label_25!r}')
        after = sigma_fig()
        assert after['traces'][0] != before['traces'][0], 'the noisy image did not change'
        assert after['traces'][1] != before['traces'][1], 'the denoised image did not change'
        assert after['traces'][2] != before['traces'][2], 'the φ bars did not change'
        page.locator('.widget-tab').first.screenshot(path=str(ARTIFACTS/'widgets_ddpm_cifar10_sigma.png'))

        # φ of the 8 images: the channel explorer and the neighbour browser (7 neighbours: every other image) fill in
        wait_for(page, '() => [...document.querySelectorAll(".widget-html")].some(e => e.innerText.includes("ready in"))', timeout=120_000,
                 what='φ of the dataset')
        page.locator('.widget-tab .lm-TabBar-tab', has_text='channels').first.click()
        wait_for(page, f'() => ({CHANNEL_MAP})() !== null', timeout=30_000, what='the channel explorer')
        page.locator('.widget-tab .lm-TabBar-tab', has_text='neighbours').first.click()
        wait_for(page, f'''() => {{ const s = ({FIGURE_STATE})("neighbours of image"); return s && s.width > 300 &&
                                   s.annotations.some(a => String(a).includes('/7 same class')); }}''', timeout=30_000, what='the neighbour browser')

        # Reconstruct with the panel's default preset: 2 samples of image 0, drawn when done
        page.locator('.widget-tab .lm-TabBar-tab', has_text='reconstruction').first.click()
        wait_for(page, f'() => ({FIGURE_STATE})("φ-guided") !== null', timeout=30_000, what='the reconstruction panel')
        empty = page.evaluate(FIGURE_STATE, 'φ-guided')
        page.locator('button.jupyter-button', has_text='Reconstruct').first.click()
        done = final_samples(page, '2 samples (done')
        assert done['traces'][1] != empty['traces'][1] and done['width'] > 300 and done['height'] > 200, (done, empty)
        status = page.locator('.widget-tab .widget-html', has_text='done').first.inner_text()
        assert 'samples in' in status, status
        page.locator('.widget-tab').first.screenshot(path=str(ARTIFACTS/'widgets_ddpm_cifar10_reconstruction.png'))
        stack_images([ARTIFACTS/'widgets_ddpm_cifar10_sigma.png', ARTIFACTS/'widgets_ddpm_cifar10_reconstruction.png'],
                     ARTIFACTS/'widgets_ddpm_cifar10.png')
        page.screenshot(path=str(ARTIFACTS/'widgets_ddpm_cifar10_page.png'))
        assert not page.evaluate(ERRORS).strip().lower().count('traceback'), page.evaluate(ERRORS)
    assert time.time() - t0 < 240, f'the browser test took {time.time() - t0:.0f} s'
