"""The command line, end to end: what a reader types, in subprocesses where it matters."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT
from PIL import Image

import cifar_cnn

FIGURES = {'25-train-images.png', 'normalized.png', 'history.png', 'predictions.png', 'confusion-matrix.png',
           'mistakes.png', 'filters.png', 'feature-maps.png', 'grad-cam.png'}


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
                 'Saved the trained model to', 'Loss: ', 'Accuracy: ', 'Per-class accuracy, worst first:', 'Precision: ']:
        assert line in result.stdout
    assert "Experiments: none (the post's network and training)" in result.stdout
    assert 'Traceback' not in result.stderr
    assert 'Warning' not in result.stderr  # e.g. Keras 3's input_shape= warning, fit()'s shuffle warning


def test_output_to_a_file_is_plain_lines(full_run):
    """Not a terminal: one line per epoch, no progress bar redrawn with escape codes and carriage returns,
    and nothing from TensorFlow's C++ start-up before the program's own first line."""
    result, _ = full_run
    assert '\x1b' not in result.stdout + result.stderr and '\r' not in result.stdout
    assert result.stdout.startswith('Precision: ') and result.stderr == ''
    assert len([line for line in result.stdout.splitlines() if line.startswith('5/5 - ')]) == 2  # 2 epochs


def test_a_progress_bar_on_a_terminal_counts_steps_truthfully(cifar_dir, tmp_path, monkeypatch, capsys):
    """5 steps per epoch: Keras, running 32 steps per call, would report 32/5."""
    monkeypatch.setattr(cifar_cnn, 'progress_verbosity', lambda: 1)
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, epochs=2, batch_size=8)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()
    capsys.readouterr()
    cnn.train_model()
    bar = capsys.readouterr().out
    assert '5/5' in bar and '32/5' not in bar and '-1s' not in bar


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
    _, out = full_run
    picture = tmp_path / 'photo.jpg'
    Image.new('RGB', (640, 480), (200, 30, 30)).save(picture)
    result = run_cli('--load-model', str(out / 'model.keras'), '--predict', str(picture), str(tmp_path / 'nope.png'))
    assert result.returncode == 1  # one of the two files failed
    assert result.stdout.count(f'{picture}: ') == 1
    assert result.stderr.strip().endswith(f'error: {tmp_path / "nope.png"}: no such file')
    assert 'training examples' not in result.stdout and 'Epoch' not in result.stdout  # no data, no training


def test_load_model_runs_the_steps_after_training(full_run, session_cifar_dir, tmp_path, capsys):
    _, out = full_run
    assert cifar_cnn.main(['--data-dir', session_cifar_dir, '--load-model', str(out / 'model.keras'),
                           '--figures-dir', str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    assert 'Epoch 1/' not in stdout and 'Accuracy: ' in stdout
    assert set(os.listdir(tmp_path)) == FIGURES - {'history.png'}  # no training, no history to plot


def test_fewer_images_than_the_figures_show_still_runs(session_cifar_dir, tmp_path, capsys):
    """--limit 5: the post's figures want 25 training and 15 test images; they show the 5 there are."""
    assert cifar_cnn.main(['--data-dir', session_cifar_dir, '--limit', '5', '--epochs', '1',
                           '--figures-dir', str(tmp_path)]) == 0
    assert '5 training examples ...' in capsys.readouterr().out
    assert set(os.listdir(tmp_path)) == FIGURES


@pytest.mark.parametrize(('option', 'message'), [
    ('--figures-dir', 'cannot write figures to {blocker}/sub: Not a directory'),
    ('--save-model', 'cannot write the model to {blocker}: it is a file, not a folder'),
    ('--tensorboard', 'cannot write TensorBoard logs to {blocker}/sub: Not a directory')])
def test_what_cannot_be_written_fails_before_the_data_loads(tmp_path, capsys, option, message):
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    target = {'--save-model': f'{blocker}/m.keras'}.get(option, f'{blocker}/sub')
    code = cifar_cnn.main([option, target, '--data-dir', '/nonexistent'])  # loading would fail differently
    assert code == 1
    assert capsys.readouterr().err.strip() == 'error: ' + message.format(blocker=blocker)


