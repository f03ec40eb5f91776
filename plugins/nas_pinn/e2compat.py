"""Runtime compatibility fixes for e2cnn 0.2.3 on NumPy 2 and recent PyTorch.

e2cnn (https://github.com/QUVA-Lab/e2cnn) is deprecated in favour of escnn, and
escnn does not install on our stack. e2cnn 0.2.3 itself installs and works
except for three spots, all mended here at runtime (nothing in site-packages is
edited) by :func:`apply`:

1. ``e2cnn.kernels.irreps_basis``: the ``__hash__`` of the kernel bases
   ``R2FlipsSolution``, ``R2ContinuousRotationsSolution``,
   ``R2FlipsDiscreteRotationsSolution`` and ``R2FlipsContinuousRotationsSolution``
   calls ``ndarray.tostring()``, which NumPy 2 removed. Every ``R2Conv`` over a
   group with reflections hashes such a basis (e2cnn caches sampled bases in a
   dict), so without the fix ``FlipRot2dOnR2`` layers cannot be built. We give
   these classes a ``__hash__`` of our own that hashes the same data through
   ``ndarray.tobytes()`` (the byte string ``tostring()`` used to return), so
   objects that were equal before still hash equally.

2. ``e2cnn.nn.modules.r2_conv.basisexpansion_singleblock``:
   ``SingleBlockBasisExpansion.__init__`` turns its boolean basis mask into a
   ``uint8`` tensor and indexes with it. PyTorch deprecated byte masks long ago
   and now rejects them in some paths: a ``TrivialOnR2`` ``R2Conv`` fails to
   build (``masked_fill_ only supports boolean masks``), the other groups
   warn that byte indexing is deprecated. The module spells its mask dtype
   ``torch.uint8`` in exactly two places (building the mask tensor from a NumPy
   ``uint8`` array, and casting the filtered mask back). We replace the name
   ``torch`` *inside that one module* by :class:`_BoolMaskTorch`, a thin proxy
   that forwards everything to the real ``torch`` except that its ``uint8`` is
   ``torch.bool`` and ``tensor()`` turns a NumPy ``uint8`` array into a bool
   tensor. The mask is then bool end to end; nothing else changes (the
   module uses the mask only for indexing, ``==`` and ``hash``).

3. ``e2cnn.kernels.utils``: ``psi``, ``chi`` and ``psichi`` (which sample the
   angular part of every kernel basis) call ``np.array(x, copy=False)``. In
   NumPy 1 that meant "copy only if needed"; NumPy 2 raises ``ValueError``
   whenever a copy is needed, which happens for the Python floats/ints the
   dihedral bases pass (``R2FlipsDiscreteRotationsSolution.gamma`` is a float),
   so no ``FlipRot2dOnR2`` ``R2Conv`` (D2, D4) can be built. This third break
   was not in the original bug report; it surfaced once 1. was fixed. We
   replace the name ``np`` *inside that one module* by :class:`_AsArrayNumpy`,
   a proxy that forwards everything to NumPy except that ``array(x,
   copy=False)`` becomes ``np.asarray(x)``, the NumPy 1 meaning (this is the
   rewrite the NumPy 2 migration guide prescribes).

With these mended, ``R2Conv`` layers are exactly equivariant again (checked by
``tests/nas_pinn/test_equivariance.py``). A further known NumPy 2 break,
``np.float`` in ``e2cnn.group.groups.o2group`` (continuous O(2) only), is left
alone: the plugin uses finite groups only.

Everything in ``nas_pinn`` obtains e2cnn through :func:`import_e2cnn`, never by
``import e2cnn`` directly, so the patches are always in place first.

:func:`apply` is idempotent: it marks what it patched and skips it the second
time. It warns if the installed e2cnn is not the version these fixes were
written for (:data:`E2CNN_VERSION`) and raises a
:class:`~nas_core.errors.ConfigError` if the code it has to mend is not where
it expects it.

Removing this module (e.g. after moving to escnn): delete this file and make
:func:`import_e2cnn` callers import escnn instead, e.g.
``from escnn import gspaces, nn, group``. escnn already has these fixes and
renames the gspace factories used by ``nas_pinn.equivariant``:
``TrivialOnR2``/``Rot2dOnR2``/``FlipRot2dOnR2`` become
``trivialOnR2``/``rot2dOnR2``/``flipRot2dOnR2``. escnn also offers
``gspace.basespace_action`` as a representation, which could replace
``equivariant._plane_repr`` (e2cnn 0.2.3 has no such representation) if it
passes the element-by-element plane test. Run ``tests/nas_pinn/`` after the
switch.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from nas_core.errors import ConfigError

__all__ = ["E2CNN_VERSION", "E2CNN", "apply", "import_e2cnn", "is_applied"]

#: The e2cnn release these fixes were written against and tested with.
E2CNN_VERSION = "0.2.3"

_HASH_PATCHED_CLASSES = (
    "R2FlipsSolution",
    "R2ContinuousRotationsSolution",
    "R2FlipsDiscreteRotationsSolution",
    "R2FlipsContinuousRotationsSolution",
)
_IRREPS_BASIS_MODULE = "e2cnn.kernels.irreps_basis"
_SINGLEBLOCK_MODULE = "e2cnn.nn.modules.r2_conv.basisexpansion_singleblock"
_KERNEL_UTILS_MODULE = "e2cnn.kernels.utils"
_MARK = "_nas_pinn_e2compat"


@dataclass(frozen=True)
class E2CNN:
    """The e2cnn sub-packages the plugin uses, patched and ready."""

    gspaces: ModuleType
    nn: ModuleType
    group: ModuleType
    version: str


def _hash_part(value: Any) -> int:
    """Hash one field of a kernel basis: arrays by their raw bytes."""
    if isinstance(value, np.ndarray):
        return hash(value.tobytes())
    return hash(value)


def _basis_hash(self: Any) -> int:
    """NumPy-2-safe ``__hash__`` for e2cnn's irreps kernel bases.

    Hashes the same fields as the original (input irrep, output irrep, the
    frequency array ``mu`` and ``gamma``, which is an array or a float), with
    ``tobytes()`` in place of the removed ``tostring()``.
    """
    return (
        hash(self.in_irrep)
        + hash(self.out_irrep)
        + _hash_part(self.mu)
        + _hash_part(self.gamma)
    )


setattr(_basis_hash, _MARK, True)


class _BoolMaskTorch:
    """Stand-in for ``torch`` inside e2cnn's ``basisexpansion_singleblock`` only.

    Forwards every attribute to the real ``torch`` module, except:

    * ``uint8`` is ``torch.bool``, so the module's mask casts produce bool masks;
    * ``tensor(array)`` of a NumPy ``uint8`` array (the mask, the only such
      call there) returns a bool tensor.

    Bool masks index exactly like the byte masks PyTorch used to accept.
    """

    uint8 = torch.bool

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def tensor(data: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        if isinstance(data, np.ndarray) and data.dtype == np.uint8 and not args and "dtype" not in kwargs:
            data = data.astype(bool)
        return torch.tensor(data, *args, **kwargs)

    def __repr__(self) -> str:
        return "<nas_pinn.e2compat torch proxy with bool masks>"


setattr(_BoolMaskTorch, _MARK, True)


class _AsArrayNumpy:
    """Stand-in for ``numpy`` inside e2cnn's ``kernels.utils`` only.

    Forwards every attribute to the real ``numpy`` module, except that
    ``array(x, copy=False)`` returns ``numpy.asarray(x)`` (copy only if needed,
    as NumPy 1 did) instead of raising as NumPy 2 does.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def array(obj: Any, *args: Any, copy: bool | None = True, **kwargs: Any) -> np.ndarray:
        if copy is False:
            return np.asarray(obj, *args, **kwargs)
        return np.array(obj, *args, copy=copy, **kwargs)

    def __repr__(self) -> str:
        return "<nas_pinn.e2compat numpy proxy with NumPy 1 copy=False>"


