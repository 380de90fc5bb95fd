"""The post's program as printed, fixed only so that it runs: the "before" side of benchmark.py.

Fixes, and nothing else: `np` and `keras` imported; `self.epochs`, `self.model` and
`self.history` set; `plot_img` indented into the class; data read from --data-dir (no network
here) with cifar_cnn_readers.load_cifar10, which returns what `datasets.cifar10.load_data()` does;
figures drawn off screen (Agg), so `plt.show()` returns at once. Like the post, it divides by
255.0 (float64 arrays), fits on numpy arrays at batch 32, uses `input_shape=`, and runs with
TensorFlow's own thread settings. It prints the same "Epoch times (s):" (its EpochTimer)
and "Accuracy:" lines as cifar_cnn.py, for benchmark.py.

usage: python bench/post_as_printed.py DATA_DIR EPOCHS SEED
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # cifar_cnn

import matplotlib

matplotlib.use('Agg')
import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from tensorflow.keras import layers, models

environment = dict(os.environ)
from cifar_cnn_plumbing import EpochTimer  # measurement only, not in the post
from cifar_cnn_readers import load_cifar10

os.environ.clear()  # importing cifar_cnn_plumbing set its thread layout for TensorFlow: the post runs with
os.environ.update(environment)  # TensorFlow's defaults, as printed


class CifarCNN(object):  # noqa: UP004 -- as printed
    def __init__(self, data_dir, epochs):
        self.classes = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
        (self.train_imgs, self.train_labels), (self.test_imgs, self.test_labels) = load_cifar10(data_dir)
        self.epochs = epochs
        self.timer = EpochTimer()

    def explore_data(self):
        print(f'\n{len(self.train_imgs)} training examples ...')
        print(f'Training image shape: {self.train_imgs[0].shape}')
        print(f'Training labels: {self.train_labels}')
        print(f'Training labels type: {type(self.train_labels)}')

        print(f'\n{len(self.test_imgs)} test examples ...')
        print(f'Test image shape: {self.test_imgs[0].shape}')
        print(f'Test labels: {self.test_labels}')
        print(f'Test labels type: {type(self.test_labels)}')

        plt.figure(figsize=(10, 10))
        for i in range(25):
            plt.subplot(5, 5, i+1)
            plt.xticks([])
            plt.yticks([])
            plt.grid(False)
            plt.imshow(self.train_imgs[i], cmap=plt.cm.binary)
            plt.xlabel(self.classes[self.train_labels[i][0]])
        plt.show()

    def preprocess_data(self):
        self.train_imgs = self.train_imgs / 255.0
        self.test_imgs = self.test_imgs / 255.0

        plt.figure()
        plt.title(f'{self.classes[self.train_labels[0][0]]} ({self.train_labels[0][0]})')
        plt.imshow(self.train_imgs[0])
        plt.colorbar()
        plt.grid(False)
        plt.show()

    def build_model(self):
        model = models.Sequential([
            layers.Conv2D(32, (3, 3), activation='relu', input_shape=(32, 32, 3)),
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
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=['accuracy']
        )

        return model

    def train_model(self):
        return self.model.fit(
            self.train_imgs,
            self.train_labels,
            epochs=self.epochs,
            validation_data=(self.test_imgs, self.test_labels),
            callbacks=[self.timer],
        )

    def evaluate_model(self):
        test_loss, test_acc = self.model.evaluate(self.test_imgs, self.test_labels, verbose=2)
        print(f'Loss: {test_loss}')
        print(f'Accuracy: {test_acc}')

        plt.plot(self.history.history['accuracy'], label='accuracy')
        plt.plot(self.history.history['val_accuracy'], label='val_accuracy')
        plt.xlabel('Epoch')
        plt.ylabel('Accuracy')
        plt.ylim([0.5, 1])
        plt.legend(loc='lower right')
        plt.show()

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
            layers.Softmax()
        ])

        predictions = prob_model.predict(self.test_imgs)

        num_rows = 5
        num_cols = 3
        num_images = num_rows*num_cols
        plt.figure(figsize=(2*2*num_cols, 2*num_rows))
        for i in range(num_images):
            plt.subplot(num_rows, 2*num_cols, 2*i+1)
            prediction, actual_label, img = predictions[i], self.test_labels[i][0], self.test_imgs[i]
            self.plot_img(prediction, actual_label, img)
            plt.subplot(num_rows, 2*num_cols, 2*i+2)
            self.plot_predictions(prediction, actual_label)
        plt.tight_layout()
        plt.show()


if __name__ == '__main__':
    data_dir, epochs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    keras.utils.set_random_seed(seed)
    cnn = CifarCNN(data_dir, epochs)
    cnn.explore_data()
    cnn.preprocess_data()
    cnn.model = cnn.build_model()
    cnn.history = cnn.train_model()
    cnn.evaluate_model()
    cnn.make_prediction()
