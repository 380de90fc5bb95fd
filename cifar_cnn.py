"""Basic CIFAR CNN, runnable: the blog post's `CifarCNN` on today's TensorFlow and Keras 3.

Read it beside the post: its imports, then `class CifarCNN`, its methods in the post's order, each change
marked `# post:` with the reason (bench/post_as_printed.py is the post, fixed only to run); then what
readers ask next, the plumbing and the command line. Or type the post's calls into Python or Jupyter.
"""

import contextlib
import math
import os
import re
import sys
import tempfile

# Before TensorFlow loads: what it reads then (yours win; the thread layout on 2 CPUs: bench/README.md), a quiet start.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
CPU_FLAGS = set()  # the CPU's feature flags, e.g. {'avx2', 'avx512_bf16'} (Linux; elsewhere none)
with contextlib.suppress(OSError), open('/proc/cpuinfo') as cpuinfo:
    CPU_FLAGS = set(next((line for line in cpuinfo if line.startswith('flags')), ':').split(':', 1)[1].split())
if len(os.sched_getaffinity(0) if hasattr(os, 'sched_getaffinity') else range(os.cpu_count() or 1)) <= 2:
    os.environ.setdefault('TF_NUM_INTRAOP_THREADS', '1' if 'avx512_bf16' in CPU_FLAGS else '2')
    os.environ.setdefault('TF_NUM_INTEROP_THREADS', '2' if 'avx512_bf16' in CPU_FLAGS else '1')
    os.environ.setdefault('TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD', 'true')
STARTUP_NOTES = re.compile(  # a failed search for a GPU is no error where no NVIDIA driver is installed
    r'WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR'
    r'|I\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard)\.cc:\d+\] '
    r'|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.'
    + ('' if os.path.exists('/proc/driver/nvidia') else r'|E\d{4} .* cuda_platform\.cc:\d+\] failed call to cuInit'))
real_stderr = 2  # where file descriptor 2 goes while stderr_dropped() holds it

@contextlib.contextmanager
def stderr_dropped(lines):
    """Drops the `lines` that C code writes straight to file descriptor 2, out of Python's reach
    (TensorFlow's start-up notes, libtiff's remarks on a damaged file); every other line is passed on."""
    if sys.stderr is None:  # started with 2>&-: nothing to drop
        yield
        return
    global real_stderr
    sys.stderr.flush()
    real_stderr = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(real_stderr, 2)
            os.close(real_stderr)
            real_stderr = 2
            caught.seek(0)
            sys.stderr.writelines(line for line in caught.read().decode(errors='replace').splitlines(True)
                                  if not lines.match(line))

def cannot_start(error):
    """Ctrl-C while the imports below run, or an environment they fail in: in `python cifar_cnn.py` one line
    and exit 130 or 1, as for any failure; imported into Python or Jupyter, the error itself."""
    if isinstance(error, ValueError) and 'MPLBACKEND' in os.environ:  # matplotlib reads it as it loads
        error = ImportError(f"MPLBACKEND={os.environ['MPLBACKEND']}: not a backend matplotlib knows; unset it")
    if __name__ != '__main__' or isinstance(error, ValueError):
        raise error
    sys.stderr.write('\nInterrupted.\n' if isinstance(error, KeyboardInterrupt) else f'error: {error}\n')
    raise SystemExit(130 if isinstance(error, KeyboardInterrupt) else 1)

