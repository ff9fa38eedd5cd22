"""MLflow ``python_function`` loader of a chainlog model (shipped in every artifact as
``code/chainlog_pyfunc.py``; the MLmodel names it as the flavor's ``loader_module``).

``mlflow.pyfunc.load_model(uri)`` calls :func:`_load_pyfunc` with the downloaded artifact
folder. It starts one long-lived chainlog child for the model (``<binary> worker -m <folder>``),
which verifies every hash of the artifact, rebuilds the Rust chain and then answers JSON lines
on stdin/stdout, running the rows of each request with bounded concurrency:

    request   {"id": 1, "dataframe_records": [{"text": "..."}], "params": {...}}
    answer    {"id": 1, "predictions": [{"summary": "..."}], "seconds": 0.41}
           or {"id": 1, "error": {"error_code": "BAD_REQUEST", "message": "..."}}

The binary is ``$CHAINLOG_BIN``, else ``chainlog`` on ``PATH``, else the model's own crate
(``code/``, the snapshot ``--build cargo`` compiles) built with cargo into chainlog's build cache.
The child ends when the model is garbage-collected or the interpreter exits; a child that died
is started again by the next ``predict``.

Only MLflow, pandas and the standard library are needed.
"""

import collections
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import weakref

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.protos.databricks_pb2 import ErrorCode

_logger = logging.getLogger(__name__)

#: Rows of one ``predict`` run at once inside the child (``CHAINLOG_PYFUNC_CONCURRENCY``).
DEFAULT_CONCURRENCY = 64
#: Lines of the child's stderr kept to say why it failed.
_STDERR_TAIL = 40


def _load_pyfunc(path, model_config=None):
    """MLflow's loader entry point: the model in ``path`` (the artifact folder), its child
    started and ready. ``model_config`` is the logged config with MLflow's load-time overrides
    (``load_model(uri, model_config={...})``); the keys that differ reach the chain as
    ``MLFLOW_PYFUNC_INFERENCE_CONFIG``."""
    return ChainlogModel(path, model_config)


class ChainlogModel:
    """A loaded chainlog model: ``predict`` sends rows to the model's chainlog child."""

    def __init__(self, path, model_config=None):
        self._path = os.path.abspath(path)
        mlmodel = Model.load(os.path.join(self._path, "MLmodel"))
        flavor = mlmodel.flavors["chainlog"]
        self.chain = flavor["chain"]
        self._required, self._optional = _input_columns(mlmodel.get_input_schema())
        argv = _child_command(self._path, flavor) + _digest_args(mlmodel.model_id)
        env = dict(os.environ)
        overrides = _changed_keys(flavor.get("config") or {}, model_config or {})
        if overrides:
            env["MLFLOW_PYFUNC_INFERENCE_CONFIG"] = json.dumps(overrides)
        self._child = _Child(argv, env, self.chain)
        # Ends the child when this object is collected or the interpreter exits.
        self._finalizer = weakref.finalize(self, self._child.close)

    def predict(self, model_input, params=None):
        """One output per input row, in order. ``model_input``: a pandas DataFrame (one row per
        input, one column per input field), a dict (one input) or a list of dicts."""
        if isinstance(model_input, (pd.DataFrame, list)) and len(model_input) == 0:
            return []
        rows = self._rows_json(model_input)
        return self._child.request(rows, params or {})

    def close(self):
        """Ends the child now (it would end when the model is collected)."""
        self._finalizer()

    def _rows_json(self, model_input):
        if isinstance(model_input, pd.DataFrame):
            self._check_columns(list(model_input.columns))
            # pandas writes numpy scalars, NaN (as null) and nested values as JSON itself.
            return model_input.to_json(orient="records", date_format="iso", force_ascii=False)
        if isinstance(model_input, dict):
            model_input = [model_input]
        if isinstance(model_input, list) and all(isinstance(r, dict) for r in model_input):
            seen = []
            for row in model_input:
                seen.extend(k for k in row if k not in seen)
            self._check_columns(seen, rows=model_input)
            return json.dumps(model_input, default=_json_default, ensure_ascii=False)
        raise MlflowException.invalid_parameter_value(
            f"chainlog model `{self.chain}` takes a pandas DataFrame, a dict or a list of dicts, "
            f"got {type(model_input).__name__}"
        )

    def _check_columns(self, columns, rows=None):
        """Refuses missing and extra input fields, naming them, before any LLM call."""
        if self._required is None:
            return
        known = set(self._required) | set(self._optional)
        if rows is None:
            missing = [c for c in self._required if c not in columns]
        else:
            missing = [c for c in self._required if any(c not in row for row in rows)]
        extra = [c for c in columns if c not in known]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing column(s) {missing}")
            if extra:
                parts.append(f"extra column(s) {extra}")
            raise MlflowException.invalid_parameter_value(
                f"input of chainlog model `{self.chain}` has {' and '.join(parts)}; "
                f"its columns are {self._required + self._optional} "
                f"(required: {self._required})"
            )


