"""The sampler's full readings, kept compact in the store (record/readings.py) and unpacked when asked.

A reading (record/sampler.py ``Sample``, its ``CgroupState``) holds memory.stat as a dict: on
cgroup v1 about 40 keys, each its own string object (parsed from the file), and their values.
Measured with tracemalloc at 2000 watched cgroups (bench/lean_breakdown.py): 4,000 readings held
17.6 MB through those dicts alone (3.8 KB a reading), out of 35 MB of Python objects. Packed, a
dict of ints is one array of int64 (8 bytes a value) and a key tuple shared by every reading with
the same keys (one per kernel and hierarchy level); a dict of floats (PSI) an array of doubles.
``unpack`` gives back an equal reading, a new one each time (a caller changing it changes no
other's).
"""

from __future__ import annotations

import array
import dataclasses
from typing import Dict, Tuple

#: key tuples shared between readings; bounded (a kernel prints a few key sets; past this they are
#: not shared, only still packed)
MAX_KEY_SETS = 256
_key_sets: Dict[Tuple[str, ...], Tuple[str, ...]] = {}
_fields: Dict[type, Tuple[str, ...]] = {}
_init_only: Dict[type, bool] = {}


class _Dict:
    """A dict packed: its keys (a shared tuple) and values (array 'q' or 'd', in the keys' order)."""

    __slots__ = ("keys", "values")

    def __init__(self, keys: Tuple[str, ...], values: array.array):
        self.keys, self.values = keys, values

    def unpack(self) -> dict:
        return dict(zip(self.keys, self.values))


def _shared(keys: Tuple[str, ...]) -> Tuple[str, ...]:
    got = _key_sets.get(keys)
    if got is not None:
        return got
    if len(_key_sets) < MAX_KEY_SETS:
        _key_sets[keys] = keys
    return keys


def _pack_value(v):
    if type(v) is not dict or not v:
        return v
    vals = list(v.values())
    try:
        arr = array.array("q", vals)  # memory.stat, memory.events: ints
    except (TypeError, OverflowError):  # a float (PSI), or past int64
        if not all(type(x) is float for x in vals):
            return v  # mixed or other types, or too large: kept as it is
        arr = array.array("d", vals)
    else:
        if any(type(x) is not int for x in vals):  # a bool (or an int subclass) would come back an int
            return v
    return _Dict(_shared(tuple(v)), arr)


def _names(cls: type) -> Tuple[str, ...]:
    names = _fields.get(cls)
    if names is None:
        names = _fields[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _packable(v) -> bool:
    """A dataclass instance built back by its __init__ alone (every field an init field)."""
    cls = type(v)
    ok = _init_only.get(cls)
    if ok is None:
        ok = _init_only[cls] = dataclasses.is_dataclass(cls) and all(f.init for f in dataclasses.fields(cls))
    return ok


class _Record:
    """A dataclass instance packed: its class and its fields' values in order, dicts packed."""

    __slots__ = ("cls", "values")

    def __init__(self, obj):
        self.cls = type(obj)
        self.values = tuple(_pack_value(getattr(obj, n)) for n in _names(self.cls))

    def unpack(self):
        return self.cls(**{n: (v.unpack() if type(v) is _Dict else v) for n, v in zip(_names(self.cls), self.values)})


class PackedSample:
    """One full reading as the store keeps it: its time and pids at hand, the rest packed."""

    __slots__ = ("t_ns", "pids", "_cls", "_rest")

    def __init__(self, sample):
        self.t_ns = sample.t_ns
        self.pids = sample.pids
        self._cls = type(sample)
        rest = []
        for n in _names(self._cls):
            if n in ("t_ns", "pids"):
                continue
            v = getattr(sample, n)
            rest.append(_Record(v) if _packable(v) else v)
        self._rest = tuple(rest)

    def unpack(self):
        kw, rest = {}, iter(self._rest)
        for n in _names(self._cls):
            if n in ("t_ns", "pids"):
                kw[n] = getattr(self, n)
            else:
                v = next(rest)
                kw[n] = v.unpack() if type(v) is _Record else v
        return self._cls(**kw)


def pack(sample) -> PackedSample:
    return PackedSample(sample)
