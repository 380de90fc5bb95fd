"""The readers of files a user hands cifar_cnn.py: CIFAR-10's batch files and tarball, a saved model, pictures.

Every one of them may be anything: damaged, enormous, not a regular file, or made to attack. A pickle can run
any function as it loads; a .keras file can name any Python class for Keras to import; a 2 kB archive can
unpack to gigabytes and a 2 MB JPEG can take hours to decode. A tutorial's reader downloads such files from
wherever they found them, so each reader here checks sizes and types before it allocates or trusts, and turns
what is wrong into one CifarError line naming the file and what to do. tests/test_fuzz.py feeds them every
valid form their producers write, mutated.
"""

import gzip
import io
import json
import math
import os
import pickle
import pickletools
import re
import socket
import struct
import tarfile
import warnings
import zipfile
import zlib

import h5py
import keras
import numpy as np
from PIL import Image, ImageOps

from cifar_cnn_plumbing import CifarError, first_line, named, read_file, stderr_dropped

MB = 2**20
MAX_BATCH_BYTES = 64 * MB     # a CIFAR-10 batch file: 31 MB
MAX_ARCHIVE_BYTES = 256 * MB  # cifar-10-python.tar.gz: 163 MB packed, 178 MB unpacked
MAX_MODEL_BYTES = 64 * MB     # a saved model: ~1.5 MB
MAX_IMAGE_BYTES = 64 * MB


# ─── CIFAR-10: Keras's loader, --data-dir, batch files, the tarball ──────────────────────────────────
CIFAR_PAGE = 'https://www.cs.toronto.edu/~kriz/cifar.html'
BATCH_FILES = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
TAR_FILES = {f'cifar-10-batches-py/{name}' for name in [*BATCH_FILES, 'batches.meta', 'readme.html']}
KERAS_CACHE_ERRORS = (  # what Keras's loader raises on a damaged download cache
    OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError, tarfile.TarError)
ARCHIVE_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, tarfile.TarError)  # a damaged .tar.gz
UNPICKLING_ERRORS = (  # damaged pickles: pickle's docs name the first four; tests/test_fuzz.py finds the rest
    pickle.UnpicklingError, AttributeError, EOFError, IndexError, ValueError, TypeError, OverflowError)


def load_cifar10(data_dir=None, limit=None):
    """What `keras.datasets.cifar10.load_data()` returns, uint8 images (N, 32, 32, 3) and labels (N, 1),
    training then test: from that very loader, or read strictly from `data_dir`, files a user hands over
    (or from Keras 2's download of them, found offline); `limit`: the first N of each."""
    if data_dir is not None:
        batches = read_data_dir(os.fspath(data_dir))
    elif (batches := keras_2_download()) is None:
        (train_imgs, train_labels), (test_imgs, test_labels) = keras_load_data()
        return (train_imgs[:limit], train_labels[:limit]), (test_imgs[:limit], test_labels[:limit])
    train_imgs, train_labels = (np.concatenate(arrays)[:limit] for arrays in zip(*batches[:5]))
    test_imgs, test_labels = (np.ascontiguousarray(array[:limit]) for array in batches[5])
    return (train_imgs, train_labels), (test_imgs, test_labels)


def keras_datasets():
    """The folder Keras keeps its downloads in (keras.utils.get_file's cache): $KERAS_HOME/datasets, or
    ~/.keras/datasets."""
    return os.path.join(os.path.expanduser(os.environ.get('KERAS_HOME') or '~/.keras'), 'datasets')