def _error_code(name):
    """MLflow's error code of that name (the scoring protocol's), else INTERNAL_ERROR."""
    try:
        return ErrorCode.Value(name)
    except (ValueError, TypeError):
        return ErrorCode.Value("INTERNAL_ERROR")


def _json_default(value):
    """Numpy scalars and arrays, pandas timestamps: what ``json`` cannot write itself."""
    for method in ("item", "tolist", "isoformat"):
        if hasattr(value, method):
            return getattr(value, method)()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _input_columns(schema):
    """``(required, optional)`` input field names from the signature's input schema, or
    ``(None, None)`` when the input is not an object of named fields."""
    if schema is None or not schema.has_input_names():
        return None, None
    return schema.required_input_names(), schema.optional_input_names()


def _changed_keys(logged, effective):
    """The top-level keys whose value differs from the logged config (MLflow's overrides)."""
    return {k: v for k, v in effective.items() if logged.get(k) != v}


def _child_command(path, flavor):
    """The child's command line; raises at once when no binary can be found or built."""
    concurrency = os.environ.get("CHAINLOG_PYFUNC_CONCURRENCY") or str(DEFAULT_CONCURRENCY)
    tail = ["worker", "-m", path, "--concurrency", concurrency]
    given = os.environ.get("CHAINLOG_BIN")
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise MlflowException(f"CHAINLOG_BIN names `{given}`, which is not an executable file")
        return [given, *tail]
    found = shutil.which("chainlog")
    if found:
        return [found, *tail]
    cargo = shutil.which("cargo")
    snapshot = flavor.get("crate_snapshot")
    if cargo and snapshot:
        return [_build_from_artifact(path, snapshot, cargo), *tail, "--build", "local"]
    raise MlflowException(
        "no chainlog binary to run this model: set CHAINLOG_BIN to a chainlog binary, put "
        "`chainlog` on PATH (cargo install chainlog), or install cargo (https://rustup.rs) so "
        "the model's own crate can be built"
        + ("" if snapshot else " (this model was logged without its crate, so only the first two work)")
    )


def _digest_args(model_id):
    """``--expect-digest`` with the artifact digest the tracking store recorded for this model
    (the LoggedModel's ``chainlog.artifact_digest`` tag), so the child refuses an MLmodel that
    differs from what was logged — as chainlog does when it downloads a model itself. Nothing
    when the current tracking store does not know the model (a folder loaded by path)."""
    if not model_id:
        return []
    try:
        logged = mlflow.MlflowClient().get_logged_model(model_id)
    except Exception:  # noqa: BLE001 - not in this store: the folder vouches for itself
        return []
    digest = (logged.tags or {}).get("chainlog.artifact_digest")
    if not digest:
        _logger.warning("model %s has no chainlog.artifact_digest tag: only its own MLmodel vouches for its files", model_id)
        return []
    return ["--expect-digest", digest]


