"""The Snakemake report of the tiny run, built both ways (one HTML file, and a zip), and read
the way a reader reads it: in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, installed with apt where missing, like the SLURM test installs SLURM; skipped, with
the reason, only where they are missing and apt cannot install them).

In the browser: the page loads without a script error, the overview figure displays, the
findings page shows the findings table's text, and the job-times page shows every rule.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from conftest import snakemake

pytestmark = pytest.mark.e2e

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
APT_PACKAGES = ("chromium", "chromium-driver")


@pytest.fixture(scope="module")
def report_html(finished) -> Path:
    snakemake(finished, "--report", "results/report.html")
    return finished / "results" / "report.html"


@pytest.fixture(scope="module")
def report_zip(finished) -> Path:
    snakemake(finished, "--report", "results/report.zip")
    return finished / "results" / "report.zip"


def test_report_html_is_self_contained_and_holds_every_table(report_html):
    html = report_html.read_text(errors="replace")
    assert len(html) > 50_000
    for name in ("findings.html", "summary.html", "claims.html", "job_times.html",
                 "collapse.html", "collapse.png", "depth.html", "depth.csv", "findings.csv",
                 "summary.csv", "convergence.csv", "claims.csv", "excluded.csv",
                 "seeds.csv", "config.yaml", "overview.png"):
        assert name in html, name
    # Self-contained: it opens offline (no script or stylesheet fetched from the network).
    assert not re.search(r"<script[^>]*\ssrc=\"https?:", html)
    assert not re.search(r"<link[^>]*\shref=\"https?:", html)


def test_report_zip_holds_the_page_and_every_result(report_zip):
    with zipfile.ZipFile(report_zip) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
    assert "report/report.html" in names
    for name in ("findings.html", "summary.html", "claims.html", "job_times.html",
                 "depth.html", "overview.png", "config.yaml"):
        assert any(n.endswith("/" + name) for n in names), name


def test_job_times_cover_exactly_the_jobs_the_run_wrote(finished):
    """The job_times rule's input (benchmark_files() in common.smk) is the benchmark file of
    every job the run wrote, its own excepted: the per-rule counts match the files on disk."""
    folder = finished / "results" / "benchmarks"
    on_disk: dict[str, int] = {}
    for path in folder.rglob("*.tsv"):
        parts = path.relative_to(folder).parts
        rule = parts[0] if len(parts) > 1 else path.stem
        on_disk[rule] = on_disk.get(rule, 0) + 1
    assert on_disk.pop("job_times") == 1
    table = pd.read_csv(finished / "results" / "job_times.csv")
    assert dict(zip(table["rule"], table["jobs"])) == on_disk
    assert set(on_disk) == {"prepare", "train", "retrain", "features", "svm", "metrics",
                            "collapse", "aggregate", "run_figure", "convergence_figure",
                            "overview_figure", "collapse_figure", "config_record",
                            "theory", "theory_figure"}
    largest = table.set_index("rule")
    assert (largest["max_s"] <= largest["total_s"] + 1e-9).all()
    assert largest.loc["train", "max_job"].startswith(("blobs/", "digits012/"))


# --------------------------------------------------------------------------------------------
# In a browser
# --------------------------------------------------------------------------------------------


def _browser_available() -> str | None:
    """None when chromium and chromedriver are there (installing them with apt if needed),
    else why not."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return None
    if shutil.which("apt-get") is None:
        return "no chromium/chromium-driver and no apt-get to install them"
    if os.geteuid() != 0:
        return "no chromium/chromium-driver, and installing them with apt needs root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                     *APT_PACKAGES]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _browser_available()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, what: str, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition, message=f"timed out: {what}")


