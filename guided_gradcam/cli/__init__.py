"""The command lines: shared flags and help, explain, evaluate, the folder pipeline."""
