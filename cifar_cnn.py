"""Basic CIFAR CNN, runnable: the blog post's `CifarCNN` on today's TensorFlow and Keras 3.

Read it beside the post: `class CifarCNN` holds the post's methods in the post's order, and a
`# post:` comment marks each change from the post and says why (bench/post_as_printed.py is the
post fixed only so that it runs). Then come Beyond the post; the options and the imports the post
starts with (matplotlib, TensorFlow, Keras: below, so that --help answers before TensorFlow loads);
Support (plumbing); the command line.

    python cifar_cnn.py                          # downloads CIFAR-10 once, trains for 10 epochs
    python cifar_cnn.py --limit 2000 --epochs 1 --figures-dir runs/quick   # a check of seconds

Or type the post's calls into Python or Jupyter: `cnn = CifarCNN()`, `cnn.explore_data()`, ...
"""

import argparse
import contextlib
import ctypes.util
import dataclasses
import gzip
import io
import json
import math
import os
import pickle
import pickletools
import re
import signal
import stat
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
import zlib

# post: `import matplotlib.pyplot as plt`, `import tensorflow as tf`, `from tensorflow.keras import ...`
# here. They come further down ("Before TensorFlow loads"), after the command line has read its
# options, so that --help answers in a blink; the class uses them only when its methods run.

CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
EVAL_BATCH_SIZE = 500     # evaluation and prediction: the same numbers as batches of 32, in fewer steps
STEPS_PER_EXECUTION = 32  # training steps per call into TensorFlow: the same math, less overhead


