"""Basic CIFAR CNN: the runnable companion to the blog post "Basic CIFAR CNN".

The post walks through TensorFlow's CNN tutorial as one class, `CifarCNN`. This file is that
class, method for method and in the post's order, fixed to run on TensorFlow 2.16+ / Keras 3:

    python cifar_cnn.py                      # downloads CIFAR-10 through Keras
    python cifar_cnn.py --data-dir DIR       # or reads a local copy, no network
    python cifar_cnn.py --help               # every option

It explores CIFAR-10, normalises it, builds the post's 122,570-parameter CNN, trains it for 10
epochs (~70% test accuracy), and writes the post's four figures into `figures/`. After the post's
steps it draws a confusion matrix, and it can save the trained model (`--save-model`), load one
instead of training (`--load-model`) and classify your own pictures (`--predict`).
"""

import argparse
import os
import pickle
import signal
import sys
import tarfile
import time
import zlib

# Set before TensorFlow loads. It prints a screenful of C++ start-up notes unless told not to;
# and it turns oneDNN's fast CPU kernels on by default only on some Intel CPUs: ask for them.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
# On 2 CPUs (often one core's two hyperthreads), TensorFlow's default of splitting every small op
# over both sometimes halves the speed for whole epochs; one thread per op, two ops at a time, and
# oneDNN working on the calling thread ran every epoch at full speed with ~12% less CPU (README,
# Performance). Measured only on 2 CPUs, so bigger machines keep TensorFlow's defaults.
if (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1) <= 2:
    os.environ.setdefault('TF_NUM_INTRAOP_THREADS', '1')
    os.environ.setdefault('TF_NUM_INTEROP_THREADS', '2')
    os.environ.setdefault('TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD', 'true')

import keras
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from keras import layers, models

CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
BATCH_FILES = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
CIFAR_URL = 'https://www.cs.toronto.edu/~kriz/cifar.html'
EVAL_BATCH_SIZE = 500  # evaluation/prediction batch: any size gives the same numbers, big is faster


class CifarError(Exception):
    """An expected failure (bad data, bad model file, unwritable folder): one line for the user."""


# --- Loading CIFAR-10 ---------------------------------------------------------------------------
# The post calls `datasets.cifar10.load_data()`, which downloads. `--data-dir` reads the same
# `cifar-10-batches-py` pickles from disk instead, with the same result (uint8, NHWC, (N, 1) labels).

