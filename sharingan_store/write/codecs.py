"""Codec presets and storage-dtype conversions of the attention array.

The default pipeline (DESIGN.md §3) is Blosc zstd level 1 with bit-shuffle, followed by a
crc32c checksum so every chunk's corruption is detected on read. An optional lossy
``keepbits`` step (numcodecs ``BitRound``) zeroes low mantissa bits before compression.

Storage dtypes are ``"float16"`` (default), ``"float32"`` and ``"bfloat16"``. bfloat16 has
no numpy/zarr dtype: its raw bit pattern is stored as ``uint16`` and the ``attention``
array carries ``schema.STORAGE_DTYPE_ATTR = "bfloat16"``; :func:`decode_storage` turns it
back into float32.

Examples
--------
>>> spec = CodecSpec()
>>> spec.to_dict()
{'cname': 'zstd', 'clevel': 1, 'shuffle': 'bitshuffle', 'keepbits': None, 'checksum': True}
>>> CodecSpec.from_dict(spec.to_dict()) == spec
True
>>> [type(c).__name__ for c in spec.pipeline("float16")["compressors"]]
['BloscCodec', 'Crc32cCodec']
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec

from sharingan_store import schema

__all__ = [
    "CNAMES",
    "MANTISSA_BITS",
    "SHUFFLES",
    "CodecSpec",
    "bitround_torch",
    "decode_storage",
    "numpy_storage_dtype",
    "to_storage_numpy",
    "torch_storage_dtype",
    "validate_storage_dtype",
]

#: Blosc compressors accepted by :class:`CodecSpec`.
CNAMES: tuple[str, ...] = ("zstd", "lz4", "lz4hc", "blosclz", "zlib")
#: Blosc shuffle modes accepted by :class:`CodecSpec`.
SHUFFLES: tuple[str, ...] = ("noshuffle", "shuffle", "bitshuffle")
#: Explicit mantissa bits of each storage dtype (the upper bound of ``keepbits``).
MANTISSA_BITS: dict[str, int] = {"float16": 10, "float32": 23, "bfloat16": 7}

_NUMPY_DTYPES = {"float16": np.dtype("float16"), "float32": np.dtype("float32"),
                 "bfloat16": np.dtype("uint16")}
_TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
_BITROUND_WARNING = "Numcodecs codecs are not in the Zarr version 3 specification"


def validate_storage_dtype(storage_dtype: str) -> str:
    """Return ``storage_dtype`` if it is one of ``schema.STORAGE_DTYPES``, else raise.

    Examples
    --------
    >>> validate_storage_dtype("bfloat16")
    'bfloat16'
    """
    if storage_dtype not in schema.STORAGE_DTYPES:
        raise ValueError(
            f"storage dtype must be one of {schema.STORAGE_DTYPES}, got {storage_dtype!r}"
        )
    return storage_dtype


def numpy_storage_dtype(storage_dtype: str) -> np.dtype:
    """The numpy/zarr dtype that holds ``storage_dtype`` on disk (bfloat16 → ``uint16``).

    Examples
    --------
    >>> numpy_storage_dtype("bfloat16")
    dtype('uint16')
    """
    return _NUMPY_DTYPES[validate_storage_dtype(storage_dtype)]


def torch_storage_dtype(storage_dtype: str) -> torch.dtype:
    """The torch dtype a block is cast to before it leaves the device.

    Examples
    --------
    >>> torch_storage_dtype("float16")
    torch.float16
    """
    return _TORCH_DTYPES[validate_storage_dtype(storage_dtype)]


@dataclass(frozen=True)
class CodecSpec:
    """Compression of the attention chunks.

    Parameters
    ----------
    cname
        Blosc compressor, one of :data:`CNAMES`.
    clevel
        Blosc level, 0–9.
    shuffle
        Blosc shuffle, one of :data:`SHUFFLES`.
    keepbits
        ``None`` (lossless) or the number of mantissa bits kept by numcodecs ``BitRound``
        (round to nearest, ties to even). For normal numbers the rounding's relative error
        is at most ``2**-(keepbits + 1)`` of the stored value (tested); this adds to the
        storage cast's own error (``2**-11`` for float16). float16 subnormals
        (< ``2**-14``) get an absolute error of at most ``2**-(15 + keepbits)``. Not
        available for bfloat16 storage (numcodecs rounds only float arrays).
    checksum
        Append a crc32c codec so every chunk carries a checksum.

    Examples
    --------
    >>> CodecSpec(keepbits=7).pipeline("float16")["filters"]  # doctest: +ELLIPSIS
    (BitRound(...keepbits...7...),)
    >>> CodecSpec(shuffle="bad")
    Traceback (most recent call last):
    ...
    ValueError: shuffle must be one of ('noshuffle', 'shuffle', 'bitshuffle'), got 'bad'
    """

    cname: str = "zstd"
    clevel: int = 1
    shuffle: str = "bitshuffle"
    keepbits: int | None = None
    checksum: bool = True

    def __post_init__(self) -> None:
        if self.cname not in CNAMES:
            raise ValueError(f"cname must be one of {CNAMES}, got {self.cname!r}")
        if isinstance(self.clevel, bool) or not isinstance(self.clevel, int) or not 0 <= self.clevel <= 9:
            raise ValueError(f"clevel must be an int in 0..9, got {self.clevel!r}")
        if self.shuffle not in SHUFFLES:
            raise ValueError(f"shuffle must be one of {SHUFFLES}, got {self.shuffle!r}")
        if self.keepbits is not None and (
            isinstance(self.keepbits, bool) or not isinstance(self.keepbits, int) or not 0 <= self.keepbits <= 23
        ):
            raise ValueError(f"keepbits must be None or an int in 0..23, got {self.keepbits!r}")
        if not isinstance(self.checksum, bool):
            raise ValueError(f"checksum must be True or False, got {self.checksum!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the spec (stored in the array attrs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CodecSpec:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown CodecSpec keys {sorted(unknown)}; allowed: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**d)

    def check_storage_dtype(self, storage_dtype: str) -> None:
        """Raise ``ValueError`` if ``keepbits`` does not fit ``storage_dtype``."""
        validate_storage_dtype(storage_dtype)
        if self.keepbits is None:
            return
        if storage_dtype == "bfloat16":
            raise ValueError("keepbits is not supported with bfloat16 storage; use float16 or float32")
        if self.keepbits > MANTISSA_BITS[storage_dtype]:
            raise ValueError(
                f"keepbits must be <= {MANTISSA_BITS[storage_dtype]} for {storage_dtype}, got {self.keepbits}"
            )

    def pipeline(self, storage_dtype: str = "float16") -> dict[str, Any]:
        """zarr v3 codecs for ``storage_dtype``: ``filters``, ``serializer``, ``compressors``.

        Pass them to ``zarr.create_array``/``Group.create_array`` (with sharding they
        describe the inner chunks). The crc32c codec is always last.
        """
        self.check_storage_dtype(storage_dtype)
        filters: tuple[Any, ...] = ()
        if self.keepbits is not None and self.keepbits < MANTISSA_BITS[storage_dtype]:
            from zarr.codecs import BitRound

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_BITROUND_WARNING)
                filters = (BitRound(keepbits=self.keepbits),)
        blosc = BloscCodec(
            cname=self.cname, clevel=self.clevel, shuffle=self.shuffle,
            typesize=numpy_storage_dtype(storage_dtype).itemsize,
        )
        compressors: tuple[Any, ...] = (blosc, Crc32cCodec()) if self.checksum else (blosc,)
        return {"filters": filters, "serializer": BytesCodec(), "compressors": compressors}


def bitround_torch(x: torch.Tensor, keepbits: int) -> torch.Tensor:
    """numcodecs ``BitRound`` in torch, bit-identical, for float16/float32 tensors.

    The writer applies it before storage so the pyramid is pooled from exactly the values
    that the codec stores (BitRound is idempotent, so the codec then changes nothing).

    Examples
    --------
    >>> bitround_torch(torch.tensor([1.0 + 2**-10], dtype=torch.float16), 3).item()
    1.0
    """
    bits = {torch.float16: 10, torch.float32: 23}[x.dtype]
    if keepbits >= bits:
        return x
    idt = torch.int16 if x.dtype == torch.float16 else torch.int32
    b = x.view(idt).clone()
    maskbits = bits - keepbits
    mask = (-1 >> maskbits) << maskbits
    half_quantum1 = (1 << (maskbits - 1)) - 1
    b += ((b >> maskbits) & 1) + half_quantum1
    b &= mask
    return b.view(x.dtype)


def cast_storage(block: torch.Tensor, storage_dtype: str, keepbits: int | None = None) -> torch.Tensor:
    """Cast ``block`` to the storage dtype in torch, on its own device (bit-rounded if asked)."""
    out = block.to(torch_storage_dtype(storage_dtype))
    if keepbits is not None and storage_dtype != "bfloat16":
        out = bitround_torch(out, keepbits)
    return out


def storage_to_numpy(t: torch.Tensor, storage_dtype: str) -> np.ndarray:
    """A CPU tensor already in the storage dtype → numpy array of the on-disk dtype (no copy)."""
    if storage_dtype == "bfloat16":
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def to_storage_numpy(block: torch.Tensor, storage_dtype: str = "float16") -> np.ndarray:
    """Cast ``block`` to the on-disk representation of ``storage_dtype``, in torch.

    The cast runs in torch on the block's device (numpy's float32→float16 cast is ~64 MB/s).
    bfloat16 comes back as its ``uint16`` bit pattern.

    Examples
    --------
    >>> to_storage_numpy(torch.tensor([0.5, 1.0]), "bfloat16")
    array([16128, 16256], dtype=uint16)
    >>> to_storage_numpy(torch.tensor([0.5]), "float16").dtype
    dtype('float16')
    """
    return storage_to_numpy(cast_storage(block, storage_dtype).cpu(), storage_dtype)


def _decode_numpy(a: np.ndarray, storage_dtype: str) -> np.ndarray:
    if storage_dtype == "bfloat16":
        return (np.asarray(a).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(a, dtype=np.float32)


def decode_storage(arr: Any, storage_dtype: str) -> Any:
    """Stored values (numpy or dask) → float32 of the same shape; lazy for dask.

    Examples
    --------
    >>> decode_storage(np.array([16128, 16256], dtype=np.uint16), "bfloat16")
    array([0.5, 1. ], dtype=float32)
    >>> import dask.array as dsa
    >>> decode_storage(dsa.from_array(np.array([16128], dtype=np.uint16)), "bfloat16").compute()
    array([0.5], dtype=float32)
    """
    validate_storage_dtype(storage_dtype)
    if hasattr(arr, "map_blocks") and hasattr(arr, "dask"):
        return arr.map_blocks(_decode_numpy, storage_dtype, dtype=np.float32)
    return _decode_numpy(arr, storage_dtype)
