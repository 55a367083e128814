"""The ``sharingan-store`` command: thin wrappers over the API, one-line errors for user mistakes.

Examples
--------
>>> from click.testing import CliRunner
>>> result = CliRunner().invoke(main, ["ls", "/nonexistent/store"])
>>> result.exit_code, result.output.startswith("error: ")
(1, True)
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from sharingan_store.errors import FormatError, SharinganError

__all__ = ["main"]

_USER_ERRORS = (SharinganError, ValueError, TypeError, KeyError, IndexError, FileNotFoundError, PermissionError,
                FileExistsError, NotADirectoryError, ImportError, OSError)


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user mistakes into ``error: ...`` on stderr and exit code 1 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except _USER_ERRORS as exc:
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            click.echo(f"error: {message.splitlines()[0] if message else type(exc).__name__}", err=True)
            sys.exit(1)
        except Exception as exc:  # noqa: BLE001 - a bug, but still no traceback for the user
            if os.environ.get("SHARINGAN_DEBUG"):
                raise
            message = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(f"error: unexpected {type(exc).__name__}: {message} (set SHARINGAN_DEBUG=1 to see the "
                       "traceback, and please report it)", err=True)
            sys.exit(1)

    return wrapper


def _int_list(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        out: list[int] = []
        for part in value.replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
        return out
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of integers like '0,2,5' or '0-3'") from None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _open(store: str, mode: str = "r") -> Any:
    from sharingan_store.api import open_store

    if mode == "r" and "://" not in store and not os.path.exists(store):
        raise FileNotFoundError(f"no store at {store}")
    return open_store(store, mode=mode)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sharingan-store")
def main() -> None:
    """The warehouse for transformer attention: extract, store and query exact attention maps."""


@main.command()
@click.option("--model", "model_path", required=True, help="Local model directory (or a name in the local HF cache).")
@click.option("--text", default=None, help="The input text.")
@click.option("--text-file", type=click.Path(dir_okay=False), default=None, help="Read the input text from a file.")
@click.option("--store", "store_url", required=True, help="Store path or URL (created when missing).")
@click.option("--run", "run_id", default=None, help="Run id (default: model-time-texthash).")
@click.option("--layers", default=None, help="Layers to store, e.g. '0,2' or '0-5' (default: all).")
@click.option("--heads", default=None, help="Heads to store (default: all).")
@click.option("--dtype", type=click.Choice(["float16", "float32", "bfloat16"]), default="float16", show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run of the same id.")
@click.option("--resume", is_flag=True, help="Finish an interrupted run of the same id.")
@click.option("--max-block-mb", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Budget of one score block in MiB (default 32).")
@click.option("--chunk", type=click.IntRange(min=16), default=512, show_default=True,
              help="Chunk edge along query and key.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_friendly
def extract(model_path: str, text: str | None, text_file: str | None, store_url: str, run_id: str | None,
            layers: str | None, heads: str | None, dtype: str, device: str | None, overwrite: bool, resume: bool,
            max_block_mb: float | None, chunk: int, no_progress: bool) -> None:
    """Extract a model's exact attention on a text into a store."""
    if (text is None) == (text_file is None):
        raise click.UsageError("give exactly one of --text and --text-file")
    if text_file is not None:
        text = Path(text_file).read_text(encoding="utf-8")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    from sharingan_store.api import open_store

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        model = AutoModel.from_pretrained(model_path, local_files_only=True)
    except OSError as exc:
        raise FileNotFoundError(f"cannot load model {model_path!r} offline: {str(exc).splitlines()[0]}") from None
    store = open_store(store_url)
    run = store.extract(
        model, text, tokenizer=tokenizer, run=run_id, layers=_int_list(layers), heads=_int_list(heads), dtype=dtype,
        device=device, overwrite=overwrite, resume=resume, progress=not no_progress,
        max_block_bytes=max(1, int(max_block_mb * 2**20)) if max_block_mb else None, chunk=chunk,
    )
    a = run.attention
    click.echo(f"{run.run_id}: {a.sizes['layer']} layers x {a.sizes['head']} heads x {a.sizes['query']} tokens "
               f"-> {store.url}")


@main.command("ls")
@click.argument("store")
@click.option("--status", type=click.Choice(["writing", "complete", "failed"]), default=None,
              help="Only runs with this status.")
