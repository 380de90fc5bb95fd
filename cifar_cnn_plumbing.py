"""The run's own plumbing, beside cifar_cnn.py: what a learner never needs to read to follow the post.

A tutorial script that a reader runs once, on their own machine, still meets what any program meets:
TensorFlow's start-up notes and a slow thread layout on two CPUs, mixed precision where the hardware has it,
a learner's argument out of range, a step called too early, a full disk or a closed terminal, Ctrl-C half-way
through a save. Each is handled here so that it costs the reader one line saying what to do, never a
traceback, a lost figure or a half-written model, and so that cifar_cnn.py can read like the post.

Importing it, which cifar_cnn.py does first, changes the caller's process only in these ways:
- TensorFlow's environment variables, before TensorFlow loads (any you set win): its C++ log level, oneDNN's
  kernels, and on 2 CPUs without a GPU the thread layout measured fastest for the CPU kind (bench/README.md);
- TensorFlow is then loaded with its C++ start-up notes dropped from standard error (other lines pass);
- at Python's interactive prompt, a CifarError is shown as its one line (sys.excepthook; other errors as before).
"""

import argparse
import contextlib
import numbers
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
import warnings

# ─── Before TensorFlow loads ─────────────────────────────────────────────────────────────────────────
BELOW_BFLOAT16 = {'SSE41', 'AVX', 'AVX2', 'AVX2_VNNI', 'AVX2_VNNI_2', 'AVX512_CORE', 'AVX512_CORE_VNNI'}  # oneDNN's


def cpu_flags():
    """The CPU's feature flags, e.g. {'avx2', 'avx512_bf16'}: read from /proc/cpuinfo (Linux; elsewhere none)."""
    with contextlib.suppress(OSError), open('/proc/cpuinfo') as cpuinfo:
        return set(next((line for line in cpuinfo if line.startswith('flags')), ':').split(':', 1)[1].split())
    return set()


def native_bfloat16(flags, environ):
    """Whether oneDNN computes bfloat16 natively here: the CPU has avx512_bf16 or amx_bf16, and no
    ONEDNN_MAX_CPU_ISA (DNNL_MAX_CPU_ISA before oneDNN 2.0) caps its kernels below them (AVX2, say)."""
    cap = environ.get('ONEDNN_MAX_CPU_ISA') or environ.get('DNNL_MAX_CPU_ISA') or 'ALL'
    return bool(flags & {'amx_bf16', 'avx512_bf16'}) and cap.upper() not in BELOW_BFLOAT16


def thread_layout(bfloat16, cpu_count, gpu_driver):
    """TensorFlow's thread variables for this machine: on 2 CPUs with no GPU, the layout measured fastest for
    the CPU kind (bench/README.md: one thread per op and two ops at a time with native bfloat16, the reverse
    without); elsewhere none, and TensorFlow's own defaults apply."""
    if cpu_count > 2 or gpu_driver:
        return {}
    return {'TF_NUM_INTRAOP_THREADS': '1' if bfloat16 else '2', 'TF_NUM_INTEROP_THREADS': '2' if bfloat16 else '1',
            'TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD': 'true'}