def keras_2_download():
    """The batches of Keras 2's unpacked download of CIFAR-10, where Keras 3 has none of its own (it keeps it under
    another name), or None: read as --data-dir reads a folder, rather than downloading 163 MB again. One that is
    incomplete or damaged is one line naming it and saying to delete it."""
    folder = os.path.join(keras_datasets(), 'cifar-10-batches-py')
    keras_3 = [os.path.join(keras_datasets(), f'cifar-10-batches-py-target{end}') for end in ('', '_archive')]
    if not os.path.isdir(folder) or any(os.path.exists(path) for path in keras_3):
        return None
    print(f"Reading CIFAR-10 from Keras 2's download, {folder}")
    try:
        if missing := [name for name in BATCH_FILES if not os.path.lexists(os.path.join(folder, name))]:
            raise CifarError(f'{folder}: has no {missing[0]}')
        return read_data_dir(folder, label=folder)
    except CifarError as error:
        raise CifarError(f"Keras's earlier download of CIFAR-10: {error}; delete {folder}, and Keras downloads "
                         f'CIFAR-10 again (or point {named("data_dir")} at a copy)') from None


DOWNLOAD_STALL_SECONDS = 60  # a download that receives nothing for this long is given up


def keras_load_data():
    """keras.datasets.cifar10.load_data(), as in the post: it downloads CIFAR-10 (163 MB) once into Keras's
    cache, checks its SHA-256 and reads it with a restricted unpickler; what goes wrong there, a download that
    stalls included, is one line saying what to do."""
    home = os.environ.get('KERAS_HOME')
    if home and os.path.exists(home) and not os.path.isdir(home):
        raise CifarError(f'KERAS_HOME={home}: is a file, not a folder for Keras to keep CIFAR-10 in; point '
                         'KERAS_HOME at a folder, or unset it')
    stall, previous = DOWNLOAD_STALL_SECONDS, socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(stall)  # what urllib, under Keras's downloader, waits for each answer
        with warnings.catch_warnings():  # the error below says it better
            warnings.filterwarnings('ignore', 'Could not extract archive')
            return keras.datasets.cifar10.load_data()
    except Exception as error:  # Keras turns every failed download into a bare Exception('URL fetch failure ...')
        fetch_failed = type(error) is Exception and str(error).startswith('URL fetch failure')
        if fetch_failed or isinstance(error, (ConnectionError, TimeoutError)):
            reason = re.sub(r'^URL fetch failure on \S+: (\S+ -- )?', '', first_line(error))
            reason += f': nothing came for {stall} s' if 'timed out' in reason else ''
            raise CifarError(f'could not download CIFAR-10 ({reason}). Download cifar-10-python.tar.gz from '
                             f'{CIFAR_PAGE} yourself; point {named("data_dir")} at its folder') from None
        if isinstance(error, KERAS_CACHE_ERRORS):
            raise CifarError(f"Keras's CIFAR-10 loader failed ({first_line(error)}); if its download cache is damaged, "
                             f'delete {keras_datasets()}/cifar-10-batches-py-target* and run again') from None
        raise
    finally:
        socket.setdefaulttimeout(previous)


OTHER_DOWNLOADS = {  # what else the CIFAR page offers, by the names it unpacks to or downloads as
    **dict.fromkeys(['cifar-10-batches-bin', 'cifar-10-binary.tar.gz', 'data_batch_1.bin'],
                    "CIFAR-10's binary version"),
    **dict.fromkeys(['cifar-10-batches-mat', 'cifar-10-matlab.tar.gz', 'data_batch_1.mat'],
                    "CIFAR-10's MATLAB version"),
    **dict.fromkeys(['cifar-100-python', 'cifar-100-python.tar.gz', 'cifar-100-binary.tar.gz',
                     'cifar-100-matlab.tar.gz', 'cifar-100-binary', 'cifar-100-matlab'], 'CIFAR-100, not CIFAR-10')}
ARCHIVES = ['cifar-10-python.tar.gz', 'cifar-10-python.tar']  # the download, and as some browsers unpack it once
GET_IT = f'get "CIFAR-10 python version" (cifar-10-python.tar.gz) from {CIFAR_PAGE}'


def another_download(name):
    """What `name`, one of OTHER_DOWNLOADS, holds, and the download to get instead."""
    return f'it holds {OTHER_DOWNLOADS[name]} ({name}), and this program reads the Python version: {GET_IT}'


