"""Basic CIFAR CNN, runnable: the blog post's `CifarCNN` on today's TensorFlow and Keras 3.

Read it beside the post: the post's imports, then `class CifarCNN` with the post's methods in the post's
order, each change marked `# post:` with its reason (bench/post_as_printed.py is the post, fixed only to run);
then what readers ask next (Beyond the post) and the command line (`python cifar_cnn.py --help`). Or type the
post's calls into Python or Jupyter after `from cifar_cnn import CifarCNN`.

You need not read the two modules beside it: cifar_cnn_plumbing.py keeps a run quiet, fast and safe
(TensorFlow's settings, precision, Ctrl-C, files written whole, one-line errors), and cifar_cnn_readers.py
checks every file you hand the program. Importing cifar_cnn sets TensorFlow's environment variables before
TensorFlow loads (any you set win), hides TensorFlow's start-up notes, puts Keras back to its defaults if your
keras.json changes them, and makes a CifarError at Python's prompt one line; nothing else in your Python changes.
"""

import cifar_cnn_plumbing as plumbing  # first: it sets TensorFlow's environment before TensorFlow loads
import matplotlib.pyplot as plt
import tensorflow as tf
from tensorflow.keras import layers, models

import argparse
import dataclasses
import functools
import inspect
import math
import os
import sys

import keras
import numpy as np

import cifar_cnn_readers as readers
from cifar_cnn_plumbing import CifarError, check_arguments, check_number, scaled

CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
FIGURES = ['25-train-images.png', 'normalized.png', 'history.png', 'predictions.png', 'confusion-matrix.png',
           'mistakes.png', 'filters.png', 'feature-maps.png', 'grad-cam.png']  # what a run's steps write
STEPS_PER_EXECUTION = 32  # training steps per call into TensorFlow: the same math, less overhead


