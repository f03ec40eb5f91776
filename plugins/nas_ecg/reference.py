"""A hand-designed reference 1D CNN for beat classification, the baseline a search must beat.

Three convolution blocks (16, 32, 32 channels; kernels 7, 5, 3; each followed by
batch norm, ReLU and max-pooling by 2) at 360 Hz, global average pooling, the
same RR features joined before a 32-unit hidden layer: a compact design in the
style of the 1D CNNs common in the arrhythmia literature, given the same inputs
and trained by the same estimator as every searched candidate.
"""

from __future__ import annotations

FS_HZ = 360.0


def build_reference():
    import torch
    import torch.nn as nn

    from nas_ecg.space import IN_CHANNELS, N_CLASSES, N_RR

    class ReferenceCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            c = IN_CHANNELS
            for out, k in ((16, 7), (32, 5), (32, 3)):
                layers += [nn.Conv1d(c, out, k, padding=k // 2, bias=False), nn.BatchNorm1d(out), nn.ReLU(),
                           nn.MaxPool1d(2)]
                c = out
            self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten())
            self.rr_norm = nn.BatchNorm1d(N_RR)
            self.head = nn.Sequential(nn.Linear(c + N_RR, 32), nn.ReLU(), nn.Linear(32, N_CLASSES))

        def forward(self, x, rr):
            return self.head(torch.cat([self.features(x), self.rr_norm(rr)], dim=1))

    return ReferenceCNN()


def reference_length(fs_hz: float = FS_HZ) -> int:
    from nas_ecg.space import WINDOW_S

    return round(WINDOW_S[0] * fs_hz) + round(WINDOW_S[1] * fs_hz)
