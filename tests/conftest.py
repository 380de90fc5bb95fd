"""Tiny synthetic CIFAR-10 data in the real `cifar-10-batches-py` format, and shared fixtures."""

import atexit
import contextlib
import io
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

import matplotlib
import numpy as np
import pytest
from PIL import Image

# No test touches the network, in this process or those it starts: every download goes through a proxy that
# refuses all connections, into a Keras cache of the session's own (Keras reads KERAS_HOME once, as it loads).
for variable in ('no_proxy', 'NO_PROXY'):
    os.environ.pop(variable, None)
os.environ.update(https_proxy='http://127.0.0.1:9', HTTPS_PROXY='http://127.0.0.1:9',
                  KERAS_HOME=tempfile.mkdtemp(prefix='keras-home-'))
atexit.register(shutil.rmtree, os.environ['KERAS_HOME'], True)
KERAS_DATASETS = os.path.join(os.environ['KERAS_HOME'], 'datasets')
matplotlib.use('Agg')  # tests never open windows

import cifar_cnn
from cifar_cnn_plumbing import CifarError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PER_BATCH = 8  # 5 batches -> 40 training images
TEST_IMAGES = 24
FIGURES = set(cifar_cnn.FIGURES)  # what a run writes


def batch_bytes(images, labels, protocol=4):
    """A batch file's bytes: images (N, 32, 32, 3) uint8 stored the way the official archive does."""
    batch = {b'batch_label': b'synthetic',
             b'labels': labels if isinstance(labels, np.ndarray) else [int(v) for v in labels],
             b'data': images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
             b'filenames': [f'img_{i}.png'.encode() for i in range(len(images))]}
    return pickle.dumps(batch, protocol=protocol)


def write_batch(path, images, labels):
    with open(path, 'wb') as f:
        f.write(batch_bytes(images, labels))


def make_cifar_folder(parent, seed=0):
    """parent/cifar-10-batches-py with 40 training and 24 test random images.
    Returns the folder and the arrays written: (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(parent, 'cifar-10-batches-py')
    os.makedirs(folder, exist_ok=True)
    x_train = rng.integers(0, 256, (5 * TRAIN_PER_BATCH, 32, 32, 3), dtype=np.uint8)
    y_train = rng.integers(0, 10, 5 * TRAIN_PER_BATCH).astype(np.uint8)
    x_test = rng.integers(0, 256, (TEST_IMAGES, 32, 32, 3), dtype=np.uint8)
    y_test = rng.integers(0, 10, TEST_IMAGES).astype(np.uint8)
    for i in range(5):
        s = slice(i * TRAIN_PER_BATCH, (i + 1) * TRAIN_PER_BATCH)
        write_batch(os.path.join(folder, f'data_batch_{i + 1}'), x_train[s], y_train[s])
    write_batch(os.path.join(folder, 'test_batch'), x_test, y_test)
    return folder, (x_train, y_train, x_test, y_test)


def make_tarball(parent, seed=0):
    """parent/cifar-10-python.tar.gz holding cifar-10-batches-py, like the official download."""
    folder, arrays = make_cifar_folder(os.path.join(parent, 'src'), seed)
    path = os.path.join(parent, 'cifar-10-python.tar.gz')
    with tarfile.open(path, 'w:gz') as t:
        t.add(folder, arcname='cifar-10-batches-py')
    return path, arrays


@contextlib.contextmanager
def refused(*names, kind=CifarError):
    """Expects one line (a CifarError) that names each of `names`: the argument, step or file, and what to do.
    By what it must name, not its whole sentence, so that rewording a message breaks no test."""
    with pytest.raises(kind) as caught:
        yield caught
    message = str(caught.value)
    assert '\n' not in message and not [name for name in names if name not in message], \
        f'{message!r} should name {names}'


@pytest.fixture(autouse=True)
def restore_dtype_policy():
    """main() sets Keras's global dtype policy (mixed_bfloat16 on a CPU with native bf16): undo it. And no
    figure a test leaves open is drawn on by the next."""
    policy = cifar_cnn.keras.mixed_precision.global_policy()
    yield
    cifar_cnn.keras.mixed_precision.set_global_policy(policy)
    cifar_cnn.plt.close('all')


@pytest.fixture
def cifar_dir(tmp_path):
    """A folder holding cifar-10-batches-py (what --data-dir usually points at)."""
    make_cifar_folder(str(tmp_path))
    return str(tmp_path)


@pytest.fixture(scope='session')
def session_cifar_dir(tmp_path_factory):
    parent = str(tmp_path_factory.mktemp('cifar'))
    make_cifar_folder(parent)
    return parent


@pytest.fixture(scope='session')
def trained(session_cifar_dir, tmp_path_factory):
    """A CifarCNN that ran the post's steps up to make_prediction (2 epochs) on the tiny data set."""
    cifar_cnn.keras.utils.set_random_seed(0)
    figures = str(tmp_path_factory.mktemp('figures'))
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir, figures_dir=figures, epochs=2, batch_size=8)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        cnn.history = cnn.train_model()
    cnn.training_output = printed.getvalue()  # for tests/test_steps.py
    cnn.make_prediction()
    return cnn


