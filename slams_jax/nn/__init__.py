"""Flax networks: padded convolutions and embeddings, the modulated U-Net, the multimodal autoencoder."""