try:  # the post's imports, and numpy and keras, which it uses without importing them
    if os.environ.get('KERAS_BACKEND', 'tensorflow') != 'tensorflow':
        cannot_start(ImportError(f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}: runs on TensorFlow only; unset it"))
    import matplotlib  # it reads MPLBACKEND as it loads: a ValueError here, before TensorFlow's 3 s
    with stderr_dropped(STARTUP_NOTES):
        import keras
        import matplotlib.pyplot as plt
        import numpy as np
        import tensorflow as tf
        from tensorflow.keras import layers, models
        tf.config.list_physical_devices('GPU')  # TensorFlow looks for a GPU once, and notes a failure
except (KeyboardInterrupt, ValueError) as error:
    cannot_start(error)


class CifarCNN:
    """The post's class. CifarCNN() downloads CIFAR-10 once, as the post does; data_dir= reads a local copy
    instead; limit=N keeps the first N training and N test images. Each figure is shown where there is a
    display (show= decides instead) and written to figures_dir if given. variations=: Beyond the post."""

    def __init__(self, data_dir=None, epochs=10, batch_size=32, limit=None, figures_dir=None, show=None,
                 variations=None):
        check_arguments(data_dir=data_dir, epochs=epochs, batch_size=batch_size, limit=limit,  # not in the
                        figures_dir=figures_dir, show=show, variations=variations)  # post: as the CLI does
        self.classes = CLASSES  # post: the list itself, here in CLASSES (below) for predict_files too
        # post: datasets.cifar10.load_data(), here too unless data_dir= names a local copy
        (self.train_imgs, self.train_labels), (self.test_imgs, self.test_labels) = load_cifar10(data_dir, limit)
        self.epochs, self.batch_size = epochs, batch_size  # post: self.epochs, self.model and
        self.model = self.history = None                    # self.history are used, never set
        self.figures_dir, self.show = figures_dir, show
        self.variations = variations or Variations()  # Beyond the post: --augment, --dropout, ...

    def explore_data(self):
        print(f'\n{len(self.train_imgs)} training examples ...')
        print(f'Training image shape: {self.train_imgs[0].shape}')
        print(f'Training labels: {np.array2string(self.train_labels, threshold=0)}')  # post: {self.train_labels}:
        print(f'Training labels type: {type(self.train_labels)}')  # numpy lists 1,000 or fewer in full

        print(f'\n{len(self.test_imgs)} test examples ...')
        print(f'Test image shape: {self.test_imgs[0].shape}')
        print(f'Test labels: {np.array2string(self.test_labels, threshold=0)}')  # post: {self.test_labels}
        print(f'Test labels type: {type(self.test_labels)}')

        plt.figure(figsize=(10, 10))
        for i in range(min(25, len(self.train_imgs))):  # post: range(25); limit= can leave fewer
            plt.subplot(5, 5, i+1)
            plt.xticks([])
            plt.yticks([])
            plt.grid(False)
            plt.imshow(self.train_imgs[i], cmap=plt.cm.binary)
            plt.xlabel(self.classes[self.train_labels[i][0]])
        self.show_figure('25-train-images.png')  # post: plt.show()

    def preprocess_data(self):
        # post: self.train_imgs / 255.0 and self.test_imgs / 255.0, float64 copies of the data set
        # (1.2 GB). The images stay uint8; tf.data pipelines scale each batch to float32 [0, 1].
        self.train_ds, self.validation_ds, self.test_ds = self.pipelines()

        plt.figure()
        plt.title(f'{self.classes[self.train_labels[0][0]]} ({self.train_labels[0][0]})')
        plt.imshow(self.train_imgs[0] / 255.0)  # post: self.train_imgs[0], divided above
        plt.colorbar()
        plt.grid(False)
        self.show_figure('normalized.png')  # post: plt.show()

    def build_model(self):
        model = models.Sequential(self.vary([  # vary(): --batch-norm, --dropout; none by default
            keras.Input((32, 32, 3)),  # post: input_shape=(32, 32, 3) below, which Keras 3 warns about
            layers.Conv2D(32, (3, 3), activation='relu'),
            layers.MaxPool2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation='relu'),
            layers.MaxPool2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation='relu'),
            layers.Flatten(),
            layers.Dense(64, activation='relu'),
            layers.Dense(10)
        ]))

        model.summary()

        model.compile(
            optimizer=self.optimizer(),  # post: 'adam', which this is unless --cosine-decay
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=['accuracy'],
            steps_per_execution=STEPS_PER_EXECUTION,  # not in the post: faster, same results
        )

        return model

    def train_model(self):
        self.needs('train_model', 'test_ds', 'model')  # not in the post: a step called too early, one line
        return self.model.fit(
            self.train_ds,  # post: self.train_imgs, self.train_labels (see preprocess_data)
            epochs=self.epochs,
            validation_data=self.validation_ds,  # post: the test set; the same unless --validation-split
            callbacks=self.callbacks(),  # not in the post: epoch times; Ctrl-C keeps finished epochs
            shuffle=False,  # train_ds shuffles itself every epoch; fit() would warn
            verbose=progress_verbosity(),  # not in the post: no progress bar's escape codes in a log file
        )

    def evaluate_model(self):
        self.needs('evaluate_model', 'test_ds', 'model')
        test_loss, test_acc = self.model.evaluate(self.test_ds, verbose=2)  # post: test_imgs, test_labels
        print(f'Loss: {test_loss}')
        print(f'Accuracy: {test_acc}')
        self.history = self.history or getattr(self.model, 'history', None)  # not in the post: train_model()'s,
        if self.history is None:  # even if not kept in cnn.history; a model from --load-model has none to plot
            return
        self.needs('evaluate_model', 'history')

        plt.figure()  # post: none, drawing on whatever figure is current
        plt.plot(self.history.history['accuracy'], label='accuracy', marker='o')  # post: no marker, so
        plt.plot(self.history.history['val_accuracy'], label=self.validation_label, marker='o')  # 1 epoch: nothing
        plt.xlim(-0.5, max(len(self.history.epoch), 1) - 0.5)  # post: none; whole epochs (0, 1, ...)
        plt.locator_params(axis='x', integer=True)
        plt.xlabel('Epoch')
        plt.ylabel('Accuracy')
        lowest = min([0.5, *self.history.history['accuracy'], *self.history.history['val_accuracy']])
        plt.ylim([math.floor(lowest * 10) / 10, 1])  # post: [0.5, 1], hiding all under 0.5 (short runs)
        plt.legend(loc='best')  # post: 'lower right', over the points of a short run
        self.show_figure('history.png')  # post: plt.show()

    def plot_img(self, prediction, actual_label, img):
        check_prediction(prediction, actual_label, img)  # not in the post: a wrong argument, one line
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
        check_prediction(prediction, actual_label)  # not in the post
        plt.grid(False)
        plt.xticks(range(10))
        plt.yticks([])
        thisplot = plt.bar(range(10), prediction, color="#777777")
        plt.ylim([0, 1])
        predicted_label = np.argmax(prediction)

        thisplot[predicted_label].set_color('red')
        thisplot[actual_label].set_color('blue')

    def make_prediction(self):
        self.needs('make_prediction', 'test_ds', 'model')
        prob_model = keras.Sequential([
            self.model,
            layers.Softmax(dtype='float32')  # post: Softmax(); in mixed precision that sums to 1 ± 1%
        ])

        predictions = prob_model.predict(self.test_ds, verbose=0)  # post: predict(self.test_imgs)
        self.predictions = predictions  # not in the post: kept for the steps beyond it

        num_rows = 5
        num_cols = 3
        num_images = min(num_rows*num_cols, len(predictions))  # post: num_rows*num_cols; see limit=
        plt.figure(figsize=(2*2*num_cols, 2*num_rows))
        for i in range(num_images):
            plt.subplot(num_rows, 2*num_cols, 2*i+1)
            prediction, actual_label, img = predictions[i], self.test_labels[i][0], self.test_imgs[i]
            self.plot_img(prediction, actual_label, img)
            plt.subplot(num_rows, 2*num_cols, 2*i+2)
            self.plot_predictions(prediction, actual_label)
        plt.tight_layout()
        self.show_figure('predictions.png')  # post: plt.show()

    # ═══ Beyond the post: what readers ask next ══════════════════════════════════════════════════════
    # Each figure in two steps: one computes what it shows and returns it; plot_... draws it.

    def confusion_matrix(self):
        """How often each true class (rows) was predicted as each class (columns) over the test set."""
        self.needs('confusion_matrix', 'predictions')
        return tf.math.confusion_matrix(self.test_labels[:, 0], np.argmax(self.predictions, axis=1),
                                        num_classes=len(self.classes)).numpy()

    def plot_confusion_matrix(self):
        """Where the model errs: the confusion matrix as a heat map; each class's accuracy, worst first."""
        self.needs('plot_confusion_matrix', 'predictions')
        matrix = self.confusion_matrix()
        counts = matrix.sum(axis=1)
        per_class = np.diag(matrix) / np.maximum(counts, 1)
        print('\nPer-class accuracy, worst first:')
        for i in np.argsort(np.where(counts > 0, per_class, np.inf), kind='stable'):  # no images: last
            print(f'  {self.classes[i]:<10} {f"{per_class[i]:.2f}" if counts[i] else "no test images"}')

        plt.figure(figsize=(9, 8))
        plt.imshow(matrix, cmap=plt.cm.Blues)
        plt.colorbar()
        plt.xticks(range(len(self.classes)), self.classes, rotation=45, ha='right')
        plt.yticks(range(len(self.classes)), self.classes)
        plt.xlabel('Predicted class')
        plt.ylabel('True class')
        plt.title('Confusion matrix (test set)')
        for (i, j), count in np.ndenumerate(matrix):
            plt.text(j, i, count, ha='center', va='center', fontsize=8,
                     color='white' if count > matrix.max() / 2 else 'black')
        plt.tight_layout()
        self.show_figure('confusion-matrix.png')

    def mistakes(self):
        """The indices of the test images the model got wrong, the most confident mistake first."""
        self.needs('mistakes', 'predictions')
        wrong = np.flatnonzero(np.argmax(self.predictions, axis=1) != self.test_labels[:, 0])
        return wrong[np.argsort(-self.predictions[wrong].max(axis=1), kind='stable')]

    def plot_mistakes(self):
        """The 15 most confident mistakes, drawn as predictions.png is: forgivable (a cat taken for a dog)?"""
        self.needs('plot_mistakes', 'predictions')
        wrong = self.mistakes()
        plt.figure(figsize=(12, 10))
        for i, k in enumerate(wrong[:15]):
            plt.subplot(5, 6, 2*i+1)
            self.plot_img(self.predictions[k], self.test_labels[k, 0], self.test_imgs[k])
            plt.subplot(5, 6, 2*i+2)
            self.plot_predictions(self.predictions[k], self.test_labels[k, 0])
        plt.suptitle(f'The most confident of {len(wrong):,} mistakes on {len(self.test_labels):,} test images')
        plt.tight_layout()
        self.show_figure('mistakes.png')

    def filters(self):
        """The first convolution's 32 learned 3x3x3 kernels, shape (32, 3, 3, 3)."""
        self.needs('filters', 'model')
        return np.moveaxis(keras.ops.convert_to_numpy(self.convolutions()[0].kernel), -1, 0)

    def plot_filters(self):
        """The kernels as tiny RGB patches, each scaled to its own range: what the network looks for first."""
        self.needs('plot_filters', 'model')
        plt.figure(figsize=(8, 4.6))
        for i, kernel in enumerate(self.filters()):
            plt.subplot(4, 8, i+1)
            plt.xticks([])
            plt.yticks([])
            plt.imshow((kernel - kernel.min()) / max(np.ptp(kernel), 1e-12))
        plt.suptitle("The first convolution's 32 filters (3x3 pixels, RGB)")
        self.show_figure('filters.png')

    def feature_maps(self, index=0):
        """What test image `index` becomes after each convolution: one array per layer (30x30x32, ...)."""
        self.needs('feature_maps', 'model')
        check_number('index', index, 0, len(self.test_imgs) - 1)
        probe = keras.Model(self.model.layers[0].input, [conv.output for conv in self.convolutions()])
        return [keras.ops.convert_to_numpy(m)[0].astype(np.float32)
                for m in probe(self.test_imgs[index:index+1] / np.float32(255), training=False)]

    def plot_feature_maps(self, index=0, channels=8):
        """Each layer's `channels` most active maps for test image `index`, at the layer's size."""
        self.needs('plot_feature_maps', 'model')
        check_number('channels', channels, 1, 32)
        maps = self.feature_maps(index)
        plt.figure(figsize=(1.3 * (channels + 1), 1.5 * len(maps)))
        for row, layer_maps in enumerate(maps):
            plt.subplot(len(maps), channels + 1, row * (channels + 1) + 1)
            plt.axis('off')
            plt.imshow(self.test_imgs[index])
            plt.title(f'conv {row + 1}: {"x".join(map(str, layer_maps.shape))}', fontsize=8)
            for j, channel in enumerate(np.argsort(-layer_maps.mean(axis=(0, 1)), kind='stable')[:channels]):
                plt.subplot(len(maps), channels + 1, row * (channels + 1) + j + 2)
                plt.axis('off')
                plt.imshow(layer_maps[..., channel], cmap='viridis')
                plt.title(f'#{channel}', fontsize=7)
        plt.suptitle(f'Test image {index} ({self.classes[self.test_labels[index][0]]}) after each convolution')
        plt.tight_layout()
        self.show_figure('feature-maps.png')

    def grad_cam(self, imgs):
        """Grad-CAM: where in each image (N, 32, 32, 3) the evidence for its predicted class lies. The last
        convolution's maps, weighted by how much the class score rises with each, summed, kept where
        positive, upsampled to 32x32. Returns heat maps (N, 32, 32), each scaled to peak at 1."""
        self.needs('grad_cam', 'model')
        pixels = as_numbers(imgs, 'grad_cam(imgs): imgs')
        if pixels.ndim != 4 or pixels.shape[1:] != (32, 32, 3) or not len(pixels):
            raise CifarError(f'grad_cam(imgs): imgs must be images of shape (N, 32, 32, 3), not {pixels.shape}')
        probe = keras.Model(self.model.layers[0].input, [self.convolutions()[-1].output, self.model.layers[-1].output])
        with tf.GradientTape() as tape:
            maps, logits = probe(tf.constant(pixels) / 255.0, training=False)
            scores = tf.gather(logits, tf.argmax(logits, axis=1), batch_dims=1)
        maps, grads = tf.cast(maps, tf.float32), tf.cast(tape.gradient(scores, maps), tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one per channel
        heat = tf.image.resize(tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., None], (32, 32))[..., 0]
        return (heat / tf.maximum(tf.reduce_max(heat, axis=(1, 2), keepdims=True), 1e-12)).numpy()

    def plot_grad_cam(self, count=15):
        """Grad-CAM over the first `count` test images (predictions.png's), titled with the predicted class."""
        self.needs('plot_grad_cam', 'model')
        check_number('count', count, 1, 50)
        imgs, labels = self.test_imgs[:count], self.test_labels[:count, 0]  # fewer if there are fewer
        heat = self.grad_cam(imgs)
        predicted = np.argmax(self.model.predict(imgs / np.float32(255), verbose=0), axis=1)
        fig = plt.figure(figsize=(10.5, 2.2 * math.ceil(len(imgs) / 5)))
        for i, img in enumerate(imgs):
            plt.subplot(math.ceil(len(imgs) / 5), 5, i+1)
            plt.axis('off')
            plt.imshow(img)
            plt.imshow(heat[i], cmap='jet', alpha=0.45, interpolation='bilinear', vmin=0, vmax=1)
            truth = '' if predicted[i] == labels[i] else f' ({self.classes[labels[i]]})'
            plt.title(self.classes[predicted[i]] + truth, fontsize=9, color='red' if truth else 'blue')
        plt.suptitle('Grad-CAM: where the evidence for the predicted class lies')
        plt.tight_layout()
        fig.colorbar(plt.cm.ScalarMappable(cmap='jet'), ax=fig.axes, shrink=0.8,
                     label='evidence for the predicted class (0: none, 1: most)')
        self.show_figure('grad-cam.png')

    def convolutions(self):
        return [layer for layer in self.model.layers if isinstance(layer, layers.Conv2D)]

    def vary(self, post_layers):  # the post's layers, with --batch-norm's and --dropout's (--augment: pipeline)
        v, varied = self.variations, []
        for layer in post_layers:
            if v.dropout and isinstance(layer, layers.Dense):
                varied.append(layers.Dropout(v.dropout))
            varied.append(layer)
            if v.batch_norm and isinstance(layer, layers.Conv2D):
                varied.append(fused(layers.BatchNormalization()))
        return varied

    # ─── The plumbing the post's methods call ────────────────────────────────────────────────────────

    def pipelines(self):  # (train, validation, test): validation on the test set unless --validation-split
        kept, held_out = self.split()
        train = pipeline(self.train_imgs[:kept], self.train_labels[:kept], self.batch_size, shuffle=True,
                         augment=self.variations.augment)
        test = pipeline(self.test_imgs, self.test_labels, EVAL_BATCH_SIZE)
        if not held_out:
            self.validation_label = 'val_accuracy'
            return train, test, test
        self.validation_label = f'val_accuracy (last {held_out:,} training images)'
        return train, pipeline(self.train_imgs[kept:], self.train_labels[kept:], EVAL_BATCH_SIZE), test

    def split(self):  # (training images trained on, training images held out for --validation-split)
        held_out = math.ceil(len(self.train_imgs) * self.variations.validation_split)
        if held_out >= len(self.train_imgs):
            raise CifarError(f'--validation-split {self.variations.validation_split} leaves no training '
                             f'images out of {len(self.train_imgs)}')
        return len(self.train_imgs) - held_out, held_out

    def optimizer(self):  # the post's 'adam'; --cosine-decay: from 1e-3 down a cosine to 0, step by step
        if not self.variations.cosine_decay:
            return 'adam'
        steps = self.epochs * math.ceil(self.split()[0] / self.batch_size)
        return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=steps))

    def callbacks(self):  # fit()'s additions: a truthful progress bar, a clean stop on Ctrl-C, epoch times
        callbacks = [ProgressBar(), StopOnCtrlC(), EpochTimer()]
        if self.variations.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(self.variations.tensorboard))
        return callbacks

    def needs(self, step, *made):  # stops `step` with one line if what it needs (STEPS_FIRST) is not made yet
        for name in made:
            if not isinstance(value := getattr(self, name, None), STEPS_FIRST[name][0]):
                brackets = f' (cnn.{name} holds the method itself: add the brackets)' if callable(value) else ''
                raise CifarError(f'{step}() needs {STEPS_FIRST[name][1]} first{brackets}')
            if name == 'model' and not (value.compiled and self.convolutions()) or name == 'predictions' and \
                    value.shape != (len(self.test_imgs), len(self.classes)):  # one not made by that step
                raise CifarError(f'{step}() needs {STEPS_FIRST[name][1]} first (cnn.{name} is not what it makes)')

    def show_figure(self, name):
        """The one place figures go, where the post calls plt.show(): written to figures_dir/name if a folder
        was given (atomically), then shown where there is a display (inline in Jupyter, a window on a desktop);
        with neither, the first figure says where figures can go."""
        fig, path = plt.gcf(), os.path.join(self.figures_dir or '', name)
        if self.figures_dir:
            check_writable(self.figures_dir, 'figures')
            write_atomically(path, lambda tmp: fig.savefig(tmp, format='png'))
            print(f'Wrote {printable(path)}')
        if self.show if self.show is not None else can_show():
            plt.show()
        elif self.show is None and not self.figures_dir and not getattr(self, 'said_where_figures_go', False):
            print("No display here, so no figure is shown: CifarCNN(figures_dir='figures') writes them to files.")
            self.said_where_figures_go = True
        plt.close(fig)