@pytest.fixture(scope='session')
def saved_model(trained, tmp_path_factory):
    """The trained model, saved by save_model (what --save-model writes)."""
    path = str(tmp_path_factory.mktemp('model') / 'model.keras')
    cifar_cnn.save_model(trained.model, path)
    return path


# ─── The order of the files, and the processes that start with the session ───────────────────────

ORDER = ['test_steps', 'test_beyond', 'test_data', 'test_support', 'test_fuzz', 'test_follow_along', 'test_cli',
         'test_figures', 'test_real_data']  # as cifar_cnn.py reads: the post's steps, beyond them, plumbing, CLI


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: ORDER.index(item.module.__name__) if item.module.__name__ in ORDER else len(ORDER))


PROGRAM = [sys.executable, os.path.join(ROOT, 'cifar_cnn.py')]
TINY = ['--limit', '5', '--epochs', '2', '--batch-size', '8', '--seed', '7']  # 1 step an epoch, every figure
# Runs stopped by signals: ([(after this in the output (None: as TensorFlow loads), this signal), ...], the exit
# status, the last line). Ctrl-C in training stops training; the run goes on with what was learnt.
SIGNALS = {
    'TensorFlow loading': ([(None, signal.SIGINT)], 130, 'Interrupted.'),
    'data loading': ([('Precision:', signal.SIGTERM)], 143, 'Terminated.'),
    'training, then prediction': ([('Epoch 3/', signal.SIGINT), ('predictions.png', signal.SIGINT)], 130,
                                  'Interrupted.'),
    'training, Ctrl-C twice': ([('Epoch 3/', signal.SIGINT), ('Epoch 3/', signal.SIGINT)], 130, 'Interrupted.'),
    'training, the terminal closed': ([('Epoch 3/', signal.SIGHUP)], 129, 'Hung up (the terminal closed).'),
    **({'training, past the CPU time limit': ([('Epoch 3/', signal.SIGXCPU)], 152, 'CPU time limit (ulimit -t) is up')}
       if hasattr(signal, 'SIGXCPU') else {}),
    'saving': ([('Epoch times', signal.SIGTERM)], 143, 'Terminated.')}


class Run:
    """A process of cifar_cnn.py with its own TMPDIR, its output read as it comes; with head='...', its
    standard output only up to the line holding that, after which the pipe is closed, as `| head` does. It runs
    niced: the tests of this process go first, and it takes what CPU they leave."""

    def __init__(self, args, folder, stdout=subprocess.PIPE, env=(), shell=None, head=None, limits=''):
        self.folder, self.tmp, self.output, self.result, self.started = folder, folder / 'tmp', [], None, time.time()
        self.head = head
        self.tmp.mkdir(parents=True)
        command = ['sh', '-c', f'{limits} exec "$@" {shell or ""}', 'sh', *PROGRAM, *args] if shell or limits else \
            [*PROGRAM, *args]
        self.proc = subprocess.Popen(['nice', '-n', '10', *command], stdout=stdout, stderr=subprocess.PIPE, text=True,
                                     cwd=ROOT, env=os.environ | {'TMPDIR': str(self.tmp), 'PYTHONUNBUFFERED': '1',
                                                                 **dict(env)})
        self.errors = []  # stderr's lines alone, in their order (in output, they interleave with stdout's)
        streams = [self.proc.stderr] if head else [s for s in (self.proc.stdout, self.proc.stderr) if s is not None]
        self.readers = [threading.Thread(target=self.read, args=(stream,), daemon=True) for stream in streams]
        if head:
            self.readers.append(threading.Thread(target=self.read_first_line_only, daemon=True))
        for reader in self.readers:
            reader.start()

    def read(self, stream):
        for line in stream:
            self.output.append(line)
            if stream is self.proc.stderr:
                self.errors.append(line)

    def loading_tensorflow(self):
        """Whether the process is in TensorFlow's 3 s import: its library is mapped (Linux), or 1.5 s passed."""
        try:
            with open(f'/proc/{self.proc.pid}/maps') as maps:
                return 'tensorflow' in maps.read()
        except OSError:
            return time.time() > self.started + 1.5

    def read_first_line_only(self):
        self.first_line = self.last_line = self.proc.stdout.readline()
        while self.last_line and self.head not in self.last_line:
            self.last_line = self.proc.stdout.readline()
        self.proc.stdout.close()

    def wait(self):
        """(exit status, stdout and stderr as they came)."""
        if self.result is None:
            code = self.proc.wait(timeout=300)
            for reader in self.readers:
                reader.join(timeout=10)
            self.result = code, ''.join(self.output)
        return self.result


