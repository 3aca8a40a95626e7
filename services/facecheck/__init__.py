"""Face detection, alignment, embedding and similarity against the reference (errors: `services.facecheck.errors`)."""