setattr(_AsArrayNumpy, _MARK, True)


def _installed_version() -> str:
    try:
        return importlib.metadata.version("e2cnn")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"e2cnn is not installed; the PINN plugin needs e2cnn=={E2CNN_VERSION} "
            "(pip install 'nas-core[pinn]')"
        ) from None


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import {name} ({exc}); nas_pinn.e2compat supports e2cnn=={E2CNN_VERSION}"
        ) from exc


def _patch_basis_hashes() -> None:
    module = _import(_IRREPS_BASIS_MODULE)
    for class_name in _HASH_PATCHED_CLASSES:
        cls = getattr(module, class_name, None)
        if cls is None:
            raise ConfigError(
                f"{_IRREPS_BASIS_MODULE}.{class_name} not found; nas_pinn.e2compat supports "
                f"e2cnn=={E2CNN_VERSION}"
            )
        if not getattr(cls.__hash__, _MARK, False):
            cls.__hash__ = _basis_hash


def _patch_singleblock_mask() -> None:
    module = _import(_SINGLEBLOCK_MODULE)
    current = getattr(module, "torch", None)
    if getattr(current, _MARK, False):
        return
    if current is not torch:
        raise ConfigError(
            f"{_SINGLEBLOCK_MODULE} no longer uses torch the way e2cnn=={E2CNN_VERSION} did; "
            "nas_pinn.e2compat cannot patch it"
        )
    module.torch = _BoolMaskTorch()


