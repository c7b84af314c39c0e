"""serve.py's server: a checkpoint (or an export folder) loaded once, answering HTTP on FastAPI and uvicorn.

    GET  /          a page to try the model (type a sentence, or drop an image or a WAV file)
    GET  /health    {"status": "ok"}
    GET  /info      the task, labels, input kind, limits and versions
    POST /predict   JSON {"input": "<text>"} for text tasks; for images and audio the file itself, as the body
                    (Content-Type image/... or audio/...) or as the field "file" of a multipart form
                    -> the same JSON predict.py prints for one input

Requests that arrive together are predicted together: a batcher takes up to max_batch_size waiting inputs, or what
has come within max_wait_ms of the first, and runs them as one batch in a worker thread. A bad request gets a 4xx with
{"error": "..."} naming the problem; the server goes on answering others.

FastAPI rather than LitServe: LitServe runs the model in worker processes behind its own queue, which costs a start of
several seconds and a process per model; the batching gradlab needs is this file's forty lines, in one process that
tests start on a loopback port in a second.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
from fastapi import FastAPI, Request  # FastAPI reads the handlers' annotations: these names must be global
from fastapi.responses import HTMLResponse, JSONResponse
from hydra.utils import get_class

from src.checkpoint import load_task, task_name
from src.errors import UserError
from src.pipeline import pick_device, to_device
from src.records import git
from src.tasks.classification import top_k_rows

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("serve_page.html")
SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/bmp": ".bmp",
            "image/webp": ".webp", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav",
            "audio/flac": ".flac", "audio/ogg": ".ogg"}


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Model:
    """What answers: a checkpoint's task, or an export folder's graphs (ONNX Runtime, or a torch.export program), each
    with its data module's reading; and the batcher that feeds them."""

    def __init__(self, ckpt_path: str, device: str = "auto", top_k: int = 3, max_batch_size: int = 32,
                 max_wait_ms: float = 5.0):
        self.backend = Exported(Path(ckpt_path), device) if Path(ckpt_path).is_dir() else Checkpoint(ckpt_path, device)
        self.data_cls, self.info, self.name = self.backend.data_cls, self.backend.info, self.backend.name
        self.device = self.backend.device
        self.kind = self.data_cls.input_spec(self.info).get("kind", "text")
        self.top_k, self.max_batch_size, self.max_wait = top_k, max_batch_size, max_wait_ms / 1000
        self.queue: asyncio.Queue | None = None
        self.batches = 0  # how many batches were run, and how many inputs they held (for /info and tests)
        self.inputs = 0

    def read(self, raw: str):
        try:
            return self.backend.read(raw)
        except (UserError, OSError, ValueError) as e:
            raise BadRequest(422, str(e)) from None

    def run(self, samples: list) -> list[dict]:
        return self.backend.run(samples, self.top_k)

    async def predict(self, sample) -> dict:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((sample, future))
        return await future

    async def batcher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(items) < self.max_batch_size:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            try:
                results = await loop.run_in_executor(None, self.run, [s for s, _ in items])
                self.batches, self.inputs = self.batches + 1, self.inputs + len(items)
                for (_, future), result in zip(items, results):
                    future.set_result(result)
            except Exception as e:  # noqa: BLE001 - one batch failing must not stop the server
                log.exception("a batch of %d failed", len(items))
                for _, future in items:
                    if not future.done():
                        future.set_exception(BadRequest(500, f"the model failed on this batch: {e}"))


class Checkpoint:
    """A checkpoint's task on a device: predict.py's answers, with details (a translator's attention)."""

    def __init__(self, ckpt_path: str, device: str):
        self.device = pick_device(device)
        self.task = load_task(ckpt_path, map_location=self.device).to(self.device).eval()
        self.data_cls, self.info = get_class(self.task.hparams.data["_target_"]), self.task.data_info
        self.name = task_name(f"{type(self.task).__module__}.{type(self.task).__qualname__}")
        self.version = {"gradlab": git().get("commit"), "torch": torch.__version__, "checkpoint": ckpt_path}

    def read(self, raw: str):
        return self.data_cls.read_input(raw, self.info)

    def run(self, samples: list, top_k: int) -> list[dict]:
        batch = to_device(self.data_cls.collate_inputs(samples, self.info), self.device)
        with torch.inference_mode():
            return self.task.predict_batch(batch, top_k=top_k, details=True)


