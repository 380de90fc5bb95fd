"""Loading CIFAR-10: Keras's loader and its cache, the three --data-dir layouts, and what is refused."""

import gzip
import importlib
import io
import os
import pathlib
import pickle
import shutil
import socket
import subprocess
import tarfile
import threading
import urllib.request
import zlib

import numpy as np
import pytest
from conftest import KERAS_DATASETS, batch_bytes, make_cifar_folder, make_tarball, refused, write_batch
from PIL import Image

import cifar_cnn
import cifar_cnn_readers as readers
from cifar_cnn_plumbing import CifarError
from cifar_cnn_readers import load_cifar10


def check_arrays(loaded, written):
    (x_train, y_train), (x_test, y_test) = loaded
    wx_train, wy_train, wx_test, wy_test = written
    # numpy's own uint8, not a copy of it as pickle makes: matplotlib 3.9.0 cannot draw an image whose dtype is a copy
    assert all(array.dtype is np.dtype(np.uint8) for array in (x_train, y_train, x_test, y_test))
    assert x_train.shape == (40, 32, 32, 3) and x_test.shape == (24, 32, 32, 3)
    assert y_train.shape == (40, 1) and y_test.shape == (24, 1)
    np.testing.assert_array_equal(x_train, wx_train)  # same pixels, same order, channels last
    np.testing.assert_array_equal(x_test, wx_test)
    np.testing.assert_array_equal(y_train[:, 0], wy_train)
    np.testing.assert_array_equal(y_test[:, 0], wy_test)


@pytest.mark.parametrize('layout', ['folder holding cifar-10-batches-py', 'cifar-10-batches-py itself',
                                    'folder holding the .tar.gz', 'the .tar.gz packed from inside (tar -C . )'])
def test_every_data_dir_layout_gives_the_same_arrays(tmp_path, layout):
    if 'inside' in layout:  # members ./ and ./cifar-10-batches-py/...
        folder, written = make_cifar_folder(str(tmp_path / 'src'))
        with tarfile.open(tmp_path / 'cifar-10-python.tar.gz', 'w:gz') as tar:
            tar.add(os.path.dirname(folder), arcname='.')
        data_dir = str(tmp_path)
    elif layout.endswith('.tar.gz'):
        _, written = make_tarball(str(tmp_path))
        data_dir = str(tmp_path)
    else:
        folder, written = make_cifar_folder(str(tmp_path))
        data_dir = folder if layout.endswith('itself') else str(tmp_path)
    check_arrays(load_cifar10(data_dir), written)


def test_the_data_and_figures_folders_may_be_path_objects(tmp_path):
    path, written = make_tarball(str(tmp_path))
    cnn = cifar_cnn.CifarCNN(data_dir=pathlib.Path(path), figures_dir=tmp_path / 'figures', show=False)
    check_arrays(((cnn.train_imgs, cnn.train_labels), (cnn.test_imgs, cnn.test_labels)), written)
    cnn.explore_data()
    assert os.listdir(tmp_path / 'figures') == ['25-train-images.png']


def test_same_as_keras_loader(tmp_path):
    """Keras's own batch reader (restricted unpickler) agrees with ours on the same file."""
    from keras.src.datasets.cifar import load_batch
    folder, _ = make_cifar_folder(str(tmp_path))
    data, labels = load_batch(os.path.join(folder, 'test_batch'))
    (_, _), (x_test, y_test) = load_cifar10(folder)
    np.testing.assert_array_equal(x_test, data.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_test[:, 0], labels)


# ─── Without data_dir: keras.datasets.cifar10.load_data(), as in the post ────────────────────────

@pytest.fixture
def keras_serves(monkeypatch):
    """serve(archive): Keras's downloader then serves `archive`, and its SHA-256 check takes it for the real
    one. No public seam can do this (Keras checks the real archive's hash), so these tests alone replace two
    of Keras's own functions. The session's Keras cache (conftest) is emptied after."""
    file_utils = importlib.import_module('keras.src.utils.file_utils')

    def serve(archive):
        monkeypatch.setattr(file_utils, 'urlretrieve', lambda url, target, hook=None: shutil.copy(archive, target))
        monkeypatch.setattr(file_utils, 'validate_file', lambda *args, **kwargs: True)
    yield serve
    shutil.rmtree(KERAS_DATASETS, ignore_errors=True)


