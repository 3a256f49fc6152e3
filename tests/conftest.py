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


KINDS = ("unit", "contract", "integration")  # tests/<kind>/...: the marker comes from the directory


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for kind in KINDS:
            if kind in parts:
                item.add_marker(getattr(pytest.mark, kind))
