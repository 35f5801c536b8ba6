#!/usr/bin/env python3
"""What CI can check of the Dockerfile without a Docker engine; run by .ci/check-dockerfile.

1. The build stage's image is the Rust release CI tests with, and not older than Cargo.toml's
   rust-version.
2. The build stage runs in a dry mode: its WORKDIR, COPY (through .dockerignore) and RUN
   instructions are replayed in a scratch directory, with `cargo` standing for a cargo that,
   for `cargo build`, resolves the lock file, loads every target and plans the whole build
   (`--unit-graph`) but compiles nothing. So a stub the dependency layer lacks, a Cargo.lock
   that `--locked` refuses, or a `--bin` that does not exist fails here as it would in
   `docker build`. A RUN holding an absolute path is refused rather than run on this machine.
3. The runtime stage runs as a numeric non-root user, copies the binary the build made, and
   starts Warden in exec form.
4. .dockerignore keeps build output, history and local stores out of the build context.
"""

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

errors: list[str] = []


def fail(message):
    errors.append(message)
    print(f"  FAIL {message}")


def ok(message):
    print(f"  ok   {message}")


def instructions(text):
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def stages(instrs):
    result = []
    for word, args in instrs:
        if word == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            result.append({"image": parts[0], "name": name, "body": []})
        elif result:
            result[-1]["body"].append((word, args))
    return result


def ignored(path, patterns):
    """Whether .dockerignore keeps `path` (relative, POSIX) out of the context."""
    verdict = False
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            hit = any(fnmatch("/".join(parts[i:j]), tail)
                      for i in range(len(parts)) for j in range(i + 1, len(parts) + 1))
        else:
            hit = any(fnmatch(p, pattern) for p in prefixes)
        if hit:
            verdict = not negate
    return verdict


def context_files(repo, patterns):
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    return [f for f in listed if (repo / f).is_file() and not ignored(f, patterns)]


CARGO_SHIM = """#!/bin/sh
# cargo, for the dry run: `cargo build ...` plans the build (--unit-graph) without compiling.
# --unit-graph is unstable; RUSTC_BOOTSTRAP=1 lets the stable cargo take it, for this only.
if [ "$1" = build ]; then
  n=$(ls "$SHIM_LOG_DIR" | wc -l)
  RUSTC_BOOTSTRAP=1 exec "$REAL_CARGO" "$@" -Z unstable-options --unit-graph \
    >"$SHIM_LOG_DIR/build-$n.json"
fi
exec "$REAL_CARGO" "$@"
"""


def dry_run(stage, repo, patterns, scratch):
    """Replays the build stage; returns (root, workdir, [(cargo args, unit graph)])."""
    root = scratch / "root"
    shim_dir, log_dir = scratch / "shim", scratch / "log"
    for d in (root, shim_dir, log_dir):
        d.mkdir()
    shim = shim_dir / "cargo"
    shim.write_text(CARGO_SHIM)
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ)
    env.update({
        "PATH": f"{shim_dir}:{env['PATH']}",
        "REAL_CARGO": shutil.which("cargo") or "cargo",
        "SHIM_LOG_DIR": str(log_dir),
    })
    workdir = PurePosixPath("/")
    builds = []
    files = context_files(repo, patterns)

    def here(p):
        p = workdir / p
        return root / str(p).lstrip("/")

    for word, args in stage["body"]:
        if word == "WORKDIR":
            workdir = workdir / args
            here(".").mkdir(parents=True, exist_ok=True)
        elif word == "ENV":
            for token in shlex.split(args):
                if "=" in token:
                    k, v = token.split("=", 1)
                    env[k] = v
        elif word == "COPY":
            tokens = [t for t in shlex.split(args) if not t.startswith("--")]
            *sources, dest = tokens
            for src in sources:
                src = src.rstrip("/") or "."
                picked = [f for f in files if src == "." or f == src or f.startswith(src + "/")]
                if not picked:
                    fail(f"COPY {src}: not in the build context (missing, or in .dockerignore)")
                for f in picked:
                    rel = f if src == "." or f == src else f[len(src) + 1:]
                    target = here(dest) / (PurePosixPath(f).name if f == src else rel)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(repo / f, target)
        elif word == "RUN":
            if re.search(r"(^|[\s=<>])/", args):
                fail(f"RUN names an absolute path; the dry run does not run it: {args[:60]}")
                continue
            before = set(os.listdir(log_dir))
            run = subprocess.run(["sh", "-euc", args], cwd=here("."), env=env,
                                 capture_output=True, text=True)
            if run.returncode != 0:
                fail(f"RUN {args[:70]}...: exit {run.returncode}: {run.stderr.strip()[-600:]}")
                continue
            for log in sorted(set(os.listdir(log_dir)) - before):
                builds.append((args, json.loads((log_dir / log).read_text())))
            ok(f"RUN {args[:90]}{'...' if len(args) > 90 else ''}")
    return root, workdir, builds