class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain Python data, and nothing else.

    A pickle can name any Python callable (`os.system`, ...) and have it run while loading.
    Like Keras 3.15 (`keras/src/datasets/npz_utils.py`), only the globals that rebuild a numpy
    array are allowed, so a tampered batch file is refused instead of executed.
    """

    ALLOWED = frozenset({('numpy', 'ndarray'), ('numpy', 'dtype'),
                         ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct')})

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refused to load: it asks for {module}.{name}, not a numpy array')


def read_batch(name, file):
    """One CIFAR-10 batch (an open binary file) -> (uint8 images (N, 32, 32, 3), uint8 labels (N, 1))."""
    try:
        batch = NumpyOnlyUnpickler(file, encoding='bytes').load()
    except pickle.UnpicklingError as e:
        if str(e).startswith('refused'):
            raise CifarError(f'{name}: {e}') from None
        raise CifarError(f'{name}: truncated or not a CIFAR-10 batch file ({e})') from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, OSError, zlib.error) as e:
        raise CifarError(f'{name}: truncated or not a CIFAR-10 batch file ({e or type(e).__name__})') from None
    if not isinstance(batch, dict) or b'data' not in batch or b'labels' not in batch:
        raise CifarError(f"{name}: not a CIFAR-10 batch file (no b'data' and b'labels' entries)")
    data, labels = batch[b'data'], np.asarray(batch[b'labels'])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, 'shape', type(data).__name__)
        raise CifarError(f'{name}: images have shape {shape}, expected (N, 3072) uint8')
    if labels.shape != (len(data),):
        raise CifarError(f'{name}: {labels.size} labels for {len(data)} images')
    if labels.size and (labels.dtype.kind not in 'iu' or labels.min() < 0 or labels.max() > 9):
        raise CifarError(f'{name}: labels must be integers 0-9, found {labels.min()}..{labels.max()}')
    # Rows are channel-first (3 x 32 x 32); Keras and matplotlib want channels last.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.uint8).reshape(-1, 1)


def read_folder(folder):
    batches = []
    for name in BATCH_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise CifarError(f'{path}: missing (a CIFAR-10 folder holds {", ".join(BATCH_FILES)})')
        with open(path, 'rb') as f:
            batches.append(read_batch(path, f))
    return batches


def read_tarball(path):
    """Reads the batches straight out of cifar-10-python.tar.gz: nothing is extracted to disk."""
    try:
        with tarfile.open(path, 'r:gz') as tar:
            members = tar.getmembers()
            for m in members:  # the checks of tarfile's 'data' filter, for every member
                for name in (m.name, m.linkname if m.issym() or m.islnk() else ''):
                    if name.startswith(('/', '\\')) or '..' in name.replace('\\', '/').split('/'):
                        raise CifarError(f'{path}: refused: member {m.name!r} would extract outside its folder')
            files = {m.name.split('/')[-1]: m for m in members
                     if m.isfile() and m.name.split('/')[-2:-1] == ['cifar-10-batches-py']}
            batches = []
            for name in BATCH_FILES:
                if name not in files:
                    raise CifarError(f'{path}: has no cifar-10-batches-py/{name}')
                batches.append(read_batch(f'{path}:{files[name].name}', tar.extractfile(files[name])))
            return batches
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise CifarError(f'{path}: truncated or not a .tar.gz archive ({e})') from None


def load_cifar10(data_dir=None):
    """Returns `(train_imgs, train_labels), (test_imgs, test_labels)` exactly as
    `keras.datasets.cifar10.load_data()` does; from `data_dir` when given, with no network."""
    if data_dir is None:
        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
        except Exception as e:  # noqa: BLE001 -- Keras raises a bare Exception for any download failure
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise CifarError(f'could not download CIFAR-10 ({reason}). Download cifar-10-python.tar.gz '
                             f'from {CIFAR_URL} yourself and run with --data-dir FOLDER_HOLDING_IT') from None
        return (np.ascontiguousarray(x_train), y_train), (np.ascontiguousarray(x_test), y_test)

    if not os.path.isdir(data_dir):
        raise CifarError(f'--data-dir {data_dir}: no such folder')
    nested = os.path.join(data_dir, 'cifar-10-batches-py')
    tarball = os.path.join(data_dir, 'cifar-10-python.tar.gz')
    if any(os.path.exists(os.path.join(data_dir, name)) for name in BATCH_FILES):
        batches = read_folder(data_dir)
    elif os.path.isdir(nested):
        batches = read_folder(nested)
    elif os.path.isfile(tarball):
        batches = read_tarball(tarball)
    else:
        raise CifarError(f'--data-dir {data_dir}: holds neither cifar-10-batches-py/ nor '
                         f'cifar-10-python.tar.gz (get it from {CIFAR_URL})')
    train_imgs = np.concatenate([x for x, _ in batches[:5]])
    train_labels = np.concatenate([y for _, y in batches[:5]])
    test_imgs, test_labels = batches[5]
    return (train_imgs, train_labels), (np.ascontiguousarray(test_imgs), test_labels)


# --- Speed: precision and callbacks -------------------------------------------------------------

def cpu_has_bfloat16():
    """True when the CPU multiplies bfloat16 natively (Linux flags amx_bf16 / avx512_bf16)."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {'amx_bf16', 'avx512_bf16'})


def choose_precision(requested):
    """`--precision` -> (Keras dtype policy, why). `auto` picks mixed precision only where the
    hardware computes it natively; elsewhere it is slower than float32."""
    gpus = tf.config.list_physical_devices('GPU')
    if gpus:
        cc = tuple(tf.config.experimental.get_device_details(gpus[0]).get('compute_capability') or (0, 0))
        mixed, native = 'mixed_float16', cc >= (7, 0)  # Keras's advice: float16 pays from 7.0 on
        hardware = f'a GPU of compute capability {cc[0]}.{cc[1]}'
    else:
        mixed, native = 'mixed_bfloat16', cpu_has_bfloat16()
        hardware = f'a CPU {"with" if native else "without"} native bfloat16 (amx_bf16/avx512_bf16)'
    if requested == 'float32':
        return 'float32', 'as asked'
    if requested == 'mixed':
        return mixed, f'as asked, on {hardware}'
    return (mixed if native else 'float32'), f'auto, on {hardware}'