# ═══ Beyond the post, continued: the experiments' options, keeping the model, your own pictures ═══════
# (and what the rest of the file imports, besides the post's imports at the top)

import argparse
import dataclasses
import gzip
import io
import json
import numbers
import pickle
import pickletools
import shutil
import signal
import stat
import struct
import tarfile
import time
import warnings
import zipfile
import zlib

import h5py
from PIL import Image, ImageOps

CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
FIGURES = ['25-train-images.png', 'normalized.png', 'history.png', 'predictions.png', 'confusion-matrix.png',
           'mistakes.png', 'filters.png', 'feature-maps.png', 'grad-cam.png']  # what a run's steps write
EVAL_BATCH_SIZE = 500     # evaluation and prediction: the same numbers as batches of 32, in fewer steps
STEPS_PER_EXECUTION = 32  # training steps per call into TensorFlow: the same math, less overhead

@dataclasses.dataclass
class Variations:
    """The reader's next experiments, one option each; the defaults are the post's."""
    augment: bool = False         # random flips and shifts of the training images
    batch_norm: bool = False      # BatchNormalization after each convolution
    dropout: float = 0.0          # Dropout(rate) before each dense layer
    validation_split: float = 0.0  # validate on the last fraction of training images, not the test set
    cosine_decay: bool = False    # learning rate along a cosine from 1e-3 to 0, step by step
    tensorboard: str | None = None  # TensorBoard log folder
    def __post_init__(self):
        check_arguments(**dataclasses.asdict(self))
        self.dropout, self.validation_split = float(self.dropout), float(self.validation_split)  # Keras saves these
    def __str__(self):  # the options in effect, as typed: '--augment --dropout 0.3', or "none (the post's ...)"
        flags = [f'--{field.name.replace("_", "-")}' + ('' if value is True else f' {value}')
                 for field in dataclasses.fields(self) if (value := getattr(self, field.name))]
        return ' '.join(flags) or "none (the post's network and training)"

def save_model(model, path):  # --save-model: Keras's .keras format, written atomically
    write_atomically(path, model.save)
    print(f'Saved the trained model to {printable(path)}')

def load_model(path):
    """--load-model: the network build_model makes, once the file's config.json describes it, with the file's
    weights once they check out: nothing of the file is handed to Keras."""
    label = f'--load-model {path}'
    config, weights = read_keras_file(path)
    model = matching_network(config, label)
    read_weights(model, weights, label)
    print(f'Loaded the model from {printable(path)}')
    return model

def predict_files(model, paths):
    """--predict: each image's top 3 classes, EVAL_BATCH_SIZE images at a time. Returns how many failed."""
    failed = 0
    for start in range(0, len(paths), EVAL_BATCH_SIZE):
        read = []  # (path, pixels): a file named twice is answered twice
        for path in paths[start:start + EVAL_BATCH_SIZE]:
            try:
                read.append((path, read_image(path)))
            except CifarError as e:
                print(f'error: {printable(e)}', file=sys.stderr)
                failed += 1
        if read:
            logits = model.predict_on_batch(np.stack([pixels for _, pixels in read]))
            probs = keras.ops.convert_to_numpy(keras.ops.softmax(keras.ops.cast(logits, 'float32')))
            for (path, _), p in zip(read, probs):
                print(f'{printable(path)}: ' + ', '.join(f'{CLASSES[i]} {p[i]:.2f}' for i in np.argsort(p)[::-1][:3]))
    return failed


# ═══ Support: the plumbing ═══════════════════════════════════════════════════════════════════════════
# Everything a user hands the program is untrusted: each reader checks sizes and types before it
# allocates or trusts, and turns what is wrong into one CifarError line naming the file or option.

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

def printable(text):  # one line, whatever a name holds: a newline, a terminal's escape codes, bytes not UTF-8
    return ''.join(c if c.isprintable() else c.encode('unicode_escape').decode() for c in str(text))

