"""numpy / torch adapters: tensors in (Put), buffers out (GetToDevice), without copies
where the memory is already right. torch is optional and imported only when a torch
tensor shows up (or a CUDA output is asked for)."""

from __future__ import annotations

import sys

import numpy as np

from .errors import InvalidArgument

# Container dtype codes (common/kv_shape.h).
BF16, FP16, FP32 = 1, 2, 3
DTYPE_NAMES = {BF16: "bf16", FP16: "fp16", FP32: "fp32"}
DTYPE_CODES = {v: k for k, v in DTYPE_NAMES.items()}
DTYPE_SIZES = {BF16: 2, FP16: 2, FP32: 4}
# bf16 travels in numpy as uint16 (numpy has no bfloat16), as in adaptcache._codec.
NUMPY_OF = {BF16: np.dtype(np.uint16), FP16: np.dtype(np.float16), FP32: np.dtype(np.float32)}


def torch_module():
    """The torch module when the process already imported it or it is installed, else None."""
    t = sys.modules.get("torch")
    if t is not None:
        return t
    try:
        import torch  # noqa: PLC0415  (optional dependency)
    except ImportError:
        return None
    return torch


def is_torch(x) -> bool:
    t = sys.modules.get("torch")  # a torch tensor implies torch is imported
    return t is not None and isinstance(x, t.Tensor)


_DTYPE_ALIASES = {"bf16": BF16, "bfloat16": BF16, "fp16": FP16, "float16": FP16, "half": FP16,
                  "fp32": FP32, "float32": FP32, "float": FP32}


def dtype_code(name) -> int:
    """The container code of a dtype name ("bf16", "fp16", "fp32" and their long forms)."""
    code = _DTYPE_ALIASES.get(str(name).lower().removeprefix("torch."))
    if code is None:
        raise InvalidArgument(3, f"dtype must be one of bf16, fp16, fp32; got {name!r}")
    return code


def _torch_code(dt) -> int:
    t = sys.modules["torch"]
    codes = {t.bfloat16: BF16, t.float16: FP16, t.float32: FP32}
    if dt not in codes:
        raise InvalidArgument(3, f"tensor dtype must be torch.bfloat16, float16 or float32; got {dt}")
    return codes[dt]


def _numpy_code(arr: np.ndarray, dtype) -> int:
    if dtype is not None:
        code = dtype_code(dtype)
        if code == BF16:
            if arr.dtype != np.uint16 and arr.dtype.name != "bfloat16":
                raise InvalidArgument(3, f"a bf16 numpy tensor must be uint16 (bf16 bits); got {arr.dtype}")
            return BF16
        if NUMPY_OF[code] != arr.dtype:
            raise InvalidArgument(3, f"dtype={dtype!r} but the array is {arr.dtype}")
        return code
    if arr.dtype == np.float16:
        return FP16
    if arr.dtype == np.float32:
        return FP32
    if arr.dtype.name == "bfloat16":  # ml_dtypes.bfloat16
        return BF16
    if arr.dtype == np.uint16:
        raise InvalidArgument(3, "a uint16 array is taken as bf16 bits only with dtype='bf16'")
    raise InvalidArgument(3, f"tensor dtype must be float16 or float32 (or uint16 with dtype='bf16'); got {arr.dtype}")


class HostTensor:
    """A KV tensor [2, layers, tokens, kv_heads, head_dim] as contiguous host memory: the
    pointer, byte count, dims and dtype code. Keeps whatever owns the memory alive."""

    def __init__(self, x, dtype=None, what="tensor"):
        if is_torch(x):
            if dtype is not None and dtype_code(dtype) != _torch_code(x.dtype):
                raise InvalidArgument(3, f"dtype={dtype!r} but the {what} is {x.dtype}")
            code = _torch_code(x.dtype)
            t = x.detach()
            if t.device.type != "cpu":
                t = t.to("cpu")  # a CUDA tensor is copied to the host for Put
            t = t.contiguous()
            self.owner = t
            self.ptr = t.data_ptr()
            self.nbytes = t.numel() * t.element_size()
            dims = tuple(t.shape)
        else:
            if not isinstance(x, np.ndarray):
                raise InvalidArgument(3, f"{what} must be a numpy array or a torch tensor; got {type(x).__name__}")
            code = _numpy_code(x, dtype)
            a = np.ascontiguousarray(x)
            if not a.dtype.isnative:
                raise InvalidArgument(3, f"{what} must be in native (little-endian) byte order")
            self.owner = a
            self.ptr = a.ctypes.data
            self.nbytes = a.nbytes
            dims = a.shape
        if len(dims) != 5 or dims[0] != 2 or 0 in dims:
            raise InvalidArgument(3, f"{what} must have shape [2, layers, tokens, kv_heads, head_dim] "
                                     f"with no zero dimension; got {list(dims)}")
        self.dims = tuple(int(d) for d in dims)
        self.dtype = code


def float_vector(x, n_expected, what):
    """A contiguous float32 numpy vector of n_expected values (or None)."""
    if x is None:
        return None
    if is_torch(x):
        x = x.detach().to("cpu").float().numpy()
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1))
    if n_expected is not None and a.size != n_expected:
        raise InvalidArgument(3, f"{what} has {a.size} values; {n_expected} expected")
    if not np.all(np.isfinite(a)):
        raise InvalidArgument(3, f"{what} has non-finite values")
    return a


class OutBuffer:
    """One output buffer of GetToDevice: a torch tensor (CUDA or CPU) or a numpy array.
    ptr, nbytes, dtype code, device ("cpu" or "cuda:N")."""

    def __init__(self, x, what):
        if is_torch(x):
            if not x.is_contiguous():
                raise InvalidArgument(3, f"{what} must be contiguous")
            self.dtype = _torch_code(x.dtype)
            self.ptr = x.data_ptr()
            self.nbytes = x.numel() * x.element_size()
            self.device = "cpu" if x.device.type == "cpu" else f"{x.device.type}:{x.device.index or 0}"
            if x.device.type not in ("cpu", "cuda"):
                raise InvalidArgument(3, f"{what} is on {x.device}; CUDA or CPU memory expected")
            self.shape = tuple(x.shape)
        elif isinstance(x, np.ndarray):
            if not x.flags.c_contiguous or not x.flags.writeable:
                raise InvalidArgument(3, f"{what} must be a writeable C-contiguous array")
            if x.dtype == np.uint16 or x.dtype.name == "bfloat16":
                self.dtype = BF16
            elif x.dtype == np.float16:
                self.dtype = FP16
            elif x.dtype == np.float32:
                self.dtype = FP32
            else:
                raise InvalidArgument(3, f"{what} dtype must be float16, float32 or uint16 (bf16); got {x.dtype}")
            self.ptr = x.ctypes.data
            self.nbytes = x.nbytes
            self.device = "cpu"
            self.shape = x.shape
        else:
            raise InvalidArgument(3, f"{what} must be a torch tensor or a numpy array; got {type(x).__name__}")
        self.owner = x
        self.is_cuda = self.device.startswith("cuda")
        self.device_index = int(self.device.split(":")[1]) if self.is_cuda else -1
