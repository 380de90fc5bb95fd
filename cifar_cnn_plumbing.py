"""The run's own plumbing, beside cifar_cnn.py: what a learner never needs to read to follow the post.

A tutorial script that a reader runs once, on their own machine, still meets what any program meets:
TensorFlow's start-up notes and a slow thread layout on two CPUs, mixed precision where the hardware has it,
a Keras configured for something else, a Python without the packages, a learner's argument out of range, a step
called too early, a full disk, a closed terminal, a shell's limits, Ctrl-C half-way through a save. Each is
handled here so that it costs the reader one line saying what to do, never a traceback, a hang, a lost figure or
a half-written model, and so that cifar_cnn.py can read like the post.

Importing it, which cifar_cnn.py does first, changes the caller's process only in these ways:
- TensorFlow's environment variables, before TensorFlow loads (any you set win): its C++ log level, oneDNN's
  kernels, and on 2 CPUs without a GPU the thread layout measured fastest for the CPU kind (bench/README.md);
- TensorFlow is then loaded with its C++ start-up notes dropped from standard error (other lines pass);
- where keras.json sets another image data format, float type or epsilon, Keras's defaults, which the post's
  network computes with (a note says so);
- at Python's interactive prompt, a CifarError is shown as its one line (sys.excepthook; other errors as before).
An environment it cannot start in (another Keras backend, a keras.json Keras would fail on, a missing package,
too small an address space) is one line too: `error: ...` from the command line, an ImportError in Python.
"""

import argparse
import contextlib
import dataclasses
import functools
import importlib.util
import json
import math
import numbers
import os
import platform
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
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


COMMAND_LINE = False  # True while `python cifar_cnn.py` runs: messages then name its options, else Python's names


def named(name, *value):
    """How the user names `name` (and gave it a value): '--data-dir', '--data-dir DIR' on the command line;
    'data_dir=', "data_dir='DIR'" in Python, and a function as a call: 'load_model()', "save_model(model, 'PATH')"."""
    if COMMAND_LINE:
        return ' '.join([f'--{name.replace("_", "-")}', *map(str, value)])
    if name in ('load_model', 'save_model'):
        arguments = [*(['model'] if name == 'save_model' and value else []), *map(repr, value)]
        return f'{name}({", ".join(arguments)})'
    return f'{name}={value[0]!r}' if value else f'{name}='


def first_line(error):
    """An exception as one short line: its message's first line that says something (Keras's multi-line
    errors open with a line ending in ':'), else its type's name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if not line.endswith(':')), lines[0] if lines else type(error).__name__)[:200]


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
    (TensorFlow's start-up notes, libtiff's remarks on a damaged file); every other line is passed on, whole.
    With no standard error (2>&-) or no temporary space to hold them, nothing is dropped."""
    global stderr_fd
    try:
        caught = tempfile.TemporaryFile() if sys.stderr is not None else None  # noqa: SIM115 -- `with caught` below
    except OSError:  # no usable temporary folder: run_as_a_program says so (untested: at import, before a test
        caught = None  # can take the folder away)
    if caught is None:
        yield
        return
    sys.stderr.flush()
    stderr_fd = os.dup(2)
    with caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(stderr_fd, 2)
            os.close(stderr_fd)
            stderr_fd = 2
            caught.seek(0)
            sys.stderr.writelines(line if line.endswith('\n') else line + '\n'  # cut short: never glued to the next
                                  for line in caught.read().decode(errors='replace').splitlines(True)
                                  if not lines.match(line))


