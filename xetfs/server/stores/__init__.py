"""Object stores behind one contract: the local directory and S3 (with SigV4 signing)."""
