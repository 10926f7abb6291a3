"""Model modules. ``SamModel`` is any model the predictors and mask generator accept."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # keep importing samkit.modeling light
    from samkit.modeling.sam import Sam
    from samkit.modeling.sam2 import Sam2

SamModel: TypeAlias = "Sam | Sam2"
