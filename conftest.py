"""This repository's own test run: tests/ and the storage conformance kit, on the same backends.

pyproject's testpaths collect the kit (chatd/testing/storage) beside tests/;
``--storage sqlite,scylla`` picks the backends of both, so the kit runs on the
built-in plugins unless ``--storage-factory`` names other factories.
"""

from __future__ import annotations

import pytest

from tests.conftest import KIT_FACTORIES, selected_storages


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--storage",
        default="sqlite",
        help="comma-separated storage backends for the storage kit and the feature "
        "tests' server (sqlite, scylla)",
    )


def pytest_configure(config: pytest.Config) -> None:
    names = selected_storages(config)
    if getattr(config.option, "storage_factory", "") is None:  # the kit is collected
        config.option.storage_factory = ",".join(KIT_FACTORIES[name] for name in names)