class CifarCNN:
    """The post's class. CifarCNN() downloads CIFAR-10 once, as the post does; data_dir= reads a local
    copy instead; limit=N keeps the first N training and N test images. Each figure is shown where
    there is a display (inline in Jupyter; show= forces it on or off) and written to figures_dir
    when one is given (the command line gives 'figures'). variations=: Beyond the post."""

    def __init__(self, data_dir=None, epochs=10, batch_size=32, limit=None, figures_dir=None, show=None,
                 variations=None):
        self.classes = CLASSES  # post: the list itself, here in CLASSES for predict_files too
        # post: datasets.cifar10.load_data(), here too unless data_dir= names a local copy
        (self.train_imgs, self.train_labels), (self.test_imgs, self.test_labels) = load_cifar10(data_dir, limit)
        self.epochs, self.batch_size = epochs, batch_size  # post: self.epochs, self.model and
        self.model = self.history = None                    # self.history are used, never set
        self.figures_dir, self.show = figures_dir, show
        self.variations = variations or Variations()  # Beyond the post: --augment, --dropout, ...

    def explore_data(self):
        print(f'\n{len(self.train_imgs)} training examples ...')
        print(f'Training image shape: {self.train_imgs[0].shape}')
        print(f'Training labels: {summary(self.train_labels)}')  # post: {self.train_labels}, which numpy
        print(f'Training labels type: {type(self.train_labels)}')

        print(f'\n{len(self.test_imgs)} test examples ...')
        print(f'Test image shape: {self.test_imgs[0].shape}')
        print(f'Test labels: {summary(self.test_labels)}')  # lists in full when there are 1,000 or fewer
        print(f'Test labels type: {type(self.test_labels)}')

        plt.figure(figsize=(10, 10))
        for i in range(min(25, len(self.train_imgs))):  # post: range(25); --limit can leave fewer
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
        return self.model.fit(
            self.train_ds,  # post: self.train_imgs, self.train_labels (see preprocess_data)
            epochs=self.epochs,
            validation_data=self.validation_ds,  # post: the test set; the same unless --validation-split
            callbacks=self.callbacks(),  # not in the post: epoch times; Ctrl-C keeps finished epochs
            shuffle=False,  # train_ds shuffles itself every epoch; fit() would warn
            verbose=progress_verbosity(),  # not in the post: no progress bar's escape codes in a log file
        )

    def evaluate_model(self):
        test_loss, test_acc = self.model.evaluate(self.test_ds, verbose=2)  # post: test_imgs, test_labels
        print(f'Loss: {test_loss}')
        print(f'Accuracy: {test_acc}')
        if self.history is None:  # not in the post: a model from --load-model has no history to plot
            return test_loss, test_acc

        plt.plot(self.history.history['accuracy'], label='accuracy', marker='o')  # post: no marker, so
        plt.plot(self.history.history['val_accuracy'], label=self.validation_label, marker='o')  # 1 epoch: nothing
        plt.xlim(-0.5, max(len(self.history.epoch), 2) - 0.5)  # post: none; whole epochs (0, 1, ...)
        plt.gca().xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        plt.xlabel('Epoch')
        plt.ylabel('Accuracy')
        lowest = min([0.5, *self.history.history['accuracy'], *self.history.history['val_accuracy']])
        plt.ylim([math.floor(lowest * 10) / 10, 1])  # post: [0.5, 1], hiding all under 0.5 (short runs)
        plt.legend(loc='lower right')
        self.show_figure('history.png')  # post: plt.show()
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
        prob_model = keras.Sequential([
            self.model,
            layers.Softmax(dtype='float32')  # post: Softmax(); in mixed precision that sums to 1 ± 1%
        ])

        predictions = prob_model.predict(self.test_ds, verbose=0)  # post: predict(self.test_imgs)

        num_rows = 5
        num_cols = 3
        num_images = min(num_rows*num_cols, len(predictions))  # post: num_rows*num_cols; see --limit
        plt.figure(figsize=(2*2*num_cols, 2*num_rows))
        for i in range(num_images):
            plt.subplot(num_rows, 2*num_cols, 2*i+1)
            prediction, actual_label, img = predictions[i], self.test_labels[i][0], self.test_imgs[i]
            self.plot_img(prediction, actual_label, img)
            plt.subplot(num_rows, 2*num_cols, 2*i+2)
            self.plot_predictions(prediction, actual_label)
        plt.tight_layout()
        self.show_figure('predictions.png')  # post: plt.show()
        return predictions  # not in the post: for confusion_matrix

    # ═══ Beyond the post: what readers ask next ══════════════════════════════════════════════════

    def confusion_matrix(self, predictions):
        """Where the model errs: true (rows) against predicted class (columns) over the whole test
        set, drawn as a heat map, and each class's accuracy printed worst first. Returns the matrix."""
        matrix = tf.math.confusion_matrix(self.test_labels[:, 0], np.argmax(predictions, axis=1),
                                          num_classes=len(self.classes)).numpy()
        counts = matrix.sum(axis=1)
        per_class = np.diag(matrix) / np.maximum(counts, 1)
        print('\nPer-class accuracy, worst first:')
        for i in np.argsort(np.where(counts > 0, per_class, np.inf), kind='stable'):  # no images: last
            print(f'  {self.classes[i]:<10} {f"{per_class[i]:.2f}" if counts[i] else "no test images"}')

        plt.figure(figsize=(9, 8))
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
        self.show_figure('confusion-matrix.png')
        return matrix

    def plot_mistakes(self, predictions):
        """The test images the model got wrong with the most confidence, drawn as predictions.png is:
        which errors are forgivable (a cat taken for a dog) and which are not. Returns their indices."""
        labels = self.test_labels[:, 0]
        wrong = np.flatnonzero(np.argmax(predictions, axis=1) != labels)
        shown = wrong[np.argsort(-predictions[wrong].max(axis=1), kind='stable')][:15]
        plt.figure(figsize=(12, 10))
        for i, k in enumerate(shown):
            plt.subplot(5, 6, 2*i+1)
            self.plot_img(predictions[k], labels[k], self.test_imgs[k])
            plt.subplot(5, 6, 2*i+2)
            self.plot_predictions(predictions[k], labels[k])
        plt.suptitle(f'The most confident of {len(wrong):,} mistakes on {len(labels):,} test images')
        plt.tight_layout()
        self.show_figure('mistakes.png')
        return shown

    def plot_filters(self):
        """The first convolution's 32 learned 3x3x3 kernels, each drawn as a tiny RGB patch scaled to
        its own range: what the network looks for first. Returns them, shape (32, 3, 3, 3)."""
        kernels = np.moveaxis(keras.ops.convert_to_numpy(self.convolutions()[0].kernel), -1, 0)
        plt.figure(figsize=(8, 4.6))
        for i, kernel in enumerate(kernels):
            plt.subplot(4, 8, i+1)
            plt.xticks([])
            plt.yticks([])
            plt.imshow((kernel - kernel.min()) / max(np.ptp(kernel), 1e-12))
        plt.suptitle("The first convolution's 32 filters (3x3 pixels, RGB)")
        self.show_figure('filters.png')
        return kernels

    def plot_feature_maps(self, index=0, channels=8):
        """What one test image becomes after each convolution: each layer's `channels` most active
        maps, at the layer's size (32x32 -> 30 -> 13 -> 4). Returns the maps, one array per layer."""
        probe = keras.Model(self.model.layers[0].input, [conv.output for conv in self.convolutions()])
        maps = [keras.ops.convert_to_numpy(m)[0].astype(np.float32)
                for m in probe(self.test_imgs[index:index+1] / np.float32(255), training=False)]
        plt.figure(figsize=(1.3 * (channels + 1), 1.5 * len(maps)))
        for row, layer_maps in enumerate(maps):
            plt.subplot(len(maps), channels + 1, row * (channels + 1) + 1)
            plt.axis('off')
            plt.imshow(self.test_imgs[index])
            h, w, c = layer_maps.shape
            plt.title(f'conv {row + 1}: {h}x{w}x{c}', fontsize=8)
            for j, channel in enumerate(np.argsort(-layer_maps.mean(axis=(0, 1)), kind='stable')[:channels]):
                plt.subplot(len(maps), channels + 1, row * (channels + 1) + j + 2)
                plt.axis('off')
                plt.imshow(layer_maps[..., channel], cmap='viridis')
                plt.title(f'#{channel}', fontsize=7)
        plt.suptitle(f'Test image {index} ({self.classes[self.test_labels[index][0]]}) after each convolution')
        plt.tight_layout()
        self.show_figure('feature-maps.png')
        return maps

    def grad_cam(self, imgs):
        """Grad-CAM: where, in each image, the evidence for its predicted class lies. The last
        convolution's maps, weighted by how much the class score rises with each, summed, kept where
        positive and upsampled to 32x32. Returns heat maps (N, 32, 32), each scaled to peak at 1."""
        probe = keras.Model(self.model.layers[0].input, [self.convolutions()[-1].output, self.model.layers[-1].output])
        with tf.GradientTape() as tape:
            maps, logits = probe(tf.constant(imgs, tf.float32) / 255.0, training=False)
            scores = tf.gather(logits, tf.argmax(logits, axis=1), batch_dims=1)
        maps, grads = tf.cast(maps, tf.float32), tf.cast(tape.gradient(scores, maps), tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one per channel
        heat = tf.image.resize(tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., None], (32, 32))[..., 0]
        return (heat / tf.maximum(tf.reduce_max(heat, axis=(1, 2), keepdims=True), 1e-12)).numpy()

    def plot_grad_cam(self, count=15):
        """Grad-CAM's heat maps laid over predictions.png's first test images, titled with the
        predicted class (and the true one when they differ). Returns the heat maps."""
        imgs, labels = self.test_imgs[:count], self.test_labels[:count, 0]
        heat = self.grad_cam(imgs)
        predicted = np.argmax(self.model.predict(imgs / np.float32(255), verbose=0), axis=1)
        plt.figure(figsize=(10, 2.2 * math.ceil(len(imgs) / 5)))
        for i, img in enumerate(imgs):
            plt.subplot(math.ceil(len(imgs) / 5), 5, i+1)
            plt.axis('off')
            plt.imshow(img)
            plt.imshow(heat[i], cmap='jet', alpha=0.45, interpolation='bilinear')
            truth = '' if predicted[i] == labels[i] else f' ({self.classes[labels[i]]})'
            plt.title(self.classes[predicted[i]] + truth, fontsize=9, color='blue' if not truth else 'red')
        plt.suptitle('Grad-CAM: where the evidence for the predicted class lies')
        plt.tight_layout()
        self.show_figure('grad-cam.png')
        return heat

    def convolutions(self):
        return [layer for layer in self.model.layers if isinstance(layer, layers.Conv2D)]

    def vary(self, post_layers):
        """The post's layer list with the --batch-norm and --dropout additions (none by default).
        --augment is not a layer: the training pipeline flips and shifts the images (pipelines)."""
        v, varied = self.variations, []
        for layer in post_layers:
            if v.dropout and isinstance(layer, layers.Dense):
                varied.append(layers.Dropout(v.dropout))
            varied.append(layer)
            if v.batch_norm and isinstance(layer, layers.Conv2D):
                varied.append(fused(layers.BatchNormalization()))
        return varied

    # ─── The plumbing the post's methods call ────────────────────────────────────────────────────

    def pipelines(self):
        """(train, validation, test) pipelines. Validation is on the test set, as in the post, unless
        --validation-split holds out the last training images instead."""
        kept, held_out = self.split()
        train = pipeline(self.train_imgs[:kept], self.train_labels[:kept], self.batch_size, shuffle=True,
                         augment=self.variations.augment)
        test = pipeline(self.test_imgs, self.test_labels, EVAL_BATCH_SIZE)
        if not held_out:
            self.validation_label = 'val_accuracy'
            return train, test, test
        self.validation_label = f'val_accuracy (last {held_out:,} training images)'
        return train, pipeline(self.train_imgs[kept:], self.train_labels[kept:], EVAL_BATCH_SIZE), test

    def split(self):
        """(training images trained on, training images held out for --validation-split)."""
        held_out = math.ceil(len(self.train_imgs) * self.variations.validation_split)
        if held_out >= len(self.train_imgs):
            raise CifarError(f'--validation-split {self.variations.validation_split} leaves no training '
                             f'images out of {len(self.train_imgs)}')
        return len(self.train_imgs) - held_out, held_out

    def optimizer(self):
        """The post's 'adam', or with --cosine-decay Adam whose learning rate falls along a cosine from
        1e-3 to 0, a little at every training step, over all the epochs."""
        if not self.variations.cosine_decay:
            return 'adam'
        steps = self.epochs * math.ceil(self.split()[0] / self.batch_size)
        return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=steps))

    def callbacks(self):
        """What fit() does beyond the post: a progress bar that counts truthfully, epoch times, a
        clean stop on Ctrl-C, and --tensorboard."""
        callbacks = [ProgressBar(), StopOnCtrlC(), EpochTimer()]
        if self.variations.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(self.variations.tensorboard))
        return callbacks

    def show_figure(self, name):
        """The one place figures go, where the post calls plt.show(): the current figure is written to
        figures_dir/name (atomically) if a folder was given, then shown where there is a display:
        inline in Jupyter, in a window on a desktop, nowhere when headless (show= decides instead)."""
        fig = plt.gcf()
        if self.figures_dir:
            path = os.path.join(self.figures_dir, name)
            check_writable(self.figures_dir, 'figures')
            write_atomically(path, lambda tmp: fig.savefig(tmp, format='png'))
            print(f'Wrote {path}')
        if self.show if self.show is not None else can_show():
            plt.show()
        plt.close(fig)