def main():
    repo = Path(__file__).resolve().parent.parent
    text = (repo / "Dockerfile").read_text()
    all_stages = stages(instructions(text))
    build = next((s for s in all_stages if s["name"] == "build"), None)
    runtime = all_stages[-1] if all_stages else None
    if not build or runtime is build:
        fail("expected a build stage `AS build` and a runtime stage after it")
        return 1

    # 1. The toolchain.
    m = re.fullmatch(r"rust:(\d+)\.(\d+)(?:\.\d+)?(?:-[\w.-]+)?", build["image"])
    rust_version = tomllib.loads((repo / "Cargo.toml").read_text())["package"]["rust-version"]
    ci = re.search(r"rustc (\d+)\.(\d+)", subprocess.run(
        ["rustc", "--version"], capture_output=True, text=True, check=True).stdout)
    if not m:
        fail(f"the build stage should be an official rust image, not {build['image']}")
    else:
        image = (int(m[1]), int(m[2]))
        oldest = tuple(int(x) for x in rust_version.split(".")[:2])
        if image < oldest:
            fail(f"{build['image']} is older than Cargo.toml's rust-version {rust_version}")
        if image != (int(ci[1]), int(ci[2])):
            fail(f"{build['image']} is not the Rust CI tests with ({ci[0]}): set "
                 f"FROM rust:{ci[1]}.{ci[2]}-slim-bookworm")
        else:
            ok(f"{build['image']}: the Rust CI tests with ({ci[0]}), rust-version {rust_version}")

    # 4. The context.
    patterns = [line.strip() for line in (repo / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for must in ("target/x", ".git/x", "data/warden.db", "data/warden.seal-key", "x/y.db-wal"):
        if not ignored(must, patterns):
            fail(f".dockerignore lets {must} into the build context")
    ok(f".dockerignore keeps out target/, .git/, data/, stores and keys ({len(patterns)} rules)")

    # 2. The build stage, dry.
    with tempfile.TemporaryDirectory() as scratch:
        root, workdir, builds = dry_run(build, repo, patterns, Path(scratch))
        bins = set()
        for args, graph in builds:
            names = {(u["target"]["name"], tuple(u["target"]["kind"]), u["profile"]["name"])
                     for u in graph["units"]}
            for name, kind, profile in names:
                if kind == ("bin",) and profile == "release":
                    bins.add(name)
            ok(f"cargo planned {len(graph['units'])} units, release bins {sorted(bins)}")
        if not builds:
            fail("the build stage runs no `cargo build`")

        # 3. The runtime stage.
        body = runtime["body"]
        users = [a for w, a in body if w == "USER"]
        if not users or not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]):
            fail("the runtime stage must end as a numeric non-root USER (uid:gid)")
        else:
            ok(f"USER {users[-1]}")
        entry = [a for w, a in body if w == "ENTRYPOINT"]
        try:
            entry_argv = json.loads(entry[-1]) if entry else None
        except json.JSONDecodeError:
            entry_argv = None
        if not isinstance(entry_argv, list):
            fail("ENTRYPOINT must be in exec form (JSON), so Warden gets SIGTERM itself")
        if not any(w == "EXPOSE" for w, _ in body):
            fail("the runtime stage should EXPOSE Warden's port")
        for w, a in body:
            if w != "COPY" or "--from=build" not in a:
                continue
            src = [t for t in shlex.split(a) if not t.startswith("--")][0]
            path = PurePosixPath(src)
            if path.is_relative_to(workdir / "target/release"):
                name = path.relative_to(workdir / "target/release")
                if str(name) not in bins:
                    fail(f"COPY --from=build {src}: the build makes no such binary "
                         f"(release bins: {sorted(bins)})")
                else:
                    ok(f"COPY --from=build {src}: built by `cargo build`")
            elif not (root / str(path).lstrip("/")).exists():
                fail(f"COPY --from=build {src}: the build stage does not make it")
            else:
                ok(f"COPY --from=build {src}: made by the build stage")
        if entry_argv and not any(
            w == "COPY" and entry_argv[0] in a.split() for w, a in body
        ):
            fail(f"ENTRYPOINT {entry_argv[0]} is not a file the runtime stage copies in")

    if errors:
        print(f"\n{len(errors)} problem(s) in the Dockerfile")
        return 1
    print("\nDockerfile OK (linted and dry-run; no image was built)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