def _tree_sha256(root):
    """chainlog's hash of a folder: SHA-256 over ``path NUL sha256 LF`` of every file, sorted."""
    entries = []
    for folder, _, files in os.walk(root):
        for name in files:
            full = os.path.join(folder, name)
            with open(full, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            entries.append((os.path.relpath(full, root).replace(os.sep, "/"), digest))
    hasher = hashlib.sha256()
    for relative, digest in sorted(entries):
        hasher.update(relative.encode() + b"\0" + digest.encode() + b"\n")
    return hasher.hexdigest(), len(entries)


def _build_dir():
    """chainlog's build cache (``CHAINLOG_BUILD_DIR``, else beside its model cache)."""
    if os.environ.get("CHAINLOG_BUILD_DIR"):
        return os.environ["CHAINLOG_BUILD_DIR"]
    if os.environ.get("CHAINLOG_CACHE_DIR"):
        return os.path.join(os.environ["CHAINLOG_CACHE_DIR"], "builds")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "chainlog", "models", "builds")


def _build_from_artifact(path, snapshot, cargo):
    """The model's own crate (``code/``) built with cargo after its hash is checked, cached in
    chainlog's build cache as ``--build cargo`` caches it (``<builds>/<sha256>-<profile>/bin/
    <binary>``, the ``BUILT`` marker naming the binary, written last), so either finds the
    other's build. A snapshot logged with ``--vendor`` is built from the registry here (its
    offline build needs a chainlog binary)."""
    code = os.path.join(path, snapshot["path"])
    actual, count = _tree_sha256(code)
    if actual != snapshot["sha256"] or count != snapshot["files"]:
        raise MlflowException(
            f"the crate snapshot `{code}` does not match its hash in the MLmodel "
            f"(expected {snapshot['sha256']}, found {actual}); refusing to build it"
        )
    profile = os.environ.get("CHAINLOG_BUILD_PROFILE") or "release"
    builds = _build_dir()
    entry = os.path.join(builds, f"{snapshot['sha256']}-{profile}")
    marker = os.path.join(entry, "BUILT")
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as f:
            binary = os.path.join(entry, "bin", f.read().strip())
        if os.path.isfile(binary):
            return binary
    target = os.environ.get("CHAINLOG_BUILD_TARGET_DIR") or os.path.join(builds, "target")
    command = [
        cargo, "build", "--locked", "--bins", "--profile", profile,
        "--message-format", "json-render-diagnostics",
        "--manifest-path", os.path.join(code, "Cargo.toml"), "--target-dir", target,
    ]
    _logger.warning("building the model's crate with cargo (%s profile); this takes a while", profile)
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=None, text=True)
    executables = []
    for line in done.stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if message.get("reason") == "compiler-artifact" and "bin" in message.get("target", {}).get("kind", []):
            if message.get("executable"):
                executables.append(message["executable"])
    if done.returncode != 0 or len(executables) != 1:
        raise MlflowException(
            f"building the model's crate `{code}` with cargo failed (exit {done.returncode}, "
            f"{len(executables)} binaries); see cargo's output above"
        )
    name = os.path.basename(executables[0])
    staging = f"{entry}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(os.path.join(staging, "bin"))
    shutil.copy2(executables[0], os.path.join(staging, "bin", name))
    with open(os.path.join(staging, "BUILT"), "w", encoding="utf-8") as f:
        f.write(name)
    try:
        os.rename(staging, entry)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # Another process stored it first.
    return os.path.join(entry, "bin", name)


