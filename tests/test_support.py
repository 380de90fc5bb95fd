"""The plumbing under the post's methods: Ctrl-C during training, writing files (atomically, through links,
under any legal name, never littering), signals, precision, thread settings and a quiet start."""

import contextlib
import io
import multiprocessing
import os
import pathlib
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import warnings
import zipfile

import numpy as np
import pytest
from conftest import ROOT, refused
from PIL import Image

import cifar_cnn
import cifar_cnn_plumbing as plumbing


class CtrlCOn(io.StringIO):
    """Standard output that presses Ctrl-C (SIGINT) the first time `mark` is printed."""
    def __init__(self, mark):
        super().__init__()
        self.mark = mark
    def write(self, text):
        written = super().write(text)
        if self.mark and self.mark in text:
            self.mark = None
            signal.raise_signal(signal.SIGINT)
        return written


@pytest.fixture(scope='module')
def stopped_in_epoch_3(session_cifar_dir):
    """A model trained in mixed precision (what --precision mixed, or auto on a CPU with native bfloat16,
    runs) for up to 50 epochs of 40 steps, Ctrl-C arriving as the third begins: (cnn, what training printed).
    Keras hears of it at the end of a group of 32 steps: 32 steps into the epoch."""
    policy = cifar_cnn.keras.mixed_precision.global_policy()
    cifar_cnn.keras.mixed_precision.set_global_policy('mixed_bfloat16')
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir, epochs=50, batch_size=1)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()
    with contextlib.redirect_stdout(CtrlCOn('Epoch 3/')) as printed:  # a learner's Ctrl-C, seeing epoch 3 begin
        cnn.history = cnn.train_model()
        cnn.make_prediction()
    cifar_cnn.keras.mixed_precision.set_global_policy(policy)
    return cnn, printed.getvalue()


def test_ctrl_c_in_training_keeps_the_finished_epochs_and_their_weights(stopped_in_epoch_3):
    """Ctrl-C in epoch 3: training ends; the cut epoch shows where it was cut, and is dropped from the history and
    from the weights, which are those of the end of epoch 2: what the history's last point measured."""
    cnn, out = stopped_in_epoch_3
    assert cnn.history.epoch == [0, 1] and len(cnn.history.history['accuracy']) == 2
    epoch_3 = out.split('Epoch 3/50')[1]
    assert '32/40 - ' in epoch_3 and 'val_accuracy' not in epoch_3.split('32/40 - ')[1].splitlines()[0]
    assert 'stopped by Ctrl-C 32 steps into an epoch of 40' in epoch_3
    assert len(out.split('Epoch times (s): ')[1].split(';')[0].split(', ')) == 2  # the cut epoch is not timed
    loss, accuracy = cnn.model.evaluate(cnn.validation_ds, verbose=0)
    assert accuracy == cnn.history.history['val_accuracy'][-1]
    assert loss == pytest.approx(cnn.history.history['val_loss'][-1])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_train_model_in_a_thread_of_its_own_trains(session_cifar_dir):
    """Streamlit, Gradio or a notebook's thread: Python runs signal handlers in its main thread only, so Ctrl-C
    is left as it is there, and training goes on as anywhere."""
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir, epochs=1, batch_size=8, show=False)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(cnn.train_model()))
    worker.start()
    worker.join(120)
    assert len(outcome) == 1 and outcome[0].epoch == [0]


@contextlib.contextmanager
def disk_full_past(size):
    """Writes past `size` bytes of any file fail in this process as on a full disk (RLIMIT_FSIZE, with SIGXFSZ
    ignored: EFBIG, 'File too large')."""
    resource = pytest.importorskip('resource')  # not on Windows
    handler, (soft, hard) = signal.signal(signal.SIGXFSZ, signal.SIG_IGN), resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize('what', ['figure', 'model'])
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(trained, tmp_path, monkeypatch, what):
    """Figures and models are written to a temporary file and renamed: a write that fails half-way
    (here: the disk fills) leaves the previous file whole and nothing else."""
    name = {'figure': 'normalized.png', 'model': 'model.keras'}[what]
    (tmp_path / name).write_bytes(b'previous')
    with refused('cannot write', str(tmp_path / name), 'File too large'), disk_full_past(4096):
        if what == 'figure':
            monkeypatch.setattr(trained, 'figures_dir', str(tmp_path))
            trained.preprocess_data()
        else:
            cifar_cnn.save_model(trained.model, str(tmp_path / name))
    assert (tmp_path / name).read_bytes() == b'previous'
    assert os.listdir(tmp_path) == [name]


