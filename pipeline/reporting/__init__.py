"""Reading a study back from MLflow: plots, the HTML report, the `runs` listing."""