@pytest.fixture(scope='module')
def keras_sized_archive(tmp_path_factory):
    """A cifar-10-python.tar.gz of Keras's sizes (its loader wants 10,000 images per training batch),
    cheap to pack: each image is blank but for its first pixel. Returns it and its arrays."""
    parent = tmp_path_factory.mktemp('keras-sized')
    folder = parent / 'cifar-10-batches-py'
    folder.mkdir()
    rng = np.random.default_rng(0)
    x = np.zeros((50_024, 32, 32, 3), np.uint8)
    x[:, 0, 0, 0] = np.arange(len(x)) % 251
    y = rng.integers(0, 10, len(x)).astype(np.uint8)
    for i, name in enumerate(readers.BATCH_FILES):
        part = slice(i * 10_000, (i + 1) * 10_000 if i < 5 else None)
        write_batch(str(folder / name), x[part], y[part])
    with tarfile.open(parent / 'cifar-10-python.tar.gz', 'w:gz', compresslevel=1) as t:
        t.add(folder, arcname='cifar-10-batches-py')
    return parent / 'cifar-10-python.tar.gz', (x[:50_000], y[:50_000], x[50_000:], y[50_000:])


def test_without_data_dir_it_is_kerases_loader_and_cache(keras_serves, keras_sized_archive, monkeypatch):
    archive, (x_train, y_train, x_test, y_test) = keras_sized_archive
    keras_serves(archive)
    for limit in (None, 7):  # the second time from Keras's cache: no download
        (train_imgs, train_labels), (test_imgs, test_labels) = load_cifar10(None, limit)
        assert np.array_equal(train_imgs, x_train[:limit]) and np.array_equal(train_labels[:, 0], y_train[:limit])
        assert np.array_equal(test_imgs, x_test[:limit]) and np.array_equal(test_labels[:, 0], y_test[:limit])
        assert os.path.isfile(os.path.join(KERAS_DATASETS, 'cifar-10-batches-py-target_archive'))
        monkeypatch.setattr(importlib.import_module('keras.src.utils.file_utils'), 'urlretrieve', None)


