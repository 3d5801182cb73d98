"""The whole rollcall stack on one machine: the AWS APIs on loopback (moto's server, in this process), rollcall's
real Lambda functions (the `bootstrap` binaries built from the workspace, run as processes behind a Lambda
Runtime API served here), the resources as infra/template.yaml declares them, S3 "Object Created" events
delivered to validate as EventBridge would, and an SFTP server on loopback in place of Transfer Family.

Usage: aws_local.py [--functions DIR] [-- CMD ARGS...]
With CMD: exports AWS_ENDPOINT_URL, AWS_REGION, dummy credentials and ROLLCALL_* to it, runs it, and exits with
its status, stopping everything it started. Without CMD: prints those variables and runs until interrupted.

Where moto differs from AWS, only this harness adapts (the production code stays right for AWS):
* moto's Lambda only echoes: invocations are routed to our bootstrap processes (LambdaSimpleBackend.invoke).
* EventBridge rules with Lambda targets never fire in moto: the upload rule gets an SQS target here, and this
  harness polls the queue and invokes validate with each event, as EventBridge would.
* Transfer Family has no SFTP endpoint in moto: an asyncssh server here authenticates the users the Transfer
  API holds (keys and home mappings read back with describe_user) and writes uploads into S3 under their home.
* CloudFormation is not run: the resources are created from the template's properties by this script.
* moto's Query walks the whole table (and its tables are not safe for a query racing a write): the harness
  serves DynamoDB requests one at a time and hands each query only the items it could match (same results).
* moto's Step Functions engine sleeps for real between retries: `--retry-clock 0.1` makes those waits ten times
  shorter (the definition stays as written), so tests of retried faults do not wait minutes.

Tests reach the harness itself at ROLLCALL_HARNESS_URL:
  GET  /events?tenant=T           the batch events published on the stack's bus (as the product would get them)
  POST /redeliver?key=K           deliver the last S3 event of key K to validate once more (a duplicate event)
  POST /faults                    {"contains": "R#t#", "after": N, "fail": K}: after N successful PutItem calls
                                  on items whose pk contains the string, fail the next K (an error the SDK does
                                  not retry, as a function dying midway would look to the chunk); arming the
                                  same pattern again replaces its fault; with "operation": "start_execution",
                                  the next K StartExecution calls whose input contains the string fail instead
                                  (as a validate invocation dying between recording a batch and starting it)
  GET  /faults                    the faults armed, with how often each was hit
  GET  /writes?contains=S         successful PutItem and DeleteItem calls on items whose pk contains S
"""

import argparse
import asyncio
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REGION = "us-east-1"
ACCOUNT = "123456789012"
ENVIRONMENT = "local"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")

# How many processes serve each function (a map item is one apply invocation; the others come one at a time).
INSTANCES = {"apply": 4, "validate": 2}