class Exported:
    """An export folder (export.py's): its graph run by ONNX Runtime (model.onnx; CUDA where asked for and
    installed) or torch.export.load (model.pt2), behind the data module's reading as model.json records it; a
    translator through the folder's own translate.py."""

    def __init__(self, folder: Path, device: str):
        from src.export import read_folder

        self.spec, self.data_cls, self.info = read_folder(folder)
        self.name, self.labels = self.spec["task"], self.spec["labels"]
        self.inputs = [i["name"] for i in self.spec["inputs"]]
        self.version = {"gradlab": git().get("commit"), "export": self.spec["versions"], "folder": str(folder),
                        "format": self.spec["format"]}
        providers = ["CPUExecutionProvider"]
        if self.spec["format"] == "onnx":
            import onnxruntime as ort

            if device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            elif device == "cuda":
                raise UserError("device=cuda: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu), "
                                "or use device=cpu.")
        self.device = "cuda" if providers[0].startswith("CUDA") else "cpu"
        if "decoding" in self.spec:  # a translator: the folder's decoding loop
            loader = importlib.util.spec_from_file_location("exported_translate", folder / "translate.py")
            translate = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(translate)
            self.translator = translate.Translator(folder, providers=providers)
        elif self.spec["format"] == "onnx":
            import onnxruntime as ort

            session = ort.InferenceSession(str(folder / self.spec["file"]), providers=providers)
            self.graph = lambda feeds: session.run(None, {k: v.numpy() for k, v in feeds.items()})[0]
        else:
            program = torch.export.load(str(folder / self.spec["file"])).module()
            self.graph = lambda feeds: program(*feeds.values()).detach()

    def read(self, raw: str):
        sample = self.data_cls.read_input(raw, self.info)  # (a translator's loop reads the text itself)
        return raw if "decoding" in self.spec else sample

    def run(self, samples: list, top_k: int) -> list[dict]:
        if "decoding" in self.spec:
            return [{"translation": text, "log_prob": round(logp, 4), "attention": table}
                    for text, logp, table in self.translator.translate(samples, attention=True)]
        batch = self.data_cls.collate_inputs(samples, self.info)
        feeds = {n: batch[n] for n in self.inputs} if isinstance(batch, dict) else {self.inputs[0]: batch}
        with torch.inference_mode():
            return top_k_rows(torch.as_tensor(self.graph(feeds)), self.labels, top_k)


def build_app(model: Model, max_body_bytes: int = 10 * 2**20, max_text_chars: int = 5000):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        model.queue = asyncio.Queue()
        batcher = asyncio.create_task(model.batcher())
        yield
        batcher.cancel()

    app = FastAPI(title=f"gradlab {model.name}", docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        return {"task": model.name, "labels": list(model.info.get("class_names") or []), "input": model.kind,
                "device": model.device, "max_batch_size": model.max_batch_size, "max_body_bytes": max_body_bytes,
                "max_text_chars": max_text_chars, "version": model.backend.version,
                "batches": model.batches, "inputs": model.inputs}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return PAGE.read_text().replace("{{TASK}}", model.name).replace("{{KIND}}", model.kind)

    @app.post("/predict")
    async def predict(request: Request):
        try:
            raw = await _read(request, model, max_body_bytes, max_text_chars)
            if model.kind == "text":
                sample = model.read(raw)
                shown = raw
            else:
                shown = raw[2]
                with tempfile.NamedTemporaryFile(suffix=raw[1]) as f:
                    f.write(raw[0])
                    f.flush()
                    try:
                        sample = model.read(f.name)
                    except BadRequest as e:  # named as the client knows it, not by our temporary file
                        raise BadRequest(e.status, str(e).replace(f.name, shown)) from None
            started = time.perf_counter()
            result = await model.predict(sample)
            return {"input": shown, **result, "ms": round((time.perf_counter() - started) * 1000, 2)}
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)

    return app


async def _read(request, model: Model, max_body_bytes: int, max_text_chars: int):
    """The request's input: a text (text tasks), or (bytes, file suffix, name) of an uploaded file."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body_bytes:
        raise BadRequest(413, f"the body is {int(declared)} bytes, over the server's max_body_bytes={max_body_bytes}")
    body = await request.body()
    if len(body) > max_body_bytes:
        raise BadRequest(413, f"the body is {len(body)} bytes, over the server's max_body_bytes={max_body_bytes}")
    if not body:
        raise BadRequest(400, "the request has no body: send JSON {\"input\": ...}" if model.kind == "text" else
                         f"the request has no body: send the {model.kind} file itself, or a multipart form with "
                         f"a field named file")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if model.kind == "text":
        if kind != "application/json":
            raise BadRequest(415, f"Content-Type {kind or 'none'}: this {model.name} model takes application/json "
                                  f"{{\"input\": \"<text>\"}}")
        try:
            data = json.loads(body)
        except ValueError as e:
            raise BadRequest(400, f"the body is not valid JSON ({e})") from None
        text = data.get("input") if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise BadRequest(400, "the JSON has no \"input\" string: send {\"input\": \"<text>\"}")
        if len(text) > max_text_chars:
            raise BadRequest(413, f"the text has {len(text)} characters, over the server's "
                                  f"max_text_chars={max_text_chars}")
        return text
    if kind == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if upload is None or not hasattr(upload, "read"):
            raise BadRequest(400, "the form has no file field: send the file as the field named file")
        data = await upload.read()
        kind = (upload.content_type or "").lower()
        name = upload.filename or "upload"
        suffix = Path(name).suffix.lower() or SUFFIXES.get(kind, "")
        if not data:
            raise BadRequest(400, f"the uploaded file {name} is empty")
        return data, suffix, name
    if not kind.startswith(f"{model.kind}/"):
        raise BadRequest(415, f"Content-Type {kind or 'none'}: this {model.name} model takes {model.kind} files "
                              f"({model.kind}/...), as the body or as the field file of a multipart form")
    return body, SUFFIXES.get(kind, ""), f"({kind} body)"


def serve(cfg) -> None:
    import uvicorn

    model = Model(str(cfg.ckpt_path), cfg.device, int(cfg.top_k), int(cfg.max_batch_size), float(cfg.max_wait_ms))
    app = build_app(model, int(cfg.max_body_bytes), int(cfg.max_text_chars))
    log.info("serving %s (%s, %s) on http://%s:%d", cfg.ckpt_path, model.name, model.device, cfg.host, cfg.port)
    uvicorn.run(app, host=str(cfg.host), port=int(cfg.port), log_level="warning")