def read_file(path, label, limit, advice=''):
    """The bytes of `path`, a regular file of at most `limit` bytes (`advice` says what to do with a larger one);
    folders, pipes, devices and symlink loops are refused before they are opened, so nothing waits on them."""
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            raise CifarError(f'{label}: is a folder, not a file')
        # O_BINARY (Windows): bytes as they are, not text whose CR LF and Ctrl-Z the C library would translate;
        # O_NONBLOCK (Linux, macOS): should the file have been swapped for a pipe since, opening it cannot hang
        flags = os.O_RDONLY | getattr(os, 'O_BINARY', 0) | getattr(os, 'O_NONBLOCK', 0)
        with os.fdopen(os.open(path, flags), 'rb') as opened:
            info = os.fstat(opened.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise CifarError(f'{label}: is not a regular file (a pipe, socket or device)')
            if info.st_size > limit:
                raise CifarError(f'{label}: is {info.st_size:,} bytes, more than the {limit:,} read here{advice}')
            data = opened.read(limit + 1)
    except FileNotFoundError:
        raise CifarError(f'{label}: no such file') from None
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the name
        raise CifarError(f'{label}: cannot read it ({getattr(error, "strerror", None) or error})') from None
    if len(data) > limit:  # untested: a file written to as it is read, a race no test stages reliably
        raise CifarError(f'{label}: grew past {limit:,} bytes while being read')
    return data


REQUIRED = ['tensorflow', 'keras', 'numpy', 'matplotlib', 'PIL', 'h5py']  # what requirements.txt installs
KERAS_SETTINGS = {'floatx': {'float16', 'float32', 'float64'}, 'epsilon': float,  # what Keras accepts there
                  'image_data_format': {'channels_last', 'channels_first'}, 'backend': {'tensorflow'}}
GiB = 2**30
MIN_ADDRESS_SPACE, FULL_RUN_ADDRESS_SPACE = 3 * GiB, 4 * GiB  # ulimit -v; measured on 2 CPUs, bench/README.md


def keras_config_path(environ):
    """Where Keras reads its keras.json as it loads: in KERAS_HOME, else ~/.keras (/tmp/.keras where ~ is not
    writable), as keras/src/backend/config.py finds it."""
    home = environ['KERAS_HOME'] if 'KERAS_HOME' in environ else os.path.join(
        os.path.expanduser('~') if os.access(os.path.expanduser('~'), os.W_OK) else '/tmp', '.keras')
    return os.path.expanduser(os.path.join(home, 'keras.json'))


def startup_problem(environ, places):
    """What keeps Keras, TensorFlow or the packages they need from loading here, as one line, found before they
    load (Keras raises its traceback, or waits on a named pipe, as it is imported); None if nothing does.
    `places`: the folders where a file of the user's would hide a package (Python looks there first)."""
    if (backend := environ.get('KERAS_BACKEND')) and backend != 'tensorflow':  # empty: unset, as for Keras
        return f'KERAS_BACKEND={backend}: runs on TensorFlow only; unset it'
    for variable in ('KERAS_MAX_EPOCHS', 'KERAS_MAX_STEPS_PER_EPOCH'):
        if variable in environ and not re.fullmatch(r'0*[1-9][0-9]*', environ[variable].strip()):
            return f'{variable}={environ[variable]}: Keras wants a whole number there, 1 or more; unset it'
    for name in REQUIRED:
        spec = importlib.util.find_spec(name)
        if spec is None:
            return (f'{name} is not installed in the Python running this ({sys.executable}): run it with the one '
                    'that has requirements.txt installed (.venv/bin/python cifar_cnn.py), or install them into '
                    f'this one: {sys.executable} -m pip install -r requirements.txt')
        origin = os.path.abspath(spec.origin or '')
        if {os.path.dirname(origin), os.path.dirname(os.path.dirname(origin))} & {os.path.abspath(p) for p in places}:
            return f'{origin}: a file of yours hides the package {name} (Python finds it first); rename it'
    path = keras_config_path(environ)
    if os.path.lexists(path):
        try:
            settings = json.loads(read_file(path, path, 65536, '; Keras reads it as it loads: fix or remove it'))
        except ValueError:
            settings = {}  # not JSON: Keras ignores it too
        except RecursionError:
            return f'{path}: nested too deeply for Keras to read it as it loads; fix or remove it'
        except CifarError as error:
            return str(error)
        if not isinstance(settings, dict):
            return f'{path}: holds no settings (an object of them), which Keras reads as it loads; fix or remove it'
        for name, allowed in KERAS_SETTINGS.items():
            value, backend_set = settings.get(name), bool(environ.get('KERAS_BACKEND'))  # the variable wins
            fits = type(value) is allowed if isinstance(allowed, type) else isinstance(value, str) and value in allowed
            if name in settings and not (fits or name == 'backend' and backend_set):
                takes = 'this program runs on TensorFlow only' if name == 'backend' else 'Keras cannot load with it: ' \
                    + (' or '.join(sorted(allowed)) if isinstance(allowed, set) else 'a decimal number') + ' only'
                return (f'{path}: "{name}": {json.dumps(value)[:40]}: {takes}; fix or remove it, or point KERAS_HOME '
                        'at another folder')
    return address_space_problem(MIN_ADDRESS_SPACE)


def address_space_problem(needed):
    """One line if the address space (ulimit -v) is smaller than `needed` bytes: MIN_ADDRESS_SPACE for TensorFlow
    to train at all, FULL_RUN_ADDRESS_SPACE for a full run; else None."""
    if (limit := resource_limit('RLIMIT_AS')) >= needed:
        return None
    fewer = ', or train on fewer images (--limit 10000)' if needed > MIN_ADDRESS_SPACE else ''
    return (f'the address space is limited to {limit / GiB:.1f} GiB (ulimit -v); this run needs '
            f'{needed / GiB:.0f} GiB: raise the limit{fewer}')


def resource_limit(name):
    """The soft limit `name` of this process (RLIMIT_AS, say), in bytes or units; infinity where there is none."""
    try:
        import resource  # not on Windows
        soft = resource.getrlimit(getattr(resource, name))[0]
        return math.inf if soft == resource.RLIM_INFINITY else soft
    except (ImportError, AttributeError, OSError):  # Windows has no resource module: untested, by reading
        return math.inf


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
    sys.stderr.write('\nInterrupted.\n' if isinstance(error, KeyboardInterrupt) else f'error: {printable(error)}\n')
    raise SystemExit(130 if isinstance(error, KeyboardInterrupt) else 1)


try:
    # where Python looks first: the script's folder, or the working one
    if problem := startup_problem(os.environ, [(sys.path[:1] or [''])[0] or os.getcwd()]):
        cannot_start(ImportError(problem))
    import matplotlib  # it reads MPLBACKEND as it loads: a ValueError here, before TensorFlow's 3 s
    with stderr_dropped(STARTUP_NOTES):
        import keras
        import matplotlib.pyplot as plt
        import numpy as np
        import tensorflow as tf
        tf.config.list_physical_devices('GPU')  # TensorFlow looks for a GPU once, and notes a failure
except (KeyboardInterrupt, ValueError) as error:
    cannot_start(error)
KERAS_DEFAULTS = {'image_data_format': 'channels_last', 'floatx': 'float32', 'epsilon': 1e-07}  # the post's network
if changed := {name: getattr(keras.config, name)() for name, default in KERAS_DEFAULTS.items()
               if getattr(keras.config, name)() != default}:
    settings, defaults = (', '.join(map(str, values)) for values in
                          ([f'{name} {value}' for name, value in changed.items()], KERAS_DEFAULTS.values()))
    print(f'note: {keras_config_path(os.environ)} sets {settings}; this program uses Keras\'s defaults instead, '
          f'as the post does ({defaults})', file=sys.stderr)
    for name, default in KERAS_DEFAULTS.items():
        getattr(keras.config, f'set_{name}')(default)


# ─── One set of rules for CifarCNN's arguments, Variations' fields and the command line's options ─────
RULES = {  # whole numbers: (lowest, highest); fractions: (0.0, 1.0), from 0, which is off, up to but not 1
    'epochs': (1, 10_000), 'batch_size': (1, 4096), 'limit': (1, 50_000), 'seed': (0, 2**32 - 1),
    'dropout': (0.0, 1.0), 'validation_split': (0.0, 1.0),  # and 'variations': cifar_cnn.py's Variations
    **dict.fromkeys(['show', 'augment', 'batch_norm', 'cosine_decay'], bool),
    **dict.fromkeys(['data_dir', 'figures_dir', 'tensorboard', 'predict'], os.PathLike),
    **dict.fromkeys(['save_model', 'load_model'], '.keras')}  # a file name with this ending: Keras's format
OPTIONAL = {'data_dir', 'figures_dir', 'tensorboard', 'limit', 'show', 'variations'}  # None: not given


def is_whole_number(value, low, high):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high


def allowed(name):
    """What the argument or option `name` takes, in words: 'a whole number from 1 to 10,000', ..."""
    rule = RULES[name]
    if rule is os.PathLike:
        return 'a file or folder name (1 to 4,096 characters, no NUL)'
    if isinstance(rule, str):
        return f'a file name ending in {rule}, such as cifar{rule}'
    if isinstance(rule, type):
        return 'True or False' if rule is bool else f'{rule.__name__}(...)'
    if isinstance(rule[0], int):
        return f'a whole number from {rule[0]:,} to {rule[1]:,}'
    return f'a number from {rule[0]:g} (off) up to, not including, {rule[1]:g}'


def rule_broken(name, value):
    """What is wrong with `value` for the argument or option `name` (RULES): 'must be ...', or None."""
    rule = RULES[name]
    if value is None:
        return None if name in OPTIONAL else f'must be given: {allowed(name)}'
    if rule is os.PathLike or isinstance(rule, str):
        text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
        ok = isinstance(text, str) and 0 < len(text) <= 4096 and '\0' not in text and \
            (rule is os.PathLike or text.endswith(rule) and os.path.basename(text) != rule)
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
            raise CifarError(f'{named(name, value)}: {why}')


def checked_path(name, path):
    """`path` for the argument or option `name` (save_model, load_model) as a str, once it keeps its rule."""
    check_arguments(**{name: path})
    return os.fspath(path)


def image_files(paths):
    """predict_files()'s `paths`: one file name (str or os.PathLike) or any number of them (a list, a generator),
    as a list of str; or one line saying what it takes."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    with contextlib.suppress(TypeError):
        paths = list(paths)
    if not isinstance(paths, list) or any(rule_broken('predict', path) for path in paths):
        raise CifarError(f'predict_files(model, paths): paths must be a file name or a list of them, each '
                         f'{allowed("predict")}, not {repr(paths)[:60]}')
    return [os.fspath(path) for path in paths]


def check_model(call, model):
    """`call`'s model (save_model, predict_files): a Keras model, or one line saying what to pass."""
    if not isinstance(model, keras.Model):
        raise CifarError(f'{call}(model, ...): model must be a Keras model, such as cnn.model, not a '
                         f'{type(model).__name__}')


def check_number(name, value, low, high):
    if not is_whole_number(value, low, high):
        raise CifarError(f'{name}={value!r}: must be a whole number from {low:,} to {high:,}')


def as_numbers(value, name):
    """An array of numbers, from numpy, TensorFlow or lists alike, or one line saying what `value` is not."""
    with contextlib.suppress(ValueError, TypeError):
        if (array := np.asarray(value)).dtype.kind in 'iuf':
            return array
    raise CifarError(f'{name} must be numbers, not {type(value).__name__} {str(value)[:40]}')


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
    probabilities = as_numbers(prediction, 'prediction')
    if probabilities.shape != (len(classes),):
        raise CifarError(f'prediction must be {len(classes)} probabilities, one per class (a row of cnn.predictions)')
    check_computed(probabilities, 'these images')
    if not (probabilities.min() >= 0 and abs(probabilities.sum() - 1) < 0.01):
        raise CifarError('prediction must be probabilities, 0 or more and summing to 1, as a row of cnn.predictions '
                         "is: a model's raw outputs need the Softmax that make_prediction() adds")
    check_number('actual_label', actual_label, 0, len(classes) - 1)
    if img is None:  # plot_predictions: no picture
        return
    shape = as_numbers(img, 'img').shape
    if not (len(shape) == 2 or len(shape) == 3 and shape[2] in (3, 4)) or 0 in shape:
        raise CifarError(f'img must be a picture, (height, width, 3) pixels, not an array of shape {shape}')


def check_computed(outputs, images):
    """One line if the model computed non-numbers for `images`: weights no picture can be answered with."""
    if not np.isfinite(outputs).all():
        raise CifarError(f'the model computes non-numbers (NaN or infinity) for {images}: its weights are unusable; '
                         'train it again, or load another model')


MADE_BY = {  # what a step of CifarCNN may need made first: its type, and the step that makes it
    'test_ds': (tf.data.Dataset, 'the data prepared: cnn.preprocess_data()'),
    'model': (keras.Model, 'a model: cnn.model = cnn.build_model()'),
    'predictions': (np.ndarray, "the model's predictions: cnn.make_prediction()")}


def require(cnn, step, *made, convolutions=False):
    """Stops `step` with one line if what it needs (MADE_BY) is not made yet, or not as the step makes it: a
    model not compiled, predictions not one row per test image; with `convolutions`, a model without any."""
    for name in made:
        kind, made_by = MADE_BY[name]
        if not isinstance(value := getattr(cnn, name, None), kind):
            brackets = f' (cnn.{name} holds the method itself: add the brackets)' if callable(value) else ''
            raise CifarError(f'{step}() needs {made_by} first{brackets}')
        if name == 'test_ds':
            current_datasets(cnn)
        if name == 'predictions':
            check_counts(cnn, 'test')
            if value.shape != (len(cnn.test_imgs), len(cnn.classes)):
                raise CifarError(f'{step}() needs {made_by} first (cnn.predictions holds {value.shape} numbers, not '
                                 f'{len(cnn.classes)} for each of the {len(cnn.test_imgs):,} test images)')
        if name == 'model' and not value.compiled:
            raise CifarError(f'{step}() needs a compiled model: build_model() compiles the post\'s, and a network of '
                             'your own needs model.compile(...) first')
        if name == 'model' and convolutions and not any(isinstance(layer, keras.layers.Conv2D)
                                                        for layer in value.layers):
            raise CifarError(f'{step}() looks at convolutions, and cnn.model has no Conv2D layer')


# ─── Training: precision, progress, Ctrl-C, epoch times; Keras's layers computed faster ──────────────
@contextlib.contextmanager
def keras_quiet():
    """Keras's own printing (a model's summary) off for a while: in Jupyter too, where it prints past sys.stdout."""
    was_on = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        yield
    finally:
        if was_on:  # off already: inside another keras_quiet(), which no step does today
            keras.config.enable_interactive_logging()


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
    if requested == 'mixed' and not native and not gpus:  # oneDNN's kernels then have no bfloat16 to run
        raise CifarError(f'--precision mixed: {hardware}, or with ONEDNN_MAX_CPU_ISA capping it, computes mixed '
                         'precision slowly if at all; use --precision auto (float32 here)')
    return (mixed, f'as asked, on {hardware}') if requested == 'mixed' else \
        ((mixed if native else 'float32'), f'auto, on {hardware}')


def in_ipython():
    """Whether this runs in IPython's shell: Jupyter, or `ipython` at a terminal."""
    return 'IPython' in sys.modules and sys.modules['IPython'].get_ipython() is not None


def progress_verbosity():
    """A progress bar on a terminal or in Jupyter (IPython's shell); elsewhere (a log file) a line an epoch."""
    return 1 if getattr(sys.stdout, 'isatty', lambda: False)() or in_ipython() else 2


def training_callbacks(cnn):
    """What train_model() adds to fit(): a truthful progress bar, a clean stop on Ctrl-C, epoch times, the
    history of a model trained before continued, and TensorBoard's logs with --tensorboard."""
    earlier = getattr(cnn.model, 'history', None)
    callbacks = [Progress(progress_verbosity(), len(earlier.epoch) if earlier else 0), StopOnCtrlC(), EpochTimer(),
                 ContinuedHistory(earlier)]
    if cnn.variations.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(cnn.variations.tensorboard))
    return callbacks