def usable_cpus():
    """How many CPUs this process may run on: those its affinity allows (Linux), else all (macOS, Windows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1


CPU_FLAGS = cpu_flags()
NATIVE_BFLOAT16 = native_bfloat16(CPU_FLAGS, os.environ)
CPU_COUNT = usable_cpus()
NVIDIA_DRIVER = os.path.exists('/proc/driver/nvidia')  # Linux; elsewhere, TensorFlow has no GPU but Apple's plugin
X86 = platform.machine().lower() in ('x86_64', 'amd64', 'i386', 'i686')  # where TensorFlow has oneDNN's kernels
for variable, value in {'TF_CPP_MIN_LOG_LEVEL': '2', **({'TF_ENABLE_ONEDNN_OPTS': '1'} if X86 else {}),
                        **thread_layout(NATIVE_BFLOAT16, CPU_COUNT, NVIDIA_DRIVER)}.items():
    os.environ.setdefault(variable, value)

# What TensorFlow's C++ code writes as it loads; a failed search for a GPU is no error where no driver exists.
STARTUP_NOTES = re.compile(
    r'WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR'
    r'|I\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard)\.cc:\d+\] '
    r'|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.'
    + ('' if NVIDIA_DRIVER else r'|E\d{4} .* cuda_platform\.cc:\d+\] failed call to cuInit'))
stderr_fd = 2  # where file descriptor 2 really goes, also while stderr_dropped() holds it


@contextlib.contextmanager
def stderr_dropped(lines):
    """Drops the `lines` that C code writes straight to file descriptor 2, out of Python's reach
    (TensorFlow's start-up notes, libtiff's remarks on a damaged file); every other line is passed on."""
    if sys.stderr is None:  # started with 2>&-: nothing to drop
        yield
        return
    global stderr_fd
    sys.stderr.flush()
    stderr_fd = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(stderr_fd, 2)
            os.close(stderr_fd)
            stderr_fd = 2
            caught.seek(0)
            sys.stderr.writelines(line for line in caught.read().decode(errors='replace').splitlines(True)
                                  if not lines.match(line))


def started_as_the_script():
    """Whether this process is `python cifar_cnn.py` (or `-m cifar_cnn`), not cifar_cnn imported."""
    return os.path.basename(getattr(sys.modules.get('__main__'), '__file__', None) or '') == 'cifar_cnn.py'


def cannot_start(error):
    """Ctrl-C while TensorFlow loads, or an environment it cannot load in: in `python cifar_cnn.py` one line
    and exit 130 or 1, as for any failure; imported into Python or Jupyter, the error itself."""
    if isinstance(error, ValueError) and 'MPLBACKEND' in os.environ:  # matplotlib reads it as it loads
        error = ImportError(f"MPLBACKEND={os.environ['MPLBACKEND']}: not a backend matplotlib knows; unset it")
    if not started_as_the_script() or isinstance(error, ValueError):
        raise error
    sys.stderr.write('\nInterrupted.\n' if isinstance(error, KeyboardInterrupt) else f'error: {error}\n')
    raise SystemExit(130 if isinstance(error, KeyboardInterrupt) else 1)


try:
    if os.environ.get('KERAS_BACKEND', 'tensorflow') != 'tensorflow':
        cannot_start(ImportError(f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}: runs on TensorFlow only; unset it"))
    import matplotlib  # it reads MPLBACKEND as it loads: a ValueError here, before TensorFlow's 3 s
    with stderr_dropped(STARTUP_NOTES):
        import keras
        import matplotlib.pyplot as plt
        import numpy as np
        import tensorflow as tf
        tf.config.list_physical_devices('GPU')  # TensorFlow looks for a GPU once, and notes a failure
except (KeyboardInterrupt, ValueError) as error:
    cannot_start(error)


# ─── Errors for the user: one line ───────────────────────────────────────────────────────────────────
class CifarError(Exception):
    """An expected failure (a bad file, an argument out of range, a step called too early): one line for the
    user, in Jupyter too (IPython shows _render_traceback_ instead of a traceback)."""
    def _render_traceback_(self):
        return [f'{type(self).__name__}: {printable(self)}']


def one_line_at_the_prompt(kind, error, trace, previous=sys.excepthook):
    """Python's prompt shows a CifarError as its one line, as Jupyter does; any other error as before."""
    if not issubclass(kind, CifarError):
        return previous(kind, error, trace)
    print(f'{kind.__name__}: {printable(error)}', file=sys.stderr)


if hasattr(sys, 'ps1'):  # imported at Python's prompt (nowhere else: a script's errors keep their tracebacks)
    sys.excepthook = one_line_at_the_prompt


def printable(text):
    """One line, whatever a name holds: a newline, a terminal's escape codes, bytes that are not UTF-8."""
    return ''.join(c if c.isprintable() else c.encode('unicode_escape').decode() for c in str(text))


