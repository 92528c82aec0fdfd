"""Whether a file holds pickled code: the globals its pickles import, found by reading their opcodes (torch-free).

``torch.load(weights_only=True)`` refuses a pickle that imports anything but tensors and plain containers, and
says so in words that change between torch versions. litcache names the cause instead: it lists the globals
(``module.name``) that the file's pickles would import and call, without running any of them, and calls a file
that names any outside the safe ones a file that holds code. This reads the pickle of a ``torch.save`` zip
(``*/data.pkl``), of torch's legacy format (several pickles in a row) and a plain ``pickle.dump`` file.
"""

from __future__ import annotations

import io
import pickletools
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

# what a weights-only file may import besides torch's own tensor, storage and dtype helpers
SAFE_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "collections.Counter",
        "_codecs.encode",
        "builtins.set",
        "builtins.frozenset",
        "builtins.bytearray",
        "builtins.complex",
        "builtins.slice",
        "builtins.range",
    }
)
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


# torch's own helpers that rebuild tensors, storages, parameters, dtypes and sizes (what weights-only loading allows)
_TORCH_SAFE = re.compile(
    r"torch\.(_utils\._rebuild_\w+|_tensor\._rebuild_from_type_v2|serialization\._get_layout|nn\.parameter\.Parameter"
    r"|storage\.\w*Storage|\w*Storage|Size|Tensor|device|dtype|memory_format|layout|strided|sparse_\w+"
    r"|float\w*|bfloat16|half|double|u?int\d*|long|short|bool|complex\w*|cfloat|cdouble|q\w+|bits\w+)$"
)


def torch_free_safe(name: str) -> bool:
    """The safe globals without asking torch: the plain ones above and torch's tensor-rebuilding helpers."""
    return name in SAFE_GLOBALS or _TORCH_SAFE.match(name) is not None


def _globals(stream: IO[bytes]) -> Iterator[str]:
    """The globals of the pickles at ``stream``, one pickle after another, until the data stops being pickles."""
    while True:
        strings: list[str] = []  # STACK_GLOBAL takes its module and name from the two strings pushed before it
        names: list[str] = []
        try:
            for op, arg, _ in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                    names.append(arg.replace(" ", ".", 1))
                elif op.name in _STRINGS and isinstance(arg, str | bytes):
                    strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
        except Exception:  # not (or no longer) a pickle: tensor bytes, a truncated file, anything else
            return
        yield from names  # only a pickle read to its end counts: bytes that merely start like one do not
        if not stream.read(1):
            return
        stream.seek(-1, io.SEEK_CUR)


def pickle_globals(path: str | Path) -> list[str]:
    """Every global the pickles in ``path`` import (sorted, unique); [] for a file that holds no pickle."""
    found: set[str] = set()
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if name.endswith(".pkl"):
                        found.update(_globals(io.BytesIO(z.read(name))))
        else:
            with open(path, "rb") as f:
                found.update(_globals(f))
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        pass  # unreadable: not code as far as can be told; the caller reports what it could not read
    return sorted(found)


def code_globals(path: str | Path, safe: Callable[[str], bool] = torch_free_safe) -> list[str]:
    """The globals in ``path``'s pickles that ``safe`` does not allow: the code loading it would run."""
    return [name for name in pickle_globals(path) if not safe(name)]


def holds_code_message(path: str | Path, names: list[str]) -> str:
    """The one sentence every command says of a file that holds code."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"{path} holds pickled Python code (loading it would import and run {shown}); litcache never loads code "
        "from a file: use a checkpoint of weights only (a state_dict, or one written by litcache)"
    )


__all__ = ["SAFE_GLOBALS", "code_globals", "holds_code_message", "pickle_globals", "torch_free_safe"]