def test_save_model_onto_a_folder_fails_before_training(tmp_path, capsys):
    (tmp_path / 'm.keras').mkdir()
    assert cifar_cnn.main(['--save-model', str(tmp_path / 'm.keras'), '--data-dir', '/nonexistent']) == 1
    assert 'is a folder or a special file, not a place for a model file' in capsys.readouterr().err


def test_missing_data_is_one_line_exit_1(tmp_path, capsys):
    code = cifar_cnn.main(['--data-dir', str(tmp_path), '--figures-dir', str(tmp_path / 'f')])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and 'holds neither cifar-10-batches-py/ nor cifar-10-python.tar.gz' in err[0]


@pytest.mark.parametrize('args', [
    ['--epochs', '0'], ['--batch-size', 'x'], ['--batch-size', '5000'], ['--limit', '-3'], ['--seed', '-1'],
    ['--seed', '1.5'], ['--seed', str(2**32)], ['--precision', 'half'], ['--save-model', 'model.h5'],
    ['--save-model', 'runs/.keras'],  # Keras would refuse the name only after training
    ['--dropout', '1.5'], ['--dropout', 'nan'], ['--validation-split', '0'], ['--validation-split', '1'],
    ['--figures-dir', ''], ['--data-dir', 'a\0b'],
    ['--load-model', 'm.keras', '--save-model', 'n.keras'], ['--load-model', 'm.keras', '--augment'],
    ['--load-model', 'm.keras', '--epochs', '3'], ['--load-model', 'm.keras', '--predict', 'x.png', '--data-dir', 'd']])
def test_bad_values_and_clashes_are_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cifar_cnn.main(args)
    assert exit_info.value.code == 2
    assert 'error:' in capsys.readouterr().err


def test_help_gives_examples_and_says_it_downloads(capsys):
    with pytest.raises(SystemExit):
        cifar_cnn.main(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert 'Without --data-dir it downloads CIFAR-10' in text and 'examples: python cifar_cnn.py --limit' in text
    assert 'with --load-model at once, without it after training a model first' in text


@pytest.mark.parametrize(('args', 'code'), [(['--help'], 0), (['--epochs', '0'], 2), (['--load-model', 'x.h5'], 2)])
def test_help_and_usage_errors_answer_before_tensorflow_loads(args, code):
    probe = ('import runpy, sys\n'
             f'sys.argv = ["cifar_cnn.py", *{args!r}]\n'
             'try:\n'
             f'    runpy.run_path({os.path.join(ROOT, "cifar_cnn.py")!r}, run_name="__main__")\n'
             'except SystemExit as e:\n'
             '    print("exit", e.code, [m for m in ("tensorflow", "keras", "matplotlib.pyplot") if m in sys.modules])')
    result = subprocess.run([sys.executable, '-c', probe], check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.stdout.splitlines()[-1] == f'exit {code} []'


def test_tensorboard_without_tensorboard_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'tensorboard', None)  # as if not installed
    assert cifar_cnn.main(['--tensorboard', str(tmp_path), '--data-dir', '/nonexistent']) == 1
    assert capsys.readouterr().err.strip() == f'error: --tensorboard needs TensorBoard: {sys.executable} -m pip install tensorboard'


# ─── Signals, at every phase ─────────────────────────────────────────────────────────────────────

PHASES = {  # phase: (marker in stdout after which the signal is sent, signal, exit code, last line)
    'TensorFlow loading': (None, signal.SIGINT, 130, 'Interrupted.'),
    'data loading': ('Precision:', signal.SIGINT, 130, 'Interrupted.'),
    'training': ('Epoch 3/', signal.SIGINT, 0, None),  # stops training, keeps what was learnt
    'evaluation': ('Epoch times', signal.SIGINT, 130, 'Interrupted.'),
    'saving': ('Epoch times', signal.SIGTERM, 143, 'Terminated.'),
    'saving, the terminal closed': ('Epoch times', signal.SIGHUP, 129, 'Hung up.'),
    'prediction': ('history.png', signal.SIGINT, 130, 'Interrupted.'),
}


def test_signals_at_every_phase(session_cifar_dir, tmp_path):
    """Ctrl-C anywhere but in training quits at once with "Interrupted." (130); in training it stops
    training and the run goes on (0). SIGTERM quits (143), and so does SIGHUP (129). Never a traceback,
    never a temporary file. The phases run side by side, each in its own process."""
    runs = {}
    for phase, (marker, signum, _, _) in PHASES.items():
        out = tmp_path / phase.replace(' ', '-')
        epochs = '100000' if phase == 'training' else '3'
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'cifar_cnn.py'), '--data-dir', session_cifar_dir,
                                 '--epochs', epochs, '--batch-size', '8', '--figures-dir', str(out),
                                 '--save-model', str(out / 'model.keras')],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                env=os.environ | {'PYTHONUNBUFFERED': '1'})
        output = []
        reader = threading.Thread(target=lambda p=proc, o=output: o.extend(p.stdout), daemon=True)
        reader.start()
        runs[phase] = (proc, output, reader, out)
    start, pending = time.time(), dict(PHASES)
    while pending and time.time() < start + 180:
        for phase, (marker, signum, _, _) in list(pending.items()):
            proc, output = runs[phase][:2]
            if (marker is None and time.time() > start + 0.5) or (marker and marker in ''.join(output)):
                proc.send_signal(signum)
                del pending[phase]
        time.sleep(0.05)
    for phase, (_, _, code, last_line) in PHASES.items():
        proc, output, reader, out = runs[phase]
        assert proc.wait(timeout=120) == code, f'{phase}: {"".join(output)[-2000:]}'
        reader.join(timeout=10)
        text = ''.join(output)
        assert 'Traceback' not in text, f'{phase}: {text[-2000:]}'
        if last_line:
            assert text.strip().endswith(last_line), f'{phase}: {text[-500:]}'
        else:
            assert 'Training stopped by Ctrl-C after' in text and set(os.listdir(out)) == FIGURES | {'model.keras'}
        assert not [f for f in os.listdir(out) if '.tmp' in f] if out.exists() else True


