"""Errors about a model: what they say, and the pointer to the model doctor (`ppl.check`).

Every error `ppl.compile` (and so `ppl.infer`) raises about the model ends with
:func:`check_hint`, which tells the user how to get a report on every site at once. The
errors of this module translate the raw failures a new user meets into ones that name the
site or argument and the fix: a Python branch on a traced value (:func:`traced_value_error`),
a NumPyro primitive called inside a ppl model (:class:`NumPyroGuard`), string data
(:func:`data_argument_error`).
"""
from __future__ import annotations

import contextlib
import linecache
import os
import re
import threading

import jax

CHECK_MARK = "for a report on every site."
# A JAX error raised because Python needed the concrete value of a traced array.
CONCRETE_VALUE_ERRORS = (
    jax.errors.ConcretizationTypeError,  # incl. TracerBoolConversionError (if / while / bool())
    jax.errors.TracerIntegerConversionError,  # int(), indexing a Python list with a value
    jax.errors.TracerArrayConversionError,  # np.asarray() of a traced value
)


def model_name(model) -> str:
    """The model's name as the user wrote it (`model` when it has none)."""
    name = getattr(model, "__name__", None)
    return name if isinstance(name, str) and name.isidentifier() else "model"


def check_hint(model) -> str:
    """The sentence that ends every error about a model: how to get the doctor's report."""
    return f"Run ppl.check({model_name(model)}, *args, **kwargs) {CHECK_MARK}"


def strip_hint(message: str) -> str:
    """`message` without the pointer to `ppl.check` (the doctor's own report holds it)."""
    i = message.find(" Run ppl.check(")
    return message[:i] if i >= 0 and message.rstrip().endswith(CHECK_MARK) else message


def point_to_check(error: BaseException, model) -> BaseException:
    """Append :func:`check_hint` to `error`'s message, in place, and return it.

    Only ppl's own errors are touched (exactly ValueError, TypeError or RuntimeError with one
    string argument); a JAX or user exception passes unchanged, as does one that already
    points to the doctor.
    """
    if type(error) in (ValueError, TypeError, RuntimeError) and len(error.args) == 1 \
            and isinstance(error.args[0], str) and CHECK_MARK not in error.args[0]:
        text = error.args[0].rstrip()
        error.args = (f"{text}{'' if text.endswith('.') else '.'} {check_hint(model)}",)
    return error


_ABOUT_THE_MODEL = re.compile(r"\bsites? '|\bsite\(s\)|\bthe model\b")


@contextlib.contextmanager
def pointing_to_check(model, sites_only: bool = False):
    """Inside this block, ppl's errors about `model` end with the pointer to `ppl.check`.

    Args:
      model: the model function (its name goes into the pointer).
      sites_only: point only from errors that name a site or the model (for blocks that also
        raise about method options, e.g. `method.check(ld)` in `ppl.infer`).
    """
    try:
        yield
    except (ValueError, TypeError, RuntimeError) as e:
        if sites_only and not _ABOUT_THE_MODEL.search(str(e)):
            raise
        raise point_to_check(e, model)


# ------------------------------------------------------------------ arguments (data)

def argument_label(path) -> str:
    """`args[1]`, `kwargs['y']`, ... as 'positional argument 1', "keyword argument 'y'"."""
    text = jax.tree_util.keystr(tuple(path))
    m = re.match(r"\[(0|1)\]\[([^\]]+)\](.*)", text)
    if not m:
        return f"argument {text}"
    which, key, rest = m.groups()
    if which == "0":
        return f"positional argument {key}" + (f" (at {rest})" if rest else "")
    return f"keyword argument {key}" + (f" (at {rest})" if rest else "")


def data_argument_error(label: str, value) -> TypeError:
    """An array argument of strings or objects: it cannot be data. Say what to do."""
    import numpy as np

    dtype = np.asarray(value).dtype
    return TypeError(
        f"model {label} is an array of dtype {dtype} ({'strings' if dtype.kind in 'US' else 'Python objects'}), "
        f"which cannot be data: arrays passed to a model are traced by JAX, which holds numbers "
        f"only. Pass strings as static Python values (a str, or a tuple of str), or encode them "
        f"as integers, e.g. codes = np.unique(labels, return_inverse=True)[1]."
    )


# ------------------------------------------------------------------ Python branches on traced values

_LIBRARY_DIRS = tuple(os.path.dirname(os.path.dirname(m.__file__)) + os.sep
                      for m in (jax,)) + (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,)


