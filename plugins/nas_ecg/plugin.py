"""The ECG plugin: hardware-aware search for arrhythmia beat classifiers on MIT-BIH.

Registered as ``ecg`` under the ``nas_core.plugins`` entry point: spaces
``ecg/efficient-cnn`` and ``ecg/compound-cnn``, one target per file of
``targets/`` (``ecg/nrf52840``, ``ecg/stm32l4``, ``ecg/apollo4``, ``ecg/max78000``;
a new target is a new TOML file there), and a clinical section for study reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from nas_core.plugins import Plugin, SpaceEntry


def clinical_section(store, front: Sequence) -> str:
    """Per-class validation figures (held-out DS1 records) and the budget of each Pareto model."""
    lines = ["## Clinical table (validation: held-out DS1 records; DS2 is not used by a search)", "",
             "| trial | fs Hz | N Se | N +P | S Se | S +P | V Se | V +P | F Se | F +P | macro-F1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in front:
        m = t.all_metrics()
        cells = [f"{100 * m.get(f'val_{c}_{k}', float('nan')):.1f}" for c in "NSVF" for k in ("se", "ppv")]
        lines.append(f"| {t.number} | {m.get('fs_hz', float('nan')):.0f} | " + " | ".join(cells)
                     + f" | {100 * m.get('val_macro_f1', float('nan')):.1f} |")
    if any("energy_uj_per_beat" in t.all_metrics() for t in front):
        lines += ["", "## Energy and memory budget", "",
                  "| trial | params | MACs | energy/beat uJ | budget/beat uJ | battery days | peak RAM KiB | flash int8 KiB |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in front:
            m = t.all_metrics()
            lines.append(f"| {t.number} | {m.get('params', 0):.0f} | {m.get('macs', 0):.0f} | "
                         f"{m.get('energy_uj_per_beat', float('nan')):.3g} | {m.get('energy_budget_uj_per_beat', float('nan')):.3g} | "
                         f"{m.get('battery_days', float('nan')):.1f} | {m.get('peak_ram_kb', float('nan')):.1f} | "
                         f"{m.get('flash_kb_int8', float('nan')):.1f} |")
    return "\n".join(lines)


def plugin() -> Plugin:
    from nas_ecg.space import CompoundECGSpace, EfficientECGSpace
    from nas_ecg.task import ECGTask

    return Plugin(
        name="ecg",
        version="0.1.0",
        description="1D CNN beat classifiers for wearable ECG patches (MIT-BIH, AAMI classes, inter-patient split)",
        spaces={"efficient-cnn": SpaceEntry(EfficientECGSpace, ECGTask,
                                            "EfficientNet-style: a searched base design scaled by one phi (fixed "
                                            "alpha, beta, gamma), MAX30003 rates + RR features"),
                "compound-cnn": SpaceEntry(CompoundECGSpace, ECGTask,
                                           "free compound scaling (alpha, beta, gamma searched per candidate), any "
                                           "integer rate + RR features")},
        targets_dir=str(Path(__file__).resolve().parent / "targets"),  # one target per file: targets/<key>.toml
        report_section=clinical_section,
    )
