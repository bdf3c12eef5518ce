"""The command line: the only place that reads configs and wires data to models."""
