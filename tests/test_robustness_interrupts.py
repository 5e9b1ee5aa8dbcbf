"""Ctrl-C on the command line: one line and exit code 130, also when a second Ctrl-C lands during the cleanup of the first."""
import os, signal, subprocess, sys, time, textwrap

SCRIPT = textwrap.dedent('''
    import sys, threading, time
    import sparsediff.cli as cli
    def work(a):
        threading.Thread(target=time.sleep, args=(20,)).start()   # cleanup Python waits for at exit (a writer thread)
        print('ready', flush=True); time.sleep(60)
    cli.COMMANDS['train'] = (cli.train_parser, work)
    sys.argv = ['sparsediff', 'train', '--out', sys.argv[1]]; cli.main()   # as the `sparsediff` command runs it
''')

def start(tmp_path):
    p = subprocess.Popen([sys.executable, '-c', SCRIPT, str(tmp_path/'run')], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)})
    assert p.stdout.readline().strip() == 'ready'
    return p

def test_second_ctrl_c_during_cleanup_is_one_line_and_130(tmp_path):
    p = start(tmp_path)
    p.send_signal(signal.SIGINT); time.sleep(1.0)      # the command has ended; Python waits for the thread
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=15)
    assert p.returncode == 130, (p.returncode, err)
    assert 'Traceback' not in err and err.count('\n') == 1 and 'interrupted' in err, err

def test_one_ctrl_c_still_lets_cleanup_finish(tmp_path):
    p = start(tmp_path)
    p.send_signal(signal.SIGINT)
    assert p.poll() is None or p.wait(timeout=1) is None   # still waiting for its writer thread
    _, err = p.communicate(timeout=40)
    assert p.returncode == 130 and err.count('\n') == 1 and 'rerun resumes' in err, err