class EpochTimer(keras.callbacks.Callback):
    """Records each epoch's wall time (seconds) in `self.times`."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


class StopOnCtrlC(keras.callbacks.Callback):
    """First Ctrl-C: finish the current step, stop, and keep what was learnt.
    A second Ctrl-C interrupts at once (KeyboardInterrupt)."""

    def on_train_begin(self, logs=None):
        self.requested = False
        self.stopped_in_epoch = None  # the epoch cut short, when one was
        self.previous = None
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # main thread, not overridden
            self.previous = signal.signal(signal.SIGINT, self.request_stop)

    def request_stop(self, signum, frame):
        self.requested = True  # no printing here: the progress bar may be mid-write
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.requested and not self.model.stop_training:
            print('\nCtrl-C: training stops here (press again to quit now).', flush=True)
            self.stopped_in_epoch = self.epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def write_atomically(path, write):
    """Calls `write(tmp)` with a temporary name beside `path`, then renames it to `path`, so a
    failed or interrupted write never leaves half a file there (a previous file stays whole)."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f'.{name}.{os.getpid()}.tmp{os.path.splitext(name)[1]}')
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise CifarError(f'cannot write {path}: {e.strerror or e}') from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# --- The post's class ---------------------------------------------------------------------------

class CifarCNN:
    def __init__(self, data_dir=None, figures_dir='figures', epochs=10, batch_size=32, limit=None,
                 show=False, load_data=True):
        self.classes = CLASSES
        self.epochs = epochs            # the post uses self.epochs, self.model and self.history
        self.batch_size = batch_size    # but never sets them: they are set here and in main()
        self.model = None
        self.history = None
        self.epoch_times = []
        self.figures_dir = figures_dir
        self.show = show
        if load_data:
            (self.train_imgs, self.train_labels), (self.test_imgs, self.test_labels) = load_cifar10(data_dir)
            if limit:  # --limit N: a quick run on the first N training and test images
                self.train_imgs, self.train_labels = self.train_imgs[:limit], self.train_labels[:limit]
                self.test_imgs, self.test_labels = self.test_imgs[:limit], self.test_labels[:limit]

    def save_figure(self, fig, name):
        """The one place figures are written: `figures_dir/name`, atomically. It stands where the
        post calls `plt.show()`, and still shows the figure with `--show`."""
        path = os.path.join(self.figures_dir, name)
        write_atomically(path, lambda tmp: fig.savefig(tmp, format='png'))
        print(f'Wrote {path}')
        if self.show:
            plt.show()
        plt.close(fig)
        return path

    def explore_data(self):
        print(f'\n{len(self.train_imgs)} training examples ...')
        print(f'Training image shape: {self.train_imgs[0].shape}')
        print(f'Training labels: {self.train_labels}')
        print(f'Training labels type: {type(self.train_labels)}')

        print(f'\n{len(self.test_imgs)} test examples ...')
        print(f'Test image shape: {self.test_imgs[0].shape}')
        print(f'Test labels: {self.test_labels}')
        print(f'Test labels type: {type(self.test_labels)}')

        fig = plt.figure(figsize=(10, 10))
        for i in range(min(25, len(self.train_imgs))):
            plt.subplot(5, 5, i+1)
            plt.xticks([])
            plt.yticks([])
            plt.grid(False)
            plt.imshow(self.train_imgs[i], cmap=plt.cm.binary)
            plt.xlabel(self.classes[self.train_labels[i][0]])
        self.save_figure(fig, '25-train-images.png')

    def dataset(self, imgs, labels, batch_size, shuffle=False):
        """A tf.data pipeline that keeps the images uint8 and scales each batch to [0, 1] float32.

        The post's `imgs / 255.0` makes float64 copies of everything (1.2 GB) that Keras then
        casts to float32 batch by batch; scaling per batch gives the same numbers in ~1/8 the memory.
        """
        x, y = tf.constant(imgs), tf.constant(labels)
        ds = tf.data.Dataset.range(len(imgs))
        if shuffle:  # a new order every epoch, as fit(shuffle=True) does for arrays
            ds = ds.shuffle(len(imgs), reshuffle_each_iteration=True)
        ds = ds.batch(batch_size).map(lambda i: (tf.cast(tf.gather(x, i), tf.float32) / 255.0, tf.gather(y, i)),
                                      num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    def preprocess_data(self):
        self.train_ds = self.dataset(self.train_imgs, self.train_labels, self.batch_size, shuffle=True)
        self.test_ds = self.dataset(self.test_imgs, self.test_labels, EVAL_BATCH_SIZE)

        fig = plt.figure()
        plt.title(f'{self.classes[self.train_labels[0][0]]} ({self.train_labels[0][0]})')
        plt.imshow(self.train_imgs[0] / np.float32(255.0))
        plt.colorbar()
        plt.grid(False)
        self.save_figure(fig, 'normalized.png')

    def build_model(self):
        model = models.Sequential([
            keras.Input((32, 32, 3)),  # Keras 3 warns about input_shape= on the first layer
            layers.Conv2D(32, (3, 3), activation='relu'),
            layers.MaxPool2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation='relu'),
            layers.MaxPool2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation='relu'),
            layers.Flatten(),
            layers.Dense(64, activation='relu'),
            layers.Dense(10)
        ])

        model.summary()

        model.compile(
            optimizer='adam',
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=['accuracy'],
            # Run up to 32 training steps per call into TensorFlow: the same math, less overhead.
            steps_per_execution=min(32, -(-len(self.train_imgs) // self.batch_size)),
        )

        return model

    def train_model(self):
        timer, ctrl_c, history = EpochTimer(), StopOnCtrlC(), keras.callbacks.History()
        self.model.fit(
            self.train_ds,
            epochs=self.epochs,
            validation_data=self.test_ds,
            callbacks=[timer, ctrl_c, history],
            shuffle=False,  # train_ds shuffles itself every epoch; this only silences a warning
        )
        self.epoch_times = timer.times
        if ctrl_c.stopped_in_epoch is not None:
            finished = ctrl_c.stopped_in_epoch  # keep only the epochs that ran to the end
            history.history = {k: v[:finished] for k, v in history.history.items()}
            history.epoch = history.epoch[:finished]
            self.epoch_times = self.epoch_times[:finished]
            print(f'Training stopped by Ctrl-C after {finished} finished epoch(s); '
                  'the steps below use what was learnt so far.')
        if self.epoch_times:
            times = ', '.join(f'{t:.1f}' for t in self.epoch_times)
            print(f'Epoch times (s): {times}; mean {np.mean(self.epoch_times):.1f} s/epoch')
        return history

    def evaluate_model(self):
        test_loss, test_acc = self.model.evaluate(self.test_ds, verbose=2)
        print(f'Loss: {test_loss}')
        print(f'Accuracy: {test_acc}')
        if self.history is None:  # a model from --load-model has no training history to plot
            return test_loss, test_acc

        accuracy = self.history.history.get('accuracy', [])
        val_accuracy = self.history.history.get('val_accuracy', [])
        fig = plt.figure()
        plt.plot(accuracy, label='accuracy')
        plt.plot(val_accuracy, label='val_accuracy')
        plt.xlabel('Epoch')
        plt.ylabel('Accuracy')
        # The post's ylim([0.5, 1]) hides everything under 0.5, e.g. all of a short run.
        plt.ylim([np.floor(min([0.5, *accuracy, *val_accuracy]) * 10) / 10, 1])
        plt.legend(loc='lower right')
        self.save_figure(fig, 'history.png')
        return test_loss, test_acc

    def plot_img(self, prediction, actual_label, img):
        plt.grid(False)
        plt.xticks([])
        plt.yticks([])

        plt.imshow(img, cmap=plt.cm.binary)

        predicted_label = np.argmax(prediction)
        if predicted_label == actual_label:
            color = 'blue'
        else:
            color = 'red'

        predicted_class = self.classes[predicted_label]
        confidence = 100*np.max(prediction)
        actual_class = self.classes[actual_label]

        plt.xlabel(f'{predicted_class} {confidence :2.0f}% ({actual_class})', color=color)

    def plot_predictions(self, prediction, actual_label):
        plt.grid(False)
        plt.xticks(range(10))
        plt.yticks([])
        thisplot = plt.bar(range(10), prediction, color="#777777")
        plt.ylim([0, 1])
        predicted_label = np.argmax(prediction)

        thisplot[predicted_label].set_color('red')
        thisplot[actual_label].set_color('blue')

    def make_prediction(self):
        prob_model = self.probability_model()  # the post's Sequential([self.model, Softmax()])

        predictions = prob_model.predict(self.test_ds, verbose=0)

        num_rows = 5
        num_cols = 3
        num_images = min(num_rows*num_cols, len(predictions))
        fig = plt.figure(figsize=(2*2*num_cols, 2*num_rows))
        for i in range(num_images):
            plt.subplot(num_rows, 2*num_cols, 2*i+1)
            prediction, actual_label, img = predictions[i], self.test_labels[i][0], self.test_imgs[i]
            self.plot_img(prediction, actual_label, img)
            plt.subplot(num_rows, 2*num_cols, 2*i+2)
            self.plot_predictions(prediction, actual_label)
        plt.tight_layout()
        self.save_figure(fig, 'predictions.png')
        return predictions

    # --- Beyond the post ------------------------------------------------------------------------

    def probability_model(self):
        """The post's softmax wrapper around the model, shared by make_prediction and predict_files."""
        return keras.Sequential([
            self.model,
            layers.Softmax(dtype='float32')  # float32 probabilities under mixed precision too
        ])

    def confusion_matrix(self, predictions):
        """Where the model errs: a 10x10 heat map of true vs predicted class over the whole test
        set, and each class's accuracy, worst first. Returns the matrix (rows: true class)."""
        matrix = tf.math.confusion_matrix(self.test_labels[:, 0], np.argmax(predictions, axis=1),
                                          num_classes=len(self.classes)).numpy()
        per_class = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)
        print('\nPer-class accuracy, worst first:')
        for i in np.argsort(per_class, kind='stable'):
            print(f'  {self.classes[i]:<10} {per_class[i]:.2f}')

        fig = plt.figure(figsize=(9, 8))
        plt.imshow(matrix, cmap=plt.cm.Blues)
        plt.colorbar()
        ticks = range(len(self.classes))
        plt.xticks(ticks, self.classes, rotation=45, ha='right')
        plt.yticks(ticks, self.classes)
        plt.xlabel('Predicted class')
        plt.ylabel('True class')
        plt.title('Confusion matrix (test set)')
        for (i, j), count in np.ndenumerate(matrix):
            plt.text(j, i, count, ha='center', va='center', fontsize=8,
                     color='white' if count > matrix.max() / 2 else 'black')
        plt.tight_layout()
        self.save_figure(fig, 'confusion-matrix.png')
        return matrix

    def save_model(self, path):
        """Writes the model in Keras's .keras format, atomically."""
        write_atomically(path, self.model.save)
        print(f'Saved the trained model to {path}')

    @staticmethod
    def load_model(path):
        """Loads a model saved by --save-model; refuses files that are not one."""
        if not os.path.isfile(path):
            raise CifarError(f'--load-model {path}: no such file')
        try:
            model = keras.models.load_model(path)  # safe_mode: a .keras file cannot run code either
        except Exception as e:  # noqa: BLE001 -- Keras raises many types for a bad file
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise CifarError(f'--load-model {path}: not a loadable .keras model ({reason})') from None
        if tuple(model.input_shape) != (None, 32, 32, 3) or tuple(model.output_shape) != (None, 10):
            raise CifarError(f'--load-model {path}: takes {model.input_shape} and gives {model.output_shape}, '
                             'expected (None, 32, 32, 3) images and (None, 10) class scores')
        print(f'Loaded the model from {path}')
        return model

    def predict_files(self, paths):
        """Classifies image files of any size or mode: converted to RGB, resized to 32x32 (bilinear),
        scaled to [0, 1]. Prints the top 3 classes per file; returns the number of files that failed."""
        prob_model = self.probability_model()
        failed = 0
        for path in paths:
            try:
                img = keras.utils.load_img(path, color_mode='rgb', target_size=(32, 32), interpolation='bilinear')
            except FileNotFoundError:
                print(f'{path}: error: no such file', file=sys.stderr)
                failed += 1
                continue
            except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError (an OSError), a folder, ...
                print(f'{path}: error: not a readable image ({type(e).__name__})', file=sys.stderr)
                failed += 1
                continue
            x = keras.utils.img_to_array(img, dtype='float32')[np.newaxis] / 255.0
            probs = prob_model.predict(x, verbose=0)[0]
            top = np.argsort(probs)[::-1][:3]
            print(f'{path}: ' + ', '.join(f'{self.classes[i]} {probs[i]:.2f}' for i in top))
        return failed


# --- Command line -------------------------------------------------------------------------------

def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a whole number') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'{value} is less than 1')
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Basic CIFAR CNN: the blog post\'s program, runnable.')
    p.add_argument('--epochs', type=positive_int, default=10, help='training epochs (default: 10)')
    p.add_argument('--batch-size', type=positive_int, default=32, help='training batch size (default: 32)')
    p.add_argument('--seed', type=int, default=None, help='random seed: same seed, same machine, same numbers')
    p.add_argument('--data-dir', metavar='DIR', help='read CIFAR-10 from DIR (cifar-10-batches-py, a folder '
                   'holding it, or one holding cifar-10-python.tar.gz) instead of downloading it')
    p.add_argument('--figures-dir', metavar='DIR', default='figures', help='where figures go (default: figures)')
    p.add_argument('--show', action='store_true', help='also open each figure in a window, as the post does')
    p.add_argument('--limit', type=positive_int, metavar='N',
                   help='use only the first N training and N test images (a quick run)')
    p.add_argument('--precision', choices=['auto', 'float32', 'mixed'], default='auto',
                   help='auto (default): mixed precision where the hardware has it natively, else float32')
    p.add_argument('--save-model', metavar='PATH', help='save the trained model to PATH (.keras)')
    p.add_argument('--load-model', metavar='PATH', help='load a model saved with --save-model instead of training')
    p.add_argument('--predict', metavar='IMAGE', nargs='+', help='classify these image files and print the top 3')
    args = p.parse_args(argv)
    for flag in ('save_model', 'load_model'):
        path = getattr(args, flag)
        if path is not None and not path.endswith('.keras'):
            p.error(f'--{flag.replace("_", "-")} {path}: the file name must end in .keras')
    return args


