"""Where a run's draws go as its chunks finish: memory, or files on disk read lazily.

Draws arrive per group of chains and chunk: per site an array ``(chains_in_group, n, *shape)``
and per sample statistic ``(chains_in_group, n)``. :class:`MemoryStore` keeps them in lists
and joins them at the end. :class:`DiskStore` writes each chunk at once to its own file
(``draws/g<group>-<first>-<end>.npz``, atomically: a file is complete or absent), and when the
run stops streams them, one chunk in memory at a time, into ``draws.nc``: netCDF in ArviZ's
InferenceData layout (groups ``posterior`` and ``sample_stats``, dims ``chain``, ``draw``,
``<site>_dim_<k>``), which ``arviz.from_netcdf`` opens and :class:`LazySamples` reads lazily:
a run whose draws do not fit in memory only ever holds one chunk. (A netCDF file per chunk
was measured at 27 ms a write, the pure-Python bookkeeping of h5netcdf; an npz file at 1 ms.)

Site names are stored percent-encoded where netCDF would refuse or misread them (see
:func:`encode`: ``a/b`` is the variable ``a%2Fb``) and decoded back by :class:`LazySamples`.

``draws.nc`` holds every draw on disk and is replaced when a later call on the checkpoint
makes more, while results of earlier calls may still read it: each :class:`LazyArray` reads
only the first draws of each chain, as many as its call asked for. Those are the
same in every rewrite: a checkpoint makes each draw once, and the chunk files that hold them
are kept (a draw that had to be made again, its file damaged, is made from the same state).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

_CHUNK = re.compile(r"g(\d+)-(\d+)-(\d+)\.npz$")
GROUPS = ("posterior", "sample_stats")
_COORDINATES = ("chain", "draw")  # variables of every group: a site of that name is encoded
_DIM = re.compile(r"_dim_\d+$")  # how dimension names end: a site name that does is encoded
FORMAT = 2  # of draws.nc (2: site names encoded); a draws.nc of another format is joined again


def _escape(c: str) -> str:
    return "".join(f"%{b:02X}" for b in c.encode("utf-8"))


def encode(name: str) -> str:
    """``name`` (a site or statistic) as a netCDF variable name: ``%``-escaped (as in URLs)
    where netCDF would refuse or misread it, else as it is (ArviZ shows it).

    Escaped: ``%`` itself (so that :func:`decode` is exact); what netCDF's naming rules refuse:
    ``/`` (HDF5 reads it as a group path: ``a/b`` is variable ``b`` of a group ``a``), control
    characters, a first character that is ASCII but neither a letter, a digit nor ``_``
    (``.`` alone is HDF5's name of the group itself), trailing white space; the first
    character of ``chain`` and ``draw`` (each group's coordinates) and the ``_`` before
    ``dim_<k>`` of a name that ends so (dimensions are named ``<site>_dim_<k>``, and a
    variable named as a dimension is taken for its coordinate). The empty name is ``%``.
    """
    if name == "":
        return "%"
    out = []
    for i, c in enumerate(name):
        ascii_ = ord(c) < 0x80
        refused = (c in "%/" or ord(c) < 0x20 or ord(c) == 0x7F
                   or (i == 0 and ascii_ and not (c.isalnum() or c == "_"))
                   or (i == len(name) - 1 and ascii_ and c.isspace()))
        out.append(_escape(c) if refused else c)
    s = "".join(out)
    if s in _COORDINATES:
        s = _escape(s[0]) + s[1:]
    m = _DIM.search(s)
    if m:
        s = s[:m.start()] + _escape("_") + s[m.start() + 1:]
    return s


def decode(name: str) -> str:
    """The name that :func:`encode` made ``name`` of."""
    from urllib.parse import unquote

    return "" if name == "%" else unquote(name, errors="strict")


def _stored(a: np.ndarray) -> np.ndarray:
    """netCDF has no booleans: they are stored as int8 marked ``ppl_bool`` (read back as bool)."""
    return a.astype(np.int8) if a.dtype == bool else a


def _variable(g, site, v, **options):
    """Create the variable of ``site`` (its dims first) in group ``g``; returns it."""
    stored = _stored(np.asarray(v))
    name = encode(site)
    dims = ("chain", "draw") + tuple(f"{name}_dim_{k}" for k in range(stored.ndim - 2))
    for d, size in zip(dims[2:], stored.shape[2:]):
        if d not in g.dimensions:
            g.dimensions[d] = size
    var = g.create_variable(name, dims, stored.dtype, **options)
    if np.asarray(v).dtype == bool:
        var.attrs["ppl_bool"] = 1
    return var


class MemoryStore:
    """Draws kept in memory, chunk by chunk, per group; joined by :meth:`arrays`."""

    def __init__(self, num_groups: int):
        self.parts = [[] for _ in range(num_groups)]

    def count(self, group: int) -> int:
        return sum(next(iter(p[0].values())).shape[1] for p in self.parts[group] if p[0])

    def append(self, group: int, draws: dict, stats: dict) -> None:
        self.parts[group].append((draws, stats))

    def arrays(self, limit=None):
        """``(samples, stats)``: per site / statistic an array (chains, draws, ...), the
        groups joined along chains (the first ``limit`` draws of each chain if given)."""
        def join(index):
            per_group = []
            for parts in self.parts:
                names = parts[0][index].keys() if parts else ()
                per_group.append({k: np.concatenate([p[index][k] for p in parts], axis=1) for k in names})
            names = per_group[0].keys() if per_group else ()
            return {k: np.concatenate([g[k][:, :limit] for g in per_group], axis=0) for k in names}

        return join(0), join(1)


def _write(path: Path, draws: dict, stats: dict) -> None:
    """One chunk's draws and statistics in an npz file, atomically."""
    arrays = {**{f"posterior/{k}": np.asarray(v) for k, v in draws.items()},
              **{f"sample_stats/{k}": np.asarray(v) for k, v in stats.items()}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path):
    """``(draws, stats)`` of one chunk file."""
    out = ({}, {})
    with np.load(path) as f:
        for key in f.files:
            group, name = key.split("/", 1)
            out[GROUPS.index(group)][name] = f[key]
    return out


class DiskStore:
    """Draws streamed to ``directory/draws/`` (one file per group and chunk) and joined into
    ``directory/draws.nc`` (netCDF) by :meth:`consolidate`.

    Args:
      directory: the checkpoint directory.
      chains_per_group: chains in each group (group g holds chains g*k .. g*k + k - 1).
    """

    def __init__(self, directory, num_groups: int, chains_per_group: int):
        self.directory = Path(directory)
        self.chunks = self.directory / "draws"
        self.chunks.mkdir(parents=True, exist_ok=True)
        self._no_draws = [None] * num_groups  # a chunk of warmup's (draws, stats): 0 draws, the sites' shapes
        self.num_groups, self.chains_per_group = num_groups, chains_per_group

    def _files(self, group: int):
        files = []
        for p in self.chunks.glob(f"g{group}-*.npz"):
            m = _CHUNK.search(p.name)
            if m:
                files.append((int(m.group(2)), int(m.group(3)), p))
        return sorted(files)

    def count(self, group: int) -> int:
        """Draws of the group on disk, contiguous from 0."""
        n = 0
        for lo, hi, _ in self._files(group):
            if lo != n:
                break
            n = hi
        return n

    def append(self, group: int, draws: dict, stats: dict) -> None:
        n = next(iter(draws.values())).shape[1] if draws else next(iter(stats.values())).shape[1]
        if n == 0:
            self._no_draws[group] = (draws, stats)
            return
        lo = self.count(group)
        _write(self.chunks / f"g{group}-{lo:09d}-{lo + n:09d}.npz", draws, stats)

    def no_draws(self):
        """``(samples, stats)`` of 0 draws per chain, shaped as the run's sites (a run stopped
        before its first draw has nothing on disk to join), or None if no chunk ran here."""
        if any(parts is None for parts in self._no_draws):
            return None
        return tuple({k: np.concatenate([np.asarray(parts[i][k]) for parts in self._no_draws], axis=0)
                      for k in self._no_draws[0][i]} for i in (0, 1))

    def truncate(self, group: int, count: int) -> None:
        """Forget the group's draws from ``count`` on (written after the state resumed from)."""
        for lo, hi, p in self._files(group):
            if hi > count:
                p.unlink(missing_ok=True)

    def verify(self, group: int) -> int:
        """Drop the group's files that cannot be read and those after the first gap; returns
        the draws left (contiguous from 0)."""
        n = 0
        for lo, hi, p in self._files(group):
            ok = lo == n
            if ok:
                try:
                    _read(p)
                except Exception:  # noqa: BLE001 - a damaged file: its draws are made again
                    ok = False
            if ok:
                n = hi
            else:
                p.unlink(missing_ok=True)
        return n

    def consolidate(self, limit=None) -> Path:
        """Join every group's chunk files into ``draws.nc`` (the first ``limit`` draws per
        chain), one chunk in memory at a time. Returns its path."""
        import h5netcdf

        counts = [self.count(g) for g in range(self.num_groups)]
        total = min(counts) if limit is None else min(min(counts), limit)
        chains = self.num_groups * self.chains_per_group
        target = self.directory / "draws.nc"
        stamp = self.directory / "draws.nc.json"  # what draws.nc holds: joined again only if stale
        files = [p.name for g in range(self.num_groups) for _, _, p in self._files(g)]
        key = json.dumps({"draws": total, "files": files, "format": FORMAT})
        if target.exists() and stamp.exists() and stamp.read_text() == key:
            return target
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        os.close(fd)
        try:
            with h5netcdf.File(tmp, "w") as f:
                created = {}
                for g in range(self.num_groups):
                    for lo, hi, p in self._files(g):
                        if lo >= total:
                            break
                        draws, stats = _read(p)
                        take = min(hi, total) - lo
                        c0 = g * self.chains_per_group
                        for name, values in zip(GROUPS, (draws, stats)):
                            grp = created.get(name) or self._create(f, name, values, chains, total)
                            created[name] = grp
                            for site, v in values.items():
                                grp.variables[encode(site)][c0:c0 + v.shape[0], lo:lo + take] = _stored(v[:, :take])
            os.replace(tmp, target)
            stamp.write_text(key)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @staticmethod
    def _create(f, name, values, chains, total):
        g = f.create_group(name)
        g.dimensions["chain"], g.dimensions["draw"] = chains, total
        g.create_variable("chain", ("chain",), data=np.arange(chains))
        g.create_variable("draw", ("draw",), data=np.arange(total))
        for site, v in values.items():
            chunk = (1, max(1, min(total, 4096))) + tuple(min(s, 64) for s in np.shape(v)[2:])
            _variable(g, site, v, chunks=chunk)
        return g


def _within(index, shape):
    """``index`` into an array of ``shape`` as the same index into a variable that holds more
    draws (axis 1) than ``shape[1]``: the index of each axis as it is, but the draws' made
    relative to the first ``shape[1]``. None where ``index`` is not made of integers, slices
    (of positive step) and ``...``: such an index is applied to the draws read."""
    parts = index if isinstance(index, tuple) else (index,)
    if any(not (p is Ellipsis or isinstance(p, slice) or
                (isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_)))) for p in parts):
        return None
    dots = [i for i, p in enumerate(parts) if p is Ellipsis]
    if len(dots) > 1:
        return None
    if dots:
        i = dots[0]
        parts = parts[:i] + (slice(None),) * (len(shape) - len(parts) + 1) + parts[i + 1:]
    if len(parts) > len(shape):
        return None
    parts = list(parts) + [slice(None)] * (len(shape) - len(parts))
    n, d = shape[1], parts[1]
    if isinstance(d, slice):
        start, stop, step = d.indices(n)
        if step < 0:
            return None
        parts[1] = slice(start, max(start, stop), step)
    else:
        if not -n <= d < n:
            raise IndexError(f"index {d} is out of bounds for axis 1 with size {n}")
        parts[1] = int(d) % n
    return tuple(parts)


