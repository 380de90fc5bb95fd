"""The plumbing under the post's methods: Ctrl-C during training, writing files (atomically, through links,
under any legal name, never littering), signals, precision, thread settings and a quiet start."""

import contextlib
import io
import os
import re
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

import cifar_cnn
from cifar_cnn import CifarError


@pytest.fixture(scope='module')
def stopped_in_epoch_3(session_cifar_dir):
    """A model trained in mixed precision (what --precision mixed, or auto on a CPU with native bfloat16,
    runs) for up to 50 epochs, Ctrl-C arriving in the third: (cnn, what training printed)."""
    policy = cifar_cnn.keras.mixed_precision.global_policy()
    cifar_cnn.keras.mixed_precision.set_global_policy('mixed_bfloat16')
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir, epochs=50, batch_size=8)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()

    class CtrlCInEpoch3(cifar_cnn.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                signal.raise_signal(signal.SIGINT)
    cnn.callbacks = lambda: [CtrlCInEpoch3(), *cifar_cnn.CifarCNN.callbacks(cnn)]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        cnn.history = cnn.train_model()
        cnn.make_prediction()
    cifar_cnn.keras.mixed_precision.set_global_policy(policy)
    return cnn, printed.getvalue()


def test_ctrl_c_in_training_keeps_the_finished_epochs(stopped_in_epoch_3):
    """Ctrl-C arriving in epoch 3: epochs 1-2 are kept, training ends, the model stays usable."""
    cnn, out = stopped_in_epoch_3
    assert len(cnn.history.history['accuracy']) == 2 and cnn.history.epoch == [0, 1]
    assert 'Training stopped by Ctrl-C after 2 finished epoch(s)' in out
    assert len(out.split('Epoch times (s): ')[1].split(';')[0].split(', ')) == 2  # the cut epoch is not timed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


@pytest.mark.parametrize('what', ['figure', 'model'])
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(trained, tmp_path, monkeypatch, what):
    """Figures and models are written to a temporary file and renamed: a write that fails half-way
    (here: a full disk) leaves the previous file whole and nothing else."""
    name = {'figure': 'normalized.png', 'model': 'model.keras'}[what]
    (tmp_path / name).write_bytes(b'previous')

    def half_write(path):
        with open(path, 'wb') as f:
            f.write(b'half')
        raise OSError(28, 'No space left on device')
    with pytest.raises(CifarError, match=rf'cannot write .*{name}: No space left on device'):
        if what == 'figure':
            monkeypatch.setattr(cifar_cnn.matplotlib.figure.Figure, 'savefig', lambda self, path, **k: half_write(path))
            trained.figures_dir = str(tmp_path)
            trained.preprocess_data()
        else:
            monkeypatch.setattr(trained.model, 'save', half_write)
            cifar_cnn.save_model(trained.model, str(tmp_path / name))
    assert (tmp_path / name).read_bytes() == b'previous'
    assert os.listdir(tmp_path) == [name]


def test_a_signal_during_a_write_removes_the_temporary_file(tmp_path, monkeypatch, capfd):
    """SIGTERM or Ctrl-C while a file is half-written (e.g. --save-model): stop_now says so and exits at once,
    leaving neither the temporary file nor half a file at the target. Its line shows even while stderr is
    held by stderr_dropped() (as when an image is read)."""
    monkeypatch.setattr(cifar_cnn.os, '_exit', lambda code: (_ for _ in ()).throw(SystemExit(code)))
    for signum, code, message in ((signal.SIGTERM, 143, 'Terminated.'), (signal.SIGINT, 130, 'Interrupted.')):
        previous = signal.signal(signum, cifar_cnn.stop_now)

        def half_write(tmp, signum=signum):
            with open(tmp, 'wb') as f:
                f.write(b'half a model')
            signal.raise_signal(signum)
        try:
            with pytest.raises(SystemExit) as stopped, cifar_cnn.stderr_dropped(re.compile('')):
                cifar_cnn.write_atomically(str(tmp_path / 'm.keras'), half_write)
        finally:
            signal.signal(signum, previous)
        assert stopped.value.code == code and capfd.readouterr().err.strip() == message
        assert os.listdir(tmp_path) == [] and not cifar_cnn.PENDING


LEGAL_NAMES = ['x' * 249 + '.keras',  # 255 characters, the most a name may have here (the temporary one is short)
               'modèle 🐱.keras', 'a\nb.keras', '-starts-with-a-dash.keras', "it's \"quoted\".keras"]


@pytest.mark.parametrize('name', LEGAL_NAMES)
def test_any_legal_name_is_checked_before_training_and_then_written(trained, tmp_path, name):
    target = str(tmp_path / 'out' / name)
    cifar_cnn.check_writable(str(tmp_path / 'out'), 'the model', [name])  # what --save-model checks first
    cifar_cnn.save_model(trained.model, target)
    assert os.listdir(tmp_path / 'out') == [name] and cifar_cnn.load_model(target)


def test_a_name_too_long_fails_before_training_and_leaves_nothing(tmp_path):
    name = 'x' * 250 + '.keras'
    with pytest.raises(CifarError, match=rf'^cannot write the model to .*{name}: File name too long$'):
        cifar_cnn.check_writable(str(tmp_path / 'new'), 'the model', [name])
    assert os.listdir(tmp_path) == []


def test_files_are_written_through_symbolic_links_to_files_only(trained, tmp_path):
    """A link to a model (or to where one will be), or a figures folder that is a link to where one will be,
    is written through: the link stays, the file it names is the new one, nothing else is left beside either.
    A link to a pipe or a device is refused, before anything is written, and the pipe stays."""
    (tmp_path / 'models').mkdir()
    (tmp_path / 'models' / 'old.keras').write_bytes(b'previous')
    (tmp_path / 'latest.keras').symlink_to(tmp_path / 'models' / 'old.keras')
    (tmp_path / 'next.keras').symlink_to(tmp_path / 'models' / 'next.keras')  # not there yet
    for link in ('latest.keras', 'next.keras'):
        path = str(tmp_path / link)
        cifar_cnn.check_writable(str(tmp_path), 'the model', [link])
        cifar_cnn.save_model(trained.model, path)
        assert os.path.islink(path) and cifar_cnn.load_model(path)
    assert sorted(os.listdir(tmp_path / 'models')) == ['next.keras', 'old.keras']
    assert sorted(os.listdir(tmp_path)) == ['latest.keras', 'models', 'next.keras']
    (tmp_path / 'figures').symlink_to(tmp_path / 'made' / 'here')  # a dangling link: its folder is made
    cifar_cnn.check_writable(str(tmp_path / 'figures'), 'figures', cifar_cnn.FIGURES)
    os.mkfifo(tmp_path / 'pipe')
    (tmp_path / 'made' / 'here' / 'history.png').symlink_to(tmp_path / 'pipe')
    for check in (lambda: cifar_cnn.check_writable(str(tmp_path / 'figures'), 'figures', cifar_cnn.FIGURES),
                  lambda: cifar_cnn.write_atomically(str(tmp_path / 'figures' / 'history.png'), print)):
        with pytest.raises(CifarError, match=r'(pipe|history.png): (it is )?a folder or a special file'):
            check()
    assert os.listdir(tmp_path / 'made' / 'here') == ['history.png'] and stat.S_ISFIFO(os.stat(tmp_path / 'pipe').st_mode)


def test_a_working_folder_deleted_during_a_run_is_one_line(session_cifar_dir, tmp_path, monkeypatch):
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir, figures_dir='figures')  # relative to the working folder
    gone = tmp_path / 'gone'
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(CifarError, match=r'^cannot write figures: the folder this was started in no longer exists$'):
        cnn.explore_data()