def test_no_network_is_one_line_saying_what_to_do(tmp_path, capsys):
    """conftest's proxy refuses the connection, as a machine offline does: one line naming the file to get,
    where, and the argument that reads it, in Python's words and the command line's."""
    with refused('could not download CIFAR-10', 'cifar-10-python.tar.gz', readers.CIFAR_PAGE, 'data_dir='):
        load_cifar10(None)
    assert [name for name in os.listdir(KERAS_DATASETS) if not name.startswith('.')] == []  # no half download
    assert cifar_cnn.main(['--figures-dir', str(tmp_path / 'figures')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'could not download CIFAR-10' in err[0] and '--data-dir' in err[0]


@pytest.mark.parametrize('error', [ConnectionResetError(104, 'Connection reset by peer'), TimeoutError('timed out'),
                                   RuntimeError('a bug in Keras')])
def test_a_download_cut_off_is_one_line_and_anything_else_is_not_hidden(monkeypatch, error):
    """Python's own network errors, raised past Keras's downloader (a reset, a timeout): as a failed download.
    An error of no known kind is not caught: it is a bug, and its traceback is what finds it."""
    def cut_off():
        raise error
    monkeypatch.setattr(cifar_cnn.keras.datasets.cifar10, 'load_data', cut_off)
    with (refused('could not download CIFAR-10', str(error), 'data_dir=') if isinstance(error, OSError) else
          pytest.raises(RuntimeError, match='a bug in Keras')):
        load_cifar10(None)


@pytest.mark.parametrize('damage', ['truncated batch', 'pickle asking for os.system', 'not a tarball'])
@pytest.mark.filterwarnings('error')
def test_a_damaged_cache_says_to_delete_it(keras_serves, tmp_path, damage):
    folder, _ = make_cifar_folder(str(tmp_path / 'served'))
    with open(os.path.join(folder, 'test_batch'), 'r+b') as f:
        if damage == 'truncated batch':
            f.truncate(100)
        else:
            f.write(pickle.dumps(Payload(tmp_path / 'pwned')))
            f.truncate()
    archive = tmp_path / 'cifar.tar.gz'
    if damage == 'not a tarball':
        archive.write_bytes(b'<html>moved</html>')
    else:
        with tarfile.open(archive, 'w:gz') as t:
            t.add(folder, arcname='cifar-10-batches-py')
    keras_serves(archive)
    with refused("Keras's CIFAR-10 loader failed", 'delete', f'{KERAS_DATASETS}/cifar-10-batches-py-target'):
        load_cifar10(None)
    assert not (tmp_path / 'pwned').exists()


def test_keras_home_that_is_a_file_is_named(tmp_path, monkeypatch):
    home = tmp_path / 'keras-home'
    home.write_text('not a folder')
    monkeypatch.setenv('KERAS_HOME', str(home))
    with refused(f'KERAS_HOME={home}', 'not a folder'):
        load_cifar10(None)


# ─── What --data-dir refuses ─────────────────────────────────────────────────────────────────────

def loading_refuses(data_dir, *names):
    """load_cifar10(data_dir) is refused with one line naming each of `names`; returns the line."""
    with refused(*names) as error:
        load_cifar10(data_dir)
    return str(error.value)


@pytest.mark.parametrize(('setup', 'names'), [
    (lambda d: str(d / 'nonexistent'), ['nonexistent', 'no such folder']),
    (lambda d: (d / 'f').write_text('x') and str(d / 'f'), ['f', 'not a folder']),
    (lambda d: str(d), ['cifar-10-batches-py', 'cifar-10-python.tar.gz', readers.CIFAR_PAGE]),
    (lambda d: os.remove(make_cifar_folder(str(d))[0] + '/data_batch_3') or str(d), ['data_batch_3', 'no such file']),
])
def test_a_data_dir_without_cifar10_says_what_is_missing(tmp_path, setup, names):
    data_dir = setup(tmp_path)
    loading_refuses(data_dir, data_dir, *names)


@pytest.mark.parametrize(('batch', 'names'), [
    # each names the file and what is wrong with it, blaming the right thing
    ({b'data': np.zeros((3, 3072), np.float32), b'labels': [0, 1, 2]}, ['float32', 'uint8']),
    ({b'data': np.zeros((4, 1024), np.uint8), b'labels': [0] * 4}, ['(4, 1024)', '(N, 3072)']),
    ({b'data': np.zeros((3, 3072), np.uint8), b'labels': np.zeros((3, 1), np.int64)}, ['labels', '0-9', '(3, 1)']),
    ({b'data': np.zeros((3, 3072), np.uint8), b'labels': [[1], [2], [1, 2]]}, ['labels', '0-9', 'list holding a list']),
    ({b'data': np.zeros((3, 3072), np.uint8), b'labels': [0, 1]}, ['2 labels', '3 images']),
    ({b'data': np.zeros((3, 3072), np.uint8), b'labels': [0, 10, 2]}, ['labels', '0-9', '10']),
    ({b'data': np.zeros((3, 3072), np.uint8)}, ['not a CIFAR-10 batch file', "b'labels'"]),
    ([1, 2, 3], ['not a CIFAR-10 batch file', 'list'])])
def test_a_bad_batch_file_is_named_with_what_is_wrong(tmp_path, batch, names):
    folder, _ = make_cifar_folder(str(tmp_path))
    with open(os.path.join(folder, 'data_batch_2'), 'wb') as f:
        pickle.dump(batch, f)
    assert loading_refuses(folder, *names).startswith(os.path.join(folder, 'data_batch_2') + ': ')


def test_an_empty_data_set_is_refused(tmp_path):
    folder, _ = make_cifar_folder(str(tmp_path))
    write_batch(os.path.join(folder, 'test_batch'), np.zeros((0, 32, 32, 3), np.uint8), [])
    loading_refuses(folder, folder, 'no test images')


class Payload:
    """Unpickling this runs os.system(...): the classic pickle exploit."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_pickle_payload_is_refused_not_run(tmp_path):
    folder, _ = make_cifar_folder(str(tmp_path))
    marker = tmp_path / 'pwned'
    with open(os.path.join(folder, 'data_batch_1'), 'wb') as f:
        pickle.dump({b'data': Payload(marker), b'labels': []}, f)
    loading_refuses(folder, 'data_batch_1', 'refused', 'system')
    assert not marker.exists()


def test_an_array_type_numpy_would_crash_on_is_refused(tmp_path):
    """numpy's own unpickling of dtype('M8') given a plain number's state kills the interpreter (a
    segmentation fault); only plain number types, in their own state, get past the stand-in."""
    folder, _ = make_cifar_folder(str(tmp_path))
    crash = pickle.dumps(np.dtype('u1'), protocol=2).replace(b'u1', b'M8').replace(b'|', b'<')  # 100 bytes
    (tmp_path / 'cifar-10-batches-py' / 'test_batch').write_bytes(crash)
    loading_refuses(folder, 'test_batch', 'damaged or not a CIFAR-10 batch file')


def test_an_array_claiming_a_huge_size_is_refused_before_it_is_allocated(tmp_path):
    """numpy pickles rebuild an array as _reconstruct(ndarray, (0,), b'b') and then fill it: this
    one claims (10**12,) up front, which would allocate a terabyte, so anything but (0,) is refused."""
    folder, _ = make_cifar_folder(str(tmp_path))
    claim = (b'\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n'
             b'\x8a\x05' + (10**12).to_bytes(5, 'little') + b'\x85U\x01b\x87R.')
    (tmp_path / 'cifar-10-batches-py' / 'test_batch').write_bytes(claim)
    loading_refuses(folder, 'test_batch', 'refused')


@pytest.mark.parametrize('member', ['cifar-10-batches-py/../../escaped.txt', '/etc/escaped.txt'])
def test_a_tar_member_outside_its_folder_is_refused(tmp_path, member):
    path, _ = make_tarball(str(tmp_path))
    evil = tmp_path / 'evil.tar.gz'
    with tarfile.open(path) as src, tarfile.open(evil, 'w:gz') as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        info = tarfile.TarInfo(member)
        info.size = 3
        dst.addfile(info, io.BytesIO(b'hi\n'))
    os.replace(evil, path)
    loading_refuses(str(tmp_path), 'cifar-10-python.tar.gz', 'refused', member)


def test_a_tarball_that_unpacks_too_big_is_refused(tmp_path, monkeypatch):
    """A few kB that unpack to megabytes of zeros (a gzip bomb, scaled down with the limit)."""
    monkeypatch.setattr(readers, 'MAX_ARCHIVE_BYTES', 1_000_000)
    with tarfile.open(tmp_path / 'cifar-10-python.tar.gz', 'w:gz') as tar:
        info = tarfile.TarInfo('cifar-10-batches-py/data_batch_1')
        info.size = 2_000_000
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert os.path.getsize(tmp_path / 'cifar-10-python.tar.gz') < 10_000
    loading_refuses(str(tmp_path), 'cifar-10-python.tar.gz', '1,000,000 bytes')


def pickled(*opcodes):
    """A protocol-2 pickle of a numpy array from its opcodes: _reconstruct(ndarray, (0,), b'b'), then its state."""
    return (b'\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R'
            + b''.join(opcodes) + b'b.')


HUGE_NUMBER = b'\x8b' + (20_000).to_bytes(4, 'little') + b'\x01' * 20_000  # LONG4: a 48,000-digit whole number
U1 = (b'cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNN'
      b'J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb')


@pytest.mark.parametrize(('data', 'names'), [
    (pickled(b'K\x02'), ['damaged', 'state']),  # an array whose state is a number
    (b'\x80\x02K\x01q\xc8.', ['damaged', 'memo index']),  # BINPUT 200 in a 6-byte pickle
    (b'\x80\x02]q\x00(K\x01K\x02e.', ['not a CIFAR-10 batch file', 'list'])])
def test_pickles_are_checked_opcode_by_opcode(data, names):
    """The unpickler allocates what a memo index claims before it reads; numpy's states are checked by the stand-in."""
    with refused('data_batch_1', *names):
        readers.read_batch('data_batch_1', data)


def test_a_file_larger_than_its_kind_ever_is_refused_unread(tmp_path):
    (tmp_path / 'big').write_bytes(bytes(11))
    with refused('big', '11 bytes', '10'):
        readers.read_file(str(tmp_path / 'big'), 'big', 10)


@pytest.mark.parametrize('claim', [
    pickled(b'(K\x01(', HUGE_NUMBER, b'q\x01', b'h\x01' * 29, b't', U1, b'\x89C\x00t'),  # shape (huge,) * 30
    b'\x80\x02}(C\x04dataJ\x00\x00\x00\x00C\x06labels](K\x00' + HUGE_NUMBER + b'eu.'])  # a label of 48,000 digits
def test_numbers_a_pickle_claims_are_checked_before_they_are_multiplied_or_printed(claim):
    """A few kB claiming shapes or labels of thousands of digits: refused at once, in a line of sane length."""
    with refused('data_batch_1') as error:
        readers.read_batch('data_batch_1', claim)
    assert len(str(error.value)) < 200


@pytest.mark.skipif(not shutil.which('tar'), reason='needs GNU tar to make a sparse member')
def test_a_tar_member_claiming_gigabytes_is_refused_before_it_is_read(tmp_path):
    """Sparse members: a 4 GB file of holes packs into bytes, and reading it would fill every hole."""
    folder, _ = make_cifar_folder(str(tmp_path / 'src'))
    os.truncate(os.path.join(folder, 'data_batch_2'), 4 * 2**30)
    subprocess.run(['tar', '-S', '--format=posix', '-czf', str(tmp_path / 'cifar-10-python.tar.gz'), '-C',
                    str(tmp_path / 'src'), 'cifar-10-batches-py'], check=True)
    assert os.path.getsize(tmp_path / 'cifar-10-python.tar.gz') < 1_000_000
    loading_refuses(str(tmp_path), 'cifar-10-batches-py/data_batch_2', f'{readers.MAX_BATCH_BYTES:,} bytes')


# ─── Things that are not regular files: refused at once, never opened ────────────────────────────

def fifo(path):
    os.mkfifo(path)


def symlink_loop(path):
    os.symlink(path, path)


def folder(path):
    os.mkdir(path)


READERS = {  # each reader of a file the user names, and the file it reads
    'batch file': (lambda d: os.path.join(make_cifar_folder(d)[0], 'data_batch_1'),
                   lambda d, path: load_cifar10(d)),
    'tarball': (lambda d: os.path.join(d, 'cifar-10-python.tar.gz'), lambda d, path: load_cifar10(d)),
    '--load-model': (lambda d: os.path.join(d, 'm.keras'), lambda d, path: cifar_cnn.load_model(path)),
    '--predict': (lambda d: os.path.join(d, 'photo.png'), lambda d, path: readers.read_image(path)),
}


@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='needs named pipes')
@pytest.mark.parametrize('reader', READERS)
@pytest.mark.parametrize(('make', 'message'), [(fifo, 'is not a regular file'), (folder, 'is a folder, not a file'),
                                               (symlink_loop, 'cannot read it'),
                                               ('/dev/zero', 'is not a regular file')])
def test_what_is_not_a_regular_file_is_refused_without_waiting(tmp_path, reader, make, message):
    where, read = READERS[reader]
    path = where(str(tmp_path))
    if os.path.lexists(path):
        os.remove(path)
    if make == '/dev/zero':
        os.symlink('/dev/zero', path)
    else:
        make(path)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(pytest.raises(CifarError, read, str(tmp_path), path)),
                              daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), f'{reader} waited on a {make}'
    assert message in str(outcome[0].value)


