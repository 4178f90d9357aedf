"""The one configuration style of subct: pydantic models where unknown keys are errors.

Every options object (inference, batches, registration, evaluation, synthesis,
training, dataset building...) derives from :class:`StrictConfig`, so a misspelt
option in Python or YAML fails at once with the field's name instead of being ignored,
and values are checked on construction and on assignment.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class StrictConfig(BaseModel):
    """Base of every subct configuration: unknown keys are errors, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True,
                              arbitrary_types_allowed=True)

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied (unknown names are errors)."""
        return self.model_validate({**dict(self), **changes})
