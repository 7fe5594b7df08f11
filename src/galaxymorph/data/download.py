"""Download the public datasets (Galaxy10 DECaLS is 2.7 GB) robustly.

A download streams into ``<dest>.part``, resumes it with an HTTP ``Range`` request after an
interruption (in the same run, after a dropped connection, or in a later run), falls back to
mirror URLs, and renames the part file to its final name only once its SHA-256 matches. So the
final path either holds a verified file or does not exist, and a crash never costs the bytes
already fetched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from galaxymorph import paths
from galaxymorph.data.registry import KNOWN
from galaxymorph.errors import DataError

if TYPE_CHECKING:
    import requests

__all__ = ["download", "part_path", "sha256_file"]

_HASH_BLOCK = 1 << 22


def part_path(dest: str | Path) -> Path:
    """Where the incomplete download of ``dest`` is kept (``<dest>.part``)."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def sha256_file(path: str | Path, limit: int | None = None) -> hashlib._Hash:
    """SHA-256 state of ``path`` (or its first ``limit`` bytes), read in blocks, not whole."""
    digest = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as f:
        while remaining is None or remaining > 0:
            block = f.read(_HASH_BLOCK if remaining is None else min(_HASH_BLOCK, remaining))
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest


@dataclass
class _Target:
    label: str  # dataset name or URL, for messages
    urls: list[str]
    dest: Path
    sha256: str | None
    spec_name: str | None  # the dataset name when it is a known one


class _Unreachable(Exception):
    """No connection could be opened to a URL (refused, DNS failure, connect timeout)."""


class _BadStatus(Exception):
    """The server answered, but not with the file (404, 403, 5xx after retries...)."""


class _Dropped(Exception):
    """The connection broke mid-stream more times than ``retries`` allows."""


class _Transient(Exception):
    """A server error (5xx) that may go away if asked again."""


class _Restart(Exception):
    """The part file cannot be resumed from (server disagrees on its size): start over."""


def download(
    name_or_url: str,
    dest: str | Path | None = None,
    *,
    sha256: str | None = None,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    timeout: float = 30,
    urls: Sequence[str] | None = None,
    retries: int = 3,
    backoff: float = 1.0,
) -> Path:
    """Download a known dataset (``galaxy10-decals``, ``galaxy10-sdss``) or a URL; return its path.

    ``dest`` defaults to ``$GALAXYMORPH_HOME/data/<filename>``; a folder means "into this folder".
    ``sha256`` defaults to the registry's checksum for a known dataset; for a plain URL without
    one the file is not verified. ``urls`` overrides the dataset's URL list (tried in order).
    A connection dropped mid-stream is resumed up to ``retries`` times, waiting ``backoff``,
    then twice as long, and so on. Raises :class:`DataError` on every failure.
    """
    target = _resolve(name_or_url, dest, sha256, urls)
    console = _console() if progress else None
    final, part = target.dest, part_path(target.dest)

    if final.exists():
        if target.sha256 is None:
            _say(console, f"{final} already present (no checksum to verify it against)")
            return final
        got = _hash_with_status(final, console).hexdigest()
        if got == target.sha256:
            _say(console, f"{final} already present, checksum ok")
            return final
        raise DataError(
            f"a file is already there but its SHA-256 is {got}, not the expected {target.sha256}",
            final, hint=f"delete it (rm '{final}') and run the download again")

    final.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    unreachable = 0
    for url in target.urls:
        try:
            digest = _fetch(url, part, console=console, chunk_size=chunk_size, timeout=timeout,
                            retries=retries, backoff=backoff)
        except _Unreachable as exc:
            unreachable += 1
            failures.append(f"{url}: {exc}")
            continue
        except (_BadStatus, _Dropped) as exc:
            failures.append(f"{url}: {exc}")
            continue
        got = digest.hexdigest()
        if target.sha256 is not None and got != target.sha256:
            raise DataError(
                f"checksum mismatch for {target.label} from {url}: expected SHA-256 "
                f"{target.sha256}, got {got}; the downloaded file was kept at {part}", part,
                hint=f"inspect it, or delete it (rm '{part}') and run the download again to "
                     "start over")
        os.replace(part, final)
        _say(console, f"saved {final}" + (" (checksum ok)" if target.sha256 else ""))
        return final

    what = ("no connection could be made to any of its URLs (offline?)"
            if unreachable == len(target.urls) else "every URL failed")
    raise DataError(f"cannot download {target.label}: {what}:\n    " + "\n    ".join(failures),
                    hint=_by_hand_hint(target, part))