def test_a_signal_during_a_write_removes_the_temporary_file(tmp_path, monkeypatch, capfd):
    """SIGTERM or Ctrl-C while a file is half-written (e.g. --save-model): stop_now says so and exits at once,
    leaving neither the temporary file nor half a file at the target. Its line shows even while stderr is
    held by stderr_dropped() (as when an image is read)."""
    monkeypatch.setattr(plumbing.os, '_exit', lambda code: (_ for _ in ()).throw(SystemExit(code)))
    for signum, code, message in ((signal.SIGTERM, 143, 'Terminated.'), (signal.SIGINT, 130, 'Interrupted.')):
        previous = signal.signal(signum, plumbing.stop_now)

        def half_write(tmp, signum=signum):
            with open(tmp, 'wb') as f:
                f.write(b'half a model')
            signal.raise_signal(signum)
        try:
            with pytest.raises(SystemExit) as stopped, plumbing.stderr_dropped(re.compile('')):
                plumbing.write_atomically(str(tmp_path / 'm.keras'), half_write)
        finally:
            signal.signal(signum, previous)
        assert stopped.value.code == code and capfd.readouterr().err.strip() == message
        assert os.listdir(tmp_path) == [] and not plumbing.TEMPORARY_PATHS


LEGAL_NAMES = ['x' * 249 + '.keras',  # 255 characters, the most a name may have here (the temporary one is short)
               'modèle 🐱.keras', 'a\nb.keras', '-starts-with-a-dash.keras', "it's \"quoted\".keras"]


@pytest.mark.parametrize('name', LEGAL_NAMES)
def test_any_legal_name_is_checked_before_training_and_then_written(trained, tmp_path, name):
    target = str(tmp_path / 'out' / name)
    plumbing.check_writable(str(tmp_path / 'out'), 'the model', [name])  # what --save-model checks first
    cifar_cnn.save_model(trained.model, target)
    assert os.listdir(tmp_path / 'out') == [name] and cifar_cnn.load_model(target)


def test_a_name_too_long_fails_before_training_and_leaves_nothing(tmp_path):
    name = 'x' * 250 + '.keras'
    with refused('cannot write the model', name, 'File name too long'):
        plumbing.check_writable(str(tmp_path / 'new'), 'the model', [name])
    assert os.listdir(tmp_path) == []


def test_without_pathconf_a_name_may_have_255_bytes(tmp_path, monkeypatch):
    """Windows has no os.pathconf to ask a folder's longest name: 255, as on its file systems and most others."""
    monkeypatch.delattr(os, 'pathconf', raising=False)
    plumbing.check_writable(str(tmp_path), 'the model', ['x' * 249 + '.keras'])
    with refused('cannot write the model', 'x' * 250 + '.keras', 'File name too long'):
        plumbing.check_writable(str(tmp_path), 'the model', ['x' * 250 + '.keras'])
    assert os.listdir(tmp_path) == []


def test_a_figure_held_open_by_a_viewer_on_windows_is_one_line(tmp_path, monkeypatch):
    """Windows refuses to replace a file another program holds open (an image viewer showing the last run's
    figure): os.replace raises PermissionError there. One line naming the file, the previous file kept whole,
    no temporary file left."""
    def held_open(source, target):
        raise PermissionError(13, 'Access is denied', source, 5, target)  # as Windows raises it (WinError 5)
    (tmp_path / 'history.png').write_bytes(b'previous')
    monkeypatch.setattr(os, 'replace', held_open)
    with refused('cannot write', str(tmp_path / 'history.png'), 'Access is denied'):
        plumbing.write_atomically(str(tmp_path / 'history.png'), lambda tmp: open(tmp, 'wb').close())
    assert os.listdir(tmp_path) == ['history.png'] and (tmp_path / 'history.png').read_bytes() == b'previous'


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
        plumbing.check_writable(str(tmp_path), 'the model', [link])
        cifar_cnn.save_model(trained.model, path)
        assert os.path.islink(path) and cifar_cnn.load_model(path)
    assert sorted(os.listdir(tmp_path / 'models')) == ['next.keras', 'old.keras']
    assert sorted(os.listdir(tmp_path)) == ['latest.keras', 'models', 'next.keras']
    (tmp_path / 'figures').symlink_to(tmp_path / 'made' / 'here')  # a dangling link: its folder is made
    plumbing.check_writable(str(tmp_path / 'figures'), 'figures', cifar_cnn.FIGURES)
    os.mkfifo(tmp_path / 'pipe')
    (tmp_path / 'made' / 'here' / 'history.png').symlink_to(tmp_path / 'pipe')
    for check in (lambda: plumbing.check_writable(str(tmp_path / 'figures'), 'figures', cifar_cnn.FIGURES),
                  lambda: plumbing.write_atomically(str(tmp_path / 'figures' / 'history.png'), print)):
        with refused('history.png', 'not a place for a file'):
            check()
    assert os.listdir(tmp_path / 'made' / 'here') == ['history.png']
    assert stat.S_ISFIFO(os.stat(tmp_path / 'pipe').st_mode)