WINDOWS_O_BINARY = 0x8000  # os.O_BINARY, which Windows alone has


def test_on_windows_every_reader_opens_its_file_in_binary_mode(tmp_path, saved_model, monkeypatch):
    """Windows reads a file that os.open opened without O_BINARY as text: CR LF becomes LF, and Ctrl-Z ends it,
    so a batch file, a tarball, a model or a picture would come back mangled; and it has no O_NONBLOCK. With
    O_BINARY put in and O_NONBLOCK taken out, as there, each reader opens its file with O_BINARY and reads it whole."""
    _, written = make_cifar_folder(str(tmp_path / 'folder'))
    make_tarball(str(tmp_path / 'tarball'))
    Image.new('RGB', (64, 48), (200, 30, 30)).save(tmp_path / 'photo.png')
    monkeypatch.setattr(os, 'O_BINARY', WINDOWS_O_BINARY, raising=False)
    monkeypatch.delattr(os, 'O_NONBLOCK', raising=False)
    real_open, opened = os.open, {}

    def open_as_on_windows(path, flags, *args, **kwargs):
        opened[os.path.basename(path)] = flags
        return real_open(path, flags & ~WINDOWS_O_BINARY, *args, **kwargs)  # Linux has no such flag
    monkeypatch.setattr(os, 'open', open_as_on_windows)
    check_arrays(load_cifar10(str(tmp_path / 'folder')), written)
    check_arrays(load_cifar10(str(tmp_path / 'tarball')), written)
    assert cifar_cnn.load_model(saved_model).count_params() == 122_570
    np.testing.assert_array_equal(readers.read_image(str(tmp_path / 'photo.png')), np.full((32, 32, 3), [200, 30, 30]))
    files = [*readers.BATCH_FILES, 'cifar-10-python.tar.gz', os.path.basename(saved_model), 'photo.png']
    assert {name: opened.get(name, 0) & WINDOWS_O_BINARY for name in files} == dict.fromkeys(files, WINDOWS_O_BINARY)


