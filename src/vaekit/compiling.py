"""torch.compile with a way back: one rule for the training step and the evaluator.

Compiled code computes the same function with its operations fused and reordered, so its results
differ from eager ones in the last bits. Where compiling fails (no C++ compiler, a platform that
torch.compile does not support) the caller is told once and the eager code runs from then on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class CompiledOrEager(nn.Module):
    """`function` (a module or a plain function) under torch.compile; where compiling or running the
    compiled code fails, one warning through `log` (naming `what` continues uncompiled), then
    `function` itself for every later call."""

    def __init__(
        self, function: Callable[..., Any], log: Callable[[str], None], what: str = "training", **options: Any
    ) -> None:
        super().__init__()
        self.eager = function
        self.compiled = torch.compile(function, **options)
        self.log = log
        self.what = what
        self.failed = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # compilation errors have many types (BackendCompilerFailed, ...)
                self.failed = True
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                self.log(f"warning: torch.compile is not available here ({reason}); {self.what} continues uncompiled")
        return self.eager(*args, **kwargs)
