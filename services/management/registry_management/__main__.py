"""`registry-management`: serve the dashboard's JSON API."""

from registry_common.server import run_service


def main() -> None:
    """Run the management service with WEB_CONCURRENCY worker processes."""
    run_service("management", "registry_management.app:create_app")


if __name__ == "__main__":
    main()
