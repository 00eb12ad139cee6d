"""The shared vocabulary both sides import: appc types, OpenPGP verification, keystore,
policy, the store's model and layout, the attestation verifier, errors and opt-outs.

Nothing here imports :mod:`trustd.privileged` or :mod:`trustd.unprivileged`.
"""
