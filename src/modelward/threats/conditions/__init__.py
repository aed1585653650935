"""The declarative condition language of the threat catalog: nodes, their evaluator, and the parser.

Conditions never run code: they are parsed into a small typed tree when the catalog loads
(:mod:`.parse`) and evaluated against the graph's indexes with reasons (:mod:`.nodes`).
"""

from modelward.threats.conditions.nodes import (
    ATTR_OPS,
    AttrOp,
    Condition,
    DataSpec,
    Evaluator,
    Outcome,
    Subject,
    SubjectKind,
)
from modelward.threats.conditions.parse import CONDITION_KEYS, DATA_FIELDS, parse_condition

__all__ = [
    "ATTR_OPS",
    "CONDITION_KEYS",
    "DATA_FIELDS",
    "AttrOp",
    "Condition",
    "DataSpec",
    "Evaluator",
    "Outcome",
    "Subject",
    "SubjectKind",
    "parse_condition",
]