class Progress(keras.callbacks.Callback):
    """fit()'s progress, drawn by Keras's own keras.utils.Progbar, counting truthfully: with steps_per_execution
    Keras reports an epoch's last group of steps as if it were whole (64/63); an epoch cut short by Ctrl-C ends
    at the step it reached; a model trained before numbers its epochs on from its last."""
    def __init__(self, verbose, epochs_before):
        super().__init__()
        self.verbose, self.epochs_before = verbose, epochs_before
    def on_epoch_begin(self, epoch, logs=None):
        self.bar = keras.utils.Progbar(self.params['steps'], verbose=self.verbose, stateless_metrics=set())
        self.step = 0
        if (epochs := self.epochs_before + self.params['epochs']) > 1:
            print(f'Epoch {self.epochs_before + epoch + 1}/{epochs}')
    def on_train_batch_end(self, batch, logs=None):
        self.step = min(batch + 1, self.params['steps'])
        if self.verbose == 1:
            self.bar.update(self.step, list((logs or {}).items()), finalize=False)
    def on_epoch_end(self, epoch, logs=None):
        if self.step < self.params['steps']:  # cut short: its validation measured weights that are not kept
            logs = {key: value for key, value in (logs or {}).items() if not key.startswith('val_')}
        self.bar.update(self.step, list((logs or {}).items()), finalize=True)


