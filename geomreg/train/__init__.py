"""Training RegNetMamba-2 on real pairs with simulated modalities."""