@pytest.mark.parametrize('target', ['model.bin', 'model.h5'])
def test_a_model_saved_through_a_link_to_another_name_is_kerases_format(trained, tmp_path, target):
    """A link model.keras naming a file of another ending: Keras picks its format by the name it writes, and
    would refuse .bin after training, or write HDF5 for .h5. The file the link names is Keras's zip all the same."""
    (tmp_path / 'link.keras').symlink_to(tmp_path / target)
    cifar_cnn.save_model(trained.model, str(tmp_path / 'link.keras'))
    assert zipfile.is_zipfile(tmp_path / target) and cifar_cnn.load_model(str(tmp_path / 'link.keras'))
    assert sorted(os.listdir(tmp_path)) == ['link.keras', target]


@pytest.mark.parametrize('path', ['x.KERAS', 'model', 'a\0.keras', 5, None, str(pathlib.Path('runs', '.keras'))])
def test_a_model_name_not_ending_in_keras_is_one_line_in_python_too(trained, tmp_path, monkeypatch, path):
    """The rule --save-model follows before training, save_model() and load_model() follow in Python."""
    monkeypatch.chdir(tmp_path)
    with refused(f'save_model(model, {path!r})', '.keras'):
        cifar_cnn.save_model(trained.model, path)
    with refused(f'load_model({path!r})', '.keras'):
        cifar_cnn.load_model(path)
    assert os.listdir(tmp_path) == []


def test_a_working_folder_deleted_during_a_run_is_one_line(session_cifar_dir, tmp_path, monkeypatch):
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir, figures_dir='figures')  # relative to the working folder
    gone = tmp_path / 'gone'
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with refused('cannot write figures', 'no longer exists'):
        cnn.explore_data()


def test_a_failed_save_leaves_nothing_in_tmpdir_or_beside_the_model(session_cifar_dir, tmp_path, monkeypatch, capsys):
    """The disk fills while Keras writes the model (1.5 MB; each figure is less than 1 MB): one line, exit 1,
    and neither Keras's temporary folder nor TensorFlow's generated code is left in TMPDIR, nor a temporary
    file beside the model."""
    private = tmp_path / 'tmp'
    private.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(private))
    out = tmp_path / 'out'
    with disk_full_past(2**20):
        code = cifar_cnn.main(['--data-dir', session_cifar_dir, '--limit', '5', '--epochs', '1', '--figures-dir',
                               str(out / 'figures'), '--save-model', str(out / 'model.keras')])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith('error: cannot write') and str(out / 'model.keras') in err
    assert len(err.splitlines()) == 1 and 'File too large' in err
    assert os.listdir(private) == [] and os.listdir(out) == ['figures']


@pytest.mark.parametrize(('hardware', 'requested', 'policy'), [
    ('cpu', 'auto', 'float32'), ('bfloat16 cpu', 'auto', 'mixed_bfloat16'), ('cpu', 'mixed', None),
    ('bfloat16 cpu', 'float32', 'float32'), ('gpu 7.5', 'auto', 'mixed_float16'), ('gpu 6.1', 'auto', 'float32'),
    ('gpu 6.1', 'mixed', 'mixed_float16'), ('gpu 8.0', 'float32', 'float32')])
