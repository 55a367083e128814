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

from sharingan_store.errors import SharinganError

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
@click.option("--max-block-mb", type=float, default=None, help="Budget of one score block in MiB (default 128).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_friendly
def extract(model_path: str, text: str | None, text_file: str | None, store_url: str, run_id: str | None,
            layers: str | None, heads: str | None, dtype: str, device: str | None, overwrite: bool, resume: bool,
            max_block_mb: float | None, no_progress: bool) -> None:
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
        max_block_bytes=int(max_block_mb * 2**20) if max_block_mb else None,
    )
    a = run.attention
    click.echo(f"{run.run_id}: {a.sizes['layer']} layers x {a.sizes['head']} heads x {a.sizes['query']} tokens "
               f"-> {store.url}")


@main.command("ls")
@click.argument("store")
@_friendly
def ls_cmd(store: str) -> None:
    """List the runs of a store."""
    frame = _open(store).runs()
    if frame.empty:
        click.echo("(no runs)")
        return
    cols = ["run", "status", "model", "num_layers", "num_heads", "seq_len", "dtype", "created"]
    click.echo(frame[cols].to_string(index=False))


@main.command()
@click.argument("store")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print the run's attributes as JSON.")
@_friendly
def info(store: str, run: str, as_json: bool) -> None:
    """Show a run's provenance and shape."""
    group = _open(store).run_group(run)
    attrs = dict(group.attrs)
    if as_json:
        click.echo(json.dumps(attrs, indent=2, default=str))
        return
    shape = group["attention"].shape
    click.echo(f"run        {run}")
    click.echo(f"shape      layer={shape[0]} head={shape[1]} query={shape[2]} key={shape[3]}")
    for key in ("status", "model", "model_class", "attention_kind", "num_layers", "num_heads", "num_kv_heads",
                "layers", "heads", "seq_len", "dtype", "tokenizer", "text_sha256", "config_hash", "created",
                "metadata"):
        if key in attrs:
            click.echo(f"{key:<16} {attrs[key]}")


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
