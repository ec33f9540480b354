"""The search: hyperopt behind one module, one trial at a time (or on Spark), the history, pruning."""