def log(message):
    print(f"[aws-local] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- The template ---------------------------------------------------------------------------------------------


class Template:
    """The SAM template, with just enough of CloudFormation's intrinsics resolved to name the resources."""

    def __init__(self, path, parameters):
        from samtranslator.yaml_helper import yaml_parse

        with open(path) as f:
            self.doc = yaml_parse(f.read())
        self.base = os.path.dirname(path)
        self.params = {k: str(v.get("Default", "")) for k, v in self.doc.get("Parameters", {}).items()}
        self.params.update(parameters)
        self.params.update({"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws"})
        self.resources = self.doc["Resources"]
        self.physical = {}

    def of_type(self, kind):
        return {n: r for n, r in self.resources.items() if r["Type"] == kind}

    def sub(self, text):
        out, i = "", 0
        while i < len(text):
            j = text.find("${", i)
            if j < 0:
                out += text[i:]
                break
            k = text.index("}", j)
            out += text[i:j] + self.ref(text[j + 2 : k])
            i = k + 1
        return out

    def ref(self, name):
        if name in self.params:
            return self.params[name]
        if "." in name:
            resource, attribute = name.split(".", 1)
            return self.get_att(resource, attribute)
        if name in self.physical:
            return self.physical[name]
        raise KeyError(f"the harness cannot resolve {name!r}")

    def get_att(self, resource, attribute):
        kind = self.resources[resource]["Type"]
        physical = self.physical[resource]
        if attribute == "Arn":
            return {
                "AWS::S3::Bucket": f"arn:aws:s3:::{physical}",
                "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{physical}",
                "AWS::Serverless::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}",
                "AWS::Events::EventBus": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{physical}",
                "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{physical}",
                "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{physical}",
            }[kind]
        if attribute == "QueueName":
            return physical
        if attribute == "ServerId":
            return physical
        raise KeyError(f"the harness cannot resolve {resource}.{attribute}")

    def value(self, v):
        if isinstance(v, dict) and len(v) == 1:
            (key, arg), = v.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::Sub":
                return self.sub(arg if isinstance(arg, str) else arg[0])
            if key == "Fn::GetAtt":
                resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(resource, attribute)
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self.value(x) for x in v]
        return v

    def prop(self, resource, name, default=None):
        return self.resources[resource].get("Properties", {}).get(name, default)

    def function_env(self, resource):
        env = dict(self.doc.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
        env.update(self.prop(resource, "Environment", {}).get("Variables", {}))
        return {k: str(self.value(v)) for k, v in env.items()}


# --- Lambda: a Runtime API for our bootstrap processes ----------------------------------------------------------


class Function:
    """One function: invocations queued for its bootstrap processes, which long-poll for them."""

    def __init__(self, name, arn, timeout):
        self.name, self.arn, self.timeout = name, arn, timeout
        self.pending = queue.Queue()
        self.results = {}
        self.events = {}
        self.lock = threading.Lock()
        self.port = None
        self.processes = []
        self.timings = None
        self.stats = None

    def invoke(self, event):
        started = time.time()
        try:
            return self._invoke(event)
        finally:
            if self.timings is not None:
                line = {"function": self.name, "started": started, "seconds": round(time.time() - started, 3)}
                # After each batch's last state, what DynamoDB served so far (benchmarks take differences).
                if self.stats is not None and self.name.endswith(("-finish", "-fail")):
                    line["stats"] = self.stats()
                with self.lock:
                    self.timings.write(json.dumps(line) + "\n")
                    self.timings.flush()

    def _invoke(self, event):
        rid = str(uuid.uuid4())
        done = threading.Event()
        with self.lock:
            self.events[rid] = done
        self.pending.put((rid, event))
        if not done.wait(self.timeout):
            with self.lock:
                self.events.pop(rid, None)
            body = {"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {self.timeout} seconds"}
            return "Unhandled", json.dumps(body).encode()
        with self.lock:
            self.events.pop(rid, None)
            return self.results.pop(rid)

    def finish(self, rid, error, body):
        with self.lock:
            self.results[rid] = (error, body)
            done = self.events.get(rid)
        if done:
            done.set()

    def serve(self):
        fn = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, code, body=b"", headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.reply(404)
                rid, event = fn.pending.get()
                deadline = int((time.time() + fn.timeout) * 1000)
                self.reply(200, event, [
                    ("Content-Type", "application/json"),
                    ("Lambda-Runtime-Aws-Request-Id", rid),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn", fn.arn),
                ])

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.strip("/").split("/")
                if len(parts) == 5 and parts[2] == "invocation":
                    fn.finish(parts[3], None if parts[4] == "response" else "Unhandled", body)
                    return self.reply(202, b'{"status":"OK"}', [("Content-Type", "application/json")])
                if self.path.endswith("/runtime/init/error"):
                    log(f"{fn.name} failed to start: {body.decode(errors='replace')}")
                    return self.reply(202, b'{"status":"OK"}')
                self.reply(404)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.port = server.server_address[1]

    def start(self, binary, env, instances, logs):
        for n in range(instances):
            run_env = dict(os.environ)
            run_env.update(env)
            run_env.update({
                "AWS_LAMBDA_FUNCTION_NAME": self.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.port}",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"local-{n}",
            })
            out = open(os.path.join(logs, f"{self.name}-{n}.log"), "ab")
            self.processes.append(subprocess.Popen([binary], env=run_env, stdout=out, stderr=subprocess.STDOUT))

    def peak_mb(self):
        """The highest resident memory any of this function's processes reached (Linux), in MB."""
        peak = None
        for p in self.processes:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            mb = int(line.split()[1]) / 1024
                            peak = mb if peak is None else max(peak, mb)
            except OSError:
                pass
        return peak

    def stop(self):
        peak = self.peak_mb()
        if self.timings is not None and peak is not None:
            with self.lock:
                self.timings.write(json.dumps({"function": self.name, "peak_mb": round(peak, 1)}) + "\n")
                self.timings.flush()
        for p in self.processes:
            p.terminate()
        for p in self.processes:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def route_invocations(functions):
    """moto's Lambda answers every invocation by echoing it: send them to our functions instead."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        record = self.get_function(function_name, qualifier)
        if isinstance(body, str):
            body = body.encode()
        error, payload = functions[record.function_name].invoke(body or b"{}")
        if error:
            response_headers["x-amz-function-error"] = error
        response_headers["Content-Length"] = str(len(payload))
        return payload

    LambdaSimpleBackend.invoke = invoke


# --- The harness's own endpoint: events seen, faults to inject, writes counted ----------------------------------


class Control:
    def __init__(self):
        self.lock = threading.Lock()
        self.events = []
        self.deliveries = {}
        self.faults = []
        self.writes = []  # (operation, pk) of every successful record write
        self.requests = {}  # DynamoDB operation -> requests served
        self.plan_entries = 0  # entries returned by queries of the `plan` index

    def stats(self):
        with self.lock:
            return {"requests": dict(self.requests), "plan_entries": self.plan_entries,
                    "record_writes": sum(1 for _, pk in self.writes if pk.startswith("R#"))}

    def patch_dynamodb(self):
        """Counts successful writes and fails armed ones, inside moto's DynamoDB handler."""
        from moto.core.exceptions import JsonRESTError
        from moto.dynamodb.responses import DynamoHandler

        control = self

        def key_of(body, field):
            value = (body.get(field) or {}).get("pk")
            if isinstance(value, dict):
                value = value.get("S")
            return value or ""

        def wrap(operation, field):
            original = getattr(DynamoHandler, operation)

            def handler(self):
                pk = key_of(self.body, field)
                with control.lock:
                    for fault in control.faults:
                        if fault["contains"] in pk and fault["operation"] == operation == "put_item":
                            if fault["seen"] >= fault["after"] and fault["failed"] < fault["fail"]:
                                fault["failed"] += 1
                                raise JsonRESTError("InjectedFault", f"the harness failed this write on purpose ({pk})")
                result = original(self)
                with control.lock:
                    control.writes.append((operation, pk))
                    for fault in control.faults:
                        if fault["contains"] in pk and fault["operation"] == operation == "put_item":
                            fault["seen"] += 1
                return result

            setattr(DynamoHandler, operation, handler)

        wrap("put_item", "Item")
        wrap("delete_item", "Key")

        # moto's tables are plain dicts that a query walks while another request's write changes them
        # ("dictionary changed size during iteration"): one DynamoDB request at a time, as a table would
        # serialize them.
        serial = threading.Lock()
        dispatch = DynamoHandler.call_action

        def one_at_a_time(self):
            operation = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
            with serial:
                result = dispatch(self)
            # What the stack asked of DynamoDB, for the benchmark: requests per operation, and the entries
            # planning read from the `plan` index.
            with control.lock:
                control.requests[operation] = control.requests.get(operation, 0) + 1
                if operation == "Query" and self.body.get("IndexName") == "plan":
                    try:
                        body = result[2] if isinstance(result, tuple) else result
                        control.plan_entries += json.loads(body).get("Count", 0)
                    except (ValueError, TypeError, IndexError, AttributeError):
                        pass
            return result

        DynamoHandler.call_action = one_at_a_time

    def patch_stepfunctions(self):
        """Fails armed StartExecution calls (by a string their input contains), inside moto's handler."""
        from moto.core.exceptions import JsonRESTError
        from moto.stepfunctions.responses import StepFunctionResponse

        control = self
        original = StepFunctionResponse.start_execution

        def start_execution(self):
            given = self._get_param("input", if_none="{}")
            with control.lock:
                for fault in control.faults:
                    if fault["operation"] == "start_execution" and fault["contains"] in given:
                        if fault["seen"] >= fault["after"] and fault["failed"] < fault["fail"]:
                            fault["failed"] += 1
                            raise JsonRESTError("InjectedFault", "the harness failed this start on purpose")
                        fault["seen"] += 1
            return original(self)

        StepFunctionResponse.start_execution = start_execution

    def serve(self, stack):
        control = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code, value):
                body = json.dumps(value).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def query(self):
                from urllib.parse import parse_qs, urlparse

                url = urlparse(self.path)
                return url.path, {k: v[0] for k, v in parse_qs(url.query).items()}

            def do_GET(self):
                path, q = self.query()
                with control.lock:
                    if path == "/events":
                        tenant = q.get("tenant")
                        return self.reply(200, [e for e in control.events
                                                if tenant is None or e.get("detail", {}).get("tenant") == tenant])
                    if path == "/writes":
                        needle = q.get("contains", "")
                        hits = [op for op, pk in control.writes if needle in pk]
                        return self.reply(200, {"put_item": hits.count("put_item"), "delete_item": hits.count("delete_item")})
                    if path == "/faults":
                        return self.reply(200, control.faults)
                self.reply(404, {"error": f"no such endpoint {path}"})

            def do_POST(self):
                path, q = self.query()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if path == "/faults":
                    fault = json.loads(body or b"{}")
                    with control.lock:
                        # One fault per pattern: arming it again replaces it ("fail": 0 disarms it).
                        operation = fault.get("operation", "put_item")
                        control.faults[:] = [f for f in control.faults
                                             if (f["contains"], f["operation"]) != (fault.get("contains"), operation)]
                        if fault.get("contains"):
                            control.faults.append({"contains": fault["contains"], "operation": operation,
                                                   "after": int(fault.get("after", 0)),
                                                   "fail": int(fault.get("fail", 1)), "seen": 0, "failed": 0})
                    return self.reply(200, {"ok": True})
                if path == "/redeliver":
                    with control.lock:
                        event = control.deliveries.get(q.get("key", ""))
                    if event is None:
                        return self.reply(404, {"error": "no event was delivered for that key"})
                    error, payload = stack.invoke_validate(event)
                    return self.reply(200, {"error": error, "result": json.loads(payload or b"null")})
                self.reply(404, {"error": f"no such endpoint {path}"})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"


