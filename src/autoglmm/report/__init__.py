"""The report of a search (SPEC section 3): tables, equation, figure, page, and the writer.

The writer is :mod:`autoglmm.report.writer`; this package only re-exports its public names.
The report depends on nothing above it: :class:`autoglmm.search_result.SearchResult` calls
:func:`write_report`, never the other way round.
"""

from __future__ import annotations

from autoglmm.report.writer import (
    OUTPUT_FILES,
    build_outputs,
    comparison_markdown,
    load_schema,
    result_dict,
    steps_frame,
    validate_result_dict,
    write_report,
)

__all__ = [
    "OUTPUT_FILES", "build_outputs", "comparison_markdown", "load_schema", "result_dict",
    "steps_frame", "validate_result_dict", "write_report",
]  # fmt: skip