class CifarCNN:  # post: CifarCNN(object), the same class in Python 3
    """The post's class. CifarCNN() downloads CIFAR-10 once, as the post does; data_dir= reads a local copy
    instead; limit=N keeps the first N training and N test images. Each figure is shown where there is a
    display (show= decides instead) and written to figures_dir if given. variations=: Beyond the post."""

    def __init__(self, data_dir=None, epochs=10, batch_size=32, limit=None, figures_dir=None, show=None,
                 variations=None):
        # not in the post: a mistake is one line, as on the command line
        check_arguments(data_dir=data_dir, epochs=epochs, batch_size=batch_size, limit=limit,
                        figures_dir=figures_dir, show=show, variations=variations)
        self.classes = CLASSES  # post: the list itself, here in CLASSES for --predict too
        # post: datasets.cifar10.load_data(), here too unless data_dir= names a local copy
        (self.train_imgs, self.train_labels), (self.test_imgs, self.test_labels) = readers.load_cifar10(data_dir, limit)
        # post: self.epochs, self.model and self.history are used, never set
        self.epochs, self.batch_size, self.model, self.history = epochs, batch_size, None, None
        self.figures_dir, self.show = figures_dir, show
        self.variations = variations or Variations()  # Beyond the post: --augment, --dropout, ...

    def explore_data(self):
        print(f'\n{len(self.train_imgs)} training examples ...')
        print(f'Training image shape: {self.train_imgs[0].shape}')
        # post: {self.train_labels}, which numpy lists in full up to 1,000 labels
        print(f'Training labels: {np.array2string(self.train_labels, threshold=0)}')
        print(f'Training labels type: {type(self.train_labels)}')

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
        plumbing.show_figure(self, '25-train-images.png')  # post: plt.show()

    def preprocess_data(self):
        loaded = self.train_imgs, self.test_imgs  # not in the post: for the pipelines below
        self.train_imgs = scaled(self.train_imgs)  # post: / 255.0, in float64: float32 is half the memory
        self.test_imgs = scaled(self.test_imgs)  # post: / 255.0; scaled() leaves images in [0, 1] as they are
        # not in the post: tf.data pipelines for the steps below, over the pixels as loaded (a quarter the memory)
        self.train_ds, self.validation_ds, self.test_ds = plumbing.datasets(self, *loaded)

        plt.figure()
        plt.title(f'{self.classes[self.train_labels[0][0]]} ({self.train_labels[0][0]})')
        plt.imshow(self.train_imgs[0])
        plt.colorbar()
        plt.grid(False)
        plumbing.show_figure(self, 'normalized.png')  # post: plt.show()

    def build_model(self):
        model = models.Sequential(self._with_variations([  # --batch-norm, --dropout; none by default
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
            optimizer=self._optimizer(),  # post: 'adam', which this is unless --cosine-decay
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=['accuracy'],
            steps_per_execution=STEPS_PER_EXECUTION,  # not in the post: faster, same results
        )

        return model

    def train_model(self):
        plumbing.require(self, 'train_model', 'test_ds', 'model')  # not in the post: a step called too early, one line
        plumbing.use_current_settings(self, 'train_model')  # not in the post: cnn.epochs = 0 set since, one line
        return self.model.fit(
            self.train_ds,  # post: self.train_imgs, self.train_labels (see preprocess_data)
            epochs=self.epochs,
            validation_data=self.validation_ds,  # post: the test set; the same unless Variations(validation_split=...)
            # not in the post: a truthful progress bar, a clean Ctrl-C, epoch times, a second call going on
            callbacks=plumbing.training_callbacks(self),
            shuffle=False,  # train_ds shuffles itself every epoch; fit() would warn
            verbose=0,  # not in the post: the progress bar is one of the callbacks
        )

    def evaluate_model(self):
        plumbing.require(self, 'evaluate_model', 'test_ds', 'model')
        test_loss, test_acc = self.model.evaluate(self.test_ds, verbose=2)  # post: test_imgs, test_labels
        print(f'Loss: {test_loss}')
        print(f'Accuracy: {test_acc}')
        # not in the post: the history of the training that made these weights, all of it, kept in cnn.history
        # or not; if there is none (a loaded model), one line says so
        self.history = plumbing.training_history(self)
        if self.history is None:
            return

        plt.figure()  # post: none, drawing on whatever figure is current
        epochs = range(1, len(self.history.epoch) + 1)  # post: none, so 0-9 where training printed Epoch 1/10-10/10
        # post: no markers, so that one epoch drew nothing
        plt.plot(epochs, self.history.history['accuracy'], label='accuracy', marker='o')
        plt.plot(epochs, self.history.history['val_accuracy'], label=self.validation_label, marker='o')
        plt.xlim(0.5, len(epochs) + 0.5)  # post: none; whole epochs
        plt.locator_params(axis='x', integer=True)
        plt.xlabel('Epoch')
        plt.ylabel('Accuracy')
        lowest = min([0.5, *self.history.history['accuracy'], *self.history.history['val_accuracy']])
        plt.ylim([math.floor(lowest * 10) / 10, 1])  # post: [0.5, 1], hiding all under 0.5 (short runs)
        plt.legend(loc='best')  # post: 'lower right', over the points of a short run
        plumbing.show_figure(self, 'history.png')  # post: plt.show()

    def plot_img(self, prediction, actual_label, img):
        plumbing.check_prediction(self.classes, prediction, actual_label, img)  # not in the post: one line
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

        # post: the default size, at which the longest labels ran past the picture's neighbours
        plt.xlabel(f'{predicted_class} {confidence :2.0f}% ({actual_class})', color=color, fontsize='small')

    def plot_predictions(self, prediction, actual_label):
        plumbing.check_prediction(self.classes, prediction, actual_label)  # not in the post
        plt.grid(False)
        plt.xticks(range(10))
        plt.yticks([])
        thisplot = plt.bar(range(10), prediction, color="#777777")
        plt.ylim([0, 1])
        predicted_label = np.argmax(prediction)

        thisplot[predicted_label].set_color('red')
        thisplot[actual_label].set_color('blue')

    def make_prediction(self):
        plumbing.require(self, 'make_prediction', 'test_ds', 'model')
        # post: keras.Sequential([self.model, layers.Softmax()]); probability_model() below, for --predict too
        prob_model = probability_model(self.model)

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
        plumbing.show_figure(self, 'predictions.png')  # post: plt.show()

    # ═══ Beyond the post: what readers ask next ══════════════════════════════════════════════════════
    # Each figure in two steps: one computes what it shows and returns it; plot_... draws it.

    def confusion_matrix(self):
        """How often each true class (rows) was predicted as each class (columns) over the test set."""
        plumbing.require(self, 'confusion_matrix', 'predictions')
        return tf.math.confusion_matrix(self.test_labels[:, 0], np.argmax(self.predictions, axis=1),
                                        num_classes=len(self.classes)).numpy()

    def plot_confusion_matrix(self):
        """Where the model errs: the confusion matrix as a heat map; each class's accuracy, worst first."""
        plumbing.require(self, 'plot_confusion_matrix', 'predictions')
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
        for (row, col), count in np.ndenumerate(matrix):
            plt.text(col, row, count, ha='center', va='center', fontsize=8,
                     color='white' if count > matrix.max() / 2 else 'black')
        plt.tight_layout()
        plumbing.show_figure(self, 'confusion-matrix.png')

    def mistakes(self):
        """The indices of the test images the model got wrong, the most confident mistake first."""
        plumbing.require(self, 'mistakes', 'predictions')
        wrong = np.flatnonzero(np.argmax(self.predictions, axis=1) != self.test_labels[:, 0])
        return wrong[np.argsort(-self.predictions[wrong].max(axis=1), kind='stable')]

    def plot_mistakes(self):
        """The 15 most confident mistakes, drawn as predictions.png is: forgivable (a cat taken for a dog)?"""
        plumbing.require(self, 'plot_mistakes', 'predictions')
        mistakes = self.mistakes()
        plt.figure(figsize=(12, 10))
        for i, index in enumerate(mistakes[:15]):
            plt.subplot(5, 6, 2*i+1)
            self.plot_img(self.predictions[index], self.test_labels[index, 0], self.test_imgs[index])
            plt.subplot(5, 6, 2*i+2)
            self.plot_predictions(self.predictions[index], self.test_labels[index, 0])
        plt.suptitle(f'The most confident of {len(mistakes):,} mistakes on {len(self.test_labels):,} test images')
        plt.tight_layout()
        plumbing.show_figure(self, 'mistakes.png')

    def filters(self):
        """The first convolution's 32 learned 3x3x3 kernels, shape (32, 3, 3, 3)."""
        plumbing.require(self, 'filters', 'model', convolutions=True)
        return np.moveaxis(keras.ops.convert_to_numpy(self._convolutions()[0].kernel), -1, 0)

    def plot_filters(self):
        """The kernels as tiny RGB patches, each scaled to its own range: what the network looks for first."""
        plumbing.require(self, 'plot_filters', 'model', convolutions=True)
        kernels = self.filters()
        plt.figure(figsize=(8, 4.6))
        for i, kernel in enumerate(kernels):
            plt.subplot(4, 8, i+1)
            plt.xticks([])
            plt.yticks([])
            plt.imshow((kernel - kernel.min()) / max(np.ptp(kernel), 1e-12))
        plt.suptitle("The first convolution's 32 filters (3x3 pixels, RGB)")
        plumbing.show_figure(self, 'filters.png')

    def feature_maps(self, index=0):
        """What test image `index` becomes after each convolution: one array per layer (30x30x32, ...)."""
        plumbing.require(self, 'feature_maps', 'model', convolutions=True)
        check_number('index', index, 0, len(self.test_imgs) - 1)
        probe = self._probe([conv.output for conv in self._convolutions()])
        maps = probe(scaled(self.test_imgs[index:index+1]), training=False)
        return [keras.ops.convert_to_numpy(layer_maps)[0].astype(np.float32) for layer_maps in maps]

    def plot_feature_maps(self, index=0, channels=8):
        """Each layer's `channels` most active maps for test image `index`, at the layer's size."""
        plumbing.require(self, 'plot_feature_maps', 'model', convolutions=True)
        check_number('channels', channels, 1, 32)
        maps = self.feature_maps(index)
        plt.figure(figsize=(1.3 * (channels + 1), 1.5 * len(maps)))
        for row, layer_maps in enumerate(maps):
            plt.subplot(len(maps), channels + 1, row * (channels + 1) + 1)
            plt.axis('off')
            plt.imshow(self.test_imgs[index])
            plt.title(f'conv {row + 1}: {"x".join(map(str, layer_maps.shape))}', fontsize=8)
            most_active = np.argsort(-layer_maps.mean(axis=(0, 1)), kind='stable')[:channels]
            for column, channel in enumerate(most_active):
                plt.subplot(len(maps), channels + 1, row * (channels + 1) + column + 2)
                plt.axis('off')
                plt.imshow(layer_maps[..., channel], cmap='viridis')
                plt.title(f'#{channel}', fontsize=7)
        plt.suptitle(f'Test image {index} ({self.classes[self.test_labels[index][0]]}) after each convolution')
        plt.tight_layout()
        plumbing.show_figure(self, 'feature-maps.png')

    def grad_cam(self, imgs):
        """Grad-CAM: where in each image (N, 32, 32, 3) the evidence for its predicted class lies. The last
        convolution's maps, weighted by how much the class score rises with each, summed, kept where
        positive, upsampled to 32x32. Returns heat maps (N, 32, 32), each scaled to peak at 1."""
        plumbing.require(self, 'grad_cam', 'model', convolutions=True)
        pixels = scaled(plumbing.as_numbers(imgs, 'grad_cam(imgs): imgs'))
        if pixels.ndim != 4 or pixels.shape[1:] != (32, 32, 3) or not len(pixels):
            raise CifarError(f'grad_cam(imgs): imgs must be images of shape (N, 32, 32, 3), not {pixels.shape}')
        probe = self._probe([self._convolutions()[-1].output, self.model.layers[-1].output])
        with tf.GradientTape() as tape:
            maps, logits = probe(pixels, training=False)
            scores = tf.gather(logits, tf.argmax(logits, axis=1), batch_dims=1)
        maps, grads = tf.cast(maps, tf.float32), tf.cast(tape.gradient(scores, maps), tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one per channel
        heat = tf.image.resize(tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., None], (32, 32))[..., 0]
        return (heat / tf.maximum(tf.reduce_max(heat, axis=(1, 2), keepdims=True), 1e-12)).numpy()

    def plot_grad_cam(self, count=15):
        """Grad-CAM over the first `count` test images (predictions.png's), titled with the predicted class."""
        plumbing.require(self, 'plot_grad_cam', 'model', 'predictions', convolutions=True)
        check_number('count', count, 1, 50)
        imgs, labels = self.test_imgs[:count], self.test_labels[:count, 0]  # fewer if there are fewer
        heat = self.grad_cam(imgs)
        predicted = np.argmax(self.predictions[:count], axis=1)
        rows = math.ceil(len(imgs) / 5)
        fig = plt.figure(figsize=(10.5, 2.2 * rows))
        for i, img in enumerate(imgs):
            plt.subplot(rows, 5, i+1)
            plt.axis('off')
            plt.imshow(img)
            plt.imshow(heat[i], cmap='jet', alpha=0.45, interpolation='bilinear', vmin=0, vmax=1)
            truth = '' if predicted[i] == labels[i] else f' ({self.classes[labels[i]]})'
            plt.title(self.classes[predicted[i]] + truth, fontsize=9, color='red' if truth else 'blue')
        plt.suptitle('Grad-CAM: where the evidence for the predicted class lies')
        plt.tight_layout()
        fig.colorbar(plt.cm.ScalarMappable(cmap='jet'), ax=fig.axes, shrink=0.8,
                     label='evidence for the predicted class (0: none, 1: most)')
        plumbing.show_figure(self, 'grad-cam.png')

    # ─── What the methods above call; a learner never needs to ───────────────────────────────────────

    def _with_variations(self, post_layers):
        """The post's layers, with --batch-norm's and --dropout's added (--augment is in the pipeline)."""
        self._network_made_with, varied = plumbing.network_settings(self), []
        for layer in post_layers:
            if self.variations.dropout and isinstance(layer, layers.Dense):
                varied.append(layers.Dropout(self.variations.dropout))
            varied.append(layer)
            if self.variations.batch_norm and isinstance(layer, layers.Conv2D):
                varied.append(plumbing.fused_batch_norm(layers.BatchNormalization()))
        return varied

    def _optimizer(self):
        """The post's 'adam'; with --cosine-decay, Adam from 1e-3 down a cosine to 0, step by step."""
        if not self.variations.cosine_decay:
            return 'adam'
        steps = self.epochs * math.ceil(plumbing.training_images(self) / self.batch_size)
        return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=steps))

    def _convolutions(self):
        return [layer for layer in self.model.layers if isinstance(layer, layers.Conv2D)]

    def _probe(self, outputs):
        """A model from the network's input to `outputs`, inner layers' among them, sharing its weights."""
        return keras.Model(self.model.layers[0].input, outputs)



