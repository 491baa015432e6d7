"""Particle images from .mrcs/.mrc stacks, .txt lists of stacks, .star and .cs files.

`open_images` gives an `ImageSource`: `len()`, `.D`, `.apix`, and `src[i | slice | array]`
-> float32 [n, D, D]. Lazy sources read the requested images from the files on each access,
one positioned read per contiguous run of images (bounded memory, any size, and no memory map
whose touched pages would count as the process's resident memory); eager ones load everything
once. Images holding NaN/Inf raise an error naming the stack and the image when they are read.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from cryoscape.core.errors import InputFileError
from cryoscape.core.io.mrc import read_mrc_header
from cryoscape.core.io.paths import resolve

MAX_READ = 1 << 26  # bytes per read call: bounds the temporaries of non-float32 stacks


class ImageSource:
    """Images gathered from one or more stacks: particle k is image `image_index[k]`
    (0-based) of stack `stacks[file_index[k]]`."""

    def __init__(self, stacks: list, file_index, image_index, apix: float | None = None,
                 lazy: bool = True, referrer: str | os.PathLike | None = None,
                 expected_D: int | None = None, headers: list | None = None):
        self.stacks = [str(s) for s in stacks]
        self.file_index = np.asarray(file_index, dtype=np.int64)
        self.image_index = np.asarray(image_index, dtype=np.int64)
        self.referrer = str(referrer) if referrer is not None else None
        self._array: np.ndarray | None = None
        # headers only: a .star/.cs over thousands of stacks opens without reading an image
        headers = headers or [read_mrc_header(s) for s in self.stacks]
        self.D = self._check(headers, expected_D)
        self.apix = float(apix) if apix is not None else (headers[0].apix if headers else 1.0)
        # (byte offset of the data, dtype) per stack: all a lazy source keeps, so it pickles
        # (e.g. to worker processes) without image data or open files
        self._layout = [(h.data_offset, h.dtype) for h in headers]
        if not lazy:
            self._array = self._gather(np.arange(len(self)))

    @classmethod
    def from_array(cls, images, apix: float = 1.0) -> ImageSource:
        """An in-memory source over an array [N, D, D]."""
        self = cls.__new__(cls)
        a = np.asarray(images, dtype=np.float32)
        self.stacks, self.referrer, self._layout = ["<array>"], None, []
        self.file_index = np.zeros(len(a), dtype=np.int64)
        self.image_index = np.arange(len(a), dtype=np.int64)
        self._array, self.D, self.apix = a, int(a.shape[-1]), float(apix)
        return self

    def _check(self, headers, expected_D) -> int:
        sizes = []
        for s, h in zip(self.stacks, headers):
            shape = h.shape if len(h.shape) == 3 else (1, *h.shape)
            if shape[1] != shape[2]:
                raise InputFileError(s, f"images are not square ({shape[2]} x {shape[1]})")
            sizes.append((shape[0], shape[1]))
        boxes = {b for _, b in sizes}
        who = self.referrer or (self.stacks[0] if self.stacks else "<images>")
        if len(boxes) > 1:
            raise InputFileError(who, f"stacks have different box sizes {sorted(boxes)}")
        D = boxes.pop() if boxes else int(expected_D or 0)
        if expected_D is not None and int(expected_D) != D:
            raise InputFileError(who, f"box size {expected_D} stated, but the stack "
                                      f"{self.stacks[0]} holds {D} x {D} images")
        counts = np.array([n for n, _ in sizes], dtype=np.int64)
        if len(self.file_index):
            over = self.image_index >= counts[self.file_index]
            if over.any():
                k = int(np.argmax(over))
                f = self.stacks[self.file_index[k]]
                raise InputFileError(who, f"particle {k} refers to image "
                                          f"{self.image_index[k] + 1} of {f}, which holds only "
                                          f"{counts[self.file_index[k]]} images")
        return int(D)

    def __len__(self) -> int:
        return len(self.file_index)

    def _gather(self, ks: np.ndarray) -> np.ndarray:
        """Particles `ks` read from their stacks, float32 [len(ks), D, D]."""
        out = np.empty((len(ks), self.D, self.D), dtype=np.float32)
        files = self.file_index[ks]
        order = np.argsort(files, kind="stable")
        for sel in np.split(order, np.flatnonzero(np.diff(files[order])) + 1):
            if len(sel):
                self._read(int(files[sel[0]]), self.image_index[ks[sel]], out, sel)
        self._check_finite(out, ks)
        return out

    def _read(self, f: int, idx: np.ndarray, out: np.ndarray, sel: np.ndarray) -> None:
        """Images `idx` of stack `f` into out[sel]: one read per contiguous run of images
        (straight into `out` when both run in order)."""
        offset, dtype = self._layout[f]
        size = self.D * self.D * dtype.itemsize
        if np.all(np.diff(idx) > 0) and np.all(np.diff(sel) == 1):
            images, target, inverse = idx, out[sel[0]:sel[0] + len(sel)], None
        else:
            images, inverse = np.unique(idx, return_inverse=True)
            target = np.empty((len(images), self.D, self.D), dtype=np.float32)
        step = max(1, MAX_READ // size)
        starts = np.concatenate([[0], np.flatnonzero(np.diff(images) != 1) + 1])
        ends = np.append(starts[1:], len(images))
        native = dtype == np.float32
        try:
            with open(self.stacks[f], "rb", buffering=0) as fh:
                for a, b in zip(starts, ends):
                    for i in range(a, b, step):
                        j = min(i + step, b)
                        buf = target[i:j] if native else np.empty((j - i) * size, np.uint8)
                        _read_at(fh, offset + int(images[i]) * size, buf, self.stacks[f])
                        if not native:
                            target[i:j] = buf.view(dtype).reshape(j - i, self.D, self.D)
        except OSError as e:
            raise InputFileError(self.stacks[f], f"cannot read the stack ({e.strerror})") from None
        if inverse is not None:
            out[sel] = target[inverse.reshape(-1)]

    def _check_finite(self, out: np.ndarray, ks: np.ndarray) -> None:
        bad = ~np.isfinite(out).reshape(len(out), -1).all(axis=1)
        if bad.any():
            j = int(np.argmax(bad))
            k = int(ks[j])
            raise InputFileError(self.stacks[self.file_index[k]],
                                 f"image {self.image_index[k] + 1} (1-based; particle {k}) "
                                 "contains NaN or infinite values")

    def _indices(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return np.arange(len(self))[[int(idx)]]
        if isinstance(idx, slice):
            return np.arange(len(self))[idx]
        ks = np.asarray(idx)
        if ks.dtype == bool:
            ks = np.nonzero(ks)[0]
        return np.arange(len(self))[ks.astype(np.int64)]

    def __getitem__(self, idx) -> np.ndarray:
        ks = self._indices(idx)
        if self._array is not None:
            return self._array[ks]
        return self._gather(ks)

    def subset(self, ind) -> ImageSource:
        """A source over the particles at `ind` (no data is read)."""
        ks = self._indices(ind)
        new = ImageSource.__new__(ImageSource)
        new.__dict__.update(self.__dict__)
        new.file_index, new.image_index = self.file_index[ks], self.image_index[ks]
        new._array = None if self._array is None else self._array[ks]
        if self._array is not None and self.stacks == ["<array>"]:
            new.file_index = np.zeros(len(ks), dtype=np.int64)
            new.image_index = np.arange(len(ks), dtype=np.int64)
        return new

    def chunks(self, size: int = 1000):
        """Yield (start, images [<=size, D, D]) over the whole source."""
        for i in range(0, len(self), size):
            yield i, self[i:i + size]


def _read_at(fh, pos: int, buf: np.ndarray, path: str) -> None:
    """Fill `buf` with the bytes of open file `fh` from byte `pos`."""
    view = memoryview(buf).cast("B")
    fh.seek(pos)
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            raise InputFileError(path, f"truncated MRC file: the data ends at byte {pos + got},"
                                       f" {len(view) - got} bytes short of the images read")
        got += n


def stack_box(name: str, referrer: str | os.PathLike, datadir=None) -> int | None:
    """The box size of the stack that `referrer` names `name`, or None if it is not found."""
    try:
        return int(read_mrc_header(resolve(name, referrer, datadir)).shape[-1])
    except InputFileError:
        return None


def star_box_or_stack(star, datadir=None) -> int | None:
    """A star file's box size: its rlnImageSize, else the first stack's header, else None.
    Raises if the particles have several box sizes."""
    from cryoscape.core.io.star import star_box, star_image_names
    box = common_value(star_box(star), "box size", star.path)
    if box is not None or not len(star) or "rlnImageName" not in star.particles:
        return box
    return stack_box(star_image_names(star)[0][0], star.path, datadir)


def _txt_stacks(path: Path, datadir) -> list[Path]:
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(path, f"cannot read the list of stacks ({e})") from None
    names = [ln for ln in lines if ln and not ln.startswith("#")]
    if not names:
        raise InputFileError(path, "lists no image stacks")
    return [resolve(n, path, datadir) for n in names]


def open_images(path: str | os.PathLike, lazy: bool = False,
                datadir: str | os.PathLike | None = None) -> ImageSource:
    """Images of a .mrcs/.mrc stack, a .txt list of stacks (relative to the .txt), a .star or
    a .cs file (stacks resolved relative to that file or `datadir`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputFileError(path, "file not found")
    if suffix in (".mrcs", ".mrc", ".st", ".map"):
        h = read_mrc_header(path)
        n = h.shape[0] if len(h.shape) == 3 else 1
        return ImageSource([path], np.zeros(n), np.arange(n), lazy=lazy)
    if suffix == ".txt":
        stacks = _txt_stacks(path, datadir)
        headers = [read_mrc_header(s) for s in stacks]
        counts = [(h.shape[0] if len(h.shape) == 3 else 1) for h in headers]
        fi = np.repeat(np.arange(len(stacks)), counts)
        ii = np.concatenate([np.arange(c) for c in counts])
        return ImageSource(stacks, fi, ii, lazy=lazy, referrer=path, headers=headers)
    if suffix == ".star":
        from cryoscape.core.io.star import read_star
        return star_images(read_star(path), lazy=lazy, datadir=datadir)
    if suffix == ".cs":
        from cryoscape.core.io.cs import read_cs
        return cs_images(read_cs(path), path, lazy=lazy, datadir=datadir)
    raise InputFileError(path, "unknown image format (expected .mrcs, .mrc, .txt, .star, .cs)")


def common_value(values, what: str, who, strict: bool = True) -> float | None:
    """The one value all particles share (or the first one, if not `strict`)."""
    if values is None or len(values) == 0:
        return None
    u = np.unique(values)
    if len(u) > 1 and not strict:
        return np.asarray(values)[0].item()
    if len(u) > 1:
        raise InputFileError(who, f"particles have different {what}s {u[:5].tolist()}: "
                                  "select one optics group first")
    return u[0].item()


def star_images(star, lazy: bool = False, datadir=None) -> ImageSource:
    """The images a read StarFile names."""
    from cryoscape.core.io.star import star_apix, star_box, star_image_names
    names, fi, ii = star_image_names(star)
    stacks = [resolve(n, star.path, datadir) for n in names]
    D = common_value(star_box(star), "box size", star.path)
    apix = common_value(star_apix(star), "pixel size", star.path, strict=False)
    return ImageSource(stacks, fi, ii, apix=apix, lazy=lazy, referrer=star.path,
                       expected_D=D)


def cs_images(arr: np.ndarray, path, lazy: bool = False, datadir=None) -> ImageSource:
    """The images a read cryoSPARC array names."""
    from cryoscape.core.io.cs import cs_box, cs_image_names
    names, fi, ii = cs_image_names(arr, path)
    stacks = [resolve(n, path, datadir) for n in names]
    D = common_value(cs_box(arr), "box size", path)
    apix = common_value(arr["blob/psize_A"] if "blob/psize_A" in arr.dtype.names else None,
                   "pixel size", path, strict=False)
    return ImageSource(stacks, fi, ii, apix=apix, lazy=lazy, referrer=path, expected_D=D)