class LazyArray:
    """An array in a netCDF file, read when used: slicing reads the slice; anything else
    (``np.asarray``, ``.mean()``, arithmetic) reads the whole array.

    It is the first ``shape[1]`` draws of each chain of the variable ``name``: the file may
    since have been replaced by one of more draws (a later call on the checkpoint, see the
    module docstring), of which it reads only those, the draws it was made with. A file that
    now holds fewer is refused with an error, never read as another array.
    """

    def __init__(self, path: Path, group: str, name: str, shape, dtype):
        self.path, self.group, self.name = path, group, name
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        import h5netcdf

        with h5netcdf.File(self.path, "r") as f:
            var = f.groups[self.group].variables[self.name]
            held, n = var.shape[1], self.shape[1]
            if held < n:
                raise ValueError(
                    f"{self.path} now holds {held} draws per chain, fewer than the {n} of this result: some of "
                    f"its chunk files were damaged and a later call on the checkpoint wrote it again. Call "
                    f"ppl.infer again with num_samples={n} on that checkpoint to make them again.")
            if held == n:
                out = np.asarray(var[index])
            else:
                within = _within(index, self.shape)
                out = np.asarray(var[within]) if within is not None else np.asarray(var[:, :n])[index]
        return out.astype(bool) if self.dtype == bool else out

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __getattr__(self, attr):
        if attr.startswith("__"):  # numpy's protocol probes: only __array__ is offered
            raise AttributeError(attr)
        return getattr(np.asarray(self), attr)

    def __repr__(self):
        return f"LazyArray({self.name}, shape={self.shape}, dtype={self.dtype}, file={self.path})"

    # arithmetic reads the array
    def _binary(op):
        return lambda self, other: op(np.asarray(self), other)

    __add__, __sub__, __mul__, __truediv__ = (_binary(np.add), _binary(np.subtract),
                                              _binary(np.multiply), _binary(np.true_divide))
    __radd__, __rmul__ = __add__, __mul__
    __lt__, __le__, __gt__, __ge__ = (_binary(np.less), _binary(np.less_equal), _binary(np.greater),
                                      _binary(np.greater_equal))