def send_signals(runs):
    """Sends each run its signals, each as its mark appears in the run's output (SIGNALS)."""
    pending, start = {phase: list(SIGNALS[phase][0]) for phase in runs}, time.time()
    while pending and time.time() < start + 300:
        for phase, steps in list(pending.items()):
            run, (mark, signum) = runs[phase], steps[0]
            if mark in ''.join(run.output) if mark else run.loading_tensorflow():
                run.proc.send_signal(signum)
                steps.pop(0)
                time.sleep(0.3)
            if not steps or run.proc.poll() is not None:  # done, or it ended before its mark: its test says how
                del pending[phase]
        time.sleep(0.05)


def keras_home_of_its_own(base):
    """A KERAS_HOME whose keras.json asks for what many long-time Keras users have: channels first, float16."""
    (home := base / 'keras-home').mkdir()
    (home / 'keras.json').write_text('{"image_data_format": "channels_first", "floatx": "float16", "epsilon": 1e-04}')
    return home


# What Linux and macOS have, Windows not, and cifar_cnn does without there. Not os.O_NONBLOCK, which Python's own
# shutil.rmtree uses on Linux (on Windows it takes another way): read_file without it is tested in test_data.py.
WINDOWS_LACKS = [('signal', 'SIGHUP'), ('signal', 'SIGPIPE'), ('os', 'sched_getaffinity'), ('os', 'pathconf')]


def without_what_windows_lacks(folder):
    """A folder whose sitecustomize.py, which Python runs as it starts (with the folder on PYTHONPATH), removes
    WINDOWS_LACKS from Python, before anything imports them."""
    folder.mkdir(parents=True)
    (folder / 'sitecustomize.py').write_text(
        'import os, signal\n' + ''.join(f'del {module}.{name}\n' for module, name in WINDOWS_LACKS))
    return str(folder)