def first_line(error):
    """An exception as one short line: its message's first line that says something (Keras's multi-line
    errors open with a line ending in ':'), else its type's name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if not line.endswith(':')), lines[0] if lines else type(error).__name__)[:200]

# ─── One set of rules for CifarCNN's arguments, Variations and the command line's options ────────────
RULES = {  # whole numbers: (lowest, highest); fractions: (0.0, 1.0), from 0, which is off, up to but not 1
    'epochs': (1, 10_000), 'batch_size': (1, 4096), 'limit': (1, 50_000), 'seed': (0, 2**32 - 1),
    'dropout': (0.0, 1.0), 'validation_split': (0.0, 1.0), 'variations': Variations,
    **dict.fromkeys(['show', 'augment', 'batch_norm', 'cosine_decay'], bool),
    **dict.fromkeys(['data_dir', 'figures_dir', 'tensorboard', 'save_model', 'load_model', 'predict'], os.PathLike)}
OPTIONAL = {'data_dir', 'figures_dir', 'tensorboard', 'limit', 'show', 'variations'}  # None: not given
STEPS_FIRST = {  # what a step may need made first: its type, and the step that makes it
    'test_ds': (tf.data.Dataset, 'the data prepared: cnn.preprocess_data()'),
    'model': (keras.Model, 'a model: cnn.model = cnn.build_model()'),
    'history': (keras.callbacks.History, 'the history train_model() returns: cnn.history = cnn.train_model()'),
    'predictions': (np.ndarray, "the model's predictions: cnn.make_prediction()")}

def whole(value, low, high):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high

def wrong(name, value):
    """What is wrong with `value` for the argument or option `name` (RULES); None if nothing."""
    rule = RULES[name]
    if value is None:
        ok, allowed = name in OPTIONAL, 'given'
    elif rule is os.PathLike:
        text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
        ok = isinstance(text, str) and 0 < len(text) <= 4096 and '\0' not in text
        allowed = 'a file or folder name (1 to 4,096 characters, no NUL)'
    elif isinstance(rule, type):
        ok, allowed = isinstance(value, rule), 'True or False' if rule is bool else f'{rule.__name__}(...)'
    elif isinstance(rule[0], int):
        ok, allowed = whole(value, *rule), f'a whole number from {rule[0]:,} to {rule[1]:,}'
    else:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and rule[0] <= value < rule[1]
        allowed = f'a number from {rule[0]:g} (off) up to, not including, {rule[1]:g}'
    return None if ok else f'must be {allowed}'

def check_arguments(**given):
    for name, value in given.items():
        if why := wrong(name, value):
            raise CifarError(f'{name}={value!r}: {why}')

def check_number(name, value, low, high):
    if not whole(value, low, high):
        raise CifarError(f'{name}={value!r}: must be a whole number from {low:,} to {high:,}')

def as_numbers(value, name):  # numbers, from numpy, TensorFlow or lists alike, or one line saying what they are not
    try:
        return np.asarray(value, np.float32)
    except (ValueError, TypeError):
        raise CifarError(f'{name} must be numbers, not {type(value).__name__} {str(value)[:40]}') from None

def check_prediction(prediction, actual_label, img=None):  # plot_img's and plot_predictions' arguments
    if as_numbers(prediction, 'prediction').shape != (len(CLASSES),):
        raise CifarError(f'prediction must be {len(CLASSES)} probabilities, one per class (a row of cnn.predictions)')
    check_number('actual_label', actual_label, 0, len(CLASSES) - 1)
    if img is None:  # plot_predictions: no picture
        return
    shape = as_numbers(img, 'img').shape
    if not (len(shape) == 2 or len(shape) == 3 and shape[2] in (3, 4)) or 0 in shape:
        raise CifarError(f'img must be a picture, (height, width, 3) pixels, not an array of shape {shape}')

def option(name, parse=str):  # an argparse type: the option's text, parsed (int, float), checked by RULES
    def checked(text):
        with contextlib.suppress(ValueError):
            text = parse(text)
        if why := wrong(name, text):
            raise argparse.ArgumentTypeError(f'{repr(text)[:40]}: {why}')
        return text
    return checked

# ─── Reading files that may be anything ──────────────────────────────────────────────────────────────
MB = 2**20
MAX_BATCH_BYTES = 64 * MB     # a CIFAR-10 batch file: 31 MB
MAX_ARCHIVE_BYTES = 256 * MB  # cifar-10-python.tar.gz: 163 MB packed, 178 MB unpacked
MAX_MODEL_BYTES = 64 * MB     # a saved model: ~1.5 MB
MAX_IMAGE_BYTES = 64 * MB

def read_file(path, label, limit):
    """The bytes of `path`, a regular file of at most `limit` bytes; folders, pipes, devices and symlink loops
    are refused before they are opened, so nothing waits on them."""
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            raise CifarError(f'{label}: is a folder, not a file')
        # O_NONBLOCK: should the file have been swapped for a pipe since, opening it cannot hang
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0)), 'rb') as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise CifarError(f'{label}: is not a regular file (a pipe, socket or device)')
            if info.st_size > limit:
                raise CifarError(f'{label}: is {info.st_size:,} bytes, more than the {limit:,} expected at most')
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise CifarError(f'{label}: no such file') from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        raise CifarError(f'{label}: cannot read it ({getattr(e, "strerror", None) or e})') from None
    if len(data) > limit:
        raise CifarError(f'{label}: grew past {limit:,} bytes while being read')
    return data

# ─── CIFAR-10: Keras's loader, --data-dir, batch files, the tarball ──────────────────────────────────
CIFAR_PAGE = 'https://www.cs.toronto.edu/~kriz/cifar.html'
BATCH_FILES = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
TAR_FILES = {f'cifar-10-batches-py/{name}' for name in [*BATCH_FILES, 'batches.meta', 'readme.html']}

def load_cifar10(data_dir=None, limit=None):
    """What `keras.datasets.cifar10.load_data()` returns, uint8 images (N, 32, 32, 3) and labels (N, 1),
    training then test: from that very loader, or read strictly from `data_dir`, files a user hands over;
    `limit`: the first N of each."""
    if not data_dir:
        (train_imgs, train_labels), (test_imgs, test_labels) = keras_load_data()
        return (train_imgs[:limit], train_labels[:limit]), (test_imgs[:limit], test_labels[:limit])
    batches = read_data_dir(data_dir)
    train_imgs, train_labels = (np.concatenate(arrays)[:limit] for arrays in zip(*batches[:5]))
    test_imgs, test_labels = (np.ascontiguousarray(array[:limit]) for array in batches[5])
    for what, imgs in (('training', train_imgs), ('test', test_imgs)):
        if not len(imgs):
            raise CifarError(f'--data-dir {data_dir}: holds no {what} images')
    return (train_imgs, train_labels), (test_imgs, test_labels)

def keras_load_data():
    """keras.datasets.cifar10.load_data(), as in the post: it downloads CIFAR-10 (163 MB) once into Keras's
    cache, checks its SHA-256 and reads it with a restricted unpickler (Keras 3.15.1 and later); what goes
    wrong there is one line saying what to do."""
    home = os.environ.get('KERAS_HOME')
    if home and os.path.exists(home) and not os.path.isdir(home):
        raise CifarError(f'KERAS_HOME={home}: is a file, not a folder for Keras to keep CIFAR-10 in; point '
                         'KERAS_HOME at a folder, or unset it')
    try:
        with warnings.catch_warnings():  # the error below says it better
            warnings.filterwarnings('ignore', 'Could not extract archive')
            return keras.datasets.cifar10.load_data()
    except Exception as e:  # Keras turns every failed download into a bare Exception('URL fetch failure ...')
        if type(e) is Exception and str(e).startswith('URL fetch failure') or isinstance(e, (ConnectionError,
                                                                                              TimeoutError)):
            reason = re.sub(r'^URL fetch failure on \S+: (\S+ -- )?', '', first_line(e))
            raise CifarError(f'could not download CIFAR-10 ({reason}). Download cifar-10-python.tar.gz from '
                             f'{CIFAR_PAGE} yourself; point --data-dir (data_dir= in Python) at its folder') from None
        if isinstance(e, (OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError, tarfile.TarError)):
            cache = os.path.join(os.path.expanduser(home or '~/.keras'), 'datasets')
            raise CifarError(f"Keras's CIFAR-10 loader failed ({first_line(e)}); if its download cache is damaged, "
                             f'delete {cache}/cifar-10-batches-py-target* and run again') from None
        raise

def read_data_dir(data_dir):
    """--data-dir: a folder of batch files, one holding cifar-10-batches-py/, or one holding the tarball."""
    label = f'--data-dir {data_dir}'
    if not os.path.isdir(data_dir):
        raise CifarError(f'{label}: {"is not a folder" if os.path.lexists(data_dir) else "no such folder"}')
    folder = data_dir if any(os.path.lexists(os.path.join(data_dir, name)) for name in BATCH_FILES) else \
        os.path.join(data_dir, 'cifar-10-batches-py')
    if os.path.isdir(folder):
        return [read_batch(path, read_file(path, path, MAX_BATCH_BYTES))
                for path in (os.path.join(folder, name) for name in BATCH_FILES)]
    if os.path.lexists(os.path.join(data_dir, 'cifar-10-python.tar.gz')):
        return read_tarball(os.path.join(data_dir, 'cifar-10-python.tar.gz'))
    raise CifarError(f'{label}: holds neither cifar-10-batches-py/ nor cifar-10-python.tar.gz (get it from '
                     f'{CIFAR_PAGE})')

def read_tarball(path):
    """The batches out of cifar-10-python.tar.gz, unpacked in memory: nothing extracted, and nothing but
    CIFAR-10's files (regular files, each once) let in."""
    try:
        tar_bytes = gzip.GzipFile(fileobj=io.BytesIO(read_file(path, path, MAX_ARCHIVE_BYTES))).read(
            MAX_ARCHIVE_BYTES + 1)
        if len(tar_bytes) > MAX_ARCHIVE_BYTES:
            raise CifarError(f'{path}: unpacks to more than {MAX_ARCHIVE_BYTES:,} bytes; CIFAR-10 unpacks to 178 MB')
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode='r:') as tar:
            members = {}
            for m in tar.getmembers():
                name = m.name.removeprefix('./').rstrip('/')
                if name in members:
                    raise CifarError(f'{path}: refused: it holds {m.name[:80]!r} twice')
                if not (m.isdir() and name in ('.', 'cifar-10-batches-py') or m.isfile() and name in TAR_FILES):
                    raise CifarError(f'{path}: refused: {m.name[:80]!r} is not one of the files of the CIFAR-10 '
                                     'archive (cifar-10-batches-py/ and what it holds)')
                members[name] = m
            if missing := [name for name in BATCH_FILES if f'cifar-10-batches-py/{name}' not in members]:
                raise CifarError(f'{path}: has no cifar-10-batches-py/{missing[0]}')
            if big := [m.name for m in members.values() if m.size > MAX_BATCH_BYTES]:  # sparse ones, too
                raise CifarError(f'{path}: {big[0][:80]} claims more than {MAX_BATCH_BYTES:,} bytes; a batch has 31 MB')
            return [read_batch(f'{path}:{m.name}', tar.extractfile(m).read())
                    for m in (members[f'cifar-10-batches-py/{name}'] for name in BATCH_FILES)]
    except (gzip.BadGzipFile, EOFError, zlib.error, tarfile.TarError) as e:
        raise CifarError(f'{path}: truncated or not a .tar.gz archive ({first_line(e)})') from None

