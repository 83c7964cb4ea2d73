"""The wire protocol: values, per-link message unions, and the envelope."""
