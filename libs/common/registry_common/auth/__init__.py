"""Who may do what: the authorizer interface and its Deploys API and static implementations."""