# ─── Beyond the post, continued: the experiments' options, keeping the model, your own pictures ──

@dataclasses.dataclass
class Variations:
    """The reader's next experiments, one option each; the defaults are the post's."""
    augment: bool = False         # random flips and shifts of the training images
    batch_norm: bool = False      # BatchNormalization after each convolution
    dropout: float = 0.0          # Dropout(rate) before each dense layer
    validation_split: float = 0.0  # validate on the last fraction of training images, not the test set
    cosine_decay: bool = False    # learning rate along a cosine from 1e-3 to 0, step by step
    tensorboard: str | None = None  # TensorBoard log folder

    def __str__(self):
        """The options in effect, as typed: '--augment --dropout 0.3', or 'none (the post's)'."""
        flags = [f'--{field.name.replace("_", "-")}' + ('' if value is True else f' {value}')
                 for field in dataclasses.fields(self) if (value := getattr(self, field.name))]
        return ' '.join(flags) or "none (the post's network and training)"


def save_model(model, path):
    """--save-model: the model in Keras's .keras format, written atomically."""
    write_atomically(path, model.save)
    print(f'Saved the trained model to {path}')


def load_model(path):
    """--load-model: a model saved by --save-model, loaded without handing Keras anything from the
    file. Its config.json must describe, layer for layer, the network build_model makes (with the
    --batch-norm and --dropout it shows); that network is built here, and its weights are read
    into it from model.weights.h5 once every claim about them checks out (read_keras_file)."""
    label = f'--load-model {path}'
    config, weights = read_keras_file(path)
    model = build_network(matching_variations(config, label))
    read_weights(model, weights, label)
    print(f'Loaded the model from {path}')
    return model


def predict_files(model, paths):
    """--predict: each image's top 3 classes (read_image says how a file becomes 32x32 RGB), classified
    EVAL_BATCH_SIZE images at a time. Returns how many files could not be read."""
    failed = 0
    for start in range(0, len(paths), EVAL_BATCH_SIZE):
        read = []  # (path, pixels): a file named twice is answered twice
        for path in paths[start:start + EVAL_BATCH_SIZE]:
            try:
                read.append((path, read_image(path)))
            except CifarError as e:
                print(f'error: {e}', file=sys.stderr)
                failed += 1
        if not read:
            continue
        logits = model.predict_on_batch(np.stack([pixels for _, pixels in read]))
        probs = keras.ops.convert_to_numpy(keras.ops.softmax(keras.ops.cast(logits, 'float32')))
        for (path, _), p in zip(read, probs):
            print(f'{path}: ' + ', '.join(f'{CLASSES[i]} {p[i]:.2f}' for i in np.argsort(p)[::-1][:3]))
    return failed


# ═══ Before TensorFlow loads (3 s): the options, then the imports ══════════════════════════════════
# python cifar_cnn.py reads its options here, before the imports below, so that --help and mistakes
# answer at once; the class above uses what they import only when its methods run.


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Basic CIFAR CNN: the blog post's program, runnable. Without --data-dir it downloads "
                    'CIFAR-10 (163 MB) once into ~/.keras/datasets, as keras.datasets.cifar10.load_data() does.',
        epilog='examples: python cifar_cnn.py --limit 2000 --epochs 1 --figures-dir runs/quick (a quick check);  '
               'python cifar_cnn.py --data-dir DIR --save-model cifar.keras;  '
               'python cifar_cnn.py --load-model cifar.keras --predict photo.jpg')
    p.add_argument('--epochs', type=whole_number(1), help='training epochs (default: 10)')
    p.add_argument('--batch-size', type=whole_number(1, 4096), help='training batch size (default: 32)')
    p.add_argument('--seed', type=whole_number(0, 2**32 - 1), help='random seed: same seed, same machine, same numbers')
    p.add_argument('--data-dir', metavar='DIR', type=path_name, help='read CIFAR-10 from DIR (cifar-10-batches-py, '
                   'a folder holding it, or one holding cifar-10-python.tar.gz) instead of downloading it')
    p.add_argument('--figures-dir', metavar='DIR', type=path_name,
                   help='where figures go (default: figures, over the ones in the repository)')
    p.add_argument('--show', action='store_true', help='also open each figure in a window, as the post does')
    p.add_argument('--limit', type=whole_number(1), metavar='N',
                   help='use only the first N training and N test images (a quick run)')
    p.add_argument('--precision', choices=['auto', 'float32', 'mixed'],
                   help='auto (default): mixed precision where the hardware has it natively, else float32')
    p.add_argument('--save-model', metavar='PATH', type=path_name, help='save the trained model to PATH (.keras)')
    p.add_argument('--load-model', metavar='PATH', type=path_name,
                   help='load a model saved with --save-model instead of training one')
    p.add_argument('--predict', metavar='IMAGE', nargs='+', type=path_name,
                   help='classify these image files and print the top 3 classes; with --load-model at once, '
                        'without it after training a model first')
    beyond = p.add_argument_group('beyond the post: the next experiments (bench/README.md measures them)')
    beyond.add_argument('--augment', action='store_true', help='random flips and shifts of the training images')
    beyond.add_argument('--batch-norm', action='store_true', help='batch normalization after each convolution')
    beyond.add_argument('--dropout', type=fraction, metavar='RATE', help='dropout before each dense layer')
    beyond.add_argument('--validation-split', type=fraction, metavar='F',
                        help='validate on the last fraction F of the training images, not on the test set')
    beyond.add_argument('--cosine-decay', action='store_true',
                        help='lower the learning rate along a cosine, step by step, from 1e-3 to 0')
    beyond.add_argument('--tensorboard', metavar='DIR', type=path_name,
                        help='write TensorBoard logs to DIR (needs: python -m pip install tensorboard)')
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


TRAINING_ONLY = ('epochs', 'batch_size', 'precision', 'augment', 'batch_norm', 'dropout', 'validation_split',
                 'cosine_decay', 'tensorboard', 'save_model')
PREDICT_ONLY_IGNORES = ('data_dir', 'limit', 'figures_dir', 'show')


def whole_number(low, high=None):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text[:40]!r} is not a whole number') from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f'{value} is not {low}-{high}' if high else f'{value} is less than {low}')
        return value
    return parse


def fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text[:40]!r} is not a number') from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f'{text[:40]} is not between 0 and 1')
    return value


def path_name(text):
    if not text or '\0' in text:
        raise argparse.ArgumentTypeError('an empty name, or one with a NUL byte')
    return text


