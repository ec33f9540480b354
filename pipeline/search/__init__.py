"""The search: hyperopt behind one module, trials one at a time or several at once (worker processes, Spark), the
history, pruning."""