class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays of plain numbers, and plain Python data, and nothing else: a pickle can name
    any callable (`os.system`, ...) to run while loading. Like Keras's (keras/src/datasets/npz_utils.py),
    but numpy never sees a pickle's claims, for its own unpickling allocates whatever shape _reconstruct
    names and crashes the interpreter on some dtype states (np.dtype('M8') given a number's state)."""
    def find_class(self, module, name):
        found = {('numpy', 'ndarray'): PickledArray, ('numpy', 'dtype'): PickledDtype,
                 ('numpy.core.multiarray', '_reconstruct'): PickledArray,  # protocols 0-4
                 ('numpy._core.multiarray', '_reconstruct'): PickledArray,
                 ('numpy.core.numeric', '_frombuffer'): checked_array,  # protocol 5
                 ('numpy._core.numeric', '_frombuffer'): checked_array,
                 ('_codecs', 'encode'): latin1_bytes}.get((module, name))  # protocols 0-2 write bytes as text
        if found is None:
            raise RefusedPickle(f'refused to load: it asks for {module}.{name}, not a numpy array')
        return found

class RefusedPickle(pickle.UnpicklingError):
    """A pickle that asks for more than numpy arrays: refused, rather than damaged."""

def latin1_bytes(text, encoding):  # stands in for _codecs.encode, with which protocols 0-2 write bytes
    if type(text) is not str or encoding != 'latin1':
        raise RefusedPickle('refused to load: it encodes text in a way pickle does not write')
    return text.encode('latin1')

class PickledArray:
    """Stands in for numpy's `_reconstruct(ndarray, (0,), b'b')`, an empty array that its state (version,
    shape, dtype, Fortran order, bytes) then fills; anything else is refused."""
    array = None
    def __init__(self, subtype, shape, typecode):
        if subtype is not PickledArray or type(shape) is not tuple or shape != (0,):
            raise RefusedPickle('refused to load: an array in a form numpy does not write')
    def __setstate__(self, state):
        if not (type(state) is tuple and len(state) == 5 and state[0] == 1 and type(state[3]) is bool):
            raise pickle.UnpicklingError('an array whose state is not the one numpy writes')
        self.array = checked_array(state[4], state[2], state[1], 'F' if state[3] else 'C')

def checked_array(raw, dtype, shape, order):  # also protocol 5's _frombuffer: a view of `raw`, once checked
    if not (type(raw) in (bytes, bytearray) and isinstance(dtype, PickledDtype) and type(shape) is tuple
            and len(shape) <= 32 and all(type(n) is int and 0 <= n < 2**32 for n in shape) and order in ('C', 'F')):
        raise pickle.UnpicklingError('an array whose state is not the one numpy writes')
    if math.prod(shape) * dtype.dtype.itemsize != len(raw):
        raise pickle.UnpicklingError(f'an array of shape {shape} with {len(raw):,} bytes of data')
    return np.frombuffer(raw, dtype.dtype).reshape(shape, order=order)

class PickledDtype:
    """Stands in for numpy.dtype('u1', False, True) and its state: plain numbers only, in numpy's own state."""
    def __init__(self, name, align=False, copy=True):
        self.name = name
    def __setstate__(self, state):
        if not (type(state) is tuple and len(state) == 8 and state[0] == 3 and state[1] in ('<', '>', '|', '=')
                and state[2:5] == (None, None, None) and state[5:] == (-1, -1, 0) and type(self.name) is str
                and self.name.lstrip('<>|=') in NUMBER_TYPES):
            raise pickle.UnpicklingError('an array type that is not a plain number')
        self.dtype = np.dtype(self.name).newbyteorder(state[1] if state[1] in '<>' else '=')

NUMBER_TYPES = {'b1', 'i1', 'u1', 'i2', 'u2', 'i4', 'u4', 'i8', 'u8', 'f2', 'f4', 'f8'}

def read_batch(label, data):
    """One CIFAR-10 batch file's bytes -> (uint8 images (N, 32, 32, 3), uint8 labels (N, 1)). Its opcodes
    are walked first, building nothing: the unpickler allocates what a length field or memo index claims
    before it reads, so each must fit in the data (pickletools raises ValueError where not)."""
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ('PUT', 'BINPUT', 'LONG_BINPUT') and not 0 <= arg <= len(data):
                raise pickle.UnpicklingError(f'a memo index of {arg:,}')
        batch = NumpyOnlyUnpickler(io.BytesIO(data), encoding='bytes').load()
    except RefusedPickle as e:
        raise CifarError(f'{label}: {e}') from None
    # What unpickling damaged bytes raises: pickle's docs name UnpicklingError, AttributeError, EOFError and
    # IndexError; tests/test_fuzz.py finds ValueError, TypeError and OverflowError too.
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, OverflowError, IndexError,
            EOFError) as e:
        raise CifarError(f'{label}: damaged or not a CIFAR-10 batch file ({first_line(e)})') from None
    if not isinstance(batch, dict):
        raise CifarError(f'{label}: not a CIFAR-10 batch file (it holds a {type(batch).__name__}, not a dict)')
    if missing := [key for key in (b'data', b'labels') if key not in batch]:
        raise CifarError(f'{label}: not a CIFAR-10 batch file (no {missing[0]!r} entry)')
    data, labels = (v.array if isinstance(v, PickledArray) else v for v in (batch[b'data'], batch[b'labels']))
    if not isinstance(data, np.ndarray):
        raise CifarError(f"{label}: b'data' is not an array of pixels (it is a {type(data).__name__})")
    if data.dtype != np.uint8:
        raise CifarError(f'{label}: pixels are {data.dtype}, expected uint8 (0-255)')
    if data.ndim != 2 or data.shape[1] != 3072:
        raise CifarError(f'{label}: images have shape {data.shape}, expected (N, 3072): N rows of 32x32x3 pixels')
    labels = check_labels(label, labels, len(data))
    # Rows are channel-first (3 x 32 x 32); Keras and matplotlib want channels last.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.reshape(-1, 1)

def check_labels(label, labels, count):
    """A batch's labels -> uint8 array; they must be a flat list (or 1-D integer array) of 0-9."""
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in 'iu':
        labels = labels.tolist()
    if not (isinstance(labels, list) and all(type(v) is int for v in labels)):
        found = (f'an array of shape {labels.shape} and type {labels.dtype}' if isinstance(labels, np.ndarray)
                 else f'a list holding a {next(type(v).__name__ for v in labels if type(v) is not int)}'
                 if isinstance(labels, list) else f'a {type(labels).__name__}')
        raise CifarError(f'{label}: labels must be a flat list of whole numbers 0-9, found {found}')
    if len(labels) != count:
        raise CifarError(f'{label}: {len(labels)} labels for {count} images')
    if labels and (min(labels) < 0 or max(labels) > 9):
        low, high = (v if abs(v) < 10**9 else 'a huge number' for v in (min(labels), max(labels)))
        raise CifarError(f'{label}: labels must be 0-9, found {low}..{high}')
    return np.array(labels, dtype=np.uint8)

