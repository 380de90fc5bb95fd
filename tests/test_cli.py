"""The command line, end to end: what a reader types. The runs that need a process of their own (each pays
TensorFlow's 3 s import: a full run, signals at every phase, output streams that fail, an environment it
cannot run in) start with the test session, side by side (conftest.start_cli_runs); here they are checked."""

import os
import signal
import subprocess
import sys
import warnings

import pytest
from conftest import FIGURES, ROOT, SIGNALS, TINY, WINDOWS_LACKS
from PIL import Image

import cifar_cnn
import cifar_cnn_plumbing as plumbing


@pytest.fixture(scope='module')
def runs(background):
    """{name: (run, exit status, what it printed)} for each process conftest.start_cli_runs started."""
    return {name: (run, *run.wait()) for name, run in background['cli'].items()}


def test_full_run_writes_every_figure_and_the_model(runs):
    run, code, output = runs['full']
    assert code == 0, output
    assert set(os.listdir(run.folder / 'figures')) == FIGURES and (run.folder / 'model.keras').is_file()
    for line in ['Precision: ', "Experiments: none (the post's network and training)", '5 training examples ...',
                 'Total params: 122,570', 'Epoch 2/2', 'Epoch times (s):', 'Saved the trained model to', 'Loss: ',
                 'Accuracy: ', 'Per-class accuracy, worst first:']:
        assert line in output
    assert 'Traceback' not in output and 'Warning' not in output  # e.g. Keras 3's input_shape= warning


def test_output_to_a_file_is_plain_lines_and_nothing_on_stderr(runs):
    """Not a terminal: one line per epoch, no progress bar redrawn with escape codes and carriage returns,
    and nothing from TensorFlow's C++ start-up before the program's own first line."""
    run, _, output = runs['full']
    assert '\x1b' not in output and '\r' not in output and output.startswith('Precision: ')
    assert len([line for line in output.splitlines() if line.startswith('1/1 - ') and 'val_loss' in line]) == 2
    assert os.listdir(run.tmp) == []  # TensorFlow's generated code and Keras's files went with the run


def test_same_seed_same_numbers_and_fewer_images_than_the_figures_show(runs, session_cifar_dir, tmp_path, capsys):
    """The process above and this run in this process share a seed: same loss, same accuracy. 5 images are
    fewer than the figures show (25 and 15): they show the 5 there are."""
    _, _, first = runs['full']
    assert cifar_cnn.main(['--data-dir', session_cifar_dir, *TINY, '--figures-dir', str(tmp_path)]) == 0
    again = capsys.readouterr().out

    def numbers(text):
        return [line for line in text.splitlines() if line.startswith(('Loss:', 'Accuracy:'))]
    assert len(numbers(first)) == 2 and numbers(again) == numbers(first)
    assert set(os.listdir(tmp_path)) == FIGURES


def test_load_model_and_predict_needs_no_data(runs):
    run, code, output = runs['predict']
    assert code == 1  # one of the files failed
    assert output.count('photo.jpg: ') == 2  # a file named twice is answered twice
    assert f'error: {run.folder.parent / "nope.png"}: no such file' in output
    assert 'training examples' not in output and 'Epoch' not in output  # no data, no training


