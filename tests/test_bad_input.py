"""Bad input gives one line, never a traceback: non-finite imported weights, a damaged
tensorflow-datasets copy; and the helpers that simulate a full disk or an unwritable folder.

``full_disk`` and ``unwritable`` are fixtures for any test of a write site: the machines these
tests run on may be root (who may write anywhere: ``chmod`` cannot make a folder unwritable)
and have no small file system to fill, so both patch Python's file functions for one folder.
"""

import builtins
import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest

from resnet_limits import data as data_mod
from resnet_limits.cli import main
from resnet_limits.errors import UsageError

# ------------------------------------------------------- a full disk, an unwritable folder ----


def _inside(folder: str, where) -> bool:
    """Whether ``where`` (a path or an open file descriptor) lies in ``folder`` (a real path)."""
    try:
        path = os.readlink(f"/proc/self/fd/{where}") if isinstance(where, int) else os.path.realpath(where)
    except (OSError, TypeError):
        return False
    return path == folder or path.startswith(folder + os.sep)


def _writes(mode: str) -> bool:
    return any(c in mode for c in "wax+")


def _no_space() -> OSError:
    # what write(2) and fsync(2) raise on a full disk: no file name (e.filename is None)
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullFile:
    """An open file on a full disk: writing bytes fails, everything else is the real file's."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        if len(data) == 0:
            return 0
        raise _no_space()

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __iter__(self):
        return iter(self._f)

    def __getattr__(self, name):
        return getattr(self._f, name)


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(folder, at="write")``: from then on the disk holding ``folder`` is full.

    Files under ``folder`` (and its subfolders) can still be created, opened, renamed and
    removed (a full disk refuses data, not names), but writing bytes to them fails with
    ``OSError(ENOSPC, "No space left on device")`` as write(2) does, through ``open``,
    ``Path.write_*``, ``os.fdopen`` and ``os.write``. ``at="fsync"``: writes succeed and
    ``os.fsync`` of such a file fails instead (delayed allocation, network file systems).
    Like the kernel's, the error has no file name. Returns the folder's real path. Writes
    that bypass Python's file functions (tensorstore under orbax) are not refused; an open
    descriptor's path is read from /proc (Linux only: the fixture skips elsewhere)."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("full_disk needs /proc/self/fd")
    real_open, real_write, real_fsync = io.open, os.write, os.fsync

    def install(folder, at: str = "write") -> str:
        assert at in ("write", "fsync"), at
        root = os.path.realpath(folder)

        def open_(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            return _FullFile(f) if at == "write" and _writes(mode) and _inside(root, file) else f

        def write(fd, data):
            if at == "write" and len(data) and _inside(root, fd):
                raise _no_space()
            return real_write(fd, data)

        def fsync(fd):
            fd = fd if isinstance(fd, int) else fd.fileno()
            if at == "fsync" and _inside(root, fd):
                raise _no_space()
            return real_fsync(fd)

        monkeypatch.setattr(io, "open", open_)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", fsync)
        return root

    return install


@pytest.fixture
def unwritable(monkeypatch):
    """``unwritable(folder)``: from then on ``folder`` and all below it are read-only to this
    process, as ``chmod -R a-w`` makes them for a user who is not root: creating, writing,
    renaming or removing a file or folder there raises ``PermissionError(EACCES, "Permission
    denied", path)`` (the kernel's error, naming the path), and ``os.access(path, W_OK)`` is
    False. Reading works. Returns the folder's real path."""
    real = {name: getattr(os, name) for name in ("open", "mkdir", "replace", "rename", "link", "unlink",
                                                   "remove", "rmdir", "access")}
    real_open = io.open

    def install(folder) -> str:
        root = os.path.realpath(folder)

        def refuse(path):
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

        def blocked(path, create: bool) -> bool:
            # the kernel looks the path up first: a missing parent (creating) or a missing
            # file (removing, renaming) is ENOENT, which the real call raises itself
            if isinstance(path, int) or not _inside(root, path):
                return False
            return os.path.lexists(path) or (create and os.path.isdir(os.path.dirname(os.path.abspath(path))))

        def open_(file, mode="r", *args, **kwargs):
            if _writes(mode) and blocked(file, create=True):
                raise refuse(file)
            return real_open(file, mode, *args, **kwargs)

        def os_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC) and blocked(path, create=True):
                raise refuse(path)
            return real["open"](path, flags, *args, **kwargs)

        def mkdir(path, *args, **kwargs):
            if not os.path.lexists(path) and blocked(path, create=True):
                raise refuse(path)
            return real["mkdir"](path, *args, **kwargs)  # an existing path: EEXIST

        def two_paths(name):
            def f(src, dst, *args, **kwargs):
                if blocked(src, create=False):
                    raise refuse(src)
                if os.path.lexists(src) and blocked(dst, create=True):
                    raise refuse(dst)
                return real[name](src, dst, *args, **kwargs)
            return f

        def one_path(name):
            def f(path, *args, **kwargs):
                if blocked(path, create=False):
                    raise refuse(path)
                return real[name](path, *args, **kwargs)
            return f

        def access(path, mode, *args, **kwargs):
            if mode & os.W_OK and _inside(root, path):
                return False
            return real["access"](path, mode, *args, **kwargs)

        monkeypatch.setattr(io, "open", open_)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(os, "mkdir", mkdir)
        for name in ("replace", "rename", "link"):
            monkeypatch.setattr(os, name, two_paths(name))
        for name in ("unlink", "remove", "rmdir"):
            monkeypatch.setattr(os, name, one_path(name))
        monkeypatch.setattr(os, "access", access)
        return root

    return install