@functools.lru_cache(maxsize=1)  # the same one while the model is: a new one would be traced again at each call
def probability_model(model):
    """The post's prob_model: `model`, then a softmax, computed in float32 (in mixed precision a bfloat16
    softmax sums to 1 within 1% only)."""
    return keras.Sequential([model, layers.Softmax(dtype='float32')])


# ═══ Beyond the post, continued: the experiments' options, keeping the model, your own pictures ═══════

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

    def __str__(self):
        """The options in effect, as typed: '--augment --dropout 0.3', or "none (the post's ...)"."""
        flags = [f'--{field.name.replace("_", "-")}' + ('' if value is True else f' {value}')
                 for field in dataclasses.fields(self) if (value := getattr(self, field.name))]
        return ' '.join(flags) or "none (the post's network and training)"


plumbing.RULES['variations'] = Variations  # CifarCNN(variations=...) takes one of these
# pyplot has one current figure per process: two CifarCNNs drawing from two threads wait their turns
plumbing.one_drawing_at_a_time(CifarCNN, ['explore_data', 'preprocess_data', 'evaluate_model', 'make_prediction',
                                          *[name for name in vars(CifarCNN) if name.startswith('plot_')]])


def build_network(batch_norm=False, dropout=0.0):
    """build_model's network with these variations and the post's 'adam', without a data set or the summary
    it prints: what --load-model fills with a saved model's weights."""
    blank = CifarCNN.__new__(CifarCNN)  # build_model reads nothing of a CifarCNN but its variations
    blank.variations = Variations(batch_norm=batch_norm, dropout=dropout)
    with plumbing.keras_quiet():
        return blank.build_model()