def test_an_image_claiming_a_huge_size_is_refused_before_decoding(tmp_path):
    path = tmp_path / 'bomb.png'
    Image.new('L', (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = (100_000).to_bytes(4, 'big') * 2  # the IHDR chunk now claims 100,000 x 100,000
    data[29:33] = zlib.crc32(data[12:29]).to_bytes(4, 'big')  # with a checksum to match
    path.write_bytes(bytes(data))
    with refused('bomb.png', f'{Image.MAX_IMAGE_PIXELS:,} pixels', 'resize it'):
        readers.read_image(str(path))


def test_a_picture_file_too_large_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, 'MAX_IMAGE_BYTES', 1000)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(tmp_path / 'big.png')
    with refused('big.png', '1,000', 'save it smaller'):
        readers.read_image(str(tmp_path / 'big.png'))


@pytest.mark.parametrize(('extra', 'why'), [
    ('decoy/cifar-10-batches-py/test_batch', 'not one of the files'), ('cifar-10-batches-py/test_batch', 'twice'),
    ('cifar-10-batches-py/notes.txt', 'not one of the files')])
def test_a_tarball_with_duplicates_or_decoys_is_refused(tmp_path, extra, why):
    """The last member of a name would win silently: a CIFAR-10 archive holds each of its files once."""
    path, _ = make_tarball(str(tmp_path))
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    with tarfile.open(path, 'w:gz') as tar:
        for m, data in members:
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
        info = tarfile.TarInfo(extra)
        decoy = batch_bytes(np.zeros((24, 32, 32, 3), np.uint8), [0] * 24)
        info.size = len(decoy)
        tar.addfile(info, io.BytesIO(decoy))
    loading_refuses(str(tmp_path), 'cifar-10-python.tar.gz', repr(extra), why)


@pytest.mark.parametrize('protocol', range(pickle.HIGHEST_PROTOCOL + 1))
def test_batches_pickled_with_every_protocol_load(tmp_path, protocol):
    """Protocols 0-2 write bytes through _codecs.encode, 5 writes arrays through numpy's _frombuffer."""
    x = np.random.default_rng(protocol).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    for labels in ([3, 1, 4, 1, 5], np.array([3, 1, 4, 1, 5])):
        images, loaded = readers.read_batch('data_batch_1', batch_bytes(x, labels, protocol=protocol))
        np.testing.assert_array_equal(images, x)
        np.testing.assert_array_equal(loaded[:, 0], [3, 1, 4, 1, 5])


# ─── The wrong download, the download in other forms, and a download that stalls ─────────────────

@pytest.mark.parametrize(('what', 'named'), [
    ('cifar-10-batches-bin/data_batch_1.bin', "binary version"), ('cifar-10-batches-mat/data_batch_1.mat', 'MATLAB'),
    ('cifar-100-python/train', 'CIFAR-100'), ('cifar-10-binary.tar.gz', 'binary version'),
    ('cifar-100-python.tar.gz', 'CIFAR-100')])
@pytest.mark.parametrize('pointed_at', ['the folder holding it', 'its own folder'])
def test_another_version_of_cifar_is_named_with_the_one_to_get(tmp_path, what, named, pointed_at):
    path = tmp_path / what
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'')
    data_dir = path.parent if pointed_at == 'its own folder' and '/' in what else tmp_path
    loading_refuses(str(data_dir), named, 'cifar-10-python.tar.gz', readers.CIFAR_PAGE)