def speed_up_queries():
    """moto answers every Query by walking every item of the table, which makes planning (a query per shard)
    slower the more tenants a test run has loaded. Give its queries the items they could match instead: the
    table's own partition for a table query, and for an index query the items an index of ours says carry
    that key (kept as items are written, and checked again when read). What a query returns is unchanged."""
    from collections import defaultdict

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    keys = defaultdict(lambda: defaultdict(set))  # (table, attribute) -> value -> {(hash, range)}

    def note(table, item):
        for gsi in table.global_indexes:
            for part in gsi.schema:
                if part["KeyType"] == "HASH":
                    value = item.attrs.get(part["AttributeName"])
                    if value is not None:
                        keys[(table.name, part["AttributeName"])][value].add((item.hash_key, item.range_key))

    put = Table.put_item

    def put_item(self, *args, **kwargs):
        item = put(self, *args, **kwargs)
        note(self, item)
        return item

    Table.put_item = put_item

    update = DynamoDBBackend.update_item

    def update_item(self, table_name, *args, **kwargs):
        item = update(self, table_name, *args, **kwargs)
        note(self.get_table(table_name), item)
        return item

    DynamoDBBackend.update_item = update_item

    query = Table.query

    def narrowed(self, hash_key, index_name, hash_key_conditions):
        if not index_name:
            if hash_key is None:
                return None
            found = self.items.get(hash_key)
            if found is None:
                return []
            return list(found.values()) if self.range_key_attr else [found]
        if not hash_key_conditions or len(hash_key_conditions) != 1:
            return None
        attribute, value = hash_key_conditions[0]
        out = []
        for h, r in list(keys.get((self.name, attribute), {}).get(value, ())):
            item = self.items.get(h)
            if item is not None and self.range_key_attr:
                item = item.get(r)
            if item is not None and item.attrs.get(attribute) == value:
                out.append(item)
        return out

    def narrowed_query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                       scan_index_forward, projection_expressions, index_name=None, consistent_read=False,
                       filter_expression=None, **kwargs):
        candidates = narrowed(self, hash_key, index_name, kwargs.get("hash_key_conditions"))
        args = (self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,
                projection_expressions, index_name, consistent_read, filter_expression)
        if candidates is None:
            return query(*args, **kwargs)
        # DynamoDB requests are served one at a time (see Control.patch_dynamodb), so this is safe.
        self.all_items = lambda: candidates
        try:
            return query(*args, **kwargs)
        finally:
            del self.all_items

    Table.query = narrowed_query