def test_a_failed_save_leaves_nothing_in_tmpdir_or_beside_the_model(session_cifar_dir, tmp_path, monkeypatch, capsys):
    """The disk fills while Keras writes the model: one line, exit 1, and neither Keras's temporary folder
    nor TensorFlow's generated code is left in TMPDIR, nor a temporary file beside the model."""
    private = tmp_path / 'tmp'
    private.mkdir()
    monkeypatch.setattr(cifar_cnn.tempfile, 'tempdir', str(private))

    def full_disk(self, *args, **kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(cifar_cnn.zipfile.ZipFile, 'writestr', full_disk)
    out = tmp_path / 'out'
    code = cifar_cnn.main(['--data-dir', session_cifar_dir, '--limit', '5', '--epochs', '1', '--figures-dir',
                           str(out / 'figures'), '--save-model', str(out / 'model.keras')])
    assert code == 1 and capsys.readouterr().err == f'error: cannot write {out / "model.keras"}: No space left on device\n'
    assert os.listdir(private) == [] and os.listdir(out) == ['figures']


@pytest.mark.skipif(bool(cifar_cnn.tf.config.list_physical_devices('GPU')), reason='CPU rules only')
@pytest.mark.parametrize(('native', 'requested', 'policy'), [
    (False, 'auto', 'float32'), (True, 'auto', 'mixed_bfloat16'),
    (False, 'mixed', 'mixed_bfloat16'), (True, 'float32', 'float32')])
def test_choose_precision_on_cpu(monkeypatch, native, requested, policy):
    monkeypatch.setattr(cifar_cnn, 'CPU_FLAGS', {'avx2', 'avx512_bf16'} if native else {'avx2'})
    chosen, why = cifar_cnn.choose_precision(requested)
    assert chosen == policy
    assert why == 'as asked' if requested == 'float32' else ('without' in why) != native


def test_mixed_precision_keeps_the_network_and_float32_probabilities(stopped_in_epoch_3):
    """Mixed precision: the same 122,570 weights, kept in float32, and float32 probabilities that sum to 1
    (bfloat16 ones are off by up to 1%)."""
    cnn, _ = stopped_in_epoch_3
    assert cnn.model.count_params() == 122_570
    assert cnn.model.layers[0].compute_dtype == 'bfloat16' and cnn.model.layers[0].variable_dtype == 'float32'
    assert cnn.predictions.dtype == np.float32
    np.testing.assert_allclose(cnn.predictions.sum(axis=1), 1.0, rtol=1e-5)


THREAD_VARIABLES = ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS', 'TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD')


@pytest.mark.skipif(not hasattr(os, 'sched_setaffinity'), reason='needs Linux CPU affinity')
@pytest.mark.parametrize(('flags', 'user', 'expected'), [
    ('avx2 avx512f avx512_bf16', {}, ['1', '2', 'true']),  # measured on both kinds: bench/README.md
    ('avx2 fma', {}, ['2', '1', 'true']),
    ('avx2 fma', {'TF_NUM_INTRAOP_THREADS': '3'}, ['3', '1', 'true'])])
def test_thread_settings_on_two_cpus_follow_the_cpu_kind_and_yours_win(flags, user, expected):
    """On 2 CPUs the program picks TensorFlow's thread layout for the CPU kind before TensorFlow
    loads. The child process sees a /proc/cpuinfo with `flags`, and stops at `import keras`, right
    after the settings; a variable you set is left alone."""
    code = ('import builtins, io, os, sys\n'
            'os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n'
            'real_open = builtins.open\n'
            f'builtins.open = lambda p, *a, **k: io.StringIO("flags\\t: {flags}\\n") if p == "/proc/cpuinfo" '
            'else real_open(p, *a, **k)\n'
            'sys.modules["keras"] = None\n'
            'try:\n'
            '    import cifar_cnn\n'
            'except ImportError:\n'
            f'    print([os.environ.get(k) for k in {THREAD_VARIABLES!r}])')
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES} | user
    result = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.stdout.strip() == str(expected)


def test_tensorflows_start_up_notes_are_dropped_and_nothing_else(capfd):
    """TensorFlow 2.21 writes its C++ start-up notes to file descriptor 2 before its log settings apply:
    dropped, while any other line written there still shows."""
    notes = ['WARNING: All log messages before absl::InitializeLog() is called are written to STDERR',
             'I0000 00:00:1795990596.310198    2156 port.cc:153] oneDNN custom operations are on. You may see ...',
             'I0000 00:00:1795990596.310677    2156 cudart_stub.cc:31] Could not find cuda drivers on your machine.',
             'E0000 00:00:1795990618.761057    2191 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error']
    with cifar_cnn.stderr_dropped(cifar_cnn.STARTUP_NOTES):
        os.write(2, ''.join(note + '\n' for note in notes).encode() + b'a real error\n')
    driver = os.path.exists('/proc/driver/nvidia')  # with a driver, a failed cuInit is a real error
    assert capfd.readouterr().err == (notes[-1] + '\n' if driver else '') + 'a real error\n'
