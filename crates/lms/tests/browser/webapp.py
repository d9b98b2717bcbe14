"""The web app in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`)
driven by Selenium, against the `lms server` at $LMS_URL with the default model. Each step clicks
and types as a person would, and fails with what the page showed. Screenshots of each page go to
$SCREENSHOTS (wide and narrow windows).

    LMS_URL=http://127.0.0.1:1234 SCREENSHOTS=/tmp/shots python webapp.py
"""

import os
import sys

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ.get("LMS_URL", "")
SHOTS = os.environ["SCREENSHOTS"]
MODEL = "gemma-3-270m"


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait(driver, what, check, seconds=120):
    """Waits until `check(driver)` is truthy; fails naming `what`, with the page's error banner. An
    element that the page re-rendered between finding it and reading it (stale) is looked up again
    at the next poll, as one not there yet is."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.1, ignored_exceptions=ignored).until(lambda d: check(d))
    except Exception:
        banner = driver.find_element(By.ID, "banner")
        said = banner.text if banner.is_displayed() else "(no error shown)"
        status = driver.find_element(By.ID, "load-status").text
        table = driver.find_element(By.ID, "models-table").get_attribute("innerText")
        sys.exit(f"timed out waiting for {what}; the page said: {said}; load status: {status!r}; models: {table!r}")


def by_id(driver, id):
    return driver.find_element(By.ID, id)


def shot(driver, name):
    driver.save_screenshot(os.path.join(SHOTS, name + ".png"))


def download():
    """The Models page downloads $LMS_DOWNLOAD from the server's hub: the progress bar fills, the
    status says it is done and checked, and the model appears in the list."""
    driver = browser()
    try:
        driver.get(URL + "/#models")
        wait(driver, "the models page", lambda d: d.find_element(By.ID, "download-model").is_displayed(), 10)
        by_id(driver, "download-model").send_keys(os.environ["LMS_DOWNLOAD"])
        by_id(driver, "download-run").click()
        wait(driver, "the download to finish", lambda d: "downloaded" in d.find_element(By.ID, "download-status").text)
        bar = by_id(driver, "download-progress")
        value, top = float(bar.get_attribute("value")), float(bar.get_attribute("max"))
        if not bar.is_displayed() or value != top or top <= 1:
            sys.exit(f"the progress bar is not full: {value} of {top}")
        if "MiB, checked" not in by_id(driver, "download-status").text:
            sys.exit("the status does not give the size: " + by_id(driver, "download-status").text)
        wait(driver, "the model in the list", lambda d: d.find_elements(By.CSS_SELECTOR, "#models-table tbody tr"), 10)
        shot(driver, "models-downloaded")
        print("ok")
    finally:
        driver.quit()


def api_rate(body):
    """Streams `body` through /api/v0/completions from here (no browser): the server's tok/s."""
    import json
    import urllib.request
    request = urllib.request.Request(URL + "/api/v0/completions", data=json.dumps({**body, "stream": True}).encode(),
                                     headers={"Content-Type": "application/json"})
    rate = None
    with urllib.request.urlopen(request) as reply:
        for line in reply:
            line = line.decode().strip()
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("stats"):
                    rate = (chunk["stats"]["tokens_per_second"], chunk["usage"]["completion_tokens"])
    return rate


