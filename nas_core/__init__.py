"""nas_core: hardware-aware neural architecture search with domain plugins."""

from __future__ import annotations

__version__ = "0.1.0"
