"""Model training: SFT data (render, packing, sft_data), fine-tuning and its checkpoints."""