stderr_fd = 2  # where standard error really goes, also while stderr_dropped() holds it
if __name__ == '__main__':  # Ctrl-C while TensorFlow loads: one line, not a traceback
    signal.signal(signal.SIGINT, lambda *_: (os.write(stderr_fd, b'\nInterrupted.\n'), os._exit(130)))
    parse_args()  # --help and usage errors exit here; main(), at the bottom, reads the options again


def environment_problem():
    """What in the environment stops the program before it starts, as one line; None if nothing."""
    if os.environ.get('KERAS_BACKEND', 'tensorflow') != 'tensorflow':
        return (f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}: this program runs on Keras's TensorFlow backend; "
                'unset KERAS_BACKEND')
    try:
        import matplotlib  # noqa: F401 -- it reads MPLBACKEND as it loads
    except ValueError:
        return f"MPLBACKEND={os.environ.get('MPLBACKEND')}: not a backend matplotlib knows; unset MPLBACKEND"
    return None


if problem := environment_problem():
    if __name__ == '__main__':
        sys.exit(f'error: {problem}')
    raise ImportError(problem)


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (Linux), e.g. {'avx2', 'avx512_bf16'}; else empty."""
    try:
        with open('/proc/cpuinfo') as f:
            return set(next((line for line in f if line.startswith('flags')), ':').split(':', 1)[1].split())
    except OSError:
        return set()


# TensorFlow reads these as it loads: oneDNN's fast CPU kernels and, on 2 CPUs, the thread layout
# measured fastest on each CPU kind (bench/README.md). Your own settings win.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # hides TensorFlow's C++ info and warnings once it runs
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
if len(os.sched_getaffinity(0) if hasattr(os, 'sched_getaffinity') else range(os.cpu_count() or 1)) <= 2:
    intra, inter = ('1', '2') if 'avx512_bf16' in cpu_flags() else ('2', '1')
    os.environ.setdefault('TF_NUM_INTRAOP_THREADS', intra)
    os.environ.setdefault('TF_NUM_INTEROP_THREADS', inter)
    os.environ.setdefault('TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD', 'true')

STARTUP_NOTES = re.compile(  # what TensorFlow 2.21's C++ prints as it loads, before its log settings apply
    r'WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR'
    r'|I\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard)\.cc:\d+\] '
    r'|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.'
    + (r'|E\d{4} [\d:. ]+\d+ cuda_platform\.cc:\d+\] failed call to cuInit' if not ctypes.util.find_library('cuda')
       else ''))  # no NVIDIA driver here, so no GPU to find: the failed search is not an error


ANY_LINE = re.compile('')


@contextlib.contextmanager
def stderr_dropped(lines=STARTUP_NOTES):
    """Drops the `lines` that C code writes straight to file descriptor 2, where Python's own settings
    cannot reach: TensorFlow's C++ start-up notes (STARTUP_NOTES), which TF_CPP_MIN_LOG_LEVEL no longer
    hides, or libtiff's remarks on a damaged file. Every other line written there is passed on."""
    global stderr_fd
    try:
        sys.stderr.flush()
        stderr_fd = os.dup(2)
    except (OSError, ValueError):  # no stderr to filter
        yield
        return
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
            for line in caught.read().decode(errors='replace').splitlines(keepends=True):
                if not lines.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


with stderr_dropped(STARTUP_NOTES):
    import h5py
    import keras
    import matplotlib
    import matplotlib.pyplot as plt
    import numpy as np
    import tensorflow as tf
    from PIL import Image, ImageOps
    from tensorflow.keras import layers, models
    tf.config.list_physical_devices('GPU')  # TensorFlow looks for a GPU once; it notes a failure in C++


# ═══ Support: the plumbing ═══════════════════════════════════════════════════════════════════════
# Everything a user hands the program is untrusted: each reader checks sizes and types before it
# allocates or trusts, and turns what is wrong into one CifarError line naming the file or option.

CIFAR_PAGE = 'https://www.cs.toronto.edu/~kriz/cifar.html'
BATCH_FILES = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
TAR_FILES = {f'cifar-10-batches-py/{name}' for name in [*BATCH_FILES, 'batches.meta', 'readme.html']}
MB = 2**20
MAX_BATCH_BYTES = 64 * MB     # a CIFAR-10 batch file: 31 MB
MAX_ARCHIVE_BYTES = 256 * MB  # cifar-10-python.tar.gz: 163 MB packed, 178 MB unpacked
MAX_MODEL_BYTES = 64 * MB     # a saved model: ~1.5 MB
MAX_IMAGE_BYTES = 64 * MB
MAX_IMAGE_PIXELS = 64_000_000  # 8000 x 8000
IMAGE_FORMATS = ['PNG', 'JPEG', 'GIF', 'BMP', 'WEBP', 'TIFF']  # what photos come in; each fuzzed (tests/test_fuzz.py)


class CifarError(Exception):
    """An expected failure (bad data, bad model file, unwritable folder): one line for the user."""


def first_line(error):
    """An exception as one short line: the first line of its message that says something (Keras's
    multi-line errors open with a line ending in ':' and give the cause below it), else its type's name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if not line.endswith(':')), lines[0] if lines else type(error).__name__)[:200]


# ─── Reading files that may be anything ──────────────────────────────────────────────────────────

def open_regular(path, label, limit):
    """Opens `path` for reading if it is a regular file of at most `limit` bytes. Folders, pipes,
    devices and symlink loops are refused before they are opened, so nothing waits on them."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CifarError(f'{label}: no such file') from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        raise CifarError(f'{label}: cannot read it ({getattr(e, "strerror", None) or e})') from None
    if stat.S_ISDIR(info.st_mode):
        raise CifarError(f'{label}: is a folder, not a file')
    if not stat.S_ISREG(info.st_mode):
        raise CifarError(f'{label}: is not a regular file (a pipe, socket or device)')
    if info.st_size > limit:
        raise CifarError(f'{label}: is {info.st_size:,} bytes, more than the {limit:,} expected at most')
    try:  # O_NONBLOCK: should the file have been swapped for a pipe since, opening it cannot hang
        f = os.fdopen(os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0)), 'rb')
    except OSError as e:
        raise CifarError(f'{label}: cannot read it ({e.strerror or e})') from None
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise CifarError(f'{label}: is not a regular file (a pipe, socket or device)')
    return f


def read_file(path, label, limit):
    """The bytes of a regular file of at most `limit` bytes (see open_regular)."""
    with open_regular(path, label, limit) as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise CifarError(f'{label}: cannot read it ({e.strerror or e})') from None
    if len(data) > limit:
        raise CifarError(f'{label}: grew past {limit:,} bytes while being read')
    return data


# ─── CIFAR-10: Keras's loader, --data-dir, batch files, the tarball ──────────────────────────────

