"""Client of the Hugging Face Hub repo API over httpx."""