def first_line(error):
    """An exception as one short line: its message's first line that says something (Keras's multi-line
    errors open with a line ending in ':'), else its type's name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if not line.endswith(':')), lines[0] if lines else type(error).__name__)[:200]


# ─── One set of rules for CifarCNN's arguments, Variations' fields and the command line's options ─────
RULES = {  # whole numbers: (lowest, highest); fractions: (0.0, 1.0), from 0, which is off, up to but not 1
    'epochs': (1, 10_000), 'batch_size': (1, 4096), 'limit': (1, 50_000), 'seed': (0, 2**32 - 1),
    'dropout': (0.0, 1.0), 'validation_split': (0.0, 1.0),  # and 'variations': cifar_cnn.py's Variations
    **dict.fromkeys(['show', 'augment', 'batch_norm', 'cosine_decay'], bool),
    **dict.fromkeys(['data_dir', 'figures_dir', 'tensorboard', 'save_model', 'load_model', 'predict'], os.PathLike)}
OPTIONAL = {'data_dir', 'figures_dir', 'tensorboard', 'limit', 'show', 'variations'}  # None: not given


def is_whole_number(value, low, high):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high


def allowed(name):
    """What the argument or option `name` takes, in words: 'a whole number from 1 to 10,000', ..."""
    rule = RULES[name]
    if rule is os.PathLike:
        return 'a file or folder name (1 to 4,096 characters, no NUL)'
    if isinstance(rule, type):
        return 'True or False' if rule is bool else f'{rule.__name__}(...)'
    if isinstance(rule[0], int):
        return f'a whole number from {rule[0]:,} to {rule[1]:,}'
    return f'a number from {rule[0]:g} (off) up to, not including, {rule[1]:g}'


def rule_broken(name, value):
    """What is wrong with `value` for the argument or option `name` (RULES): 'must be ...', or None."""
    rule = RULES[name]
    if value is None:
        return None if name in OPTIONAL else 'must be given'
    if rule is os.PathLike:
        text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
        ok = isinstance(text, str) and 0 < len(text) <= 4096 and '\0' not in text
    elif isinstance(rule, type):
        ok = isinstance(value, rule)
    elif isinstance(rule[0], int):
        ok = is_whole_number(value, *rule)
    else:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and rule[0] <= value < rule[1]
    return None if ok else f'must be {allowed(name)}'


def check_arguments(**given):
    """Raises one CifarError line for the first argument that breaks its rule: `epochs=0: must be ...`."""
    for name, value in given.items():
        if why := rule_broken(name, value):
            raise CifarError(f'{name}={value!r}: {why}')


def check_number(name, value, low, high):
    if not is_whole_number(value, low, high):
        raise CifarError(f'{name}={value!r}: must be a whole number from {low:,} to {high:,}')


def as_numbers(value, name):
    """float32 numbers, from numpy, TensorFlow or lists alike, or one line saying what `value` is not."""
    try:
        return np.asarray(value, np.float32)
    except (ValueError, TypeError):
        raise CifarError(f'{name} must be numbers, not {type(value).__name__} {str(value)[:40]}') from None


def option_type(name, parse=str):
    """An argparse type for the option of argument `name`: its text, parsed (int, float), checked by RULES."""
    def checked(text):
        with contextlib.suppress(ValueError):
            text = parse(text)
        if why := rule_broken(name, text):
            raise argparse.ArgumentTypeError(f'{repr(text)[:40]}: {why}')
        return text
    return checked


def check_prediction(classes, prediction, actual_label, img=None):
    """plot_img's and plot_predictions' arguments, or one line saying which is wrong."""
    if as_numbers(prediction, 'prediction').shape != (len(classes),):
        raise CifarError(f'prediction must be {len(classes)} probabilities, one per class (a row of cnn.predictions)')
    check_number('actual_label', actual_label, 0, len(classes) - 1)
    if img is None:  # plot_predictions: no picture
        return
    shape = as_numbers(img, 'img').shape
    if not (len(shape) == 2 or len(shape) == 3 and shape[2] in (3, 4)) or 0 in shape:
        raise CifarError(f'img must be a picture, (height, width, 3) pixels, not an array of shape {shape}')


MADE_BY = {  # what a step of CifarCNN may need made first: its type, and the step that makes it
    'test_ds': (tf.data.Dataset, 'the data prepared: cnn.preprocess_data()'),
    'model': (keras.Model, 'a model: cnn.model = cnn.build_model()'),
    'history': (keras.callbacks.History, 'the history train_model() returns: cnn.history = cnn.train_model()'),
    'predictions': (np.ndarray, "the model's predictions: cnn.make_prediction()")}


def require(cnn, step, *made):
    """Stops `step` with one line if what it needs (MADE_BY) is not made yet, or not by the step that makes it."""
    for name in made:
        kind, made_by = MADE_BY[name]
        if not isinstance(value := getattr(cnn, name, None), kind):
            brackets = f' (cnn.{name} holds the method itself: add the brackets)' if callable(value) else ''
            raise CifarError(f'{step}() needs {made_by} first{brackets}')
        if (name == 'model' and not (value.compiled and any(isinstance(layer, keras.layers.Conv2D)
                                                            for layer in value.layers))
                or name == 'predictions' and value.shape != (len(cnn.test_imgs), len(cnn.classes))):
            raise CifarError(f'{step}() needs {made_by} first (cnn.{name} is not what it makes)')


# ─── Training: precision, progress, Ctrl-C, epoch times; Keras's layers computed faster ──────────────
def choose_precision(requested):
    """--precision -> (Keras dtype policy, why): `auto` picks mixed precision only where the hardware
    computes it natively; elsewhere it is slower than float32."""
    if gpus := tf.config.list_physical_devices('GPU'):
        capability = tuple(tf.config.experimental.get_device_details(gpus[0]).get('compute_capability') or (0, 0))
        mixed, native = 'mixed_float16', capability >= (7, 0)  # Keras's advice: float16 pays from 7.0 on
        hardware = f'a GPU of compute capability {capability[0]}.{capability[1]}'
    else:
        mixed, native = 'mixed_bfloat16', NATIVE_BFLOAT16
        hardware = f'a CPU {"with" if native else "without"} native bfloat16 (amx_bf16/avx512_bf16)'
    if requested == 'float32':
        return 'float32', 'as asked'
    return (mixed, f'as asked, on {hardware}') if requested == 'mixed' else \
        ((mixed if native else 'float32'), f'auto, on {hardware}')


def progress_verbosity():
    """A progress bar on a terminal or in Jupyter; elsewhere (a log file) a line an epoch."""
    return 1 if getattr(sys.stdout, 'isatty', lambda: False)() or 'ipykernel' in sys.modules else 2


class Progress(keras.callbacks.Callback):
    """fit()'s progress, drawn by Keras's own keras.utils.Progbar, counting truthfully: with
    steps_per_execution, Keras reports an epoch's last group of steps as if it were whole (64/63)."""
    def __init__(self, verbose):
        super().__init__()
        self.verbose = verbose
    def on_epoch_begin(self, epoch, logs=None):
        self.bar = keras.utils.Progbar(self.params['steps'], verbose=self.verbose, stateless_metrics=set())
        if self.params['epochs'] > 1:
            print(f'Epoch {epoch + 1}/{self.params["epochs"]}')
    def on_train_batch_end(self, batch, logs=None):
        if self.verbose == 1:
            self.bar.update(min(batch + 1, self.params['steps']), list((logs or {}).items()), finalize=False)
    def on_epoch_end(self, epoch, logs=None):
        self.bar.update(self.params['steps'], list((logs or {}).items()), finalize=True)