def test_load_model_runs_the_steps_after_training(saved_model, session_cifar_dir, tmp_path, capsys):
    assert cifar_cnn.main(['--data-dir', session_cifar_dir, '--limit', '5', '--load-model', saved_model,
                           '--figures-dir', str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    assert 'Epoch 1/' not in stdout and 'Accuracy: ' in stdout
    assert set(os.listdir(tmp_path)) == FIGURES - {'history.png'}  # no training, no history to plot


def test_a_name_that_is_not_utf_8_on_the_command_line_goes_into_each_figure_escaped(saved_model, session_cifar_dir,
                                                                                     tmp_path, capsys):
    """The command line is recorded in each figure; a name whose bytes are not UTF-8 (Python holds them as
    surrogates) is recorded escaped, and the figures are written."""
    figures = str(tmp_path / os.fsdecode(b'caf\xe9'))
    assert cifar_cnn.main(['--data-dir', session_cifar_dir, '--limit', '5', '--load-model', saved_model,
                           '--figures-dir', figures]) == 0
    assert 'Traceback' not in capsys.readouterr().err
    command = Image.open(os.path.join(figures, 'predictions.png')).text['Command']
    assert command.endswith(f'--figures-dir {tmp_path}/caf\\udce9')


# ─── Output streams: a reader gone, a full disk, no standard output at all ───────────────────────

@pytest.mark.parametrize('run_name', ['head -1', 'training | head'])
def test_a_reader_that_stops_reading_ends_it_quietly(runs, run_name):
    """| head: the first lines arrive (the first alone; or up to the middle of the model's summary, which Keras
    prints), then the program stops as Unix programs do, 128 + SIGPIPE, with nothing on stderr: no
    BrokenPipeError, not even Python's at exit."""
    run, code, output = runs[run_name]
    assert run.first_line.startswith('Precision: ') and run.head in run.last_line
    assert (code, output) == (128 + signal.SIGPIPE, '')
    assert os.listdir(run.tmp) == []


def test_without_what_windows_lacks_it_starts_runs_and_ends_the_same(runs):
    """Windows has no SIGHUP, SIGPIPE, sched_getaffinity or pathconf (conftest.WINDOWS_LACKS): without them,
    importing, reading a picture, the signal handlers set and put back and a reader gone at the end (`| head`) raise
    nothing, and the run ends as on Linux."""
    run, code, output = runs['without what Windows lacks']
    assert run.first_line.startswith('Precision: ') and (code, output) == (128 + signal.SIGPIPE, '')
    any_there = ' or '.join(f'hasattr({module}, {name!r})' for module, name in WINDOWS_LACKS)
    gone = subprocess.run([sys.executable, '-c', f'import os, signal; print(not ({any_there}))'], check=True,
                          capture_output=True, text=True,
                          env=os.environ | {'PYTHONPATH': str(run.folder.parent / 'site')})
    assert gone.stdout == 'True\n'  # that Python had none of them


@pytest.mark.parametrize(('run_name', 'names'), [  # answers that cannot be written: an error, not a success
    ('> /dev/full', ['standard output', 'No space left on device']), ('>&-', ['standard output', 'closed']),
    ('KERAS_BACKEND', ['KERAS_BACKEND=jax', 'TensorFlow', 'unset']),  # where it cannot run
    ('MPLBACKEND', ['MPLBACKEND=nonsense', 'unset']), ('ulimit -v', ['address space', '3 GiB', 'raise']),
    ('ulimit -f', ['25-train-images.png', 'File too large'])])
def test_where_it_cannot_write_or_run_it_says_so_in_one_line(runs, run_name, names):
    run, code, _ = runs[run_name]
    errors = ''.join(run.errors)
    assert code == 1 and errors.startswith('error: ') and errors.count('\n') == 1
    assert all(name in errors for name in names), errors


# ─── Signals, at every phase: one line, the usual exit status, nothing left behind ─────────────────

@pytest.mark.parametrize('phase', SIGNALS)
def test_a_signal_at_any_phase_stops_cleanly(runs, phase):
    """Ctrl-C anywhere but in training quits at once with "Interrupted." (130); in training it stops training
    and the run goes on; twice, it quits. SIGTERM quits (143), SIGHUP too (129). Never a traceback, never a
    temporary file in TMPDIR or beside the outputs; an output folder the run made and left empty is gone."""
    run, code, output = runs[phase]
    _, expected, last_line = SIGNALS[phase]
    assert code == expected, output[-2000:]
    assert 'Traceback' not in output and last_line in ''.join(run.errors).strip().splitlines()[-1], output[-500:]
    assert os.listdir(run.tmp) == []
    left = set(os.listdir(run.folder)) - {'tmp'}
    assert not [name for name in left if '.tmp' in name or name.startswith('.')]
    if phase == 'training, then prediction':  # the run went on with the epochs that were done
        assert 'Training stopped by Ctrl-C' in output and {'model.keras', 'history.png'} <= left
    if phase == 'TensorFlow loading':
        assert left == set()  # nothing made yet


# ─── Options and their order ─────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize(('option', 'names'), [
    ('--figures-dir', ['figures', '{blocker}/sub', 'Not a directory']),
    ('--figures-dir', ['figures', '{taken}/history.png', 'not a place for a file']),
    ('--save-model', ['the model', '{blocker}', 'not a folder']),
    ('--tensorboard', ['TensorBoard logs', '{blocker}/sub', 'Not a directory'])])