@click.option("--model", default=None, help="Only runs of this model.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@_friendly
def ls_cmd(store: str, status: str | None, model: str | None, as_json: bool) -> None:
    """List the runs of a store, with status and size on disk."""
    filters = {k: v for k, v in (("status", status), ("model", model)) if v is not None}
    frame = _open(store).runs(**filters)
    if as_json:
        click.echo(frame.to_json(orient="records", indent=2))
        return
    if frame.empty:
        click.echo("(no runs)")
        return
    frame = frame.assign(size=[_human(v or 0) for v in frame["size"]])
    cols = ["run", "status", "size", "model", "num_layers", "num_heads", "seq_len", "dtype", "created"]
    click.echo(frame[cols].to_string(index=False))


_PROVENANCE = ("status", "model", "model_class", "model_revision", "config_hash", "weights_fingerprint", "tokenizer",
               "text_sha256", "seq_len", "attention_kind", "sliding_window", "num_layers", "num_heads",
               "num_kv_heads", "layers", "heads", "dtype", "codec", "created", "library_versions", "metadata")


@main.command()
@click.argument("store")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print the run's attributes as JSON.")
@_friendly
def info(store: str, run: str, as_json: bool) -> None:
    """Show a run's provenance, shape and size."""
    cat = _open(store)
    group = cat.run_group(run)
    attrs = dict(group.attrs)
    size = cat.run_size(run)
    if as_json:
        click.echo(json.dumps({**attrs, "size": size}, indent=2, default=str))
        return
    try:
        shape = group["attention"].shape
    except KeyError:
        raise FormatError(f"run {run!r} is malformed: it has no attention array") from None
    click.echo(f"{'run':<20} {run}")
    click.echo(f"{'shape':<20} layer={shape[0]} head={shape[1]} query={shape[2]} key={shape[3]}")
    click.echo(f"{'size':<20} {_human(size)}")
    for key in _PROVENANCE:
        if key not in attrs:
            continue
        value = attrs[key]
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "{}"
        click.echo(f"{key:<20} {value}")


@main.command()
@click.argument("store")
@click.argument("run", required=False)
@click.option("--all", "include_incomplete", is_flag=True, help="Also verify runs that are not complete.")
@_friendly
def verify(store: str, run: str | None, include_incomplete: bool) -> None:
    """Read every chunk of a run (or of every complete run) and check its checksum. Exit 1 if any is bad."""
    report = _open(store).verify(run, allow_incomplete=include_incomplete)
    mb = report.checked.get("bytes", 0) / 2**20
    click.echo(f"{report}  [{report.seconds:.2f} s, {mb / max(report.seconds, 1e-9):.1f} MiB/s]")
    if not report.ok:
        sys.exit(1)


@main.command("cp")
@click.argument("store")
@click.argument("run")
@click.argument("dest")
@click.option("--as", "dest_run", default=None, help="Run id in the destination (default: the same).")
@click.option("--overwrite", is_flag=True, help="Replace a run of that id in the destination.")
@_friendly
def cp_cmd(store: str, run: str, dest: str, dest_run: str | None, overwrite: bool) -> None:
    """Copy a run to another store (a directory, a URL, or a .zip archive)."""
    url = _open(store).copy(run, dest, dest_run=dest_run, overwrite=overwrite)
    click.echo(f"copied {run} -> {url} (run {dest_run or run})")


@main.command("rm")
@click.argument("store")
@click.argument("run")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_friendly
def rm_cmd(store: str, run: str, yes: bool) -> None:
    """Delete a run from a store."""
    cat = _open(store, mode="r+")
    cat.run_group(run)  # unknown run: error before asking
    if not yes and not click.confirm(f"delete run {run!r} from {cat.url}?", default=False):
        click.echo("aborted")
        sys.exit(1)
    cat.delete(run)
    click.echo(f"deleted {run}")


@main.command()
@click.argument("store")
@click.argument("run")
@_friendly
def pyramid(store: str, run: str) -> None:
    """Build (or rebuild) a run's multiscale pyramid, for runs extracted without one."""
    factors = _open(store, mode="r+").build_pyramid(run)
    click.echo(f"{run}: pyramid levels {', '.join(f'x{f}' for f in factors) or '(none: the run is too short)'}")


@main.command()
@click.argument("store")
@click.argument("a")
@click.argument("b")
@click.option("--metric", type=click.Choice(["js", "cosine"]), default="js", show_default=True)
@click.option("--align", type=click.Choice(["exact", "truncate"]), default="exact", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print {layer: {head: value}} as JSON.")
@_friendly
def compare(store: str, a: str, b: str, metric: str, align: str, as_json: bool) -> None:
    """Compare two runs per layer and head (Jensen-Shannon divergence or cosine similarity)."""
    result = _open(store).compare(a, b, metric=metric, align=align).compute()
    table = result.to_pandas()
    if as_json:
        click.echo(json.dumps({str(layer): {str(head): float(v) for head, v in row.items()}
                               for layer, row in table.iterrows()}, indent=2))
        return
    label = "mean Jensen-Shannon divergence (nats)" if metric == "js" else "mean cosine similarity"
    click.echo(f"{label} of {a} vs {b}, rows = layer, columns = head")
    click.echo(table.to_string(float_format=lambda v: f"{v:.6f}"))


@main.command()
@click.argument("store")
@click.argument("run")
@click.option("--layer", type=int, required=True, help="Model layer index.")
@click.option("--head", type=int, required=True, help="Model head index.")
@click.option("--local", "center", type=int, default=None, help="Local view around this token position.")
@click.option("--window", type=click.IntRange(min=0), default=64, show_default=True, help="Half-width of --local.")
@click.option("--global", "global_size", type=click.IntRange(min=1), default=None,
              help="Global view downsampled to SIZE x SIZE (default when --local is not given: 256).")
@click.option("--method", type=click.Choice(["mean", "max", "sample"]), default="mean", show_default=True)
@click.option("--log", is_flag=True, help="Log colour scale.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Image file (.png, .pdf, .svg).")
@_friendly
def view(store: str, run: str, layer: int, head: int, center: int | None, window: int, global_size: int | None,
         method: str, log: bool, out: str) -> None:
    """Plot one layer/head of a run as a heatmap: a local view around a token or a global view."""
    if center is not None and global_size is not None:
        raise click.UsageError("give either --local or --global, not both")
    from sharingan_store.viz import heatmap, save

    sub = _open(store).open(run).sel(layer=layer, head=head)
    if center is not None:
        data = sub.local(center=center, window=window)
        title = f"{run} L{layer} H{head} local @{center} ±{window}"
    else:
        data = sub.global_view(size=global_size or 256, method=method)
        title = f"{run} L{layer} H{head} global ({method})"
    ax = heatmap(data, log=log, title=title)
    click.echo(f"wrote {save(ax, out)}")


_METRICS = ("entropy", "sinks", "importance", "distance", "similarity", "rollout")


@main.command()
@click.argument("store")
@click.argument("run")
@click.option("--metric", type=click.Choice(_METRICS), required=True)
@click.option("--layer", type=int, default=None, help="Only this model layer (not for rollout).")
@click.option("--threshold", type=float, default=0.3, show_default=True, help="Sink threshold (sinks).")
@click.option("--json", "as_json", is_flag=True, help="Print records as JSON.")
@_friendly
def metrics(store: str, run: str, metric: str, layer: int | None, threshold: float, as_json: bool) -> None:
    """Compute an attention metric of a run (per-query metrics are averaged over queries)."""
    r = _open(store).open(run)
    if layer is not None:
        if metric == "rollout":
            raise click.UsageError("rollout needs every layer from the first up: drop --layer")
        r = r.sel(layer=layer)
    result: Any
    if metric == "entropy":
        result = r.entropy().mean("query")
    elif metric == "sinks":
        result = r.sinks(threshold=threshold)
    elif metric == "importance":
        result = r.token_importance()
    elif metric == "distance":
        result = r.attention_distance()
    elif metric == "similarity":
        result = r.head_similarity()
    else:
        result = r.rollout()
    if not hasattr(result, "to_json"):  # a DataArray
        result = result.compute()
        extra = [c for c in result.coords if c not in result.dims and c not in ("query_token", "key_token")]
        result = result.drop_vars(extra).to_dataframe(name=metric).reset_index()
    if as_json:
        click.echo(result.to_json(orient="records", indent=2))
    elif result.empty:
        click.echo("(nothing)")
    else:
        click.echo(result.to_string(index=False, max_rows=200))


@main.command()
@click.option("--store", "store_url", default="demo-store", show_default=True)
@click.option("--out", "out", default="demo-heatmap.png", show_default=True, help="Heatmap PNG.")
@click.option("--no-progress", is_flag=True)
@_friendly
def demo(store_url: str, out: str, no_progress: bool) -> None:
    """Extract the real all-MiniLM-L6-v2 on an embedded text; print a summary; plot one head."""
    from sharingan_store.demo import run_demo

    result = run_demo(store_url, out, progress=not no_progress)
    click.echo("sharingan_store demo: all-MiniLM-L6-v2 on the opening of Pride and Prejudice")
    click.echo(f"  store          {result.store}  (run {result.run})")
    click.echo(f"  layers x heads {result.num_layers} x {result.num_heads}")
    click.echo(f"  tokens         {result.num_tokens}")
    click.echo(f"  on disk        {_human(result.bytes_on_disk)} vs {_human(result.bytes_raw)} raw float16 "
               f"({result.bytes_raw / max(result.bytes_on_disk, 1):.1f}x smaller)")
    click.echo(f"  time           {result.seconds:.2f} s")
    click.echo(f"  heatmap        {result.heatmap}")


if __name__ == "__main__":  # pragma: no cover
    main()