# ─── Saved models (.keras) and your own pictures ─────────────────────────────────────────────────────
KERAS_FILES = {'metadata.json', 'config.json', 'model.weights.h5'}
WEIGHT_RANGES = {  # what training writes, by layer kind and weight; any other: -1e4 to 1e4
    ('batch_normalization', 'moving_variance'): (0.0, 1e4)}

def read_keras_file(path):
    """A .keras file's config (parsed) and weights (bytes), once the zip holds Keras's three members and
    nothing else, at most MAX_MODEL_BYTES."""
    label = f'--load-model {path}'
    data = read_file(path, label, MAX_MODEL_BYTES)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = {i.filename for i in zf.infolist()}
            if names != KERAS_FILES or len(zf.infolist()) != len(KERAS_FILES):
                raise CifarError(f'{label}: not a model saved by --save-model '
                                 f'(holds {", ".join(sorted(names)[:5]) or "nothing"})')
            if sum(i.file_size for i in zf.infolist()) > MAX_MODEL_BYTES:
                raise CifarError(f'{label}: unpacks to more than {MAX_MODEL_BYTES:,} bytes')
            return json.loads(zf.read('config.json')), zf.read('model.weights.h5')  # each read checks its CRC
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError,
            RuntimeError, ValueError) as e:  # RuntimeError: encrypted; ValueError: bad JSON
        raise CifarError(f'{label}: damaged or not a .keras file ({first_line(e)})') from None
    except RecursionError:
        raise CifarError(f'{label}: damaged (config.json is nested too deeply)') from None

def matching_network(config, label):
    """The network build_model makes that config.json describes, once the JSON is compared with it layer by
    layer, kind and every setting but the name: an edited file would give answers that look right and are not."""
    saved = config.get('config') if isinstance(config, dict) and config.get('class_name') == 'Sequential' else None
    saved = saved.get('layers') if isinstance(saved, dict) else None
    if not (isinstance(saved, list) and all(isinstance(layer, dict) for layer in saved)):
        raise CifarError(f'{label}: refused: config.json holds no Sequential model, which --save-model writes')
    rates = [layer.get('config') for layer in saved if layer.get('class_name') == 'Dropout']
    rate = (rates[0].get('rate') if isinstance(rates[0], dict) else rates[0]) if rates else 0.0
    if not (type(rate) is float and 0 <= rate < 1):
        raise CifarError(f'{label}: refused: a dropout rate of {str(rate)[:20]}')
    model = build_network(Variations(batch_norm=any(layer.get('class_name') == 'BatchNormalization'
                                                    for layer in saved), dropout=rate))
    wanted = json.loads(json.dumps(model.get_config()['layers']))
    def described(layer):  # what must match: all but the name and the dtype policy
        config = layer.get('config')
        settings = {k: v for k, v in config.items() if k not in ('name', 'dtype')} if isinstance(config, dict) \
            else config
        return layer.get('module'), layer.get('class_name'), settings
    for i in range(max(len(saved), len(wanted))):
        got, want = (saved[i] if i < len(saved) else {}), (wanted[i] if i < len(wanted) else {})
        if described(got) != described(want):
            kind = f'{got.get("module")}.{got.get("class_name")}'[:80] if got else 'missing'
            raise CifarError(f'{label}: refused: layer {i + 1} is {kind}, not the {want.get("class_name", "end")} '
                             'that --save-model writes there, or not with its settings')
    return model

def read_weights(model, data, label):
    """model.weights.h5 -> `model`'s weights, each dataset found where Keras puts it (layers/NAME/vars/I) and
    checked against its weight (shape, dtype, storage: whole, uncompressed, in the file) before a byte of
    it is read. Weights not finite, or outside what training writes (WEIGHT_RANGES), are refused."""
    try:
        with h5py.File(io.BytesIO(data), 'r') as f:
            group = f.get('layers')
            if not isinstance(group, h5py.Group) or len(group) != len(model.layers):
                raise CifarError(f'{label}: refused: its weights are not those of the network --save-model writes')
            found = []
            for path, variable in keras_weight_paths(model).items():
                dataset = group.get(path)
                if not (isinstance(dataset, h5py.Dataset) and dataset.shape == tuple(variable.shape)
                        and dataset.dtype == np.dtype('<f4') and dataset.chunks is None and not dataset.external
                        and not dataset.is_virtual and dataset.id.get_storage_size() == dataset.nbytes):
                    raise CifarError(f'{label}: refused: the weights at layers/{path} are not the '
                                     f'{tuple(variable.shape)} float32 numbers --save-model writes there')
                found.append((path, variable, dataset))
            values = [(path, variable, dataset[()]) for path, variable, dataset in found]
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:  # h5py on what is not HDF5
        raise CifarError(f'{label}: damaged (model.weights.h5: {first_line(e)})') from None
    for path, variable, value in values:
        low, high = WEIGHT_RANGES.get((re.sub(r'_\d+$', '', path.split('/')[0]), variable.name), (-1e4, 1e4))
        if not np.isfinite(value).all():
            raise CifarError(f'{label}: refused: some weights are not numbers (NaN or infinite)')
        if value.min() < low or value.max() > high:
            raise CifarError(f'{label}: refused: its {variable.name} at layers/{path} goes outside {low:g} to '
                             f'{high:g}, where training keeps it')
    for _, variable, value in values:
        variable.assign(value)

def keras_weight_paths(model):  # {'conv2d/vars/0': variable, ...}: where the .keras format keeps each weight
    paths, seen = {}, {}
    for layer in model.layers:
        name = re.sub(r'([a-z])([A-Z])', r'\1_\2', re.sub(r'(.)([A-Z][a-z]+)', r'\1_\2', type(layer).__name__)).lower()
        seen[name] = seen.get(name, -1) + 1
        for i, variable in enumerate(layer.trainable_weights + layer.non_trainable_weights):
            paths[f'{name}{f"_{seen[name]}" if seen[name] else ""}/vars/{i}'] = variable
    return paths

class Blueprint:
    """What build_model reads of a CifarCNN, without a data set: the variations, and the post's 'adam' (a
    loaded model is evaluated and asked, not trained further). build_network runs build_model on it."""
    vary = CifarCNN.vary
    def __init__(self, variations):
        self.variations = variations
    def optimizer(self):
        return 'adam'

def build_network(variations):
    """build_model's network with `variations`, compiled, without a data set or the summary it prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return CifarCNN.build_model(Blueprint(variations))

IMAGE_FORMATS = ['PNG', 'JPEG', 'GIF', 'BMP', 'WEBP', 'TIFF']  # what photos come in; each fuzzed

def read_image(path):
    """An image file of any size, format and mode -> float32 (32, 32, 3) in [0, 1], as in training: turned
    upright (EXIF), made RGB, resized to 32x32 (bilinear), transparent parts on white. Pillow's own limit
    refuses an image that claims too many pixels before it is decoded."""
    data = read_file(path, path, MAX_IMAGE_BYTES)
    try:  # Pillow's warnings and libtiff's lines about a damaged file: the error line says it
        with warnings.catch_warnings(), stderr_dropped(re.compile('')):
            warnings.simplefilter('ignore')
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            if img.format == 'JPEG' and (scans := data.count(b'\xff\xda')) > 100:  # each decodes every pixel
                raise CifarError(f'{path}: a JPEG in {scans:,} scans; photos have at most a few dozen')
            ImageOps.exif_transpose(img, in_place=True)
            return to_unit_rgb(path, img)
    except Image.UnidentifiedImageError:
        raise CifarError(f'{path}: not an image in a format read here ({", ".join(IMAGE_FORMATS)})') from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CifarError(f'{path}: claims more than {Image.MAX_IMAGE_PIXELS:,} pixels') from None
    # What Pillow raises for damaged files, and its EXIF reader for damaged tags (tests/test_fuzz.py finds them):
    except (OSError, SyntaxError, ValueError, TypeError, AttributeError, OverflowError, struct.error) as e:
        raise CifarError(f'{path}: damaged image ({first_line(e)})') from None

def to_unit_rgb(path, img):
    """A decoded image -> float32 (32, 32, 3) in [0, 1]; 16-bit pixels by their white level, float ones in
    0-1 (a plain convert('RGB') would clip both); any other scale is an error."""
    if img.mode in ('1', 'L', 'P', 'RGB', 'RGBX', 'CMYK', 'YCbCr', 'HSV', 'LA', 'PA', 'RGBA', 'RGBa'):
        if img.mode in ('LA', 'PA', 'RGBA', 'RGBa') or 'transparency' in img.info:
            img = Image.alpha_composite(Image.new('RGBA', img.size, 'white'), img.convert('RGBA'))
        return np.asarray(img.convert('RGB').resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255
    white = 65535 if img.mode.startswith('I;16') or (img.mode == 'I' and img.format == 'PNG') else \
        1.0 if img.mode == 'F' else None  # 16-bit grey, or float
    if white is None:
        raise CifarError(f'{path}: {img.format} images in mode {img.mode} have no known white level '
                         '(save it as 8- or 16-bit RGB or greyscale)')
    grey = np.asarray(img, dtype=np.float32) / white
    if not (np.isfinite(grey).all() and grey.min() >= 0 and grey.max() <= 1):
        raise CifarError(f'{path}: {img.mode} pixels outside 0-{white}, so their scale is unknown')
    if type(img.info.get('transparency')) is int:  # the grey level that stands for transparent: on white
        grey[np.asarray(img) == img.info['transparency']] = 1.0
    small = Image.fromarray(grey, 'F').resize((32, 32), Image.BILINEAR)
    return np.repeat(np.asarray(small, dtype=np.float32)[..., np.newaxis], 3, axis=2)

# ─── Training: data pipeline, precision, callbacks ───────────────────────────────────────────────────
def pipeline(imgs, labels, batch_size, shuffle=False, augment=False):
    """A tf.data pipeline over uint8 images that scales each batch to float32 in [0, 1]: the post's
    `imgs / 255.0`, without float copies of the data set. With augment (--augment) each batch is flipped
    and shifted first, on the pipeline's thread, ahead of training (bench/README.md)."""
    x, y = tf.constant(imgs), tf.constant(labels)
    ds = tf.data.Dataset.range(len(imgs))
    if shuffle:  # a new order every epoch, as fit(shuffle=True) does for arrays
        ds = ds.shuffle(len(imgs), reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda i: (tf.gather(x, i), tf.gather(y, i)))
    if augment:  # in order, one batch after another, so that a seed repeats a run
        ds = ds.map(lambda images, labels: (flip_and_shift(images), labels))
    ds = ds.map(lambda images, labels: (tf.cast(images, tf.float32) / 255.0, labels),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)