def load_cifar10(data_dir=None, limit=None):
    """What `keras.datasets.cifar10.load_data()` returns, uint8 images (N, 32, 32, 3) and uint8 labels
    (N, 1), training then test: from that very loader, or read strictly from `data_dir`, files a user
    hands over. `limit`: the first N of each."""
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
    """keras.datasets.cifar10.load_data(), as in the post: it downloads CIFAR-10 (163 MB) once into
    Keras's cache, checks its SHA-256, unpacks it and reads it with a restricted unpickler. What goes
    wrong there becomes one line saying what to do."""
    cache = os.path.join(os.path.expanduser(os.environ.get('KERAS_HOME') or '~/.keras'), 'datasets')
    try:
        with warnings.catch_warnings():  # the error below says it better
            warnings.filterwarnings('ignore', 'Could not extract archive')
            return keras.datasets.cifar10.load_data()
    except Exception as e:  # Keras turns every failed download into a bare Exception('URL fetch failure ...')
        if not (type(e) is Exception and str(e).startswith('URL fetch failure')
                or isinstance(e, (ConnectionError, TimeoutError))):
            if isinstance(e, (OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError, tarfile.TarError)):
                raise CifarError(f"Keras's CIFAR-10 loader failed ({first_line(e)}); if its download cache is "
                                 f'damaged, delete {cache}/cifar-10-batches-py-target* and run again') from None
            raise
        reason = re.sub(r'^URL fetch failure on \S+: (\S+ -- )?', '', first_line(e))
        raise CifarError(f'could not download CIFAR-10 ({reason}). Download cifar-10-python.tar.gz from '
                         f'{CIFAR_PAGE} yourself and point --data-dir (data_dir= in Python) at its folder') from None


def read_data_dir(data_dir):
    """--data-dir: a folder of batch files, one holding cifar-10-batches-py/, or one holding the tarball."""
    label = f'--data-dir {data_dir}'
    try:
        if not stat.S_ISDIR(os.stat(data_dir).st_mode):
            raise CifarError(f'{label}: is not a folder')
    except FileNotFoundError:
        raise CifarError(f'{label}: no such folder') from None
    except (OSError, ValueError) as e:
        raise CifarError(f'{label}: cannot read it ({getattr(e, "strerror", None) or e})') from None
    nested = os.path.join(data_dir, 'cifar-10-batches-py')
    if any(os.path.lexists(os.path.join(data_dir, name)) for name in BATCH_FILES):
        return read_folder(data_dir)
    if os.path.isdir(nested):
        return read_folder(nested)
    if os.path.lexists(os.path.join(data_dir, 'cifar-10-python.tar.gz')):
        return read_tarball(os.path.join(data_dir, 'cifar-10-python.tar.gz'))
    raise CifarError(f'{label}: holds neither cifar-10-batches-py/ nor cifar-10-python.tar.gz '
                     f'(get it from {CIFAR_PAGE})')


def read_folder(folder):
    return [read_batch(path, read_file(path, path, MAX_BATCH_BYTES))
            for path in (os.path.join(folder, name) for name in BATCH_FILES)]


def read_tarball(path):
    """The batches straight out of cifar-10-python.tar.gz, unpacked in memory: nothing is extracted."""
    with open_regular(path, path, MAX_ARCHIVE_BYTES) as f:
        try:
            tar_bytes = gzip.GzipFile(fileobj=f).read(MAX_ARCHIVE_BYTES + 1)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise CifarError(f'{path}: truncated or not a .tar.gz archive ({first_line(e)})') from None
        except OSError as e:
            raise CifarError(f'{path}: cannot read it ({e.strerror or e})') from None
    if len(tar_bytes) > MAX_ARCHIVE_BYTES:
        raise CifarError(f'{path}: unpacks to more than {MAX_ARCHIVE_BYTES:,} bytes; CIFAR-10 unpacks to 178 MB')
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode='r:') as tar:
            members = {}
            for m in tar.getmembers():  # the checks of tarfile's 'data' filter, for every member
                for name in (m.name, m.linkname if m.issym() or m.islnk() else ''):
                    if name.startswith(('/', '\\')) or '..' in name.replace('\\', '/').split('/'):
                        raise CifarError(f'{path}: refused: member {m.name[:80]!r} would extract outside its folder')
                name = m.name.removeprefix('./').rstrip('/')
                if name in members:
                    raise CifarError(f'{path}: refused: it holds {m.name[:80]!r} twice')
                if not (m.isdir() and name == 'cifar-10-batches-py' or m.isfile() and name in TAR_FILES):
                    raise CifarError(f'{path}: refused: {m.name[:80]!r} is not one of the files of the CIFAR-10 '
                                     'archive (cifar-10-batches-py/ and what it holds)')
                members[name] = m
            batches = []
            for name in BATCH_FILES:
                m = members.get(f'cifar-10-batches-py/{name}')
                if m is None:
                    raise CifarError(f'{path}: has no cifar-10-batches-py/{name}')
                if m.size > MAX_BATCH_BYTES:
                    raise CifarError(f'{path}: {m.name} claims {m.size:,} bytes; a CIFAR-10 batch has 31 MB')
                batches.append(read_batch(f'{path}:{m.name}', tar.extractfile(m).read()))
            return batches
    except tarfile.TarError as e:
        raise CifarError(f'{path}: truncated or not a .tar.gz archive ({first_line(e)})') from None


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain Python data, and nothing else.

    A pickle can name any Python callable (`os.system`, ...) and have it run while loading. Like
    Keras 3.15 (`keras/src/datasets/npz_utils.py`), only what rebuilds a numpy array is allowed.
    Unlike it, numpy never sees the pickle's claims: stand-ins check them first (PickledArray).
    """

    def find_class(self, module, name):
        if (module, name) == ('numpy', 'ndarray'):
            return PickledArray
        if (module, name) == ('numpy', 'dtype'):
            return PickledDtype
        if name == '_reconstruct' and module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            return PickledArray.reconstruct  # protocols 0-4
        if name == '_frombuffer' and module in ('numpy.core.numeric', 'numpy._core.numeric'):
            return PickledArray.frombuffer  # protocol 5
        if (module, name) == ('_codecs', 'encode'):
            return latin1_bytes  # protocols 0-2 write bytes as text
        raise RefusedPickle(f'refused to load: it asks for {module}.{name}, not a numpy array')


def latin1_bytes(text, encoding):
    """Stands in for _codecs.encode, with which protocols 0-2 write bytes: encode(text, 'latin1')."""
    if type(text) is not str or encoding != 'latin1':
        raise RefusedPickle('refused to load: it encodes text in a way pickle does not write')
    return text.encode('latin1')


class RefusedPickle(pickle.UnpicklingError):
    """A pickle that asks for more than numpy arrays: refused, rather than damaged."""


class PickledArray:
    """Stands in for a numpy array while unpickling. numpy writes `_reconstruct(ndarray, (0,), b'b')`
    and then the state (version, shape, dtype, Fortran order, bytes); the state is checked and the
    array made with np.frombuffer, so nothing is allocated beyond the bytes the file holds."""
    array = None

    @staticmethod
    def reconstruct(subtype, shape, typecode):
        if subtype is not PickledArray or type(shape) is not tuple or shape != (0,):
            raise RefusedPickle('refused to load: an array in a form numpy does not write')
        return PickledArray()

    def __setstate__(self, state):
        if not (type(state) is tuple and len(state) == 5 and state[0] == 1 and type(state[3]) is bool):
            raise pickle.UnpicklingError('an array whose state is not the one numpy writes')
        self.array = checked_array(state[4], state[2], state[1], 'F' if state[3] else 'C')

    @staticmethod
    def frombuffer(raw, dtype, shape, order):
        """numpy's _frombuffer(bytes, dtype, shape, order), which protocol 5 writes."""
        made = PickledArray()
        made.array = checked_array(raw, dtype, shape, order)
        return made


