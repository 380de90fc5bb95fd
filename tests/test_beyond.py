"""Beyond the post: keep the trained model, load it back, classify your own pictures."""

import os

import numpy as np
import pytest
from PIL import Image

import cifar_cnn
from cifar_cnn import CifarError


@pytest.fixture(scope='module')
def saved_model(trained, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('model') / 'model.keras')
    trained.save_model(path)
    return path


def test_save_and_load_round_trip(trained, saved_model):
    assert os.path.isfile(saved_model)
    assert [f for f in os.listdir(os.path.dirname(saved_model)) if f != 'model.keras'] == []  # no temp left
    loaded = cifar_cnn.CifarCNN(load_data=False).load_model(saved_model)
    x = trained.test_imgs[:5] / np.float32(255)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), trained.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_failed_save_leaves_nothing_at_path(trained, tmp_path, monkeypatch):
    path = tmp_path / 'model.keras'
    original = trained.model.save

    def save_then_fail(tmp, *a, **k):
        original(tmp, *a, **k)
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(trained.model, 'save', save_then_fail)
    with pytest.raises(CifarError, match='cannot write .*model.keras: No space left on device'):
        trained.save_model(str(path))
    assert os.listdir(tmp_path) == []


def test_load_missing_file():
    with pytest.raises(CifarError, match=r'--load-model /nonexistent/m.keras: no such file'):
        cifar_cnn.CifarCNN(load_data=False).load_model('/nonexistent/m.keras')


def test_load_truncated_file(saved_model, tmp_path):
    bad = tmp_path / 'truncated.keras'
    with open(saved_model, 'rb') as f:
        data = f.read()
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(CifarError, match=r'truncated.keras: not a loadable .keras model'):
        cifar_cnn.CifarCNN(load_data=False).load_model(str(bad))


def test_load_incompatible_model(tmp_path):
    import keras
    other = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    path = str(tmp_path / 'mnist.keras')
    other.save(path)
    with pytest.raises(CifarError, match=r'takes \(None, 28, 28, 1\) .*expected \(None, 32, 32, 3\)'):
        cifar_cnn.CifarCNN(load_data=False).load_model(path)


def test_predict_files(trained, tmp_path, capsys):
    rng = np.random.default_rng(0)
    big_rgba = tmp_path / 'big.png'
    Image.fromarray(rng.integers(0, 256, (300, 200, 4), dtype=np.uint8), 'RGBA').save(big_rgba)
    grey_jpeg = tmp_path / 'grey.jpg'
    Image.fromarray(rng.integers(0, 256, (20, 50), dtype=np.uint8), 'L').save(grey_jpeg)
    text = tmp_path / 'notes.png'
    text.write_text('not an image')
    missing = tmp_path / 'missing.png'
    failed = trained.predict_files([str(big_rgba), str(text), str(missing), str(grey_jpeg)])
    assert failed == 2
    out, err = capsys.readouterr()
    names = '|'.join(cifar_cnn.CLASSES)
    for path in (big_rgba, grey_jpeg):
        line = next(x for x in out.splitlines() if x.startswith(f'{path}: '))
        top = [(name, float(p)) for name, p in
               (item.split() for item in line.split(': ', 1)[1].split(', '))]
        assert len(top) == 3 and all(name in names.split('|') for name, _ in top)
        assert [p for _, p in top] == sorted([p for _, p in top], reverse=True)
    assert f'{text}: error: not a readable image' in err
    assert f'{missing}: error: no such file' in err


def test_predict_matches_the_model_on_a_cifar_sized_image(trained, tmp_path, capsys):
    """A 32x32 RGB file goes through unchanged: same top class as the model on that image."""
    img = trained.test_imgs[0]
    path = tmp_path / 'test0.png'
    Image.fromarray(img).save(path)
    trained.predict_files([str(path)])
    probs = trained.model.predict(img[np.newaxis] / np.float32(255), verbose=0)[0]
    best = cifar_cnn.CLASSES[int(np.argmax(probs))]
    assert capsys.readouterr().out.startswith(f'{path}: {best} ')
