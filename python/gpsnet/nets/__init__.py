"""NetSpec builders of GPSNet, its ablations and the baselines (docs/nets.md)."""