@pytest.mark.parametrize("at", ["write", "fsync"])
def test_full_disk_refuses_data_where_asked_and_nowhere_else(full_disk, tmp_path, at):
    from resnet_limits.sweeps.folder import write_json

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir()
    (run / "old.json").write_text("{}\n")
    full_disk(run, at=at)
    with pytest.raises(OSError) as info:
        write_json(run / "config.json", {"a": 1})
    # the kernel's error names no file; the atomic write names the one it could not write
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(run / "config.json")
    # the atomic write left neither the file nor its temporary behind; the old file is whole
    assert sorted(p.name for p in run.iterdir()) == ["old.json"] and (run / "old.json").read_text() == "{}\n"
    if at == "write":
        with pytest.raises(OSError, match="No space left on device"):
            (run / "notes.md").write_text("text")
        with pytest.raises(OSError, match="No space left on device"):
            np.savez(run / "x.npz", a=np.zeros(3))
    (run / "sub").mkdir()  # names are still free
    elsewhere.mkdir()
    write_json(elsewhere / "config.json", {"a": 1})
    assert (elsewhere / "config.json").read_text() == '{\n "a": 1\n}\n'


def test_unwritable_folder_refuses_with_the_path(unwritable, tmp_path):
    from resnet_limits.sweeps.folder import check_out_dir, write_json

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}\n")
    unwritable(run)
    with pytest.raises(PermissionError) as info:
        write_json(run / "config.json", {"a": 1})
    assert info.value.errno == errno.EACCES and str(run) in info.value.filename
    with pytest.raises(PermissionError, match="Permission denied"):
        (run / "sub").mkdir()
    with pytest.raises(UsageError, match="permission denied"):
        check_out_dir(run)
    assert (run / "config.json").read_text() == "{}\n" and [p.name for p in run.iterdir()] == ["config.json"]
    write_json(tmp_path / "other.json", {})  # outside: as usual


# ------------------------------------------------------------ non-finite weights ----------


def _import(capsys, *argv):
    code = main(["import-weights", *map(str, argv)])
    return code, capsys.readouterr().err


def _network(L=30, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((L, d, d))).astype(np.float32), np.zeros((L, d), np.float32)


@pytest.mark.parametrize("tensor,word,layer", [("A", "nan", 17), ("b", "inf", 0), ("delta", "-inf", 29)])
def test_non_finite_npz_weights_are_refused_before_anything_is_written(tmp_path, capsys, tensor, word, layer):
    A, b = _network()
    delta = np.full(30, 0.1, np.float32)
    x = {"A": A, "b": b, "delta": delta}[tensor]
    x[(layer,) + (1,) * (x.ndim - 1)] = float(word)
    good = tmp_path / "src" / "a_good.npz"
    good.parent.mkdir()
    np.savez(good, A=_network(seed=1)[0], b=np.zeros((30, 4), np.float32), delta=np.full(30, 0.1, np.float32))
    bad = tmp_path / "src" / "b_bad.npz"
    np.savez(bad, A=A, b=b, delta=delta)
    out = tmp_path / "out"
    code, err = _import(capsys, tmp_path / "src", "--out", out)
    assert code == 2 and err.count("\n") == 1 and err.startswith("resnet-limits: error: "), err
    assert f"{bad}: {tensor} has a non-finite value ({word}) in layer {layer} of the network of depth 30;" in err
    assert "Traceback" not in err and not out.exists()
    out.mkdir()  # an existing empty folder stays empty
    assert _import(capsys, good, bad, "--out", out)[0] == 2 and list(out.iterdir()) == []