class EpochTimer(keras.callbacks.Callback):
    """Prints each finished epoch's wall time (seconds) when training ends."""
    def on_train_begin(self, logs=None):
        self.times = []
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)
    def on_train_end(self, logs=None):
        self.times = self.times[:len(self.model.history.epoch)]  # StopOnCtrlC drops a cut-short epoch
        if self.times:
            print(f'Epoch times (s): {", ".join(f"{t:.1f}" for t in self.times)}; '
                  f'mean {np.mean(self.times):.1f} s/epoch')


class StopOnCtrlC(keras.callbacks.Callback):
    """First Ctrl-C: finish the current step, stop, and keep the epochs that ran to the end (the history
    forgets the one cut short). A second Ctrl-C goes to the previous handler: quit now."""
    def on_train_begin(self, logs=None):
        self.requested, self.stopped_in_epoch, self.previous = False, None, None
        if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, stop_now):  # not ignored
            self.previous = signal.signal(signal.SIGINT, self.request_stop)
    def request_stop(self, signum, frame):
        self.requested = True  # no printing here: the progress bar may be mid-write
        signal.signal(signal.SIGINT, self.previous)
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.requested and not self.model.stop_training:
            print('\nCtrl-C: training stops here (press again to quit now).', flush=True)
            self.stopped_in_epoch = self.epoch
            self.model.stop_training = True
    def on_train_end(self, logs=None):
        if self.previous is not None and not self.requested:
            signal.signal(signal.SIGINT, self.previous)
        if self.stopped_in_epoch is not None:
            history, finished = self.model.history, self.stopped_in_epoch
            history.history = {key: values[:finished] for key, values in history.history.items()}
            history.epoch = history.epoch[:finished]
            print(f'Training stopped by Ctrl-C after {finished} finished epoch(s); '
                  'the steps below use what was learnt so far.')


