"""The network side of remote attestation: the attester's HTTPS server (run as
``rkt-attest``, it forwards challenges to root over a pipe) and the verifier's client."""