def test_precision_follows_the_hardware(monkeypatch, hardware, requested, policy):
    """--precision auto picks mixed precision only where the hardware computes it natively: a CPU with bfloat16,
    a GPU of compute capability 7.0 or more (here a device list faked through TensorFlow's own API, as Colab's)."""
    gpu = cifar_cnn.tf.config.PhysicalDevice('/physical_device:GPU:0', 'GPU')
    capability = tuple(int(part) for part in hardware.split()[-1].split('.')) if 'gpu' in hardware else None
    monkeypatch.setattr(cifar_cnn.tf.config, 'list_physical_devices', lambda kind=None: [gpu] if capability else [])
    monkeypatch.setattr(cifar_cnn.tf.config.experimental, 'get_device_details',
                        lambda device: {'compute_capability': capability})
    monkeypatch.setattr(plumbing, 'NATIVE_BFLOAT16', hardware == 'bfloat16 cpu')
    if policy is None:  # bfloat16 where oneDNN has no kernels for it (ONEDNN_MAX_CPU_ISA=AVX2 makes one anywhere)
        with refused('--precision mixed', 'auto'):
            plumbing.choose_precision(requested)
        return
    chosen, why = plumbing.choose_precision(requested)
    assert chosen == policy and ('as asked' in why) == (requested != 'auto')
    if requested != 'float32':  # why: the hardware it found
        assert (hardware.split()[-1] in why) if 'gpu' in hardware else (('without' in why) == (hardware == 'cpu'))


def test_mixed_precision_keeps_the_network_and_float32_probabilities(stopped_in_epoch_3):
    """Mixed precision: the same 122,570 weights, kept in float32, and float32 probabilities that sum to 1
    (bfloat16 ones are off by up to 1%)."""
    cnn, _ = stopped_in_epoch_3
    assert cnn.model.count_params() == 122_570
    assert cnn.model.layers[0].compute_dtype == 'bfloat16' and cnn.model.layers[0].variable_dtype == 'float32'
    assert cnn.predictions.dtype == np.float32
    np.testing.assert_allclose(cnn.predictions.sum(axis=1), 1.0, rtol=1e-5)


THREAD_VARIABLES = ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS', 'TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD')


@pytest.mark.parametrize(('flags', 'environ', 'native'), [
    ({'avx2', 'avx512f', 'avx512_bf16'}, {}, True), ({'avx2', 'amx_bf16'}, {}, True), ({'avx2', 'fma'}, {}, False),
    (set(), {}, False),  # no /proc/cpuinfo (macOS, Windows): no flags known
    ({'avx512_bf16'}, {'ONEDNN_MAX_CPU_ISA': 'AVX2'}, False),
    ({'avx512_bf16'}, {'DNNL_MAX_CPU_ISA': 'avx512_core'}, False),
    ({'avx512_bf16'}, {'ONEDNN_MAX_CPU_ISA': 'AVX512_CORE_BF16'}, True),
    ({'avx512_bf16'}, {'ONEDNN_MAX_CPU_ISA': 'ALL'}, True)])
def test_the_cpu_kind_follows_its_flags_and_onednns_cap(flags, environ, native):
    """bfloat16 is native where the CPU has it and oneDNN is not capped below it (ONEDNN_MAX_CPU_ISA=AVX2 runs
    the AVX2 kernels on any machine: the kind most laptops are)."""
    assert plumbing.native_bfloat16(flags, environ) is native


@pytest.mark.parametrize(('bfloat16', 'cpus', 'gpu', 'layout'), [
    (True, 2, False, ['1', '2', 'true']), (False, 2, False, ['2', '1', 'true']),  # measured: bench/README.md
    (False, 1, False, ['2', '1', 'true']), (True, 4, False, None), (False, 2, True, None)])  # TensorFlow's own
def test_the_thread_layout_is_set_on_two_cpus_without_a_gpu(bfloat16, cpus, gpu, layout):
    settings = plumbing.thread_layout(bfloat16, cpus, gpu)
    assert [settings[name] for name in THREAD_VARIABLES] == layout if layout else settings == {}


def test_without_proc_cpuinfo_no_flags_are_known(monkeypatch):
    def no_such_file(path, *args, **kwargs):
        raise FileNotFoundError(2, 'No such file or directory', path)
    monkeypatch.setattr('builtins.open', no_such_file)
    assert plumbing.cpu_flags() == set()


@pytest.mark.parametrize(('affinity', 'cpu_count', 'usable'), [
    ({0}, 8, 1),  # Linux: the CPUs this process may run on
    (None, 8, 8), (None, None, 1)])  # macOS, Windows: no affinity to ask, so every CPU (os.cpu_count() may not know)