def flip_and_shift(images):
    """--augment: each image flipped left-right at random (half of them) and shifted by up to 3 pixels
    (10%) each way, the border filled by reflection: Keras's RandomFlip('horizontal') and
    RandomTranslation(0.1, 0.1) in whole pixels, by indexing, at about half their cost (bench/README.md)."""
    count, offsets = tf.shape(images)[0], tf.range(32)
    padded = tf.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]], mode='REFLECT')  # 38 x 38
    rows = tf.random.uniform((count, 1), 0, 7, dtype=tf.int32) + offsets
    cols = tf.random.uniform((count, 1), 0, 7, dtype=tf.int32) + offsets
    cols = tf.where(tf.random.uniform((count, 1)) < 0.5, 37 - cols, cols)  # read right to left: flipped
    return tf.gather(tf.gather(padded, rows, batch_dims=1), cols, axis=2, batch_dims=1)


def fused_batch_norm(batch_norm):
    """A keras.layers.BatchNormalization computing with TensorFlow's fused kernel, one op forward and one
    back: Keras 3's op-by-op version takes 2.5 times as long on a CPU (bench/README.md). Same numbers,
    same moving statistics; the layer, and what --save-model writes, stay Keras's own."""
    def call(inputs, training=None, mask=None):
        if not (training and batch_norm.trainable):
            return tf.compat.v1.nn.fused_batch_norm(
                inputs, batch_norm.gamma, batch_norm.beta, batch_norm.moving_mean, batch_norm.moving_variance,
                epsilon=batch_norm.epsilon, is_training=False)[0]
        normalised, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, batch_norm.gamma, batch_norm.beta, epsilon=batch_norm.epsilon, is_training=True)
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
        variance *= (count - 1) / count  # the kernel gives the unbiased variance; Keras keeps the biased one
        for moving, batch in ((batch_norm.moving_mean, mean), (batch_norm.moving_variance, variance)):
            moving.assign(moving * batch_norm.momentum + batch * (1 - batch_norm.momentum))
        return normalised
    batch_norm.call = call
    return batch_norm


# ─── Figures: shown where there is a display, written whole ──────────────────────────────────────────
def can_show():
    """Whether plt.show() shows anything here: not on a headless backend such as Agg."""
    from matplotlib.backends import BackendFilter, backend_registry
    return plt.get_backend().lower() not in backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)