def test_what_cannot_be_written_fails_before_the_data_loads(tmp_path, capsys, option, names):
    blocker, taken = tmp_path / 'a-file', tmp_path / 'taken'
    blocker.write_text('')
    (taken / 'history.png').mkdir(parents=True)  # a figure's name, taken by a folder
    names = [name.format(blocker=blocker, taken=taken) for name in names]
    target = {'--save-model': f'{blocker}/m.keras'}.get(option, taken if str(taken) in names[1] else f'{blocker}/sub')
    code = cifar_cnn.main([option, str(target), '--data-dir', '/nonexistent'])  # loading would fail differently
    err = capsys.readouterr().err
    assert code == 1 and err.startswith('error: cannot write') and err.count('\n') == 1
    assert all(name in err for name in names), err


@pytest.mark.parametrize('there', ['a folder', 'a pipe', 'a file this process may not replace'])
def test_save_model_onto_what_cannot_take_it_fails_before_training(tmp_path, capsys, monkeypatch, there):
    path = tmp_path / 'm.keras'
    path.mkdir() if there == 'a folder' else os.mkfifo(path) if there == 'a pipe' else path.write_bytes(b'model')
    if there.startswith('a file'):  # as an immutable file, or someone else's in /tmp: access() says no
        monkeypatch.setattr(os, 'access', lambda target, mode: not target.endswith('m.keras'))
    assert cifar_cnn.main(['--save-model', str(path), '--figures-dir', str(tmp_path / 'f'), '--data-dir',
                           '/nonexistent']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: cannot write the model') and str(path) in err and err.count('\n') == 1
    assert ('cannot be replaced' if there.startswith('a file') else 'not a place for a file') in err


def test_missing_data_is_one_line_exit_1(tmp_path, capsys):
    code = cifar_cnn.main(['--data-dir', str(tmp_path), '--figures-dir', str(tmp_path / 'f')])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and 'holds neither cifar-10-batches-py/ nor cifar-10-python.tar.gz' in err[0]
    assert os.listdir(tmp_path) == []  # the figures folder it made for nothing is gone again


@pytest.mark.parametrize('args', [
    ['--epochs', '0'], ['--epochs', '100000000000000000000000'], ['--batch-size', 'x'], ['--batch-size', '5000'],
    ['--limit', '-3'], ['--limit', '60000'], ['--seed', '-1'], ['--seed', '1.5'], ['--seed', str(2**32)],
    ['--precision', 'half'], ['--save-model', 'model.h5'],
    ['--save-model', 'runs/.keras'],  # Keras would refuse the name only after training
    ['--dropout', '1.5'], ['--dropout', 'nan'], ['--validation-split', '1'], ['--validation-split', '-0.1'],
    ['--figures-dir', ''], ['--data-dir', 'a\0b'], ['--data-dir', 'x' * 5000],
    ['--load-model', 'm.keras', '--save-model', 'n.keras'], ['--load-model', 'm.keras', '--augment'],
    ['--load-model', 'm.keras', '--epochs', '3'], ['--load-model', 'm.keras', '--predict', 'x.png', '--data-dir', 'd'],
    ['--epoch', '3']])  # not taken for --epochs: a typo would train and write over figures/
def test_bad_values_and_clashes_are_usage_errors(args, capsys):
    assert cifar_cnn.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith('error:') and err.count('\n') == 1


def test_help_gives_examples_and_says_it_downloads(capsys):
    assert cifar_cnn.main(['--help']) == 0
    text = ' '.join(capsys.readouterr().out.split())
    assert 'Without --data-dir it downloads CIFAR-10' in text and 'examples: python cifar_cnn.py --limit' in text
    assert 'with --load-model at once, without it after training a model first' in text
    assert 'through a symbolic link, to the file it names' in text


def test_tensorboard_without_tensorboard_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'tensorboard', None)  # as if not installed
    assert cifar_cnn.main(['--tensorboard', str(tmp_path), '--data-dir', '/nonexistent']) == 1
    err = capsys.readouterr().err
    assert '--tensorboard' in err and f'{sys.executable} -m pip install tensorboard' in err and err.count('\n') == 1


def test_a_tensorboard_folder_named_with_terminal_codes_is_printed_escaped(tmp_path, capsys):
    folder = str(tmp_path / 'x\n\x1b[31mFAKE')
    cifar_cnn.main(['--tensorboard', folder, '--data-dir', '/nonexistent'])
    out = capsys.readouterr().out
    assert f'Experiments: --tensorboard {tmp_path}/x\\n\\x1b[31mFAKE\n' in out and '\x1b' not in out