class StopOnCtrlC(keras.callbacks.Callback):
    """First Ctrl-C: finish the current step and stop. An epoch cut short is dropped, from the history and from
    the model, which goes back to its weights at the end of the last epoch that finished (or as it was before,
    if none did): the history and the weights stay one. A second Ctrl-C goes to the previous handler: quit now.
    Only where Python runs signal handlers: its main thread."""
    def on_train_begin(self, logs=None):
        self.requested = self.stopped = False
        self.cut, self.previous, self.weights = None, None, self.model.get_weights()
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) in (signal.default_int_handler, stop_now):  # not ignored
            self.previous = signal.signal(signal.SIGINT, self.request_stop)
    def request_stop(self, signum, frame):
        self.requested = True  # no printing here: the progress bar may be mid-write
        signal.signal(signal.SIGINT, self.previous)
    def on_train_batch_end(self, batch, logs=None):
        if self.requested and not self.stopped:
            print('\nCtrl-C: training stops here (press again to quit now).', flush=True)
            self.model.stop_training = self.stopped = True
            self.cut = batch + 1 if batch + 1 < self.params['steps'] else None
    def on_epoch_end(self, epoch, logs=None):
        if self.cut is None:
            self.weights = self.model.get_weights()
    def on_train_end(self, logs=None):
        if self.previous is not None and not self.requested:
            signal.signal(signal.SIGINT, self.previous)
        if self.cut is not None:
            history = self.model.history
            history.history = {key: values[:-1] for key, values in history.history.items()}
            history.epoch = history.epoch[:-1]
            self.model.set_weights(self.weights)
            print(f'Training stopped by Ctrl-C {self.cut} steps into an epoch of {self.params["steps"]}: that epoch '
                  'is dropped, and the model keeps its weights from the end of the last one that finished.')
        elif self.stopped:
            print('Training stopped by Ctrl-C at the end of an epoch: the model keeps what it learnt.')