def save_model(model, path):
    """--save-model: Keras's .keras format, written atomically (in that format through a link to any name)."""
    plumbing.check_model('save_model', model)
    path = plumbing.checked_path('save_model', path)
    plumbing.write_atomically(path, model.save, suffix='.keras')  # Keras picks the format by the name's ending
    print(f'Saved the trained model to {plumbing.printable(path)}')


def load_model(path):
    """--load-model: a model --save-model wrote, checked before a byte of it is trusted (cifar_cnn_readers)."""
    path = plumbing.checked_path('load_model', path)
    model = readers.read_model(path, build_network)
    print(f'Loaded the model from {plumbing.printable(path)}')
    return model


def predict_files(model, paths):
    """--predict: prints each picture's top 3 classes, and for a file it cannot read one line saying why.
    `paths`: a list of file names, or one."""
    plumbing.check_model('predict_files', model)
    _predict_files(model, plumbing.image_files(paths))


def _predict_files(model, paths):
    """predict_files(), plumbing.EVAL_BATCH_SIZE pictures at a time. Returns how many could not be read."""
    failed = 0
    for start in range(0, len(paths), plumbing.EVAL_BATCH_SIZE):
        read = []  # (path, pixels): a file named twice is answered twice
        for path in paths[start:start + plumbing.EVAL_BATCH_SIZE]:
            try:
                read.append((path, readers.read_image(path)))
            except CifarError as error:
                print(f'error: {plumbing.printable(error)}', file=sys.stderr)
                failed += 1
        if read:
            probabilities = probability_model(model).predict_on_batch(scaled(np.stack([pixels for _, pixels in read])))
            for (path, _), classes in zip(read, keras.ops.convert_to_numpy(probabilities)):
                plumbing.check_computed(classes, plumbing.printable(path))
                top = ', '.join(f'{CLASSES[i]} {classes[i]:.2f}' for i in np.argsort(classes)[::-1][:3])
                print(f'{plumbing.printable(path)}: {top}')
    return failed