def _open_result(driver, url: str, category: str, result: str, shown, what: str):
    """Load the report, click the category in the menu, then the eye button of the result,
    and wait until ``shown(driver)`` returns something (the result's content); returns it.

    A click that lands while the page's scripts still build the menu or the result's view can
    be lost (seen on a loaded 2-core machine, for the category and for the eye button): then the
    page is loaded and both clicked again, at most three times, before the wait gives up.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    for attempt in range(3):
        try:
            driver.get(url)
            _click(driver, _wait(driver, lambda d: d.find_elements(
                By.XPATH, f"//a[normalize-space()='{category}']"), f"menu item {category}")[0])
            row = _wait(driver, lambda d: d.find_elements(
                By.XPATH, f"//nav//tr[td[normalize-space()='{result}']]"), f"row {result}",
                timeout=15)[0]
            _click(driver, row.find_element(By.CSS_SELECTOR, "a[iconname='eye']"))
            return _wait(driver, shown, what)
        except TimeoutException:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _click(driver, element) -> None:
    """Click like a reader: scrolled into the middle of the view first (a long menu can leave
    an item under another element, which then gets the click), waiting until it is clickable."""
    from selenium.common.exceptions import ElementClickInterceptedException

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    for _ in range(20):
        try:
            element.click()
            return
        except ElementClickInterceptedException:  # still settling (the menu animates)
            time.sleep(0.25)
    element.click()


def _script_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]


def _read_like_a_reader(driver, url: str, finished: Path) -> None:
    from selenium.webdriver.common.by import By

    # A figure displays: the overview image is shown, decoded, at a real size.
    image = _open_result(driver, url, "Overview", "results/figures/overview.png",
                         lambda d: [i for i in d.find_elements(By.CSS_SELECTOR, "div.p-3 > img")
                                    if i.is_displayed()], "the overview image")[0]
    _wait(driver, lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", image), "image decoded")
    assert driver.execute_script("return arguments[0].naturalWidth", image) > 200
    assert image.size["width"] > 200 and image.size["height"] > 100

    # The findings page shows the findings table: its title, header and first row's cells.
    frame = _open_result(driver, url, "Tables", "results/findings.html",
                         lambda d: d.find_elements(By.TAG_NAME, "iframe"), "findings frame")[0]
    driver.switch_to.frame(frame)
    table = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "table"), "table")[0]
    assert table.is_displayed()
    text = driver.find_element(By.TAG_NAME, "body").text
    first_md_row = next(line for line in (finished / "results" / "findings.md")
                        .read_text().splitlines() if line.startswith("| blobs |"))
    for cell in first_md_row.strip("| ").split(" | ")[:6]:
        assert cell.replace("\\|", "|") in text, cell
    for words in ("Findings: final checkpoint, valid seeds only", "angle svc", "Regimes compared",
                  "The paper's claims"):
        assert words in text, words
    driver.switch_to.default_content()

    # The job-times page: every rule that ran, with its total and largest job time.
    driver.switch_to.frame(_open_result(driver, url, "Job times", "results/job_times.html",
                                        lambda d: d.find_elements(By.TAG_NAME, "iframe"),
                                        "job times frame")[0])
    text = _wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").text, "job times text")
    for rule in pd.read_csv(finished / "results" / "job_times.csv")["rule"]:
        assert re.search(rf"^{rule} \d+ ", text, flags=re.M), rule
    assert "largest wall s" in text
    driver.switch_to.default_content()


def test_the_report_reads_in_chromium(browser, report_html, report_zip, finished, tmp_path,
                                      capsys):
    with capsys.disabled():
        print(f"\n[report test] {subprocess.run([CHROMIUM, '--version'], capture_output=True, text=True).stdout.strip()}"
              f"; driver reports browserVersion {browser.capabilities['browserVersion']}")
    browser.get_log("browser")  # start with an empty console log
    _read_like_a_reader(browser, report_html.as_uri(), finished)
    assert _script_errors(browser) == []
    # The zip: unpacked, its report/report.html reads the same (results as files beside it).
    with zipfile.ZipFile(report_zip) as archive:
        archive.extractall(tmp_path)
    _read_like_a_reader(browser, (tmp_path / "report" / "report.html").as_uri(), finished)
    assert _script_errors(browser) == []


def test_job_span_reads_the_benchmark_files(tmp_path):
    """Two jobs: 10 s ending at t = 100 (start 90), 30 s ending at t = 105 (start 75): the run
    spans from the earliest start to the last end, 105 − 75 = 30 s, and the CPU is summed."""
    from nnboundary.reporting.provenance import job_span

    paths = []
    for name, wall, cpu, end in (("a", 10.0, 8.0, 100.0), ("b", 30.0, 50.0, 105.0)):
        path = tmp_path / f"{name}.tsv"
        path.write_text(f"s\th:m:s\tcpu_time\n{wall}\t0:00:00\t{cpu}\n")
        os.utime(path, (end, end))
        paths.append(path)
    assert job_span(paths) == (30.0, 58.0, 2)
    assert job_span([]) == (0.0, 0.0, 0)
