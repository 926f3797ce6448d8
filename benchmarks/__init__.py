"""invoicekit benchmark suite: ``python -m benchmarks.run`` (see BENCHMARKS.md)."""