def read_data_dir(data_dir, label=None):
    """--data-dir: the six batches (images, labels) of a folder of batch files, one holding cifar-10-batches-py/,
    one holding the archive, or the archive itself; another version of CIFAR (or CIFAR-100) is named, with the one
    to get. `label`: how errors name `data_dir`, by default as the user gave it."""
    label = label or named('data_dir', data_dir)
    batches = read_cifar_files(data_dir, label)
    for what, read in (('training', batches[:5]), ('test', batches[5:])):
        if not sum(len(imgs) for imgs, _ in read):
            raise CifarError(f'{label}: holds no {what} images')
    return batches


def read_cifar_files(data_dir, label):
    """read_data_dir()'s batches, as they are found."""
    if os.path.isfile(data_dir) and data_dir.endswith(('.tar.gz', '.tgz', '.tar')):
        return read_tarball(data_dir)
    if not os.path.isdir(data_dir):
        raise CifarError(f'{label}: {"is not a folder" if os.path.lexists(data_dir) else "no such folder"}')
    folder = data_dir if any(os.path.lexists(os.path.join(data_dir, name)) for name in BATCH_FILES) else \
        os.path.join(data_dir, 'cifar-10-batches-py')
    if os.path.isdir(folder):
        return [read_batch(path, read_file(path, path, MAX_BATCH_BYTES))
                for path in (os.path.join(folder, name) for name in BATCH_FILES)]
    if archive := next((os.path.join(data_dir, name) for name in ARCHIVES
                        if os.path.lexists(os.path.join(data_dir, name))), None):
        return read_tarball(archive)
    others = [name for name in [os.path.basename(os.path.normpath(data_dir)), *sorted(os.listdir(data_dir))]
              if name in OTHER_DOWNLOADS]
    raise CifarError(f'{label}: ' + (another_download(others[0]) if others else
                                     f'it holds neither cifar-10-batches-py/ nor cifar-10-python.tar.gz: {GET_IT}'))


