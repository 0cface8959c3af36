"""Sharing one machine among many visitors: the scheduler (who runs next) and Hugging Face ZeroGPU."""
