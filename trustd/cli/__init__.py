"""The ``rkt`` command line: one module per verb, rkt's flags, messages and exit codes."""
