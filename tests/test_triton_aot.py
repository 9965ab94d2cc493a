"""Ahead-of-time compile every Triton kernel of gankernels for sm_90 (no GPU needed).

Every module under `gankernels/triton/` exposes `AOT_SPECS`, a list of
(kernel, signature, constexprs) with the signature listing every parameter (constexpr
ones as "constexpr"). Each @triton.jit function defined in a module must appear in its
specs, except device helpers named in an optional `AOT_HELPERS` list. Compilation runs in
a subprocess without TRITON_INTERPRET (under the interpreter kernels cannot be compiled).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

_SCRIPT = textwrap.dedent(
    """
    import importlib
    import json
    import pkgutil
    import traceback

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    import gankernels.triton as pkg

    target = GPUTarget("cuda", 90, 32)
    results = []
    for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
        mod = importlib.import_module(info.name)
        specs = getattr(mod, "AOT_SPECS", None)
        if specs is None:
            results.append(dict(module=info.name, kernel="-", ok=False, error="no AOT_SPECS"))
            continue
        covered = {id(spec[0]) for spec in specs}
        helpers = set(getattr(mod, "AOT_HELPERS", ()))
        for name, obj in vars(mod).items():
            if (
                isinstance(obj, JITFunction)
                and obj.fn.__module__ == mod.__name__
                and id(obj) not in covered
                and name not in helpers
            ):
                results.append(
                    dict(module=info.name, kernel=name, ok=False, error="not in AOT_SPECS")
                )
        for kernel, signature, constexprs in specs:
            name = getattr(kernel, "__name__", repr(kernel))
            ptrs = sorted({t for t in signature.values() if t.startswith("*")})
            variant = f"{','.join(ptrs)} {constexprs}"
            entry = dict(module=info.name, kernel=name, variant=variant)
            try:
                src = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
                ptx = triton.compile(src, target=target).asm["ptx"]
                entry.update(ok=bool(ptx), ptx_bytes=len(ptx))
                if not ptx:
                    entry["error"] = "empty PTX"
            except Exception:
                entry.update(ok=False, error=traceback.format_exc(limit=3)[-3000:])
            results.append(entry)
            status = f"{entry['ptx_bytes']} bytes PTX" if entry["ok"] else "FAILED"
            print(f"{info.name}.{name} [{variant}]: {status}", flush=True)
    print("RESULTS " + json.dumps(results))
    """
)


def test_aot_compile_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, (
        f"AOT subprocess failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-5000:]}"
    )
    results = json.loads(lines[-1][len("RESULTS ") :])
    for r in results:
        if r["ok"]:
            print(f"{r['module']}.{r['kernel']} [{r['variant']}]: {r['ptx_bytes']} bytes PTX")
    assert results, "no AOT specs found under gankernels/triton"
    failed = [r for r in results if not r["ok"]]
    assert not failed, "AOT compile failures:\n" + "\n".join(
        f"{r['module']}.{r['kernel']} [{r.get('variant', '')}]: {r['error']}" for r in failed
    )
