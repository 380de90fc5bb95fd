"""The command line, end to end, in a subprocess: what a reader types."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT

import cifar_cnn

FIGURES = {'25-train-images.png', 'normalized.png', 'history.png', 'predictions.png', 'confusion-matrix.png'}


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'cifar_cnn.py'), *args],
                          check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope='module')
def full_run(session_cifar_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp('run')
    result = run_cli('--data-dir', session_cifar_dir, '--epochs', '2', '--batch-size', '8', '--seed', '7',
                     '--figures-dir', str(out / 'figures'), '--save-model', str(out / 'model.keras'))
    return result, out


def test_full_run_writes_every_figure(full_run):
    result, out = full_run
    assert result.returncode == 0, result.stderr
    assert set(os.listdir(out / 'figures')) == FIGURES
    for line in ['40 training examples ...', 'Total params: 122,570', 'Epoch 2/2', 'Epoch times (s):',
                 'Loss: ', 'Accuracy: ', 'Per-class accuracy, worst first:', 'Precision: ']:
        assert line in result.stdout
    assert 'Traceback' not in result.stderr
    assert 'UserWarning' not in result.stderr  # e.g. Keras 3's input_shape= warning


def test_same_seed_same_numbers(full_run, session_cifar_dir, tmp_path, capsys):
    """The subprocess run above and this in-process run share a seed: same loss, same accuracy."""
    first, _ = full_run
    assert cifar_cnn.main(['--data-dir', session_cifar_dir, '--epochs', '2', '--batch-size', '8', '--seed', '7',
                           '--figures-dir', str(tmp_path)]) == 0
    again = capsys.readouterr().out

    def numbers(text):
        return [line for line in text.splitlines() if line.startswith(('Loss:', 'Accuracy:'))]
    assert len(numbers(first.stdout)) == 2
    assert numbers(again) == numbers(first.stdout)


def test_load_model_and_predict_needs_no_data(full_run, tmp_path):
    from PIL import Image
    _, out = full_run
    picture = tmp_path / 'photo.jpg'
    Image.new('RGB', (640, 480), (200, 30, 30)).save(picture)
    result = run_cli('--load-model', str(out / 'model.keras'), '--predict', str(picture), str(tmp_path / 'nope.png'),
                     '--figures-dir', str(tmp_path / 'figs'))
    assert result.returncode == 1  # one of the two files failed
    assert result.stdout.count(f'{picture}: ') == 1
    assert f'{tmp_path / "nope.png"}: error: no such file' in result.stderr
    assert 'training examples' not in result.stdout and 'Epoch' not in result.stdout  # no data, no training
    assert not (tmp_path / 'figs').exists()


def test_load_model_runs_the_steps_after_training(full_run, session_cifar_dir, tmp_path, capsys):
    _, out = full_run
    assert cifar_cnn.main(['--data-dir', session_cifar_dir, '--load-model', str(out / 'model.keras'),
                           '--figures-dir', str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    assert 'Epoch 1/' not in stdout and 'Accuracy: ' in stdout
    assert set(os.listdir(tmp_path)) == FIGURES - {'history.png'}  # no training, no history to plot


def test_unwritable_figures_dir_fails_before_loading(tmp_path, capsys):
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    code = cifar_cnn.main(['--figures-dir', str(blocker / 'figures'), '--data-dir', '/nonexistent'])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == f'error: cannot write figures to {blocker / "figures"}: Not a directory'


def test_bad_data_dir_is_one_line_exit_1(tmp_path, capsys):
    code = cifar_cnn.main(['--data-dir', str(tmp_path), '--figures-dir', str(tmp_path / 'f')])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and 'holds neither cifar-10-batches-py/ nor cifar-10-python.tar.gz' in err[0]


@pytest.mark.parametrize('args', [['--epochs', '0'], ['--batch-size', 'x'], ['--limit', '-3'],
                                  ['--precision', 'half'], ['--save-model', 'model.h5'], ['--seed', '1.5']])
def test_bad_values_are_argparse_errors(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cifar_cnn.main(args)
    assert exit_info.value.code == 2
    assert 'error:' in capsys.readouterr().err


def test_ctrl_c_stops_training_and_finishes_the_run(session_cifar_dir, tmp_path):
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'cifar_cnn.py'), '--data-dir', session_cifar_dir,
                             '--epochs', '100000', '--batch-size', '8', '--figures-dir', str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    output = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 90
    while 'Epoch 3/' not in ''.join(output) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    reader.join(timeout=10)
    text = ''.join(output)
    assert code == 0, text[-2000:]
    assert 'Training stopped by Ctrl-C after' in text
    assert 'Accuracy: ' in text and 'Traceback' not in text
    assert set(os.listdir(tmp_path)) == FIGURES


def test_missing_model_fails_before_loading_data(tmp_path, capsys):
    code = cifar_cnn.main(['--load-model', str(tmp_path / 'none.keras'), '--data-dir', '/nonexistent',
                           '--figures-dir', str(tmp_path / 'f')])
    assert code == 1
    assert capsys.readouterr().err.strip() == f'error: --load-model {tmp_path / "none.keras"}: no such file'


def test_unwritable_model_folder_fails_before_loading(tmp_path, capsys):
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    code = cifar_cnn.main(['--save-model', str(blocker / 'm.keras'), '--data-dir', '/nonexistent',
                           '--figures-dir', str(tmp_path / 'f')])
    assert code == 1
    assert capsys.readouterr().err.strip() == f'error: cannot write the model to {blocker}: it is a file, not a folder'


@pytest.mark.skipif(not hasattr(os, 'sched_setaffinity'), reason='needs Linux CPU affinity')
@pytest.mark.parametrize(('user', 'expected'), [({}, ['1', '2', 'true']),
                                                ({'TF_NUM_INTRAOP_THREADS': '3'}, ['3', '2', 'true'])])
def test_thread_settings_on_two_cpus_and_user_wins(user, expected):
    """On 2 CPUs or fewer the program picks TensorFlow's thread settings before TensorFlow loads;
    a variable the user set is left alone."""
    names = ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS', 'TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD')
    code = ('import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); '
            f'sys.path.insert(0, {ROOT!r}); import cifar_cnn; print([os.environ.get(k) for k in {names!r}])')
    env = {k: v for k, v in os.environ.items() if k not in names} | user
    result = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True, env=env)
    assert result.stdout.strip() == str(expected)