# ═══ Command line: python cifar_cnn.py ═══════════════════════════════════════════════════════════════

DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(CifarCNN).parameters.items()} | {
    'figures_dir': 'figures', 'precision': 'auto'}  # the command line writes figures; Python shows them
TRAINING_ONLY = ('epochs', 'batch_size', 'augment', 'batch_norm', 'dropout', 'validation_split', 'cosine_decay',
                 'tensorboard', 'save_model')
PREDICT_ONLY_IGNORES = ('data_dir', 'limit', 'figures_dir', 'show')


def parse_args(argv=None):
    """The options, each checked by the rules CifarCNN's arguments follow (RULES), before anything loads."""
    parser = argparse.ArgumentParser(allow_abbrev=False,
        description="Basic CIFAR CNN: the blog post's program, runnable. Without --data-dir it downloads "
                    'CIFAR-10 (163 MB) once into ~/.keras/datasets, as keras.datasets.cifar10.load_data() does.',
        epilog='examples: python cifar_cnn.py --limit 2000 --epochs 1 --figures-dir runs/quick (a quick check);  '
               'python cifar_cnn.py --data-dir DIR --save-model cifar.keras;  '
               'python cifar_cnn.py --load-model cifar.keras --predict photo.jpg')
    parser.error = lambda message: parser.exit(2, f'error: {message} (python cifar_cnn.py --help lists the options)\n')
    def add(flag, help, parse=str, to=parser, **kwargs):  # an option named after its argument, checked by its rule
        name = flag[2:].replace('-', '_')
        default = f' (default: {DEFAULTS[name]})' if DEFAULTS.get(name) is not None else ''
        to.add_argument(flag, type=plumbing.option_type(name, parse), help=help + default, **kwargs)
    add('--epochs', f'training epochs, {plumbing.allowed("epochs")}', int)
    add('--batch-size', f'training batch size, {plumbing.allowed("batch_size")}', int)
    add('--seed', 'random seed: same seed, same machine, same numbers', int)
    add('--data-dir', 'read CIFAR-10 from DIR: cifar-10-batches-py, a folder holding it, or one holding '
        'cifar-10-python.tar.gz', metavar='DIR')
    add('--figures-dir', 'where figures go', metavar='DIR')
    parser.add_argument('--show', action='store_true', help='also open each figure in a window, as the post does')
    add('--limit', f'only the first N training and N test images, {plumbing.allowed("limit")} (a quick run)', int,
        metavar='N')
    parser.add_argument('--precision', choices=['auto', 'float32', 'mixed'], help='auto: mixed precision where the '
                        f'hardware has it natively, else float32 (default: {DEFAULTS["precision"]})')
    add('--save-model', 'save the trained model to PATH (.keras); through a symbolic link, to the file it names',
        metavar='PATH')
    add('--load-model', 'load a model --save-model saved, instead of training one', metavar='PATH')
    add('--predict', 'classify these image files, top 3 classes each; with --load-model at once, without it after '
        'training a model first', metavar='IMAGE', nargs='+')
    beyond = parser.add_argument_group('beyond the post: the next experiments (bench/README.md measures them)')
    beyond.add_argument('--augment', action='store_true', help='random flips and shifts of the training images')
    beyond.add_argument('--batch-norm', action='store_true', help='batch normalization after each convolution')
    add('--dropout', f'dropout before each dense layer, {plumbing.allowed("dropout")}', float, to=beyond,
        metavar='RATE')
    add('--validation-split', 'validate on the last fraction F of the training images, not the test set; '
        f'{plumbing.allowed("validation_split")}', float, to=beyond, metavar='F')
    beyond.add_argument('--cosine-decay', action='store_true', help='the learning rate down a cosine from 1e-3 to 0')
    add('--tensorboard', 'TensorBoard logs to DIR (needs TensorBoard: pip install tensorboard)', to=beyond,
        metavar='DIR')
    args = parser.parse_args(argv)
    given = {name for name, value in vars(args).items() if value not in (None, False)}
    for clash, why in ((TRAINING_ONLY, 'only for training, and --load-model trains nothing'),
                       (PREDICT_ONLY_IGNORES, 'not used: with --load-model, --predict answers and exits')):
        if args.load_model and (clash is TRAINING_ONLY or args.predict) and given & set(clash):
            parser.error(f'{", ".join("--" + name.replace("_", "-") for name in clash if name in given)}: {why}')
    for name, value in vars(args).items():
        if value is None and DEFAULTS.get(name) is not None:
            setattr(args, name, DEFAULTS[name])
    return args


