"""Widgets to decide with, in Jupyter (needs the ``notebooks`` extra: ipywidgets).

* :class:`ConflictReview` - decide a resolution's conflicts one invoice at a time;
  ``.decisions`` is the frame :func:`invoicekit.resolve` takes, ``.apply()`` re-resolves.
* :class:`DuplicateReview` - the same invoice or not, pair by pair or cluster by cluster;
  ``.save()`` keeps the answers in the store, and later runs respect them.
* :class:`RenderBatch` - template and locale pickers, a page-1 preview, a batch with a
  progress bar; ``.run()`` returns the :class:`~invoicekit.render.RenderResult`.

Each is scriptable (methods and properties) as well as clickable, shows itself when it is
the value of a cell (``.widget`` is the ipywidgets ``VBox``), and falls back to static HTML
where no widget frontend runs. Keys: ipywidgets has no key events of its own, so each
widget has a small key box that reads typed letters as commands (``KEYS`` lists them);
``press("...")`` runs the same letters from a script.
"""

from ._conflicts import ConflictReview
from ._duplicates import DuplicateReview
from ._render import RenderBatch

__all__ = ["ConflictReview", "DuplicateReview", "RenderBatch"]