def _patch_kernel_utils_copy() -> None:
    module = _import(_KERNEL_UTILS_MODULE)
    current = getattr(module, "np", None)
    if getattr(current, _MARK, False):
        return
    if current is not np:
        raise ConfigError(
            f"{_KERNEL_UTILS_MODULE} no longer uses numpy the way e2cnn=={E2CNN_VERSION} did; "
            "nas_pinn.e2compat cannot patch it"
        )
    module.np = _AsArrayNumpy()


def is_applied() -> bool:
    """Whether all three patches are in place in the imported e2cnn."""
    try:
        irreps_basis = importlib.import_module(_IRREPS_BASIS_MODULE)
        singleblock = importlib.import_module(_SINGLEBLOCK_MODULE)
        kernel_utils = importlib.import_module(_KERNEL_UTILS_MODULE)
    except ImportError:
        return False
    hashes = all(
        getattr(getattr(irreps_basis, name).__hash__, _MARK, False) for name in _HASH_PATCHED_CLASSES
    )
    return bool(
        hashes
        and getattr(singleblock.torch, _MARK, False)
        and getattr(kernel_utils.np, _MARK, False)
    )


def apply() -> str:
    """Mend e2cnn in place (idempotent) and return the installed e2cnn version.

    Warns (``RuntimeWarning``) if the installed e2cnn is not
    :data:`E2CNN_VERSION`; raises :class:`~nas_core.errors.ConfigError` if e2cnn
    is missing or the code to mend is not where this module expects it.

    Example::

        >>> from nas_pinn import e2compat
        >>> e2compat.apply()
        '0.2.3'
        >>> e2compat.apply()  # second call changes nothing
        '0.2.3'
    """
    version = _installed_version()
    if version != E2CNN_VERSION:
        warnings.warn(
            f"nas_pinn.e2compat was written for e2cnn=={E2CNN_VERSION} but e2cnn=={version} is "
            "installed; the equivariance tests in tests/nas_pinn must pass before trusting it",
            RuntimeWarning,
            stacklevel=2,
        )
    _patch_basis_hashes()
    _patch_singleblock_mask()
    _patch_kernel_utils_copy()
    return version


def import_e2cnn() -> E2CNN:
    """Apply the patches and return e2cnn's ``gspaces``, ``nn`` and ``group`` modules.

    Example::

        >>> from nas_pinn.e2compat import import_e2cnn
        >>> e2 = import_e2cnn()
        >>> gs = e2.gspaces.Rot2dOnR2(4)
        >>> field = e2.nn.FieldType(gs, [gs.regular_repr])
        >>> conv = e2.nn.R2Conv(field, field, kernel_size=1)
    """
    version = apply()
    return E2CNN(
        gspaces=_import("e2cnn.gspaces"),
        nn=_import("e2cnn.nn"),
        group=_import("e2cnn.group"),
        version=version,
    )