def checked_array(raw, dtype, shape, order):
    """An array of `shape` made from `raw`, once the claims are checked: nothing is allocated beyond the
    bytes the file holds."""
    if not (type(raw) in (bytes, bytearray) and isinstance(dtype, PickledDtype) and type(shape) is tuple
            and all(type(n) is int and n >= 0 for n in shape) and order in ('C', 'F')):
        raise pickle.UnpicklingError('an array whose state is not the one numpy writes')
    if math.prod(shape) * dtype.dtype.itemsize != len(raw):
        raise pickle.UnpicklingError(f'an array of shape {shape} with {len(raw):,} bytes of data')
    return np.frombuffer(raw, dtype.dtype).reshape(shape, order=order)


class PickledDtype:
    """Stands in for numpy.dtype while unpickling: numpy writes `dtype('u1', False, True)` and then
    its state. Only plain numbers (bool, integers, floats), in the state numpy writes for them."""

    def __init__(self, name, align=False, copy=True):
        self.name = name

    def __setstate__(self, state):
        if not (type(state) is tuple and len(state) == 8 and state[0] == 3 and state[1] in ('<', '>', '|', '=')
                and state[2:5] == (None, None, None) and state[5:] == (-1, -1, 0) and type(self.name) is str
                and self.name.lstrip('<>|=') in NUMBER_TYPES):
            raise pickle.UnpicklingError('an array type that is not a plain number')
        self.dtype = np.dtype(self.name).newbyteorder(state[1] if state[1] in '<>' else '=')


NUMBER_TYPES = {'b1', 'i1', 'u1', 'i2', 'u2', 'i4', 'u4', 'i8', 'u8', 'f2', 'f4', 'f8'}


def check_pickle_claims(data):
    """Walks a pickle's opcodes without building anything: every length field must fit in the data
    and every memo index be small, because the unpickler allocates what they claim before reading."""
    for opcode, arg, _ in pickletools.genops(data):  # ValueError for a length beyond the data
        if opcode.name in ('PUT', 'BINPUT', 'LONG_BINPUT') and not 0 <= arg <= len(data):
            raise pickle.UnpicklingError(f'a memo index of {arg:,}')


def read_batch(label, data):
    """One CIFAR-10 batch file's bytes -> (uint8 images (N, 32, 32, 3), uint8 labels (N, 1))."""
    try:
        check_pickle_claims(data)
        batch = NumpyOnlyUnpickler(io.BytesIO(data), encoding='bytes').load()
    except RefusedPickle as e:
        raise CifarError(f'{label}: {e}') from None
    # What unpickling damaged bytes raises: pickle's docs name UnpicklingError, AttributeError, EOFError
    # and IndexError; tests/test_fuzz.py found ValueError, TypeError, OverflowError and IndexError.
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, OverflowError, IndexError,
            EOFError) as e:
        raise CifarError(f'{label}: damaged or not a CIFAR-10 batch file ({first_line(e)})') from None
    if not isinstance(batch, dict):
        raise CifarError(f'{label}: not a CIFAR-10 batch file (it holds a {type(batch).__name__}, not a dict)')
    for key in (b'data', b'labels'):
        if key not in batch:
            raise CifarError(f'{label}: not a CIFAR-10 batch file (no {key!r} entry)')
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
    if isinstance(labels, list) and all(type(v) is int for v in labels):
        values = labels
    elif isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in 'iu':
        values = labels.tolist()
    else:
        found = (f'an array of shape {labels.shape} and type {labels.dtype}' if isinstance(labels, np.ndarray)
                 else f'a list holding a {next(type(v).__name__ for v in labels if type(v) is not int)}'
                 if isinstance(labels, list) else f'a {type(labels).__name__}')
        raise CifarError(f'{label}: labels must be a flat list of whole numbers 0-9, found {found}')
    if len(values) != count:
        raise CifarError(f'{label}: {len(values)} labels for {count} images')
    if values and (min(values) < 0 or max(values) > 9):
        raise CifarError(f'{label}: labels must be 0-9, found {min(values)}..{max(values)}')
    return np.array(values, dtype=np.uint8)


# ─── Saved models (.keras) and your own images ───────────────────────────────────────────────────

KERAS_FILES = {'metadata.json', 'config.json', 'model.weights.h5'}
MAX_LAYERS = 16  # --save-model writes 8 to 13, the input included


def read_keras_file(path):
    """A .keras file's config (parsed) and weights (bytes), once the zip is checked: at most
    MAX_MODEL_BYTES, Keras's three members and nothing else, each whole (CRC)."""
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
            damaged = zf.testzip()
            if damaged:
                raise CifarError(f'{label}: damaged ({damaged} fails its checksum)')
            return json.loads(zf.read('config.json')), zf.read('model.weights.h5')
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError,
            RuntimeError, ValueError) as e:  # RuntimeError: encrypted; ValueError: bad JSON
        raise CifarError(f'{label}: damaged or not a .keras file ({first_line(e)})') from None
    except RecursionError:
        raise CifarError(f'{label}: damaged (config.json is nested too deeply)') from None


def matching_variations(config, label):
    """The Variations whose network config.json describes, compared straight from the JSON with the
    network build_model makes: the number of layers, each one's kind and every setting but its name.
    An edited file would otherwise give answers that look right and are not."""
    saved = config.get('config') if isinstance(config, dict) and config.get('class_name') == 'Sequential' else None
    saved = saved.get('layers') if isinstance(saved, dict) else None
    if not (isinstance(saved, list) and all(isinstance(layer, dict) for layer in saved)):
        raise CifarError(f'{label}: refused: config.json holds no Sequential model, which --save-model writes')
    if len(saved) > MAX_LAYERS:
        raise CifarError(f'{label}: refused: {len(saved):,} layers; --save-model writes at most {MAX_LAYERS}')
    rates = [layer.get('config') for layer in saved if layer.get('class_name') == 'Dropout']
    rate = (rates[0].get('rate') if isinstance(rates[0], dict) else rates[0]) if rates else 0.0
    if not (type(rate) is float and 0 <= rate < 1):
        raise CifarError(f'{label}: refused: a dropout rate of {str(rate)[:20]}')
    variations = Variations(batch_norm=any(layer.get('class_name') == 'BatchNormalization' for layer in saved),
                            dropout=rate)
    wanted = json.loads(json.dumps(build_network(variations).get_config()['layers']))

    def settings(layer):
        config = layer.get('config')
        return {k: v for k, v in config.items() if k not in ('name', 'dtype')} if isinstance(config, dict) else config
    for i in range(max(len(saved), len(wanted))):
        got, want = (saved[i] if i < len(saved) else {}), (wanted[i] if i < len(wanted) else {})
        if (got.get('module'), got.get('class_name'), settings(got)) != (want.get('module'), want.get('class_name'),
                                                                        settings(want)):
            kind = f'{got.get("module")}.{got.get("class_name")}'[:80] if got else 'missing'
            raise CifarError(f'{label}: refused: layer {i + 1} is {kind}, not the '
                             f'{want.get("class_name", "end") if want else "end"} that --save-model writes there, '
                             'or not with its settings')
    return variations