def test_another_versions_archive_under_the_cifar_10_name_is_named_with_the_one_to_get(tmp_path):
    """CIFAR-100's download renamed cifar-10-python.tar.gz: read as far as its first member, and named."""
    path = tmp_path / 'cifar-10-python.tar.gz'
    with tarfile.open(path, 'w:gz') as archive:
        member = tarfile.TarInfo('cifar-100-python/train')
        member.size = 4
        archive.addfile(member, io.BytesIO(b'data'))
    loading_refuses(str(tmp_path), 'CIFAR-100', 'cifar-10-python.tar.gz', readers.CIFAR_PAGE)


@pytest.mark.parametrize('form', ['the archive named as --data-dir', 'unpacked once by a browser (.tar)',
                                  'a plain tar under the .tar.gz name'])
def test_the_archive_in_every_form_a_reader_may_have_gives_the_same_arrays(tmp_path, form):
    path, written = make_tarball(str(tmp_path))
    if form != 'the archive named as --data-dir':
        with open(path, 'rb') as packed:
            plain = gzip.decompress(packed.read())
        os.remove(path)
        path = os.path.join(tmp_path, 'cifar-10-python.tar' + ('' if form.startswith('unpacked') else '.gz'))
        with open(path, 'wb') as f:
            f.write(plain)
    check_arrays(load_cifar10(path if form == 'the archive named as --data-dir' else str(tmp_path)), written)