class EpochTimer(keras.callbacks.Callback):
    """Prints each finished epoch's wall time (seconds) when training ends."""
    def on_train_begin(self, logs=None):
        self.times = []
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)
    def on_train_end(self, logs=None):
        self.times = self.times[:len(self.model.history.epoch)]  # StopOnCtrlC, before, dropped a cut epoch
        if self.times:  # none when Ctrl-C cut the first epoch, which no test does
            print(f'Epoch times (s): {", ".join(f"{t:.1f}" for t in self.times)}; '
                  f'mean {np.mean(self.times):.1f} s/epoch')


class ContinuedHistory(keras.callbacks.Callback):
    """train_model() on a model trained before goes on from its weights: it says so as training starts, and the
    history then holds every epoch that made the weights, the earlier ones first."""
    def __init__(self, earlier):
        super().__init__()
        self.earlier = earlier if earlier is not None and earlier.epoch else None
    def on_train_begin(self, logs=None):
        if self.earlier:
            epochs = len(self.earlier.epoch)
            print(f'The model has trained {epochs} epoch{"s" if epochs > 1 else ""} already, and goes on from there. '
                  'To start over: cnn.model = cnn.build_model(), then train again.')
    def on_train_end(self, logs=None):
        if self.earlier:
            history = self.model.history
            history.history = {key: self.earlier.history.get(key, []) + values
                               for key, values in history.history.items()}
            history.epoch = list(range(len(self.earlier.epoch) + len(history.epoch)))


def datasets(cnn, train_pixels=None, test_pixels=None):
    """(train, validation, test) tf.data pipelines over cnn's images and labels (or over `train_pixels` and
    `test_pixels`, the same images as loaded), validation on the test set unless --validation-split. Sets
    cnn.validation_label, the curve's name for evaluate_model()."""
    check_counts(cnn, 'train', 'test')
    kept = training_images(cnn)
    cnn._pipelines_made_with = pipeline_settings(cnn)
    train_pixels = cnn.train_imgs if train_pixels is None else train_pixels
    test_pixels = cnn.test_imgs if test_pixels is None else test_pixels
    train = pipeline(train_pixels[:kept], cnn.train_labels[:kept], cnn.batch_size, shuffle=True,
                     augment=cnn.variations.augment)
    test = pipeline(test_pixels, cnn.test_labels, EVAL_BATCH_SIZE)
    if kept == len(train_pixels):
        cnn.validation_label = 'val_accuracy'
        return train, test, test
    cnn.validation_label = f'val_accuracy (last {len(train_pixels) - kept:,} training images)'
    return train, pipeline(train_pixels[kept:], cnn.train_labels[kept:], EVAL_BATCH_SIZE), test


def current_datasets(cnn):
    """The pipelines remade if what they were made from changed since: the arrays (a new one put in their place:
    `cnn.test_imgs = cnn.test_imgs[:100]`), the batch size, --augment or --validation-split; checked first."""
    check_arguments(batch_size=cnn.batch_size)
    current_variations(cnn)
    if pipeline_settings(cnn) != cnn._pipelines_made_with:
        cnn.train_ds, cnn.validation_ds, cnn.test_ds = datasets(cnn)


def current_variations(cnn):
    """cnn.variations as the steps use them, checked again; None (`cnn.variations = None`) is none of them, as
    for CifarCNN(variations=None)."""
    if cnn.variations is None:
        cnn.variations = RULES['variations']()
    check_arguments(variations=cnn.variations)
    check_arguments(**{field.name: getattr(cnn.variations, field.name) for field in dataclasses.fields(cnn.variations)})
    return cnn.variations


def check_counts(cnn, *kinds):
    """One line if arrays put in place of the class's hold images and labels of different counts: for each of
    `kinds` ('train', 'test'), cnn.{kind}_imgs and cnn.{kind}_labels."""
    for kind in kinds:
        imgs, labels = getattr(cnn, f'{kind}_imgs'), getattr(cnn, f'{kind}_labels')
        if len(imgs) != len(labels):
            raise CifarError(f'cnn.{kind}_imgs holds {len(imgs):,} images and cnn.{kind}_labels {len(labels):,} '
                             'labels: put in place the labels of those very images (or the images of those labels)')


EVAL_BATCH_SIZE = 500  # evaluation and prediction: the same numbers as batches of 32, in fewer steps