def test_non_finite_shared_delta_and_counts(tmp_path, capsys):
    A, b = _network(L=5)
    A[2, 0, 0] = A[3, 1, 1] = np.nan
    np.savez(tmp_path / "two.npz", A=A, b=b)
    code, err = _import(capsys, tmp_path / "two.npz", "--out", tmp_path / "out")
    assert code == 2
    assert "A has a non-finite value (nan) in layer 2 of the network of depth 5 (2 non-finite values in all)" in err
    np.savez(tmp_path / "delta.npz", A=_network(L=5)[0], b=b, delta=np.float32(np.inf))
    code, err = _import(capsys, tmp_path / "delta.npz", "--out", tmp_path / "out")
    assert code == 2 and "delta, shared by all layers of the network of depth 5, is not finite (inf)" in err
    assert not (tmp_path / "out").exists()


def test_non_finite_torch_weights_name_the_authors_file(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    A, b = _network()
    A[17, 2, 3] = np.nan
    w = tmp_path / "depth_030" / "weights"
    w.mkdir(parents=True)
    torch.save([torch.nn.Parameter(torch.tensor(a.T.copy())) for a in A], w / "A.p")
    torch.save([torch.nn.Parameter(torch.tensor(v)) for v in b], w / "b.p")
    torch.save(torch.nn.Parameter(torch.tensor([0.1])), w / "C.p")
    code, err = _import(capsys, tmp_path / "depth_030", "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1
    assert f"{w / 'A.p'}: A has a non-finite value (nan) in layer 17 of the network of depth 30;" in err
    assert not (tmp_path / "out").exists()


def test_write_run_refuses_non_finite_networks_from_python(tmp_path):
    from resnet_limits.models import ResNetParams
    from resnet_limits.weights import write_run

    A, b = _network(L=3)
    A2 = A.copy()
    A2[1, 0, 0] = np.inf
    nets = {3: ResNetParams(np.stack([A, A2]), np.stack([b, b]), np.full((2,), 0.1, np.float32))}
    with pytest.raises(UsageError, match=r"^s1\.npz: A has a non-finite value \(inf\) in layer 1 of network 1 of "
                                         r"depth 3;"):
        write_run(tmp_path / "out", nets, activation="tanh", delta_mode="shared", source="x",
                  depth_sources={3: ["s0.npz", "s1.npz"]})
    assert not (tmp_path / "out").exists()


# ------------------------------------------------- a damaged tensorflow-datasets copy -------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A real prepared tensorflow-datasets folder (ArrayRecord shards, made offline by a tiny
    builder) with MNIST's features: 4 x 4 x 1 uint8 ``image``, ``label``; ``(tfds, folder)``."""
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("array_record")

    class TinyImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(4, 4, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(40), "test": self._generate_examples(10)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"image": np.full((4, 4, 1), i, np.uint8), "label": i % 10}

    builder = TinyImages(data_dir=str(tmp_path_factory.mktemp("tfds")), file_format="array_record")
    builder.download_and_prepare()
    return tfds, Path(builder.data_dir)


@pytest.fixture
def tfds_copy(prepared, tmp_path, monkeypatch):
    """A fresh copy of the prepared folder that ``tfds.data_source(...)`` reads, whatever the
    name (no download); returns its train shard, to damage."""
    import shutil

    tfds, folder = prepared
    copy = tmp_path / "tensorflow_datasets" / "tiny_images" / "1.0.0"
    shutil.copytree(folder, copy)

    def data_source(name, split=None, download=True, **kwargs):
        return tfds.builder_from_directory(str(copy)).as_data_source(split=split)

    monkeypatch.setattr(tfds, "data_source", data_source)
    monkeypatch.setattr(data_mod, "_online", lambda host, timeout=5.0: pytest.fail("no network needed"))
    (shard,) = copy.glob("*-train.array_record-*")
    return shard


def test_intact_prepared_copy_reads(tfds_copy):
    got = data_mod.mnist_images()
    assert got.train_images.shape == (40, 4, 4) and got.test_images.shape == (10, 4, 4)
    # tfds shuffles: example i (an image of value i, label i % 10) is somewhere
    assert sorted(got.train_images[:, 0, 0]) == list(range(40))
    np.testing.assert_array_equal(got.train_labels, got.train_images[:, 0, 0] % 10)


def _zeroed(shard: Path):
    raw = bytearray(shard.read_bytes())
    raw[100:164] = bytes(64)  # inside the first chunk: its hash no longer matches
    shard.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "cut short", "missing"])