# -- resolving what to fetch --------------------------------------------------------------------


def _resolve(name_or_url: str, dest: str | Path | None, sha256: str | None,
             urls: Sequence[str] | None) -> _Target:
    name = name_or_url.strip()
    if name in KNOWN:
        ds = KNOWN[name]
        url_list = list(urls) if urls else [*ds.urls, *ds.mirrors]
        filename, checksum, spec_name = ds.filename, sha256 or ds.sha256, name
    elif urlparse(name).scheme in ("http", "https"):
        url_list = list(urls) if urls else [name]
        filename = Path(unquote(urlparse(name).path)).name
        if not filename:
            raise DataError("the URL does not end in a file name; pass dest=PATH", name)
        checksum, spec_name = sha256, None
    else:
        raise DataError(f"unknown dataset; known: {', '.join(KNOWN)} (or pass an http(s) URL)",
                        name_or_url)
    if not url_list:
        raise DataError("no URL to download from", name)
    if dest is None:
        path = paths.data_dir() / filename
    else:
        path = Path(dest).expanduser()
        if path.is_dir():
            path = path / filename
    if checksum is not None:
        checksum = checksum.strip().lower()
        if len(checksum) != 64 or any(c not in "0123456789abcdef" for c in checksum):
            raise DataError(f"not a SHA-256 hex digest: {checksum!r}", name)
    return _Target(name, url_list, path, checksum, spec_name)


def _by_hand_hint(target: _Target, part: Path) -> str:
    lines = ["to place the file by hand, download it from one of",
             *[f"      {u}" for u in target.urls],
             f"    save it as '{target.dest.name}' in {target.dest.parent}/"
             f" (that is $GALAXYMORPH_HOME/data/; GALAXYMORPH_HOME defaults to ~/.galaxymorph)"]
    if target.spec_name:
        lines.append(f"    or keep it anywhere and pass '{target.spec_name}:/path/to/"
                     f"{target.dest.name}' as the dataset spec")
    if part.exists():
        lines.append(f"    ({part.stat().st_size:,} bytes fetched so far are kept in {part}; "
                     "a later run resumes from there)")
    return "\n".join(lines)


# -- one URL ------------------------------------------------------------------------------------


def _fetch(url: str, part: Path, *, console: Any, chunk_size: int, timeout: float,
           retries: int, backoff: float) -> hashlib._Hash:
    """Bring ``part`` to the complete file from ``url``; return its SHA-256 state."""
    import requests

    digest: hashlib._Hash | None = None
    hashed = 0  # bytes of ``part`` that ``digest`` covers
    failures = 0
    from galaxymorph.progress import progress_bar

    label = f"{Path(unquote(urlparse(url).path)).name or url} ({urlparse(url).netloc})"
    with requests.Session() as session, progress_bar(label, unit="bytes", enabled=console is not None,
                                                     transient=False) as bar:
        while True:
            offset = part.stat().st_size if part.exists() else 0
            if digest is None or hashed != offset:
                # A part file from an earlier run (or a torn write): hash what is there first.
                digest = _hash_with_status(part, console) if offset else hashlib.sha256()
                hashed = offset
            headers = {"Accept-Encoding": "identity"}  # byte offsets must mean file bytes
            if offset:
                headers["Range"] = f"bytes={offset}-"
            received = 0
            try:
                resp = session.get(url, headers=headers, stream=True, timeout=timeout)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                why = _connect_failure(exc)
                if why:
                    raise _Unreachable(why) from exc
                failures += 1
                if failures > retries:
                    raise _Dropped(f"no answer after {failures} tries ({_short(exc)})") from exc
                _sleep(backoff, failures)
                continue
            except requests.exceptions.RequestException as exc:  # bad URL, too many redirects...
                raise _BadStatus(_short(exc)) from exc
            try:
                with resp:
                    mode, start, total = _plan(resp, offset)
                    if mode == "done":
                        return digest
                    if mode == "w":
                        digest, hashed = hashlib.sha256(), 0
                    _check_space(part, total, start)
                    bar.reset(total, start)
                    with open(part, "ab" if mode == "a" else "wb") as f:
                        for chunk in resp.iter_content(chunk_size=chunk_size):
                            if not chunk:
                                continue
                            f.write(chunk)
                            digest.update(chunk)
                            hashed += len(chunk)
                            received += len(chunk)
                            bar.advance(len(chunk))
                        f.flush()
                        os.fsync(f.fileno())
                    if total is not None and start + received < total:
                        raise requests.exceptions.ChunkedEncodingError(
                            f"connection closed after {start + received:,} of {total:,} bytes")
                    return digest
            except _Restart:
                part.unlink(missing_ok=True)
                digest, hashed = None, 0
                continue
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError, _Transient) as exc:
                # Progress resets the count: only consecutive fruitless tries use up retries.
                failures = 1 if received else failures + 1
                if failures > retries:
                    raise _Dropped(f"failed {failures} times in a row, last: {_short(exc)}") from exc
                bar.note(f"{_short(exc)}; retrying" + (" with resume" if part.exists() else ""))
                _sleep(backoff, failures)
            except requests.exceptions.RequestException as exc:
                raise _BadStatus(_short(exc)) from exc
            except OSError as exc:
                raise DataError(f"cannot write the download ({exc.strerror or exc})", part) from exc


