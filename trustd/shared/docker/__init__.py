"""Docker image documents and the squash of layers into one ACI: pure code, no network.

Both sides run it: the fetch child converts what it downloaded, and root re-runs the same
conversion from the layers a signed manifest names, before it renders a docker-signed image
(ADR 0021 addendum, docs/threat-model.md boundary 15).
"""