def _user_line(error):
    """`(filename, lineno, source line)` of the innermost frame of `error`'s traceback
    outside JAX, NumPyro and ppl (the user's model code), or None."""
    import numpyro

    skip = _LIBRARY_DIRS + (os.path.dirname(numpyro.__file__) + os.sep,)
    tb, found = error.__traceback__, None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(skip) and not filename.startswith("<frozen"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    if found is None:
        return None
    return found + (linecache.getline(found[0], found[1]).strip(),)


def traced_sources(error) -> tuple:
    """`(latent site names, data indices)` that the traced value in JAX's `error` depends on
    (its text names them as `latents['mu']` and `data[i]`)."""
    text = str(error)
    return (sorted(set(re.findall(r"latents\['([^']+)'\]", text))),
            sorted({int(i) for i in re.findall(r"data\[(\d+)\]", text)}))


def user_line(error) -> str:
    """' at file.py:12 (`the line`)' for the user's line where `error` arose, or ''."""
    where = _user_line(error)
    return f" at {os.path.basename(where[0])}:{where[1]} (`{where[2]}`)" if where else ""


def traced_value_error(model, error, data_labels=(), last_site=None) -> TypeError:
    """A clear error for Python control flow (or a Python conversion) on a traced value.

    Args:
      model: the model function.
      error: the JAX error (one of `CONCRETE_VALUE_ERRORS`); its text names the traced
        arguments the value depends on (`latents['mu']`, `data[0]`).
      data_labels: for each data leaf (`data[i]`), the user's name for it.
      last_site: the last site the model reached before the failing line, if known.
    """
    sites, data = traced_sources(error)
    line = user_line(error)
    kind = "Python control flow or a Python conversion (if/while/and/or, bool(), float(), int(), np.asarray())"
    if sites:
        cause = (f"the value of latent site{'s' if len(sites) > 1 else ''} "
                 f"{', '.join(repr(s) for s in sites)}")
    elif data:
        cause = "the value of model " + ", ".join(
            data_labels[i] if i < len(data_labels) else f"data argument {i}" for i in data)
    else:
        cause = "a traced value" + (f" (after site '{last_site}')" if last_site else "")
    fix = ("Write branches with jnp.where(cond, a, b) or jax.lax.cond, loops with jax.lax.fori_loop "
           "or while_loop, and keep values as JAX arrays (x.astype(float), not float(x))")
    if data and not sites:
        fix += ("; a value that must be a Python number (a size, a number of steps) should be "
                "passed as a Python int or float, which ppl treats as static")
    return TypeError(
        f"model {model_name(model)!r} uses {cause} in {kind}{line}; ppl traces the model with "
        f"abstract values, so Python cannot see that value. {fix}. "
        f"(JAX: {type(error).__name__})"
    )


# ------------------------------------------------------------------ NumPyro primitives in a ppl model

class NumPyroGuard:
    """Make a NumPyro primitive (`numpyro.sample`, `plate`, `param`, `deterministic`,
    `factor`) called inside a ppl model an error that names the site and the fix.

    ppl does not see NumPyro's primitives: left alone, `numpyro.sample` fails with an empty
    AssertionError, and `numpyro.deterministic`, `numpyro.factor` and `numpyro.param` would
    be silently ignored. While this context is entered, a handler on NumPyro's (global)
    stack raises for any NumPyro message sent from the entering thread; other threads'
    messages pass through it untouched.
    """

    def __init__(self):
        import numpyro.primitives as npp

        owner = threading.get_ident()

        class _Guard(npp.Messenger):
            def process_message(self, msg):
                if threading.get_ident() == owner:
                    raise numpyro_primitive_error(msg)

        self._stack = npp._PYRO_STACK
        self._guard = _Guard()

    def __enter__(self):
        self._stack.append(self._guard)
        return self

    def __exit__(self, *exc):
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i] is self._guard:
                del self._stack[i]
                break
        return False


_PPL_PRIMITIVE = {"sample": "ppl.sample (or ppl.observe for data)", "plate": "ppl.plate",
                  "param": "ppl.param", "deterministic": "ppl.deterministic"}


def numpyro_primitive_error(msg) -> TypeError:
    """The error for a NumPyro message `msg` (a dict) sent from inside a ppl model."""
    from numpyro.distributions import Unit

    kind, name = msg.get("type") or "primitive", msg.get("name")
    fix = _PPL_PRIMITIVE.get(kind, "the ppl primitive of the same name")
    if kind == "sample" and isinstance(msg.get("fn"), Unit):
        kind, fix = "factor", "ppl.factor"
    elif kind == "sample" and msg.get("is_observed"):
        fix = "ppl.observe"
    return TypeError(
        f"numpyro.{kind}({name!r}, ...) was called inside a ppl model; ppl's compiler and "
        f"inference see only ppl's own primitives, so this {kind} would be lost. Use {fix} "
        f"instead (ppl.sample, ppl.observe, ppl.plate, ppl.param, ppl.deterministic, ppl.factor "
        f"take NumPyro's arguments; distributions stay numpyro's, via ppl.dist)."
    )