def run(args):
    """The post's steps in the post's order, what the options add around them, and first what fails in a
    second: the precision, the model to load, the files and folders to write, before the slow steps."""
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    policy, why = plumbing.choose_precision(args.precision)  # a loaded model too computes as training did
    keras.mixed_precision.set_global_policy(policy)
    print(f'Precision: {policy} ({why})')
    loaded = load_model(args.load_model) if args.load_model else None
    if loaded is not None and args.predict:  # --load-model --predict: answer and exit, no data set needed
        return 1 if _predict_files(loaded, args.predict) else 0
    plumbing.check_writable(args.figures_dir, 'figures', FIGURES)
    if args.save_model:
        folder, name = os.path.split(args.save_model)
        plumbing.check_writable(folder or '.', 'the model', [name])
    if args.tensorboard:
        try:
            import tensorboard  # noqa: F401 -- only to say how to install it if it is missing
        except ImportError:
            raise CifarError(f'--tensorboard needs TensorBoard: {sys.executable} -m pip install tensorboard') from None
        plumbing.check_writable(args.tensorboard, 'TensorBoard logs')
    variations = Variations(args.augment, args.batch_norm, args.dropout or 0.0, args.validation_split or 0.0,
                            args.cosine_decay, args.tensorboard)
    if loaded is None:
        print(f'Experiments: {plumbing.printable(variations)}')

    cnn = CifarCNN(data_dir=args.data_dir, epochs=args.epochs, batch_size=args.batch_size, limit=args.limit,
                   figures_dir=args.figures_dir, show=args.show, variations=variations)
    plumbing.training_images(cnn)  # a --validation-split that leaves nothing to train on fails here, before any figure
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
    return 1 if args.predict and _predict_files(cnn.model, args.predict) else 0


def main(argv=None):
    """python cifar_cnn.py. Exits 0 when done; 1 after one `error:` line; 2 for a usage error; 130, 143 or
    129 when stopped; 141 when the reader of its output stops reading (`| head`)."""
    return plumbing.run_as_a_program(parse_args, run, argv)


if __name__ == '__main__':
    sys.exit(main())