def start_cli_runs(base, cifar_dir, saved_model):
    """The processes of tests/test_cli.py: {name: Run}."""
    photo = base / 'photo.jpg'
    Image.new('RGB', (640, 480), (200, 30, 30)).save(photo)
    predict = ['--load-model', saved_model, '--predict', str(photo), str(photo)]
    # More answers than a pipe holds (64 KiB): a reader gone after the first line is met by a write, however late
    Image.new('RGB', (32, 32), (200, 30, 30)).save(small := base / 'small.png')
    piped = ['--load-model', saved_model, '--predict', *[str(small)] * 1000]
    runs = {'full': Run(['--data-dir', cifar_dir, *TINY, '--figures-dir', str(base / 'full' / 'figures'),
                         '--save-model', str(base / 'full' / 'model.keras')], base / 'full'),
            'predict': Run([*predict, str(base / 'nope.png')], base / 'predict'),
            'head -1': Run(piped, base / 'head', head='Loaded the model'),
            'training | head': Run(['--data-dir', cifar_dir, *TINY, '--figures-dir', str(base / 'training-head')],
                                   base / 'training-head', head='Layer (type)'),  # in what Keras prints
            '> /dev/full': Run(predict, base / 'full-disk', stdout=None, shell='> /dev/full'),
            '>&-': Run(predict, base / 'closed', stdout=None, shell='>&-'),
            'without what Windows lacks': Run(piped, base / 'bare', head='Loaded the model',
                                              env={'PYTHONPATH': without_what_windows_lacks(base / 'site')}),
            'KERAS_BACKEND': Run(['--limit', '5'], base / 'keras', env={'KERAS_BACKEND': 'jax'}),
            'MPLBACKEND': Run(['--limit', '5'], base / 'mpl', env={'MPLBACKEND': 'nonsense'}),
            'ulimit -v': Run(['--limit', '5'], base / 'address-space', limits='ulimit -v 2000000;'),  # kB: 1.9 GiB
            'ulimit -f': Run(['--data-dir', cifar_dir, *TINY, '--figures-dir', str(base / 'file-size' / 'figures')],
                             base / 'file-size',  # 20 kB: less than the first figure, and than --cov's own data
                             limits='unset COVERAGE_PROCESS_CONFIG COVERAGE_PROCESS_START; ulimit -f 20;'),  # file
            'COLUMNS=5': Run(['--data-dir', cifar_dir, *TINY, '--figures-dir', str(base / 'narrow')], base / 'narrow',
                             env={'COLUMNS': '5'}),
            'keras.json': Run(['--data-dir', cifar_dir, *TINY, '--figures-dir', str(base / 'keras-json')],
                              base / 'keras-json', env={'KERAS_HOME': str(keras_home_of_its_own(base))})}
    for phase in SIGNALS:
        out = base / phase.replace(' ', '-').replace(',', '')
        runs[phase] = Run(['--data-dir', cifar_dir, '--limit', '8', '--batch-size', '8', '--epochs',
                           '10000' if 'training' in phase else '3', '--figures-dir', str(out), '--save-model',
                           str(out / 'model.keras')], out)
    threading.Thread(target=send_signals, args=({phase: runs[phase] for phase in SIGNALS},), daemon=True).start()
    return runs


def start_notebook(folder, cells):
    """Runs `cells` in a real Jupyter kernel started in `folder`, in a thread: (notebook, thread). The kernel
    runs niced, as the processes of cifar_cnn.py do, so that the tests of this process go first."""
    import nbformat
    from nbclient import NotebookClient
    cells = ['import os\n_ = os.nice(10)', *cells]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    client = NotebookClient(nb, timeout=300, kernel_name='python3', allow_errors=True,
                            resources={'metadata': {'path': str(folder)}})
    thread = threading.Thread(target=client.execute, daemon=True)
    thread.start()
    return nb, thread


@pytest.fixture(scope='session')
def background(request, tmp_path_factory):
    """The suite's slow processes, started together before the first test so that they run beside the tests
    of this process: test_follow_along's Jupyter kernel and Python prompt, and test_cli's runs of the program."""
    modules = {item.module.__name__ for item in request.session.items}
    started = {}
    if 'test_follow_along' in modules:
        from test_follow_along import notebook_cells, typed_at_the_prompt
        folder = tmp_path_factory.mktemp('notebook')
        (outside := folder.parent / 'outside').mkdir()  # what the cells write, away from the kernel's folder
        cells = notebook_cells(request.getfixturevalue('session_cifar_dir'), outside)
        started['notebook'] = (*start_notebook(folder, cells), folder, files_under(ROOT))
        typed = folder.parent / 'typed.py'
        typed.write_text(typed_at_the_prompt(request.getfixturevalue('session_cifar_dir')))
        with open(typed) as lines:  # Python's own prompt (-i), fed these lines
            started['prompt'] = subprocess.Popen(['nice', '-n', '10', sys.executable, '-i', '-q'], stdin=lines,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if 'test_cli' in modules:
        started['cli'] = start_cli_runs(tmp_path_factory.mktemp('runs'), request.getfixturevalue('session_cifar_dir'),
                                        request.getfixturevalue('saved_model'))
    yield started
    for run in started.get('cli', {}).values():
        if run.proc.poll() is None:
            run.proc.kill()


@pytest.fixture(scope='session', autouse=True)
def slow_processes_start_with_the_session(background):
    pass


def files_under(folder):
    """Every file under `folder` with its size and modification time, leaving out caches and .git."""
    skip = {'.git', '.venv', '__pycache__', '.pytest_cache', '.ruff_cache', '.hypothesis'}  # and coverage's data:
    found = {}
    for parent, folders, files in os.walk(folder):
        folders[:] = [f for f in folders if f not in skip]
        for name in [name for name in files if not name.startswith('.coverage')]:
            info = os.stat(os.path.join(parent, name))
            found[os.path.join(parent, name)] = (info.st_size, info.st_mtime_ns)
    return found
