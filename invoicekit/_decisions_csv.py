"""Conflict decisions as a CSV file: read one (checked against a reconciliation) and write
the template of the fields still needing a decision.

The file has a header with (at least) ``id``, ``field`` and ``choice``; ``choice`` is
``local``, ``central`` or ``base``; ``field`` is a field of the invoice's differences
(``invoice_number``, ``client.name``, ``lines[<description>#<n>].quantity``, ...) or ``*``
for the whole invoice. Other columns (the template's ``base``, ``local``, ``central``) are
ignored, and so is a row whose ``choice`` is empty (not decided yet). Rows are numbered as
lines of the file, the header being row 1.
"""

from __future__ import annotations

import os

import pandas as pd

from .errors import UsageError, ValidationError
from .schema import PROBLEM_SCHEMA, empty

__all__ = ["read_decisions_csv", "write_unresolved_csv", "DECIDABLE", "COLUMNS"]

COLUMNS = ("id", "field", "choice")
CHOICES = ("local", "central", "base")
#: the fields a decision can name (resolve merges these; ``total`` follows from the lines)
DECIDABLE = (r"^(\*|invoice_number|client\.(name|email|address|tax_id)|currency|deleted_at"
             r"|lines\[.+\]\.(quantity|unit_price))$")


def _read(path: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise UsageError(f"--decisions {path}: no such file", reason="bad_decisions") from None
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(COLUMNS))
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UsageError(f"--decisions {path}: cannot read it as CSV ({' '.join(str(exc).split())}); expected a "
                         "header id,field,choice and one decision per row", reason="bad_decisions") from None


def _problem(path: str, rows: pd.DataFrame, rule: str, message: pd.Series | str, field: str = "choice"
             ) -> pd.DataFrame:
    return pd.DataFrame({
        "source": path, "source_row": rows["row"], "id": rows["id"].where(rows["id"] != "", None),
        "rule": rule, "field": field, "value": rows[field] if field in rows else None, "message": message,
    })


def _checks(d: pd.DataFrame, rec, path: str) -> list[pd.DataFrame]:
    """Every broken rule of the decided rows ``d`` (with ``row``): a list of problem frames."""
    status = rec.status.drop_duplicates("id").set_index("id")
    known = d["id"].isin(status.index)
    st = d["id"].map(status["status"]).where(known, None)
    has_base = d["id"].map(status["has_base"]).where(known, False).fillna(False).astype(bool)
    differing = pd.MultiIndex.from_arrays([rec.fields["id"].astype(str), rec.fields["field"].astype(str)])
    listed = pd.Series(pd.MultiIndex.from_arrays([d["id"], d["field"]]).isin(differing), index=d.index)
    decidable = d["field"].str.fullmatch(DECIDABLE)
    blank = (d["id"] == "") | (d["field"] == "")
    ok = ~blank & known & (st == "conflict")
    checks = [
        (blank, "missing_value", "id and field must not be empty", "id"),
        (~d["choice"].isin(CHOICES), "bad_choice", "choice " + d["choice"].map(repr) + " is not one of "
         + ", ".join(CHOICES), "choice"),
        (~blank & ~known, "unknown_invoice", "no invoice " + d["id"].map(repr) + " in the stores reconciled", "id"),
        (~blank & known & (st != "conflict"), "not_a_conflict", "invoice is " + st.astype(str).map(repr)
         + ", not a conflict: only conflicts take decisions", "id"),
        (ok & (d["choice"] == "base") & ~has_base, "no_base", "the invoice has no base snapshot (its store was "
         "not written by invoicekit): choose local or central", "choice"),
        (ok & ~decidable, "bad_field", "field " + d["field"].map(repr) + " cannot be decided (total follows "
         "from the lines): name an invoice field, a line's quantity or unit_price, or * for the whole invoice",
         "field"),
        (ok & decidable & (d["field"] != "*") & ~listed, "no_difference", "field " + d["field"].map(repr)
         + " does not differ for this invoice (see Resolution.unresolved or --unresolved-csv)", "field"),
        (~blank & d.duplicated(["id", "field"], keep="first"), "duplicate_decision",
         "a second decision for the same id and field", "field"),
    ]
    return [_problem(path, d[mask], rule, msg[mask] if isinstance(msg, pd.Series) else msg, field)
            for mask, rule, msg, field in checks if mask.any()]


def read_decisions_csv(path: str | os.PathLike, reconciliation) -> pd.DataFrame:
    """The decisions of the CSV at ``path`` (id, field, choice), checked against
    ``reconciliation`` (a :class:`~invoicekit.reconcile.Reconciliation`). Every broken rule
    is reported at once in a :class:`~invoicekit.errors.ValidationError` whose problems name
    the file, the row (a line of the file) and the rule; an unreadable file is a
    :class:`~invoicekit.errors.UsageError`."""
    path = os.fspath(path)
    frame = _read(path)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        problems = pd.DataFrame({"source": [path], "source_row": [1], "id": [None], "rule": ["missing_column"],
                                 "field": [",".join(missing)], "value": [",".join(frame.columns)],
                                 "message": [f"the header lacks {', '.join(missing)}; expected id,field,choice"]})
        raise ValidationError(_typed(problems), context=f"--decisions {path}", reason="bad_decisions")
    d = frame[list(COLUMNS)].apply(lambda col: col.str.strip())
    d["choice"] = d["choice"].str.lower()
    d["row"] = pd.RangeIndex(2, len(d) + 2)
    d = d[d["choice"] != ""]  # not decided yet
    found = _checks(d, reconciliation, path)
    if found:
        problems = pd.concat(found, ignore_index=True).sort_values(["source_row", "rule"], kind="stable")
        raise ValidationError(_typed(problems), context=f"--decisions {path}", reason="bad_decisions")
    return d[list(COLUMNS)].reset_index(drop=True).astype("string[pyarrow]")


def _typed(problems: pd.DataFrame) -> pd.DataFrame:
    out = empty(PROBLEM_SCHEMA)
    return pd.concat([out, problems.astype(object)], ignore_index=True).astype(out.dtypes.to_dict())


def write_unresolved_csv(resolution, path: str | os.PathLike) -> int:
    """Write the fields of ``resolution`` still needing a decision as a CSV to fill in (id,
    field, base, local, central and an empty choice); returns how many rows it holds."""
    rows = resolution.unresolved[["id", "field", "base", "local", "central"]].copy()
    rows["choice"] = ""
    rows.to_csv(path, index=False)
    return len(rows)
