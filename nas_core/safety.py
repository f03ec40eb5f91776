"""Safe-by-default helpers: every file a study writes stays inside its directory.

The study directory (``--out``) is the user's choice; every path *derived* from
it -- trial weights, reports, the model card, exports and their sidecars,
artifacts shipped back from Ray workers -- goes through :func:`confined`, which
refuses absolute names, ``..`` components and symbolic links that lead out of
the directory.

The rest of the policy lives where files are read: checkpoints are loaded only
with ``torch.load(..., weights_only=True)``, YAML only with ``yaml.safe_load``,
the store holds JSON (never pickles) and nothing user-supplied is ``eval``-ed;
``tests/nas_core/test_security.py`` checks all of it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from nas_core.errors import ConfigError


def confined(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root/parts...``, refused (``ConfigError``) unless it stays inside ``root``.

    Each part must be a relative name without ``..`` components; after resolving
    symbolic links the result must still lie inside the resolved ``root``.
    """
    base = Path(root)
    rel = PurePosixPath()
    for part in parts:
        text = str(part)
        if not text or "\x00" in text:
            raise ConfigError(f"refusing to write {text!r} under {base}: not a usable file name")
        for flavour in (PurePosixPath(text), PureWindowsPath(text)):
            if flavour.is_absolute() or flavour.drive or ".." in flavour.parts:
                raise ConfigError(f"refusing to write {text!r} under {base}: derived artifact paths must stay "
                                  "inside the study directory (no absolute paths, no '..')")
        rel = rel / text
    path = base / rel
    real_root = base.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise ConfigError(f"refusing to write {path}: it resolves to {real}, outside the study directory {real_root} "
                          "(a symbolic link leads out of it)")
    return path
