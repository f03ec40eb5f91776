"""Hardware targets (data) and the analytic cost model.

* :class:`HardwareTarget`, :func:`load_target`, :func:`load_builtin_target`,
  :func:`builtin_target_names` - devices as versioned TOML/JSON data.
* :func:`measure_costs` -> :class:`CostReport` - params, MACs, peak activation
  memory, flash, and analytic latency/energy on a target;
  :func:`register_mac_counter` lets plugins count their own layers.
"""

from __future__ import annotations

from nas_core.hardware.cost import (
    CostReport,
    MacCounter,
    estimate_latency_energy,
    measure_costs,
    measure_host_latency_ms,
    register_mac_counter,
)
from nas_core.hardware.target import (
    SCHEMA_VERSION,
    HardwareTarget,
    builtin_target_names,
    load_builtin_target,
    load_target,
)

__all__ = [
    "SCHEMA_VERSION",
    "CostReport",
    "HardwareTarget",
    "MacCounter",
    "builtin_target_names",
    "estimate_latency_energy",
    "load_builtin_target",
    "load_target",
    "measure_costs",
    "measure_host_latency_ms",
    "register_mac_counter",
]
