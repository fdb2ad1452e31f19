"""The dashboard in a real headless Chromium against a real stack and a real small update.

Every page must load without a console error and show its charts; the gallery filters,
cancel and forced promotion are driven through the UI. Screenshots of every page land in
test-artifacts/screenshots/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import re

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.browser import full_page_screenshot, severe_messages
from tests.browser.conftest import OLD, RECIPE, SCREENSHOTS
from tests.integration.conftest import SMALL_RECIPE

WAIT_S = 30


def open_page(driver, stack, path: str):
    """Load a page and wait until it is fully loaded; fail on any console error."""
    severe_messages(driver)  # drop what earlier pages left
    driver.get(stack.url + path)
    WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert driver.title.endswith("flipguard"), driver.title
    assert severe_messages(driver) == [], f"console errors on {path}"


def screenshot(driver, name: str, *, width: int = 1366) -> None:
    full_page_screenshot(driver, SCREENSHOTS / f"{name}-{width}.png", width=width)


def css(driver, selector: str):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def loaded_images(driver) -> int:
    """How many gallery images in the viewport finished loading with real pixels."""
    return driver.execute_script(
        "return [...document.querySelectorAll('ul.gallery img')].filter(i => {"
        "  const r = i.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0;"
        "}).filter(i => i.complete && i.naturalWidth > 0).length"
    )


def test_overview(driver, stack, story):
    open_page(driver, stack, "/dashboard")
    families = css(driver, "#families tbody tr")
    assert len(families) == 1 and "fmnist v1" in families[0].text and "production" in families[0].text
    update_row = css(driver, f'tr[data-job-row="{story["update_job"]["id"]}"]')[0]
    assert "gate rejected" in update_row.text and "row-rejected" in update_row.get_attribute("class")
    failed_row = css(driver, f'tr[data-job-row="{story["failed_job"]["id"]}"]')[0]
    assert "failed" in failed_row.text and "sha256" in failed_row.text
    assert len(css(driver, "#jobs .progress")) == 3
    bar = update_row.find_element(By.CSS_SELECTOR, ".progress")
    assert bar.find_element(By.CSS_SELECTOR, ".fill").size["width"] == pytest.approx(bar.size["width"], abs=1)
    screenshot(driver, "overview")


def test_model_page_shows_comparison_lineage_and_gate(driver, stack, story):
    v2 = story["v2"]
    open_page(driver, stack, f"/dashboard/models/{v2['id']}")
    assert "rejected" in css(driver, "h1 .badge")[0].text
    gate = css(driver, "#gate")[0].text
    assert "failed" in gate and "min_accuracy 0.99" in gate
    rows = css(driver, "#metrics tbody tr")
    assert [row.find_element(By.TAG_NAME, "td").text for row in rows][:3] == [
        "Accuracy, all samples",
        "Accuracy, old classes",
        "NFR, old classes",
    ]
    charts = css(driver, "#lineage svg.line-chart")
    assert len(charts) == 2
    # Accuracy: v1 (as v2's baseline) and v2; NFR: v2 against v1 in both scopes.
    assert len(charts[0].find_elements(By.CSS_SELECTOR, "circle.mark")) >= 2
    assert len(charts[0].find_elements(By.CSS_SELECTOR, "polyline.line")) >= 1
    assert len(charts[1].find_elements(By.CSS_SELECTOR, "circle.mark")) == 2
    assert len(css(driver, "#lineage tbody tr")) == 2
    assert css(driver, "#promote-force")[0].is_selected(), "a rejected version needs force"
    screenshot(driver, "model-v2")

    # The lineage says how many classes each accuracy is over.
    ticks = [tick.text for tick in charts[0].find_elements(By.CSS_SELECTOR, "text.tick")]
    assert "v1 (5 cl.)" in ticks and "v2 (10 cl.)" in ticks
    # Relative NFR is a ratio with three decimals, as on the flip report and in the CLI.
    relative = next(row for row in rows if row.text.startswith("Relative NFR"))
    assert "%" not in relative.find_elements(By.TAG_NAME, "td")[2].text

    open_page(driver, stack, f"/dashboard/models/{story['v1']['id']}")
    assert "production" in css(driver, "h1 .badge")[0].text and not css(driver, "#promote-form")
    # v1 has no report of its own: the accuracy v2's report measured for it, and what on.
    own = css(driver, "#own-accuracy")[0].text
    assert "%" in own and f"as the baseline of model {story['v2']['id']}'s report" in own
    screenshot(driver, "model-v1")


def test_job_page_shows_curves_and_outcome(driver, stack, story):
    job = story["update_job"]
    open_page(driver, stack, f"/dashboard/jobs/{job['id']}")
    assert "succeeded" in css(driver, "#job-status")[0].text
    assert css(driver, "#job-epoch")[0].text == f"{RECIPE['epochs']} / {RECIPE['epochs']}"
    assert css(driver, "#progress-label")[0].text == "100%"
    charts = css(driver, "#curves svg.line-chart")
    assert len(charts) == 3, "loss, validation accuracy and validation NFR"
    for chart in charts:
        assert len(chart.find_elements(By.CSS_SELECTOR, "circle.mark")) >= RECIPE["epochs"]
        assert chart.find_elements(By.CSS_SELECTOR, "polyline.line")
    assert "gate rejected" in css(driver, "#outcome")[0].text
    assert not css(driver, "#cancel-button"), "a finished job cannot be cancelled"
    screenshot(driver, "job-succeeded")


def test_job_and_model_pages_draw_the_sweeps_candidates(driver, stack, story):
    # The story's update named no b: the default sweep trained four candidates and registered one.
    api, job = story["api"], story["update_job"]
    detail = api.ok(api.http.get(f"/updates/{job['id']}"))
    candidates = detail["candidates"]
    assert [c["label"] for c in candidates] == ["bias=0", "bias=1", "bias=2", "bias=4"]
    winner = next(c for c in candidates if c["chosen"])
    for path, name in (
        (f"/dashboard/jobs/{job['id']}", "job-candidates"),
        (f"/dashboard/models/{story['v2']['id']}", "model-candidates"),
    ):
        open_page(driver, stack, path)
        chart = css(driver, "#candidate-chart svg.scatter-chart")[0]
        marks = chart.find_elements(By.CSS_SELECTOR, "circle.mark")
        assert len(marks) == len(candidates)
        chosen = chart.find_elements(By.CSS_SELECTOR, "circle.mark.winner")
        assert [m.get_attribute("data-name") for m in chosen] == [winner["label"]]
        assert len(chart.find_elements(By.CSS_SELECTOR, "polygon.mark.reference")) == 1
        # Every mark is drawn inside the chart, and the more accurate candidate sits higher.
        box = chart.rect
        for mark in marks:
            assert box["x"] <= mark.rect["x"] <= box["x"] + box["width"]
            assert box["y"] <= mark.rect["y"] <= box["y"] + box["height"]
        by_name = {m.get_attribute("data-name"): m.rect["y"] for m in marks}
        top = max(candidates, key=lambda c: c["validation"]["accuracy"])
        bottom = min(candidates, key=lambda c: c["validation"]["accuracy"])
        if top["validation"]["accuracy"] > bottom["validation"]["accuracy"]:
            assert by_name[top["label"]] < by_name[bottom["label"]]
        rows = css(driver, "#candidate-table tbody tr")
        assert len(rows) == len(candidates) + 1 and "independent retrain" in rows[-1].text
        assert "chosen" in rows[winner["index"]].text
        assert winner["label"] in css(driver, "#choice-explanation")[0].text
        assert severe_messages(driver) == []
        screenshot(driver, name)


def test_failed_job_page_shows_the_error(driver, stack, story):
    open_page(driver, stack, f"/dashboard/jobs/{story['failed_job']['id']}")
    assert "failed" in css(driver, "#job-status")[0].text
    assert "sha256 does not match" in css(driver, "#job-error")[0].text
    screenshot(driver, "job-failed")


@pytest.mark.parametrize("width,height", [(1366, 768), (2560, 1440)])
def test_flip_report_page(driver, stack, story, width, height):
    v2 = story["v2"]
    report = story["api"].ok(story["api"].http.get(f"/models/{v2['id']}/flips", params={"page_size": 1}))
    figures, reference = report["figures"], report["reference"]
    driver.set_window_size(width, height)
    try:
        open_page(driver, stack, f"/dashboard/models/{v2['id']}/flips")
        cards = css(driver, "#headline .card")
        assert len(cards) == 6
        avoided = reference["scopes"]["all"]["negative_flips"] - figures["scopes"]["all"]["negative_flips"]
        assert css(driver, "#avoided .card-value")[0].text == str(avoided)
        assert f"{figures['scopes']['old_classes']['nfr'] * 100:.2f}%" in cards[0].text
        # One bar per old class for the model and one for the independent retrain.
        assert len(css(driver, "#per-class svg.bar-chart rect.mark")) == 2 * len(OLD)
        # Negative and positive flips in two matrices: never one number for both kinds.
        for kind in ("negative", "positive"):
            pairs = {(t["old_prediction"], t["new_prediction"]) for t in figures["transitions"] if t["kind"] == kind}
            assert len(css(driver, f"#matrix-{kind} td.cell.mark")) == len(pairs)
            assert len(css(driver, f"#matrix-{kind} tbody tr")) == len(OLD)
        legend = css(driver, "#transitions .legend")[0].text
        assert "negative flips" in legend and "positive flips" in legend
        assert css(driver, "#gallery-count")[0].text.startswith(f"{report['samples']['total']} ")
        flips = css(driver, "ul.gallery li.flip")
        assert len(flips) == min(report["samples"]["total"], 50)
        assert all(img.get_attribute("loading") == "lazy" for img in css(driver, "ul.gallery img"))
        driver.execute_script("document.querySelector('ul.gallery').scrollIntoView()")
        WebDriverWait(driver, WAIT_S).until(lambda d: loaded_images(d) >= 1)
        driver.execute_script("window.scrollTo(0, 0)")
        # Nothing wider than the window; a wide monitor fits more gallery columns.
        assert driver.execute_script("return document.documentElement.scrollWidth <= innerWidth")
        columns = len({flip.location["x"] for flip in flips})
        assert columns >= (4 if width == 1366 else 7), columns
        assert severe_messages(driver) == []
        screenshot(driver, "flip-report", width=width)
    finally:
        driver.set_window_size(1366, 768)


def test_gallery_filters_and_pages(driver, stack, story):
    api, v2 = story["api"], story["v2"]
    open_page(driver, stack, f"/dashboard/models/{v2['id']}/flips")

    Select(css(driver, "#filter-kind")[0]).select_by_value("negative")
    css(driver, "#filter-apply")[0].click()
    WebDriverWait(driver, WAIT_S).until(lambda d: "kind=negative" in d.current_url)
    negatives = api.ok(api.http.get(f"/models/{v2['id']}/flips", params={"kind": "negative"}))["samples"]
    kinds = [flip.get_attribute("data-kind") for flip in css(driver, "ul.gallery li.flip")]
    assert len(kinds) == min(negatives["total"], 50) and set(kinds) <= {"negative"}
    assert css(driver, "#gallery-count")[0].text.startswith(f"{negatives['total']} ")
    assert severe_messages(driver) == []
    screenshot(driver, "flip-report-negative")

    everything = api.ok(api.http.get(f"/models/{v2['id']}/flips", params={"page_size": 500}))["samples"]["items"]
    label = max({row["label"] for row in everything}, key=lambda c: sum(r["label"] == c for r in everything))
    Select(css(driver, "#filter-kind")[0]).select_by_value("")
    Select(css(driver, "#filter-label")[0]).select_by_value(str(label))
    css(driver, "#filter-apply")[0].click()
    WebDriverWait(driver, WAIT_S).until(lambda d: f"label={label}" in d.current_url)
    labels = {flip.get_attribute("data-label") for flip in css(driver, "ul.gallery li.flip")}
    assert labels == {str(label)}
    expected = sum(row["label"] == label for row in everything)
    assert css(driver, "#gallery-count")[0].text.startswith(f"{expected} ")
    assert severe_messages(driver) == []

    # Server-side pages: the second page holds the next samples in ledger order.
    open_page(driver, stack, f"/dashboard/models/{v2['id']}/flips?page_size=20")
    first = [flip.get_attribute("data-sample") for flip in css(driver, "ul.gallery li.flip")]
    css(driver, ".pager a[rel=next]")[0].click()
    WebDriverWait(driver, WAIT_S).until(lambda d: "page=2" in d.current_url)
    second = [flip.get_attribute("data-sample") for flip in css(driver, "ul.gallery li.flip")]
    assert first == [str(row["sample_index"]) for row in everything[:20]]
    assert second == [str(row["sample_index"]) for row in everything[20:40]]


def test_dataset_list_and_page(driver, stack, story):
    dataset = story["dataset"]
    open_page(driver, stack, "/dashboard/datasets")
    row = css(driver, f'tr[data-dataset-row="{dataset["id"]}"]')[0]
    assert dataset["name"] in row.text and "ready" in row.text and "60000" in row.text and "10000" in row.text
    screenshot(driver, "datasets")
    row.find_element(By.TAG_NAME, "a").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.current_url.endswith(f"/dashboard/datasets/{dataset['id']}"))
    assert severe_messages(driver) == []
    classes = css(driver, "li.class-sample")
    assert [item.find_element(By.CSS_SELECTOR, ".class-name").text.split(" ", 1)[1] for item in classes] == dataset[
        "classes"
    ]
    # Sample images stored by the worker at inspection, served without torch.
    WebDriverWait(driver, WAIT_S).until(
        lambda d: (
            d.execute_script(
                "return [...document.querySelectorAll('.thumbs img')]"
                ".filter(i => i.complete && i.naturalWidth > 0).length"
            )
            >= len(classes)
        )
    )
    assert "1 × 28 × 28" in css(driver, "#dataset-facts")[0].text
    screenshot(driver, "dataset")


def test_update_form_validates_like_the_api(driver, stack, story):
    api, v1, dataset = story["api"], story["v1"], story["dataset"]
    open_page(driver, stack, f"/dashboard/updates/new?base={v1['id']}&dataset={dataset['id']}")
    assert Select(css(driver, "#field-method")[0]).first_selected_option.text == "mpt-kl"
    css(driver, "#field-classes")[0].send_keys("T-shirt/top, Trouser, Pullover, Dress, Coat, Unicorn")
    css(driver, "#field-recipe-epochs")[0].send_keys("0")
    jobs_before = api.ok(api.http.get("/updates"))["total"]
    css(driver, "#update-submit")[0].click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, "form-errors"))
    # The schema's error sits beside its field; nothing was submitted.
    assert "greater than or equal to 1" in css(driver, "#error-recipe-epochs")[0].text
    assert api.ok(api.http.get("/updates"))["total"] == jobs_before
    screenshot(driver, "update-form-errors")
    # Then the service's check of the class names, beside the classes field.
    epochs = css(driver, "#field-recipe-epochs")[0]
    epochs.clear()
    epochs.send_keys(str(SMALL_RECIPE["epochs"]))
    css(driver, "#update-submit")[0].click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, "error-classes"))
    assert "Unicorn" in css(driver, "#error-classes")[0].text and not css(driver, "#error-recipe-epochs")
    classes = css(driver, "#field-classes")[0]
    classes.clear()
    classes.send_keys(", ".join([*OLD, "Sandal"]))
    for field, value in (("train_samples_per_class", 60), ("eval_samples_per_class", 40), ("batch_size", 64)):
        css(driver, f"#field-recipe-{field}")[0].send_keys(str(value))
    severe_messages(driver)  # the browser logs the refused submissions (422) itself
    css(driver, "#update-submit")[0].click()
    WebDriverWait(driver, WAIT_S).until(lambda d: "/dashboard/jobs/" in d.current_url)
    assert severe_messages(driver) == []
    job = api.ok(api.http.get("/updates/" + driver.current_url.rsplit("/", 1)[1]))
    assert job["base_model_id"] == v1["id"] and job["classes"] == [*OLD, "Sandal"] and job["recipe"]["epochs"] == 1
    api.wait_job(job["id"])


def test_compare_any_two_versions(driver, stack, story):
    v1, v2 = story["v1"], story["v2"]
    open_page(driver, stack, "/dashboard/compare")
    # v1 against v2: the other direction of the stored report, computed on demand.
    Select(css(driver, "#compare-model")[0]).select_by_value(str(v1["id"]))
    Select(css(driver, "#compare-against")[0]).select_by_value(str(v2["id"]))
    css(driver, "#compare-submit")[0].click()
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_elements(By.ID, "comparison-progress") or "/flips" in d.current_url
    )
    if css(driver, "#comparison-progress"):
        screenshot(driver, "compare-computing")
    # The page reloads itself until the worker has stored the report, then shows it.
    WebDriverWait(driver, 180).until(lambda d: "/flips?against=" in d.current_url)
    assert f"/dashboard/models/{v1['id']}/flips?against={v2['id']}" in driver.current_url
    assert severe_messages(driver) == []
    assert "computed on demand" in css(driver, ".page-head .sub")[0].text
    cards = css(driver, "#headline .card")
    assert len(cards) == 6 and css(driver, "#matrix-negative") and css(driver, "#matrix-positive")
    screenshot(driver, "compare-report")
    # Asking again answers at once from the stored report.
    open_page(driver, stack, f"/dashboard/compare?model={v1['id']}&against={v2['id']}")
    assert "/flips?against=" in driver.current_url
    # A version against itself is refused beside the field (a 422 page, which the browser logs).
    driver.get(f"{stack.url}/dashboard/compare?model={v1['id']}&against={v1['id']}")
    severe_messages(driver)
    assert "itself" in css(driver, "#compare-error-against")[0].text
    screenshot(driver, "compare")


def test_cancel_from_the_job_page(driver, stack, story):
    api = story["api"]
    long_recipe = RECIPE | {"epochs": 200, "train_samples_per_class": 300}
    job = api.submit(
        {
            "base_model_id": story["v1"]["id"],
            "dataset_id": story["dataset"]["id"],
            "method": "mpt-kl",
            "method_params": {"bias": 4.0},  # one student: its phase reads "training"
            "recipe": long_recipe,
        }
    )
    api.wait_job(job["id"], statuses=("running",), timeout_s=120)
    open_page(driver, stack, f"/dashboard/jobs/{job['id']}")
    # Live: the page's script polls the job and estimates the time left from its progress.
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "job-eta").text.startswith("≈"))
    assert css(driver, "#job-phase")[0].text in ("reference", "training")
    screenshot(driver, "job-running")
    css(driver, "#cancel-button")[0].click()
    driver.switch_to.alert.accept()
    # The job ends cancelled; the page reloads itself into its final state.
    WebDriverWait(driver, 120).until(
        lambda d: "cancelled" in d.find_element(By.ID, "job-status").text and not css(d, "#cancel-button")
    )
    assert api.ok(api.http.get(f"/updates/{job['id']}"))["status"] == "cancelled"
    assert severe_messages(driver) == []
    screenshot(driver, "job-cancelled")


def test_forced_promotion_needs_a_confirmation(driver, stack, story):
    api, v1, v2 = story["api"], story["v1"], story["v2"]
    open_page(driver, stack, f"/dashboard/models/{v2['id']}")
    error = css(driver, "#promote-error")[0]

    # Forcing asks for a reason before anything is sent.
    assert css(driver, "#promote-force")[0].is_selected()
    css(driver, "#promote-button")[0].click()
    assert "needs a reason" in error.text and "/promote" not in driver.current_url

    # Without force: the confirmation page says the promotion will be refused; confirming shows why.
    css(driver, "#promote-force")[0].click()
    assert not css(driver, "#reason-field")[0].is_displayed()
    css(driver, "#promote-button")[0].click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, "confirm-form"))
    assert "will be refused" in css(driver, "#confirm")[0].text
    css(driver, "#confirm-button")[0].click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, "confirm-error"))
    assert "not a candidate" in css(driver, "#confirm-error")[0].text
    severe_messages(driver)  # the refused confirmation (409) is logged by the browser
    assert api.ok(api.http.get(f"/models/{v2['id']}"))["status"] == "rejected"

    # Forced with a reason: the model page only opens the confirmation, which names what changes.
    open_page(driver, stack, f"/dashboard/models/{v2['id']}")
    reason = "accepted for the new classes; old-class regressions reviewed by hand"
    css(driver, "#promote-reason")[0].send_keys(reason)
    css(driver, "#promote-button")[0].click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, "confirm-form"))
    assert severe_messages(driver) == []
    consequences = css(driver, "#confirm")[0].text
    assert "becomes the family's production version" in consequences
    assert f"{v1['family']} v{v1['version']}" in consequences and "archived" in consequences
    assert "overridden" in consequences and css(driver, "#confirm-reason")[0].get_attribute("value") == reason
    assert api.ok(api.http.get(f"/models/{v2['id']}"))["status"] == "rejected", "nothing happens before confirming"
    screenshot(driver, "promote-confirm")

    # Cancel goes back without promoting; confirming promotes.
    css(driver, "#confirm-cancel")[0].click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.current_url.endswith(f"/dashboard/models/{v2['id']}"))
    assert api.ok(api.http.get(f"/models/{v2['id']}"))["status"] == "rejected"
    driver.back()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, "confirm-button"))
    css(driver, "#confirm-button")[0].click()
    WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: "production" in d.find_element(By.CSS_SELECTOR, "h1 .badge").text
    )
    assert css(driver, "#promotion-reason")[0].text == reason
    promoted = api.ok(api.http.get(f"/models/{v2['id']}"))
    assert promoted["status"] == "production" and promoted["forced"] and promoted["promotion_reason"] == reason
    # The page names who promoted: the stack's token, whose cookie the driver logged in with.
    assert re.fullmatch(rf"token \d+ 'stack-{stack.port}'", promoted["promoted_by"]), promoted["promoted_by"]
    assert css(driver, "#promoted-by")[0].text == promoted["promoted_by"]
    assert api.ok(api.http.get(f"/models/{v1['id']}"))["status"] == "archived"
    assert severe_messages(driver) == []
    screenshot(driver, "model-v2-promoted")


def test_missing_pages_are_html_404s(driver, stack, story):
    driver.get(stack.url + "/dashboard/models/9999")
    assert "model 9999 does not exist" in css(driver, ".error-message")[0].text
