"""The final model: refit and evaluate once, the served pyfunc, the registry aliases, batch scoring."""