def flip_and_shift(images):
    """--augment: each image flipped left-right at random (half of them) and shifted by up to 3 pixels
    (10%) each way, the border filled by reflection: Keras's RandomFlip('horizontal') and
    RandomTranslation(0.1, 0.1) in whole pixels, by indexing, at about half their cost."""
    n, shifts = tf.shape(images)[0], tf.range(32)
    padded = tf.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]], mode='REFLECT')  # 38 x 38
    rows = tf.random.uniform((n, 1), 0, 7, dtype=tf.int32) + shifts
    cols = tf.random.uniform((n, 1), 0, 7, dtype=tf.int32) + shifts
    cols = tf.where(tf.random.uniform((n, 1)) < 0.5, 37 - cols, cols)  # read right to left: flipped
    return tf.gather(tf.gather(padded, rows, batch_dims=1), cols, axis=2, batch_dims=1)

def fused(batch_norm):
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

def choose_precision(requested):
    """--precision -> (Keras dtype policy, why): `auto` picks mixed precision only where the hardware
    computes it natively; elsewhere it is slower than float32."""
    if gpus := tf.config.list_physical_devices('GPU'):
        cc = tuple(tf.config.experimental.get_device_details(gpus[0]).get('compute_capability') or (0, 0))
        mixed, native = 'mixed_float16', cc >= (7, 0)  # Keras's advice: float16 pays from 7.0 on
        hardware = f'a GPU of compute capability {cc[0]}.{cc[1]}'
    else:
        mixed, native = 'mixed_bfloat16', bool(CPU_FLAGS & {'amx_bf16', 'avx512_bf16'})
        hardware = f'a CPU {"with" if native else "without"} native bfloat16 (amx_bf16/avx512_bf16)'
    if requested == 'float32':
        return 'float32', 'as asked'
    return (mixed, f'as asked, on {hardware}') if requested == 'mixed' else \
        ((mixed if native else 'float32'), f'auto, on {hardware}')

def progress_verbosity():  # a progress bar on a terminal or in Jupyter; elsewhere (a log file) a line an epoch
    return 1 if getattr(sys.stdout, 'isatty', lambda: False)() or 'ipykernel' in sys.modules else 2

class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, counting truthfully: with steps_per_execution, Keras reports the last group of
    an epoch's steps as if it were whole (64/63, and a negative ETA)."""
    def _update_progbar(self, batch, logs=None):
        super()._update_progbar(batch if self.target is None else min(batch, self.target - 1), logs)

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
            history.history = {k: v[:finished] for k, v in history.history.items()}
            history.epoch = history.epoch[:finished]
            print(f'Training stopped by Ctrl-C after {finished} finished epoch(s); '
                  'the steps below use what was learnt so far.')

def can_show():  # whether plt.show() shows anything here: not on a headless backend such as Agg
    from matplotlib.backends import BackendFilter, backend_registry
    return plt.get_backend().lower() not in backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)

# ─── Writing files and standard output; stopping cleanly ────────────────────────────────────────────
PENDING = set()  # this run's temporary files and folders, removed however it ends
CREATED = []     # output folders this run made, removed again should it stop before writing there

def real_path(path):  # every symbolic link resolved, so that a file is written where a link points
    try:
        return os.path.realpath(path)
    except FileNotFoundError:  # os.getcwd()
        raise CifarError(f'cannot write {path}: the folder this was started in no longer exists') from None

def temporary_name(target):  # what write_atomically writes first: beside `target`, short, whatever its length
    return os.path.join(os.path.dirname(target), f'.cifar_cnn-{os.getpid()}.tmp{os.path.splitext(target)[1]}')

def write_atomically(path, write):
    """Calls `write(tmp)` with a temporary name beside `path` (beside the file a link points to), then
    renames it to `path`, so that a failed or interrupted write never leaves half a file there."""
    if os.path.exists(target := real_path(path)) and not os.path.isfile(target):
        raise CifarError(f'cannot write {path}: it is a folder or a special file, not a place for a file')
    PENDING.add(tmp := temporary_name(target))
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError as e:
        raise CifarError(f'cannot write {path}: {e.strerror or e}') from None
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        PENDING.discard(tmp)