def bench(out):
    """Issue 31, item 5: a completion of 1,000 tokens streamed into the page against the same
    request from a plain HTTP client, interleaved; the server's tok/s for each, and how long the
    page's frames took while the fragments arrived (a frame gap over 50 ms is the tab falling
    behind). Writes a markdown table to `out`; asserts nothing."""
    import statistics
    rounds = int(os.environ.get("LMS_BENCH_ROUNDS", "3"))
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 1000, "temperature": 0.8, "seed": 7,
            "ignore_eos": True}
    driver = browser()
    page, plain, gaps, frames, fragments, probed = [], [], [], [], [], []
    try:
        driver.get(URL + "/#complete")
        wait(driver, "the model picker", lambda d: any(o.get_attribute("value") == MODEL
             for o in d.find_elements(By.CSS_SELECTOR, "#model option")))
        by_id(driver, "model").send_keys(MODEL)
        for field, value in [("complete-prompt", body["prompt"]), ("complete-max-tokens", "1000"),
                             ("complete-temperature", "0.8"), ("complete-seed", "7")]:
            by_id(driver, field).clear()
            by_id(driver, field).send_keys(value)
        by_id(driver, "complete-ignore-eos").click()
        api_rate({**body, "max_tokens": 8})  # the model loaded and warm for both
        def run(probe):
            if probe:
                driver.execute_script("""
                    window.__frames = []; let last = performance.now();
                    const tick = (t) => { window.__frames.push(t - last); last = t; if (!window.__stop) requestAnimationFrame(tick); };
                    window.__stop = false; requestAnimationFrame(tick);""")
            by_id(driver, "complete-run").click()
            wait(driver, "the 1,000-token completion", lambda d: d.find_element(By.ID, "complete-stats").get_attribute("data-stop-reason"), 600)
            stats = by_id(driver, "complete-stats").text
            if probe:
                driver.execute_script("window.__stop = true;")
                frame_ms = driver.execute_script("return window.__frames.slice(1);")
                gaps.append(max(frame_ms) if frame_ms else float("nan"))
                frames.append(statistics.median(frame_ms) if frame_ms else float("nan"))
                probed.append(float(stats.split(" tok/s")[0].split(" · ")[-1]))
                return
            page.append(float(stats.split(" tok/s")[0].split(" · ")[-1]))
            fragments.append(int(stats.split(" tokens")[0]))
        for _ in range(rounds):
            run(False)
            rate, _ = api_rate(body)
            plain.append(rate)
        # The frame probe keeps the page drawing 60 times a second, which costs the machine
        # itself: one round of its own.
        run(True)
    finally:
        driver.quit()
    med = statistics.median
    threads = os.environ.get("LMS_BENCH_THREADS", "2")
    table = (
        f"## The model on {threads} thread{'s' if threads != '1' else ''}\n\n"
        "`scripts/bench-webapp` (headless Chromium, the default model, `Once upon a time`, 1,000 tokens at temperature 0.8 past the end of text, "
        f"{rounds} rounds interleaved: the page, then the same request from a plain HTTP client). tok/s: the server's own figure "
        "for each stream. Frames: the page's requestAnimationFrame intervals while the fragments arrived "
        "(16.7 ms is 60 frames per second; the longest is where the tab would fall behind), in a round of its own: the probe "
        f"makes the page draw every frame, which costs the machine ({probed[0]:.1f} tok/s in that round).\n\n"
        "| | tok/s (median) | tokens | median frame ms | longest frame ms |\n|---|---|---|---|---|\n"
        f"| the web app | {med(page):.1f} | {med(fragments)} | {med(frames):.1f} | {max(gaps):.1f} |\n"
        f"| plain HTTP client | {med(plain):.1f} | | | |\n\n"
        f"The page against the plain client: {med(page) / med(plain):.2f}x. Rounds: page {[round(r, 1) for r in page]}, "
        f"plain {[round(r, 1) for r in plain]}.\n"
    )
    with open(out, "a") as f:
        f.write(table + "\n")
    print(table)
    print("ok")