def test_the_cpus_counted_are_those_this_process_may_use(monkeypatch, affinity, cpu_count, usable):
    if affinity is None:
        monkeypatch.delattr(os, 'sched_getaffinity', raising=False)
    else:
        monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: affinity, raising=False)
    monkeypatch.setattr(os, 'cpu_count', lambda: cpu_count)
    assert plumbing.usable_cpus() == usable


@pytest.mark.skipif(not hasattr(os, 'sched_setaffinity'), reason='needs Linux CPU affinity')
@pytest.mark.parametrize('user', [{}, {'TF_NUM_INTRAOP_THREADS': '3'}])
def test_the_thread_settings_are_made_before_tensorflow_loads_and_yours_win(user):
    """A process on one CPU stops at `import keras`, right after the settings: they are there, and a
    variable you set is left as you set it."""
    code = ('import os, sys\n'
            'os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n'
            'sys.modules["keras"] = None\n'
            'try:\n'
            '    import cifar_cnn\n'
            'except ImportError:\n'
            f'    print([os.environ.get(k) for k in {THREAD_VARIABLES!r}])')
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES} | user
    result = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    expected = plumbing.thread_layout(plumbing.NATIVE_BFLOAT16, 1, plumbing.NVIDIA_DRIVER) | user
    assert result.stdout.strip() == str([expected.get(name) for name in THREAD_VARIABLES])


def test_tensorflows_start_up_notes_are_dropped_and_nothing_else(capfd):
    """TensorFlow 2.21 writes its C++ start-up notes to file descriptor 2 before its log settings apply:
    dropped, while any other line written there still shows."""
    notes = ['WARNING: All log messages before absl::InitializeLog() is called are written to STDERR',
             'I0000 00:00:1795990596.310198    2156 port.cc:153] oneDNN custom operations are on. You may see ...',
             'I0000 00:00:1795990596.310677    2156 cudart_stub.cc:31] Could not find cuda drivers on your machine.',
             'E0000 00:00:1795990618.761057    2191 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error']
    with plumbing.stderr_dropped(plumbing.STARTUP_NOTES):
        os.write(2, ''.join(note + '\n' for note in notes).encode() + b'a real error\n')
    driver = os.path.exists('/proc/driver/nvidia')  # with a driver, a failed cuInit is a real error
    assert capfd.readouterr().err == (notes[-1] + '\n' if driver else '') + 'a real error\n'


def test_stderr_dropped_passes_through_when_there_is_no_stderr(monkeypatch):
    """Started with 2>&- Python has no sys.stderr: nothing to drop, and nothing fails."""
    monkeypatch.setattr(sys, 'stderr', None)
    with plumbing.stderr_dropped(plumbing.STARTUP_NOTES):
        pass


# ─── Other runs, the environment, limits ─────────────────────────────────────────────────────────

def write_many(path, mark, times):
    """Writes `path` whole, `times` times over, each time 200 kB of `mark`: what a run writing a figure does."""
    for _ in range(times):
        plumbing.write_atomically(path, lambda tmp: pathlib.Path(tmp).write_bytes(mark * 200_000))


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs fork')
def test_two_runs_writing_into_one_folder_each_write_whole_files(tmp_path):
    """Two processes (two containers sharing a folder have the same PIDs) write the same name over and over:
    every file there is whole and one run's, and nothing else is left."""
    target = str(tmp_path / 'history.png')
    context = multiprocessing.get_context('fork')
    writers = [context.Process(target=write_many, args=(target, mark, 60)) for mark in (b'a', b'b')]
    for writer in writers:
        writer.start()
    seen = set()
    while any(writer.is_alive() for writer in writers):
        with contextlib.suppress(FileNotFoundError), open(target, 'rb') as f:
            data = f.read()
            seen.add((len(data), data[:1] * len(data) == data))
    assert [writer.join() or writer.exitcode for writer in writers] == [0, 0]
    assert seen <= {(200_000, True)} and os.listdir(tmp_path) == ['history.png']


def test_clean_up_never_raises(tmp_path, monkeypatch):
    """A folder where files can be made but not removed (chattr +a, some network shares): clean_up goes on."""
    (tmp_path / 'left').write_text('')
    plumbing.TEMPORARY_PATHS.add(str(tmp_path / 'left'))
    monkeypatch.setattr(os, 'remove', lambda path: (_ for _ in ()).throw(PermissionError(1, 'Operation not permitted')))
    plumbing.clean_up()
    assert not plumbing.TEMPORARY_PATHS