def _plan(resp: requests.Response, offset: int) -> tuple[str, int, int | None]:
    """From the response to a (ranged) GET: write mode, start offset and the full size."""
    status = resp.status_code
    length = resp.headers.get("Content-Length")
    if status == 416 and offset:
        # Range not satisfiable: usually the part already holds every byte.
        total = _content_range_total(resp.headers.get("Content-Range"))
        if total is None or total == offset:
            return "done", offset, offset
        raise _Restart
    if status == 206 and offset:
        cr = resp.headers.get("Content-Range", "")
        first = _content_range_start(cr)
        if first is not None and first != offset:
            raise _Restart
        total = _content_range_total(cr)
        if total is None and length is not None:
            total = offset + int(length)
        return "a", offset, total
    if status == 200:
        # A fresh download, or a server that ignores Range: either way from byte 0.
        return "w", 0, int(length) if length and length.isdigit() else None
    reason = f"HTTP {status} {resp.reason or ''}".strip()
    if status >= 500:
        raise _Transient(reason)  # server trouble is often brief: the retry loop asks again
    raise _BadStatus(reason)


def _content_range_total(value: str | None) -> int | None:
    # "bytes 100-199/1000" or "bytes */1000"
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _content_range_start(value: str | None) -> int | None:
    if not value:
        return None
    spec = value.split(" ", 1)[-1].split("/", 1)[0]
    first = spec.split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _connect_failure(exc: Exception) -> str | None:
    """Why no connection was made at all, or None when one was (and then broke).

    A refused connection or a failed DNS lookup will not heal in a second, so the caller moves
    on to the next mirror instead of retrying.
    """
    import requests
    from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connection timed out ({urlparse(exc.request.url).netloc if exc.request else '?'})"
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"proxy error ({_short(exc)})"
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return None
    cause: BaseException | None = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    if isinstance(cause, NameResolutionError):
        return f"cannot resolve host {getattr(cause.conn, 'host', '?')} (no network or DNS?)"
    if isinstance(cause, NewConnectionError):
        text = str(cause).split("Failed to establish a new connection:", 1)[-1].strip()
        return f"cannot connect to {getattr(cause.conn, 'host', '?')}: {text}"
    return None


def _check_space(part: Path, total: int | None, start: int) -> None:
    if total is None:
        return
    need = total - start
    free = shutil.disk_usage(part.parent).free
    if need > free:
        raise DataError(f"needs {need / 1e9:.2f} GB more but only {free / 1e9:.2f} GB are free "
                        f"in {part.parent}", part,
                        hint="free some space, or set GALAXYMORPH_HOME to a larger disk")


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _sleep(backoff: float, attempt: int) -> None:
    if backoff > 0:
        time.sleep(backoff * 2 ** (attempt - 1))


# -- console output -----------------------------------------------------------------------------


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)  # stdout stays clean for scripts that capture the path


def _say(console: Any, text: str) -> None:
    if console is not None:
        console.print(text, highlight=False)


def _hash_with_status(path: Path, console: Any) -> hashlib._Hash:
    if console is None:
        return sha256_file(path)
    with console.status(f"checking SHA-256 of {path.name} ({path.stat().st_size / 1e6:,.1f} MB)"):
        return sha256_file(path)

