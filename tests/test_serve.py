"""serve.py as a user runs it: a real server on a free loopback port, real HTTP requests (good ones, bad ones, many
at once), and the same answers predict.py gives."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import (
    ROOT,
    TINY_IMAGE,
    TINY_SPEECH,
    TINY_TRANSLATION,
    cli,
    digit_images,
    predict_here,
    recordings,
    reviews_csv,
    train_here,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, dict | str]:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def _multipart(name: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """An image, a sentiment, a speech and a translation server, each started as `python serve.py ...` on its own
    loopback port; and servers of three export folders: the image model as ONNX, the recurrent sentiment model as
    torch.export's program, the translator as ONNX (name_onnx, text_pt2)."""
    from src.export import export

    root = tmp_path_factory.mktemp("serve")
    train_here(root / "image", *TINY_IMAGE)
    train_here(root / "text", "task=sentiment", "data=text_csv", f"data.path={reviews_csv(root / 'reviews.csv')}",
               "model.hidden=16", "model.embed_dim=16", "trainer.max_epochs=1", f"paths.cache_dir={root / 'cache'}")
    train_here(root / "speech", *TINY_SPEECH, f"paths.cache_dir={root / 'cache'}")
    train_here(root / "translation", *TINY_TRANSLATION, f"paths.cache_dir={root / 'cache'}")
    clips = recordings(root, 4)
    images = digit_images(root / "digits", 8)
    paths = {name: root / name / "checkpoints" / "last.ckpt" for name in ("image", "text", "speech", "translation")}
    for name, fmt, short in (("image", "onnx", "onnx"), ("text", "torch_export", "pt2"),
                             ("translation", "onnx", "onnx")):
        paths[f"{name}_{short}"] = export(str(paths[name]), fmt, out_dir=str(root / f"{name}_{short}"))
    started = {}
    for name, ckpt in paths.items():
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "serve.py", f"ckpt_path={ckpt}", f"port={port}", "device=cpu",
                                 "max_text_chars=200", "max_body_bytes=200000", "max_wait_ms=20"],
                                cwd=ROOT, stdout=open(root / f"{name}.log", "w"), stderr=subprocess.STDOUT)
        started[name] = (proc, f"http://127.0.0.1:{port}", ckpt)
    for name, (proc, url, _) in started.items():
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, (root / f"{name}.log").read_text()
            try:
                if _request(url + "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
    yield {**{k: (url, ckpt) for k, (_, url, ckpt) in started.items()}, "images": images, "clips": clips}
    for proc, _, _ in started.values():
        proc.terminate()
        proc.wait(timeout=30)


def test_a_server_answers_as_predict_py_does(servers, tmp_path):
    url, ckpt = servers["image"]
    status, info = _request(url + "/info")
    assert status == 200 and info["task"] == "image" and info["labels"] == [str(i) for i in range(10)]
    files = servers["images"]
    (listed := tmp_path / "list.txt").write_text("\n".join(map(str, files)) + "\n")
    expected = predict_here(ckpt, f"inputs={listed}")
    for path, want in zip(files, expected):
        status, got = _request(url + "/predict", path.read_bytes(), "image/png")  # the file as the body
        assert status == 200 and got["prediction"] == want["prediction"] and got["top_k"] == want["top_k"]
        body, kind = _multipart(path.name, path.read_bytes(), "image/png")  # ... or as a form's file
        status, got = _request(url + "/predict", body, kind)
        assert status == 200 and got["input"] == path.name and got["top_k"] == want["top_k"]
    text_url, text_ckpt = servers["text"]
    want = predict_here(text_ckpt, "input=a gorgeous witty film")[0]
    status, got = _request(text_url + "/predict", json.dumps({"input": "a gorgeous witty film"}).encode(),
                           "application/json")
    assert status == 200 and got["prediction"] == want["prediction"] and got["top_k"] == want["top_k"]
    speech_url, speech_ckpt = servers["speech"]
    for clip in servers["clips"]:
        want = predict_here(speech_ckpt, f"input={clip}")[0]
        status, got = _request(speech_url + "/predict", clip.read_bytes(), "audio/wav")
        assert status == 200 and got["prediction"] == want["prediction"] and got["top_k"] == want["top_k"]
    status, got = _request(speech_url + "/predict", b"RIFF not really", "audio/wav")
    assert status == 422 and "not an audio file" in got["error"]
    status, page = _request(url + "/")
    assert status == 200 and "<title>gradlab: image</title>" in page and "/predict" in page


PHRASES = ["twenty-three", "four hundred and five thousand", "nineteen"]


def _ask(url: str, text: str) -> dict:
    status, answer = _request(url + "/predict", json.dumps({"input": text}).encode(), "application/json")
    assert status == 200, answer
    return answer


def test_a_translation_server_answers_as_predict_py_does_with_its_attention(servers):
    url, ckpt = servers["translation"]
    for phrase in PHRASES:
        want, got = predict_here(ckpt, f"input={phrase}")[0], _ask(url, phrase)
        assert got["translation"] == want["translation"] and got["log_prob"] == want["log_prob"]
        table = got["attention"]  # what the page draws: a row over the source tokens for each output token
        assert len(table["weights"]) == len(table["target"]) >= 1 and table["source"][-1] == "[EOS]"
        assert all(len(row) == len(table["source"]) and abs(sum(row) - 1) < 1e-2 for row in table["weights"])


@pytest.mark.parametrize("name", ["image_onnx", "text_pt2", "translation_onnx"])
def test_an_export_folder_is_served_as_its_checkpoint_is(servers, name):
    """serve.py ckpt_path=<export folder>: ONNX Runtime (or torch.export's program) behind the same reading and
    batching; the answers are the checkpoint server's, to float rounding."""
    url, folder = servers[name]
    base_url, _ = servers[name.split("_")[0]]
    status, info = _request(url + "/info")
    assert status == 200 and info["version"]["folder"] == str(folder) and info["task"] in name.replace("text",
                                                                                                       "sentiment")
    if name.startswith("image"):
        answers = [(_request(url + "/predict", p.read_bytes(), "image/png")[1],
                    _request(base_url + "/predict", p.read_bytes(), "image/png")[1]) for p in servers["images"]]
    else:
        texts = PHRASES if name.startswith("translation") else ["a gorgeous witty film", "a dull , tedious mess"]
        answers = [(_ask(url, t), _ask(base_url, t)) for t in texts]
    for got, want in answers:
        if "translation" in want:
            assert got["translation"] == want["translation"] and abs(got["log_prob"] - want["log_prob"]) < 1e-3
            assert got["attention"]["target"] == want["attention"]["target"]
            assert max(abs(a - b) for r, q in zip(got["attention"]["weights"], want["attention"]["weights"])
                       for a, b in zip(r, q)) < 1e-3
        else:
            assert got["prediction"] == want["prediction"]
            assert [c for c, _ in got["top_k"]] == [c for c, _ in want["top_k"]]
            assert max(abs(p - q) for (_, p), (_, q) in zip(got["top_k"], want["top_k"])) < 1e-4


def test_serve_refuses_a_folder_that_export_did_not_write(tmp_path):
    code, _, err = cli("serve.py", f"ckpt_path={tmp_path}")
    assert code == 2 and f"ckpt_path={tmp_path} is a folder without model.json" in err


@pytest.mark.parametrize("server,body,kind,status,words", [
    ("image", b"", "image/png", 400, "no body"),
    ("image", b"hello", "text/plain", 415, "Content-Type text/plain"),
    ("image", b"not a png at all", "image/png", 422, "not an image"),
    ("image", b"x" * 300000, "image/png", 413, "max_body_bytes=200000"),
    ("image_onnx", b"not a png at all", "image/png", 422, "not an image"),
    ("translation_onnx", b"{\"input\": \"   \"}", "application/json", 422, "the input is empty"),
    ("text", b"{\"input\": ", "application/json", 400, "not valid JSON"),
    ("text", b"{\"text\": \"hi\"}", "application/json", 400, "no \"input\" string"),
    ("text", b"{\"input\": \"   \"}", "application/json", 422, "the input is empty"),
    ("text", json.dumps({"input": "word " * 100}).encode(), "application/json", 413, "max_text_chars=200"),
    ("text", b"a gorgeous film", "text/plain", 415, "application/json"),
])
def test_a_bad_request_gets_a_4xx_naming_the_problem_and_the_server_goes_on(servers, server, body, kind, status,
                                                                             words):
    url, _ = servers[server]
    got_status, got = _request(url + "/predict", body, kind)
    assert got_status == status and words in got["error"], got
    assert _request(url + "/health") == (200, {"status": "ok"})


def test_requests_that_arrive_together_are_predicted_in_batches(servers):
    url, _ = servers["image"]
    before = _request(url + "/info")[1]
    files = [p.read_bytes() for p in servers["images"]] * 8
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda data: _request(url + "/predict", data, "image/png"), files))
    assert all(status == 200 for status, _ in answers)
    singles = {i: _request(url + "/predict", data, "image/png")[1]["top_k"] for i, data in
               enumerate(files[:len(servers["images"])])}
    for i, (_, answer) in enumerate(answers):  # a batched answer is the answer alone (to float rounding)
        alone = singles[i % len(singles)]
        assert [c for c, _ in answer["top_k"]] == [c for c, _ in alone]
        assert max(abs(p - q) for (_, p), (_, q) in zip(answer["top_k"], alone)) < 1e-5
    after = _request(url + "/info")[1]
    inputs, batches = after["inputs"] - before["inputs"], after["batches"] - before["batches"]
    assert inputs >= len(files) and batches < inputs  # some requests shared a batch


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_page_shows_a_prediction_in_a_real_browser(servers, tmp_path):
    """Headless chromium (Debian's, which .ci/run installs) driven by Playwright: a sentence typed on the sentiment
    server's page, an image chosen on the image server's (each prediction appears with its bars), a phrase on the
    translator's (the translation and its attention heat-map), and a recording from the microphone on the speech
    server's (chromium's fake microphone, a beep, recorded and sent as WAV by the page)."""
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no chromium here: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    predicted = "document.getElementById('prediction').textContent.length > 0"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        page = browser.new_context(permissions=["microphone"]).new_page()
        page.goto(servers["text"][0] + "/")
        page.fill("#text", "a gorgeous witty film")
        page.click("#send")
        page.wait_for_function(predicted, timeout=30000)
        assert page.text_content("#prediction") in ("pos", "neg")
        assert page.locator("#bars .row").count() == 2 and page.locator("#record").is_hidden()
        page.screenshot(path=str(tmp_path / "sentiment.png"))
        page.goto(servers["image"][0] + "/")
        page.set_input_files("#file", str(servers["images"][0]))
        page.wait_for_function(predicted, timeout=30000)
        assert page.text_content("#prediction") in [str(i) for i in range(10)]
        assert page.locator("#bars .row").count() == 3 and page.text_content("#error") == ""
        page.screenshot(path=str(tmp_path / "image.png"))
        page.goto(servers["translation"][0] + "/")
        page.fill("#text", PHRASES[1])
        page.click("#send")  # (a briefly trained translator may answer with nothing: wait for the heat-map)
        page.wait_for_function("!document.getElementById('attention').hidden", timeout=30000)
        want = _ask(servers["translation"][0], PHRASES[1])
        assert page.text_content("#prediction") == want["translation"] and page.locator("#attention").is_visible()
        assert page.locator("#attention tbody tr").count() == len(want["attention"]["target"])
        assert page.locator("#attention thead th").count() == len(want["attention"]["source"]) + 1
        page.screenshot(path=str(tmp_path / "translation.png"))
        page.goto(servers["speech"][0] + "/")
        page.click("#record")
        page.wait_for_function("document.getElementById('recording').textContent === 'recording...'", timeout=10000)
        page.wait_for_timeout(1500)
        page.click("#record")
        page.wait_for_function(predicted, timeout=30000)
        assert page.text_content("#prediction") in ("yes", "no", "stop") and page.text_content("#error") == ""
        assert page.locator("#bars .row").count() == 3
        page.screenshot(path=str(tmp_path / "speech.png"))
        browser.close()
    for name in ("sentiment", "image", "translation", "speech"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
