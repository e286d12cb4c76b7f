"""Training the cascade: the `train` command and its protocol (train), the run's configuration
(config), the splits held in memory with each person's b0 (splits), batches with augmentation and
the simulated predictions of Eq. 8 (sampling), the losses (losses), the stage trainer and its epoch
loop under one process or torchrun (loop), validation during training (validation), resume files
and the model folder (checkpoints), and psi v2's ImageNet backbones (pretrained)."""