class LazySamples(Mapping):
    """Site -> :class:`LazyArray` of a consolidated ``draws.nc`` group, by the sites' own
    names (decoded, see :func:`encode`).

    Args:
      path: the ``draws.nc`` file.
      group: ``"posterior"`` or ``"sample_stats"``.
      draws: the first draws of each chain it is (default: those the file holds now). Later
        rewrites of the file, of more draws, do not change it (see :class:`LazyArray`).
    """

    def __init__(self, path, group: str = "posterior", draws=None):
        import h5netcdf

        self.path, self.group = Path(path), group
        self._arrays = {}
        with h5netcdf.File(self.path, "r") as f:
            for name, var in f.groups[group].variables.items():
                if name in _COORDINATES:
                    continue
                dtype = bool if "ppl_bool" in var.attrs else var.dtype
                shape = tuple(var.shape)
                if draws is not None:
                    if draws > shape[1]:
                        raise ValueError(f"{self.path} holds {shape[1]} draws per chain, fewer than the {draws} "
                                         f"asked for.")
                    shape = shape[:1] + (int(draws),) + shape[2:]
                self._arrays[decode(name)] = LazyArray(self.path, group, name, shape, dtype)

    def __getitem__(self, name):
        return self._arrays[name]

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self):
        return len(self._arrays)