def test_standard_output_that_cannot_encode_a_name_shows_it_escaped():
    """PYTHONIOENCODING=ascii and a folder named 'dossier é': the line is written, its é escaped."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding='ascii')
    plumbing.CheckedStdout(stream).write('Wrote dossier é/history.png\n')
    assert raw.getvalue() == b'Wrote dossier \\xe9/history.png\n'


def test_two_threads_drawing_do_not_draw_into_each_others_figures(session_cifar_dir, monkeypatch):
    cnns = [cifar_cnn.CifarCNN(data_dir=session_cifar_dir, show=True) for _ in range(2)]
    drawn = []
    monkeypatch.setattr(cifar_cnn.plt, 'show', lambda: drawn.append(len(cifar_cnn.plt.gcf().axes)))
    threads = [threading.Thread(target=lambda cnn=cnn: [cnn.explore_data() for _ in range(5)]) for cnn in cnns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert drawn == [25] * 10  # each figure the 25 panels of one explore_data, never 50


def test_a_huge_dpi_in_matplotlibrc_is_capped(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(cifar_cnn.plt.rcParams, 'savefig.dpi', 100_000)
    monkeypatch.setattr(trained, 'figures_dir', str(tmp_path))
    trained.plot_filters()
    assert Image.open(tmp_path / 'filters.png').size[0] <= 8 * plumbing.MAX_DPI


KERAS_JSON = [  # (what keras.json holds, what the line must name; None: Keras loads it, and so does this program)
    ('{"image_data_format": "channels_first", "floatx": "float16"}', None), ('not JSON at all', None),
    ('{"floatx": "bfloat16"}', ['"floatx"', 'float32']), ('{"floatx": [1]}', ['"floatx"', '[1]']),
    ('{"epsilon": 1}', ['"epsilon"', 'decimal']), ('{"image_data_format": "NCHW"}', ['channels_last']),
    ('{"backend": "jax"}', ['"backend"', 'TensorFlow']), ('[1, 2]', ['no settings']),
    ('[' * 50_000, ['nested too deeply']), ('x' * 70_000, ['65,536'])]


@pytest.mark.parametrize(('content', 'names'), KERAS_JSON)
def test_kerases_config_file_is_checked_before_keras_reads_it(tmp_path, content, names):
    (tmp_path / 'keras.json').write_text(content)
    problem = plumbing.startup_problem({'KERAS_HOME': str(tmp_path)}, [])
    assert problem is None if names is None else all(name in problem for name in [str(tmp_path), *names]), problem


@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='needs named pipes')
@pytest.mark.parametrize('kind', ['a named pipe', 'a link to /dev/zero'])
def test_a_config_file_that_is_no_file_is_refused_without_waiting(tmp_path, kind):
    os.mkfifo(tmp_path / 'keras.json') if kind == 'a named pipe' else os.symlink('/dev/zero', tmp_path / 'keras.json')
    assert 'not a regular file' in plumbing.startup_problem({'KERAS_HOME': str(tmp_path)}, [])


@pytest.mark.parametrize(('environ', 'names'), [
    ({'KERAS_BACKEND': ''}, None),  # empty: unset, as Keras takes it
    ({'KERAS_BACKEND': 'jax'}, ['KERAS_BACKEND=jax', 'unset']),
    ({'KERAS_MAX_EPOCHS': 'ten'}, ['KERAS_MAX_EPOCHS=ten', 'whole number']),
    ({'KERAS_MAX_EPOCHS': '-1'}, ['KERAS_MAX_EPOCHS=-1', '1 or more', 'unset']),  # it would train no epoch
    ({'KERAS_MAX_STEPS_PER_EPOCH': '0'}, ['KERAS_MAX_STEPS_PER_EPOCH=0', '1 or more', 'unset']),
    ({'KERAS_MAX_STEPS_PER_EPOCH': '3'}, None)])
def test_environment_variables_keras_reads_are_checked_first(tmp_path, environ, names):
    problem = plumbing.startup_problem({'KERAS_HOME': str(tmp_path), **environ}, [])
    assert problem is None if names is None else all(name in problem for name in names), problem


def test_a_package_missing_from_this_python_says_which_python_to_use(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'h5py', None)  # as if not installed
    problem = plumbing.startup_problem({'KERAS_HOME': str(tmp_path)}, [])
    assert 'h5py' in problem and sys.executable in problem and 'pip install -r requirements.txt' in problem


def test_a_file_of_yours_named_as_a_package_is_named(tmp_path):
    """keras.py beside the script (or in the working folder) hides Keras: one line before anything loads."""
    (tmp_path / 'keras.py').write_text('')
    result = subprocess.run([sys.executable, '-c', 'import cifar_cnn'], capture_output=True, text=True, check=False,
                            cwd=tmp_path, env=os.environ | {'PYTHONPATH': ROOT})
    assert result.returncode == 1
    assert f'{tmp_path / "keras.py"}: a file of yours hides the package keras' in result.stderr


@pytest.mark.parametrize(('limit', 'args', 'names'), [
    (2 * plumbing.GiB, [], ['2.0 GiB', 'ulimit -v', '3 GiB']),  # TensorFlow cannot train
    (3.5 * plumbing.GiB, [], ['3.5 GiB', '4', '--limit']),  # a full run cannot
    (3.5 * plumbing.GiB, ['--limit', '100'], None)])
def test_an_address_space_too_small_is_one_line_before_tensorflow_fails(monkeypatch, limit, args, names, capsys):
    monkeypatch.setattr(plumbing, 'resource_limit', lambda name: limit)
    problem = plumbing.startup_problem({'KERAS_HOME': '/nonexistent'}, [])
    code = cifar_cnn.main(['--data-dir', '/nonexistent', *args])
    err = capsys.readouterr().err
    if limit < plumbing.MIN_ADDRESS_SPACE:
        assert all(name in problem for name in names), problem
    else:
        assert problem is None and code == 1
        assert all(name in err for name in names) if names else 'no such folder' in err


@pytest.mark.parametrize(('where', 'names'), [('/nonexistent/tmp', ['no usable temporary folder', 'TMPDIR']),
                                              ('a nearly full disk', ['MB free', 'TMPDIR'])])
def test_no_room_for_temporary_files_is_one_line(monkeypatch, capsys, where, names):
    if where.startswith('/'):
        monkeypatch.setattr(tempfile, 'tempdir', where)
    else:
        monkeypatch.setattr(shutil, 'disk_usage', lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 10**6, 10**6))
    assert cifar_cnn.main(['--data-dir', '/nonexistent']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1 and all(name in err for name in names)


def test_a_backend_module_that_is_not_there_is_one_line(monkeypatch, capsys):
    """MPLBACKEND=module://missing with --show: matplotlib would fail at the first figure."""
    monkeypatch.setitem(cifar_cnn.plt.rcParams, 'backend', 'module://missing_backend')
    monkeypatch.setenv('MPLBACKEND', 'module://missing_backend')
    assert cifar_cnn.main(['--show', '--data-dir', '/nonexistent']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: MPLBACKEND=module://missing_backend') and err.count('\n') == 1


def test_a_backend_module_that_is_not_there_needs_no_show_and_leaves_nothing(saved_model, tmp_path, monkeypatch,
                                                                            capsys):
    """MPLBACKEND=module://missing without --show: the figures are drawn to files (Agg), and at the end the
    backend that never loaded is not gone back to: no traceback, and the run's temporary folder removed."""
    monkeypatch.setitem(cifar_cnn.plt.rcParams, 'backend', 'module://missing_backend')
    monkeypatch.setenv('MPLBACKEND', 'module://missing_backend')
    (private := tmp_path / 'tmp').mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(private))
    Image.new('RGB', (32, 32), 'red').save(tmp_path / 'ok.png')
    assert cifar_cnn.main(['--load-model', saved_model, '--predict', str(tmp_path / 'ok.png')]) == 0
    out, err = capsys.readouterr()
    assert f'{tmp_path / "ok.png"}: ' in out and err == '' and os.listdir(private) == []


def test_warnings_made_errors_by_w_error_cost_no_finished_work(monkeypatch, capsys, tmp_path):
    """python -W error: a warning inside the run (Keras's, as it saves a model) is held back until the run is
    done, then one line; what the run wrote is there."""
    def run(args):
        warnings.warn('__array__ implementation does not accept a copy keyword', DeprecationWarning)
        warnings.warn('__array__ implementation does not accept a copy keyword', DeprecationWarning)
        (tmp_path / 'model.keras').write_text('saved')
        return 0
    monkeypatch.setattr(cifar_cnn, 'run', run)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert cifar_cnn.main(['--data-dir', 'x']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'DeprecationWarning' in err and '2 times' in err
    assert (tmp_path / 'model.keras').read_text() == 'saved'
