"""clipf — text masking in CLIP pre-training (CLIPF word-frequency masking and its baselines).

The model side (``clipf.masking``, ``clipf.freq``, ``clipf.models``, ``clipf.world``) imports nothing
from the trainer; ``clipf.train`` wraps open_clip_train.
"""

__version__ = "0.1.0"