def read_weights(model, data, label):
    """model.weights.h5 -> `model`'s weights. Every dataset Keras keeps them in is found where Keras
    puts it (layers/NAME/vars/I) and checked against the weight it holds, shape, dtype and storage
    (whole, uncompressed, in the file), before a byte of it is read; then each is read whole. NaN
    or infinite weights are refused: they would give answers that look right and are not."""
    expected = keras_weight_paths(model)
    try:
        with h5py.File(io.BytesIO(data), 'r') as f:
            group = f.get('layers')
            if not isinstance(group, h5py.Group) or len(group) != len(model.layers):
                raise CifarError(f'{label}: refused: its weights are not those of the network --save-model writes')
            found = []
            for path, variable in expected.items():
                dataset = group.get(path)
                if not (isinstance(dataset, h5py.Dataset) and dataset.shape == tuple(variable.shape)
                        and dataset.dtype == np.dtype('<f4') and dataset.chunks is None and not dataset.external
                        and not dataset.is_virtual and dataset.id.get_storage_size() == dataset.nbytes):
                    raise CifarError(f'{label}: refused: the weights at layers/{path} are not the '
                                     f'{tuple(variable.shape)} float32 numbers --save-model writes there')
                found.append((variable, dataset))
            values = [(variable, dataset[()]) for variable, dataset in found]
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:  # h5py on what is not HDF5
        raise CifarError(f'{label}: damaged (model.weights.h5: {first_line(e)})') from None
    if not all(np.isfinite(value).all() for _, value in values):
        raise CifarError(f'{label}: refused: some weights are not numbers (NaN or infinite)')
    for variable, value in values:
        variable.assign(value)


def keras_weight_paths(model):
    """{'conv2d/vars/0': variable, ...}: where Keras's .keras format keeps each of `model`'s weights,
    under its layer's class name in snake case, numbered from the second layer of a kind on."""
    paths, seen = {}, {}
    for layer in model.layers:
        name = re.sub(r'([a-z])([A-Z])', r'\1_\2', re.sub(r'(.)([A-Z][a-z]+)', r'\1_\2', type(layer).__name__)).lower()
        seen[name] = seen.get(name, -1) + 1
        for i, variable in enumerate(layer.trainable_weights + layer.non_trainable_weights):
            paths[f'{name}{f"_{seen[name]}" if seen[name] else ""}/vars/{i}'] = variable
    return paths


def build_network(variations):
    """build_model's network with `variations`, without a data set or the summary it prints."""
    builder = CifarCNN.__new__(CifarCNN)  # build_model needs nothing but the variations
    builder.variations = variations
    with contextlib.redirect_stdout(io.StringIO()):  # its model.summary()
        return builder.build_model()


def read_image(path):
    """An image file of any size, format and mode -> float32 (32, 32, 3) in [0, 1], as in training.

    Turned upright (EXIF), made RGB, resized to 32x32 (bilinear). Transparent parts are shown on
    white. 16-bit pixels are scaled by their white level and float pixels must lie in 0-1: a plain
    convert('RGB') would clip both. A mode with no known scale is an error, never a guess."""
    data = read_file(path, path, MAX_IMAGE_BYTES)
    try:  # Pillow's warnings and libtiff's lines about a damaged file: the error line says it
        with warnings.catch_warnings(), stderr_dropped(ANY_LINE):
            warnings.simplefilter('ignore')
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise CifarError(f'{path}: claims {img.width:,} x {img.height:,} pixels, more than '
                                 f'{MAX_IMAGE_PIXELS:,}')
            ImageOps.exif_transpose(img, in_place=True)
            pixels = to_unit_rgb(path, img)
    except Image.UnidentifiedImageError:
        raise CifarError(f'{path}: not an image in a format read here ({", ".join(IMAGE_FORMATS)})') from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CifarError(f'{path}: claims more than {MAX_IMAGE_PIXELS:,} pixels') from None
    # What else Pillow raises for damaged files of these formats, as tests/test_fuzz.py finds it
    # (TypeError: a TIFF tag of the wrong type, FUZZ_SEED=1):
    except (OSError, SyntaxError, ValueError, TypeError) as e:
        raise CifarError(f'{path}: damaged image ({first_line(e)})') from None
    return pixels


def to_unit_rgb(path, img):
    """A decoded Pillow image -> float32 (32, 32, 3) in [0, 1]."""
    size = (32, 32)
    if img.mode in ('1', 'L', 'P', 'RGB', 'RGBX', 'CMYK', 'YCbCr', 'HSV', 'LA', 'PA', 'RGBA', 'RGBa'):
        if img.mode in ('LA', 'PA', 'RGBA', 'RGBa') or 'transparency' in img.info:
            img = Image.alpha_composite(Image.new('RGBA', img.size, 'white'), img.convert('RGBA'))
        return np.asarray(img.convert('RGB').resize(size, Image.BILINEAR), dtype=np.float32) / 255
    if img.mode.startswith('I;16') or (img.mode == 'I' and img.format == 'PNG'):  # 16-bit grey
        white = 65535
    elif img.mode == 'F':
        white = 1.0
    else:
        raise CifarError(f'{path}: {img.format} images in mode {img.mode} have no known white level '
                         '(save it as 8- or 16-bit RGB or greyscale)')
    grey = np.asarray(img, dtype=np.float32) / white
    if not (np.isfinite(grey).all() and grey.min() >= 0 and grey.max() <= 1):
        raise CifarError(f'{path}: {img.mode} pixels outside 0-{white}, so their scale is unknown')
    if type(img.info.get('transparency')) is int:  # the grey level that stands for transparent: on white
        grey[np.asarray(img) == img.info['transparency']] = 1.0
    small = Image.fromarray(grey, 'F').resize(size, Image.BILINEAR)
    return np.repeat(np.asarray(small, dtype=np.float32)[..., np.newaxis], 3, axis=2)


# ─── Training: data pipeline, precision, callbacks ───────────────────────────────────────────────

def pipeline(imgs, labels, batch_size, shuffle=False, augment=False):
    """A tf.data pipeline over uint8 images that scales each batch to float32 in [0, 1]: the same
    numbers as the post's `imgs / 255.0`, without float copies of the whole data set. With augment
    (--augment) each batch is flipped and shifted first (flip_and_shift), on the pipeline's thread,
    ahead of training, rather than in the training step (bench/README.md measures both)."""
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
    """--augment: each image of a batch flipped left-right at random (half of them) and shifted by up
    to 3 pixels (10%) each way, the border filled by reflection. What Keras's RandomFlip('horizontal')
    and RandomTranslation(0.1, 0.1) do, in whole pixels, by indexing: about half their cost."""
    n, shifts = tf.shape(images)[0], tf.range(32)
    padded = tf.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]], mode='REFLECT')  # 38 x 38
    rows = tf.random.uniform((n, 1), 0, 7, dtype=tf.int32) + shifts
    cols = tf.random.uniform((n, 1), 0, 7, dtype=tf.int32) + shifts
    cols = tf.where(tf.random.uniform((n, 1)) < 0.5, 37 - cols, cols)  # read right to left: flipped
    return tf.gather(tf.gather(padded, rows, batch_dims=1), cols, axis=2, batch_dims=1)


