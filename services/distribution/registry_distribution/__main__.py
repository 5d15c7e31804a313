"""`registry-distribution`: serve the OCI Distribution API."""

from registry_common.server import run_service


def main() -> None:
    """Run the distribution service with WEB_CONCURRENCY worker processes."""
    run_service("distribution", "registry_distribution.app:create_app")


if __name__ == "__main__":
    main()