def pipeline(imgs, labels, batch_size, shuffle=False, augment=False):
    """A tf.data pipeline over images as loaded (uint8: a quarter of float32's memory), each batch scaled to
    float32 in [0, 1] as preprocess_data() scales the arrays (images of another type: scaled() first, whole); a
    new order every epoch with shuffle, as fit(shuffle=True) gives arrays; with augment (--augment) each batch
    flipped and shifted first, in order, so that a seed repeats a run (bench/README.md)."""
    loaded = np.asarray(imgs)
    imgs, labels = tf.constant(loaded if loaded.dtype == np.uint8 else scaled(loaded)), tf.constant(labels)
    dataset = tf.data.Dataset.range(len(imgs))
    if shuffle:
        dataset = dataset.shuffle(len(imgs), reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(lambda indices: (tf.gather(imgs, indices), tf.gather(labels, indices)))
    if augment:
        dataset = dataset.map(lambda batch_imgs, batch_labels: (flip_and_shift(batch_imgs), batch_labels))
    if imgs.dtype == tf.uint8:
        dataset = dataset.map(lambda batch_imgs, batch_labels: (scaled(batch_imgs), batch_labels),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def scaled(images):
    """Pixels 0-255 -> float32 in [0, 1]: the post's `/ 255.0`, in the one place it is done, for arrays and for a
    pipeline's tensors alike. Arrays in [0, 1] already (float, none above 1: the post's own division, typed
    first) are only made float32."""
    if tf.is_tensor(images):  # in the pipeline, which tf.data traces: run by every training test, unseen by --cov
        return tf.cast(images, tf.float32) / 255.0
    images = np.asarray(images)
    if images.dtype.kind == 'f' and images.max(initial=0) <= 1:
        return images.astype(np.float32, copy=False)
    return np.divide(images, np.float32(255), dtype=np.float32)


def training_images(cnn):
    """How many training images are trained on: all but the last --validation-split of them."""
    held_out = math.ceil(len(cnn.train_imgs) * current_variations(cnn).validation_split)
    if held_out >= len(cnn.train_imgs):
        raise CifarError(f'{named("validation_split", cnn.variations.validation_split)} leaves no training images '
                         f'out of {len(cnn.train_imgs)}')
    return len(cnn.train_imgs) - held_out


def use_current_settings(cnn, step):
    """The settings `step` uses, checked again (cnn.epochs = 0 is the same one line as CifarCNN(epochs=0));
    variations that build_model() made the network with, changed since, say to build it again (the pipelines:
    current_datasets(), by require())."""
    check_arguments(epochs=cnn.epochs, figures_dir=cnn.figures_dir, show=cnn.show)
    if getattr(cnn, '_network_made_with', None) not in (None, network_settings(cnn)):
        raise CifarError(f'{step}(): cnn.variations, cnn.epochs or cnn.batch_size changed what build_model() makes '
                         'since it made cnn.model: cnn.model = cnn.build_model() again first')


def pipeline_settings(cnn):
    """What datasets() makes the pipelines from: the arrays (which ones, not what they hold) and the settings."""
    arrays = (cnn.train_imgs, cnn.train_labels, cnn.test_imgs, cnn.test_labels)
    return *map(id, arrays), cnn.batch_size, cnn.variations.augment, cnn.variations.validation_split


def network_settings(cnn):
    """What build_model() makes the network and its optimizer from."""
    cosine = current_variations(cnn).cosine_decay
    return cnn.variations.batch_norm, cnn.variations.dropout, cosine, cosine and (cnn.epochs, cnn.batch_size)


def training_history(cnn):
    """For evaluate_model(): the history of the training that made cnn.model's weights (all of it, trained once or
    more), whatever cnn.history holds; None, after one line saying why, if there is no curve to draw."""
    if callable(cnn.history):
        raise CifarError('evaluate_model() needs the history train_model() returns (cnn.history holds the method '
                         'itself: add the brackets)')
    history = getattr(cnn.model, 'history', None)
    if history is None or not history.epoch:
        print('No accuracy curve: this model has no epoch of training here (loaded, or not trained yet: '
              'cnn.history = cnn.train_model())')
        return None
    return history


def flip_and_shift(images):
    """--augment: each image flipped left-right at random (half of them) and shifted by up to 3 pixels
    (10%) each way, the border filled by reflection: Keras's RandomFlip('horizontal') and
    RandomTranslation(0.1, 0.1) in whole pixels, by indexing, at about half their cost (bench/README.md)."""
    count, offsets = tf.shape(images)[0], tf.range(32)  # traced by tf.data: tested (--augment), unseen by --cov
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
DRAWING = threading.RLock()  # pyplot keeps one current figure per process


def one_drawing_at_a_time(cls, steps):
    """Makes each of `steps` (methods of `cls` that draw) wait while another thread draws: two CifarCNNs
    drawing side by side, from Streamlit or a notebook's threads, would otherwise draw into each other."""
    def waiting_its_turn(drawing):
        @functools.wraps(drawing)
        def step(*args, **kwargs):
            with DRAWING:
                return drawing(*args, **kwargs)
        return step
    for name in steps:
        setattr(cls, name, waiting_its_turn(getattr(cls, name)))


def can_show():
    """Whether plt.show() shows anything here: not on a headless backend such as Agg."""
    from matplotlib.backends import BackendFilter, backend_registry
    return plt.get_backend().lower() not in backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)


def show_figure(cnn, name):
    """The one place figures go, where the post calls plt.show(): written to cnn.figures_dir/name if a folder
    was given (atomically, with the run it came from in its metadata), then shown where there is a display
    (inline in Jupyter, a window on a desktop); with neither, the first figure says where figures can go."""
    fig, path = plt.gcf(), os.path.join(cnn.figures_dir or '', name)
    if cnn.figures_dir:
        check_writable(cnn.figures_dir, 'figures')
        dpi = min(fig.dpi if plt.rcParams['savefig.dpi'] == 'figure' else plt.rcParams['savefig.dpi'], MAX_DPI)
        write_atomically(path, lambda tmp: fig.savefig(tmp, format='png', dpi=dpi, metadata=figure_metadata(cnn)))
        print(f'Wrote {printable(path)}')
    if cnn.show if cnn.show is not None else can_show():
        plt.show()
    elif cnn.show is None and not cnn.figures_dir and not getattr(cnn, '_said_where_figures_go', False):
        print("No display here, so no figure is shown: CifarCNN(figures_dir='figures') writes them to files.")
        cnn._said_where_figures_go = True
    plt.close(fig)


MAX_DPI = 300  # a matplotlibrc's savefig.dpi beyond it would draw each figure in gigabytes
RUN = {}  # the command line's own facts for the figures' metadata: 'Command', 'Seed'


def figure_metadata(cnn):
    """What a figure's PNG file records of the run that drew it (tests/test_figures.py checks that the committed
    ones come from one full default run): the same 'Run' for every figure of one CifarCNN."""
    facts = {'Run': cnn.__dict__.setdefault('_run_id', uuid.uuid4().hex), 'Seed': RUN.get('Seed', 'not set'),
             'Command': RUN.get('Command', 'CifarCNN, in Python'), 'Epochs': str(cnn.epochs),
             'Images': f'{len(cnn.train_imgs):,} training, {len(cnn.test_imgs):,} test',
             'Precision': keras.mixed_precision.global_policy().name,
             'Creation Time': time.strftime('%Y-%m-%d %H:%M %Z'),
             'Software': f'Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, '
                         f'numpy {np.__version__}, matplotlib {matplotlib.__version__}'}
    predictions = getattr(cnn, 'predictions', None)
    if isinstance(predictions, np.ndarray) and predictions.shape == (len(cnn.test_labels), len(cnn.classes)):
        truth, predicted = cnn.test_labels[:, 0], predictions.argmax(axis=1)
        matrix = np.zeros((len(cnn.classes),) * 2, int)
        np.add.at(matrix, (truth, predicted), 1)
        per_class = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)
        confused = np.unravel_index(np.argmax(matrix - np.diag(np.diag(matrix))), matrix.shape)
        facts |= {'Test accuracy': f'{np.mean(predicted == truth):.4f}', 'Mistakes': f'{np.sum(predicted != truth):,}',
                  'Per-class accuracy': ', '.join(f'{cnn.classes[index]} {per_class[index]:.2f}'
                                                  for index in np.argsort(per_class)),
                  'Most confused': f'{cnn.classes[confused[0]]} taken for {cnn.classes[confused[1]]} '
                                   f'{matrix[confused]} times'}
    return {name: printable(value) for name, value in facts.items()}  # PNG text is Unicode: no undecoded bytes


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


