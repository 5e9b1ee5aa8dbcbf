"""The command line: every error is one line on stderr with exit code 2, a traceback only with --debug."""
import os, subprocess, sys
import pytest
import sparsediff.cli as cli
from sparsediff.cli import main, error_line

def run(capsys, *args):
    try: main(list(args)); code = 0
    except SystemExit as e: code = e.code
    return code, capsys.readouterr().err

def one_line(err): return err.count('\n') == 1 and 'Traceback' not in err

@pytest.mark.parametrize('args, says', [
    (('--ckpt-every', '0'), '--ckpt-every must be >= 1'), (('--width-div', '0'), '--width-div must be a whole number from 1 to 64'),
    (('--width-div', '1000'), '--width-div'), (('--device', 'tpu'), "--device 'tpu' is not a device"), (('--steps', '0'), '--steps must be >= 1'),
    (('--batch-size', '0'), '--batch-size must be >= 1'), (('--lr', '0'), '--lr must be a finite number > 0'), (('--lr', 'inf'), '--lr'),
    (('--sigma-lo', '0.5', '--sigma-hi', '0.2'), 'sigma_lo < sigma_hi'.replace('sigma_lo', '--sigma-lo').replace('sigma_hi', '--sigma-hi')),
    (('--warmup', '-1'), '--warmup must be >= 0'), (('--halve-every', '-5'), '--halve-every'), (('--eval-every', '-1'), '--eval-every'),
    (('--threads', '0'), '--threads must be >= 1')])
def test_bad_train_options(capsys, tmp_path, args, says):
    code, err = run(capsys, 'train', '--out', str(tmp_path/'run'), *args)
    assert code == 2 and says in err and one_line(err), err
    assert not (tmp_path/'run').exists()   # nothing was written

def test_out_is_an_existing_file(capsys, tmp_path):
    f = tmp_path/'file'; f.write_text('x')
    for cmd in (('train',), ('report', '--data', 'mnist'), ('demo',)):
        code, err = run(capsys, *cmd, '--out', str(f))
        assert code == 2 and 'is an existing file' in err and one_line(err), err

def test_report_bad_inputs(capsys, tmp_path):
    code, err = run(capsys, 'report', '--data', str(tmp_path/'nope'), '--out', str(tmp_path/'o'))
    assert code == 2 and 'No dataset named' in err and one_line(err)
    code, err = run(capsys, 'report', '--data', 'mnist', '--model', str(tmp_path/'nomodel'), '--out', str(tmp_path/'o'), '--device', 'gpu0')
    assert code == 2 and "--device 'gpu0'" in err and one_line(err)
    code, err = run(capsys, 'report', '--data', 'mnist', '--model', str(tmp_path/'nomodel'), '--out', str(tmp_path/'o'))
    assert code == 2 and 'No shipped model named' in err and one_line(err)

def test_resume_with_other_settings_names_the_flag(capsys, tmp_path):
    base = ('train', '--out', str(tmp_path/'run'), '--width-div', '16', '--steps', '2', '--batch-size', '2', '--eval-every', '0')
    assert run(capsys, *base)[0] == 0
    code, err = run(capsys, *base[:-6], '--steps', '4', '--batch-size', '2', '--eval-every', '0', '--width-div', '8')
    assert code == 2 and '--width-div' in err and 'widths' in err and one_line(err), err
    code, err = run(capsys, *base, '--lr', '0.01')
    assert code == 2 and 'lr (--lr): the run has 0.001, asked 0.01' in err

def test_unexpected_errors_are_one_line_too(capsys, tmp_path, monkeypatch):
    def boom(a): return 1 / 0
    monkeypatch.setitem(cli.COMMANDS, 'train', (cli.train_parser, boom))
    code, err = run(capsys, 'train', '--out', str(tmp_path))
    assert code == 2 and one_line(err) and 'ZeroDivisionError: division by zero (rerun with --debug' in err
    code, err = run(capsys, 'train', '--out', str(tmp_path), '--debug')
    assert code == 2 and 'Traceback' in err and err.strip().endswith('(rerun with --debug for the traceback)')
    code, err = run(capsys, '--debug', 'train', '--out', str(tmp_path))
    assert code == 2 and 'Traceback' in err

def test_interrupt_exits_130(capsys, tmp_path, monkeypatch):
    def stop(a): raise KeyboardInterrupt
    monkeypatch.setitem(cli.COMMANDS, 'train', (cli.train_parser, stop))
    code, err = run(capsys, 'train', '--out', str(tmp_path))
    assert code == 130 and 'rerun resumes' in err

def test_error_line_flattens_messages():
    assert error_line(ValueError('a\n  b')) == 'a b' and error_line(KeyError('k missing')) == 'k missing'
    assert error_line(RuntimeError('')) == 'RuntimeError'

def test_argparse_errors_stay_exit_2(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'sparsediff.cli', 'train', '--out', str(tmp_path), '--steps', 'many'], capture_output=True, text=True)
    assert r.returncode == 2 and 'invalid int value' in r.stderr and 'Traceback' not in r.stderr

def test_real_subprocess_error_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'sparsediff.cli', 'train', '--out', str(tmp_path/'r'), '--ckpt-every', '0'], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and r.stderr.startswith('sparsediff train: error: --ckpt-every'), r.stderr

def test_device_errors_speak_command_line(capsys, tmp_path):
    "`--device gpu` lists auto among the choices; a device not on this machine says `use --device cpu or --device auto`, not the API's device='cpu'."
    code, err = run(capsys, 'demo', '--device', 'gpu', '--out', str(tmp_path/'o'))
    assert code == 2 and "--device 'gpu' is not a device; use auto, cpu" in err and one_line(err), err
    assert not (tmp_path/'o').exists()

@pytest.mark.skipif(__import__('torch').cuda.is_available(), reason='needs a machine without a CUDA GPU')
def test_cuda_without_gpu_in_option_words(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'sparsediff.cli', 'demo', '--device', 'cuda', '--out', str(tmp_path/'x')], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr
    assert 'use --device cpu or --device auto' in r.stderr and "device='" not in r.stderr, r.stderr
    assert not (tmp_path/'x').exists()   # refused before any work

@pytest.mark.parametrize('workers', ['-3', '100000'])
def test_extract_workers_bounded_in_option_words(capsys, tmp_path, workers):
    code, err = run(capsys, 'extract', '--data', 'mnist', '--out', str(tmp_path/'s'), '--workers', workers)
    assert code == 2 and ('--workers must be >= 0, got -3' in err or '--workers must be <= ' in err) and one_line(err), err
    assert not (tmp_path/'s').exists()