def read_tarball(path):
    """The batches out of cifar-10-python.tar.gz (or the .tar inside it), unpacked in memory: nothing extracted,
    and nothing but CIFAR-10's files (regular files, each once) let in."""
    try:
        packed = read_file(path, path, MAX_ARCHIVE_BYTES)
        tar_bytes = gzip.GzipFile(fileobj=io.BytesIO(packed)).read(MAX_ARCHIVE_BYTES + 1) \
            if packed[:2] == b'\x1f\x8b' else packed  # gzip's mark: some browsers unpack the download once
        if len(tar_bytes) > MAX_ARCHIVE_BYTES:
            raise CifarError(f'{path}: unpacks to more than {MAX_ARCHIVE_BYTES:,} bytes; CIFAR-10 unpacks to 178 MB')
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode='r:') as tar:
            members = {}
            for member in tar.getmembers():
                name = member.name.removeprefix('./').rstrip('/')
                if name in members:
                    raise CifarError(f'{path}: refused: it holds {member.name[:80]!r} twice')
                if (top := name.split('/')[0]) in OTHER_DOWNLOADS:
                    raise CifarError(f'{path}: {another_download(top)}')
                if not (member.isdir() and name in ('.', 'cifar-10-batches-py')
                        or member.isfile() and name in TAR_FILES):
                    raise CifarError(f'{path}: refused: {member.name[:80]!r} is not one of the files of the CIFAR-10 '
                                     'archive (cifar-10-batches-py/ and what it holds)')
                members[name] = member
            if missing := [name for name in BATCH_FILES if f'cifar-10-batches-py/{name}' not in members]:
                raise CifarError(f'{path}: has no cifar-10-batches-py/{missing[0]}')
            if big := [member.name for member in members.values() if member.size > MAX_BATCH_BYTES]:  # sparse too
                raise CifarError(f'{path}: {big[0][:80]} claims more than {MAX_BATCH_BYTES:,} bytes; a batch has 31 MB')
            return [read_batch(f'{path}:{member.name}', tar.extractfile(member).read())
                    for member in (members[f'cifar-10-batches-py/{name}'] for name in BATCH_FILES)]
    except ARCHIVE_ERRORS as error:
        raise CifarError(f'{path}: truncated or not a .tar.gz archive ({first_line(error)})') from None


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays of plain numbers, and plain Python data, and nothing else: a pickle can name
    any callable (`os.system`, ...) to run while loading. Like Keras's own loader, but numpy never sees a
    pickle's claims, for its own unpickling allocates whatever shape _reconstruct names and crashes the
    interpreter on some dtype states (np.dtype('M8') given a number's state)."""
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


def latin1_bytes(text, encoding):
    """Stands in for _codecs.encode, with which protocols 0-2 write bytes."""
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


def checked_array(raw, dtype, shape, order):
    """A view of `raw` as an array, once its claims are checked; also protocol 5's _frombuffer."""
    if not (type(raw) in (bytes, bytearray) and isinstance(dtype, PickledDtype) and type(shape) is tuple
            and len(shape) <= 32 and all(type(n) is int and 0 <= n < 2**32 for n in shape) and order in ('C', 'F')):
        raise pickle.UnpicklingError('an array whose state is not the one numpy writes')
    if math.prod(shape) * dtype.dtype.itemsize != len(raw):
        raise pickle.UnpicklingError(f'an array of shape {shape} with {len(raw):,} bytes of data')
    return np.frombuffer(raw, dtype.dtype).reshape(shape, order=order)


NUMBER_TYPES = {'b1', 'i1', 'u1', 'i2', 'u2', 'i4', 'u4', 'i8', 'u8', 'f2', 'f4', 'f8'}


class PickledDtype:
    """Stands in for numpy.dtype('u1', False, True) and its state: plain numbers only, in numpy's own state."""
    def __init__(self, name, align=False, copy=True):
        self.name = name
    def __setstate__(self, state):
        if not (type(state) is tuple and len(state) == 8 and state[0] == 3 and state[1] in ('<', '>', '|', '=')
                and state[2:5] == (None, None, None) and state[5:] == (-1, -1, 0) and type(self.name) is str
                and self.name.lstrip('<>|=') in NUMBER_TYPES):
            raise pickle.UnpicklingError('an array type that is not a plain number')
        # numpy's own object for the type, as np.dtype('<u1') gives, not a copy of it: matplotlib 3.9.0 draws no
        # image whose dtype is a copy (matplotlib#28448)
        self.dtype = np.dtype((state[1] if state[1] in '<>' else '=') + self.name.lstrip('<>|='))


def read_batch(label, data):
    """One CIFAR-10 batch file's bytes -> (uint8 images (N, 32, 32, 3), uint8 labels (N, 1)). Its opcodes
    are walked first, building nothing: the unpickler allocates what a length field or memo index claims
    before it reads, so each must fit in the data (pickletools raises ValueError where not)."""
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ('PUT', 'BINPUT', 'LONG_BINPUT') and not 0 <= arg <= len(data):
                raise pickle.UnpicklingError(f'a memo index of {arg:,}')
        batch = NumpyOnlyUnpickler(io.BytesIO(data), encoding='bytes').load()
    except RefusedPickle as error:
        raise CifarError(f'{label}: {error}') from None
    except UNPICKLING_ERRORS as error:
        raise CifarError(f'{label}: damaged or not a CIFAR-10 batch file ({first_line(error)})') from None
    if not isinstance(batch, dict):
        raise CifarError(f'{label}: not a CIFAR-10 batch file (it holds a {type(batch).__name__}, not a dict)')
    if missing := [key for key in (b'data', b'labels') if key not in batch]:
        raise CifarError(f'{label}: not a CIFAR-10 batch file (no {missing[0]!r} entry)')
    pixels, labels = (value.array if isinstance(value, PickledArray) else value
                      for value in (batch[b'data'], batch[b'labels']))
    if not isinstance(pixels, np.ndarray):
        raise CifarError(f"{label}: b'data' is not an array of pixels (it is a {type(pixels).__name__})")
    if pixels.dtype != np.uint8:
        raise CifarError(f'{label}: pixels are {pixels.dtype}, expected uint8 (0-255)')
    if pixels.ndim != 2 or pixels.shape[1] != 3072:
        raise CifarError(f'{label}: images have shape {pixels.shape}, expected (N, 3072): N rows of 32x32x3 pixels')
    labels = check_labels(label, labels, len(pixels))
    # Rows are channel-first (3 x 32 x 32); Keras and matplotlib want channels last.
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.reshape(-1, 1)


def check_labels(label, labels, count):
    """A batch's labels -> uint8 array; they must be a flat list (or 1-D integer array) of 0-9."""
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in 'iu':
        labels = labels.tolist()
    if not (isinstance(labels, list) and all(type(value) is int for value in labels)):
        found = (f'an array of shape {labels.shape} and type {labels.dtype}' if isinstance(labels, np.ndarray)
                 else f'a list holding a {next(type(value).__name__ for value in labels if type(value) is not int)}'
                 if isinstance(labels, list) else f'a {type(labels).__name__}')
        raise CifarError(f'{label}: labels must be a flat list of whole numbers 0-9, found {found}')
    if len(labels) != count:
        raise CifarError(f'{label}: {len(labels)} labels for {count} images')
    if labels and (min(labels) < 0 or max(labels) > 9):
        low, high = (value if abs(value) < 10**9 else 'a huge number' for value in (min(labels), max(labels)))
        raise CifarError(f'{label}: labels must be 0-9, found {low}..{high}')
    return np.array(labels, dtype=np.uint8)


# ─── Saved models (.keras) ───────────────────────────────────────────────────────────────────────────
KERAS_FILES = {'metadata.json', 'config.json', 'model.weights.h5'}
WEIGHT_RANGES = {  # what training writes, by layer kind and weight; any other: -1e4 to 1e4
    ('batch_normalization', 'moving_variance'): (0.0, 1e4)}
ZIP_ERRORS = (  # a damaged zip; RuntimeError: encrypted, or JSON nested too deeply; ValueError: not JSON
    zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError, ValueError)
HDF5_ERRORS = (OSError, ValueError, TypeError, KeyError, RuntimeError)  # h5py, on what is not HDF5


def read_model(path, build_network):
    """load_model(): the network `build_network(batch_norm, dropout)` makes, once the file's config.json
    describes it, with the file's weights once they check out: nothing of the file is handed to Keras."""
    label = named('load_model', path)
    config, weights = read_keras_file(path, label)
    batch_norm, dropout = saved_variations(config, label)
    model = build_network(batch_norm, dropout)
    check_config(config, model, label)
    read_weights(model, weights, label)
    return model


def read_keras_file(path, label):
    """A .keras file's config (parsed) and weights (bytes), once the zip holds Keras's three members and
    nothing else, at most MAX_MODEL_BYTES."""
    data = read_file(path, label, MAX_MODEL_BYTES)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = {info.filename for info in zf.infolist()}
            if names != KERAS_FILES or len(zf.infolist()) != len(KERAS_FILES):
                raise CifarError(f'{label}: not a model saved by {named("save_model")} '
                                 f'(holds {", ".join(sorted(names)[:5]) or "nothing"})')
            if sum(info.file_size for info in zf.infolist()) > MAX_MODEL_BYTES:
                raise CifarError(f'{label}: unpacks to more than {MAX_MODEL_BYTES:,} bytes')
            return json.loads(zf.read('config.json')), zf.read('model.weights.h5')  # each read checks its CRC
    except ZIP_ERRORS as error:
        raise CifarError(f'{label}: damaged or not a .keras file ({first_line(error)})') from None


def saved_layers(config, label):
    """config.json's list of layers, each a dict: what a Sequential model's config holds."""
    saved = config.get('config') if isinstance(config, dict) and config.get('class_name') == 'Sequential' else None
    saved = saved.get('layers') if isinstance(saved, dict) else None
    if not (isinstance(saved, list) and all(isinstance(layer, dict) for layer in saved)):
        raise CifarError(f'{label}: refused: config.json holds no Sequential model, which {named("save_model")} writes')
    return saved


def saved_variations(config, label):
    """(batch_norm, dropout rate) of the network config.json describes, for build_network to make it."""
    saved = saved_layers(config, label)
    rates = [layer.get('config') for layer in saved if layer.get('class_name') == 'Dropout']
    rate = (rates[0].get('rate') if isinstance(rates[0], dict) else rates[0]) if rates else 0.0
    if not (type(rate) is float and 0 <= rate < 1):
        raise CifarError(f'{label}: refused: a dropout rate of {str(rate)[:20]}')
    return any(layer.get('class_name') == 'BatchNormalization' for layer in saved), rate


def check_config(config, model, label):
    """Refuses config.json unless it describes `model` layer by layer, kind and every setting but the name:
    an edited file would give answers that look right and are not."""
    saved, wanted = saved_layers(config, label), json.loads(json.dumps(model.get_config()['layers']))
    def described(layer):  # what must match: all but the name and the dtype policy
        settings = layer.get('config')
        if isinstance(settings, dict):
            settings = {key: value for key, value in settings.items() if key not in ('name', 'dtype')}
        return layer.get('module'), layer.get('class_name'), settings
    for i in range(max(len(saved), len(wanted))):
        got, want = (saved[i] if i < len(saved) else {}), (wanted[i] if i < len(wanted) else {})
        if described(got) != described(want):
            kind = f'{got.get("module")}.{got.get("class_name")}'[:80] if got else 'missing'
            raise CifarError(f'{label}: refused: layer {i + 1} is {kind}, not the {want.get("class_name", "end")} '
                             f'that {named("save_model")} writes there, or not with its settings')


def read_weights(model, data, label):
    """model.weights.h5 -> `model`'s weights, each dataset found where Keras puts it (layers/NAME/vars/I) and
    checked against its weight (shape, dtype, storage: whole, uncompressed, in the file) before a byte of
    it is read. Weights not finite, or outside what training writes (WEIGHT_RANGES), are refused."""
    try:
        with h5py.File(io.BytesIO(data), 'r') as opened:
            group = opened.get('layers')
            if not isinstance(group, h5py.Group) or len(group) != len(model.layers):
                raise CifarError(f'{label}: refused: its weights are not those of the network '
                                 f'{named("save_model")} writes')
            found = []
            for path, variable in keras_weight_paths(model).items():
                dataset = group.get(path)
                if not (isinstance(dataset, h5py.Dataset) and dataset.shape == tuple(variable.shape)
                        and dataset.dtype == np.dtype('<f4') and dataset.chunks is None and not dataset.external
                        and not dataset.is_virtual and dataset.id.get_storage_size() == dataset.nbytes):
                    raise CifarError(f'{label}: refused: the weights at layers/{path} are not the '
                                     f'{tuple(variable.shape)} float32 numbers {named("save_model")} writes there')
                found.append((path, variable, dataset))
            values = [(path, variable, dataset[()]) for path, variable, dataset in found]
    except HDF5_ERRORS as error:
        raise CifarError(f'{label}: damaged (model.weights.h5: {first_line(error)})') from None
    for path, variable, value in values:
        low, high = WEIGHT_RANGES.get((re.sub(r'_\d+$', '', path.split('/')[0]), variable.name), (-1e4, 1e4))
        if not np.isfinite(value).all():
            raise CifarError(f'{label}: refused: some weights are not numbers (NaN or infinite)')
        if value.min() < low or value.max() > high:
            raise CifarError(f'{label}: refused: its {variable.name} at layers/{path} goes outside {low:g} to '
                             f'{high:g}, where training keeps it')
    for _, variable, value in values:
        variable.assign(value)


def keras_weight_paths(model):
    """{'conv2d/vars/0': variable, ...}: where the .keras format keeps each of `model`'s weights."""
    paths, seen = {}, {}
    for layer in model.layers:
        name = re.sub(r'([a-z])([A-Z])', r'\1_\2', re.sub(r'(.)([A-Z][a-z]+)', r'\1_\2', type(layer).__name__)).lower()
        seen[name] = seen.get(name, -1) + 1
        for i, variable in enumerate(layer.trainable_weights + layer.non_trainable_weights):
            paths[f'{name}{f"_{seen[name]}" if seen[name] else ""}/vars/{i}'] = variable
    return paths


# ─── Your own pictures (--predict) ───────────────────────────────────────────────────────────────────
IMAGE_FORMATS = ['PNG', 'JPEG', 'GIF', 'BMP', 'WEBP', 'TIFF']  # what photos come in; each fuzzed
JPEG_KINDS = ('JPEG', 'MPO')  # what Pillow reports a JPEG file as: MPO for one holding several pictures
MAX_JPEG_SCANS = 100  # each decodes every pixel; photos have at most a few dozen
IMAGE_ERRORS = (  # Pillow on damaged files, and its EXIF reader on damaged tags (tests/test_fuzz.py finds them)
    OSError, SyntaxError, ValueError, TypeError, AttributeError, OverflowError, struct.error)


def read_image(path):
    """An image file of any size, format and mode -> uint8 (32, 32, 3) pixels, as CIFAR-10's: turned upright
    (EXIF), made RGB, resized to 32x32 (bilinear), transparent parts on white. Pillow's own limit refuses an
    image that claims too many pixels before it is decoded."""
    data = read_file(path, path, MAX_IMAGE_BYTES, '; save it smaller (as a JPEG, or resized) and try again')
    try:  # Pillow's warnings and libtiff's lines about a damaged file: the error line says it
        with warnings.catch_warnings(), stderr_dropped(re.compile('')):
            warnings.simplefilter('ignore')
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            if img.format in JPEG_KINDS and (scans := data.count(b'\xff\xda')) > MAX_JPEG_SCANS:
                raise CifarError(f'{path}: a JPEG in {scans:,} scans; photos have at most a few dozen')
            ImageOps.exif_transpose(img, in_place=True)
            return rgb_pixels(path, img)
    except Image.UnidentifiedImageError:
        raise CifarError(f'{path}: not an image in a format read here ({", ".join(IMAGE_FORMATS)})') from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CifarError(f'{path}: claims more than the {Image.MAX_IMAGE_PIXELS:,} pixels read here; resize it (it is '
                         'made 32x32 anyway) and try again') from None
    except IMAGE_ERRORS as error:
        raise CifarError(f'{path}: damaged image ({first_line(error)})') from None


def rgb_pixels(path, img):
    """A decoded image -> uint8 (32, 32, 3); 16-bit pixels by their white level, float ones in 0-1 (a plain
    convert('RGB') would clip both); any other scale is an error."""
    if img.mode in ('1', 'L', 'P', 'RGB', 'RGBX', 'CMYK', 'YCbCr', 'HSV', 'LA', 'PA', 'RGBA', 'RGBa'):
        if img.mode in ('LA', 'PA', 'RGBA', 'RGBa') or 'transparency' in img.info:
            img = Image.alpha_composite(Image.new('RGBA', img.size, 'white'), img.convert('RGBA'))
        return np.asarray(img.convert('RGB').resize((32, 32), Image.BILINEAR), dtype=np.uint8)
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
    small = np.asarray(Image.fromarray(grey * 255, 'F').resize((32, 32), Image.BILINEAR))
    return np.repeat(np.round(small).astype(np.uint8)[..., np.newaxis], 3, axis=2)