def show_figure(cnn, name):
    """The one place figures go, where the post calls plt.show(): written to cnn.figures_dir/name if a folder
    was given (atomically), then shown where there is a display (inline in Jupyter, a window on a desktop);
    with neither, the first figure says where figures can go."""
    fig, path = plt.gcf(), os.path.join(cnn.figures_dir or '', name)
    if cnn.figures_dir:
        check_writable(cnn.figures_dir, 'figures')
        write_atomically(path, lambda tmp: fig.savefig(tmp, format='png'))
        print(f'Wrote {printable(path)}')
    if cnn.show if cnn.show is not None else can_show():
        plt.show()
    elif cnn.show is None and not cnn.figures_dir and not getattr(cnn, '_said_where_figures_go', False):
        print("No display here, so no figure is shown: CifarCNN(figures_dir='figures') writes them to files.")
        cnn._said_where_figures_go = True
    plt.close(fig)


# ─── Writing files: whole or not at all, and nothing of a run left behind ────────────────────────────
TEMPORARY_PATHS = set()  # this run's temporary files and folders, removed however it ends
FOLDERS_MADE = []        # output folders this run made, removed again should it stop before writing there
NOT_A_PLACE = 'a folder or a special file is there, not a place for a file'


def real_path(path):
    """`path` with every symbolic link resolved, so that a file is written where a link points."""
    try:
        return os.path.realpath(path)
    except FileNotFoundError:  # os.getcwd()
        raise CifarError(f'cannot write {path}: the folder this was started in no longer exists') from None


def temporary_name(target):
    """A name beside `target` for write_atomically to write first: short, whatever target's length, and
    unique to this write across processes, hosts and PID namespaces."""
    return os.path.join(os.path.dirname(target), f'.cifar_cnn-{uuid.uuid4().hex[:16]}.tmp{os.path.splitext(target)[1]}')


def check_place(target):
    """Raises IsADirectoryError if `target` is there but is no regular file (a folder, a pipe, a device)."""
    if os.path.exists(target) and not os.path.isfile(target):
        raise IsADirectoryError(21, NOT_A_PLACE)


def write_atomically(path, write):
    """Calls `write(tmp)` with a temporary name beside `path` (beside the file a link points to), then
    renames it to `path`, so that a failed or interrupted write never leaves half a file there."""
    target = real_path(path)
    TEMPORARY_PATHS.add(tmp := temporary_name(target))
    try:
        check_place(target)
        write(tmp)
        os.replace(tmp, target)
    except OSError as e:
        raise CifarError(f'cannot write {path}: {e.strerror or e}') from None
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        TEMPORARY_PATHS.discard(tmp)


def name_limit(folder):
    """The longest file name `folder` takes, in bytes (POSIX asks the file system; elsewhere 255)."""
    return os.pathconf(folder, 'PC_NAME_MAX') if hasattr(os, 'pathconf') else 255


def check_writable(folder, what, names=()):
    """Fails before any slow step if `what` cannot be written to `folder` (made if need be, and removed
    again should that fail): for each of the files `names` there, a temporary file beside it is made and
    removed, and one there already must be a regular file this process may replace."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CifarError(f'cannot write {what} to {folder}: it is a file, not a folder')
    made, real = [], real_path(folder)
    parent = real
    while not os.path.exists(parent) and parent != os.path.dirname(parent):  # deepest first
        made.append(parent)
        parent = os.path.dirname(parent)
    FOLDERS_MADE.extend(made)
    named = folder  # what the error names: the file as the user would, else the folder
    try:
        os.makedirs(real, exist_ok=True)
        for name in names or ['.probe']:
            named, target = os.path.join(folder, name) if names else folder, real_path(os.path.join(folder, name))
            check_place(target)
            if os.path.exists(target) and not os.access(target, os.W_OK):
                raise PermissionError(13, 'the file there cannot be replaced (read-only, or not yours)')
            if len(os.fsencode(os.path.basename(target))) > name_limit(os.path.dirname(target)):
                raise OSError(36, 'File name too long')
            TEMPORARY_PATHS.add(probe := temporary_name(target))
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.remove(probe)
            TEMPORARY_PATHS.discard(probe)
    except OSError as e:
        for folder_made in made:
            with contextlib.suppress(OSError):
                os.rmdir(folder_made)
        raise CifarError(f'cannot write {what} to {named}: {e.strerror or e}') from None


def clean_up():
    """Removes this run's temporary files and folders, and the output folders it made and left empty."""
    for path in list(TEMPORARY_PATHS):
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.remove(path)
        TEMPORARY_PATHS.discard(path)
    for folder in FOLDERS_MADE:  # deepest first
        with contextlib.suppress(OSError):
            os.rmdir(folder)
    FOLDERS_MADE.clear()


