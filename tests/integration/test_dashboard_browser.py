"""The dashboard in a real browser (Debian's chromium + chromium-driver, driven by Selenium): an operator logs in,
sees a device authenticate live (a real eapol_test through the lab's FreeRADIUS), approves it from the pending queue,
sees the job move the fake switch port, and logs out; a viewer sees no approve button and its POST is refused.
Screenshots go to ``$TRUSTPORT_TEST_ARTIFACTS`` (default ``build/test-artifacts``)."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from policy.model import DeviceKey
from policy.x509facts import oneline_dn
from trustport.app import App
from trustport_lab.attest import ApiServer, LabVerifier
from trustport_lab.console import create_login
from trustport_lab.enforce import LabNetwork, apply_radius_vlan, lab_network
from trustport_lab.lab import Lab, issue_lab_idevid

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SERIAL = "SN-7070"
ARTIFACTS = Path(os.environ.get("TRUSTPORT_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "build" /
                                "test-artifacts"))


def by_test(name: str) -> tuple[str, str]:
    return By.CSS_SELECTOR, f'[data-test="{name}"]'


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, LabNetwork, ApiServer]]:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.fail(f"{CHROMIUM} / {DRIVER} missing: apt-get install chromium chromium-driver (make test does)")
    work = tmp_path_factory.mktemp("browser-lab")
    with lab_network(work) as network, \
            Lab(work, datetime.now(UTC), echo=lambda _line: None, extra_config=network.extra_config) as lab, \
            App(lab.config) as app, ApiServer(lab) as api:
        stop = threading.Event()
        worker = app.worker(concurrency=1, worker_id="browser-test-worker")
        thread = threading.Thread(target=worker.run_forever, args=(stop.is_set,), daemon=True)
        thread.start()
        try:
            yield lab, network, api
        finally:
            stop.set()
            thread.join(timeout=15)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str, seconds: float = 15) -> Any:
    return WebDriverWait(driver, seconds, poll_frequency=0.2).until(condition, message=f"waited for {what}")


def log_in(driver: WebDriver, base: str, name: str, password: str) -> None:
    driver.get(base + "/ui/login")
    driver.find_element(*by_test("login-name")).send_keys(name)
    driver.find_element(*by_test("login-password")).send_keys(password)
    driver.find_element(*by_test("login-submit")).click()
    wait_for(driver, lambda d: d.find_elements(*by_test("logout")), "the logged-in page")


def device_id(lab: Lab, serial: str) -> int:
    record = lab.store.find_device(DeviceKey(oneline_dn(lab.cas["idevid"].cert.subject), serial))
    assert record is not None, f"{serial} is not registered"
    return record.id


def test_operator_sees_a_live_authentication_approves_it_and_the_port_moves(
        running: tuple[Lab, LabNetwork, ApiServer], browser: WebDriver) -> None:
    lab, network, api = running
    password = create_login(lab, "olivia", "operator")
    log_in(browser, api.url, "olivia", password)
    shot(browser, "overview")
    browser.get(api.url + "/ui/live")
    issue_lab_idevid(lab, SERIAL)  # a genuine IDevID the registry has never seen
    result = lab.authenticate(SERIAL)  # real eapol_test -> FreeRADIUS -> the hook: pending, quarantined
    port = lab.ports[SERIAL]
    apply_radius_vlan(network, port, result.vlan)
    assert result.vlan == 999
    wait_for(browser, lambda d: SERIAL in d.find_element(*by_test("live-rows")).text,
             "the new authentication in the live table (htmx polling, no reload)")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#live-rows tr") if SERIAL in r.text)
    assert "quarantine" in row.text and "999" in row.text
    shot(browser, "live")
    device = device_id(lab, SERIAL)
    with httpx.Client(base_url=api.url, timeout=10) as client:  # the verifier vouches for the device's key
        posted = LabVerifier(lab).post(client, SERIAL, "affirming", with_certificate=True)
        assert posted.status_code == 201 and posted.json()["accepted"], posted.text
    browser.get(api.url + "/ui/pending")
    browser.find_element(*by_test(f"reason-{device}")).send_keys("commissioned by the browser test")
    browser.find_element(*by_test(f"approve-{device}")).click()
    wait_for(browser, lambda d: d.find_elements(*by_test("result")), "the action's result page")
    assert "job" in browser.find_element(*by_test("result")).text.lower()
    shot(browser, "approved")
    wait_for(browser, lambda _d: network.port(port).vlan == 30, f"the worker to move Gi1/0/{port} to VLAN 30", 30)
    # the port is read back before the worker records the job done: reload the page until it says so
    wait_for(browser, lambda d: d.get(api.url + f"/ui/devices/{device}") or
             "done" in d.find_element(By.TAG_NAME, "body").text, "the job shown done")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "operational" in body and "olivia" in body  # the audit trail names the user
    shot(browser, "device")
    browser.find_element(*by_test("logout")).click()
    wait_for(browser, lambda d: d.find_elements(*by_test("login-form")), "the login page after logout")
    browser.get(api.url + "/ui/pending")
    assert browser.find_elements(*by_test("login-form")), "a logged-out browser must not see the pending queue"


def test_viewer_cannot_approve(running: tuple[Lab, LabNetwork, ApiServer], browser: WebDriver) -> None:
    lab, network, api = running
    serial = "SN-7071"
    issue_lab_idevid(lab, serial)
    result = lab.authenticate(serial)
    apply_radius_vlan(network, lab.ports[serial], result.vlan)
    device = device_id(lab, serial)
    password = create_login(lab, "victor", "viewer")
    log_in(browser, api.url, "victor", password)
    browser.get(api.url + "/ui/pending")
    wait_for(browser, lambda d: d.find_elements(*by_test(f"pending-{device}")), "the pending device listed")
    with pytest.raises(NoSuchElementException):
        browser.find_element(*by_test(f"approve-{device}"))
    shot(browser, "viewer-pending")
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    csrf = re.search(r'name="csrf" value="([^"]+)"', browser.page_source)
    token = csrf.group(1) if csrf else ""
    with httpx.Client(base_url=api.url, cookies=cookies, timeout=10) as client:
        refused = client.post(f"/ui/devices/{device}/action", data={"action": "approve", "reason": "sneaky",
                                                                     "csrf": token})
    assert refused.status_code == 403, refused.text
    record = lab.store.get_device(device)
    assert record is not None and record.state.value == "pending"