# ─── Order and wording of what goes wrong ────────────────────────────────────────────────────────

@pytest.mark.parametrize(('variable', 'value', 'message'), [
    ('KERAS_BACKEND', 'jax', "error: KERAS_BACKEND=jax: this program runs on Keras's TensorFlow backend; unset KERAS_BACKEND"),
    ('MPLBACKEND', 'nonsense', 'error: MPLBACKEND=nonsense: not a backend matplotlib knows; unset MPLBACKEND')])
def test_an_environment_it_cannot_run_in_is_one_line(variable, value, message):
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'cifar_cnn.py'), '--limit', '5'], check=False,
                            capture_output=True, text=True, timeout=60, cwd=ROOT, env=os.environ | {variable: value})
    assert (result.returncode, result.stderr, result.stdout) == (1, message + '\n', '')


def test_a_validation_split_leaving_nothing_fails_before_any_figure(session_cifar_dir, tmp_path, capsys):
    code = cifar_cnn.main(['--data-dir', session_cifar_dir, '--limit', '10', '--validation-split', '0.999',
                           '--figures-dir', str(tmp_path / 'f')])
    err = capsys.readouterr().err
    assert code == 1 and err == 'error: --validation-split 0.999 leaves no training images out of 10\n'
    assert os.listdir(tmp_path / 'f') == []


def test_warnings_are_held_back_when_an_error_line_follows(monkeypatch, capsys):
    def warn_then_fail(args):
        cifar_cnn.warnings.warn('invalid value encountered in divide', RuntimeWarning)
        raise cifar_cnn.CifarError('photo.tif: damaged image')
    monkeypatch.setattr(cifar_cnn, 'prepare', warn_then_fail)
    assert cifar_cnn.main(['--data-dir', 'x']) == 1
    assert capsys.readouterr().err == 'error: photo.tif: damaged image\n'


def test_a_figures_folder_that_cannot_be_made_leaves_nothing_behind(tmp_path, capsys):
    target = tmp_path / 'new' / 'deeper' / ('x' * 300)  # the last name is too long: made up to there, then fails
    assert cifar_cnn.main(['--figures-dir', str(target), '--data-dir', str(tmp_path)]) == 1
    assert 'cannot write figures to' in capsys.readouterr().err and os.listdir(tmp_path) == []


def test_an_error_line_carries_the_cause_of_a_multi_line_message():
    keras_style = ValueError('Exception encountered when calling Conv2D.call():\n\n'
                             'Negative dimension size caused by subtracting 3 from 2\n\nArguments received: ...')
    assert cifar_cnn.first_line(keras_style) == 'Negative dimension size caused by subtracting 3 from 2'
    assert cifar_cnn.first_line(KeyError()) == 'KeyError'