def test_keras_2s_download_is_read_offline_instead_of_downloading_again(capsys):
    folder, written = make_cifar_folder(KERAS_DATASETS)  # what Keras 2 unpacked: datasets/cifar-10-batches-py
    try:
        check_arrays(load_cifar10(None), written)  # conftest's proxy refuses any download: none was tried
        assert f"Keras 2's download, {folder}" in capsys.readouterr().out
    finally:
        shutil.rmtree(KERAS_DATASETS)


@pytest.mark.parametrize('left', ['nothing', 'data_batch_1 only', 'a damaged data_batch_1', 'no test images'])
def test_an_incomplete_keras_2_download_is_named_as_such_with_what_to_do(left):
    """No --data-dir given: an error in Keras 2's download names it as that, and says to delete it."""
    folder, _ = make_cifar_folder(KERAS_DATASETS)
    if left == 'a damaged data_batch_1':
        with open(os.path.join(folder, 'data_batch_1'), 'wb') as f:
            f.write(b'not a pickle')
    elif left == 'no test images':
        write_batch(os.path.join(folder, 'test_batch'), np.zeros((0, 32, 32, 3), np.uint8), [])
    else:
        for name in os.listdir(folder):
            if not (name == 'data_batch_1' and left == 'data_batch_1 only'):
                os.remove(os.path.join(folder, name))
    try:
        with refused(folder, "Keras's earlier download", f'delete {folder}', 'data_dir=') as error:
            cifar_cnn.CifarCNN()
        assert not str(error.value).startswith('data_dir=')
    finally:
        shutil.rmtree(KERAS_DATASETS)


def test_a_download_that_stalls_is_given_up_with_one_line(monkeypatch):
    """A proxy (or server) that accepts the connection and then sends nothing: given up after
    DOWNLOAD_STALL_SECONDS (here 1), in one line saying so and what to do."""
    server = socket.create_server(('127.0.0.1', 0))
    stalled = {'https': f'http://127.0.0.1:{server.getsockname()[1]}'}
    urllib.request.install_opener(urllib.request.build_opener(urllib.request.ProxyHandler(stalled)))
    monkeypatch.setattr(readers, 'DOWNLOAD_STALL_SECONDS', 1)
    try:
        with refused('could not download CIFAR-10', 'nothing came for 1 s', 'data_dir='):
            load_cifar10(None)
    finally:
        urllib.request.install_opener(urllib.request.build_opener())  # conftest's proxy again, from the environment
        server.close()
