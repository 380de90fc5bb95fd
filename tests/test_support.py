"""The plumbing under the post's methods: Ctrl-C during training, atomic writes, signals,
precision and thread settings."""

import ctypes.util
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

import cifar_cnn
from cifar_cnn import CifarError


def test_ctrl_c_in_training_keeps_the_finished_epochs(cifar_dir, tmp_path, capsys):
    """Ctrl-C arriving in epoch 3: epochs 1-2 are kept, training ends, the model stays usable."""
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path), epochs=50, batch_size=8)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()

    class CtrlCInEpoch3(cifar_cnn.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                signal.raise_signal(signal.SIGINT)
    cnn.callbacks = lambda: [CtrlCInEpoch3(), *cifar_cnn.CifarCNN.callbacks(cnn)]
    history = cnn.train_model()
    assert len(history.history['accuracy']) == 2 and history.epoch == [0, 1]
    out = capsys.readouterr().out
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


def test_a_signal_during_a_write_removes_the_temporary_file(tmp_path):
    """SIGTERM or Ctrl-C while a file is half-written (e.g. --save-model): the program exits at once,
    says so, and leaves neither the temporary file nor half a file at the target. Both side by side."""
    runs = {}
    for signum, code, message in ((signal.SIGTERM, 143, 'Terminated.'), (signal.SIGINT, 130, 'Interrupted.')):
        folder = tmp_path / signum.name
        folder.mkdir()
        script = ('import os, signal, time, cifar_cnn\n'
                  'for s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, cifar_cnn.stop_now)\n'
                  'def write(tmp):\n'
                  '    open(tmp, "wb").write(b"half a model")\n'
                  f'    os.kill(os.getpid(), {int(signum)})\n'
                  '    time.sleep(30)\n'
                  f'cifar_cnn.write_atomically({str(folder / "m.keras")!r}, write)\n')
        runs[signum] = (subprocess.Popen([sys.executable, '-c', script], stderr=subprocess.PIPE, text=True, cwd=ROOT),
                        code, message, folder)
    for proc, code, message, folder in runs.values():
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code and err.strip().endswith(message)
        assert os.listdir(folder) == []


@pytest.mark.skipif(bool(cifar_cnn.tf.config.list_physical_devices('GPU')), reason='CPU rules only')
@pytest.mark.parametrize(('native', 'requested', 'policy'), [
    (False, 'auto', 'float32'), (True, 'auto', 'mixed_bfloat16'),
    (False, 'mixed', 'mixed_bfloat16'), (True, 'float32', 'float32')])
def test_choose_precision_on_cpu(monkeypatch, native, requested, policy):
    monkeypatch.setattr(cifar_cnn, 'cpu_flags', lambda: {'avx2', 'avx512_bf16'} if native else {'avx2'})
    chosen, why = cifar_cnn.choose_precision(requested)
    assert chosen == policy
    assert why == 'as asked' if requested == 'float32' else ('without' in why) != native


def test_mixed_precision_keeps_the_network_and_float32_probabilities(cifar_dir, tmp_path):
    """What `--precision mixed` (or auto on a CPU with native bf16) runs: same 122,570 weights,
    float32 probabilities that sum to 1 (bfloat16 ones are off by up to 1%)."""
    cifar_cnn.keras.mixed_precision.set_global_policy('mixed_bfloat16')  # the autouse fixture undoes it
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path), epochs=1, batch_size=8)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()
    assert cnn.model.count_params() == 122_570
    assert cnn.model.layers[0].compute_dtype == 'bfloat16' and cnn.model.layers[0].variable_dtype == 'float32'
    cnn.history = cnn.train_model()
    predictions = cnn.make_prediction()
    assert predictions.dtype == np.float32
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)


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


def test_tensorflows_start_up_notes_are_dropped_and_nothing_else():
    """TensorFlow 2.21 writes its C++ start-up notes to file descriptor 2 before its log settings
    apply. Importing cifar_cnn prints none of them; any other line written there still shows."""
    notes = ['WARNING: All log messages before absl::InitializeLog() is called are written to STDERR',
             'I0000 00:00:1795990596.310198    2156 port.cc:153] oneDNN custom operations are on. You may see ...',
             'I0000 00:00:1795990596.310677    2156 cudart_stub.cc:31] Could not find cuda drivers on your machine.',
             'E0000 00:00:1795990618.761057    2191 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error']
    code = ('import os, cifar_cnn\n'
            'with cifar_cnn.stderr_dropped():\n'
            f'    os.write(2, {"".join(n + chr(10) for n in notes).encode()!r} + b"a real error\\n")\n')
    result = subprocess.run([sys.executable, '-c', code], check=False, capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    expected = '' if ctypes.util.find_library('cuda') is None else notes[-1] + '\n'  # with a driver, a real error
    assert result.returncode == 0 and result.stderr == expected + 'a real error\n'