def speed_up_retries(factor):
    """moto's Step Functions engine sleeps for real between the retries a Retry declares: scale those sleeps."""
    import types

    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    real = time.sleep
    retrier_decl.time = types.SimpleNamespace(sleep=lambda seconds: real(seconds * factor), time=time.time)


# --- SFTP in place of Transfer Family --------------------------------------------------------------------------


def start_sftp(transfer, s3, server_id, work):
    import asyncssh

    def home_of(username):
        try:
            user = transfer.describe_user(ServerId=server_id, UserName=username)["User"]
        except Exception:
            return None
        mappings = {m["Entry"]: m["Target"] for m in user.get("HomeDirectoryMappings", [])}
        if "/" not in mappings:
            return None
        bucket, _, prefix = mappings["/"].lstrip("/").partition("/")
        keys = [asyncssh.import_public_key(k["SshPublicKeyBody"]) for k in user.get("SshPublicKeys", [])]
        return bucket, prefix.rstrip("/") + "/", keys

    class Auth(asyncssh.SSHServer):
        def connection_made(self, conn):
            self.conn = conn
            self.home = None

        def begin_auth(self, username):
            self.home = home_of(username)
            if self.home:
                self.conn.set_extra_info(rollcall_home=self.home)
            return True

        def password_auth_supported(self):
            return False

        def public_key_auth_supported(self):
            return True

        def validate_public_key(self, username, key):
            return bool(self.home) and any(key == k for k in self.home[2])

    class S3Home(asyncssh.SFTPServer):
        """The user's home is a scratch folder mirrored into S3: a file goes to the bucket when it is closed."""

        def __init__(self, chan):
            self.bucket, self.prefix, _ = chan.get_extra_info("rollcall_home")
            user = chan.get_extra_info("username")
            self.root = os.path.join(work, user)
            os.makedirs(self.root, exist_ok=True)
            super().__init__(chan, chroot=self.root.encode())
            self.writing = {}

        def open(self, path, pflags, attrs):
            handle = super().open(path, pflags, attrs)
            if pflags & asyncssh.FXF_WRITE:
                self.writing[id(handle)] = self.map_path(path).decode()
            return handle

        def close(self, file_obj):
            super().close(file_obj)
            real = self.writing.pop(id(file_obj), None)
            if real:
                key = self.prefix + os.path.relpath(real, self.root)
                s3.upload_file(real, self.bucket, key)

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder = {}

    async def serve():
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        acceptor = await asyncssh.create_server(Auth, "127.0.0.1", 0, server_host_keys=[host_key], sftp_factory=S3Home)
        holder["port"] = acceptor.sockets[0].getsockname()[1]
        holder["acceptor"] = acceptor
        ready.set()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(30)
    return holder["port"], loop