def check_writable(folder, what, names=()):
    """Fails before any slow step if `what` cannot be written to `folder` (made if need be, and removed
    again should that fail): each of the files `names` there, and its temporary name, are made and removed,
    and one there already must be a regular file this process may replace."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CifarError(f'cannot write {what} to {folder}: it is a file, not a folder')
    created, real = [], real_path(folder)
    parent = real
    while not os.path.exists(parent) and parent != os.path.dirname(parent):  # deepest first
        created.append(parent)
        parent = os.path.dirname(parent)
    CREATED.extend(created)
    target = folder
    try:
        os.makedirs(real, exist_ok=True)
        for target in [real_path(os.path.join(folder, name)) for name in names] or [os.path.join(folder, '.probe')]:
            if os.path.exists(target) and not os.path.isfile(target):
                raise IsADirectoryError(21, 'a folder or a special file is there, not a place for a file')
            if os.path.exists(target) and not os.access(target, os.W_OK):
                raise PermissionError(13, 'the file there cannot be replaced (read-only, or not yours)')
            for probe in (temporary_name(target), target):
                if not os.path.lexists(probe):  # made and removed again; a file already there stays
                    PENDING.add(probe)
                    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                    os.remove(probe)
                    PENDING.discard(probe)
    except OSError as e:
        for made in created:
            with contextlib.suppress(OSError):
                os.rmdir(made)
        raise CifarError(f'cannot write {what} to {target if names else folder}: {e.strerror or e}') from None

def clean_up():  # this run's temporary files and folders, and the output folders it made and left empty
    for path in list(PENDING):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
        PENDING.discard(path)
    for folder in CREATED:  # deepest first
        with contextlib.suppress(OSError):
            os.rmdir(folder)
    CREATED.clear()

class OutputLost(Exception):
    """Standard output could not be written: a full disk, or a reader that stopped reading (`| head`)."""

class Output:
    """sys.stdout during a run, written through, so that a line that cannot be written fails as it is
    printed, as OutputLost: told apart from any other error, and never left in a buffer till exit."""
    def __init__(self, stream):
        self.stream = stream
    def write(self, text):
        try:
            written = self.stream.write(text)
            self.stream.flush()
            return written
        except OSError as e:
            raise OutputLost(e) from e
    def flush(self):
        self.write('')
    def __getattr__(self, name):
        return getattr(self.stream, name)

STOPPED = {signal.SIGINT: 'Interrupted.', signal.SIGTERM: 'Terminated.',
           **({signal.SIGHUP: 'Hung up.'} if hasattr(signal, 'SIGHUP') else {})}  # the terminal closed

def stop_now(signum, frame):
    """Ctrl-C (outside training), SIGTERM or SIGHUP: remove what the run left half-made, say so, and exit
    at once (130, 143 or 129); not by an exception, which TensorFlow can turn into an error of its own."""
    try:
        clean_up()
        with contextlib.suppress(OSError, OutputLost):
            sys.stdout.flush()
        sys.stderr.flush()
        os.write(real_stderr, f'\n{STOPPED[signum]}\n'.encode())  # even while stderr_dropped() holds fd 2
    finally:
        os._exit(128 + signum)


# ═══ Command line: python cifar_cnn.py ═══════════════════════════════════════════════════════════════

TRAINING_ONLY = ('epochs', 'batch_size', 'precision', 'augment', 'batch_norm', 'dropout', 'validation_split',
                 'cosine_decay', 'tensorboard', 'save_model')
PREDICT_ONLY_IGNORES = ('data_dir', 'limit', 'figures_dir', 'show')

def parse_args(argv=None):
    """The options, each checked by the rules CifarCNN's arguments follow (RULES), before anything loads."""
    p = argparse.ArgumentParser(
        description="Basic CIFAR CNN: the blog post's program, runnable. Without --data-dir it downloads "
                    'CIFAR-10 (163 MB) once into ~/.keras/datasets, as keras.datasets.cifar10.load_data() does.',
        epilog='examples: python cifar_cnn.py --limit 2000 --epochs 1 --figures-dir runs/quick (a quick check);  '
               'python cifar_cnn.py --data-dir DIR --save-model cifar.keras;  '
               'python cifar_cnn.py --load-model cifar.keras --predict photo.jpg')
    p.error = lambda message: p.exit(2, f'error: {message} (python cifar_cnn.py --help lists the options)\n')
    p.add_argument('--epochs', type=option('epochs', int), help='training epochs, 1-10,000 (default: 10)')
    p.add_argument('--batch-size', type=option('batch_size', int), help='training batch size, 1-4,096 (default: 32)')
    p.add_argument('--seed', type=option('seed', int), help='random seed: same seed, same machine, same numbers')
    p.add_argument('--data-dir', type=option('data_dir'), metavar='DIR', help='read CIFAR-10 from DIR: '
                   'cifar-10-batches-py, a folder holding it, or one holding cifar-10-python.tar.gz')
    p.add_argument('--figures-dir', type=option('figures_dir'), metavar='DIR', help='where figures go (figures)')
    p.add_argument('--show', action='store_true', help='also open each figure in a window, as the post does')
    p.add_argument('--limit', type=option('limit', int), metavar='N', help='only the first N training and N test '
                   'images, 1-50,000 (a quick run)')
    p.add_argument('--precision', choices=['auto', 'float32', 'mixed'], help='auto (default): mixed precision '
                   'where the hardware has it natively, else float32')
    p.add_argument('--save-model', type=option('save_model'), metavar='PATH', help='save the trained model to PATH '
                   '(.keras); through a symbolic link, to the file it names')
    p.add_argument('--load-model', type=option('load_model'), metavar='PATH', help='load a model --save-model '
                   'saved, instead of training one')
    p.add_argument('--predict', type=option('predict'), metavar='IMAGE', nargs='+', help='classify these image '
                   'files, top 3 classes each; with --load-model at once, without it after training a model first')
    beyond = p.add_argument_group('beyond the post: the next experiments (bench/README.md measures them)')
    beyond.add_argument('--augment', action='store_true', help='random flips and shifts of the training images')
    beyond.add_argument('--batch-norm', action='store_true', help='batch normalization after each convolution')
    beyond.add_argument('--dropout', type=option('dropout', float), metavar='RATE', help='dropout before each '
                        'dense layer, 0 (none) to under 1')
    beyond.add_argument('--validation-split', type=option('validation_split', float), metavar='F', help='validate '
                        'on the last fraction F (0 to under 1) of the training images, not the test set')
    beyond.add_argument('--cosine-decay', action='store_true', help='the learning rate down a cosine from 1e-3 to 0')
    beyond.add_argument('--tensorboard', type=option('tensorboard'), metavar='DIR', help='TensorBoard logs to DIR '
                        '(needs TensorBoard: pip install tensorboard)')
    args = p.parse_args(argv)
    for flag in ('save_model', 'load_model'):
        path = getattr(args, flag)
        if path is not None and (not path.endswith('.keras') or os.path.basename(path) == '.keras'):
            p.error(f'--{flag.replace("_", "-")} {path}: the file name must end in .keras, after a name')
    given = {name for name, value in vars(args).items() if value not in (None, False)}
    for clash, why in ((TRAINING_ONLY, 'only for training, and --load-model trains nothing'),
                       (PREDICT_ONLY_IGNORES, 'not used: with --load-model, --predict answers and exits')):
        if args.load_model and (clash is TRAINING_ONLY or args.predict) and given & set(clash):
            p.error(f'{", ".join("--" + name.replace("_", "-") for name in clash if name in given)}: {why}')
    args.epochs, args.batch_size, args.precision = args.epochs or 10, args.batch_size or 32, args.precision or 'auto'
    args.figures_dir = args.figures_dir or 'figures'
    return args

def run(args):
    """The post's steps in the post's order, what the options add around them, and first what fails in a
    second: the model to load, the files and folders to write, before the slow steps."""
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    loaded = load_model(args.load_model) if args.load_model else None
    if loaded is not None and args.predict:  # --load-model --predict: answer and exit, no data set needed
        return 1 if predict_files(loaded, args.predict) else 0
    check_writable(args.figures_dir, 'figures', FIGURES)
    if args.save_model:
        check_writable(os.path.dirname(args.save_model) or '.', 'the model', [os.path.basename(args.save_model)])
    if args.tensorboard:
        try:
            import tensorboard  # noqa: F401 -- TensorFlow 2.21 no longer installs it
        except ImportError:
            raise CifarError(f'--tensorboard needs TensorBoard: {sys.executable} -m pip install tensorboard') from None
        check_writable(args.tensorboard, 'TensorBoard logs')
    variations = Variations(args.augment, args.batch_norm, args.dropout or 0.0, args.validation_split or 0.0,
                            args.cosine_decay, args.tensorboard)
    if loaded is None:
        policy, why = choose_precision(args.precision)
        keras.mixed_precision.set_global_policy(policy)
        print(f'Precision: {policy} ({why})\nExperiments: {variations}')

    cnn = CifarCNN(data_dir=args.data_dir, epochs=args.epochs, batch_size=args.batch_size, limit=args.limit,
                   figures_dir=args.figures_dir, show=args.show, variations=variations)
    cnn.split()  # a --validation-split that leaves nothing to train on fails here, before any figure
    cnn.explore_data()
    cnn.preprocess_data()
    if loaded is None:
        cnn.model = cnn.build_model()
        cnn.history = cnn.train_model()
    else:
        cnn.model = loaded  # --load-model: a trained model instead of building and training one
    if args.save_model:
        save_model(cnn.model, args.save_model)
    cnn.evaluate_model()
    cnn.make_prediction()

    cnn.plot_confusion_matrix()  # beyond the post: where it errs, and what it has learned
    cnn.plot_mistakes()
    cnn.plot_filters()
    cnn.plot_feature_maps()
    cnn.plot_grad_cam()
    return 1 if args.predict and predict_files(cnn.model, args.predict) else 0

def main(argv=None):
    """python cifar_cnn.py. Exits 0 when done; 1 after one `error:` line; 2 for a usage error; 130, 143 or
    129 when stopped; 141 when the reader of its output stops reading (`| head`), as Unix programs do."""
    if sys.stdout is None:  # started with >&-
        print('error: standard output is closed, so what this prints would be lost', file=sys.stderr)
        return 1
    args = parse_args(argv)
    if not args.show:
        matplotlib.use('Agg')  # draw to files only: never wait for a window
    elif matplotlib.get_backend().lower() == 'agg':
        print('note: --show: no display here, so the figures are only written to files', file=sys.stderr)
    handlers = {signum: signal.getsignal(signum) for signum in STOPPED}
    for signum, handler in handlers.items():
        if handler is not signal.SIG_IGN:  # e.g. SIGINT in a background job: leave it ignored
            signal.signal(signum, stop_now)
    # TensorFlow's and Keras's own temporary files go to a folder of the run's own, removed however it ends.
    previous_tempdir, tempfile.tempdir = tempfile.tempdir, tempfile.mkdtemp(prefix='cifar_cnn-')
    PENDING.add(tempfile.tempdir)
    CREATED.clear()  # folders made before, in this process, are not this run's
    stdout, sys.stdout = sys.stdout, Output(sys.stdout)
    try:
        with warnings.catch_warnings(record=True) as caught:  # held back: an error line says it better
            code = run(args)
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return code
    except CifarError as e:
        print(f'error: {printable(e)}', file=sys.stderr)
        return 1
    except OutputLost as lost:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())  # what is left unwritten cannot fail at exit
        if isinstance(lost.args[0], BrokenPipeError):  # the reader stopped reading: stop quietly
            return 128 + signal.SIGPIPE
        print(f'error: cannot write standard output ({lost.args[0].strerror})', file=sys.stderr)
        return 1
    finally:
        sys.stdout, tempfile.tempdir = stdout, previous_tempdir
        clean_up()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


if __name__ == '__main__':
    sys.exit(main())