def check_writable(folder, what):
    """Fails before any slow step if `what` cannot be written to `folder`."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CifarError(f'cannot write {what} to {folder}: it is a file, not a folder')
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f'.write-test.{os.getpid()}')
        with open(probe, 'w'):
            pass
        os.remove(probe)
    except OSError as e:
        raise CifarError(f'cannot write {what} to {folder}: {e.strerror or e}') from None


def run(args):
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    # What can fail in a second fails before the slow steps: the model file, the output folders.
    loaded = CifarCNN.load_model(args.load_model) if args.load_model else None
    if loaded is not None and args.predict:  # answer and exit: no data set, no training, no figures
        cnn = CifarCNN(load_data=False)
        cnn.model = loaded
        return 1 if cnn.predict_files(args.predict) else 0
    check_writable(args.figures_dir, 'figures')
    if args.save_model:
        check_writable(os.path.dirname(os.path.abspath(args.save_model)), 'the model')
    if loaded is None:
        policy, why = choose_precision(args.precision)
        keras.mixed_precision.set_global_policy(policy)
        print(f'Precision: {policy} ({why})')

    cnn = CifarCNN(data_dir=args.data_dir, figures_dir=args.figures_dir, epochs=args.epochs,
                   batch_size=args.batch_size, limit=args.limit, show=args.show)
    cnn.explore_data()
    cnn.preprocess_data()
    if loaded is None:
        cnn.model = cnn.build_model()
        cnn.history = cnn.train_model()
        if args.save_model:
            cnn.save_model(args.save_model)
    else:
        cnn.model = loaded
    cnn.evaluate_model()
    predictions = cnn.make_prediction()
    cnn.confusion_matrix(predictions)
    if args.predict:
        return 1 if cnn.predict_files(args.predict) else 0
    return 0


def main(argv=None):
    args = parse_args(argv)
    if not args.show:
        matplotlib.use('Agg')  # draw to files only: never wait for a window
    try:
        return run(args)
    except CifarError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('\nInterrupted.', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