# --- The stack ------------------------------------------------------------------------------------------------


class Stack:
    def __init__(self, functions_dir, quiet, retry_clock):
        self.functions_dir = functions_dir
        self.quiet = quiet
        self.retry_clock = retry_clock
        self.functions = {}
        self.stop_polling = threading.Event()
        self.control = Control()

    def start(self):
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        from moto.server import ThreadedMotoServer

        port = free_port()
        os.environ["MOTO_PORT"] = str(port)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.moto.start()
        self.control.patch_dynamodb()
        self.control.patch_stepfunctions()
        speed_up_queries()
        if self.retry_clock != 1:
            speed_up_retries(self.retry_clock)
        self.endpoint = f"http://127.0.0.1:{port}"
        config = {"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}}
        request = urllib.request.Request(f"{self.endpoint}/moto-api/config", method="POST",
                                         data=json.dumps(config).encode(), headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request).read()
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}.items():
            os.environ.setdefault(k, v)
        self.work = tempfile.mkdtemp(prefix="rollcall-aws-local-")
        self.create()
        self.sftp_port, self.sftp_loop = start_sftp(self.client("transfer"), self.client("s3"), self.server_id,
                                                     os.path.join(self.work, "sftp"))
        route_invocations(self.functions)
        self.harness_url = self.control.serve(self)
        # Each invocation's function, duration and outcome; kept where the caller asks (benchmarks read it).
        self.timings_path = os.environ.get("ROLLCALL_INVOCATIONS_LOG") or os.path.join(self.work, "invocations.jsonl")
        self.start_functions()
        threading.Thread(target=self.deliver_uploads, daemon=True).start()
        threading.Thread(target=self.collect_events, daemon=True).start()

    def client(self, service):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def create(self):
        t = Template(TEMPLATE, {"Environment": ENVIRONMENT, "QuietSeconds": str(self.quiet)})
        self.template = t
        iam, s3, ddb, sqs, events, lam, sfn, transfer = (self.client(s) for s in
            ("iam", "s3", "dynamodb", "sqs", "events", "lambda", "stepfunctions", "transfer"))
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com", "transfer.amazonaws.com"]}}]})
        role = iam.create_role(RoleName="rollcall-local", AssumeRolePolicyDocument=trust)["Role"]["Arn"]

        # Names first: every resource's physical name, as the template gives it.
        for name, r in t.resources.items():
            props = r.get("Properties", {})
            named = props.get("BucketName") or props.get("TableName") or props.get("FunctionName") or \
                props.get("Name") or props.get("QueueName") or props.get("TopicName")
            t.physical[name] = t.value(named) if named else f"{name.lower()}-{ENVIRONMENT}"

        bucket = t.physical["Bucket"]
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
        self.bucket = bucket

        table = t.physical["Table"]
        p = t.resources["Table"]["Properties"]
        ddb.create_table(TableName=table, BillingMode=p["BillingMode"], AttributeDefinitions=p["AttributeDefinitions"],
                         KeySchema=p["KeySchema"], GlobalSecondaryIndexes=p["GlobalSecondaryIndexes"])
        ttl = p["TimeToLiveSpecification"]
        ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]})
        self.table = table

        bus = t.physical["EventBus"]
        events.create_event_bus(Name=bus)
        self.bus = bus
        # Batch events also go to a queue, so tests and tools can read what the product would receive.
        self.events_queue = sqs.create_queue(QueueName="rollcall-local-batch-events")["QueueUrl"]
        events_arn = sqs.get_queue_attributes(QueueUrl=self.events_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="rollcall-local-batch-events", EventBusName=bus, EventPattern=json.dumps({"source": ["rollcall"]}))
        events.put_targets(Rule="rollcall-local-batch-events", EventBusName=bus, Targets=[{"Id": "queue", "Arn": events_arn}])

        # S3 events for validate, by the pattern the template's rule has, into a queue this harness delivers from.
        pattern = t.value(t.prop("ValidateFunction", "Events")["Upload"]["Properties"]["Pattern"])
        self.uploads_queue = sqs.create_queue(QueueName="rollcall-local-uploads")["QueueUrl"]
        uploads_arn = sqs.get_queue_attributes(QueueUrl=self.uploads_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="rollcall-local-uploads", EventPattern=json.dumps(pattern))
        events.put_targets(Rule="rollcall-local-uploads", Targets=[{"Id": "queue", "Arn": uploads_arn}])

        server = transfer.create_server(Domain="S3", IdentityProviderType="SERVICE_MANAGED", Protocols=["SFTP"], EndpointType="PUBLIC")
        self.server_id = server["ServerId"]
        t.physical["SftpServer"] = self.server_id
        transfer_role = iam.create_role(RoleName=t.physical["SftpUserRole"], AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        self.transfer_role = transfer_role

        for name in t.of_type("AWS::Serverless::Function"):
            fname = t.physical[name]
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fname}"
            timeout = int(t.prop(name, "Timeout", 300))
            lam.create_function(FunctionName=fname, Runtime="provided.al2023", Role=role, Handler="bootstrap",
                                Code={"ZipFile": b"bootstrap"}, Timeout=timeout)
            binary = t.resources[name]["Metadata"]["BuildProperties"]["Binary"]
            self.functions[fname] = Function(fname, arn, timeout)
            self.functions[fname].binary = binary
            self.functions[fname].env = t.function_env(name)

        for name in t.of_type("AWS::Serverless::StateMachine"):
            props = t.resources[name]["Properties"]
            with open(os.path.join(t.base, props["DefinitionUri"])) as f:
                definition = f.read()
            for key, v in props.get("DefinitionSubstitutions", {}).items():
                definition = definition.replace("${" + key + "}", str(t.value(v)))
            created = sfn.create_state_machine(name=t.physical[name], definition=definition, roleArn=role, type="STANDARD")
            t.physical[name] = created["stateMachineArn"]
        self.state_machine = t.physical["Pipeline"]
        self.settle_machine = t.physical["Settle"]

    def env(self):
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "ROLLCALL_BUCKET": self.bucket,
            "ROLLCALL_TABLE": self.table,
            "ROLLCALL_STATE_MACHINE_ARN": self.state_machine,
            "ROLLCALL_SETTLE_MACHINE_ARN": self.settle_machine,
            "ROLLCALL_EVENT_BUS": self.bus,
            "ROLLCALL_TRANSFER_SERVER": self.server_id,
            "ROLLCALL_PULL_FUNCTION": self.template.physical["PullFunction"],
            "ROLLCALL_TRANSFER_ROLE": self.transfer_role,
            "ROLLCALL_SFTP_PORT": str(self.sftp_port),
            "ROLLCALL_HARNESS_URL": self.harness_url,
            "ROLLCALL_INVOCATIONS_LOG": self.timings_path,
        }

    def start_functions(self):
        logs = os.path.join(self.work, "logs")
        os.makedirs(logs, exist_ok=True)
        self.logs = logs
        timings = open(self.timings_path, "a")
        for fname, fn in self.functions.items():
            fn.timings = timings
            fn.stats = self.control.stats
            fn.serve()
            env = dict(self.env())
            env.update(fn.env)
            # The template's names resolved to what this stack made.
            env.update({"ROLLCALL_STATE_MACHINE_ARN": self.state_machine,
                        "ROLLCALL_SETTLE_MACHINE_ARN": self.settle_machine,
                        "ROLLCALL_QUIET_SECONDS": str(self.quiet)})
            binary = os.path.join(self.functions_dir, fn.binary)
            if not os.path.exists(binary):
                raise SystemExit(f"{binary} is not built: run `cargo build -p rollcall-fn-{fn.binary.removeprefix('rollcall-')}`")
            short = fname.rsplit("-", 1)[-1]
            fn.start(binary, env, INSTANCES.get(short, 2), logs)

    def deliver_uploads(self):
        """What EventBridge does on AWS: each S3 event that matches the rule invokes validate."""
        sqs = self.client("sqs")
        while not self.stop_polling.is_set():
            try:
                got = sqs.receive_message(QueueUrl=self.uploads_queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            except Exception:
                if self.stop_polling.is_set():
                    return
                time.sleep(0.2)
                continue
            for message in got.get("Messages", []):
                sqs.delete_message(QueueUrl=self.uploads_queue, ReceiptHandle=message["ReceiptHandle"])
                body = message["Body"].encode()
                try:
                    key = json.loads(body)["detail"]["object"]["key"]
                except (ValueError, KeyError, TypeError):
                    key = None
                with self.control.lock:
                    self.control.deliveries[key] = body
                threading.Thread(target=self.invoke_validate, args=(body,), daemon=True).start()

    def invoke_validate(self, body):
        validate = next(n for n in self.functions if n.endswith("-validate"))
        out = self.client("lambda").invoke(FunctionName=validate, Payload=body)
        payload = out["Payload"].read()
        if out.get("FunctionError"):
            log(f"validate failed on an upload: {payload.decode(errors='replace')}")
        return out.get("FunctionError"), payload

    def collect_events(self):
        """The batch events the functions publish, kept for tests (GET /events on the harness)."""
        sqs = self.client("sqs")
        while not self.stop_polling.is_set():
            try:
                got = sqs.receive_message(QueueUrl=self.events_queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            except Exception:
                if self.stop_polling.is_set():
                    return
                time.sleep(0.2)
                continue
            for message in got.get("Messages", []):
                sqs.delete_message(QueueUrl=self.events_queue, ReceiptHandle=message["ReceiptHandle"])
                try:
                    event = json.loads(message["Body"])
                except ValueError:
                    continue
                with self.control.lock:
                    self.control.events.append(event)

    def stop(self):
        self.stop_polling.set()
        for fn in self.functions.values():
            fn.stop()
        try:
            self.sftp_loop.call_soon_threadsafe(self.sftp_loop.stop)
        except Exception:
            pass
        # moto's server joins every request thread on shutdown, and its Step Functions engine may still be
        # running an execution a test left (a held batch): give it a moment, then leave without it.
        stopping = threading.Thread(target=self.moto.stop, daemon=True)
        stopping.start()
        stopping.join(timeout=3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--functions", default=os.path.join(ROOT, "target", "debug"),
                        help="where the functions' binaries are (default: target/debug)")
    parser.add_argument("--quiet", type=int, default=int(os.environ.get("ROLLCALL_QUIET_SECONDS", "3")),
                        help="seconds a folder of loose files must stay unchanged (default 3 here)")
    parser.add_argument("--retry-clock", type=float, default=float(os.environ.get("ROLLCALL_RETRY_CLOCK", "1")),
                        help="scale the waits between Step Functions retries (0.1: ten times shorter; default 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    stack = Stack(args.functions, args.quiet, args.retry_clock)
    started = time.time()
    stack.start()
    env = stack.env()
    log(f"stack up in {time.time() - started:.1f}s; function logs in {stack.logs}")
    try:
        if not command:
            for k, v in env.items():
                print(f"export {k}={v}")
            sys.stdout.flush()
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
            return 0
        run_env = dict(os.environ)
        run_env.update(env)
        return subprocess.call(command, env=run_env)
    finally:
        stack.stop()


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Threads of moto's server and of the SFTP loop may still be alive: exit without waiting for them.
    os._exit(status or 0)