def test_damaged_prepared_copy_is_one_line_naming_the_folder(tfds_copy, damage):
    raw = tfds_copy.read_bytes()
    if damage == "zeroed":
        _zeroed(tfds_copy)
    elif damage == "truncated":
        tfds_copy.write_bytes(raw[: len(raw) // 2])  # array_record reads empty records
    elif damage == "cut short":
        tfds_copy.write_bytes(raw[:100])
    else:
        tfds_copy.unlink()
    with pytest.raises(UsageError) as info:
        data_mod.mnist_images()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"the tensorflow-datasets copy of mnist in {tfds_copy.parent} is damaged (train split: ")
    assert "delete that folder to download it again, or download t10k-images-idx3-ubyte.gz" in msg
    assert msg.endswith("pass --data-dir FOLDER")


def test_damaged_cifar10_copy_names_its_way_out(tfds_copy):
    _zeroed(tfds_copy)
    with pytest.raises(UsageError, match=r"^the tensorflow-datasets copy of cifar10 in .* is damaged \(train split: "
                                         r"RuntimeError: Corrupted .*; delete that folder to download it again, or "
                                         r"download .*cifar-10-binary.tar.gz.*--data-dir .*--mock-data N$"):
        data_mod.cifar10_images()


def test_prepared_copy_with_a_damaged_dataset_info_is_one_line(prepared, tmp_path, monkeypatch):
    tfds, _ = prepared
    folder = tmp_path / "mnist" / "3.0.1"
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text('{"name": "mnist", "vers')  # cut short
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path))  # where tfds.data_source looks
    monkeypatch.setattr(data_mod, "_online", lambda host, timeout=5.0: pytest.fail("no network needed"))
    with pytest.raises(UsageError) as info:
        data_mod.mnist_images()
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"the tensorflow-datasets copy of mnist in {folder} cannot be read (")
    assert "delete that folder to download it again, or download t10k-images-idx3-ubyte.gz" in msg


# ------------------------------------------------------- the CLI on a full disk ---------------

def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("resnet-limits: error: ") and "Traceback" not in err, err
    return err


def test_a_full_disk_during_a_sweep_is_one_line_and_the_rerun_completes(tmp_path, full_disk, monkeypatch, capsys):
    from resnet_limits.sweeps import fc

    out = tmp_path / "run"
    train = fc.train_seeds

    def train_then_fill(keys, depth, *args, **kw):
        result = train(keys, depth, *args, **kw)
        if depth == 3:  # the disk fills up while depth 3 trains
            full_disk(out)
        return result

    monkeypatch.setattr(fc, "train_seeds", train_then_fill)
    argv = ["sweep", "tanh-synthetic", "--out", str(out), "--depths", "2", "3", "--seeds", "1", "--epochs", "1",
            "--max-updates", "2", "--no-progress", "--devices", "1"]
    assert main(argv) == 2
    err = _one_error(capsys)
    assert f"cannot write {out / 'depths' / 'L00003.npz'}: No space left on device" in err
    assert "finished depths are kept, rerun the same command" in err
    kept = (out / "depths" / "L00002.npz").stat().st_mtime_ns
    assert not list(out.rglob("*.tmp")) and not (out / "depths" / "L00003.json").exists()
    monkeypatch.undo()  # space again
    assert main(argv) == 0
    assert (out / "depths" / "L00003.json").exists() and (out / "depths" / "L00002.npz").stat().st_mtime_ns == kept


def test_analyze_of_an_unwritable_run_is_one_line(tmp_path, unwritable, capsys):
    from resnet_limits.config import sweep_config
    from resnet_limits.sweeps import run_sweep

    run = tmp_path / "run"
    run_sweep(sweep_config("tanh-synthetic", depths=[2, 3, 4], seeds=1, epochs=1, max_updates=2), run, progress=False)
    unwritable(run)
    assert main(["analyze", str(run), "--no-progress"]) == 2
    err = _one_error(capsys)
    assert "cannot write " + str(run) in err and "Permission denied" in err
