"""Running the op on a Ray cluster: which node and process captioned a row, and rows spread
over every replica of the cluster."""
