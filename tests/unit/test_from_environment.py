"""`from_environment`: a settings object built once per state of the environment, not at every use,
and built again when the environment changes."""

from typing import ClassVar

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict

from postsale.runtime.settings import PublicUrls, from_environment

pytestmark = pytest.mark.unit


class Counted(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSTSALE_TEST_COUNTED_")
    built: ClassVar[int] = 0
    name: str = "default"

    def __init__(self, **values) -> None:
        super().__init__(**values)
        Counted.built += 1


def test_built_once_for_the_same_environment_and_again_when_it_changes(monkeypatch):
    monkeypatch.setenv("POSTSALE_TEST_COUNTED_NAME", "first")
    before = Counted.built
    assert [from_environment(Counted).name for _ in range(5)] == ["first"] * 5
    assert Counted.built == before + 1
    monkeypatch.setenv("POSTSALE_TEST_COUNTED_NAME", "second")
    assert from_environment(Counted).name == "second" and Counted.built == before + 2
    monkeypatch.setenv("POSTSALE_ACCOUNTS_URL", "https://accounts.shop.test")
    assert from_environment(PublicUrls).login_url() == "https://accounts.shop.test/login"
