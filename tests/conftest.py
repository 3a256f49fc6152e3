from __future__ import annotations

from pathlib import Path

import pytest

from tests.pki_fixtures import NOW, DevicePki, build_test_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevicePki:
    return build_test_pki(tmp_path_factory.mktemp("pki"), NOW)


@pytest.fixture
def now():  # type: ignore[no-untyped-def]
    return NOW


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