def fused(batch_norm):
    """A keras.layers.BatchNormalization that computes with TensorFlow's fused kernel, one op forward
    and one back. Keras 3 computes the moments and the normalisation op by op, which on a CPU takes
    two and a half times as long (bench/README.md). Same numbers, same moving statistics; the layer, and what
    --save-model writes, stay Keras's own."""
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
    """--precision -> (Keras dtype policy, why). `auto` picks mixed precision only where the
    hardware computes it natively; elsewhere it is slower than float32."""
    gpus = tf.config.list_physical_devices('GPU')
    if gpus:
        cc = tuple(tf.config.experimental.get_device_details(gpus[0]).get('compute_capability') or (0, 0))
        mixed, native = 'mixed_float16', cc >= (7, 0)  # Keras's advice: float16 pays from 7.0 on
        hardware = f'a GPU of compute capability {cc[0]}.{cc[1]}'
    else:
        mixed, native = 'mixed_bfloat16', bool(cpu_flags() & {'amx_bf16', 'avx512_bf16'})
        hardware = f'a CPU {"with" if native else "without"} native bfloat16 (amx_bf16/avx512_bf16)'
    if requested == 'float32':
        return 'float32', 'as asked'
    if requested == 'mixed':
        return mixed, f'as asked, on {hardware}'
    return (mixed if native else 'float32'), f'auto, on {hardware}'


def progress_verbosity():
    """fit()'s verbose=: a progress bar (1) on a terminal or in Jupyter; one plain line per epoch (2)
    elsewhere, as in a log file, where the bar's redrawing leaves escape codes and partial lines."""
    return 1 if getattr(sys.stdout, 'isatty', lambda: False)() or 'ipykernel' in sys.modules else 2


class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, counting steps truthfully: with steps_per_execution, Keras reports the
    last group of an epoch's steps as if it were whole (64/63, and a negative ETA)."""

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
    """First Ctrl-C: finish the current step, stop, and keep the epochs that ran to the end (the
    history forgets the one cut short). A second Ctrl-C goes to the previous handler: quit now."""

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


# ─── Printing and showing ────────────────────────────────────────────────────────────────────────

def summary(array):
    """An array as numpy prints a large one, its first and last three rows, whatever its size."""
    return np.array2string(array, threshold=0)


def can_show():
    """Whether plt.show() shows anything here: Jupyter's inline figures or a desktop window do; a
    headless backend such as Agg (no display) does not, and would only warn."""
    from matplotlib.backends import BackendFilter, backend_registry
    return plt.get_backend().lower() not in backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)


# ─── Writing files, and stopping cleanly ─────────────────────────────────────────────────────────

PENDING = set()  # temporary files being written, removed should the program be stopped


def write_atomically(path, write):
    """Calls `write(tmp)` with a temporary name beside `path`, then renames it to `path`, so a
    failed or interrupted write never leaves half a file there (a previous file stays whole)."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f'.{name}.{os.getpid()}.tmp{os.path.splitext(name)[1]}')
    PENDING.add(tmp)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise CifarError(f'cannot write {path}: {e.strerror or e}') from None
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)
        PENDING.discard(tmp)


STOPPED = {signal.SIGINT: 'Interrupted.', signal.SIGTERM: 'Terminated.',
           **({signal.SIGHUP: 'Hung up.'} if hasattr(signal, 'SIGHUP') else {})}  # the terminal closed


def stop_now(signum, frame):
    """Ctrl-C (outside training), SIGTERM or SIGHUP: remove half-written files, say so, and exit at
    once (130, 143 or 129). Exiting from here, not by an exception, because TensorFlow can turn an
    exception raised inside it into an error of its own."""
    for tmp in list(PENDING):
        try:
            os.remove(tmp)
        except OSError:
            pass
    try:
        sys.stdout.flush()
        print(f'\n{STOPPED[signum]}', file=sys.stderr, flush=True)
    finally:
        os._exit(128 + signum)


def check_writable(folder, what):
    """Fails before any slow step if `what` cannot be written to `folder`, creating it if need be;
    when it fails, the folders it created are removed again."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CifarError(f'cannot write {what} to {folder}: it is a file, not a folder')
    created, parent = [], os.path.abspath(folder)
    while not os.path.exists(parent) and parent != os.path.dirname(parent):  # deepest first
        created.append(parent)
        parent = os.path.dirname(parent)
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f'.write-test.{os.getpid()}')
        with open(probe, 'w'):
            pass
        os.remove(probe)
    except OSError as e:
        for made in created:
            with contextlib.suppress(OSError):
                os.rmdir(made)
        raise CifarError(f'cannot write {what} to {folder}: {e.strerror or e}') from None


# ═══ Command line: python cifar_cnn.py (its options are read above, before TensorFlow loads) ═════

def check_model_path(path):
    """--save-model: the folder must be writable and PATH not a folder: found out before training."""
    if os.path.isdir(path) or (os.path.lexists(path) and not os.path.islink(path) and not os.path.isfile(path)):
        raise CifarError(f'--save-model {path}: is a folder or a special file, not a place for a model file')
    check_writable(os.path.dirname(os.path.abspath(path)), 'the model')


def prepare(args):
    """What the command line does before the post's steps, so that what fails in a second fails before
    the slow steps: the seed, the model to load, the output folders, the precision. Returns the loaded
    model, or None."""
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    loaded = load_model(args.load_model) if args.load_model else None
    if loaded is not None and args.predict:
        return loaded
    check_writable(args.figures_dir, 'figures')
    if args.save_model:
        check_model_path(args.save_model)
    if args.tensorboard:
        try:
            import tensorboard  # noqa: F401 -- TensorFlow 2.21 no longer installs it
        except ImportError:
            raise CifarError(f'--tensorboard needs TensorBoard: {sys.executable} -m pip install tensorboard') from None
        check_writable(args.tensorboard, 'TensorBoard logs')
    if loaded is None:
        policy, why = choose_precision(args.precision)
        keras.mixed_precision.set_global_policy(policy)
        print(f'Precision: {policy} ({why})')
    return loaded


def run(args):
    """The post's steps in the post's order, and what the options add around them."""
    loaded = prepare(args)
    if loaded is not None and args.predict:  # --load-model --predict: answer and exit, no data set needed
        return 1 if predict_files(loaded, args.predict) else 0
    variations = Variations(args.augment, args.batch_norm, args.dropout or 0.0, args.validation_split or 0.0,
                            args.cosine_decay, args.tensorboard)
    if loaded is None:
        print(f'Experiments: {variations}')

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
    predictions = cnn.make_prediction()

    cnn.confusion_matrix(predictions)  # beyond the post: where it errs, and what it has learned
    cnn.plot_mistakes(predictions)
    cnn.plot_filters()
    cnn.plot_feature_maps()
    cnn.plot_grad_cam()
    if args.predict:
        return 1 if predict_files(cnn.model, args.predict) else 0
    return 0


def main(argv=None):
    args = parse_args(argv)
    if not args.show:
        matplotlib.use('Agg')  # draw to files only: never wait for a window
    elif matplotlib.get_backend().lower() == 'agg':
        print('note: --show: no display here, so the figures are only written to files', file=sys.stderr)
    handlers = {signum: signal.getsignal(signum) for signum in STOPPED}
    for signum, handler in handlers.items():
        if handler is not signal.SIG_IGN:  # e.g. SIGINT in a background job: leave it ignored
            signal.signal(signum, stop_now)
    try:
        with warnings.catch_warnings(record=True) as caught:  # held back: an error line says it better
            code = run(args)
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return code
    except CifarError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


if __name__ == '__main__':
    sys.exit(main())