# ─── Standard output and signals: python cifar_cnn.py as a well-behaved program ─────────────────────
class StdoutLost(Exception):
    """Standard output could not be written: a full disk, or a reader that stopped reading (`| head`)."""


class CheckedStdout:
    """sys.stdout during a run, each write flushed, so that a line that cannot be written fails as it is
    printed, as StdoutLost: told apart from any other error, and never left in a buffer till exit."""
    def __init__(self, stream):
        self.stream = stream
    def write(self, text):
        try:
            written = self.stream.write(text)
            self.stream.flush()
            return written
        except OSError as e:
            raise StdoutLost(e) from e
    def flush(self):
        self.write('')
    def __getattr__(self, name):
        return getattr(self.stream, name)


STOP_SIGNALS = {signal.SIGINT: 'Interrupted.', signal.SIGTERM: 'Terminated.',
                **({signal.SIGHUP: 'Hung up.'} if hasattr(signal, 'SIGHUP') else {})}  # the terminal closed


def stop_now(signum, frame):
    """Ctrl-C (outside training), SIGTERM or SIGHUP: remove what the run left half-made, say so, and exit
    at once (130, 143 or 129); not by an exception, which TensorFlow can turn into an error of its own."""
    try:
        clean_up()
        with contextlib.suppress(OSError, StdoutLost):
            sys.stdout.flush()
        sys.stderr.flush()
        os.write(stderr_fd, f'\n{STOP_SIGNALS[signum]}\n'.encode())  # even while stderr_dropped() holds fd 2
    finally:
        os._exit(128 + signum)


def run_as_a_program(parse, run, argv):
    """Calls run(parse(argv)) as `python cifar_cnn.py` runs: figures drawn to files only unless --show;
    signals stop it cleanly; TensorFlow's and Keras's temporary files in a folder of the run's own; every
    write to standard output checked. Returns the exit status: run's, 1 after one `error:` line, 2 for a usage
    error, or 141 when the reader of the output stops reading (`| head`), as Unix programs do."""
    if sys.stdout is None:  # started with >&-
        print('error: standard output is closed, so what this prints would be lost', file=sys.stderr)
        return 1
    args = parse(argv)
    if not args.show:
        matplotlib.use('Agg')  # draw to files only: never wait for a window
    elif not can_show():
        print('note: --show: no display here, so the figures are only written to files', file=sys.stderr)
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum, handler in handlers.items():
        if handler is not signal.SIG_IGN:  # e.g. SIGINT in a background job: leave it ignored
            signal.signal(signum, stop_now)
    previous_tempdir, tempfile.tempdir = tempfile.tempdir, tempfile.mkdtemp(prefix='cifar_cnn-')
    TEMPORARY_PATHS.add(tempfile.tempdir)
    FOLDERS_MADE.clear()  # folders made before, in this process, are not this run's
    stdout, sys.stdout = sys.stdout, CheckedStdout(sys.stdout)
    try:
        with warnings.catch_warnings(record=True) as caught:
            code = run(args)
        for warning in caught:  # held back until now: an error line says it better
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return code
    except CifarError as e:
        print(f'error: {printable(e)}', file=sys.stderr)
        return 1
    except StdoutLost as lost:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())  # what is left unwritten cannot fail at exit
        if isinstance(lost.args[0], BrokenPipeError):  # the reader stopped reading: stop quietly
            return 128 + getattr(signal, 'SIGPIPE', 13)
        print(f'error: cannot write standard output ({lost.args[0].strerror})', file=sys.stderr)
        return 1
    finally:
        sys.stdout, tempfile.tempdir = stdout, previous_tempdir
        clean_up()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
