"""Root's tree store: trees rendered from re-verified bytes, in root-only space."""
