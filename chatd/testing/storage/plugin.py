"""The kit's command-line option, registered with pytest through an entry point (``pytest11``).

Only the option lives here, so installing chatd adds nothing else to anyone's
test runs: the fixtures and cases sit in this package (``conftest.py``), and
apply only when it is collected (``pytest --pyargs chatd.testing.storage``).
"""

from __future__ import annotations

import pytest

OPTION = "--storage-factory"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("chatd").addoption(
        OPTION,
        default=None,
        help="for the chatd storage conformance kit: storage factories to check, "
        "comma-separated MODULE:NAME (a chatd.storage plugin's create(settings, context)); "
        "every case runs once per factory",
    )