def temporary_name(target, suffix=''):
    """A name beside `target` for write_atomically to write first, ending in `suffix`: short, whatever target's
    length, and unique to this write across processes, hosts and PID namespaces."""
    return os.path.join(os.path.dirname(target), f'.cifar_cnn-{uuid.uuid4().hex[:16]}.tmp{suffix}')


def check_place(target):
    """Raises IsADirectoryError if `target` is there but is no regular file (a folder, a pipe, a device)."""
    if os.path.exists(target) and not os.path.isfile(target):
        raise IsADirectoryError(21, NOT_A_PLACE)


def write_atomically(path, write, suffix=''):
    """Calls `write(tmp)` with a temporary name beside `path` (beside the file a link points to), then
    renames it to `path`, so that a failed or interrupted write never leaves half a file there. The temporary
    name ends in `suffix`, for a writer that picks its format by the name's ending (Keras's model.save)."""
    target = real_path(path)
    TEMPORARY_PATHS.add(tmp := temporary_name(target, suffix))
    try:
        check_place(target)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # ours alone, whoever else writes here
        write(tmp)
        os.replace(tmp, target)
    except OSError as error:
        raise CifarError(f'cannot write {path}: {error.strerror or error}') from None
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
    except OSError as error:
        for folder_made in made:
            with contextlib.suppress(OSError):
                os.rmdir(folder_made)
        raise CifarError(f'cannot write {what} to {named}: {error.strerror or error}') from None