def test_a_validation_split_leaving_nothing_fails_before_any_figure(session_cifar_dir, tmp_path, capsys):
    code = cifar_cnn.main(['--data-dir', session_cifar_dir, '--limit', '10', '--validation-split', '0.999',
                           '--figures-dir', str(tmp_path / 'f')])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith('error: --validation-split 0.999') and 'no training images' in err
    assert os.listdir(tmp_path) == []  # nor the figures folder made for it


def test_warnings_are_held_back_when_an_error_line_follows(monkeypatch, capsys):
    def warn_then_fail(args):
        warnings.warn('invalid value encountered in divide', RuntimeWarning)
        raise plumbing.CifarError('photo.tif: damaged image')
    monkeypatch.setattr(cifar_cnn, 'run', warn_then_fail)
    assert cifar_cnn.main(['--data-dir', 'x']) == 1
    assert capsys.readouterr().err == 'error: photo.tif: damaged image\n'


def test_a_figures_folder_that_cannot_be_made_leaves_nothing_behind(tmp_path, capsys):
    target = tmp_path / 'new' / 'deeper' / ('x' * 300)  # the last name is too long: made up to there, then fails
    assert cifar_cnn.main(['--figures-dir', str(target), '--data-dir', str(tmp_path)]) == 1
    assert 'cannot write figures to' in capsys.readouterr().err and os.listdir(tmp_path) == []


def test_an_error_line_carries_the_cause_of_a_multi_line_message():
    keras_style = ValueError('Exception encountered when calling Conv2D.call():\n\n'
                             'Negative dimension size caused by subtracting 3 from 2\n\nArguments received: ...')
    assert plumbing.first_line(keras_style) == 'Negative dimension size caused by subtracting 3 from 2'
    assert plumbing.first_line(KeyError()) == 'KeyError'


def test_show_where_no_figure_can_be_shown_says_so(tmp_path, capsys):
    """--show on a machine with no display (the tests' Agg): a note that the figures only go to files."""
    assert cifar_cnn.main(['--show', '--figures-dir', str(tmp_path / 'f'), '--data-dir', str(tmp_path)]) == 1
    note, error = capsys.readouterr().err.splitlines()
    assert note.startswith('note: --show') and 'only written to files' in note and error.startswith('error: ')


def test_imported_where_it_cannot_run_it_raises_its_one_line_error():
    """Imported (Python, Jupyter) rather than run, KERAS_BACKEND=jax is an ImportError naming the variable and
    the fix, raised before TensorFlow loads."""
    result = subprocess.run([sys.executable, '-c', 'import cifar_cnn'], check=False, capture_output=True, text=True,
                            cwd=ROOT, env=os.environ | {'KERAS_BACKEND': 'jax'})
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (
        'ImportError: KERAS_BACKEND=jax: runs on TensorFlow only; unset it')


@pytest.mark.skipif(not hasattr(signal, 'SIGHUP'), reason='no SIGHUP (Windows)')
def test_a_run_that_succeeds_shows_its_warnings_after_and_leaves_an_ignored_signal_ignored(monkeypatch):
    """Warnings are held back while the run goes (an error line says it better), and shown once it succeeds.
    A signal the caller ignores (nohup) stays ignored during the run and after it."""
    def warn(args):
        warnings.warn('something to know', UserWarning)
        return 0
    monkeypatch.setattr(cifar_cnn, 'run', warn)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with pytest.warns(UserWarning, match='something to know'):
            assert cifar_cnn.main(['--data-dir', 'x']) == 0
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize('run_name', ['COLUMNS=5', 'keras.json'])
def test_a_narrow_terminal_or_kerases_own_settings_change_nothing(runs, run_name):
    """COLUMNS=5 (Keras's model summary needs room), or a keras.json asking for channels first in float16: the
    same run, the same numbers as the plain one, and for keras.json one note saying what is used instead."""
    _, code, output = runs[run_name]
    _, _, plain = runs['full']
    assert code == 0 and 'Traceback' not in output

    def numbers(text):
        return [line for line in text.splitlines() if line.startswith(('Loss:', 'Accuracy:'))]
    assert len(numbers(plain)) == 2 and numbers(output) == numbers(plain)
    notes = [line for line in output.splitlines() if line.startswith('note:')]
    assert len(notes) == (run_name == 'keras.json') and all('channels_first' in note for note in notes)


def test_past_the_file_size_limit_nothing_is_left(runs):
    run, _, _ = runs['ulimit -f']
    assert os.listdir(run.folder) == ['tmp'] and os.listdir(run.tmp) == []  # not even the figures folder it made
