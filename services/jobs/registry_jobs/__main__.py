"""`registry-jobs`: run the scheduled jobs on triggers."""

from registry_common.server import run_service


def main() -> None:
    """Run the jobs service in one process: two workers would duplicate the timer."""
    run_service("jobs", "registry_jobs.app:create_app", multi_worker=False)


if __name__ == "__main__":
    main()