def clean_up():
    """Removes this run's temporary files and folders, and the output folders it made and left empty."""
    for path in list(TEMPORARY_PATHS):
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):  # else gone already: renamed into place, or removed by its writer
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
    printed, as StdoutLost: told apart from any other error, and never left in a buffer till exit. What its
    encoding cannot hold (a folder's name on an ASCII terminal) is written escaped, as stderr does."""
    def __init__(self, stream):
        self.stream = stream
    def write(self, text):
        try:
            try:
                written = self.stream.write(text)
            except UnicodeEncodeError:
                encoding = getattr(self.stream, 'encoding', None) or 'ascii'
                written = self.stream.write(text.encode(encoding, 'backslashreplace').decode(encoding))
            self.stream.flush()
            return written
        except OSError as error:
            raise StdoutLost(error) from error
    def flush(self):
        self.write('')
    def __getattr__(self, name):
        return getattr(self.stream, name)


STOP_SIGNALS = {  # what a terminal, a shell's limits or a job manager sends, and the line that says so
    signal.SIGINT: 'Interrupted.', signal.SIGTERM: 'Terminated.',
    **{getattr(signal, name): line for name, line in [('SIGHUP', 'Hung up (the terminal closed).'),
                                                      ('SIGXCPU', 'Stopped: the CPU time limit (ulimit -t) is up.')]
       if hasattr(signal, name)}}  # neither on Windows


def stop_now(signum, frame):
    """Ctrl-C (outside training), SIGTERM, SIGHUP or SIGXCPU: remove what the run left half-made, say so, and
    exit at once (128 + the signal's number); not by an exception, which TensorFlow can turn into an error of
    its own."""
    try:
        clean_up()
        with contextlib.suppress(OSError, StdoutLost):
            sys.stdout.flush()
        with contextlib.suppress(OSError, AttributeError):
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            os.write(stderr_fd, f'\n{STOP_SIGNALS[signum]}\n'.encode())  # even while stderr_dropped() holds fd 2
    finally:
        os._exit(128 + signum)


MIN_TEMPORARY_SPACE = 100 * 2**20  # bytes: TensorFlow's generated code, a model being saved


def run_as_a_program(parse, run, argv):
    """Calls run(parse(argv)) as `python cifar_cnn.py` runs: figures drawn to files only unless --show; signals
    stop it cleanly; TensorFlow's and Keras's temporary files in a folder of the run's own; every write to
    standard output checked; what the environment lacks found first. Returns the exit status: run's, 1 after
    one `error:` line, 2 for a usage error, or 141 when the reader of the output stops reading (`| head`), as
    Unix programs do. The caller's Python is left as it was; in IPython (%run cifar_cnn.py in Jupyter), where no
    one reads the status, it is 0 after the error line, so that IPython adds no line of its own."""
    code = run_program(parse, run, argv)
    return 0 if in_ipython() else code


def run_program(parse, run, argv):
    """run_as_a_program(), but for IPython's exit status."""
    if sys.stdout is None:  # started with >&-
        print('error: standard output is closed, so what this prints would be lost', file=sys.stderr)
        return 1
    try:
        args = parse(argv)
    except SystemExit as usage:  # argparse's --help, or its one error line: said already
        return usage.code
    global COMMAND_LINE
    policy, columns = keras.mixed_precision.global_policy(), os.environ.get('COLUMNS')
    tf_logging = tf.get_logger().level
    try:
        backend = plt.get_backend()
        if args.show:
            plt.switch_backend(backend)  # MPLBACKEND's: its module loaded now, or the line below says why not
    except (ImportError, ValueError) as error:
        print(f"error: MPLBACKEND={os.environ.get('MPLBACKEND')}: matplotlib cannot load it ({first_line(error)}); "
              'unset it', file=sys.stderr)
        return 1
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    stdout, previous_tempdir = sys.stdout, tempfile.tempdir
    try:
        COMMAND_LINE = True
        environment_fit_for(args)
        RUN.update(Command=' '.join(['python cifar_cnn.py', *(sys.argv[1:] if argv is None else argv)]),
                   Seed=str(args.seed))
        if not args.show and not in_ipython():  # Jupyter's inline figures are not shown unless asked (show=False)
            matplotlib.use('Agg')  # draw to files only: never wait for a window
        elif args.show and not can_show():
            print('note: --show: no display here, so the figures are only written to files', file=sys.stderr)
        for signum, handler in handlers.items():
            if handler is not signal.SIG_IGN:  # e.g. SIGINT in a background job: leave it ignored
                signal.signal(signum, stop_now)
        if hasattr(signal, 'SIGXFSZ'):  # past ulimit -f, a write fails with an error line, not a kill (not Windows)
            handlers[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if shutil.get_terminal_size().columns < 40:  # Keras's model summary needs room for its columns
            os.environ['COLUMNS'] = '80'
        tf.get_logger().setLevel('ERROR')  # a second run in one Python (%run) would warn that functions retrace
        tempfile.tempdir = temporary_folder()
        TEMPORARY_PATHS.add(tempfile.tempdir)
        FOLDERS_MADE.clear()  # folders made before, in this process, are not this run's
        sys.stdout = CheckedStdout(sys.stdout)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')  # held back until the run is done: -W error costs no finished model
            code = run(args)
        return code if not held_back_warnings(caught) else 1
    except CifarError as error:
        print(f'error: {printable(error)}', file=sys.stderr)
        return 1
    except MemoryError:  # untested: no test can run out of memory at a chosen step without a private seam
        print('error: out of memory: a full run needs about 2 GB; --limit N trains on fewer images', file=sys.stderr)
        return 1
    except StdoutLost as lost:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())  # what is left unwritten cannot fail at exit
        if isinstance(lost.args[0], BrokenPipeError):  # the reader stopped reading: stop quietly
            return 128 + getattr(signal, 'SIGPIPE', 13)
        print(f'error: cannot write standard output ({lost.args[0].strerror})', file=sys.stderr)
        return 1
    finally:
        sys.stdout, tempfile.tempdir, COMMAND_LINE = stdout, previous_tempdir, False
        try:
            RUN.clear()
            if columns is None:
                os.environ.pop('COLUMNS', None)
            else:
                os.environ['COLUMNS'] = columns
            if plt.get_backend() != backend:
                with contextlib.suppress(ImportError):  # MPLBACKEND's module, never loaded: none to go back to
                    plt.switch_backend(backend)
            keras.mixed_precision.set_global_policy(policy)
            tf.get_logger().setLevel(tf_logging)
        finally:
            clean_up()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)


def temporary_folder():
    """A folder of the run's own in the temporary folder, for TensorFlow's and Keras's files (removed however
    the run ends), or one line saying there is no usable temporary folder."""
    try:
        return tempfile.mkdtemp(prefix='cifar_cnn-')
    except OSError as error:  # the folder gone since environment_fit_for() checked it: a race, untested
        raise no_temporary_folder(error) from None


def no_temporary_folder(error):
    """The one line for a temporary folder that cannot be used, `error` saying why."""
    return CifarError(f'no usable temporary folder ({first_line(error)}): point TMPDIR at one with room')


def environment_fit_for(args):
    """Refuses, in one line, a run this process cannot finish for want of temporary space or address space."""
    try:
        free = shutil.disk_usage(tempfile.gettempdir()).free
    except OSError as error:  # gettempdir(): no usable temporary folder at all (FileNotFoundError)
        raise no_temporary_folder(error) from None
    if free < MIN_TEMPORARY_SPACE:
        raise CifarError(f'the temporary folder {tempfile.gettempdir()} has {free / 2**20:.0f} MB free; a run needs '
                         f'{MIN_TEMPORARY_SPACE / 2**20:.0f}: free some, or point TMPDIR at another folder')
    if problem := address_space_problem(FULL_RUN_ADDRESS_SPACE if args.limit is None and args.load_model is None
                                        else MIN_ADDRESS_SPACE):
        raise CifarError(problem)
    for folder in {matplotlib.get_configdir(), matplotlib.get_cachedir()}:  # made for this process: no writable HOME
        if os.path.basename(folder).startswith('matplotlib-') and folder.startswith(tempfile.gettempdir()):
            TEMPORARY_PATHS.add(folder)  # untested: matplotlib decides this once per process, at import


def held_back_warnings(caught):
    """Shows the warnings a run held back, once it is done; with -W error (or PYTHONWARNINGS=error), each as an
    error line instead of a traceback. Returns whether any was an error."""
    errors = {}  # each warning made an error, once, and how many times it came
    for warning in caught:
        try:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        except Warning as error:
            line = f'{warning.category.__name__}: {printable(first_line(error))}'
            errors[line] = errors.get(line, 0) + 1
    for line, times in errors.items():
        print(f'error: {line} (an error by -W error{f", {times} times" if times > 1 else ""})', file=sys.stderr)
    return bool(errors)