class _Child:
    """The chainlog child of one loaded model: started at once (its ready line awaited),
    started again by ``request`` when it died, ended by ``close``. Requests from several
    threads share it: each line carries an id and a reader thread hands every answer to its
    caller."""

    def __init__(self, argv, env, chain):
        self._argv = argv
        self._env = env
        self._chain = chain
        self._lock = threading.Lock()
        self._closed = False
        self._next_id = 0
        self._proc = None
        self.last_run_seconds = None
        self._start()

    def _start(self):
        proc = subprocess.Popen(
            self._argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env,
        )
        state = _ChildState(proc)
        threading.Thread(target=_read_stderr, args=(state,), daemon=True).start()
        threading.Thread(target=_read_answers, args=(state,), daemon=True).start()
        state.ready.wait()
        if state.ready_info is None:
            proc.wait()
            raise MlflowException(
                f"the chainlog child for `{self._chain}` could not load the model: {state.why_dead()}"
            )
        self._proc = state

    def request(self, rows_json, params):
        """Sends one request (rows as JSON text) and waits for its answer."""
        with self._lock:
            if self._closed:
                raise MlflowException(f"chainlog model `{self._chain}` was closed")
            state = self._proc
            if state.dead:
                why = state.why_dead()
                _logger.warning("the chainlog child for `%s` had died (%s); starting it again", self._chain, why)
                self._start()
                state = self._proc
            self._next_id += 1
            request_id = self._next_id
            slot = state.expect(request_id)
            line = (
                '{"id": %d, "params": %s, "dataframe_records": %s}\n'
                % (request_id, json.dumps(params, default=_json_default), rows_json)
            ).encode("utf-8")
            try:
                state.proc.stdin.write(line)
                state.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # The reader sees the end and fails the slot with the reason.
        slot.done.wait()
        if slot.answer is None:
            raise MlflowException(
                f"the chainlog child for `{self._chain}` died during predict ({state.why_dead()}); "
                "the next predict starts it again"
            )
        if "error" in slot.answer:
            error = slot.answer["error"]
            raise MlflowException(error.get("message", "the chain failed"), error_code=_error_code(error.get("error_code")))
        # The rows' run time in the child: what is left of a predict is the bridge's.
        self.last_run_seconds = slot.answer.get("seconds")
        return slot.answer["predictions"]

    def pid(self):
        """The running child's process id."""
        return self._proc.proc.pid

    def close(self):
        """Closes the child's stdin (it finishes what is in flight and exits), then kills it
        when it has not exited within 10 s."""
        with self._lock:
            self._closed = True
            state = self._proc
        if state is None:
            return
        try:
            state.proc.stdin.close()
        except OSError:
            pass
        try:
            state.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            state.proc.kill()
            state.proc.wait()


class _Slot:
    def __init__(self):
        self.done = threading.Event()
        self.answer = None


class _ChildState:
    """One child process, its pending requests and the tail of its stderr."""

    def __init__(self, proc):
        self.proc = proc
        self.ready = threading.Event()
        self.ready_info = None
        self.dead = False
        self.pending = {}
        self.lock = threading.Lock()
        self.stderr_tail = collections.deque(maxlen=_STDERR_TAIL)
        self.stderr_done = threading.Event()

    def expect(self, request_id):
        slot = _Slot()
        with self.lock:
            if self.dead:
                slot.done.set()
            else:
                self.pending[request_id] = slot
        return slot

    def finish(self):
        with self.lock:
            self.dead = True
            pending, self.pending = self.pending, {}
        for slot in pending.values():
            slot.done.set()
        self.ready.set()

    def why_dead(self):
        """How the child ended (exit status or signal) and the last lines of its stderr."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self.stderr_done.wait(timeout=2)
        if code is None:
            how = "it stopped answering"
        elif code < 0:
            how = f"killed by signal {-code}"
        else:
            how = f"exit status {code}"
        tail = [line for line in self.stderr_tail if line.strip()]
        return how + (": " + " | ".join(tail[-5:]) if tail else "")


def _read_answers(state):
    for raw in state.proc.stdout:
        try:
            message = json.loads(raw)
        except ValueError:
            _logger.warning("chainlog child wrote a line that is not JSON: %r", raw[:200])
            continue
        if "ready" in message:
            state.ready_info = message["ready"]
            state.ready.set()
            continue
        with state.lock:
            slot = state.pending.pop(message.get("id"), None)
        if slot is not None:
            slot.answer = message
            slot.done.set()
    state.finish()


def _read_stderr(state):
    for raw in state.proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        state.stderr_tail.append(line)
        print(line, file=sys.stderr, flush=True)
    state.stderr_done.set()
