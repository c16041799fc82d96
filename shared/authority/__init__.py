"""Who may do what: people and their roles at the HTTP edge (``principals``), where a release event
came from (``proofs``: HMAC signatures and CI workload-identity tokens), and the platform team's
release policy file (``policy_file``; its rules are applied by ``shared.domain.policy``)."""
