"""chatkeep against the peer memory layers, side by side in one run (see bench/peers/README.md)."""