def serve(port, cache):
    """`lms server start` on `port` (the binary at $LMS_BIN), once it says it listens."""
    import subprocess
    env = {**os.environ, "LMSTUDIO_PROMPT_CACHE_DIR": cache}
    server = subprocess.Popen([os.environ["LMS_BIN"], "server", "start", "--port", str(port), "--no-discovery-port"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in server.stderr:
        if "listening on" in line:
            import threading
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # keep draining
            return server
    sys.exit("the server ended before it listened")


def reconnect():
    """A server that goes away and comes back on the same port: the chat says the connection was
    lost and keeps the turn; the page reconnects by itself; Regenerate then answers, the model
    loaded on demand by the new server with the load shown in the answer's stats."""
    import socket
    import tempfile
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = tempfile.mkdtemp(prefix="lms-webapp-reconnect-")
    server = serve(port, cache)
    driver = browser()
    try:
        url = f"http://127.0.0.1:{port}"
        driver.get(url + "/#chat")
        wait(driver, "the model picker", lambda d: any(o.get_attribute("value") == MODEL
             for o in d.find_elements(By.CSS_SELECTOR, "#model option")))
        by_id(driver, "model").send_keys(MODEL)
        server.terminate()
        server.wait(30)
        box = by_id(driver, "chat-input")
        box.send_keys("Say hello.")
        box.send_keys(Keys.ENTER)
        connection = lambda d: d.find_element(By.ID, "connection").text if d.find_element(By.ID, "connection").is_displayed() else ""
        wait(driver, "the lost connection to show", lambda d: "reconnecting" in connection(d), 30)
        answer = lambda d: d.find_elements(By.CSS_SELECTOR, "#messages li.assistant")
        wait(driver, "the turn marked cut short", lambda d: "connection was lost" in answer(d)[-1].find_element(By.CLASS_NAME, "stats").text, 10)
        if by_id(driver, "banner").is_displayed():
            sys.exit("an error banner beside the connection line: " + by_id(driver, "banner").text)
        shot(driver, "chat-reconnecting")
        server = serve(port, cache)
        wait(driver, "the page to reconnect", lambda d: "Reconnected" in connection(d), 30)
        if by_id(driver, "banner").is_displayed():
            sys.exit("the error stayed after reconnecting: " + by_id(driver, "banner").text)
        by_id(driver, "chat-regenerate").click()
        stats = lambda d: answer(d)[-1].find_element(By.CLASS_NAME, "stats").text if answer(d) else ""
        wait(driver, "the answer after reconnecting", lambda d: "tok/s" in stats(d))
        if "model loaded in" not in stats(driver):
            sys.exit("the answer's stats do not show the load on demand: " + stats(driver))
        if len(answer(driver)) != 1:
            sys.exit(f"Regenerate left {len(answer(driver))} answers, not one")
        print("ok")
    finally:
        driver.quit()
        server.terminate()
        server.wait(30)
        import shutil
        shutil.rmtree(cache, ignore_errors=True)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    if os.environ.get("LMS_DOWNLOAD"):
        return download()
    if os.environ.get("LMS_RECONNECT"):
        return reconnect()
    if os.environ.get("LMS_BENCH"):
        return bench(os.environ["LMS_BENCH"])
    driver = browser()
    try:
        driver.get(URL + "/")
        # The model picker lists the default model (downloaded; loaded on first use).
        wait(driver, "the model picker", lambda d: any(o.get_attribute("value") == MODEL
             for o in d.find_elements(By.CSS_SELECTOR, "#model option")))
        by_id(driver, "model").send_keys(MODEL)
        # The Logs page, first: from then on the server records prompts and answers for it.
        by_id(driver, "nav-logs").click()
        wait(driver, "the log to go live", lambda d: d.find_element(By.ID, "logs-state").text == "live", 10)
        by_id(driver, "nav-chat").click()

        # Chat: a turn streams, then its stats.
        box = by_id(driver, "chat-input")
        box.send_keys("Write one sentence about the sea.")
        box.send_keys(Keys.ENTER)
        answer = lambda d: d.find_elements(By.CSS_SELECTOR, "#messages li.assistant")
        wait(driver, "the answer's stats", lambda d: "tok/s" in (answer(d)[-1].find_element(By.CLASS_NAME, "stats").text if answer(d) else ""))
        last = answer(driver)[-1]
        if not last.find_element(By.CLASS_NAME, "content").text.strip():
            sys.exit("the answer is empty")
        stats = last.find_element(By.CLASS_NAME, "stats").text
        for part in ["tokens", "TTFT", "tok/s", "stop:"]:
            if part not in stats:
                sys.exit(f"the stats line lacks {part!r}: {stats}")
        shot(driver, "chat")

        # Stop cuts an answer: a long one, stopped once it has begun.
        driver.find_element(By.CSS_SELECTOR, ".settings summary").click()
        tokens = by_id(driver, "chat-max-tokens")
        tokens.clear()
        tokens.send_keys("2000")
        box.send_keys("Tell me a very long story about a lighthouse keeper.")
        box.send_keys(Keys.ENTER)
        wait(driver, "the long answer to begin", lambda d: len(answer(d)) == 2 and len(answer(d)[-1].find_element(By.CLASS_NAME, "content").text) > 20)
        by_id(driver, "chat-stop").click()
        wait(driver, "the stop to show", lambda d: "userStopped" in answer(d)[-1].find_element(By.CLASS_NAME, "stats").text)
        wait(driver, "Send to be enabled again", lambda d: d.find_element(By.ID, "chat-send").is_enabled(), 10)
        stopped_at = len(answer(driver)[-1].find_element(By.CLASS_NAME, "content").text)
        if stopped_at > 4000:
            sys.exit(f"the answer ran on after Stop ({stopped_at} characters)")

        # Complete: a raw prompt with a stop string ends with stopStringFound.
        by_id(driver, "nav-complete").click()
        prompt = by_id(driver, "complete-prompt")
        prompt.clear()
        prompt.send_keys("1, 2, 3, 4, 5,")
        temperature = by_id(driver, "complete-temperature")
        temperature.clear()
        temperature.send_keys("0")
        by_id(driver, "complete-stop").send_keys(",")
        by_id(driver, "complete-run").click()
        stats = by_id(driver, "complete-stats")
        wait(driver, "the completion's stats", lambda d: d.find_element(By.ID, "complete-stats").get_attribute("data-stop-reason"))
        reason = stats.get_attribute("data-stop-reason")
        if reason != "stopStringFound":
            sys.exit(f"the completion stopped for {reason!r}, not stopStringFound: {stats.text}")
        if "," in by_id(driver, "complete-output").text:
            sys.exit("the stop string is in the output")
        progress = by_id(driver, "complete-progress").get_attribute("value")
        if float(progress) != 1.0:
            sys.exit(f"the prompt-processing bar stopped at {progress}")
        shot(driver, "complete")

        # Models: the default model is listed, loaded (by the chat); unload, then load it again.
        by_id(driver, "nav-models").click()
        row = lambda d: d.find_element(By.CSS_SELECTOR, f'#models-table tr[data-model="{MODEL}"]')
        unloads = lambda d: row(d).find_elements(By.CSS_SELECTOR, "td.instances button")
        wait(driver, "the loaded model's Unload button", lambda d: unloads(d))
        shot(driver, "models")
        unloads(driver)[0].click()
        wait(driver, "the instance to go", lambda d: not unloads(d))
        row(driver).find_element(By.CSS_SELECTOR, "button.load").click()
        wait(driver, "the instance to come back", lambda d: unloads(d))
        state = lambda d: " ".join(e.text for e in row(d).find_elements(By.CLASS_NAME, "instance-state"))
        wait(driver, "the instance's slots and memory", lambda d: "slots" in state(d) and "MiB" in state(d), 10)
        if "2 slots" not in state(driver):
            sys.exit(f"the instance's slots are not the server's --parallel 2: {state(driver)}")

        # Logs: the completion's prompt, its answer with stats, and the server's line for it.
        by_id(driver, "nav-logs").click()
        entries = lambda d, kind: [li.text for li in d.find_elements(By.CSS_SELECTOR, f'#logs li[data-kind="{kind}"]')]
        wait(driver, "the completion's prompt in the log", lambda d: any("1, 2, 3, 4, 5," in t for t in entries(d, "input")), 10)
        wait(driver, "an answer with stats in the log", lambda d: any("tok/s" in t for t in entries(d, "output")), 10)
        wait(driver, "the server's line for the completion", lambda d: any("POST /api/v0/completions 200" in t for t in entries(d, "server")), 10)
        by_id(driver, "logs-filter").send_keys("completions")
        visible = [li for li in driver.find_elements(By.CSS_SELECTOR, "#logs li") if li.is_displayed()]
        if not visible or any("completions" not in li.text.lower() for li in visible):
            sys.exit("the log filter shows lines without the text")
        by_id(driver, "logs-filter").clear()
        by_id(driver, "logs-filter").send_keys(" ")
        by_id(driver, "logs-filter").send_keys(Keys.BACKSPACE)
        shot(driver, "logs")

        # A load the guardrail refuses (a server whose prompt cache alone is 1 TiB): the estimate
        # before, then the refusal with its figures.
        driver.get(os.environ["LMS_GUARDED_URL"] + "/#models")
        row = lambda d: d.find_element(By.CSS_SELECTOR, f'#models-table tr[data-model="{MODEL}"]')
        wait(driver, "the guarded server's models", lambda d: row(d))
        row(driver).find_element(By.CSS_SELECTOR, "button.load").click()
        wait(driver, "the refusal", lambda d: d.find_element(By.ID, "banner").is_displayed(), 30)
        refusal = by_id(driver, "banner").text
        status = by_id(driver, "load-status").text
        if "MiB are available" not in refusal or "1048576" not in refusal:
            sys.exit(f"the refusal does not give the figures: {refusal}")
        if "needs about" not in status or "more than is available" not in status:
            sys.exit(f"no estimate before the load: {status}")
        if row(driver).find_elements(By.CSS_SELECTOR, "td.instances button"):
            sys.exit("the refused model is listed as loaded")
        shot(driver, "models-refused")
        driver.get(URL + "/#chat")

        # Dark, as a system set to dark shows it.
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        by_id(driver, "nav-chat").click()
        background = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        if background in ("rgb(251, 251, 250)", "rgba(0, 0, 0, 0)"):
            sys.exit(f"the page stayed light in dark mode: {background}")
        shot(driver, "chat-dark")
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})

        # A phone's width: the same pages, readable.
        driver.set_window_size(390, 844)
        for page in ["chat", "complete", "models", "logs"]:
            by_id(driver, "nav-" + page).click()
            shot(driver, page + "-narrow")
        print("ok")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
