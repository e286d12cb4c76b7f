"""Training the cascade: the `train` command (train), the training loop (trainer), and psi v2's
ImageNet backbones (pretrained)."""
